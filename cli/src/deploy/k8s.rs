//! The objects of a sluice deployment, from the topology: what runs, how it is probed, stopped,
//! sized and secured. Autoscalers are in [`super::autoscale`].

use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use sluice_core::topology::{ProjectionConfig, SinkConfig, Topology};

use super::kafka_auth::KafkaAuth;
use super::{Autoscaler, K8sArgs, autoscale};

/// Where the worker serves `/metrics`, `/healthz` and `/readyz` (`--metrics-addr`).
pub(super) const METRICS_PORT: u16 = 9464;
/// Where the gateway serves its API, probes and `/metrics`.
const GATEWAY_PORT: u16 = 8080;
/// Where the topology ConfigMap is mounted; `SLUICE_TOPOLOGY` points into it.
const TOPOLOGY_DIR: &str = "/etc/sluice/topology";
/// Where the Secret of `--secret` values is mounted.
const SECRETS_DIR: &str = "/var/run/secrets/sluice";
/// Where the gateway's tokens Secret is mounted.
const TOKENS_DIR: &str = "/var/run/secrets/sluice-gateway";
/// What Kubernetes waits beyond the drain deadline before SIGKILL: the drain's final commit
/// and the process exit happen after the deadline fires.
const GRACE_MARGIN_SECS: u64 = 15;
/// The user and group of the image (Dockerfile `USER`), not root.
const RUN_AS: u32 = 65532;
/// A ConfigMap holds at most 1 MiB.
const CONFIGMAP_MAX: usize = 1024 * 1024;

/// Resident memory of a worker projecting a steady stream, measured by
/// `cli/tests/prometheus.rs` (printed at its end: 73 and 75 MiB for the Couchbase and the
/// ClickHouse projection, debug build, ~200 events/s): the memory request, with headroom.
const WORKER_REQUEST_MIB: u64 = 128;
/// The worker's memory beyond its batches: measured base RSS with headroom.
const WORKER_BASE_MIB: u64 = 96;
/// librdkafka's prefetch cap (`queued.max.messages.kbytes` the worker sets).
const PREFETCH_MIB: u64 = 4;
/// How many times its byte budget a batch takes in memory: the raw records (kept for the DLQ)
/// and the sink's request bodies. Measured: the analytics projection draining 300,000 events at
/// full speed (release build) peaked at 291–295 MiB RSS with batch_size 50,000 before the worker
/// held request bodies instead of decoded events and mimalloc returned freed memory at once
/// (164–176 MiB after; 137–147 MiB at the sample's 20,000): under the 384 MiB this gives it.
const BATCH_EXPANSION: u64 = 2;
/// `--max-buffered-bytes`' default: the byte budget of one batch.
const BATCH_BUDGET_MIB: u64 = 64;
/// The gateway's RSS in the same test (78 MiB) with headroom, and its limit (bodies up to
/// `--max-batch-body`, 10 MiB, times the requests in flight).
const GATEWAY_REQUEST_MIB: u64 = 128;
const GATEWAY_LIMIT_MIB: u64 = 512;

/// Every object, in apply order: configuration first, then workloads and what watches them.
pub(super) fn manifests(topology: &Topology, args: &K8sArgs) -> anyhow::Result<Vec<Value>> {
    let (config_map, files) = topology_config_map(topology, args)?;
    let kafka = KafkaAuth::from_args(args)?;
    let pods = Pods { args, files: &files, kafka: kafka.as_ref() };
    let mut docs = vec![config_map, env_config_map(args)];
    // Before the ScaledObjects naming it: KEDA resolves the reference when it sees them.
    if args.autoscaler == Autoscaler::Keda {
        docs.extend(kafka.as_ref().and_then(KafkaAuth::trigger_authentication));
    }
    for (name, projection) in topology.projections() {
        let app = Workload::worker(args, name)?;
        docs.push(worker_deployment(&app, &pods, name, projection));
        docs.push(app.disruption_budget());
        match args.autoscaler {
            Autoscaler::Keda => {
                docs.push(autoscale::scaled_object(&app, args, kafka.as_ref(), topology, projection)?);
            }
            Autoscaler::Hpa => docs.push(autoscale::lag_hpa(&app, args, topology, projection)?),
            Autoscaler::None => {}
        }
    }
    let gateway = Workload::gateway(args);
    docs.push(gateway_deployment(&gateway, &pods));
    docs.push(gateway_service(&gateway));
    docs.push(gateway.disruption_budget());
    docs.push(autoscale::cpu_hpa(&gateway, args));
    docs.push(pod_monitor(args, "worker", "metrics"));
    docs.push(pod_monitor(args, "gateway", "http"));
    Ok(docs)
}

/// One Deployment's name and labels.
pub(super) struct Workload {
    pub(super) name: String,
    pub(super) namespace: Option<String>,
    pub(super) selector: Value,
    pub(super) labels: Value,
}

impl Workload {
    fn worker(args: &K8sArgs, projection: &str) -> anyhow::Result<Self> {
        let name = format!("{}-worker-{}", args.name_prefix, dns_name(projection)?);
        let selector = json!({
            "app.kubernetes.io/name": "sluice",
            "app.kubernetes.io/instance": name,
        });
        let mut labels = selector.clone();
        labels["app.kubernetes.io/component"] = json!("worker");
        labels["sluice.projection"] = json!(projection);
        Ok(Self { name, namespace: args.namespace.clone(), selector, labels })
    }

    fn gateway(args: &K8sArgs) -> Self {
        let name = format!("{}-gateway", args.name_prefix);
        let selector = json!({"app.kubernetes.io/name": "sluice", "app.kubernetes.io/instance": name});
        let mut labels = selector.clone();
        labels["app.kubernetes.io/component"] = json!("gateway");
        Self { name, namespace: args.namespace.clone(), selector, labels }
    }

    pub(super) fn metadata(&self) -> Value {
        metadata(&self.name, self.namespace.as_deref(), &self.labels)
    }

    /// At most one pod down at a time by a voluntary disruption (a node drain): the others keep
    /// their partitions, and the one moved drains before it goes.
    fn disruption_budget(&self) -> Value {
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": self.metadata(),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": self.selector}},
        })
    }
}

pub(super) fn metadata(name: &str, namespace: Option<&str>, labels: &Value) -> Value {
    let mut m = json!({"name": name, "labels": labels});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// A projection's name as a DNS label part: `user_state` → `user-state`.
fn dns_name(projection: &str) -> anyhow::Result<String> {
    let name = projection.to_ascii_lowercase().replace(['_', '.'], "-");
    if name.is_empty()
        || name.len() > 40
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        || name.starts_with('-')
        || name.ends_with('-')
    {
        bail!("projection {projection:?} cannot name a Kubernetes object ({name:?}: at most 40 of a-z, 0-9, -)");
    }
    Ok(name)
}

/// The topology file and every schema it names, so a change is a `kubectl apply` (workers and
/// the gateway reload a changed topology by themselves) rather than a new image.
fn topology_config_map(topology: &Topology, args: &K8sArgs) -> anyhow::Result<(Value, Vec<Value>)> {
    let dir = topology.path().parent().unwrap_or(Path::new("."));
    let text =
        std::fs::read_to_string(topology.path()).with_context(|| format!("reading {}", topology.path().display()))?;
    let mut data = serde_json::Map::new();
    let mut items = vec![json!({"key": "topology.toml", "path": "topology.toml"})];
    data.insert("topology.toml".to_owned(), json!(text));
    let mut size = text.len();
    let mut seen = std::collections::BTreeSet::new();
    for event in topology.events() {
        let rel = event.schema_path.strip_prefix(dir).unwrap_or(&event.schema_path);
        let rel = rel.to_str().filter(|r| !r.starts_with('/') && !r.split('/').any(|p| p == ".."));
        let Some(rel) = rel else {
            bail!(
                "schema {} is outside the topology's directory: a ConfigMap cannot carry it",
                event.schema_path.display()
            );
        };
        if !seen.insert(rel.to_owned()) {
            continue;
        }
        // ConfigMap keys allow no `/`: the mount puts each key back at its path.
        let key = rel.replace('/', "__");
        size += event.schema_text.len();
        data.insert(key.clone(), json!(event.schema_text));
        items.push(json!({"key": key, "path": rel}));
    }
    if size > CONFIGMAP_MAX {
        bail!("the topology and its schemas are {size} bytes, more than a ConfigMap holds (1 MiB)");
    }
    let name = format!("{}-topology", args.name_prefix);
    let labels = json!({"app.kubernetes.io/name": "sluice"});
    let metadata = metadata(&name, args.namespace.as_deref(), &labels);
    Ok((json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}), items))
}

/// Plain variables every pod gets (`--env`), and the log level.
fn env_config_map(args: &K8sArgs) -> Value {
    let mut data = serde_json::Map::new();
    data.insert("SLUICE_LOG".to_owned(), json!("info"));
    for (k, v) in &args.env {
        data.insert(k.clone(), json!(v));
    }
    let name = format!("{}-env", args.name_prefix);
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": metadata(&name, args.namespace.as_deref(), &json!({"app.kubernetes.io/name": "sluice"})),
           "data": data})
}

/// What the worker's and the gateway's pods share: the options, the topology ConfigMap's items
/// and how they reach Kafka.
struct Pods<'a> {
    args: &'a K8sArgs,
    files: &'a [Value],
    kafka: Option<&'a KafkaAuth>,
}

/// Environment, volumes and mounts shared by the worker and the gateway.
fn pod_common(pods: &Pods<'_>) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let Pods { args, files, kafka } = *pods;
    let mut env = vec![json!({"name": "SLUICE_TOPOLOGY", "value": format!("{TOPOLOGY_DIR}/topology.toml")})];
    for var in &args.secrets {
        env.push(json!({"name": format!("{var}_FILE"), "value": format!("{SECRETS_DIR}/{var}")}));
    }
    let mut volumes = vec![
        json!({"name": "topology", "configMap": {"name": format!("{}-topology", args.name_prefix), "items": files}}),
        json!({"name": "secrets", "secret": {"secretName": args.secret_name, "defaultMode": 0o440}}),
        // The root filesystem is read-only; anything that needs a scratch file gets this.
        json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}),
    ];
    let mut mounts = vec![
        json!({"name": "topology", "mountPath": TOPOLOGY_DIR, "readOnly": true}),
        json!({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": true}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    if let Some(kafka) = kafka {
        env.extend(kafka.pod_env());
        if let Some((volume, mount)) = kafka.volume() {
            volumes.push(volume);
            mounts.push(mount);
        }
    }
    (env, volumes, mounts)
}

fn container_security() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn probe(path: &str, port: &str, period: u32, failures: u32) -> Value {
    json!({"httpGet": {"path": path, "port": port}, "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": failures})
}

fn mib(n: u64) -> String {
    format!("{n}Mi")
}

/// The memory limit of a projection's worker: what its bounds allow (every batch in flight and
/// the next one, each within the byte budget and its expansion, and librdkafka's prefetch) over
/// its base.
fn worker_memory_limit(projection: &ProjectionConfig) -> u64 {
    let batches = u64::from(projection.max_in_flight.max(1)) + 1;
    let mib = WORKER_BASE_MIB + batches * BATCH_BUDGET_MIB * BATCH_EXPANSION + PREFETCH_MIB;
    mib.div_ceil(64) * 64
}

fn deployment(app: &Workload, args: &K8sArgs, replicas: Option<u32>, container: Value, volumes: Vec<Value>) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": app.selector},
        // A new pod is up before an old one goes: partitions move once, to a running worker.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": app.labels},
            "spec": {
                "terminationGracePeriodSeconds": args.drain_deadline.as_secs() + GRACE_MARGIN_SECS,
                "securityContext": pod_security(),
                "automountServiceAccountToken": false,
                "containers": [container],
                "volumes": volumes,
            },
        },
    });
    // With an autoscaler, replicas are its to set: a replica count here would be reset on every apply.
    if let Some(n) = replicas {
        spec["replicas"] = json!(n);
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": app.metadata(), "spec": spec})
}

fn worker_deployment(app: &Workload, pods: &Pods<'_>, name: &str, projection: &ProjectionConfig) -> Value {
    let args = pods.args;
    let (env, volumes, mounts) = pod_common(pods);
    let sink = match projection.sink {
        SinkConfig::Couchbase { .. } => "couchbase",
        SinkConfig::ClickHouse { .. } => "clickhouse",
    };
    let drain = format!("{}s", args.drain_deadline.as_secs());
    let container = json!({
        "name": "worker",
        "image": args.image,
        "args": ["work", "--projection", name, "--metrics-addr", format!("0.0.0.0:{METRICS_PORT}"), "--drain-deadline", drain],
        "env": env,
        "envFrom": [{"configMapRef": {"name": format!("{}-env", args.name_prefix)}}],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        // Liveness: the process serves (a worker waiting for its sink is alive, not stuck).
        "livenessProbe": probe("/healthz", "metrics", 10, 3),
        // Ready: writing, with partitions of the group (see `worker::health`).
        "readinessProbe": probe("/readyz", "metrics", 5, 2),
        "resources": {
            "requests": {"cpu": if sink == "clickhouse" { "500m" } else { "250m" }, "memory": mib(WORKER_REQUEST_MIB)},
            // No CPU limit: throttling a worker only adds lag; the request reserves its share.
            "limits": {"memory": mib(worker_memory_limit(projection))},
        },
        "securityContext": container_security(),
        "volumeMounts": mounts,
    });
    let replicas = (args.autoscaler == Autoscaler::None).then_some(args.replicas);
    deployment(app, args, replicas, container, volumes)
}

fn gateway_deployment(app: &Workload, pods: &Pods<'_>) -> Value {
    let args = pods.args;
    let (mut env, mut volumes, mut mounts) = pod_common(pods);
    env.push(json!({"name": "SLUICE_GATEWAY_TOKENS_FILE", "value": format!("{TOKENS_DIR}/tokens")}));
    volumes.push(json!({"name": "tokens", "secret": {"secretName": format!("{}-gateway-tokens", args.name_prefix), "defaultMode": 0o440}}));
    mounts.push(json!({"name": "tokens", "mountPath": TOKENS_DIR, "readOnly": true}));
    let drain = format!("{}s", args.drain_deadline.as_secs());
    let container = json!({
        "name": "gateway",
        "image": args.image,
        "args": ["gateway", "--listen", format!("0.0.0.0:{GATEWAY_PORT}"), "--drain-deadline", drain],
        "env": env,
        "envFrom": [{"configMapRef": {"name": format!("{}-env", args.name_prefix)}}],
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "livenessProbe": probe("/healthz", "http", 10, 3),
        // 503 until Kafka and the registry answered, and from the moment a drain starts.
        "readinessProbe": probe("/readyz", "http", 5, 1),
        "resources": {
            "requests": {"cpu": "500m", "memory": mib(GATEWAY_REQUEST_MIB)},
            "limits": {"memory": mib(GATEWAY_LIMIT_MIB)},
        },
        "securityContext": container_security(),
        "volumeMounts": mounts,
    });
    deployment(app, args, None, container, volumes)
}

fn gateway_service(app: &Workload) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": app.metadata(),
        "spec": {
            "selector": app.selector,
            "ports": [{"name": "http", "port": GATEWAY_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    })
}

/// Prometheus operator: scrape every pod of a component on its named port's `/metrics`.
fn pod_monitor(args: &K8sArgs, component: &str, port: &str) -> Value {
    let name = format!("{}-{component}", args.name_prefix);
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(&name, args.namespace.as_deref(), &json!({"app.kubernetes.io/name": "sluice"})),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "sluice", "app.kubernetes.io/component": component}},
            "podMetricsEndpoints": [{"port": port, "path": "/metrics", "interval": "15s"}],
        },
    })
}
