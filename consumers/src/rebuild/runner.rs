//! A bounded re-projection: read given offset ranges ([`Span`]s) of a projection's source
//! partitions, write them through the projection's [`Sink`], and stop at the end of each range.
//!
//! Data path: Kafka (partitions *assigned* at the spans' start offsets — no group membership, so
//! no rebalances and no interference with the live workers) → per-partition buffers → [`Decoder`]
//! (undecodable records → DLQ) → [`Sink::write_all`] (refused events → DLQ) → with a consumer
//! group, the positions committed for it after every acknowledged batch, so an interrupted run
//! resumes where it stopped. Records at or past a span's end are never written.
//!
//! Why not the worker (`crate::worker`): a worker subscribes to its group, runs until cancelled
//! and can only be stopped from outside once its commits pass a bound — by then it has read and
//! written past it. `sluice replay --to` must stop exactly at the bound, `sluice rebuild` must
//! commit to its own group while the live one keeps running, and both report progress per
//! partition; a small assign-based loop does all three without touching the worker.

use sluice_core::connections::KafkaConnection;
use sluice_producers::kafka::client_config as kafka_config;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_core::event::Position;
use sluice_core::rebuild::Span;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::RebuildError;
use crate::decode::{Decoded, Decoder, Refused};
use crate::retry::{backoff, sleep_or_cancel};
use crate::sink::{Sink, SinkError};
use crate::worker::dlq::{DeadLetter, DeadLetterQueue};

type Tp = (String, i32);

/// How long records are collected before a batch is written anyway.
const LINGER: Duration = Duration::from_millis(200);

/// What a bounded run reads and where it commits.
#[derive(Debug, Clone)]
pub struct Bounded {
    /// Projection name (logs, DLQ headers).
    pub projection: String,
    /// Kafka bootstrap servers.
    pub kafka: KafkaConnection,
    /// Commit positions for this group after every batch (a rebuild's own group, so it can
    /// resume); `None` commits nothing (a replay with `--to` or a single-key rebuild just runs
    /// again after an interruption).
    pub group: Option<String>,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// The ranges to re-project; empty ones are skipped.
    pub spans: Vec<Span>,
    /// Only records whose Kafka key is this (`sluice rebuild --key`); every record when `None`.
    pub key: Option<Vec<u8>>,
    /// Most records written in one batch.
    pub max_batch: usize,
    /// Test failpoint ([`CRASH_AFTER_BATCHES`](crate::failpoint::CRASH_AFTER_BATCHES)): after
    /// this many batches were written, die before committing them, like a `kill -9`. Debug
    /// builds only: a release build has no failpoints.
    #[cfg(debug_assertions)]
    pub crash_after_batches: Option<u64>,
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records read from Kafka inside the spans.
    pub read: u64,
    /// Events handed to the sink and accepted (including those that changed nothing).
    pub applied: u64,
    /// Of those, events the store already had (duplicates, older versions), when the sink tells.
    pub unchanged: Option<u64>,
    /// Records of other keys passed over (`--key`).
    pub other_keys: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Batches written.
    pub batches: u64,
    /// How long the run took.
    pub elapsed: Duration,
}

impl std::ops::AddAssign for Summary {
    fn add_assign(&mut self, o: Self) {
        self.read += o.read;
        self.applied += o.applied;
        self.unchanged = match (self.unchanged, o.unchanged) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.other_keys += o.other_keys;
        self.dead_lettered += o.dead_lettered;
        self.batches += o.batches;
        self.elapsed += o.elapsed;
    }
}

/// Told how far each partition got, after every batch (the CLI draws progress bars from it).
pub trait Progress: Send + Sync {
    /// `topic:partition` is projected up to (not including) `position`.
    fn advanced(&self, topic: &str, partition: i32, position: i64);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn advanced(&self, _: &str, _: i32, _: i64) {}
}

fn kafka(what: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> RebuildError {
    let what = what.into();
    move |source| RebuildError::Kafka { what, source }
}

/// The state of one partition of the run.
#[derive(Debug)]
struct Part {
    end: i64,
    /// The next offset to project.
    position: i64,
    buffered: Vec<OwnedMessage>,
}

/// Re-projects `cfg.spans` through `sink`, committing to `cfg.group` as it goes; stops when every
/// span is done (or when `shutdown` is cancelled, after committing what was written).
pub async fn run<S: Sink>(
    cfg: &Bounded,
    sink: &S,
    decoder: &Decoder,
    progress: &dyn Progress,
    shutdown: &CancellationToken,
) -> Result<Summary, RebuildError> {
    let started = Instant::now();
    let unchanged_before = sink.unchanged();
    let mut parts: BTreeMap<Tp, Part> = cfg
        .spans
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| ((s.topic.clone(), s.partition), Part { end: s.end, position: s.start, buffered: Vec::new() }))
        .collect();
    let mut summary = Summary::default();
    if parts.is_empty() {
        return Ok(summary);
    }
    let group = cfg.group.clone().unwrap_or_else(|| format!("sluice.{}.replay", cfg.projection));
    let consumer: StreamConsumer = kafka_config(&cfg.kafka)
        .set("group.id", &group)
        .set("client.id", format!("sluice-rebuild-{}", cfg.projection))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A start that retention deleted meanwhile: go on from the oldest record left.
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(kafka("creating the replay consumer"))?;
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), p) in &parts {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(p.position))
            .map_err(kafka(format!("assigning {topic}:{partition}")))?;
    }
    consumer.assign(&tpl).map_err(kafka("assigning the partitions"))?;
    let dlq = DeadLetterQueue::connect(&cfg.kafka, cfg.dlq_topic.clone(), cfg.projection.clone())
        .map_err(kafka("creating the DLQ producer"))?;
    info!(projection = %cfg.projection, partitions = parts.len(), group = ?cfg.group, "bounded re-projection started");

    let mut flush_at: Option<Instant> = None;
    loop {
        let open: usize = parts.values().filter(|p| p.position < p.end).count();
        let buffered: usize = parts.values().map(|p| p.buffered.len()).sum();
        let due = flush_at.is_some_and(|t| Instant::now() >= t);
        if buffered > 0 && (buffered >= cfg.max_batch || due || open == 0) {
            summary += flush(cfg, sink, decoder, &dlq, &mut parts, shutdown).await?;
            #[cfg(debug_assertions)]
            crate::failpoint::crash_after(summary.batches, cfg.crash_after_batches);
            commit(&consumer, cfg.group.is_some(), &parts)?;
            for ((topic, partition), p) in &parts {
                progress.advanced(topic, *partition, p.position);
            }
            flush_at = None;
            continue;
        }
        if open == 0 || shutdown.is_cancelled() {
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            polled = tokio::time::timeout(Duration::from_secs(1), consumer.recv()) => match polled {
                Ok(Ok(m)) => {
                    let tp = (m.topic().to_owned(), m.partition());
                    if let Some(p) = parts.get_mut(&tp)
                        && m.offset() >= p.position && m.offset() < p.end
                    {
                        p.buffered.push(m.detach());
                        flush_at.get_or_insert_with(|| Instant::now() + LINGER);
                    }
                }
                Ok(Err(e)) => warn!(error = %e, "kafka consumer error"),
                Err(_) => {}
            },
        }
    }
    // Whatever is still buffered at a cancellation is not committed: read again next time.
    summary.elapsed = started.elapsed();
    summary.unchanged = match (sink.unchanged(), unchanged_before) {
        (Some(after), Some(before)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    info!(projection = %cfg.projection, read = summary.read, applied = summary.applied,
          dead_lettered = summary.dead_lettered, "bounded re-projection finished");
    Ok(summary)
}

/// Commits every partition's position to the group (synchronously: a resumed run must not
/// repeat more than one batch).
fn commit(consumer: &StreamConsumer, enabled: bool, parts: &BTreeMap<Tp, Part>) -> Result<(), RebuildError> {
    if !enabled {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), p) in parts {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(p.position))
            .map_err(kafka(format!("preparing the commit of {topic}:{partition}")))?;
    }
    consumer.commit(&tpl, CommitMode::Sync).map_err(kafka("committing the rebuild's progress"))
}

/// Decodes, filters and writes every buffered record, dead-letters what cannot be applied, and
/// moves each partition's position past what it wrote.
async fn flush<S: Sink>(
    cfg: &Bounded,
    sink: &S,
    decoder: &Decoder,
    dlq: &DeadLetterQueue,
    parts: &mut BTreeMap<Tp, Part>,
    shutdown: &CancellationToken,
) -> Result<Summary, RebuildError> {
    let mut summary = Summary::default();
    // The encoded batches, and of each its partition, event count and last offset.
    let (mut batches, mut written) = (Vec::new(), Vec::new());
    let mut originals: HashMap<(String, i32, i64), OwnedMessage> = HashMap::new();
    for ((topic, partition), p) in parts.iter_mut() {
        let msgs = std::mem::take(&mut p.buffered);
        let (Some(first), Some(last)) = (msgs.first().map(Message::offset), msgs.last().map(Message::offset)) else {
            continue;
        };
        // Each event handed to the sink's encoder as soon as it is decoded (see `Sink::encoder`).
        let (mut encoder, mut events) = (sink.encoder(topic, *partition, msgs.len()), 0);
        for m in msgs {
            summary.read += 1;
            if cfg.key.as_deref().is_some_and(|k| m.key() != Some(k)) {
                summary.other_keys += 1;
                continue;
            }
            let position = Position { topic: topic.clone(), partition: *partition, offset: m.offset() };
            match decoder.decode_retrying(&m, position, shutdown).await {
                Ok(Some(Decoded::Event(event))) => {
                    events += 1;
                    encoder.push(event);
                }
                // A CDC tombstone: nothing to write.
                Ok(Some(Decoded::Nothing(_))) => {}
                Ok(None) => return Err(RebuildError::Cancelled),
                Err(refused) => {
                    dead_letter(dlq, &m, "decode", refused).await?;
                    summary.dead_lettered += 1;
                }
            }
            originals.insert((topic.clone(), *partition, m.offset()), m);
        }
        written.push((topic.clone(), *partition, events, last));
        batches.push(encoder.finish(first, last));
    }
    let mut attempt = 0;
    let rejected = loop {
        match sink.write_all(&batches).await {
            Ok(rejected) => break rejected,
            Err(SinkError::Config(message)) => {
                return Err(RebuildError::Sink { sink: sink.kind(), message });
            }
            Err(SinkError::Transient(reason)) => {
                warn!(%reason, attempt, "sink write failed; retrying");
                if !sleep_or_cancel(backoff(attempt), shutdown).await {
                    return Err(RebuildError::Cancelled);
                }
                attempt += 1;
            }
        }
    };
    drop(batches);
    for ((topic, partition, events, last_offset), refused) in written.into_iter().zip(rejected) {
        summary.batches += u64::from(events > 0);
        summary.applied += (events - refused.len()) as u64;
        for r in refused {
            if let Some(m) = originals.get(&(topic.clone(), partition, r.offset)) {
                dead_letter(dlq, m, sink.kind(), Refused::by_sink(r.reason)).await?;
                summary.dead_lettered += 1;
            }
        }
        if let Some(p) = parts.get_mut(&(topic, partition)) {
            p.position = p.position.max(last_offset + 1);
        }
    }
    Ok(summary)
}

/// Sends one record to the DLQ, retrying a few times; the run stops if the DLQ stays unwritable
/// (committing past a record that is neither projected nor dead-lettered would lose it).
async fn dead_letter(
    dlq: &DeadLetterQueue,
    m: &OwnedMessage,
    stage: &'static str,
    refused: Refused,
) -> Result<(), RebuildError> {
    warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), stage, code = refused.code,
          reason = %refused.reason, dlq = dlq.topic(), "record sent to the dead-letter topic");
    let letter = DeadLetter::from_message(m, stage, refused);
    let mut last = String::new();
    for attempt in 0..5 {
        match dlq.send(&letter).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = e;
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
    Err(RebuildError::Dlq(last))
}
