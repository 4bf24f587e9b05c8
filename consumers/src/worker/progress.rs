//! What a run did: the counters every stage adds to, logged on the way and returned at the end.

use std::time::{Duration, Instant};

use tracing::info;

/// How often the loop logs its counters.
const REPORT_EVERY: Duration = Duration::from_secs(10);

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

/// The running counters, and when the worker was first and last busy.
#[derive(Debug)]
pub(super) struct Progress {
    stats: Stats,
    first_record: Option<Instant>,
    last_ack: Option<Instant>,
    last_report: Instant,
}

impl Progress {
    /// Nothing done yet, at `now`.
    pub(super) fn new(now: Instant) -> Self {
        Self { stats: Stats::default(), first_record: None, last_ack: None, last_report: now }
    }

    /// A record was read at `now`.
    pub(super) fn consumed(&mut self, now: Instant) {
        self.first_record.get_or_insert(now);
        self.stats.consumed += 1;
    }

    /// A write landed at `now`, having done `s`.
    pub(super) fn landed(&mut self, s: Stats, now: Instant) {
        self.stats += s;
        self.last_ack = Some(now);
    }

    /// The drain finished at `now`, having done `s`.
    pub(super) fn drained(&mut self, s: Stats, now: Instant) {
        if s.batches > 0 {
            self.last_ack = Some(now);
        }
        self.stats += s;
    }

    /// Batches written so far (for the failpoint, which exists in debug builds only).
    #[cfg(debug_assertions)]
    pub(super) fn batches(&self) -> u64 {
        self.stats.batches
    }

    /// Logs the counters when the last report is [`REPORT_EVERY`] old.
    pub(super) fn report_if_due(&mut self, now: Instant) {
        if now.duration_since(self.last_report) >= REPORT_EVERY {
            self.log("progress");
            self.last_report = now;
        }
    }

    /// The run's counters, logged as the worker stops.
    pub(super) fn finish(mut self) -> Stats {
        if let (Some(first), Some(last)) = (self.first_record, self.last_ack) {
            self.stats.active = last.saturating_duration_since(first);
        }
        self.log("worker stopped");
        self.stats
    }

    fn log(&self, what: &'static str) {
        let s = &self.stats;
        info!(
            consumed = s.consumed,
            projected = s.projected,
            dead_lettered = s.dead_lettered,
            batches = s.batches,
            "{what}"
        );
    }
}
