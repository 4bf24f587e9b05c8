//! The batch stage: records from the poll stage are collected here, per partition in offset
//! order, while writes are in flight; the launch stage takes the whole batch once it is full (the
//! sink's batch size or the byte budget) or due (its linger passed, or the worker reached the
//! head of the log) and a write slot is free.
//!
//! Pure: time is passed in, so every batching decision is tested without Kafka.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::message::OwnedMessage;

use super::{Tp, Work};
use crate::sink::Batching;

/// The shortest linger the self-clocking batching uses (see [`Batcher::landed`]).
const MIN_LINGER: Duration = Duration::from_millis(10);

/// How long a poll may find nothing before the worker considers itself at the head of the log
/// and writes what it buffered. librdkafka hands over a fetched batch record by record without
/// waiting, so a gap this long means the local queue is empty.
const IDLE_PROBE: Duration = Duration::from_millis(5);

/// How long a poll waits when nothing is waiting to be written: a landing or a record wakes the
/// loop earlier.
const QUIET_POLL: Duration = Duration::from_secs(1);

/// Records collected for the next write, and when it is due.
#[derive(Debug)]
pub(super) struct Batcher {
    buffers: BTreeMap<Tp, Vec<OwnedMessage>>,
    records: usize,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
    /// The configured linger: the upper bound of the self-clocked one.
    max_linger: Duration,
    /// How long the first record of a batch waits for more (see [`Batcher::landed`]).
    linger: Duration,
    /// When the batch collected now is due; set by its first record.
    flush_at: Option<Instant>,
}

/// What a record weighs in the worker's byte budget: key and value.
fn weight(m: &OwnedMessage) -> usize {
    m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len)
}

impl Batcher {
    /// An empty batch bounded by the sink's `batching` and `max_bytes` of keys and values.
    pub(super) fn new(batching: &Batching, max_bytes: usize) -> Self {
        Self {
            buffers: BTreeMap::new(),
            records: 0,
            bytes: 0,
            max_records: batching.max_records,
            max_bytes,
            max_linger: batching.linger,
            linger: batching.linger,
            flush_at: None,
        }
    }

    /// Adds a record polled at `now`; the first of a batch starts its linger.
    pub(super) fn push(&mut self, msg: OwnedMessage, now: Instant) {
        self.records += 1;
        self.bytes += weight(&msg);
        self.buffers.entry((msg.topic().to_owned(), msg.partition())).or_default().push(msg);
        self.flush_at.get_or_insert(now + self.linger);
    }

    /// Records collected.
    pub(super) fn records(&self) -> usize {
        self.records
    }

    /// At the sink's batch size or the byte budget: the poll stage stops receiving.
    pub(super) fn is_full(&self) -> bool {
        self.records >= self.max_records || self.bytes >= self.max_bytes
    }

    /// Whether the batch should be written now (given a free write slot): it is full, its linger
    /// passed, or the last poll found nothing (`idle`). Adaptive batching: while behind, records
    /// stream in back to back and batches fill up to the configured size or linger (throughput);
    /// at the head of the log nothing more is coming, so the batch goes at once instead of
    /// waiting out the linger (latency).
    pub(super) fn is_due(&self, now: Instant, idle: bool) -> bool {
        self.records > 0 && (self.is_full() || idle || self.flush_at.is_some_and(|t| now >= t))
    }

    /// How long the next poll may wait. With records collected and a write slot free, briefly: a
    /// poll that finds nothing means the local fetch queue is empty, i.e. the worker is at the
    /// head of the log. With every slot taken, a landing wakes the loop.
    pub(super) fn poll_wait(&self, now: Instant, slot_free: bool) -> Duration {
        match self.flush_at {
            Some(t) if slot_free => t.saturating_duration_since(now).min(IDLE_PROBE),
            _ => QUIET_POLL,
        }
    }

    /// Takes the whole batch, per partition in offset order, and starts an empty one.
    pub(super) fn take(&mut self) -> Work {
        self.records = 0;
        self.bytes = 0;
        self.flush_at = None;
        std::mem::take(&mut self.buffers).into_iter().collect()
    }

    /// Forgets what was collected for a revoked partition: its next owner reads those records
    /// again (sinks are idempotent).
    pub(super) fn forget(&mut self, tp: &Tp) {
        if let Some(msgs) = self.buffers.remove(tp) {
            self.records -= msgs.len();
            self.bytes -= msgs.iter().map(weight).sum::<usize>();
        }
    }

    /// Self-clocking linger, after a write that `took` this long landed: collect for about as
    /// long as the last write took, shared among the `slots`. A steady stream then gets batches
    /// sized to what the sink absorbs in that time (latency stays near one write), a backlog
    /// still fills batches to the batch size, and the configured linger remains the upper bound.
    pub(super) fn landed(&mut self, took: Duration, slots: usize) {
        self.linger = (took / slots as u32).clamp(MIN_LINGER, self.max_linger.max(MIN_LINGER));
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;

    use super::*;

    fn msg(partition: i32, offset: i64, bytes: usize) -> OwnedMessage {
        OwnedMessage::new(Some(vec![0; bytes]), None, "t".into(), Timestamp::NotAvailable, partition, offset, None)
    }

    fn batcher(max_records: usize, max_bytes: usize, linger_ms: u64) -> Batcher {
        let batching = Batching { max_records, linger: Duration::from_millis(linger_ms), max_in_flight: 1 };
        Batcher::new(&batching, max_bytes)
    }

    #[test]
    fn is_full_at_the_batch_size_or_the_byte_budget() {
        let now = Instant::now();
        let mut by_records = batcher(2, 1000, 100);
        by_records.push(msg(0, 0, 1), now);
        assert!(!by_records.is_full());
        by_records.push(msg(0, 1, 1), now);
        assert!(by_records.is_full());

        let mut by_bytes = batcher(100, 10, 100);
        by_bytes.push(msg(0, 0, 6), now);
        assert!(!by_bytes.is_full());
        by_bytes.push(msg(0, 1, 6), now);
        assert!(by_bytes.is_full());
    }

    #[test]
    fn take_hands_over_per_partition_in_offset_order_and_resets() {
        let now = Instant::now();
        let mut b = batcher(10, 1000, 100);
        for (p, o) in [(1, 5), (0, 7), (1, 6), (0, 8)] {
            b.push(msg(p, o, 1), now);
        }
        let work = b.take();
        let offsets: Vec<(i32, Vec<i64>)> =
            work.iter().map(|((_, p), ms)| (*p, ms.iter().map(Message::offset).collect())).collect();
        assert_eq!(offsets, [(0, vec![7, 8]), (1, vec![5, 6])]);
        assert_eq!(b.records(), 0);
        assert!(!b.is_full());
        assert!(!b.is_due(now + Duration::from_secs(10), true), "an empty batch is never due");
    }

    #[test]
    fn is_due_when_full_lingered_or_idle() {
        let now = Instant::now();
        let mut b = batcher(3, 1000, 100);
        assert!(!b.is_due(now, true), "nothing to write");
        b.push(msg(0, 0, 1), now);
        assert!(!b.is_due(now + Duration::from_millis(50), false), "still lingering");
        assert!(b.is_due(now + Duration::from_millis(50), true), "at the head of the log: at once");
        assert!(b.is_due(now + Duration::from_millis(100), false), "the linger passed");
        b.push(msg(0, 1, 1), now);
        b.push(msg(0, 2, 1), now);
        assert!(b.is_due(now, false), "full");
    }

    #[test]
    fn polls_briefly_only_with_records_and_a_free_slot() {
        let now = Instant::now();
        let mut b = batcher(10, 1000, 100);
        assert_eq!(b.poll_wait(now, true), QUIET_POLL);
        b.push(msg(0, 0, 1), now);
        assert_eq!(b.poll_wait(now, true), IDLE_PROBE);
        assert_eq!(b.poll_wait(now + Duration::from_millis(98), true), Duration::from_millis(2));
        assert_eq!(b.poll_wait(now, false), QUIET_POLL, "every slot taken: a landing wakes the loop");
    }

    #[test]
    fn forget_drops_a_revoked_partition_and_its_weight() {
        let now = Instant::now();
        let mut b = batcher(3, 10, 100);
        b.push(msg(0, 0, 4), now);
        b.push(msg(1, 0, 4), now);
        b.push(msg(1, 1, 4), now);
        assert!(b.is_full());
        b.forget(&("t".to_owned(), 1));
        assert_eq!(b.records(), 1);
        assert!(!b.is_full());
        assert_eq!(b.take().len(), 1);
    }

    #[test]
    fn linger_follows_the_last_write_within_bounds() {
        let now = Instant::now();
        let mut b = batcher(10, 1000, 200);
        b.landed(Duration::from_millis(120), 2);
        b.push(msg(0, 0, 1), now);
        assert!(!b.is_due(now + Duration::from_millis(59), false));
        assert!(b.is_due(now + Duration::from_millis(60), false), "half the write, with two slots");
        b.take();
        b.landed(Duration::from_secs(5), 1);
        b.push(msg(0, 1, 1), now);
        assert!(b.is_due(now + Duration::from_millis(200), false), "never past the configured linger");
        b.take();
        b.landed(Duration::ZERO, 1);
        b.push(msg(0, 2, 1), now);
        assert!(!b.is_due(now + Duration::from_millis(9), false), "never below MIN_LINGER");
        assert!(b.is_due(now + MIN_LINGER, false));
    }
}
