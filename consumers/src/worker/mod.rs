//! A projection worker: one consumer group reading the projection's topics, writing to its sink.
//!
//! Data path: Kafka → per-partition buffers → [`Decoder`] (bad records → DLQ) → [`Sink::write`]
//! (refused events → DLQ) → offsets acknowledged → committed. The loop collects records until the
//! sink's batch size or linger is reached, then writes every partition's batch concurrently and
//! commits; it does not poll while writing, so the work in memory is bounded by one batch
//! (lag-aware pausing comes with the backpressure work). Offsets are committed only for records the
//! sink or the DLQ acknowledged, never past one that is not ([`OffsetTracker`]).
//!
//! Rebalance: on revocation the context commits what is acknowledged, synchronously, and the loop
//! drops what it had buffered for those partitions (the next owner reads them again — sinks are
//! idempotent). Shutdown: the cancellation token stops polling; buffered records are written and
//! committed synchronously within the drain deadline.

pub mod dlq;
pub mod end;
pub mod metrics;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rand::Rng;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use sluice_core::event::Position;
use sluice_core::offsets::OffsetTracker;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::decode::{DecodeError, Decoder};
use crate::sink::{Batch, Sink, SinkError};
use dlq::{DeadLetter, DeadLetterQueue};

type Tp = (String, i32);

/// The shortest linger the self-clocking batching uses (see `run`).
const MIN_LINGER: Duration = Duration::from_millis(10);

/// How long a poll may find nothing before the worker considers itself at the head of the log
/// and writes what it buffered. librdkafka hands over a fetched batch record by record without
/// waiting, so a gap this long means the local queue is empty.
const IDLE_PROBE: Duration = Duration::from_millis(5);

/// What a worker needs besides its sink.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Projection name (logs, DLQ headers).
    pub projection: String,
    /// Consumer group: one per projection, so projections lag and replay independently.
    pub group: String,
    /// Source topics.
    pub topics: Vec<String>,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// How long a shutdown may spend writing and committing what is buffered.
    pub drain_deadline: Duration,
    /// Extra librdkafka settings for the consumer (e.g. `session.timeout.ms`).
    pub consumer_overrides: Vec<(String, String)>,
    /// Test failpoint: after this many batches were written, die before committing them (the
    /// crash between a sink write and its commit that at-least-once delivery must survive).
    /// Set from `SLUICE_FAILPOINT_CRASH_AFTER_BATCHES` by the CLI; never in production.
    pub crash_after_batches: Option<u64>,
}

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Kafka client set-up failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The sink reported a configuration error: moving on would lose data.
    #[error("sink {sink}: {message}")]
    SinkConfig {
        /// Sink kind.
        sink: &'static str,
        /// Its message.
        message: String,
    },
    /// A partition's offsets went wrong: a bug, reported rather than committing wrong.
    #[error("offset tracking: {0}")]
    Offsets(#[from] sluice_core::offsets::OffsetError),
}

/// Counters of one run, printed at the end and logged on the way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records read from Kafka.
    pub consumed: u64,
    /// Events the sink accepted.
    pub projected: u64,
    /// Records sent to the DLQ.
    pub dead_lettered: u64,
    /// Batches written.
    pub batches: u64,
    /// From the first record read to the last batch acknowledged: the time the worker was busy
    /// (throughput = projected / active, without start-up and group join).
    pub active: Duration,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Self) {
        self.consumed += o.consumed;
        self.projected += o.projected;
        self.dead_lettered += o.dead_lettered;
        self.batches += o.batches;
        self.active += o.active;
    }
}

/// State shared with the rebalance callback, which runs inside `recv()` on the polling task.
#[derive(Debug, Default)]
struct Shared {
    /// Acknowledged commit points not yet known to be committed.
    acked: HashMap<Tp, i64>,
    /// Partitions revoked since the loop last looked.
    revoked: Vec<Tp>,
}

struct WorkerContext {
    shared: Arc<Mutex<Shared>>,
}

impl ClientContext for WorkerContext {}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else { return };
        let Ok(mut shared) = self.shared.lock() else { return };
        let mut commit = TopicPartitionList::new();
        for e in tpl.elements() {
            let tp = (e.topic().to_owned(), e.partition());
            if let Some(offset) = shared.acked.remove(&tp) {
                let _ = commit.add_partition_offset(&tp.0, tp.1, Offset::Offset(offset));
            }
            shared.revoked.push(tp);
        }
        if commit.count() > 0 {
            match consumer.commit(&commit, CommitMode::Sync) {
                Ok(()) => info!(partitions = commit.count(), "committed acknowledged offsets before revocation"),
                // Not fatal: the next owner re-reads from the last commit; sinks are idempotent.
                Err(e) => warn!(error = %e, "commit before revocation failed; records will be re-delivered"),
            }
        }
    }
}

/// A projection worker.
#[derive(Debug)]
pub struct Worker<S> {
    cfg: WorkerConfig,
    sink: S,
    decoder: Arc<Decoder>,
    metrics: metrics::WorkerMetrics,
}

/// Exponential backoff with full jitter, capped at 30 s.
fn backoff(attempt: u32) -> Duration {
    let cap = Duration::from_millis(100).saturating_mul(1 << attempt.min(9)).min(Duration::from_secs(30));
    Duration::from_millis(rand::rng().random_range(cap.as_millis() as u64 / 2..=cap.as_millis() as u64))
}

impl<S: Sink> Worker<S> {
    /// A worker for `cfg` writing to `sink`.
    pub fn new(cfg: WorkerConfig, sink: S, decoder: Decoder) -> Self {
        let metrics = metrics::WorkerMetrics::new(&cfg.projection, sink.kind());
        Self { cfg, sink, decoder: Arc::new(decoder), metrics }
    }

    /// Runs until `shutdown` is cancelled (then drains) or a configuration error stops it.
    pub async fn run(self, shutdown: CancellationToken) -> Result<Stats, WorkerError> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.cfg.brokers)
            .set("group.id", &self.cfg.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("client.id", format!("sluice-{}", self.cfg.projection));
        for (k, v) in &self.cfg.consumer_overrides {
            config.set(k, v);
        }
        let consumer: StreamConsumer<WorkerContext> =
            config.create_with_context(WorkerContext { shared: shared.clone() })?;
        let topics: Vec<&str> = self.cfg.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.cfg.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()?;
        let dlq = DeadLetterQueue::new(producer, self.cfg.dlq_topic.clone(), self.cfg.projection.clone());
        info!(projection = %self.cfg.projection, group = %self.cfg.group, topics = ?self.cfg.topics,
              sink = self.sink.kind(), dlq = %self.cfg.dlq_topic, "worker started");

        let batching = self.sink.batching();
        let mut buffers: BTreeMap<Tp, Vec<OwnedMessage>> = BTreeMap::new();
        let mut trackers: HashMap<Tp, OffsetTracker> = HashMap::new();
        let mut buffered = 0usize;
        let mut flush_at: Option<Instant> = None;
        let mut linger = batching.linger;
        let mut stats = Stats::default();
        let mut last_report = Instant::now();
        let mut first_record: Option<Instant> = None;
        let mut last_ack: Option<Instant> = None;

        loop {
            // With records buffered, poll briefly: a poll that finds nothing means the local fetch
            // queue is empty, i.e. the worker is at the head of the log (see `idle` below).
            let wait = match flush_at {
                None => Duration::from_secs(1),
                Some(t) => t.saturating_duration_since(Instant::now()).min(IDLE_PROBE),
            };
            let mut idle = false;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                polled = tokio::time::timeout(wait, consumer.recv()) => match polled {
                    Err(_) => idle = true,
                    Ok(Ok(msg)) => {
                        self.metrics.consumed.increment(1);
                        first_record.get_or_insert_with(Instant::now);
                        let tp = (msg.topic().to_owned(), msg.partition());
                        buffers.entry(tp).or_default().push(msg.detach());
                        buffered += 1;
                        stats.consumed += 1;
                        flush_at.get_or_insert_with(|| Instant::now() + linger);
                    }
                    // librdkafka retries on its own; these are reports (broker down, …), not fatal.
                    Ok(Err(e)) => { warn!(error = %e, "kafka consumer error"); tokio::time::sleep(Duration::from_millis(200)).await; }
                },
            }
            let dropped = drop_revoked(&shared, &mut buffers, &mut trackers);
            buffered -= dropped;
            // Adaptive batching: while behind, records stream in back to back and batches fill up
            // to the configured size or linger (throughput); at the head of the log nothing more
            // is coming, so the batch is written at once instead of waiting out the linger
            // (latency).
            let due = idle || flush_at.is_some_and(|t| Instant::now() >= t);
            if buffered > 0 && (buffered >= batching.max_records || due) {
                let started = Instant::now();
                stats += self.flush(&consumer, &mut buffers, &mut trackers, &dlq, &shared, &shutdown).await?;
                // Self-clocking linger: collect for about as long as the last write took. A steady
                // stream then gets batches sized to what the sink absorbs in that time (latency
                // stays near one write), a backlog still fills batches to `max_records`, and the
                // configured linger remains the upper bound.
                linger = started.elapsed().clamp(MIN_LINGER, batching.linger.max(MIN_LINGER));
                last_ack = Some(Instant::now());
                if self.cfg.crash_after_batches.is_some_and(|n| stats.batches >= n) {
                    // Like SIGKILL: no drain, no commit. The written batches will be re-delivered.
                    error!(batches = stats.batches, "failpoint: crashing after the sink write, before the commit");
                    std::process::abort();
                }
                buffered = buffers.values().map(Vec::len).sum();
                flush_at = (buffered > 0).then(|| Instant::now() + linger);
                commit(&consumer, &mut trackers, &shared, CommitMode::Async);
            } else if buffered == 0 {
                flush_at = None;
            }
            if last_report.elapsed() >= Duration::from_secs(10) {
                info!(consumed = stats.consumed, projected = stats.projected, dead_lettered = stats.dead_lettered,
                      batches = stats.batches, "progress");
                last_report = Instant::now();
            }
        }

        // Drain: write what is buffered (a fresh token: the run's token is already cancelled),
        // then commit synchronously, all within the deadline.
        info!(buffered, deadline = ?self.cfg.drain_deadline, "shutting down: draining buffered records");
        let drain = CancellationToken::new();
        let drained = tokio::time::timeout(
            self.cfg.drain_deadline,
            self.flush(&consumer, &mut buffers, &mut trackers, &dlq, &shared, &drain),
        )
        .await;
        match drained {
            Ok(Ok(s)) => {
                if s.batches > 0 {
                    last_ack = Some(Instant::now());
                }
                stats += s;
            }
            Ok(Err(e)) => error!(error = %e, "drain failed; unwritten records will be re-delivered"),
            Err(_) => {
                drain.cancel();
                warn!("drain deadline passed; unwritten records will be re-delivered");
            }
        }
        commit(&consumer, &mut trackers, &shared, CommitMode::Sync);
        if let (Some(first), Some(last)) = (first_record, last_ack) {
            stats.active = last.saturating_duration_since(first);
        }
        info!(consumed = stats.consumed, projected = stats.projected, dead_lettered = stats.dead_lettered,
              batches = stats.batches, "worker stopped");
        Ok(stats)
    }

    /// Decodes every buffered partition (concurrently), writes the decoded batches with one
    /// [`Sink::write_all`], and acknowledges what was written or dead-lettered.
    async fn flush(
        &self,
        consumer: &StreamConsumer<WorkerContext>,
        buffers: &mut BTreeMap<Tp, Vec<OwnedMessage>>,
        trackers: &mut HashMap<Tp, OffsetTracker>,
        dlq: &DeadLetterQueue,
        shared: &Arc<Mutex<Shared>>,
        shutdown: &CancellationToken,
    ) -> Result<Stats, WorkerError> {
        let work: Vec<(Tp, Vec<OwnedMessage>)> = std::mem::take(buffers).into_iter().collect();
        for ((topic, partition), msgs) in &work {
            let t = trackers.entry((topic.clone(), *partition)).or_default();
            for m in msgs {
                t.received(m.offset())?;
            }
        }
        let decoded = join_all(work.iter().map(|(tp, msgs)| {
            let span = info_span!("partition", topic = %tp.0, partition = tp.1);
            self.decode_partition(tp, msgs, dlq, shutdown).instrument(span)
        }))
        .await;
        let mut stats = Stats::default();
        // Partitions whose records are all decoded (or dead-lettered), with their batch.
        let mut ready: Vec<(usize, Batch)> = Vec::new();
        for (i, d) in decoded.into_iter().enumerate() {
            if let Some((batch, s)) = d {
                stats += s;
                ready.push((i, batch));
            }
        }
        let batches: Vec<Batch> = ready.iter().map(|(_, b)| b.clone()).collect();
        // `None` (cancelled mid-retry): nothing is acknowledged, so nothing is committed.
        let written: Vec<Vec<crate::sink::Rejected>> =
            self.write_batches(consumer, buffers, &batches, shutdown).await?.unwrap_or_default();
        let mut done = vec![false; work.len()];
        for ((i, batch), rejected) in ready.iter().zip(written) {
            let msgs = &work[*i].1;
            let by_offset: HashMap<i64, &OwnedMessage> = msgs.iter().map(|m| (m.offset(), m)).collect();
            stats.batches += u64::from(!batch.events.is_empty());
            stats.projected += (batch.events.len() - rejected.len()) as u64;
            self.metrics.projected.increment((batch.events.len() - rejected.len()) as u64);
            self.metrics.record_visible(&batch.events);
            let mut all_sent = true;
            for r in rejected {
                let Some(m) = by_offset.get(&r.offset) else {
                    error!(offset = r.offset, "sink rejected an offset that is not in the batch; ignoring the rejection");
                    continue;
                };
                if !self.dead_letter(dlq, m, self.sink.kind(), r.reason, shutdown).await {
                    all_sent = false;
                    break;
                }
                stats.dead_lettered += 1;
            }
            done[*i] = all_sent;
        }
        for ((tp, msgs), done) in work.into_iter().zip(done) {
            let t = trackers.entry(tp.clone()).or_default();
            if done {
                for m in &msgs {
                    t.ack(m.offset())?;
                }
                if let (Some(point), Ok(mut sh)) = (t.commit_point(), shared.lock()) {
                    sh.acked.insert(tp, point);
                }
            } else {
                // Not acknowledged, so not committed: re-delivered after a restart or rebalance.
                t.reset();
            }
        }
        Ok(stats)
    }

    /// Decodes one partition's records (bad ones to the DLQ) into a batch; `None` when cancelled
    /// before it finished.
    async fn decode_partition(
        &self,
        (topic, partition): &Tp,
        msgs: &[OwnedMessage],
        dlq: &DeadLetterQueue,
        shutdown: &CancellationToken,
    ) -> Option<(Batch, Stats)> {
        let (first, last) = (msgs.first()?, msgs.last()?);
        let mut stats = Stats::default();
        let mut events = Vec::with_capacity(msgs.len());
        for m in msgs {
            let position = Position { topic: topic.clone(), partition: *partition, offset: m.offset() };
            let mut attempt = 0;
            loop {
                match self.decoder.decode(m.payload(), position.clone()).await {
                    Ok(event) => {
                        events.push(event);
                        break;
                    }
                    Err(DecodeError::Permanent(reason)) => {
                        if !self.dead_letter(dlq, m, "decode", reason, shutdown).await {
                            return None;
                        }
                        stats.dead_lettered += 1;
                        break;
                    }
                    Err(DecodeError::Transient(reason)) => {
                        warn!(%reason, attempt, "decode failed transiently; retrying");
                        if !sleep_or_cancel(backoff(attempt), shutdown).await {
                            return None;
                        }
                        attempt += 1;
                    }
                }
            }
        }
        let batch = Batch {
            topic: topic.clone(),
            partition: *partition,
            events,
            first_offset: first.offset(),
            last_offset: last.offset(),
        };
        Some((batch, stats))
    }

    /// Writes the batches, retrying transient failures with backoff; the refused events of each
    /// batch, or `None` when cancelled before the sink succeeded.
    ///
    /// While the sink is failing, the assigned partitions are paused and the consumer keeps being
    /// polled, so the worker stays in its group (no `max.poll.interval.ms` eviction) without
    /// fetching more: memory stays flat however long the sink is down. Records that were already
    /// fetched before the pause go to `buffers` for the next flush.
    async fn write_batches(
        &self,
        consumer: &StreamConsumer<WorkerContext>,
        buffers: &mut BTreeMap<Tp, Vec<OwnedMessage>>,
        batches: &[Batch],
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<Vec<crate::sink::Rejected>>>, WorkerError> {
        let mut paused: Option<TopicPartitionList> = None;
        let result = self.write_batches_paused(consumer, buffers, batches, shutdown, &mut paused).await;
        if let Some(tpl) = paused {
            match consumer.resume(&tpl) {
                Ok(()) => info!(partitions = tpl.count(), "sink is back: partitions resumed"),
                Err(e) => error!(error = %e, "cannot resume the paused partitions"),
            }
            self.metrics.paused.set(0.0);
        }
        result
    }

    async fn write_batches_paused(
        &self,
        consumer: &StreamConsumer<WorkerContext>,
        buffers: &mut BTreeMap<Tp, Vec<OwnedMessage>>,
        batches: &[Batch],
        shutdown: &CancellationToken,
        paused: &mut Option<TopicPartitionList>,
    ) -> Result<Option<Vec<Vec<crate::sink::Rejected>>>, WorkerError> {
        // Batches whose records were all dead-lettered have nothing to write.
        let nonempty: Vec<Batch> = batches.iter().filter(|b| !b.events.is_empty()).cloned().collect();
        let mut attempt = 0;
        let mut rejected = loop {
            if nonempty.is_empty() {
                break Vec::new();
            }
            let started = Instant::now();
            match self.sink.write_all(&nonempty).await {
                Ok(rejected) => {
                    self.metrics.write_seconds.record(started.elapsed().as_secs_f64());
                    debug!(batches = nonempty.len(), took = ?started.elapsed(), "batches written");
                    for b in &nonempty {
                        self.metrics.batch_size.record(b.events.len() as f64);
                    }
                    break rejected;
                }
                Err(SinkError::Config(message)) => {
                    return Err(WorkerError::SinkConfig { sink: self.sink.kind(), message });
                }
                Err(SinkError::Transient(reason)) => {
                    self.metrics.write_retries.increment(1);
                    warn!(%reason, attempt, batches = nonempty.len(), "sink write failed; retrying");
                    if paused.is_none() {
                        match consumer.assignment().and_then(|tpl| consumer.pause(&tpl).map(|()| tpl)) {
                            Ok(tpl) => {
                                warn!(partitions = tpl.count(), "sink unavailable: partitions paused until it is back");
                                self.metrics.paused.set(tpl.count() as f64);
                                *paused = Some(tpl);
                            }
                            Err(e) => error!(error = %e, "cannot pause the partitions"),
                        }
                    }
                    if !poll_while_waiting(consumer, buffers, backoff(attempt), shutdown).await {
                        return Ok(None);
                    }
                    attempt += 1;
                }
            }
        }
        .into_iter();
        // Back to one entry per input batch (empty ones refused nothing).
        Ok(Some(
            batches
                .iter()
                .map(|b| if b.events.is_empty() { Vec::new() } else { rejected.next().unwrap_or_default() })
                .collect(),
        ))
    }

    /// Sends one record to the DLQ, retrying until Kafka takes it; false when cancelled first.
    async fn dead_letter(
        &self,
        dlq: &DeadLetterQueue,
        m: &OwnedMessage,
        stage: &'static str,
        reason: String,
        shutdown: &CancellationToken,
    ) -> bool {
        self.metrics.dead_lettered(stage);
        warn!(offset = m.offset(), stage, %reason, dlq = dlq.topic(), "record sent to the dead-letter topic");
        let letter = DeadLetter {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            stage,
            reason,
        };
        let mut attempt = 0;
        loop {
            match dlq.send(&letter).await {
                Ok(()) => return true,
                Err(e) => {
                    warn!(error = %e, attempt, "DLQ write failed; retrying");
                    if !sleep_or_cancel(backoff(attempt), shutdown).await {
                        return false;
                    }
                    attempt += 1;
                }
            }
        }
    }
}

/// Waits `d` while polling the (paused) consumer so group membership holds; records fetched
/// before the pause are kept in `buffers`. False when cancelled first.
async fn poll_while_waiting(
    consumer: &StreamConsumer<WorkerContext>,
    buffers: &mut BTreeMap<Tp, Vec<OwnedMessage>>,
    d: Duration,
    shutdown: &CancellationToken,
) -> bool {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep_until(deadline) => return true,
            polled = consumer.recv() => match polled {
                Ok(msg) => buffers.entry((msg.topic().to_owned(), msg.partition())).or_default().push(msg.detach()),
                Err(e) => {
                    warn!(error = %e, "kafka consumer error while paused");
                    tokio::time::sleep_until(deadline).await;
                    return true;
                }
            },
        }
    }
}

/// Sleeps unless cancelled first; false when cancelled.
async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// Forgets buffered records of revoked partitions; returns how many were dropped.
fn drop_revoked(
    shared: &Arc<Mutex<Shared>>,
    buffers: &mut BTreeMap<Tp, Vec<OwnedMessage>>,
    trackers: &mut HashMap<Tp, OffsetTracker>,
) -> usize {
    let revoked = match shared.lock() {
        Ok(mut s) if !s.revoked.is_empty() => std::mem::take(&mut s.revoked),
        _ => return 0,
    };
    let mut dropped = 0;
    for tp in revoked {
        dropped += buffers.remove(&tp).map_or(0, |v| v.len());
        trackers.remove(&tp);
        info!(topic = %tp.0, partition = tp.1, "partition revoked");
    }
    dropped
}

/// Commits every partition whose commit point moved.
fn commit(
    consumer: &StreamConsumer<WorkerContext>,
    trackers: &mut HashMap<Tp, OffsetTracker>,
    shared: &Arc<Mutex<Shared>>,
    mode: CommitMode,
) {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), t) in trackers.iter_mut() {
        if let Some(point) = t.take_commit() {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(point));
        }
    }
    if tpl.count() == 0 {
        return;
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            if let Ok(mut s) = shared.lock() {
                for e in tpl.elements() {
                    s.acked.remove(&(e.topic().to_owned(), e.partition()));
                }
            }
        }
        Err(e) => {
            warn!(error = %e, "offset commit failed; it is retried with the next batch");
            for e in tpl.elements() {
                if let Some(t) = trackers.get_mut(&(e.topic().to_owned(), e.partition())) {
                    t.commit_failed();
                }
            }
        }
    }
}
