//! The commit stage: the commit points the land stage acknowledged go to Kafka — within
//! [`COMMIT_AFTER_LANDING`] of a landed write (at most that often), once a [`COMMIT_INTERVAL`]
//! otherwise, synchronously at shutdown, and from the rebalance callback before a partition is
//! revoked (which also tells the loop what to forget).
//!
//! The committed offsets are also what readers with a consistency token wait on
//! ([`crate::consistency`]): the sooner a landed write is committed, the sooner a read that
//! waits for it answers.
//!
//! A background commit returns before Kafka answered; its outcome arrives later through the
//! context's commit callback. A refused one (typically during a rebalance: "generation id is not
//! valid") is offered again with the next commit — otherwise an idle partition's committed offset
//! would stay behind for good, and its lag never reach zero.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_core::offsets::OffsetTracker;
use tracing::{info, warn};

use super::Tp;

/// How often acknowledged offsets are committed while the worker runs and nothing new landed
/// (and at every revocation and shutdown, synchronously). A crash re-delivers at most what landed
/// since the last commit, which the idempotent sinks absorb.
pub(super) const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// How soon a landed write is committed: at most this long after it landed, and no more often
/// than this. Each commit is one small write to `__consumer_offsets`, so a busy worker commits at
/// most 10 times a second (Kafka Streams' commit interval under exactly-once is the same 100 ms),
/// while a write read back with its consistency token waits at most this long for its commit.
pub(super) const COMMIT_AFTER_LANDING: Duration = Duration::from_millis(100);

/// How often every held partition's commit point is committed again, moved or not. A
/// background commit is only queued when `commit` returns, and Kafka may refuse it later (during
/// a rebalance: "generation id is not valid") without the refusal always reaching the commit
/// callback; committing the same points again within this interval heals that, so an idle
/// partition's committed offset never stays behind for good. One small request per interval.
pub(super) const RECOMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// State shared with the rebalance callback, which runs inside `recv()` on the polling task.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Acknowledged commit points not yet known to be committed.
    pub(super) acked: HashMap<Tp, i64>,
    /// Partitions revoked since the loop last looked.
    revoked: Vec<Tp>,
    /// Commit points Kafka refused since the loop last looked (from the commit callback).
    refused: Vec<Tp>,
    /// The partitions assigned to this worker: a refusal arriving after its partition moved on
    /// is not this worker's to retry.
    owned: HashSet<Tp>,
    /// Partitions assigned since the loop last looked.
    assigned: Vec<Tp>,
}

impl Shared {
    /// What the commit callback learnt: the partitions of `offsets` whose commit failed (all of
    /// them when the whole request did) are offered again, and kept for a commit at revocation.
    fn commit_answered(&mut self, result: &KafkaResult<()>, offsets: &TopicPartitionList) {
        for e in offsets.elements() {
            let (Offset::Offset(point), true) = (e.offset(), result.is_err() || e.error().is_err()) else { continue };
            let tp = (e.topic().to_owned(), e.partition());
            if !self.owned.contains(&tp) {
                continue;
            }
            let kept = self.acked.entry(tp.clone()).or_insert(point);
            *kept = (*kept).max(point);
            self.refused.push(tp);
        }
    }
}

/// The consumer's context: commits what is acknowledged before a revocation takes it away.
pub(super) struct WorkerContext {
    shared: Arc<Mutex<Shared>>,
}

impl ClientContext for WorkerContext {}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else { return };
        let mut commit = TopicPartitionList::new();
        {
            let Ok(mut shared) = self.shared.lock() else { return };
            for e in tpl.elements() {
                let tp = (e.topic().to_owned(), e.partition());
                if let Some(offset) = shared.acked.remove(&tp) {
                    let _ = commit.add_partition_offset(&tp.0, tp.1, Offset::Offset(offset));
                }
                shared.owned.remove(&tp);
                shared.revoked.push(tp);
            }
        } // Unlocked before committing: the commit's own callback takes the lock.
        if commit.count() > 0 {
            match consumer.commit(&commit, CommitMode::Sync) {
                Ok(()) => info!(partitions = commit.count(), "committed acknowledged offsets before revocation"),
                // Not fatal: the next owner re-reads from the last commit; sinks are idempotent.
                Err(e) => warn!(error = %e, "commit before revocation failed; records will be re-delivered"),
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else { return };
        if let Ok(mut shared) = self.shared.lock() {
            let tps: Vec<Tp> = tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
            shared.owned.extend(tps.iter().cloned());
            shared.assigned.extend(tps);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = &result {
            warn!(error = %e, partitions = offsets.count(), "offset commit refused; offered again with the next one");
        }
        if let Ok(mut shared) = self.shared.lock() {
            shared.commit_answered(&result, offsets);
        }
    }
}

/// The commit stage's state: what the rebalance callback shares, and when the last commit went.
#[derive(Debug)]
pub(super) struct Commits {
    shared: Arc<Mutex<Shared>>,
    last: Instant,
    /// When every commit point was last offered again.
    last_full: Instant,
    /// A write landed since the last commit.
    landed: bool,
}

impl Commits {
    /// Nothing acknowledged yet; the interval starts `now`.
    pub(super) fn new(now: Instant) -> Self {
        Self { shared: Arc::default(), last: now, last_full: now, landed: false }
    }

    /// The consumer context sharing this stage's state.
    pub(super) fn context(&self) -> WorkerContext {
        WorkerContext { shared: self.shared.clone() }
    }

    /// Where the land stage hands acknowledged commit points to the rebalance callback.
    pub(super) fn shared(&self) -> &Mutex<Shared> {
        &self.shared
    }

    /// Partitions assigned since the last call.
    pub(super) fn assigned(&self) -> Vec<Tp> {
        match self.shared.lock() {
            Ok(mut s) => std::mem::take(&mut s.assigned),
            Err(_) => Vec::new(),
        }
    }

    /// How many partitions the worker owns now.
    pub(super) fn owned(&self) -> usize {
        self.shared.lock().map_or(0, |s| s.owned.len())
    }

    /// Partitions revoked since the last call.
    pub(super) fn revoked(&self) -> Vec<Tp> {
        match self.shared.lock() {
            Ok(mut s) => std::mem::take(&mut s.revoked),
            Err(_) => Vec::new(),
        }
    }

    /// A write landed: its commit point goes out within [`COMMIT_AFTER_LANDING`].
    pub(super) fn landed(&mut self) {
        self.landed = true;
    }

    /// How long until a commit is due (the loop waits no longer than that for records).
    pub(super) fn due_in(&self, now: Instant) -> Duration {
        let interval = if self.landed { COMMIT_AFTER_LANDING } else { COMMIT_INTERVAL };
        (self.last + interval).saturating_duration_since(now)
    }

    /// Commits, in the background, every commit point that moved or that Kafka refused, when one
    /// is due ([`Self::due_in`]).
    pub(super) fn tick(
        &mut self,
        consumer: &StreamConsumer<WorkerContext>,
        trackers: &mut HashMap<Tp, OffsetTracker>,
        now: Instant,
    ) {
        if self.due_in(now).is_zero() {
            self.landed = false;
            self.offer_refused(trackers);
            if now.duration_since(self.last_full) >= RECOMMIT_INTERVAL {
                trackers.values_mut().for_each(OffsetTracker::commit_failed);
                self.last_full = now;
            }
            self.commit(consumer, trackers, CommitMode::Async);
            self.last = now;
        }
    }

    /// Commits every commit point that moved or was refused, and waits for it (shutdown).
    pub(super) fn sync(&self, consumer: &StreamConsumer<WorkerContext>, trackers: &mut HashMap<Tp, OffsetTracker>) {
        self.offer_refused(trackers);
        self.commit(consumer, trackers, CommitMode::Sync);
    }

    /// The partitions whose commit Kafka refused (and that this worker still holds) offer their
    /// commit point again.
    fn offer_refused(&self, trackers: &mut HashMap<Tp, OffsetTracker>) {
        let refused = match self.shared.lock() {
            Ok(mut s) => std::mem::take(&mut s.refused),
            Err(_) => Vec::new(),
        };
        for tp in refused {
            if let Some(t) = trackers.get_mut(&tp) {
                t.commit_failed();
            }
        }
    }

    fn commit(
        &self,
        consumer: &StreamConsumer<WorkerContext>,
        trackers: &mut HashMap<Tp, OffsetTracker>,
        mode: CommitMode,
    ) {
        let tpl = to_commit(trackers);
        if tpl.count() > 0 {
            self.settle(&tpl, consumer.commit(&tpl, mode), trackers);
        }
    }

    /// After a commit of `tpl`: the callback forgets what Kafka has; a failed commit is offered
    /// again with the next one.
    fn settle(&self, tpl: &TopicPartitionList, result: KafkaResult<()>, trackers: &mut HashMap<Tp, OffsetTracker>) {
        match result {
            Ok(()) => {
                if let Ok(mut s) = self.shared.lock() {
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
}

/// The partitions whose commit point moved since the last commit, at their commit points.
fn to_commit(trackers: &mut HashMap<Tp, OffsetTracker>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), t) in trackers.iter_mut() {
        if let Some(point) = t.take_commit() {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(point));
        }
    }
    tpl
}

#[cfg(test)]
mod tests {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    use super::*;

    fn trackers(acked_up_to: i64) -> HashMap<Tp, OffsetTracker> {
        let mut t = OffsetTracker::new();
        for o in 0..acked_up_to {
            t.received(o).expect("received");
            t.ack(o).expect("ack");
        }
        HashMap::from([(("t".to_owned(), 0), t)])
    }

    fn offsets(tpl: &TopicPartitionList) -> Vec<(i32, Offset)> {
        tpl.elements().iter().map(|e| (e.partition(), e.offset())).collect()
    }

    #[test]
    fn commits_a_moved_point_once() {
        let mut ts = trackers(5);
        assert_eq!(offsets(&to_commit(&mut ts)), [(0, Offset::Offset(5))]);
        assert_eq!(to_commit(&mut ts).count(), 0, "nothing moved since");
    }

    #[test]
    fn a_failed_commit_is_offered_again_and_a_good_one_clears_the_callbacks_copy() {
        let commits = Commits::new(Instant::now());
        let mut ts = trackers(3);
        commits.shared().lock().expect("lock").acked.insert(("t".to_owned(), 0), 3);
        let tpl = to_commit(&mut ts);
        let failure = KafkaError::ConsumerCommit(RDKafkaErrorCode::RequestTimedOut);
        commits.settle(&tpl, Err(failure), &mut ts);
        assert_eq!(commits.shared().lock().expect("lock").acked.len(), 1, "still to commit at revocation");
        let again = to_commit(&mut ts);
        assert_eq!(offsets(&again), [(0, Offset::Offset(3))]);
        commits.settle(&again, Ok(()), &mut ts);
        assert!(commits.shared().lock().expect("lock").acked.is_empty());
    }

    #[test]
    fn a_landed_write_is_committed_within_a_tenth_of_a_second_otherwise_once_a_second() {
        let start = Instant::now();
        let mut commits = Commits::new(start);
        assert_eq!(commits.due_in(start), COMMIT_INTERVAL, "nothing landed: the periodic commit");
        commits.landed();
        assert_eq!(commits.due_in(start), COMMIT_AFTER_LANDING);
        assert_eq!(commits.due_in(start + Duration::from_millis(40)), Duration::from_millis(60));
        assert!(commits.due_in(start + COMMIT_AFTER_LANDING).is_zero());
    }

    #[test]
    fn every_commit_point_is_offered_again_after_the_recommit_interval() {
        let start = Instant::now();
        let mut commits = Commits::new(start);
        let mut ts = trackers(2);
        let _ = to_commit(&mut ts); // committed (the background commit was queued)
        assert_eq!(to_commit(&mut ts).count(), 0, "an idle partition is not committed every second");
        // The tick's own schedule, without a broker: the full re-offer happens at the interval.
        commits.offer_refused(&mut ts);
        assert_eq!(to_commit(&mut ts).count(), 0);
        let later = start + RECOMMIT_INTERVAL;
        if later.duration_since(commits.last_full) >= RECOMMIT_INTERVAL {
            ts.values_mut().for_each(OffsetTracker::commit_failed);
            commits.last_full = later;
        }
        assert_eq!(offsets(&to_commit(&mut ts)), [(0, Offset::Offset(2))], "offered again, though idle");
    }

    #[test]
    fn a_background_commit_refused_later_is_offered_again_and_kept_for_revocation() {
        let commits = Commits::new(Instant::now());
        let mut ts = trackers(4);
        let tpl = to_commit(&mut ts);
        // Queued: the background commit returns Ok at once.
        commits.settle(&tpl, Ok(()), &mut ts);
        assert_eq!(to_commit(&mut ts).count(), 0, "nothing moved, nothing offered");
        // Kafka's answer comes later: refused during a rebalance.
        let refused = Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::IllegalGeneration));
        commits.shared().lock().expect("lock").owned.insert(("t".to_owned(), 0));
        commits.shared().lock().expect("lock").commit_answered(&refused, &tpl);
        assert_eq!(commits.shared().lock().expect("lock").acked.get(&("t".to_owned(), 0)), Some(&4));
        commits.offer_refused(&mut ts);
        assert_eq!(offsets(&to_commit(&mut ts)), [(0, Offset::Offset(4))], "offered again though idle");
        // An accepted answer changes nothing.
        commits.shared().lock().expect("lock").commit_answered(&Ok(()), &tpl);
        commits.offer_refused(&mut ts);
        assert_eq!(to_commit(&mut ts).count(), 0);
        // A refusal for a partition that has moved on is not this worker's to retry.
        commits.shared().lock().expect("lock").owned.clear();
        commits.shared().lock().expect("lock").acked.clear();
        commits.shared().lock().expect("lock").commit_answered(&refused, &tpl);
        assert!(commits.shared().lock().expect("lock").acked.is_empty());
    }
}
