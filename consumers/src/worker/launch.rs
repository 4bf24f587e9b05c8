//! The launch stage: a batch taken from the batch stage becomes a write in flight — decode every
//! partition (bad records → DLQ), one [`Sink::write_all`] (refused events → DLQ) — which owns
//! its records, so the loop goes on polling while it runs. [`Writes`] holds up to the sink's
//! `max_in_flight` of them; each finishes as a [`Flushed`] for the land stage.
//!
//! Failures are retried here with backoff and never skip a record: a failing sink or DLQ raises
//! a flag the loop reads to pause the partitions, a sink configuration error stops the worker.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::FutureExt as _;
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt as _};
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sluice_core::event::Position;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::dlq::{DeadLetter, DeadLetterQueue};
use super::land::{Flight, Flushed, Ledger};
use super::{Stats, Tp, Work, Worker, WorkerError};
use crate::decode::{Decoded, Refused};
use crate::retry::{backoff, sleep_or_cancel};
use crate::sink::{Rejected, Sink, SinkError};

/// Failed attempts to write one dead letter before the partitions are paused. The first few
/// failures are usually a leader election (seconds); past them the DLQ is down or refuses the
/// record, and the worker stops fetching rather than piling records up behind it.
pub(super) const DLQ_ATTEMPTS_BEFORE_PAUSE: u32 = 3;

/// One partition's batch encoded for the sink, and the times its events occurred (for the
/// publish → visible histogram once it lands; their count is the batch's size).
struct Prepared<E> {
    encoded: E,
    occurred_at: Vec<i64>,
}

/// A write that finished, with the [`Flight`] it was launched as.
pub(super) type Landing = (Flight, Result<Flushed, WorkerError>);

/// A write in flight: decode, sink write and DLQ of one batch, borrowing the worker.
type InFlight<'a> = Pin<Box<dyn Future<Output = Landing> + Send + 'a>>;

/// The writes in flight, at most one per write slot.
pub(super) struct Writes<'a> {
    in_flight: FuturesUnordered<InFlight<'a>>,
    slots: usize,
}

impl<'a> Writes<'a> {
    /// No write in flight, `max_in_flight` slots (at least one).
    pub(super) fn new(max_in_flight: usize) -> Self {
        Self { in_flight: FuturesUnordered::new(), slots: max_in_flight.max(1) }
    }

    /// Write slots.
    pub(super) fn slots(&self) -> usize {
        self.slots
    }

    /// Writes in flight.
    pub(super) fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether another write may start.
    pub(super) fn has_slot(&self) -> bool {
        self.in_flight.len() < self.slots
    }

    /// Adds a launched write.
    pub(super) fn push(&mut self, write: InFlight<'a>) {
        self.in_flight.push(write);
    }

    /// The next write to finish; `None` when none is in flight. Cancel-safe: a write not yet
    /// finished stays in flight.
    pub(super) async fn next(&mut self) -> Option<Landing> {
        self.in_flight.next().await
    }
}

impl<S: Sink> Worker<S> {
    /// Starts the write of `work`: its records become pending in the ledger, and the returned
    /// future, once polled to the end, carries its [`Flight`] to [`Ledger::land`].
    pub(super) fn launch<'a>(
        &'a self,
        work: Work,
        ledger: &mut Ledger,
        dlq: &'a DeadLetterQueue,
        token: &'a CancellationToken,
    ) -> Result<InFlight<'a>, WorkerError> {
        let flight = ledger.launch(&work)?;
        Ok(Box::pin(self.flush(work, dlq, token).map(move |r| (flight, r))))
    }

    /// Decodes and encodes every partition of `work` (concurrently), writes the encoded batches
    /// with one [`Sink::write_all`], and sends refused events to the DLQ; says which partitions
    /// are entirely acknowledged. Owns its records, so the worker goes on polling meanwhile.
    async fn flush(
        &self,
        work: Work,
        dlq: &DeadLetterQueue,
        token: &CancellationToken,
    ) -> Result<Flushed, WorkerError> {
        let prepared = join_all(work.iter().map(|(tp, msgs)| {
            let span = info_span!("partition", topic = %tp.0, partition = tp.1);
            self.prepare_partition(tp, msgs, dlq, token).instrument(span)
        }))
        .await;
        let mut stats = Stats::default();
        let mut done = vec![false; work.len()];
        // Partitions with events to write (index into `work`), their encoded batches and what
        // the landing reports of them; a partition whose records all went to the DLQ is
        // acknowledged as it is.
        let (mut indices, mut encoded, mut written) = (Vec::new(), Vec::new(), Vec::new());
        for (i, p) in prepared.into_iter().enumerate() {
            if let Some((batch, s)) = p {
                stats += s;
                if batch.occurred_at.is_empty() {
                    done[i] = true;
                } else {
                    indices.push(i);
                    encoded.push(batch.encoded);
                    written.push(batch.occurred_at);
                }
            }
        }
        // `None` (cancelled mid-retry): nothing is acknowledged, so nothing is committed.
        let Some(refusals) = self.write_batches(&encoded, &written, token).await? else {
            return Ok(Flushed { work, done, stats });
        };
        drop(encoded);
        for ((i, occurred_at), rejected) in indices.into_iter().zip(&written).zip(refusals) {
            let msgs = &work[i].1;
            let by_offset: HashMap<i64, &OwnedMessage> = msgs.iter().map(|m| (m.offset(), m)).collect();
            let projected = (occurred_at.len() - rejected.len()) as u64;
            stats.batches += 1;
            stats.projected += projected;
            self.metrics.projected.increment(projected);
            self.metrics.record_visible(occurred_at);
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

    /// Decodes one partition's records (bad ones to the DLQ), each event handed to the sink's
    /// encoder as soon as it is decoded: the decoded events live one at a time where the sink
    /// encodes them on the way (ClickHouse), not a whole batch of them. `None` when cancelled
    /// before it finished.
    async fn prepare_partition(
        &self,
        (topic, partition): &Tp,
        msgs: &[OwnedMessage],
        dlq: &DeadLetterQueue,
        shutdown: &CancellationToken,
    ) -> Option<(Prepared<S::Encoded>, Stats)> {
        let (first, last) = (msgs.first()?, msgs.last()?);
        let mut stats = Stats::default();
        let mut occurred_at = Vec::with_capacity(msgs.len());
        let mut encoder = self.sink.encoder(topic, *partition, msgs.len());
        for m in msgs {
            let position = Position { topic: topic.clone(), partition: *partition, offset: m.offset() };
            match self.decoder.decode_retrying(m, position, shutdown).await {
                Ok(Some(Decoded::Event(event))) => {
                    occurred_at.push(event.envelope.occurred_at);
                    encoder.push(event);
                }
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
        let encoded = encoder.finish(first.offset(), last.offset());
        Some((Prepared { encoded, occurred_at }, stats))
    }

    /// Writes the (non-empty) batches, retrying transient failures with backoff; the refused
    /// events of each batch, or `None` when cancelled before the sink succeeded. While it fails,
    /// `sink_failing` tells the polling loop to pause the partitions.
    async fn write_batches(
        &self,
        batches: &[S::Encoded],
        occurred_at: &[Vec<i64>],
        token: &CancellationToken,
    ) -> Result<Option<Vec<Vec<Rejected>>>, WorkerError> {
        if batches.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            match self.sink.write_all(batches).await {
                Ok(rejected) => {
                    if self.sink_failing.swap(false, Ordering::Relaxed) {
                        self.metrics.ready.set(1.0);
                    }
                    self.metrics.write_seconds.record(started.elapsed().as_secs_f64());
                    debug!(batches = batches.len(), took = ?started.elapsed(), "batches written");
                    for events in occurred_at {
                        self.metrics.batch_size.record(events.len() as f64);
                    }
                    return Ok(Some(rejected));
                }
                Err(SinkError::Config(message)) => {
                    return Err(WorkerError::SinkConfig { sink: self.sink.kind(), message });
                }
                Err(SinkError::Transient(reason)) => {
                    self.sink_failing.store(true, Ordering::Relaxed);
                    self.metrics.ready.set(0.0);
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
