//! The poll stage: the projection's consumer group, where records come from, and what wakes the
//! loop next ([`Step`]).
//!
//! A full next batch stops the polling — a full stage simply stops receiving — while every write
//! slot is taken. If that lasts longer than [`STALL_GRACE`], or the sink or the DLQ is failing,
//! the assigned partitions are paused and polling goes on: group membership holds and rebalances
//! are served, but nothing more is fetched, until a write lands.

use sluice_producers::kafka::client_config as kafka_config;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::Tp;
use super::commit::WorkerContext;
use super::launch::{Landing, Writes};
use super::metrics::WorkerMetrics;
use super::{WorkerConfig, WorkerError};

/// How long the next batch may stay full while every write slot is taken before the partitions
/// are paused. A slow write just stops the polling (far below `max.poll.interval.ms`, so membership
/// holds); pausing purges librdkafka's fetch queue, which is refetched on resume, so it is kept
/// for writes that take really long. A failing sink pauses at once.
pub(super) const STALL_GRACE: Duration = Duration::from_secs(5);

/// The most one fetch answer may carry (`fetch.max.bytes`), compressed: 1 MiB, a few MiB once
/// decompressed. librdkafka otherwise takes the prefetch queue's bound, 4 MiB — about four times
/// that decompressed. A record batch larger than the limit still comes whole (Kafka sends the
/// first batch of a partition whatever the limit), so no record is too big for it; it must stay
/// at least `message.max.bytes` (1,000,000 by default), or librdkafka refuses the configuration.
///
/// librdkafka allocates with the C library's malloc (see the binary's allocator), and what it
/// held at its peak stays in the process. Measured on the analytics worker draining 300,000
/// events (`sluice bench --workers 1`, one worker over 27 partitions): with 4 MiB a fetch brought
/// tens of thousands of records at once — heaptrack's peak of librdkafka's own heap 27 MiB of
/// decompressed record batches and 31 MiB of per-record ops — and the worker peaked at 144–157
/// MiB RSS; with 1 MiB and [`QUEUED_MIN_MESSAGES`], 98–99 MiB (2 runs), the in-process drain
/// 105–113 k events/s at 7.5–8.2 CPU ms per 1,000 against 92–98 k at 9–10 (3 pairs).
const FETCH_MAX_BYTES: &str = "1048576";

/// How many records librdkafka keeps fetching ahead until (`queued.min.messages`, 100,000 by
/// default): 10,000, a tenth of a second of the fastest drain measured here, while a batch is
/// written — the queue only has to cover a fetch's round trip. 106–107 MiB peak without it (the
/// run above, 2 runs).
const QUEUED_MIN_MESSAGES: &str = "10000";

/// The consumer's `session.timeout.ms` unless overridden: how long the group waits for a member
/// that stopped heart-beating before its partitions go to the others. librdkafka's and Kafka's
/// default, kept: heart-beats come from librdkafka's own thread, so a busy worker never misses
/// them, and only a dead one costs this long. A restart of a worker with an instance id takes its
/// partitions back at once, however long this is; it must only outlast such a restart (a pod
/// rescheduled, a worker waiting for its sink), or the partitions move away and back for nothing.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(45);

/// The consumer's `client.id`: `sluice-<projection>`, and `/<instance id>` with one, so
/// `sluice lag` can tell which replica owns a partition.
pub(super) fn client_id(projection: &str, instance_id: Option<&str>) -> String {
    match instance_id {
        Some(id) => format!("sluice-{projection}/{id}"),
        None => format!("sluice-{projection}"),
    }
}

/// What woke the loop.
pub(super) enum Step {
    /// A record.
    Polled(OwnedMessage),
    /// A consumer error report: librdkafka retries on its own (broker down, …), not fatal.
    Error(KafkaError),
    /// No record within the poll's wait: the local fetch queue is empty.
    Idle,
    /// The next batch stayed full for [`STALL_GRACE`] with every write slot taken.
    Stalled,
    /// A write in flight finished.
    Landed(Landing),
}

/// The group consumer, and the partitions it paused.
pub(super) struct Intake {
    consumer: StreamConsumer<WorkerContext>,
    paused: Option<TopicPartitionList>,
    metrics: WorkerMetrics,
    /// Its `group.instance.id`, for the message when another worker takes it.
    instance_id: Option<String>,
}

impl Intake {
    /// Joins the projection's group and subscribes to its topics; offsets are committed only by
    /// the commit stage (`context`).
    pub(super) fn subscribe(
        cfg: &WorkerConfig,
        context: WorkerContext,
        metrics: WorkerMetrics,
    ) -> Result<Self, WorkerError> {
        let mut config = kafka_config(&cfg.kafka);
        config
            .set("group.id", &cfg.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            // librdkafka's own prefetch queue is part of the worker's memory: 4 MiB, far below its
            // 64 MiB default. Measured on the analytics projection draining 300,000 events: 16 MiB
            // peaked at 386–408 MiB RSS, 4 MiB at 291–295, at the same drain rate (the next batch
            // is collected while one is written, so the queue only covers a fetch's round trip).
            .set("queued.max.messages.kbytes", "4096")
            // A queue that small is full whenever the worker is behind, and librdkafka then
            // postpones that partition's next fetch by `fetch.queue.backoff.ms`, 1 s by default:
            // a backlog drain kept stalling on it. 50 ms: the analytics drain of 300,000 events
            // into ClickHouse 18.16 went from 82–83 k to 94–110 k events/s (3 alternated pairs),
            // peak RSS 144–147 → 151–155 MiB. A worker keeping up never fills the queue, so this
            // changes nothing at a steady rate.
            .set("fetch.queue.backoff.ms", "50")
            // The queue's bounds are checked before a fetch, not within one: a single answer
            // may carry up to 1 MiB per partition assigned, up to `fetch.max.bytes` in all — held
            // at once, decompressed beside it, plus an op of librdkafka's per record. See
            // FETCH_MAX_BYTES and QUEUED_MIN_MESSAGES.
            .set("fetch.max.bytes", FETCH_MAX_BYTES)
            .set("queued.min.messages", QUEUED_MIN_MESSAGES)
            // At a steady rate the broker would answer every fetch as soon as one record is
            // there: hundreds of small fetches a second per worker, broker CPU the services on a
            // small machine share. Waiting up to 10 ms for 64 KiB costs at most that much latency
            // and makes fetches a few times fewer (a backlog fills 64 KiB at once anyway).
            .set("fetch.wait.max.ms", "10")
            .set("fetch.min.bytes", "65536")
            .set("session.timeout.ms", DEFAULT_SESSION_TIMEOUT.as_millis().to_string())
            .set("client.id", client_id(&cfg.projection, cfg.instance_id.as_deref()));
        if let Some(id) = &cfg.instance_id {
            // Static membership: a restart with this id takes the partitions back without a
            // rebalance; a second live worker with it fences the first (a fatal error there).
            config.set("group.instance.id", id);
        }
        for (k, v) in &cfg.consumer_overrides {
            config.set(k, v);
        }
        let consumer: StreamConsumer<WorkerContext> = config.create_with_context(context)?;
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(Self { consumer, paused: None, metrics, instance_id: cfg.instance_id.clone() })
    }

    /// The fatal error librdkafka raised, if any: the consumer is unusable past it.
    pub(super) fn fatal(&self) -> Option<WorkerError> {
        let (code, reason) = self.consumer.client().fatal_error()?;
        error!(%code, %reason, "fatal Kafka consumer error: the worker stops");
        Some(WorkerError::Fatal(match code {
            RDKafkaErrorCode::FencedInstanceId => format!(
                "another worker joined the group with this worker's instance id {:?} \
                 (give each replica its own): {reason}",
                self.instance_id.as_deref().unwrap_or_default()
            ),
            _ => format!("{code}: {reason}"),
        }))
    }

    /// The consumer, for the commit stage.
    pub(super) fn consumer(&self) -> &StreamConsumer<WorkerContext> {
        &self.consumer
    }

    /// Waits for the next step, or `None` once `shutdown` is cancelled. A poll waits at most
    /// `until`; with the next batch `full`, only a landing (or, when paused, a poll) wakes it.
    pub(super) async fn next(
        &self,
        writes: &mut Writes<'_>,
        until: Instant,
        full: bool,
        shutdown: &CancellationToken,
    ) -> Option<Step> {
        let paused = self.paused.is_some();
        let step = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            Some(landing) = writes.next(), if writes.len() > 0 => Step::Landed(landing),
            // Once paused, polling goes on so the group membership holds and rebalances are served.
            // A deadline rather than a wait: no clock read when a record is already there.
            polled = tokio::time::timeout_at(until.into(), self.consumer.recv()), if !full || paused => match polled {
                Err(_) => Step::Idle,
                Ok(Err(e)) => Step::Error(e),
                Ok(Ok(m)) => {
                    self.metrics.consumed.increment(1);
                    self.metrics.record_read(m.timestamp().to_millis());
                    Step::Polled(m.detach())
                }
            },
            // In a block: select! builds every branch's future, disabled ones too, and a sleep
            // reads the clock when built — once per record, for a branch that rarely runs.
            () = async { tokio::time::sleep(STALL_GRACE).await }, if full && !paused => Step::Stalled,
        };
        Some(step)
    }

    /// Whether the partitions are paused.
    pub(super) fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// Pauses every assigned partition: nothing more is fetched, memory stays flat however long
    /// the sink takes, and the loop keeps polling so the worker stays in its group.
    pub(super) fn pause(&mut self, reason: &'static str) {
        match self.consumer.assignment().and_then(|tpl| self.consumer.pause(&tpl).map(|()| tpl)) {
            Ok(tpl) => {
                warn!(partitions = tpl.count(), reason, "partitions paused until the write in flight lands");
                self.metrics.paused.set(tpl.count() as f64);
                self.metrics.paused_because(reason);
                self.paused = Some(tpl);
            }
            Err(e) => error!(error = %e, "cannot pause the partitions"),
        }
    }

    /// Resumes the paused partitions, if any: every partition assigned now, so one that was
    /// paused, revoked and assigned back meanwhile is resumed too.
    pub(super) fn resume(&mut self) {
        let Some(paused) = self.paused.take() else { return };
        let tpl = self.consumer.assignment().unwrap_or(paused);
        match self.consumer.resume(&tpl) {
            Ok(()) => info!(partitions = tpl.count(), "write landed: partitions resumed"),
            Err(e) => error!(error = %e, "cannot resume the paused partitions"),
        }
        self.metrics.paused.set(0.0);
    }

    /// Partitions just assigned take the worker's state: paused with the others while it is
    /// paused, else resumed — librdkafka keeps a partition's pause across a revocation, so one
    /// paused before it moved away and back would otherwise never be fetched again.
    pub(super) fn adopt(&mut self, assigned: &[Tp]) {
        if assigned.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in assigned {
            tpl.add_partition(topic, *partition);
        }
        let done = match &mut self.paused {
            Some(paused) => {
                for (topic, partition) in assigned {
                    paused.add_partition(topic, *partition);
                }
                self.consumer.pause(&tpl)
            }
            None => self.consumer.resume(&tpl),
        };
        if let Err(e) = done {
            error!(error = %e, partitions = tpl.count(), "cannot align the newly assigned partitions");
        }
    }
}
