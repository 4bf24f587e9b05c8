//! `/healthz` and `/readyz`: is the process up, and can it publish right now?
//!
//! Readiness is a cached probe, refreshed in the background every few seconds
//! ([`GatewayConfig::ready_interval`](super::GatewayConfig)), so a load balancer polling `/readyz`
//! never adds load on Kafka or the registry, and a request never waits on a probe. One probe:
//!
//! - **Kafka**: a metadata request (its own small client, since the publisher's producer does not
//!   expose one) that must list every topic the topology publishes to; then the topics' size
//!   limits (`max.message.bytes`) for the publisher's up-front record size check.
//! - **Registry**: a live call (the versions of one subject), and every event type's schema id
//!   resolved through the publisher, which caches them, so the first request of each type does
//!   not pay for the lookup, and a schema nobody registered makes the gateway unready.
//!
//! Before the first probe finishes, and from the moment shutdown starts (draining), `/readyz`
//! answers 503.

use crate::kafka::client_config as kafka_config;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use serde::Serialize;
use sluice_core::Connections;
use tokio_util::sync::CancellationToken;

use super::GatewayError;
use crate::admin::topics::TopicAdmin;
use crate::{Publisher, Registry};

/// One service's state in the last probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ServiceCheck {
    pub(crate) ok: bool,
    /// What was seen (`1 broker, 3 topics`) or why it failed.
    pub(crate) detail: String,
    pub(crate) latency_ms: u64,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ReadyReport {
    pub(crate) ready: bool,
    pub(crate) draining: bool,
    pub(crate) kafka: ServiceCheck,
    pub(crate) registry: ServiceCheck,
    /// When the probe ran, in milliseconds since the epoch (0: not yet).
    pub(crate) checked_at_ms: u64,
}

impl ReadyReport {
    fn pending() -> Self {
        let pending = ServiceCheck { ok: false, detail: "not probed yet".to_owned(), latency_ms: 0 };
        Self { ready: false, draining: false, kafka: pending.clone(), registry: pending, checked_at_ms: 0 }
    }
}

/// The latest report, shared by the probe task and the handlers.
#[derive(Debug)]
pub(crate) struct Readiness {
    report: RwLock<Arc<ReadyReport>>,
    draining: AtomicBool,
}

impl Readiness {
    pub(crate) fn new() -> Self {
        Self { report: RwLock::new(Arc::new(ReadyReport::pending())), draining: AtomicBool::new(false) }
    }

    /// The latest report, with the draining flag applied.
    pub(crate) fn report(&self) -> ReadyReport {
        let mut report = match self.report.read() {
            Ok(r) => ReadyReport::clone(&r),
            // A writer panicked mid-update: say so instead of serving a half-written state.
            Err(_) => ReadyReport::pending(),
        };
        if self.draining.load(Ordering::Relaxed) {
            report.draining = true;
            report.ready = false;
        }
        report
    }

    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    fn store(&self, report: ReadyReport) {
        if let Ok(mut slot) = self.report.write() {
            *slot = Arc::new(report);
        }
    }
}

/// The clients the probe uses.
pub(crate) struct Probe {
    kafka: Arc<ThreadedProducer<DefaultProducerContext>>,
    /// Reads the topics' size limits for the publisher.
    admin: TopicAdmin,
    registry: Registry,
    publisher: Arc<Publisher>,
    topics: BTreeSet<String>,
    subject: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("topics", &self.topics).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Probe {
    pub(crate) fn new(
        publisher: Arc<Publisher>,
        connections: &Connections,
        timeout: Duration,
    ) -> Result<Self, GatewayError> {
        // A threaded producer polls its own event queue, so a long outage does not pile up
        // undelivered error events in memory; it never sends a message.
        let kafka: ThreadedProducer<DefaultProducerContext> = kafka_config(&connections.kafka)
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|e| GatewayError::Config(format!("cannot create the Kafka probe client: {e}")))?;
        let registry = Registry::new(&connections.registry, timeout)?;
        let admin = TopicAdmin::new(&connections.kafka, timeout)
            .map_err(|e| GatewayError::Config(format!("cannot create the Kafka admin client: {e}")))?;
        let topology = publisher.topology();
        let topics = topology.events().map(|e| e.topic.clone()).collect();
        let subject = topology.events().next().map(|e| e.subject.clone());
        Ok(Self { kafka: Arc::new(kafka), admin, registry, publisher, topics, subject, timeout })
    }

    /// Probes every `interval` until `stop`, storing each report.
    pub(crate) async fn run(self, readiness: Arc<Readiness>, interval: Duration, stop: CancellationToken) {
        let mut was_ready = None;
        loop {
            let report = self.once().await;
            if was_ready != Some(report.ready) {
                if report.ready {
                    tracing::info!(kafka = %report.kafka.detail, registry = %report.registry.detail, "gateway is ready");
                } else {
                    tracing::warn!(kafka = %report.kafka.detail, registry = %report.registry.detail, "gateway is not ready");
                }
                was_ready = Some(report.ready);
            }
            readiness.store(report);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    async fn once(&self) -> ReadyReport {
        let (kafka, registry) = tokio::join!(self.kafka(), self.registry());
        let checked_at_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        ReadyReport { ready: kafka.ok && registry.ok, draining: false, kafka, registry, checked_at_ms }
    }

    async fn kafka(&self) -> ServiceCheck {
        let started = Instant::now();
        let client = Arc::clone(&self.kafka);
        let timeout = self.timeout;
        // librdkafka's metadata call blocks: keep it off the async workers.
        let metadata = tokio::task::spawn_blocking(move || {
            client.client().fetch_metadata(None, timeout).map(|md| {
                let topics: BTreeSet<String> = md
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                    .map(|t| t.name().to_owned())
                    .collect();
                (md.brokers().len(), topics)
            })
        })
        .await;
        let outcome = match metadata {
            Err(e) => Err(format!("probe task failed: {e}")),
            Ok(Err(e)) => Err(format!("no metadata: {e}")),
            Ok(Ok((brokers, existing))) => {
                let missing: Vec<&str> =
                    self.topics.iter().filter(|t| !existing.contains(*t)).map(String::as_str).collect();
                if missing.is_empty() {
                    self.read_topic_limits().await;
                    Ok(format!("{brokers} broker(s), {} topic(s) present", self.topics.len()))
                } else {
                    Err(format!("missing topic(s) {}: run `sluice topics apply`", missing.join(", ")))
                }
            }
        };
        check(outcome, started)
    }

    /// Each probe that found the topics reads their size limits (one `DescribeConfigs`), so an
    /// event too large for its topic is refused up front (413) rather than by the broker, also
    /// after the topic's config changed. A failure keeps the limits last read (or the
    /// producer's alone): logged, readiness unaffected.
    async fn read_topic_limits(&self) {
        let first = !self.publisher.topic_limits_known();
        match self.publisher.read_topic_limits(&self.admin).await {
            Ok(()) if first => tracing::info!("read the topics' size limits (max.message.bytes)"),
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the topics' size limits; keeping the last known"),
        }
    }

    async fn registry(&self) -> ServiceCheck {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, async {
            if let Some(subject) = &self.subject {
                self.registry.versions(subject).await.map_err(|e| e.to_string())?;
            }
            let topology = self.publisher.topology();
            for event in topology.events() {
                self.publisher.schema_id(&event.event_type).await.map_err(|e| e.to_string())?;
            }
            Ok(format!("{} schema id(s) resolved", topology.events().count()))
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)));
        check(outcome, started)
    }
}

fn check(outcome: Result<String, String>, started: Instant) -> ServiceCheck {
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(detail) => ServiceCheck { ok: true, detail, latency_ms },
        Err(detail) => ServiceCheck { ok: false, detail, latency_ms },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_and_draining_are_not_ready() {
        let readiness = Readiness::new();
        assert!(!readiness.report().ready);
        let ok = ServiceCheck { ok: true, detail: "fine".into(), latency_ms: 1 };
        readiness.store(ReadyReport {
            ready: true,
            draining: false,
            kafka: ok.clone(),
            registry: ok,
            checked_at_ms: 1,
        });
        assert!(readiness.report().ready);
        readiness.set_draining();
        let report = readiness.report();
        assert!(!report.ready && report.draining);
    }
}
