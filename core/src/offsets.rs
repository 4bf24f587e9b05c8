//! Which offset of a partition may be committed: never past a message whose sink write has not
//! been acknowledged.
//!
//! A worker hands messages to sinks that finish out of order (many Couchbase writes in flight,
//! ClickHouse batches). Every received offset is pending until acknowledged; the commit point is
//! the lowest pending offset, or one past the highest received offset when nothing is pending.
//! Offsets may have gaps (compacted topics, transaction markers), so the tracker never assumes
//! `offset + 1` is the next message. Pure code, property-tested below.

use std::collections::BTreeSet;

/// Tracks one partition's received and acknowledged offsets.
#[derive(Debug, Clone, Default)]
pub struct OffsetTracker {
    pending: BTreeSet<i64>,
    /// One past the highest offset received so far.
    next: Option<i64>,
    /// The last commit point handed out by [`OffsetTracker::take_commit`].
    committed: Option<i64>,
}

/// A misuse of the tracker: a bug in the caller, reported instead of silently committing wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetError {
    /// Offsets of a partition must arrive in increasing order.
    #[error("offset {offset} received after {previous}: offsets of a partition must increase")]
    OutOfOrder {
        /// The offset received.
        offset: i64,
        /// The highest offset received before it.
        previous: i64,
    },
    /// An acknowledgement for an offset that is not pending.
    #[error("offset {0} acknowledged but not pending (never received, or acknowledged twice)")]
    NotPending(i64),
}

impl OffsetTracker {
    /// A tracker for a partition with nothing received yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `offset` was handed to a sink.
    pub fn received(&mut self, offset: i64) -> Result<(), OffsetError> {
        if let Some(next) = self.next
            && offset < next
        {
            return Err(OffsetError::OutOfOrder { offset, previous: next - 1 });
        }
        self.pending.insert(offset);
        self.next = Some(offset + 1);
        Ok(())
    }

    /// Records that the sink acknowledged `offset` (written, or sent to the DLQ).
    pub fn ack(&mut self, offset: i64) -> Result<(), OffsetError> {
        if self.pending.remove(&offset) { Ok(()) } else { Err(OffsetError::NotPending(offset)) }
    }

    /// The offset to commit (Kafka's convention: the next offset to read), if any message was
    /// received: the lowest pending offset, else one past the highest received.
    pub fn commit_point(&self) -> Option<i64> {
        self.pending.first().copied().or(self.next)
    }

    /// The commit point when it moved since the last call; `None` when there is nothing new to
    /// commit (so an idle partition does not spam the group coordinator).
    pub fn take_commit(&mut self) -> Option<i64> {
        let point = self.commit_point()?;
        if self.committed == Some(point) {
            return None;
        }
        self.committed = Some(point);
        Some(point)
    }

    /// Forgets the last handed-out commit point after its commit failed, so the next
    /// [`OffsetTracker::take_commit`] offers it again.
    pub fn commit_failed(&mut self) {
        self.committed = None;
    }

    /// How many received messages wait for their acknowledgement.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Forgets everything, e.g. after the partition was revoked or its offset reset.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commits_up_to_the_first_unacked() {
        let mut t = OffsetTracker::new();
        assert_eq!(t.commit_point(), None);
        for o in [10, 11, 12, 15] {
            t.received(o).expect("in order");
        }
        assert_eq!(t.commit_point(), Some(10));
        t.ack(11).expect("pending");
        t.ack(15).expect("pending");
        assert_eq!(t.commit_point(), Some(10), "11 and 15 are done but 10 is not");
        t.ack(10).expect("pending");
        assert_eq!(t.commit_point(), Some(12));
        t.ack(12).expect("pending");
        assert_eq!(t.commit_point(), Some(16), "a gap (13, 14) does not hold the commit back");
        assert_eq!(t.take_commit(), Some(16));
        assert_eq!(t.take_commit(), None, "nothing new");
    }

    #[test]
    fn rejects_misuse() {
        let mut t = OffsetTracker::new();
        t.received(5).expect("first");
        assert_eq!(t.received(5), Err(OffsetError::OutOfOrder { offset: 5, previous: 5 }));
        assert_eq!(t.ack(4), Err(OffsetError::NotPending(4)));
        t.ack(5).expect("pending");
        assert_eq!(t.ack(5), Err(OffsetError::NotPending(5)));
    }

    /// Offsets with random gaps, and a random order in which their acks arrive.
    fn scenario() -> impl Strategy<Value = (Vec<i64>, Vec<usize>)> {
        proptest::collection::vec(1i64..4, 1..60).prop_flat_map(|gaps| {
            let offsets: Vec<i64> = gaps
                .iter()
                .scan(0i64, |o, g| {
                    *o += g;
                    Some(*o)
                })
                .collect();
            let n = offsets.len();
            (Just(offsets), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        })
    }

    proptest! {
        #[test]
        fn never_commits_past_an_unacked_message((offsets, ack_order) in scenario(), interleave in any::<u64>()) {
            let mut t = OffsetTracker::new();
            let mut acked = vec![false; offsets.len()];
            let mut received = 0;
            let mut last_commit = i64::MIN;
            let mut acks = ack_order.into_iter().peekable();
            let mut bits = interleave;
            // Interleave receives and acks; an ack only for a message already received.
            while received < offsets.len() || acks.peek().is_some() {
                let ack_now = bits & 1 == 1 && acks.peek().is_some_and(|&i| i < received);
                bits = bits.rotate_right(1);
                if ack_now || received == offsets.len() {
                    let Some(i) = acks.next() else { break };
                    if i >= received {
                        // Not received yet: receive up to it first.
                        while received <= i { t.received(offsets[received]).expect("increasing"); received += 1; }
                    }
                    t.ack(offsets[i]).expect("pending");
                    acked[i] = true;
                } else {
                    t.received(offsets[received]).expect("increasing");
                    received += 1;
                }
                if let Some(point) = t.take_commit() {
                    // Every message below the commit point is acknowledged …
                    for (i, &o) in offsets.iter().enumerate().take(received) {
                        if o < point { prop_assert!(acked[i], "committed {point} past unacked {o}"); }
                    }
                    // … and commits only move forward.
                    prop_assert!(point > last_commit);
                    last_commit = point;
                }
            }
            prop_assert_eq!(t.in_flight(), 0);
            prop_assert_eq!(t.commit_point(), Some(offsets[offsets.len() - 1] + 1));
        }
    }
}
