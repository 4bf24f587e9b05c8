//! A projection worker: one consumer group reading the projection's topics, writing to its sink.
//!
//! Data path: Kafka → the next batch (per partition, in offset order) → [`Decoder`] (bad records
//! → DLQ) → [`Sink::write_all`] (refused events → DLQ) → offsets acknowledged → committed.
//!
//! [`Worker::run`] is a loop over five stages, one file each:
//! - `poll`: the consumer group, and what wakes the loop next (a record, a landing, an idle poll,
//!   a stall); pauses and resumes the partitions.
//! - `batch`: collects the next batch while writes are in flight, until it is full or due.
//! - `launch`: turns a batch into a write in flight — decode, one sink write, DLQ — which owns its
//!   records, so the loop goes on polling and the sink and the consumer work at the same time.
//! - `land`: a finished write acknowledges its records in the offset trackers.
//! - `commit`: acknowledged offsets go to Kafka, within 100 ms of a landing (at most that often),
//!   once a second otherwise, and at every revocation.
//!
//! Up to the projection's [`max_in_flight`](crate::sink::Batching::max_in_flight) writes run at
//! once (default 1): with more, an event collected while a write is on its way goes out in the
//! next one instead of waiting for it to land — worth it where a write waits on the network, not
//! on a busy local server. Writes may land out of order — the sinks apply an event only when it
//! is newer than what they hold — and acknowledgements are tracked per offset, so the commit
//! never passes a record still in flight ([`OffsetTracker`](sluice_core::offsets::OffsetTracker)).
//! Memory stays bounded: the batches in flight, plus the next one, capped by the sink's batch
//! size and a byte budget ([`WorkerConfig::max_buffered_bytes`]), plus librdkafka's prefetch
//! queue (capped at 4 MiB). A full next batch with every write slot taken stops the polling; if
//! that lasts long, or the sink or the DLQ reports failures, the assigned partitions are paused
//! and polling goes on (group membership holds, nothing more is fetched) until a write lands.
//!
//! Rebalance: partitions move with the cooperative-sticky assignor — rust-rdkafka's rebalance
//! callback calls `incremental_assign` / `incremental_unassign` under the COOPERATIVE protocol —
//! so a revocation names only the partitions that change owner, and the others keep flowing. On
//! revocation the consumer context commits what is acknowledged, synchronously, and the loop
//! drops what it had buffered for those partitions; a write in flight for them still lands but
//! acknowledges nothing (the ledger counts revocations), so it is not committed and the next
//! owner writes those records again — sinks are idempotent. With an instance id (static
//! membership) a restarted worker takes its partitions back without a rebalance.
//!
//! Shutdown: the cancellation token stops polling; buffered records are written and committed
//! synchronously within the drain deadline. Before any of this, `ready` waits for a sink that
//! does not answer yet (the CLI connects through it), and a fatal consumer error (a twin
//! instance id) stops the loop.

mod batch;
mod commit;
pub mod dlq;
pub mod end;
pub mod health;
mod land;
mod launch;
pub mod metrics;
mod poll;
mod progress;
pub mod ready;

use sluice_core::connections::KafkaConnection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::message::OwnedMessage;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::decode::Decoder;
use crate::sink::Sink;
use batch::Batcher;
use commit::Commits;
use dlq::DeadLetterQueue;
use land::Ledger;
use launch::Writes;
pub use poll::DEFAULT_SESSION_TIMEOUT;
use poll::{Intake, Step};
use progress::Progress;
pub use progress::Stats;

/// A partition: topic and number.
type Tp = (String, i32);

/// The records of one write, per partition in offset order.
type Work = Vec<(Tp, Vec<OwnedMessage>)>;

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
    pub kafka: KafkaConnection,
    /// How long a shutdown may spend writing and committing what is buffered.
    pub drain_deadline: Duration,
    /// Static group membership (`group.instance.id`): one stable id per replica (a StatefulSet
    /// pod's name). A worker restarted with the id of one that died takes its partitions back at
    /// once instead of waiting out the dead one's session; `None`: dynamic membership.
    pub instance_id: Option<String>,
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
    /// librdkafka raised a fatal error: the consumer cannot go on (another worker took this
    /// worker's instance id).
    #[error("kafka: fatal: {0}")]
    Fatal(String),
    /// A partition's offsets went wrong: a bug, reported rather than committing wrong.
    #[error("offset tracking: {0}")]
    Offsets(#[from] sluice_core::offsets::OffsetError),
}

/// A projection worker.
#[derive(Debug)]
pub struct Worker<S> {
    cfg: WorkerConfig,
    sink: S,
    decoder: Arc<Decoder>,
    metrics: metrics::WorkerMetrics,
    /// Set by a write in flight while the sink fails, read by the loop (to pause).
    sink_failing: AtomicBool,
    /// Set by a write in flight while the DLQ refuses a dead letter past a few attempts, read by
    /// the loop (to pause).
    dlq_failing: AtomicBool,
}

/// The loop's state, one field per stage.
struct Stages<'a> {
    intake: Intake,
    batcher: Batcher,
    writes: Writes<'a>,
    ledger: Ledger,
    commits: Commits,
    progress: Progress,
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
        let (stages, dlq) = self.start()?;
        // Cancelled only when the drain deadline passes: writes in flight at shutdown keep
        // retrying until then, like the final flush.
        let write_token = CancellationToken::new();
        // Bound after the DLQ and the token, which its writes in flight borrow.
        let mut s = stages;
        // One clock read per step (a step follows every record: at hundreds of thousands a
        // second they add up), taken once the step is there: the record's arrival, the batch's
        // linger and the commits' schedule are about milliseconds, not the microseconds a step
        // takes.
        let mut now = Instant::now();
        loop {
            let until = now + s.wait(now);
            let Some(step) = s.intake.next(&mut s.writes, until, s.batcher.is_full(), &shutdown).await else { break };
            now = Instant::now();
            let idle = matches!(step, Step::Idle);
            self.take(&mut s, step, now).await?;
            self.tend(&mut s, idle, now, &dlq, &write_token)?;
        }
        self.drain(&mut s, &dlq, &write_token).await;
        self.metrics.ready.set(0.0);
        self.metrics.assigned.set(0);
        Ok(s.progress.finish())
    }

    /// Joins the group and connects the DLQ producer: the stages, empty.
    fn start(&self) -> Result<(Stages<'_>, DeadLetterQueue), WorkerError> {
        let commits = Commits::new(Instant::now());
        let intake = Intake::subscribe(&self.cfg, commits.context(), self.metrics.clone())?;
        let dlq = DeadLetterQueue::connect(&self.cfg.kafka, self.cfg.dlq_topic.clone(), self.cfg.projection.clone())?;
        info!(projection = %self.cfg.projection, group = %self.cfg.group, topics = ?self.cfg.topics,
              sink = self.sink.kind(), dlq = %self.cfg.dlq_topic, instance_id = ?self.cfg.instance_id,
              "worker started");
        self.metrics.ready.set(1.0);
        let batching = self.sink.batching();
        let (batcher, writes) =
            (Batcher::new(&batching, self.cfg.max_buffered_bytes), Writes::new(batching.max_in_flight));
        info!(batch_size = batching.max_records, linger = ?batching.linger, max_in_flight = writes.slots(), "batching");
        let progress = Progress::new(Instant::now());
        Ok((Stages { intake, batcher, writes, ledger: Ledger::default(), commits, progress }, dlq))
    }

    /// Takes what woke the loop: a record goes into the next batch, a landed write acknowledges
    /// its records; a fatal consumer error stops the worker.
    async fn take<'a>(&'a self, s: &mut Stages<'a>, step: Step, now: Instant) -> Result<(), WorkerError> {
        match step {
            Step::Polled(msg) => {
                s.progress.consumed(now);
                s.batcher.push(msg, now);
            }
            Step::Error(e) => {
                if let Some(fatal) = s.intake.fatal() {
                    self.metrics.ready.set(0.0);
                    return Err(fatal);
                }
                warn!(error = %e, "kafka consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Step::Idle => {}
            Step::Stalled => s.intake.pause("buffer_full"),
            Step::Landed((flight, flushed)) => {
                s.batcher.landed(flight.started.elapsed(), s.writes.slots());
                s.progress.landed(s.ledger.land(flight, flushed?, s.commits.shared())?, Instant::now());
                s.commits.landed();
                #[cfg(debug_assertions)]
                crate::failpoint::crash_after(s.progress.batches(), self.cfg.crash_after_batches);
            }
        }
        Ok(())
    }

    /// What follows every step, in this order: revoked partitions are forgotten (their trackers
    /// must not reach the commit), acknowledged offsets committed when due, the partitions paused
    /// while the sink or the DLQ fails, the next batch launched when due and a write slot is free,
    /// the partitions resumed once nothing holds them.
    fn tend<'a>(
        &'a self,
        s: &mut Stages<'a>,
        idle: bool,
        now: Instant,
        dlq: &'a DeadLetterQueue,
        write_token: &'a CancellationToken,
    ) -> Result<(), WorkerError> {
        s.forget_revoked();
        s.intake.adopt(&s.commits.assigned());
        self.metrics.assigned.set(s.commits.owned());
        s.commits.tick(s.intake.consumer(), &mut s.ledger.trackers, now);
        if !s.intake.is_paused()
            && let Some(reason) = self.failing()
        {
            s.intake.pause(reason);
        }
        if s.writes.has_slot() && s.batcher.is_due(now, idle) {
            s.writes.push(self.launch(s.batcher.take(), &mut s.ledger, dlq, write_token)?);
        }
        // Resume once the sink and the DLQ are not failing (a write landed) and the next batch
        // has room: after a landing the next batch was just handed over.
        if s.intake.is_paused() && self.failing().is_none() && !s.batcher.is_full() {
            s.intake.resume();
        }
        s.progress.report_if_due(now);
        Ok(())
    }

    /// Lands the writes in flight and writes what is buffered, then commits synchronously, all
    /// within the drain deadline; past it, `write_token` cancels what is still retrying, and what
    /// was not written is not committed (re-delivered after the restart).
    async fn drain<'a>(&'a self, s: &mut Stages<'a>, dlq: &'a DeadLetterQueue, write_token: &'a CancellationToken) {
        info!(buffered = s.batcher.records(), in_flight = s.writes.len(), deadline = ?self.cfg.drain_deadline,
              "shutting down: draining buffered records");
        let drain = async {
            let mut drained = Stats::default();
            let work = s.batcher.take();
            if !work.is_empty() {
                s.writes.push(self.launch(work, &mut s.ledger, dlq, write_token)?);
            }
            while let Some((flight, flushed)) = s.writes.next().await {
                drained += s.ledger.land(flight, flushed?, s.commits.shared())?;
            }
            Ok::<_, WorkerError>(drained)
        };
        match tokio::time::timeout(self.cfg.drain_deadline, drain).await {
            Ok(Ok(drained)) => s.progress.drained(drained, Instant::now()),
            Ok(Err(e)) => error!(error = %e, "drain failed; unwritten records will be re-delivered"),
            Err(_) => {
                write_token.cancel();
                warn!("drain deadline passed; unwritten records will be re-delivered");
            }
        }
        s.intake.resume();
        s.commits.sync(s.intake.consumer(), &mut s.ledger.trackers);
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
}

impl Stages<'_> {
    /// How long the next poll may wait: until the next batch is due or a commit is.
    fn wait(&self, now: Instant) -> Duration {
        self.batcher.poll_wait(now, self.writes.has_slot()).min(self.commits.due_in(now))
    }

    /// Forgets what was buffered for partitions revoked since the last look, and their offset
    /// trackers: the next owner reads those records again (sinks are idempotent).
    fn forget_revoked(&mut self) {
        for tp in self.commits.revoked() {
            self.batcher.forget(&tp);
            self.ledger.revoke(&tp);
            info!(topic = %tp.0, partition = tp.1, "partition revoked");
        }
    }
}
