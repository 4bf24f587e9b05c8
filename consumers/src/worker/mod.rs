//! A projection worker: one consumer group reading the projection's topics, writing to its sink.
//!
//! Data path: Kafka → the next batch (per partition, in offset order) → [`Decoder`] (bad records
//! → DLQ) → [`Sink::write_all`] (refused events → DLQ) → offsets acknowledged → committed.
//!
//! Two stages, joined by a hand-off of batches: while writes are in flight (each one decode +
//! sink write + DLQ, owning its records), the loop polls and collects the next batch, so the sink
//! and the consumer work at the same time. Up to the projection's
//! [`max_in_flight`](crate::sink::Batching::max_in_flight) writes run at once (default 1): with
//! more, an event collected while a write is on its way goes out in the next one instead of
//! waiting for it to land — worth it where a write waits on the network, not on a busy local
//! server. Writes may land out of order — the sinks apply an event only when it is newer than what
//! they hold — and acknowledgements are tracked per offset, so the commit never passes a record
//! still in flight ([`OffsetTracker`]); offsets are committed once a second (`COMMIT_INTERVAL`).
//! Memory stays bounded: the batches in flight, plus the next one, capped by the sink's batch size
//! and a byte budget ([`WorkerConfig::max_buffered_bytes`]), plus librdkafka's prefetch queue
//! (capped at 16 MiB). A full next batch with every write slot taken stops the polling; if that
//! lasts longer than [`STALL_GRACE`], or the sink reports failures, the assigned partitions are
//! paused and polling goes on (group membership holds, nothing more is fetched) until a write
//! lands.
//!
//! Rebalance: on revocation the context commits what is acknowledged, synchronously, and the loop
//! drops what it had buffered for those partitions (the next owner reads them again — sinks are
//! idempotent). Shutdown: the cancellation token stops polling; buffered records are written and
//! committed synchronously within the drain deadline.

pub mod dlq;
pub mod end;
pub mod metrics;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt as _};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use sluice_core::event::Position;
use sluice_core::offsets::OffsetTracker;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::decode::{Decoded, Decoder, Refused};
use crate::retry::{backoff, sleep_or_cancel};
use crate::sink::{Batch, Sink, SinkError};
use dlq::{DeadLetter, DeadLetterQueue};

type Tp = (String, i32);

/// The shortest linger the self-clocking batching uses (see `run`).
const MIN_LINGER: Duration = Duration::from_millis(10);

/// How long a poll may find nothing before the worker considers itself at the head of the log
/// and writes what it buffered. librdkafka hands over a fetched batch record by record without
/// waiting, so a gap this long means the local queue is empty.
const IDLE_PROBE: Duration = Duration::from_millis(5);

/// How long the next batch may stay full while every write slot is taken before the partitions
/// are paused. A slow write just stops the polling (far below `max.poll.interval.ms`, so membership
/// holds); pausing purges librdkafka's fetch queue, which is refetched on resume, so it is kept
/// for writes that take really long. A failing sink pauses at once.
const STALL_GRACE: Duration = Duration::from_secs(5);

/// How often acknowledged offsets are committed while the worker runs (and at every revocation
/// and shutdown, synchronously). Each commit is a write to `__consumer_offsets`; committing after
/// every landed write would cost the broker more than the records themselves at a steady rate.
/// A crash re-delivers at most this much more, which the idempotent sinks absorb.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Failed attempts to write one dead letter before the partitions are paused. The first few
/// failures are usually a leader election (seconds); past them the DLQ is down or refuses the
/// record, and the worker stops fetching rather than piling records up behind it.
const DLQ_ATTEMPTS_BEFORE_PAUSE: u32 = 3;

/// Default byte budget of the batch collected while writes are in flight.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 64 << 20;

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
    /// Byte budget (keys + values) of the records collected while writes are in flight; with the
    /// sink's batch size and `max_in_flight` it bounds the worker's memory (see
    /// [`DEFAULT_MAX_BUFFERED_BYTES`]).
    pub max_buffered_bytes: usize,
    /// Test failpoint: after this many batches were written, die before committing them (the
    /// crash between a sink write and its commit that at-least-once delivery must survive).
    /// Set from [`CRASH_AFTER_BATCHES`](crate::failpoint::CRASH_AFTER_BATCHES) by the CLI. Exists
    /// in debug builds only (the integration tests run those): a release build cannot crash on
    /// purpose.
    #[cfg(debug_assertions)]
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
    /// Set by a write in flight while the sink fails, read by the polling loop (to pause).
    sink_failing: AtomicBool,
    /// Set by a write in flight while the DLQ refuses a dead letter past
    /// [`DLQ_ATTEMPTS_BEFORE_PAUSE`] attempts, read by the polling loop (to pause).
    dlq_failing: AtomicBool,
}

impl<S: Sink> Worker<S> {
    /// A worker for `cfg` writing to `sink`.
    pub fn new(cfg: WorkerConfig, sink: S, decoder: Decoder) -> Self {
        let metrics = metrics::WorkerMetrics::new(&cfg.projection, sink.kind());
        Self {
            cfg,
            sink,
            decoder: Arc::new(decoder),
            metrics,
            sink_failing: AtomicBool::new(false),
            dlq_failing: AtomicBool::new(false),
        }
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
            // librdkafka's own prefetch queue is part of the worker's memory: keep it well below
            // its 64 MiB default (still several batches' worth).
            .set("queued.max.messages.kbytes", "16384")
            // At a steady rate the broker would answer every fetch as soon as one record is
            // there: hundreds of small fetches a second per worker, broker CPU the services on a
            // small machine share. Waiting up to 10 ms for 64 KiB costs at most that much latency
            // and makes fetches a few times fewer (a backlog fills 64 KiB at once anyway).
            .set("fetch.wait.max.ms", "10")
            .set("fetch.min.bytes", "65536")
            .set("client.id", format!("sluice-{}", self.cfg.projection));
        for (k, v) in &self.cfg.consumer_overrides {
            config.set(k, v);
        }
        let consumer: StreamConsumer<WorkerContext> =
            config.create_with_context(WorkerContext { shared: shared.clone() })?;
        let topics: Vec<&str> = self.cfg.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let dlq = DeadLetterQueue::connect(&self.cfg.brokers, self.cfg.dlq_topic.clone(), self.cfg.projection.clone())?;
        info!(projection = %self.cfg.projection, group = %self.cfg.group, topics = ?self.cfg.topics,
              sink = self.sink.kind(), dlq = %self.cfg.dlq_topic, "worker started");

        let batching = self.sink.batching();
        let slots = batching.max_in_flight.max(1);
        let limits = Limits { records: batching.max_records, bytes: self.cfg.max_buffered_bytes };
        info!(batch_size = batching.max_records, linger = ?batching.linger, max_in_flight = slots, "batching");
        // Cancelled only when the drain deadline passes: writes in flight at shutdown keep
        // retrying until then, like the final flush.
        let write_token = CancellationToken::new();
        let mut next = NextBatch::default();
        let mut ledger = Ledger::default();
        let mut in_flight: FuturesUnordered<InFlight<'_>> = FuturesUnordered::new();
        let mut paused: Option<TopicPartitionList> = None;
        let mut flush_at: Option<Instant> = None;
        let mut linger = batching.linger;
        let mut stats = Stats::default();
        let mut last_report = Instant::now();
        let mut last_commit = Instant::now();
        let mut first_record: Option<Instant> = None;
        let mut last_ack: Option<Instant> = None;

        loop {
            let full = next.is_full(limits);
            let slot_free = in_flight.len() < slots;
            // With records buffered and a write slot free, poll briefly: a poll that finds
            // nothing means the local fetch queue is empty, i.e. the worker is at the head of the
            // log (see `idle` below). With every slot taken, a landing wakes the loop.
            let wait = match flush_at {
                Some(t) if slot_free => t.saturating_duration_since(Instant::now()).min(IDLE_PROBE),
                _ => Duration::from_secs(1),
            };
            let step = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some((flight, landed)) = in_flight.next(), if !in_flight.is_empty() => Step::Landed(flight, landed),
                // A full next batch stops the intake (a full stage simply stops receiving); once
                // paused, polling goes on so the group membership holds and rebalances are served.
                polled = tokio::time::timeout(wait, consumer.recv()), if !full || paused.is_some() => match polled {
                    Err(_) => Step::Idle,
                    Ok(r) => Step::Polled(r.map(|m| m.detach())),
                },
                () = tokio::time::sleep(STALL_GRACE), if full && paused.is_none() => Step::Stalled,
            };
            let mut idle = false;
            match step {
                Step::Polled(Ok(msg)) => {
                    self.metrics.consumed.increment(1);
                    self.metrics.record_read(msg.timestamp().to_millis());
                    first_record.get_or_insert_with(Instant::now);
                    next.push(msg);
                    stats.consumed += 1;
                    flush_at.get_or_insert_with(|| Instant::now() + linger);
                }
                // librdkafka retries on its own; these are reports (broker down, …), not fatal.
                Step::Polled(Err(e)) => {
                    warn!(error = %e, "kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Step::Idle => idle = true,
                Step::Stalled => self.pause(&consumer, &mut paused, "buffer_full"),
                Step::Landed(flight, landed) => {
                    // Self-clocking linger: collect for about as long as the last write took,
                    // shared among the write slots. A steady stream then gets batches sized to
                    // what the sink absorbs in that time (latency stays near one write), a backlog
                    // still fills batches to `max_records`, and the configured linger remains the
                    // upper bound.
                    linger =
                        (flight.started.elapsed() / slots as u32).clamp(MIN_LINGER, batching.linger.max(MIN_LINGER));
                    stats += ledger.land(flight, landed?, &shared)?;
                    last_ack = Some(Instant::now());
                    #[cfg(debug_assertions)]
                    crate::failpoint::crash_after(stats.batches, self.cfg.crash_after_batches);
                }
            }
            if last_commit.elapsed() >= COMMIT_INTERVAL {
                commit(&consumer, &mut ledger.trackers, &shared, CommitMode::Async);
                last_commit = Instant::now();
            }
            if paused.is_none()
                && let Some(reason) = self.failing()
            {
                self.pause(&consumer, &mut paused, reason);
            }
            next.forget_revoked(&shared, &mut ledger);
            // Adaptive batching: while behind, records stream in back to back and batches fill up
            // to the configured size or linger (throughput); at the head of the log nothing more
            // is coming, so the batch is written at once instead of waiting out the linger
            // (latency) — as soon as a write slot is free.
            let due = idle || flush_at.is_some_and(|t| Instant::now() >= t);
            if in_flight.len() < slots && next.records > 0 && (next.is_full(limits) || due) {
                in_flight.push(self.launch(next.take(), &mut ledger, &dlq, &write_token)?);
                flush_at = None;
            }
            // Resume once the sink is not failing (a write landed) and the next batch has room:
            // after a landing the next batch was just handed over, so it is empty.
            if paused.is_some()
                && self.failing().is_none()
                && !next.is_full(limits)
                && let Some(tpl) = paused.take()
            {
                self.resume(&consumer, &tpl);
            }
            if last_report.elapsed() >= Duration::from_secs(10) {
                info!(
                    consumed = stats.consumed,
                    projected = stats.projected,
                    dead_lettered = stats.dead_lettered,
                    batches = stats.batches,
                    "progress"
                );
                last_report = Instant::now();
            }
        }

        // Drain: land the write in flight and write what is buffered, then commit synchronously,
        // all within the deadline.
        info!(buffered = next.records, in_flight = in_flight.len(), deadline = ?self.cfg.drain_deadline,
              "shutting down: draining buffered records");
        let drain = async {
            let mut drained = Stats::default();
            let work = next.take();
            if !work.is_empty() {
                in_flight.push(self.launch(work, &mut ledger, &dlq, &write_token)?);
            }
            while let Some((flight, landed)) = in_flight.next().await {
                drained += ledger.land(flight, landed?, &shared)?;
            }
            Ok::<_, WorkerError>(drained)
        };
        match tokio::time::timeout(self.cfg.drain_deadline, drain).await {
            Ok(Ok(s)) => {
                if s.batches > 0 {
                    last_ack = Some(Instant::now());
                }
                stats += s;
            }
            Ok(Err(e)) => error!(error = %e, "drain failed; unwritten records will be re-delivered"),
            Err(_) => {
                write_token.cancel();
                warn!("drain deadline passed; unwritten records will be re-delivered");
            }
        }
        if let Some(tpl) = paused.take() {
            self.resume(&consumer, &tpl);
        }
        commit(&consumer, &mut ledger.trackers, &shared, CommitMode::Sync);
        if let (Some(first), Some(last)) = (first_record, last_ack) {
            stats.active = last.saturating_duration_since(first);
        }
        info!(
            consumed = stats.consumed,
            projected = stats.projected,
            dead_lettered = stats.dead_lettered,
            batches = stats.batches,
            "worker stopped"
        );
        Ok(stats)
    }

    /// Why the partitions must stay paused whatever the batches: the sink or the DLQ is failing.
    fn failing(&self) -> Option<&'static str> {
        if self.sink_failing.load(Ordering::Relaxed) {
            Some("sink_failing")
        } else if self.dlq_failing.load(Ordering::Relaxed) {
            Some("dlq_unavailable")
        } else {
            None
        }
    }

    /// Pauses every assigned partition: nothing more is fetched, memory stays flat however long
    /// the sink takes, and the loop keeps polling so the worker stays in its group.
    fn pause(
        &self,
        consumer: &StreamConsumer<WorkerContext>,
        paused: &mut Option<TopicPartitionList>,
        reason: &'static str,
    ) {
        match consumer.assignment().and_then(|tpl| consumer.pause(&tpl).map(|()| tpl)) {
            Ok(tpl) => {
                warn!(partitions = tpl.count(), reason, "partitions paused until the write in flight lands");
                self.metrics.paused.set(tpl.count() as f64);
                self.metrics.paused_because(reason);
                *paused = Some(tpl);
            }
            Err(e) => error!(error = %e, "cannot pause the partitions"),
        }
    }

    fn resume(&self, consumer: &StreamConsumer<WorkerContext>, tpl: &TopicPartitionList) {
        match consumer.resume(tpl) {
            Ok(()) => info!(partitions = tpl.count(), "write landed: partitions resumed"),
            Err(e) => error!(error = %e, "cannot resume the paused partitions"),
        }
        self.metrics.paused.set(0.0);
    }

    /// Starts the write of `work`: its records become pending in the ledger, and the returned
    /// future, once polled to the end, carries its [`Flight`] to [`Ledger::land`].
    fn launch<'a>(
        &'a self,
        work: Vec<(Tp, Vec<OwnedMessage>)>,
        ledger: &mut Ledger,
        dlq: &'a DeadLetterQueue,
        token: &'a CancellationToken,
    ) -> Result<InFlight<'a>, WorkerError> {
        let flight = ledger.launch(&work)?;
        Ok(Box::pin(self.flush(work, dlq, token).map(move |r| (flight, r))))
    }

    /// Decodes every partition of `work` (concurrently), writes the decoded batches with one
    /// [`Sink::write_all`], and sends refused events to the DLQ; says which partitions are
    /// entirely acknowledged. Owns its records, so the worker goes on polling meanwhile.
    async fn flush(
        &self,
        work: Vec<(Tp, Vec<OwnedMessage>)>,
        dlq: &DeadLetterQueue,
        token: &CancellationToken,
    ) -> Result<Flushed, WorkerError> {
        let decoded = join_all(work.iter().map(|(tp, msgs)| {
            let span = info_span!("partition", topic = %tp.0, partition = tp.1);
            self.decode_partition(tp, msgs, dlq, token).instrument(span)
        }))
        .await;
        let mut stats = Stats::default();
        let mut done = vec![false; work.len()];
        // Partitions with events to write (index into `work`) and their batches; a partition
        // whose records all went to the DLQ is acknowledged as it is.
        let (mut indices, mut batches) = (Vec::new(), Vec::new());
        for (i, d) in decoded.into_iter().enumerate() {
            if let Some((batch, s)) = d {
                stats += s;
                if batch.events.is_empty() {
                    done[i] = true;
                } else {
                    indices.push(i);
                    batches.push(batch);
                }
            }
        }
        // `None` (cancelled mid-retry): nothing is acknowledged, so nothing is committed.
        let Some(written) = self.write_batches(&batches, token).await? else {
            return Ok(Flushed { work, done, stats });
        };
        for ((i, batch), rejected) in indices.into_iter().zip(&batches).zip(written) {
            let msgs = &work[i].1;
            let by_offset: HashMap<i64, &OwnedMessage> = msgs.iter().map(|m| (m.offset(), m)).collect();
            stats.batches += 1;
            stats.projected += (batch.events.len() - rejected.len()) as u64;
            self.metrics.projected.increment((batch.events.len() - rejected.len()) as u64);
            self.metrics.record_visible(&batch.events);
            let mut all_sent = true;
            for r in rejected {
                let Some(m) = by_offset.get(&r.offset) else {
                    error!(
                        offset = r.offset,
                        "sink rejected an offset that is not in the batch; ignoring the rejection"
                    );
                    continue;
                };
                if !self.dead_letter(dlq, m, self.sink.kind(), Refused::by_sink(r.reason), token).await {
                    all_sent = false;
                    break;
                }
                stats.dead_lettered += 1;
            }
            done[i] = all_sent;
        }
        Ok(Flushed { work, done, stats })
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
            match self.decoder.decode_retrying(m, position, shutdown).await {
                Ok(Some(Decoded::Event(event))) => events.push(event),
                // Acknowledged with the batch, nothing to write (a CDC tombstone).
                Ok(Some(Decoded::Nothing(_))) => {}
                Ok(None) => return None,
                Err(refused) => {
                    if !self.dead_letter(dlq, m, "decode", refused, shutdown).await {
                        return None;
                    }
                    stats.dead_lettered += 1;
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

    /// Writes the (non-empty) batches, retrying transient failures with backoff; the refused
    /// events of each batch, or `None` when cancelled before the sink succeeded. While it fails,
    /// `sink_failing` tells the polling loop to pause the partitions.
    async fn write_batches(
        &self,
        batches: &[Batch],
        token: &CancellationToken,
    ) -> Result<Option<Vec<Vec<crate::sink::Rejected>>>, WorkerError> {
        if batches.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            match self.sink.write_all(batches).await {
                Ok(rejected) => {
                    self.sink_failing.store(false, Ordering::Relaxed);
                    self.metrics.write_seconds.record(started.elapsed().as_secs_f64());
                    debug!(batches = batches.len(), took = ?started.elapsed(), "batches written");
                    for b in batches {
                        self.metrics.batch_size.record(b.events.len() as f64);
                    }
                    return Ok(Some(rejected));
                }
                Err(SinkError::Config(message)) => {
                    return Err(WorkerError::SinkConfig { sink: self.sink.kind(), message });
                }
                Err(SinkError::Transient(reason)) => {
                    self.sink_failing.store(true, Ordering::Relaxed);
                    self.metrics.write_retries.increment(1);
                    warn!(%reason, attempt, batches = batches.len(), "sink write failed; retrying");
                    if !sleep_or_cancel(backoff(attempt), token).await {
                        return Ok(None);
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Sends one record to the DLQ, retrying until Kafka takes it; false when cancelled first.
    /// Past [`DLQ_ATTEMPTS_BEFORE_PAUSE`] failed attempts the polling loop pauses the partitions
    /// (nothing more is fetched while the record cannot leave), until the DLQ accepts again.
    async fn dead_letter(
        &self,
        dlq: &DeadLetterQueue,
        m: &OwnedMessage,
        stage: &'static str,
        refused: Refused,
        shutdown: &CancellationToken,
    ) -> bool {
        self.metrics.dead_lettered(stage, refused.code);
        warn!(offset = m.offset(), stage, code = refused.code, reason = %refused.reason, dlq = dlq.topic(),
              "record sent to the dead-letter topic");
        let letter = DeadLetter::from_message(m, stage, refused);
        let mut attempt = 0;
        loop {
            match dlq.send(&letter).await {
                Ok(()) => {
                    if attempt >= DLQ_ATTEMPTS_BEFORE_PAUSE && self.dlq_failing.swap(false, Ordering::Relaxed) {
                        info!(dlq = dlq.topic(), attempt, "the dead-letter topic accepts again");
                    }
                    return true;
                }
                Err(e) => {
                    self.metrics.dlq_write_failures.increment(1);
                    attempt += 1;
                    if attempt == DLQ_ATTEMPTS_BEFORE_PAUSE {
                        error!(error = %e, attempt, dlq = dlq.topic(), offset = m.offset(),
                               "the dead-letter topic refuses writes: pausing the partitions until it accepts again");
                        self.dlq_failing.store(true, Ordering::Relaxed);
                    } else {
                        warn!(error = %e, attempt, "DLQ write failed; retrying");
                    }
                    if !sleep_or_cancel(backoff(attempt - 1), shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}

/// What woke the polling loop.
enum Step {
    /// A record, or a consumer error report.
    Polled(rdkafka::error::KafkaResult<OwnedMessage>),
    /// No record within the probe: the local fetch queue is empty.
    Idle,
    /// The next batch stayed full for [`STALL_GRACE`] with every write slot taken.
    Stalled,
    /// A write in flight finished.
    Landed(Flight, Result<Flushed, WorkerError>),
}

/// Bounds of the batch collected while writes are in flight.
#[derive(Debug, Clone, Copy)]
struct Limits {
    records: usize,
    bytes: usize,
}

/// Records collected for the next write, per partition in offset order.
#[derive(Debug, Default)]
struct NextBatch {
    buffers: BTreeMap<Tp, Vec<OwnedMessage>>,
    records: usize,
    bytes: usize,
}

/// What a record weighs in the worker's byte budget.
fn weight(m: &OwnedMessage) -> usize {
    m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len)
}

impl NextBatch {
    fn push(&mut self, msg: OwnedMessage) {
        self.records += 1;
        self.bytes += weight(&msg);
        self.buffers.entry((msg.topic().to_owned(), msg.partition())).or_default().push(msg);
    }

    fn is_full(&self, limits: Limits) -> bool {
        self.records >= limits.records || self.bytes >= limits.bytes
    }

    fn take(&mut self) -> Vec<(Tp, Vec<OwnedMessage>)> {
        self.records = 0;
        self.bytes = 0;
        std::mem::take(&mut self.buffers).into_iter().collect()
    }

    /// Forgets what was collected for partitions revoked since the last look, and their offset
    /// trackers: the next owner reads those records again (sinks are idempotent).
    fn forget_revoked(&mut self, shared: &Arc<Mutex<Shared>>, ledger: &mut Ledger) {
        let revoked = match shared.lock() {
            Ok(mut s) if !s.revoked.is_empty() => std::mem::take(&mut s.revoked),
            _ => return,
        };
        for tp in revoked {
            if let Some(msgs) = self.buffers.remove(&tp) {
                self.records -= msgs.len();
                self.bytes -= msgs.iter().map(weight).sum::<usize>();
            }
            ledger.revoke(&tp);
            info!(topic = %tp.0, partition = tp.1, "partition revoked");
        }
    }
}

/// The offset trackers of the assigned partitions, and how often each partition was revoked: a
/// write launched before a revocation must not acknowledge its records in the tracker of a later
/// assignment of the same partition.
#[derive(Debug, Default)]
struct Ledger {
    trackers: HashMap<Tp, OffsetTracker>,
    revocations: HashMap<Tp, u64>,
}

/// One write in flight: when it started, and the revocation count of each of its partitions
/// (in the order of its work) at launch.
#[derive(Debug)]
struct Flight {
    started: Instant,
    epochs: Vec<u64>,
}

impl Ledger {
    /// Registers the records of a write about to start as pending in their partitions' trackers.
    fn launch(&mut self, work: &[(Tp, Vec<OwnedMessage>)]) -> Result<Flight, WorkerError> {
        let mut epochs = Vec::with_capacity(work.len());
        for (tp, msgs) in work {
            let t = self.trackers.entry(tp.clone()).or_default();
            for m in msgs {
                t.received(m.offset())?;
            }
            epochs.push(self.epoch(tp));
        }
        Ok(Flight { started: Instant::now(), epochs })
    }

    fn epoch(&self, tp: &Tp) -> u64 {
        self.revocations.get(tp).copied().unwrap_or(0)
    }

    /// Forgets a revoked partition's tracker; writes in flight for it will not acknowledge.
    fn revoke(&mut self, tp: &Tp) {
        self.trackers.remove(tp);
        *self.revocations.entry(tp.clone()).or_default() += 1;
    }

    /// Applies a finished write: acknowledges the records of fully written partitions and hands
    /// their commit points to the rebalance callback. A partition not fully written (the drain
    /// deadline cancelled it) stays pending, so nothing at or past it is committed: it is
    /// re-delivered after the restart.
    fn land(&mut self, flight: Flight, flushed: Flushed, shared: &Arc<Mutex<Shared>>) -> Result<Stats, WorkerError> {
        for (((tp, msgs), done), epoch) in flushed.work.into_iter().zip(flushed.done).zip(flight.epochs) {
            if !done || epoch != self.epoch(&tp) {
                continue;
            }
            let Some(t) = self.trackers.get_mut(&tp) else { continue };
            for m in &msgs {
                t.ack(m.offset())?;
            }
            if let (Some(point), Ok(mut sh)) = (t.commit_point(), shared.lock()) {
                sh.acked.insert(tp, point);
            }
        }
        Ok(flushed.stats)
    }
}

/// A write in flight: decode, sink write and DLQ of one batch, borrowing the worker.
type InFlight<'a> = Pin<Box<dyn Future<Output = (Flight, Result<Flushed, WorkerError>)> + Send + 'a>>;

/// A write that finished: its records, which partitions were entirely acknowledged, counters.
#[derive(Debug)]
struct Flushed {
    work: Vec<(Tp, Vec<OwnedMessage>)>,
    /// Per entry of `work`: every record written or dead-lettered.
    done: Vec<bool>,
    stats: Stats,
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

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;

    use super::*;

    fn tp(p: i32) -> Tp {
        ("t".to_owned(), p)
    }

    fn work(p: i32, offsets: std::ops::Range<i64>) -> Vec<(Tp, Vec<OwnedMessage>)> {
        let msgs = offsets.map(|o| OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, p, o, None));
        vec![(tp(p), msgs.collect())]
    }

    fn flushed(work: Vec<(Tp, Vec<OwnedMessage>)>, done: bool) -> Flushed {
        let done = vec![done; work.len()];
        Flushed { work, done, stats: Stats::default() }
    }

    fn acked(shared: &Arc<Mutex<Shared>>, p: i32) -> Option<i64> {
        shared.lock().expect("lock").acked.get(&tp(p)).copied()
    }

    #[test]
    fn writes_landing_out_of_order_commit_only_past_both() {
        let (mut ledger, shared) = (Ledger::default(), Arc::new(Mutex::new(Shared::default())));
        let first = ledger.launch(&work(0, 0..10)).expect("launch");
        let second = ledger.launch(&work(0, 10..20)).expect("launch");
        ledger.land(second, flushed(work(0, 10..20), true), &shared).expect("land");
        // The later write landed first: nothing past the first write's records is committable.
        assert_eq!(acked(&shared, 0), Some(0));
        ledger.land(first, flushed(work(0, 0..10), true), &shared).expect("land");
        assert_eq!(acked(&shared, 0), Some(20));
    }

    #[test]
    fn a_write_launched_before_a_revocation_acknowledges_nothing_after_it() {
        let (mut ledger, shared) = (Ledger::default(), Arc::new(Mutex::new(Shared::default())));
        let stale = ledger.launch(&work(0, 0..10)).expect("launch");
        ledger.revoke(&tp(0));
        // Assigned again, resumed from the last commit (say 5): a new write of 5..15.
        let fresh = ledger.launch(&work(0, 5..15)).expect("launch");
        ledger.land(stale, flushed(work(0, 0..10), true), &shared).expect("a stale landing is ignored, not an error");
        assert_eq!(acked(&shared, 0), None);
        ledger.land(fresh, flushed(work(0, 5..15), true), &shared).expect("land");
        assert_eq!(acked(&shared, 0), Some(15));
    }

    #[test]
    fn a_partition_not_fully_written_holds_the_commit_back() {
        let (mut ledger, shared) = (Ledger::default(), Arc::new(Mutex::new(Shared::default())));
        let cancelled = ledger.launch(&work(1, 0..10)).expect("launch");
        let next = ledger.launch(&work(1, 10..20)).expect("launch");
        ledger.land(cancelled, flushed(work(1, 0..10), false), &shared).expect("land");
        ledger.land(next, flushed(work(1, 10..20), true), &shared).expect("land");
        assert_eq!(acked(&shared, 1), Some(0), "never past a record that was not written");
        assert_eq!(ledger.trackers[&tp(1)].in_flight(), 10);
    }
}
