//! The lag monitor: how far behind every projection is, refreshed about every second and shared
//! through a `tokio::sync::watch` channel by the workers, the gateway and `sluice lag`.
//!
//! Data path: Kafka (topic metadata, low/high watermarks, each projection group's committed
//! offsets, and the one record at each lagging partition's committed offset for its timestamp) →
//! [`sluice_core::lag`] (lag, age, backpressure state with hysteresis) → the watch channel, the
//! `sluice_lag_*` gauges and a log line at every state change. The intake side reads the channel
//! through a [`LagGate`].
//!
//! librdkafka's calls block, so a refresh runs on the blocking pool with the clients moved in and
//! out: one reader (metadata, watermarks for all partitions in two batched requests, the oldest
//! records) plus one offsets-only client per consumer group, since Kafka answers committed offsets
//! only to a client of that group. None of them ever subscribes or commits, so the monitor never
//! joins a projection's group nor moves its offsets. The timestamps of oldest records are cached
//! by (partition, offset): a projection that is stuck costs nothing after the first read, one that
//! is moving one record per refresh and partition.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{describe_counter, describe_gauge, gauge};
use rdkafka::error::KafkaError;
use sluice_core::connections::KafkaConnection;
use sluice_core::lag::{BackpressureState, LagSnapshot};
use sluice_core::topology::Topology;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

mod fetcher;
mod gate;

use fetcher::Fetcher;
pub use gate::LagGate;

/// Metric names (`sluice_<what>_<unit>`), so dashboards refer to one spelling.
pub mod names {
    /// Records not yet processed, by projection, topic and partition.
    pub const LAG_MESSAGES: &str = "sluice_lag_messages";
    /// Age of the oldest unprocessed record, by projection, topic and partition.
    pub const LAG_SECONDS: &str = "sluice_lag_seconds";
    /// Backpressure state by projection: 0 normal, 1 soft, 2 hard.
    pub const BACKPRESSURE_STATE: &str = "sluice_backpressure_state";
    /// Intake decisions that slowed or refused an event, by projection, decision and threshold.
    pub const BACKPRESSURE_DECISIONS: &str = "sluice_backpressure_decisions_total";
}

/// Default refresh interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// How long one Kafka request of a refresh may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a refresh retries a failed offsets request (a partition's leader or a group's
/// coordinator moving answers an error for a moment); the next refresh comes a second later.
const LIST_RETRY_DEADLINE: Duration = Duration::from_secs(1);

/// How long a refresh waits for the oldest records of lagging partitions; a partition whose record
/// did not come in time has an unknown age this time and is asked again at the next refresh.
const RECORD_WAIT: Duration = Duration::from_secs(2);

/// The consumer group of the monitor's record reader: never joined, never committed to.
pub const READER_GROUP: &str = "sluice.lag-monitor";

/// Why the monitor could not start or refresh.
#[derive(Debug, thiserror::Error)]
pub enum LagError {
    /// A Kafka client could not be created (bad configuration).
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The blocking refresh panicked or was cancelled: a bug.
    #[error("the lag refresh did not finish: {0}")]
    Task(String),
}

/// What the monitor reads of one projection; owned, because it goes to the blocking pool.
#[derive(Debug, Clone)]
struct Watched {
    name: String,
    group: String,
    sources: Vec<String>,
}

fn watched(topology: &Topology) -> Arc<[Watched]> {
    topology
        .projections()
        .map(|(name, p)| Watched { name: name.to_owned(), group: p.group.clone(), sources: p.sources.clone() })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The lag monitor. [`LagMonitor::spawn`] keeps a snapshot fresh in a watch channel;
/// [`LagMonitor::snapshot_once`] takes one (for `sluice lag`).
#[derive(Debug)]
pub struct LagMonitor;

impl LagMonitor {
    /// Starts refreshing the lag of every projection of `topology` every `interval` until
    /// `shutdown` is cancelled, recording the `sluice_lag_*` gauges as it goes. The receiver holds
    /// [`LagSnapshot::empty`] until the first refresh (about one request round trip); a refresh
    /// that fails for a projection keeps that projection's last state, with the error.
    ///
    /// Must be called within a Tokio runtime. The task runs as long as `shutdown` is not
    /// cancelled, even with no receiver left (the gauges still need it).
    pub fn spawn(
        topology: Arc<Topology>,
        kafka: &KafkaConnection,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> Result<watch::Receiver<LagSnapshot>, LagError> {
        let fetcher = Fetcher::new(kafka)?;
        let (tx, rx) = watch::channel(LagSnapshot::empty());
        describe();
        let task =
            refresh_loop(topology, kafka.clone(), fetcher, interval.max(Duration::from_millis(10)), tx, shutdown);
        tokio::spawn(task.instrument(info_span!("lag_monitor")));
        Ok(rx)
    }

    /// One snapshot of every projection of `topology`, states decided from normal (no history, so
    /// no hysteresis).
    pub async fn snapshot_once(topology: &Topology, kafka: &KafkaConnection) -> Result<LagSnapshot, LagError> {
        let mut fetcher = Fetcher::new(kafka)?;
        let projections = watched(topology);
        let observed = tokio::task::spawn_blocking(move || fetcher.observe(&projections))
            .await
            .map_err(|e| LagError::Task(e.to_string()))?;
        Ok(LagSnapshot::compute(topology, &observed, &LagSnapshot::empty(), now_ms()))
    }
}

/// Registers the metric descriptions.
fn describe() {
    describe_gauge!(names::LAG_MESSAGES, "Records not yet processed by the projection, per partition.");
    describe_gauge!(names::LAG_SECONDS, metrics::Unit::Seconds, "Age of the oldest record not yet processed.");
    describe_gauge!(names::BACKPRESSURE_STATE, "Backpressure state of the projection: 0 normal, 1 soft, 2 hard.");
    describe_counter!(names::BACKPRESSURE_DECISIONS, "Intake decisions that slowed or refused an event.");
}

async fn refresh_loop(
    topology: Arc<Topology>,
    kafka: KafkaConnection,
    fetcher: Fetcher,
    interval: Duration,
    tx: watch::Sender<LagSnapshot>,
    shutdown: CancellationToken,
) {
    let projections = watched(&topology);
    info!(projections = projections.len(), ?interval, "lag monitor started");
    let mut fetcher = Some(fetcher);
    let mut ticker = tokio::time::interval(interval);
    // A slow refresh (Kafka away) delays the next one rather than queueing a burst of them.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let mut f = match fetcher.take() {
            Some(f) => f,
            None => match Fetcher::new(&kafka) {
                Ok(f) => f,
                Err(e) => {
                    error!(error = %e, "cannot create the lag monitor's Kafka clients; retrying");
                    continue;
                }
            },
        };
        let watched = Arc::clone(&projections);
        let job = tokio::task::spawn_blocking(move || {
            let observed = f.observe(&watched);
            (f, observed)
        });
        let joined = tokio::select! {
            biased;
            // The refresh finishes on its own thread and drops its clients there.
            () = shutdown.cancelled() => break,
            joined = job => joined,
        };
        let observed = match joined {
            Ok((f, observed)) => {
                fetcher = Some(f);
                observed
            }
            // The clients went with the panicked thread; fresh ones at the next tick.
            Err(e) => {
                error!(error = %e, "lag refresh failed; retrying with new clients");
                continue;
            }
        };
        let snapshot = LagSnapshot::compute(&topology, &observed, &tx.borrow(), now_ms());
        report(&tx.borrow(), &snapshot);
        tx.send_replace(snapshot);
    }
    if let Some(f) = fetcher {
        // Closing librdkafka clients blocks briefly.
        let _ = tokio::task::spawn_blocking(move || drop(f)).await;
    }
    info!("lag monitor stopped");
}

/// Gauges for `next`, and a log line for every state change and refresh error since `previous`.
fn report(previous: &LagSnapshot, next: &LagSnapshot) {
    for (name, p) in &next.projections {
        let before = previous.projections.get(name);
        let reason = || p.trigger.map_or_else(|| "below every low-water mark".to_owned(), |t| t.to_string());
        match before.map(|b| b.state) {
            // First sight of the projection: its state is news only when it is not normal.
            None if p.state != BackpressureState::Normal => {
                info!(projection = %name, state = %p.state, reason = %reason(), lag_messages = p.lag_messages,
                      "backpressure state");
            }
            None => {}
            // Into hard is what operators must see (intake refused); the rest is information.
            Some(was) if p.state > was && p.state == BackpressureState::Hard => {
                warn!(projection = %name, from = %was, to = %p.state, reason = %reason(),
                      lag_messages = p.lag_messages, "backpressure state rose");
            }
            Some(was) if p.state > was => {
                info!(projection = %name, from = %was, to = %p.state, reason = %reason(),
                      lag_messages = p.lag_messages, "backpressure state rose");
            }
            Some(was) if p.state < was => {
                info!(projection = %name, from = %was, to = %p.state, reason = %reason(),
                      lag_messages = p.lag_messages, "backpressure state fell");
            }
            Some(_) => {}
        }
        match (&p.error, before.and_then(|b| b.error.as_ref())) {
            (Some(e), last) if last != Some(e) => {
                warn!(projection = %name, error = %e, "cannot read the projection's lag; keeping its last state");
            }
            (None, Some(_)) => info!(projection = %name, "lag readable again"),
            _ => {}
        }
        if p.error.is_some() {
            continue;
        }
        gauge!(names::BACKPRESSURE_STATE, "projection" => name.clone()).set(p.state.gauge());
        for part in &p.partitions {
            let labels = [
                ("projection", name.clone()),
                ("topic", part.topic.clone()),
                ("partition", part.partition.to_string()),
            ];
            gauge!(names::LAG_MESSAGES, &labels).set(part.lag_messages as f64);
            if let Some(age) = part.age {
                gauge!(names::LAG_SECONDS, &labels).set(age.as_secs_f64());
            }
        }
    }
}
