//! Whether this process's workers are healthy, for the probes of `sluice work --metrics-addr`
//! (`/readyz`): a worker is ready while it projects (its sink answered and writes land) **and**
//! its consumer group gave it partitions. Fed by the same calls that set `sluice_worker_ready`
//! and `sluice_worker_assigned_partitions`, so the probe and the metrics never disagree.
//!
//! Process-wide, like the `metrics` recorder it mirrors: the HTTP listener is started before any
//! worker exists and does not know their names.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use metrics::Gauge;
use serde::Serialize;

/// One projection's state as the probe sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProjectionHealth {
    /// The worker projects: its sink answered at start and its writes are not failing.
    pub writing: bool,
    /// Partitions of its consumer group it owns now.
    pub assigned_partitions: usize,
}

impl ProjectionHealth {
    /// Ready for traffic of its own kind: writing, with partitions to write from.
    pub fn ready(&self) -> bool {
        self.writing && self.assigned_partitions > 0
    }
}

static STATES: Mutex<BTreeMap<String, ProjectionHealth>> = Mutex::new(BTreeMap::new());

fn update(projection: &str, f: impl FnOnce(&mut ProjectionHealth)) {
    let mut states = STATES.lock().unwrap_or_else(PoisonError::into_inner);
    f(states.entry(projection.to_owned()).or_default());
}

/// Every projection a worker of this process registered, by name.
pub fn snapshot() -> BTreeMap<String, ProjectionHealth> {
    STATES.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Ready when at least one worker registered and every one is [`ProjectionHealth::ready`].
pub fn all_ready(states: &BTreeMap<String, ProjectionHealth>) -> bool {
    !states.is_empty() && states.values().all(ProjectionHealth::ready)
}

/// `sluice_worker_ready{projection}` together with the probe's `writing`.
#[derive(Debug, Clone)]
pub struct ReadyGauge {
    gauge: Gauge,
    projection: String,
}

impl ReadyGauge {
    pub(crate) fn new(gauge: Gauge, projection: &str) -> Self {
        Self { gauge, projection: projection.to_owned() }
    }

    /// 1.0 writing, 0.0 not.
    pub fn set(&self, value: f64) {
        self.gauge.set(value);
        update(&self.projection, |h| h.writing = value > 0.0);
    }
}

/// `sluice_worker_assigned_partitions{projection}` together with the probe's count.
#[derive(Debug, Clone)]
pub struct AssignedGauge {
    gauge: Gauge,
    projection: String,
}

impl AssignedGauge {
    pub(crate) fn new(gauge: Gauge, projection: &str) -> Self {
        Self { gauge, projection: projection.to_owned() }
    }

    /// Partitions owned now.
    pub fn set(&self, partitions: usize) {
        self.gauge.set(partitions as f64);
        update(&self.projection, |h| h.assigned_partitions = partitions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_every_worker_writing_with_partitions() {
        let (ready, assigned) = (ReadyGauge::new(Gauge::noop(), "h1"), AssignedGauge::new(Gauge::noop(), "h1"));
        let of = |name: &str| snapshot().into_iter().filter(|(n, _)| n == name).collect::<BTreeMap<_, _>>();
        assert!(!all_ready(&BTreeMap::new()), "no worker yet: not ready");
        ready.set(1.0);
        assert!(!all_ready(&of("h1")), "writing without partitions: not ready");
        assigned.set(3);
        assert!(all_ready(&of("h1")));
        ready.set(0.0);
        assert_eq!(of("h1")["h1"], ProjectionHealth { writing: false, assigned_partitions: 3 });
        assert!(!all_ready(&of("h1")), "writes failing: not ready");
        ready.set(1.0);
        assigned.set(0);
        assert!(!all_ready(&of("h1")), "every partition revoked: not ready");
    }
}
