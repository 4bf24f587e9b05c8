//! How many workers a projection gets: KEDA on its consumer group's lag (the default), or an
//! HPA on `sluice_lag_seconds` through the Prometheus adapter; and the gateway's HPA on CPU.
//!
//! Thresholds come from the projection's `[backpressure]`: the workers reach their maximum
//! before the lag reaches the soft threshold, where intake starts slowing down. The maximum is
//! the projection's partitions: a worker beyond them would own none and only wait.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use sluice_core::topology::{ProjectionConfig, Topology};

use super::K8sArgs;
use super::k8s::Workload;
use super::kafka_auth::KafkaAuth;

/// Lag (messages) per worker when the projection declares no message threshold: KEDA's kafka
/// scaler's own default is 10, which scales out on every burst of a busy topic.
const DEFAULT_LAG_PER_REPLICA: u64 = 1000;
/// Lag age (seconds) the lag HPA holds the projection under when it declares no age threshold.
const DEFAULT_LAG_AGE_SECS: u64 = 30;
/// The gateway's CPU target: headroom for a burst while a new pod starts.
const GATEWAY_CPU_PERCENT: u32 = 70;
/// The gateway's replicas: two, so a node loss or a rollout never stops intake.
const GATEWAY_MIN: u32 = 2;
const GATEWAY_MAX: u32 = 10;

/// Partitions of every topic the projection reads: its consumer group's size limit.
fn partitions(topology: &Topology, projection: &ProjectionConfig) -> anyhow::Result<u32> {
    projection.sources.iter().try_fold(0u32, |n, t| {
        let topic = topology.topic(t).with_context(|| format!("source topic {t:?} is not declared"))?;
        Ok(n + topic.partitions)
    })
}

fn min_replicas(args: &K8sArgs, max: u32) -> u32 {
    args.replicas.clamp(1, max)
}

/// KEDA's kafka scaler on the consumer group (`sluice.<projection>`): desired workers = total
/// lag / `lagThreshold`, at most one per partition. A secured Kafka: the mode in the trigger's
/// metadata, the credentials through the shared TriggerAuthentication.
pub(super) fn scaled_object(
    app: &Workload,
    args: &K8sArgs,
    kafka: Option<&KafkaAuth>,
    topology: &Topology,
    projection: &ProjectionConfig,
) -> anyhow::Result<Value> {
    let max = partitions(topology, projection)?;
    let bp = &projection.backpressure;
    // All workers at work by the time the lag reaches the soft threshold.
    let per_replica = match (bp.soft_lag, bp.hard_lag) {
        (Some(soft), _) => (soft / u64::from(max)).max(1),
        (None, Some(hard)) => (hard / 2 / u64::from(max)).max(1),
        (None, None) => DEFAULT_LAG_PER_REPLICA,
    };
    // The brokers the pods use: `--env`'s over the topology's (KEDA reads no SLUICE_* variable).
    let brokers = args
        .env
        .iter()
        .find_map(|(k, v)| (k == "SLUICE_KAFKA_BROKERS").then(|| v.clone()))
        .or_else(|| topology.connections().kafka_brokers.clone())
        .unwrap_or_default();
    let mut trigger = json!({
        "type": "kafka",
        "metadata": {
            "bootstrapServers": brokers,
            "consumerGroup": projection.group,
            // No topic: the lag of every topic the group reads, summed.
            "lagThreshold": per_replica.to_string(),
            "activationLagThreshold": "0",
            "offsetResetPolicy": "earliest",
            "allowIdleConsumers": "false",
        },
    });
    if let Some(kafka) = kafka {
        if let Some(metadata) = trigger["metadata"].as_object_mut() {
            kafka.trigger_metadata(metadata);
        }
        if let Some(reference) = kafka.reference() {
            trigger["authenticationRef"] = reference;
        }
    }
    Ok(json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": app.metadata(),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app.name},
            "minReplicaCount": if args.scale_to_zero { 0 } else { min_replicas(args, max) },
            "maxReplicaCount": max,
            "pollingInterval": 15,
            // Scale in slowly: each removed worker hands its partitions over (a rebalance).
            "cooldownPeriod": 300,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                "scaleDown": {"stabilizationWindowSeconds": 300, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
            }}},
            "triggers": [trigger],
        },
    }))
}

/// The alternative without KEDA: an HPA on the projection's oldest unprocessed record's age
/// (`sluice_lag_seconds`, exported by the gateway's lag monitor), served to Kubernetes as an
/// external metric by the Prometheus adapter (`deploy/prometheus/adapter-rules.yaml`).
pub(super) fn lag_hpa(
    app: &Workload,
    args: &K8sArgs,
    topology: &Topology,
    projection: &ProjectionConfig,
) -> anyhow::Result<Value> {
    let max = partitions(topology, projection)?;
    let bp = &projection.backpressure;
    let age = bp.soft_lag_age.or(bp.hard_lag_age).map_or(DEFAULT_LAG_AGE_SECS, |d| Duration::from(d).as_secs().max(1));
    let name = app.labels["sluice.projection"].clone();
    Ok(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": app.metadata(),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app.name},
            "minReplicas": min_replicas(args, max),
            "maxReplicas": max,
            "metrics": [{
                "type": "External",
                "external": {
                    "metric": {"name": "sluice_lag_seconds", "selector": {"matchLabels": {"projection": name}}},
                    // Value, not AverageValue: an age does not divide among workers.
                    "target": {"type": "Value", "value": age.to_string()},
                },
            }],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}},
        },
    }))
}

/// The gateway scales on CPU: its work is per request, and it keeps no state.
pub(super) fn cpu_hpa(app: &Workload, args: &K8sArgs) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": app.metadata(),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app.name},
            "minReplicas": args.replicas.max(GATEWAY_MIN),
            "maxReplicas": GATEWAY_MAX.max(args.replicas),
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": GATEWAY_CPU_PERCENT}}}],
        },
    })
}
