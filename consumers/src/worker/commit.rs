//! The commit stage: the commit points the land stage acknowledged go to Kafka — once a
//! [`COMMIT_INTERVAL`] while the worker runs, synchronously at shutdown, and from the rebalance
//! callback before a partition is revoked (which also tells the loop what to forget).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_core::offsets::OffsetTracker;
use tracing::{info, warn};

use super::Tp;

/// How often acknowledged offsets are committed while the worker runs (and at every revocation
/// and shutdown, synchronously). Each commit is a write to `__consumer_offsets`; committing after
/// every landed write would cost the broker more than the records themselves at a steady rate.
/// A crash re-delivers at most this much more, which the idempotent sinks absorb.
pub(super) const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// State shared with the rebalance callback, which runs inside `recv()` on the polling task.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Acknowledged commit points not yet known to be committed.
    pub(super) acked: HashMap<Tp, i64>,
    /// Partitions revoked since the loop last looked.
    revoked: Vec<Tp>,
}

/// The consumer's context: commits what is acknowledged before a revocation takes it away.
pub(super) struct WorkerContext {
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

/// The commit stage's state: what the rebalance callback shares, and when the last commit went.
#[derive(Debug)]
pub(super) struct Commits {
    shared: Arc<Mutex<Shared>>,
    last: Instant,
}

impl Commits {
    /// Nothing acknowledged yet; the interval starts `now`.
    pub(super) fn new(now: Instant) -> Self {
        Self { shared: Arc::default(), last: now }
    }

    /// The consumer context sharing this stage's state.
    pub(super) fn context(&self) -> WorkerContext {
        WorkerContext { shared: self.shared.clone() }
    }

    /// Where the land stage hands acknowledged commit points to the rebalance callback.
    pub(super) fn shared(&self) -> &Mutex<Shared> {
        &self.shared
    }

    /// Partitions revoked since the last call.
    pub(super) fn revoked(&self) -> Vec<Tp> {
        match self.shared.lock() {
            Ok(mut s) => std::mem::take(&mut s.revoked),
            Err(_) => Vec::new(),
        }
    }

    /// Commits, in the background, every commit point that moved, once per [`COMMIT_INTERVAL`].
    pub(super) fn tick(
        &mut self,
        consumer: &StreamConsumer<WorkerContext>,
        trackers: &mut HashMap<Tp, OffsetTracker>,
        now: Instant,
    ) {
        if now.duration_since(self.last) >= COMMIT_INTERVAL {
            self.commit(consumer, trackers, CommitMode::Async);
            self.last = now;
        }
    }

    /// Commits every commit point that moved, and waits for it (shutdown).
    pub(super) fn sync(&self, consumer: &StreamConsumer<WorkerContext>, trackers: &mut HashMap<Tp, OffsetTracker>) {
        self.commit(consumer, trackers, CommitMode::Sync);
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
}
