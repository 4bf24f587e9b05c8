//! The contract between a projection worker and the store it writes to.
//!
//! The worker reads each partition's records, decodes them into [`Event`]s and has the sink
//! encode each partition's [`Batch`] (events of one partition, in offset order); then it writes
//! the encoded batches of a flush with one [`Sink::write_all`]. The sink answers with what it
//! could not take for good (each such event goes to the dead-letter topic with the reason) or an
//! error whose kind tells the worker what to do next. Offsets are committed only after
//! `write_all` returned `Ok` — so a sink must be idempotent: the same batch may be written again
//! after a crash.

use std::future::Future;
use std::time::Duration;

use sluice_core::event::Event;
use sluice_core::topology::ProjectionConfig;

/// Events of one partition, in offset order, to be written together.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// The decoded events (records that failed to decode are already on their way to the DLQ).
    pub events: Vec<Event>,
    /// Offset of the first record the batch covers (decoded or not).
    pub first_offset: i64,
    /// Offset of the last record the batch covers.
    pub last_offset: i64,
}

impl Batch {
    /// An idempotency token for the whole batch: `<topic>:<partition>:<first>-<last>`.
    pub fn token(&self) -> String {
        batch_token(&self.topic, self.partition, self.first_offset, self.last_offset)
    }
}

/// The idempotency token of the batch of `topic`'s `partition` covering `first..=last`.
pub fn batch_token(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{topic}:{partition}:{first}-{last}")
}

/// One event the sink refuses for good (it will never succeed, retrying is pointless).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Offset of the event in its partition.
    pub offset: i64,
    /// Why, for the DLQ header and the operator.
    pub reason: String,
}

/// Why a whole write failed, and so what the worker does next.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying (timeouts, unavailable server, CAS contention beyond the sink's own
    /// retries): the worker backs off and writes the same batch again, committing nothing past it.
    #[error("transient: {0}")]
    Transient(String),
    /// The configuration or target is wrong (missing table, bad credentials): retrying cannot help
    /// and moving on would lose data, so the worker stops with this message.
    #[error("configuration: {0}")]
    Config(String),
}

/// One partition's batch encoded as its records are decoded ([`Sink::encoder`]): the worker
/// hands over each event as soon as it is decoded, in offset order, then asks for the result.
pub trait Encoder<E>: Send {
    /// Takes the partition's next event.
    fn push(&mut self, event: Event);

    /// What the sink sends for the batch of records `first_offset..=last_offset` (records that
    /// failed to decode included: they are on their way to the DLQ).
    fn finish(self: Box<Self>, first_offset: i64, last_offset: i64) -> E;
}

/// The [`Encoder`] of sinks that write from the events themselves: it keeps them in a [`Batch`]
/// and hands that to [`Sink::encode`].
#[derive(Debug)]
pub struct Collect<'a, S> {
    sink: &'a S,
    batch: Batch,
}

impl<'a, S: Sink> Collect<'a, S> {
    /// An encoder keeping the events of the next batch of `topic`'s `partition` (up to
    /// `records`) for `sink`.
    pub fn boxed(sink: &'a S, topic: &str, partition: i32, records: usize) -> Box<dyn Encoder<S::Encoded> + 'a> {
        let batch = Batch {
            topic: topic.to_owned(),
            partition,
            events: Vec::with_capacity(records),
            first_offset: 0,
            last_offset: 0,
        };
        Box::new(Self { sink, batch })
    }
}

impl<S: Sink> Encoder<S::Encoded> for Collect<'_, S> {
    fn push(&mut self, event: Event) {
        self.batch.events.push(event);
    }

    fn finish(mut self: Box<Self>, first_offset: i64, last_offset: i64) -> S::Encoded {
        (self.batch.first_offset, self.batch.last_offset) = (first_offset, last_offset);
        self.sink.encode(self.batch)
    }
}

/// An [`Encoder`] whose result is turned into another type (a sink that wraps another's).
pub struct MapEncoded<'a, E, F> {
    inner: Box<dyn Encoder<E> + 'a>,
    map: F,
}

impl<E, F> std::fmt::Debug for MapEncoded<'_, E, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapEncoded").finish_non_exhaustive()
    }
}

impl<'a, E, F> MapEncoded<'a, E, F> {
    /// `inner`'s result, passed through `map`.
    pub fn new(inner: Box<dyn Encoder<E> + 'a>, map: F) -> Self {
        Self { inner, map }
    }
}

impl<E, T, F: FnOnce(E) -> T + Send> Encoder<T> for MapEncoded<'_, E, F> {
    fn push(&mut self, event: Event) {
        self.inner.push(event);
    }

    fn finish(self: Box<Self>, first_offset: i64, last_offset: i64) -> T {
        (self.map)(self.inner.finish(first_offset, last_offset))
    }
}

/// A projection target.
///
/// A flush goes through a sink in two steps: each partition's records are encoded into what the
/// sink sends as they are decoded ([`Sink::encoder`]; CPU only, once: a sink that sends rows
/// drops each event as soon as its rows are written, so neither a batch being encoded nor a
/// write in flight holds its decoded events, only its request bodies), and [`Sink::write_all`]
/// sends them — again and again if a retry needs it, without encoding twice.
pub trait Sink: Send + Sync {
    /// One partition's batch as the sink writes it. Sinks that write from the events themselves
    /// (Couchbase folds them into the documents it reads) keep the [`Batch`].
    type Encoded: Send + Sync;

    /// A short name for logs and metrics (`couchbase`, `clickhouse`).
    fn kind(&self) -> &'static str;

    /// Prepares one partition's batch for writing; events that can never be written are kept
    /// in the result, to be answered as refused by [`Sink::write_all`].
    fn encode(&self, batch: Batch) -> Self::Encoded;

    /// An encoder for the next batch of `topic`'s `partition`, of up to `records` events. The
    /// default keeps the events and hands them to [`Sink::encode`] at the end; a sink that can
    /// encode event by event overrides it (and makes `encode` feed its encoder, so both ways
    /// encode alike).
    fn encoder<'a>(&'a self, topic: &str, partition: i32, records: usize) -> Box<dyn Encoder<Self::Encoded> + 'a>
    where
        Self: Sized,
    {
        Collect::boxed(self, topic, partition, records)
    }

    /// Writes the encoded batches of several partitions (one flush of the worker) idempotently,
    /// returning the refused events of each batch in order. On error the worker writes all of
    /// them again, which idempotent writes make harmless.
    fn write_all(
        &self,
        batches: &[Self::Encoded],
    ) -> impl Future<Output = Result<Vec<Vec<Rejected>>, SinkError>> + Send;

    /// Encodes and writes one batch; returns the events refused for good.
    fn write(&self, batch: &Batch) -> impl Future<Output = Result<Vec<Rejected>, SinkError>> + Send {
        let encoded = self.encode(batch.clone());
        async move { Ok(self.write_all(std::slice::from_ref(&encoded)).await?.pop().unwrap_or_default()) }
    }

    /// Bounds for how long the worker collects a batch before writing it.
    fn batching(&self) -> Batching;

    /// Events written since the sink was made that changed nothing because the store already had
    /// them (duplicates, older versions); `None` when the sink cannot tell (ClickHouse collapses
    /// duplicates later, at merge time). Reported by `sluice replay --to` and `sluice rebuild`.
    fn unchanged(&self) -> Option<u64> {
        None
    }
}

/// How a worker groups records for a sink, and how many of its writes it keeps in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Write when this many records are collected …
    pub max_records: usize,
    /// … or when the oldest collected record waited this long.
    pub linger: Duration,
    /// Most writes in flight at once (at least 1). Writes may land out of order: sinks apply an
    /// event only when it is newer than what they hold, so the order of landings does not change
    /// the result, and the worker still commits offsets in order.
    pub max_in_flight: usize,
}

impl Batching {
    /// The projection's `batch_size`, `linger` and `max_in_flight` (each at least 1).
    pub fn of(projection: &ProjectionConfig) -> Self {
        Self {
            max_records: usize::try_from(projection.batch_size).unwrap_or(usize::MAX).max(1),
            linger: projection.linger.get(),
            max_in_flight: usize::try_from(projection.max_in_flight).unwrap_or(1).max(1),
        }
    }
}
