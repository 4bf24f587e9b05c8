//! The land stage: a write in flight finished; its records are acknowledged in their
//! partitions' offset trackers, and the commit points that moved go to the commit stage.
//!
//! The [`Ledger`] holds the trackers of the assigned partitions: records become pending when
//! their write is launched and acknowledged when it lands, in any order, and the commit point
//! never passes a record still pending. Revocations are counted per partition (epochs), so a
//! write launched before a revocation acknowledges nothing in a later assignment's tracker.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use rdkafka::Message;
use sluice_core::offsets::OffsetTracker;

use super::commit::Shared;
use super::{Stats, Tp, Work, WorkerError};

/// The offset trackers of the assigned partitions, and how often each partition was revoked.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// Per assigned partition: which offsets are pending, which acknowledged.
    pub(super) trackers: HashMap<Tp, OffsetTracker>,
    revocations: HashMap<Tp, u64>,
}

/// One write in flight: when it started, and the revocation count of each of its partitions
/// (in the order of its work) at launch.
#[derive(Debug)]
pub(super) struct Flight {
    /// When the write was launched (the self-clocking linger follows how long it took).
    pub(super) started: Instant,
    epochs: Vec<u64>,
}

/// A write that finished: its records, which partitions were entirely acknowledged, counters.
#[derive(Debug)]
pub(super) struct Flushed {
    /// The records of the write, per partition.
    pub(super) work: Work,
    /// Per entry of `work`: every record written or dead-lettered.
    pub(super) done: Vec<bool>,
    /// What the write did.
    pub(super) stats: Stats,
}

impl Ledger {
    /// Registers the records of a write about to start as pending in their partitions' trackers.
    pub(super) fn launch(&mut self, work: &Work) -> Result<Flight, WorkerError> {
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
    pub(super) fn revoke(&mut self, tp: &Tp) {
        self.trackers.remove(tp);
        *self.revocations.entry(tp.clone()).or_default() += 1;
    }

    /// Applies a finished write: acknowledges the records of fully written partitions and hands
    /// their commit points to the rebalance callback. A partition not fully written (the drain
    /// deadline cancelled it) stays pending, so nothing at or past it is committed: it is
    /// re-delivered after the restart.
    pub(super) fn land(
        &mut self,
        flight: Flight,
        flushed: Flushed,
        shared: &Mutex<Shared>,
    ) -> Result<Stats, WorkerError> {
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

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;
    use rdkafka::message::OwnedMessage;

    use super::*;

    fn tp(p: i32) -> Tp {
        ("t".to_owned(), p)
    }

    fn work(p: i32, offsets: std::ops::Range<i64>) -> Work {
        let msgs = offsets.map(|o| OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, p, o, None));
        vec![(tp(p), msgs.collect())]
    }

    fn flushed(work: Work, done: bool) -> Flushed {
        let done = vec![done; work.len()];
        Flushed { work, done, stats: Stats::default() }
    }

    fn acked(shared: &Mutex<Shared>, p: i32) -> Option<i64> {
        shared.lock().expect("lock").acked.get(&tp(p)).copied()
    }

    #[test]
    fn writes_landing_out_of_order_commit_only_past_both() {
        let (mut ledger, shared) = (Ledger::default(), Mutex::new(Shared::default()));
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
        let (mut ledger, shared) = (Ledger::default(), Mutex::new(Shared::default()));
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
        let (mut ledger, shared) = (Ledger::default(), Mutex::new(Shared::default()));
        let cancelled = ledger.launch(&work(1, 0..10)).expect("launch");
        let next = ledger.launch(&work(1, 10..20)).expect("launch");
        ledger.land(cancelled, flushed(work(1, 0..10), false), &shared).expect("land");
        ledger.land(next, flushed(work(1, 10..20), true), &shared).expect("land");
        assert_eq!(acked(&shared, 1), Some(0), "never past a record that was not written");
        assert_eq!(ledger.trackers[&tp(1)].in_flight(), 10);
    }
}
