//! The intake side of the lag monitor: the gateway's [`IntakeGate`], deciding per event type from
//! the latest [`LagSnapshot`] whether to accept, slow (a token bucket per event type) or refuse.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::counter;
use sluice_core::lag::{IntakeDecision, IntakePolicy, LagSnapshot, TokenBucket, decide};
use sluice_core::topology::Topology;
use sluice_producers::{Decision, IntakeGate};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{describe, names};

/// The intake side of the monitor: decisions for event types from the latest snapshot, each
/// counted (`sluice_backpressure_decisions_total`) and logged when it changes for an event type,
/// and a token bucket per slowed event type. It is the gateway's [`IntakeGate`]. Cheap to clone;
/// clones share buckets and logs.
#[derive(Debug, Clone)]
pub struct LagGate {
    snapshots: watch::Receiver<LagSnapshot>,
    topology: Arc<Topology>,
    policy: IntakePolicy,
    state: Arc<Mutex<GateState>>,
}

#[derive(Debug, Default)]
struct GateState {
    /// The last decision kind and reason per event type, to log changes only.
    last: HashMap<String, (&'static str, String)>,
    buckets: HashMap<String, TokenBucket>,
}

impl LagGate {
    /// A gate over the snapshots of a [`LagMonitor`](super::LagMonitor) for `topology`'s event types.
    pub fn new(snapshots: watch::Receiver<LagSnapshot>, topology: Arc<Topology>, policy: IntakePolicy) -> Self {
        describe();
        Self { snapshots, topology, policy, state: Arc::default() }
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> LagSnapshot {
        self.snapshots.borrow().clone()
    }

    /// The decision for one event of `event_type` (see [`sluice_core::lag::decide`]), counted and,
    /// when it differs from the last one for that event type, logged with its reason.
    pub fn decide(&self, event_type: &str) -> IntakeDecision {
        let decision = decide(&self.snapshots.borrow(), &self.topology, event_type, &self.policy);
        if let Some(reason) = decision.reason() {
            counter!(names::BACKPRESSURE_DECISIONS, "projection" => reason.projection.clone(),
                     "decision" => decision.kind(), "threshold" => reason.threshold())
            .increment(1);
        }
        let text = decision.reason().map(ToString::to_string).unwrap_or_default();
        if let Ok(mut state) = self.state.lock() {
            let last = state.last.get(event_type);
            if last.is_none_or(|(k, r)| *k != decision.kind() || *r != text) {
                match &decision {
                    // The first decision being "allow" is not news.
                    IntakeDecision::Allow if last.is_none() => {}
                    IntakeDecision::Allow => info!(event_type, "intake allowed again"),
                    IntakeDecision::Slow { rate, delay, .. } => {
                        warn!(event_type, rate, ?delay, reason = %text, "intake slowed");
                    }
                    IntakeDecision::Refuse { retry_after, .. } => {
                        warn!(event_type, ?retry_after, reason = %text, "intake refused");
                    }
                }
                state.last.insert(event_type.to_owned(), (decision.kind(), text));
            }
        }
        decision
    }

    /// Decides and paces `events` events of `event_type` arriving at `now`. A slowed event type
    /// shares one token bucket at the decision's rate (burst: a tenth of a second's worth), each
    /// request reserving its own slot in it; a critical event type in a hard-pressed projection
    /// waits the decision's fixed delay instead, so a full bucket cannot turn into a refusal.
    fn pace(&self, event_type: &str, events: usize, now: Instant) -> Decision {
        match self.decide(event_type) {
            IntakeDecision::Allow => {
                if let Ok(mut state) = self.state.lock() {
                    state.buckets.remove(event_type);
                }
                Decision::Allow
            }
            IntakeDecision::Refuse { retry_after, .. } => Decision::Refuse { retry_after },
            IntakeDecision::Slow { delay, reason, .. } if reason.critical => Decision::Delay(delay),
            IntakeDecision::Slow { rate, delay, .. } => {
                let Ok(mut state) = self.state.lock() else { return Decision::Delay(delay) };
                let burst = u32::try_from((rate / 10.0).ceil() as u64).unwrap_or(u32::MAX).max(1);
                let bucket =
                    state.buckets.entry(event_type.to_owned()).or_insert_with(|| TokenBucket::new(rate, burst, now));
                if bucket.rate() != rate {
                    bucket.set_rate(rate, now);
                }
                let tokens = u32::try_from(events.max(1)).unwrap_or(u32::MAX);
                match bucket.reserve_n(tokens, now, Duration::MAX) {
                    Some(wait) if wait.is_zero() => Decision::Allow,
                    Some(wait) => Decision::Delay(wait),
                    None => Decision::Delay(delay),
                }
            }
        }
    }
}

/// The gateway's hook: [`Decision::Delay`] for a slowed event type (the gateway holds the
/// request, and answers 429 when the wait outlasts the request's time), [`Decision::Refuse`] past
/// a hard threshold, never for a critical event type.
impl IntakeGate for LagGate {
    fn check(&self, event_type: &str) -> Decision {
        self.pace(event_type, 1, Instant::now())
    }

    fn check_batch(&self, event_type: &str, events: usize) -> Decision {
        self.pace(event_type, events, Instant::now())
    }
}
