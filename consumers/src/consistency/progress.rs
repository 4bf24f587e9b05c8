//! Waiting for projections to include writes, cheaply: one reader of a projection's committed
//! offsets per process, however many callers wait on it (the gateway's concurrent reads, a
//! report waiting on its data).
//!
//! The workers publish what they have applied by committing it (a commit follows every
//! acknowledged write within [`crate::worker`]'s short interval). A [`Progress`] keeps, per
//! consumer group, one task that reads the group's committed offsets every [`POLL_EVERY`] while
//! anybody waits — for the partitions somebody waits on, in one request — and hands a reading to
//! the waiters through a `watch` channel when it moved, or when a waiter came in since the last
//! one (each waiter's first answer is a reading asked for after it came in). A waiter costs a
//! subscription and its positions: no Kafka client, no thread, no request of its own, and no
//! wake-up while nothing moves. The task sleeps while nobody waits.
//!
//! A token is validated before it is waited on ([`super`]'s rules). The partition counts and
//! ends that takes are cached and refreshed only when a token reaches past them, one refresh at
//! a time: the callers queued behind it find the fresh figure and ask Kafka nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use sluice_core::connections::KafkaConnection;
use sluice_core::consistency::ConsistencyToken;
use sluice_core::topology::ProjectionConfig;
use sluice_producers::kafka::client_config as kafka_config;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use sluice_core::inclusion::{Committed, Inclusion, Position, inclusion};

use super::{InclusionError, positions};

/// How often a group's committed offsets are read while somebody waits on them.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// How long one Kafka request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where projections stand against consistency tokens, for every caller of a process.
#[derive(Debug)]
pub struct Progress {
    kafka: KafkaConnection,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    stop: CancellationToken,
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Progress {
    /// Checks on the cluster `kafka` names. Connects on first use; call within a tokio runtime.
    pub fn new(kafka: KafkaConnection) -> Self {
        Self { kafka, groups: Mutex::default(), stop: CancellationToken::new() }
    }

    /// Waits until `projection` includes `token` or `within` passes; the last [`Inclusion`] either
    /// way (a caller answers "not yet" with where it is behind). Always answers from committed
    /// offsets read after the call began: `within` zero is a check of where it stands now. A
    /// token that cannot be about the projection is refused at once.
    pub async fn wait(
        &self,
        name: &str,
        projection: &ProjectionConfig,
        token: &ConsistencyToken,
        within: Duration,
    ) -> Result<Inclusion, InclusionError> {
        let deadline = Instant::now() + within;
        let positions = positions(name, projection, token)?;
        let group = self.group(&projection.group)?;
        group.validate(&positions).await?;
        group.wait(&positions, deadline).await
    }

    /// The group's shared reader, started on first use.
    fn group(&self, id: &str) -> Result<Arc<Group>, InclusionError> {
        let mut groups = self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(g) = groups.get(id) {
            return Ok(Arc::clone(g));
        }
        let consumer = kafka_config(&self.kafka)
            .set("group.id", id)
            .set("client.id", "sluice-consistency")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|source| InclusionError::Kafka { what: "creating a client", source })?;
        let group = Arc::new(Group::new(consumer));
        tokio::spawn(poll(Arc::clone(&group), self.stop.clone()));
        groups.insert(id.to_owned(), Arc::clone(&group));
        Ok(group)
    }
}

/// One reading of a group's committed offsets.
#[derive(Debug, Default)]
struct Snapshot {
    /// The reading's request number (counted from 1; 0 is none yet).
    request: u64,
    /// The committed offsets of the partitions somebody waits on (the last good reading when
    /// this one failed: committed offsets only move forward, so it is still a lower bound).
    committed: Committed,
    /// Why this reading failed, if it did.
    error: Option<KafkaError>,
}

/// What a token is validated against: partition counts and ends, with when they were asked for
/// (not when the answer came: an answer to a request sent before a write was acknowledged may
/// arrive after it, and must not refute it).
#[derive(Debug, Default)]
struct Facts {
    partitions: HashMap<String, (usize, Instant)>,
    ends: HashMap<(String, i32), (i64, Instant)>,
}

/// One consumer group's shared reader (a client of the group that never joins it).
struct Group {
    consumer: Arc<BaseConsumer>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    /// The partitions somebody waits or waited on (bounded by the sources' partitions).
    interest: Mutex<BTreeSet<(String, i32)>>,
    /// How many callers wait now; the reader sleeps at 0.
    waiting: AtomicUsize,
    /// Readings asked for so far (a waiter's first answer is a later one).
    requested: AtomicU64,
    /// A waiter came in since the last reading was asked for: hand the next one out, moved or not.
    arrived: AtomicBool,
    wake: Notify,
    /// Held while a token is validated: one refresh at a time.
    facts: tokio::sync::Mutex<Facts>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("waiting", &self.waiting)
            .field("interest", &self.interest)
            .finish_non_exhaustive()
    }
}

impl Group {
    fn new(consumer: BaseConsumer) -> Self {
        Self {
            consumer: Arc::new(consumer),
            snapshots: watch::Sender::new(Arc::default()),
            interest: Mutex::default(),
            waiting: AtomicUsize::new(0),
            requested: AtomicU64::new(0),
            arrived: AtomicBool::new(false),
            wake: Notify::new(),
            facts: tokio::sync::Mutex::default(),
        }
    }

    /// Refuses positions no write of this cluster can have: a partition the topic lacks, an offset
    /// at or past the partition's end. A cached figure that refutes a position is read again first
    /// (unless it was read after this call began).
    async fn validate(&self, positions: &[Position]) -> Result<(), InclusionError> {
        let asked = Instant::now();
        let mut facts = self.facts.lock().await;
        for p in positions {
            let partitions = match facts.partitions.get(&p.topic) {
                Some(&(n, at)) if p.partition < i32::try_from(n).unwrap_or(i32::MAX) || at >= asked => n,
                _ => {
                    let sent = Instant::now();
                    let n = self.partitions_of(&p.topic).await?;
                    facts.partitions.insert(p.topic.clone(), (n, sent));
                    n
                }
            };
            if usize::try_from(p.partition).map_or(true, |i| i >= partitions) {
                return Err(InclusionError::UnknownPartition {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    partitions,
                });
            }
            let key = (p.topic.clone(), p.partition);
            let end = match facts.ends.get(&key) {
                Some(&(end, at)) if p.offset < end || at >= asked => end,
                _ => {
                    let sent = Instant::now();
                    let end = self.end_of(&p.topic, p.partition).await?;
                    facts.ends.insert(key, (end, sent));
                    end
                }
            };
            if p.offset >= end {
                return Err(InclusionError::BeyondEnd {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    offset: p.offset,
                    end,
                });
            }
        }
        Ok(())
    }

    async fn partitions_of(&self, topic: &str) -> Result<usize, InclusionError> {
        let (consumer, topic) = (Arc::clone(&self.consumer), topic.to_owned());
        blocking("reading the topic's metadata", move || {
            let md = consumer.fetch_metadata(Some(&topic), REQUEST_TIMEOUT)?;
            Ok(md.topics().first().map_or(0, |t| t.partitions().len()))
        })
        .await
    }

    async fn end_of(&self, topic: &str, partition: i32) -> Result<i64, InclusionError> {
        let (consumer, topic) = (Arc::clone(&self.consumer), topic.to_owned());
        blocking("reading the partition's end", move || {
            Ok(consumer.fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)?.1)
        })
        .await
    }

    /// Waits on the shared readings until `positions` are included or `deadline` passes. Only a
    /// reading taken after the wait began answers; the first one is awaited past the deadline
    /// (a check with no wait still reads once).
    async fn wait(&self, positions: &[Position], deadline: Instant) -> Result<Inclusion, InclusionError> {
        let (_waiting, since) = self.enter(positions);
        let mut readings = self.snapshots.subscribe();
        let first_by = Instant::now() + REQUEST_TIMEOUT + POLL_EVERY;
        loop {
            let snapshot = Arc::clone(&readings.borrow_and_update());
            let fresh = snapshot.request > since;
            if fresh {
                let inc = inclusion(positions, &snapshot.committed);
                if inc.included() {
                    return Ok(inc);
                }
                if Instant::now() >= deadline {
                    return match &snapshot.error {
                        Some(e) => Err(InclusionError::Kafka { what: "reading committed offsets", source: e.clone() }),
                        None => Ok(inc),
                    };
                }
            }
            let until = if fresh { deadline } else { deadline.max(first_by) };
            match tokio::time::timeout_at(until, readings.changed()).await {
                Ok(Ok(())) => {}
                // The deadline, with a fresh reading: answered above (its error, if it failed).
                Err(_) if fresh => {}
                // The reader is gone (its Progress was dropped) or never answered in time.
                Ok(Err(_)) | Err(_) => return Err(InclusionError::NoAnswer(REQUEST_TIMEOUT)),
            }
        }
    }

    /// Counts a waiter in (until the guard drops) and adds its partitions to those read; the
    /// number of readings asked for before: a reading numbered past it includes its partitions.
    fn enter(&self, positions: &[Position]) -> (Waiting<'_>, u64) {
        {
            let mut interest = self.interest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            interest.extend(positions.iter().map(|p| (p.topic.clone(), p.partition)));
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.arrived.store(true, Ordering::SeqCst);
        let since = self.requested.load(Ordering::SeqCst);
        self.wake.notify_one();
        (Waiting(&self.waiting), since)
    }

    /// The partitions to read, as a request.
    fn request(&self) -> TopicPartitionList {
        let interest = self.interest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in interest.iter() {
            tpl.add_partition(topic, *partition);
        }
        tpl
    }
}

/// A caller counted among the waiting; uncounted when dropped (answered, or its request gone).
struct Waiting<'g>(&'g AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The group's reader: while anybody waits, reads the committed offsets every [`POLL_EVERY`]
/// and hands the reading to every waiter; sleeps while nobody does; ends with `stop`.
async fn poll(group: Arc<Group>, stop: CancellationToken) {
    loop {
        while group.waiting.load(Ordering::SeqCst) == 0 {
            tokio::select! {
                () = stop.cancelled() => return,
                () = group.wake.notified() => {}
            }
        }
        // In this order: a waiter whose arrival this clears has its partitions in this request.
        let arrived = group.arrived.swap(false, Ordering::SeqCst);
        let number = group.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let (consumer, request) = (Arc::clone(&group.consumer), group.request());
        let read = off_runtime(move || consumer.committed_offsets(request, REQUEST_TIMEOUT)).await;
        let last = Arc::clone(&group.snapshots.borrow());
        let (committed, error) = match read {
            Ok(tpl) => (committed_of(&tpl), None),
            Err(e) => (last.committed.clone(), Some(e)),
        };
        if arrived || committed != last.committed || error != last.error {
            group.snapshots.send_replace(Arc::new(Snapshot { request: number, committed, error }));
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}

fn committed_of(tpl: &TopicPartitionList) -> Committed {
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

/// Runs a blocking librdkafka call off the runtime's threads.
async fn off_runtime<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(call).await.unwrap_or(Err(KafkaError::Canceled))
}

/// [`off_runtime`], its failure saying `what` was asked.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    call: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, InclusionError> {
    off_runtime(call).await.map_err(|source| InclusionError::Kafka { what, source })
}
