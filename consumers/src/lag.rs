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

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{counter, describe_counter, describe_gauge, gauge};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_core::lag::{
    BackpressureState, IntakeDecision, IntakePolicy, LagSnapshot, Observation, PartitionOffsets, TokenBucket, decide,
};
use sluice_core::topology::Topology;
use sluice_producers::{Decision, IntakeGate};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::retry::is_transient_kafka;

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

/// Retries of a failed offsets listing within one refresh.
const LIST_RETRIES: u32 = 3;

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
        brokers: &str,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> Result<watch::Receiver<LagSnapshot>, LagError> {
        let fetcher = Fetcher::new(brokers)?;
        let (tx, rx) = watch::channel(LagSnapshot::empty());
        describe();
        let task =
            refresh_loop(topology, brokers.to_owned(), fetcher, interval.max(Duration::from_millis(10)), tx, shutdown);
        tokio::spawn(task.instrument(info_span!("lag_monitor")));
        Ok(rx)
    }

    /// One snapshot of every projection of `topology`, states decided from normal (no history, so
    /// no hysteresis).
    pub async fn snapshot_once(topology: &Topology, brokers: &str) -> Result<LagSnapshot, LagError> {
        let mut fetcher = Fetcher::new(brokers)?;
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
    brokers: String,
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
            None => match Fetcher::new(&brokers) {
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

/// `(partition, low, high)` of every partition of each topic, or why the topic could not be read.
type Marks = BTreeMap<String, Result<Vec<(i32, i64, i64)>, String>>;

/// The Kafka side of a refresh, all blocking calls.
struct Fetcher {
    brokers: String,
    /// Metadata, watermarks and oldest records; it only ever assigns, never commits.
    reader: BaseConsumer,
    /// One offsets-only client per consumer group.
    groups: HashMap<String, BaseConsumer>,
    /// Kafka timestamp of the record at (topic, partition, offset).
    timestamps: HashMap<(String, i32, i64), i64>,
}

/// A client that only reads: no auto-commit, no offset store, small fetches (it wants one record).
fn client_config(brokers: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("allow.auto.create.topics", "false")
        .set("fetch.wait.max.ms", "50")
        .set("max.partition.fetch.bytes", "65536")
        .set("queued.max.messages.kbytes", "1024");
    c
}

impl Fetcher {
    fn new(brokers: &str) -> Result<Self, KafkaError> {
        // librdkafka wants a group for assign(); this one never joins (no subscribe) nor commits.
        let reader = client_config(brokers, "sluice-lag-monitor").set("group.id", READER_GROUP).create()?;
        Ok(Self { brokers: brokers.to_owned(), reader, groups: HashMap::new(), timestamps: HashMap::new() })
    }

    /// One refresh of every projection in `watched`.
    fn observe(&mut self, watched: &[Watched]) -> BTreeMap<String, Observation> {
        let topics: BTreeSet<&str> = watched.iter().flat_map(|w| w.sources.iter().map(String::as_str)).collect();
        let marks = self.watermarks(&topics);
        let mut observed = BTreeMap::new();
        let mut wanted: BTreeSet<(String, i32, i64)> = BTreeSet::new();
        for w in watched {
            let result = self.projection_offsets(w, &marks);
            if let Ok(offsets) = &result {
                wanted.extend(
                    offsets
                        .iter()
                        .filter(|o| o.lag_messages() > 0)
                        .map(|o| (o.topic.clone(), o.partition, o.position())),
                );
            }
            observed.insert(w.name.clone(), result);
        }
        self.fetch_timestamps(&wanted);
        for offsets in observed.values_mut().flat_map(|r| r.as_mut().ok()) {
            for o in offsets.iter_mut().filter(|o| o.lag_messages() > 0) {
                o.oldest_timestamp_ms = self.timestamps.get(&(o.topic.clone(), o.partition, o.position())).copied();
            }
        }
        // Only what this refresh needed stays cached, so the cache is as small as the lag.
        self.timestamps.retain(|k, _| wanted.contains(k));
        observed
    }

    /// `(low, high)` of every partition of `topics`, or why a topic could not be read.
    fn watermarks(&self, topics: &BTreeSet<&str>) -> Marks {
        let mut out = BTreeMap::new();
        let mut all = Vec::new();
        for topic in topics {
            let partitions = match self.reader.fetch_metadata(Some(topic), REQUEST_TIMEOUT) {
                Err(e) => Err(format!("reading metadata of topic {topic}: {e}")),
                Ok(md) => match md.topics().iter().find(|t| t.name() == *topic) {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                        Ok(t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                    }
                    Some(t) => Err(t.error().map_or_else(
                        || format!("topic {topic} has no partitions"),
                        |e| {
                            format!(
                                "topic {topic}: {} (run `sluice topics apply`?)",
                                rdkafka::error::RDKafkaErrorCode::from(e)
                            )
                        },
                    )),
                    None => Err(format!("topic {topic} does not exist (run `sluice topics apply`)")),
                },
            };
            match partitions {
                Ok(ps) => all.extend(ps.into_iter().map(|p| ((*topic).to_owned(), p))),
                Err(e) => {
                    out.insert((*topic).to_owned(), Err(e));
                }
            }
        }
        if all.is_empty() {
            return out;
        }
        // Two batched ListOffsets requests (earliest, latest) for every partition at once, rather
        // than two round trips per partition.
        let list = |at: Offset| -> Result<HashMap<(String, i32), i64>, String> {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in &all {
                tpl.add_partition_offset(t, *p, at).map_err(|e| e.to_string())?;
            }
            // Leadership moves (a topic just created, a broker restarting) fail the request, or
            // some of its partitions, for a moment: a few quick retries spare the refresh.
            let mut attempt = 0;
            let got = loop {
                // A partition whose leader is moving answers with an error of its own.
                let answer = self.reader.offsets_for_times(tpl.clone(), REQUEST_TIMEOUT).and_then(|got| {
                    match got.elements().iter().find_map(|e| e.error().err().filter(is_transient_kafka)) {
                        Some(moving) => Err(moving),
                        None => Ok(got),
                    }
                });
                match answer {
                    Ok(got) => break got,
                    Err(e) if attempt < LIST_RETRIES => {
                        debug!(error = %e, attempt, "listing offsets failed; retrying");
                        attempt += 1;
                        std::thread::sleep(Duration::from_millis(100) * attempt);
                    }
                    Err(e) => return Err(format!("listing offsets: {e}")),
                }
            };
            got.elements()
                .iter()
                .map(|e| match (e.error(), e.offset()) {
                    (Ok(()), Offset::Offset(o)) => Ok(((e.topic().to_owned(), e.partition()), o)),
                    (Err(err), _) => Err(format!("offsets of {}/{}: {err}", e.topic(), e.partition())),
                    (Ok(()), other) => Err(format!("offsets of {}/{}: got {other:?}", e.topic(), e.partition())),
                })
                .collect()
        };
        match list(Offset::Beginning).and_then(|low| Ok((low, list(Offset::End)?))) {
            Ok((low, high)) => {
                for (topic, p) in all {
                    let key = (topic.clone(), p);
                    let entry = out.entry(topic).or_insert_with(|| Ok(Vec::new()));
                    match (low.get(&key), high.get(&key), entry.as_mut()) {
                        (Some(l), Some(h), Ok(v)) => v.push((p, *l, *h)),
                        (_, _, Ok(_)) => *entry = Err(format!("no offsets returned for {}/{}", key.0, key.1)),
                        (_, _, Err(_)) => {}
                    }
                }
            }
            Err(e) => {
                for (topic, _) in all {
                    out.insert(topic, Err(e.clone()));
                }
            }
        }
        out
    }

    /// The offsets of every source partition of one projection: watermarks plus its group's
    /// committed offsets.
    fn projection_offsets(&mut self, w: &Watched, marks: &Marks) -> Result<Vec<PartitionOffsets>, String> {
        let mut offsets = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for topic in &w.sources {
            let partitions = marks.get(topic).ok_or_else(|| format!("topic {topic} was not read"))?.as_ref()?;
            for &(partition, low, high) in partitions {
                tpl.add_partition(topic, partition);
                offsets.push(PartitionOffsets {
                    topic: topic.clone(),
                    partition,
                    low,
                    high,
                    committed: None,
                    oldest_timestamp_ms: None,
                });
            }
        }
        let group = match self.groups.entry(w.group.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let mut config = client_config(&self.brokers, "sluice-lag-monitor");
                config.set("group.id", &w.group);
                e.insert(config.create().map_err(|e| format!("creating a client of group {}: {e}", w.group))?)
            }
        };
        // It never subscribes, so nothing but client events is queued; drained so they do not pile up.
        while group.poll(Duration::ZERO).is_some() {}
        // A group the broker has not seen yet is assigned a coordinator on first use: the first
        // requests may answer "not coordinator" / "coordinator load in progress" for a moment.
        let mut attempt = 0;
        let committed = loop {
            match group.committed_offsets(tpl.clone(), REQUEST_TIMEOUT) {
                Ok(c) => break c,
                Err(e) if attempt < LIST_RETRIES => {
                    debug!(error = %e, attempt, group = %w.group, "reading committed offsets failed; retrying");
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100) * attempt);
                }
                Err(e) => return Err(format!("reading committed offsets of group {}: {e}", w.group)),
            }
        };
        let committed: HashMap<(String, i32), i64> = committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                // Invalid: the group never committed on this partition.
                _ => None,
            })
            .collect();
        for o in &mut offsets {
            o.committed = committed.get(&(o.topic.clone(), o.partition)).copied();
        }
        Ok(offsets)
    }

    /// Reads the timestamps of the records at `wanted` that are not cached: assigns each partition
    /// at its offset and takes the first record polled. A partition wanted at several offsets
    /// (projections at different points) is read in rounds, one offset each.
    fn fetch_timestamps(&mut self, wanted: &BTreeSet<(String, i32, i64)>) {
        let mut missing: Vec<&(String, i32, i64)> =
            wanted.iter().filter(|k| !self.timestamps.contains_key(*k)).collect();
        while !missing.is_empty() {
            let mut round: HashMap<(String, i32), i64> = HashMap::new();
            missing.retain(|(t, p, o)| match round.entry((t.clone(), *p)) {
                Entry::Vacant(slot) => {
                    slot.insert(*o);
                    false
                }
                Entry::Occupied(_) => true,
            });
            let mut tpl = TopicPartitionList::new();
            for ((t, p), o) in &round {
                if let Err(e) = tpl.add_partition_offset(t, *p, Offset::Offset(*o)) {
                    debug!(topic = %t, partition = p, error = %e, "cannot ask for the oldest record");
                }
            }
            if let Err(e) = self.reader.assign(&tpl) {
                warn!(error = %e, "cannot assign partitions to read the oldest records; their age is unknown");
                return;
            }
            let deadline = Instant::now() + RECORD_WAIT;
            while !round.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    debug!(partitions = round.len(), "oldest records not read in time; their age is unknown for now");
                    break;
                }
                match self.reader.poll(left) {
                    None => {}
                    Some(Ok(m)) => {
                        let key = (m.topic().to_owned(), m.partition());
                        // The record at the offset, or the next one when that offset holds none
                        // (a transaction marker, a compacted record).
                        if let Some(&at) = round.get(&key).filter(|at| m.offset() >= **at) {
                            if let Some(ts) = m.timestamp().to_millis() {
                                self.timestamps.insert((key.0.clone(), key.1, at), ts);
                            }
                            round.remove(&key);
                        }
                    }
                    Some(Err(e)) => debug!(error = %e, "while reading the oldest records"),
                }
            }
            if let Err(e) = self.reader.unassign() {
                warn!(error = %e, "cannot unassign the lag reader");
            }
        }
    }
}

/// The intake side of the monitor: decisions for event types from the latest snapshot, each
/// counted (`sluice_backpressure_decisions_total`) and logged when it changes for an event type,
/// and a token bucket per slowed event type. It is the gateway's [`IntakeGate`]. Cheap to clone;
/// clones share buckets and logs.
#[derive(Debug, Clone)]
pub struct LagGate {
    snapshots: watch::Receiver<LagSnapshot>,
    topology: Arc<Topology>,
    policy: IntakePolicy,
    state: Arc<Mutex<GateState>>,
}

#[derive(Debug, Default)]
struct GateState {
    /// The last decision kind and reason per event type, to log changes only.
    last: HashMap<String, (&'static str, String)>,
    buckets: HashMap<String, TokenBucket>,
}

impl LagGate {
    /// A gate over the snapshots of a [`LagMonitor`] for `topology`'s event types.
    pub fn new(snapshots: watch::Receiver<LagSnapshot>, topology: Arc<Topology>, policy: IntakePolicy) -> Self {
        describe();
        Self { snapshots, topology, policy, state: Arc::default() }
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> LagSnapshot {
        self.snapshots.borrow().clone()
    }

    /// The decision for one event of `event_type` (see [`sluice_core::lag::decide`]), counted and,
    /// when it differs from the last one for that event type, logged with its reason.
    pub fn decide(&self, event_type: &str) -> IntakeDecision {
        let decision = decide(&self.snapshots.borrow(), &self.topology, event_type, &self.policy);
        if let Some(reason) = decision.reason() {
            counter!(names::BACKPRESSURE_DECISIONS, "projection" => reason.projection.clone(),
                     "decision" => decision.kind(), "threshold" => reason.threshold())
            .increment(1);
        }
        let text = decision.reason().map(ToString::to_string).unwrap_or_default();
        if let Ok(mut state) = self.state.lock() {
            let last = state.last.get(event_type);
            if last.is_none_or(|(k, r)| *k != decision.kind() || *r != text) {
                match &decision {
                    // The first decision being "allow" is not news.
                    IntakeDecision::Allow if last.is_none() => {}
                    IntakeDecision::Allow => info!(event_type, "intake allowed again"),
                    IntakeDecision::Slow { rate, delay, .. } => {
                        warn!(event_type, rate, ?delay, reason = %text, "intake slowed");
                    }
                    IntakeDecision::Refuse { retry_after, .. } => {
                        warn!(event_type, ?retry_after, reason = %text, "intake refused");
                    }
                }
                state.last.insert(event_type.to_owned(), (decision.kind(), text));
            }
        }
        decision
    }

    /// Decides and paces `events` events of `event_type` arriving at `now`. A slowed event type
    /// shares one token bucket at the decision's rate (burst: a tenth of a second's worth), each
    /// request reserving its own slot in it; a critical event type in a hard-pressed projection
    /// waits the decision's fixed delay instead, so a full bucket cannot turn into a refusal.
    fn pace(&self, event_type: &str, events: usize, now: Instant) -> Decision {
        match self.decide(event_type) {
            IntakeDecision::Allow => {
                if let Ok(mut state) = self.state.lock() {
                    state.buckets.remove(event_type);
                }
                Decision::Allow
            }
            IntakeDecision::Refuse { retry_after, .. } => Decision::Refuse { retry_after },
            IntakeDecision::Slow { delay, reason, .. } if reason.critical => Decision::Delay(delay),
            IntakeDecision::Slow { rate, delay, .. } => {
                let Ok(mut state) = self.state.lock() else { return Decision::Delay(delay) };
                let burst = u32::try_from((rate / 10.0).ceil() as u64).unwrap_or(u32::MAX).max(1);
                let bucket =
                    state.buckets.entry(event_type.to_owned()).or_insert_with(|| TokenBucket::new(rate, burst, now));
                if bucket.rate() != rate {
                    bucket.set_rate(rate, now);
                }
                let tokens = u32::try_from(events.max(1)).unwrap_or(u32::MAX);
                match bucket.reserve_n(tokens, now, Duration::MAX) {
                    Some(wait) if wait.is_zero() => Decision::Allow,
                    Some(wait) => Decision::Delay(wait),
                    None => Decision::Delay(delay),
                }
            }
        }
    }
}

/// The gateway's hook: [`Decision::Delay`] for a slowed event type (the gateway holds the
/// request, and answers 429 when the wait outlasts the request's time), [`Decision::Refuse`] past
/// a hard threshold, never for a critical event type.
impl IntakeGate for LagGate {
    fn check(&self, event_type: &str) -> Decision {
        self.pace(event_type, 1, Instant::now())
    }

    fn check_batch(&self, event_type: &str, events: usize) -> Decision {
        self.pace(event_type, events, Instant::now())
    }
}
