//! Intake decisions: what the gateway and the publisher do with an event type given a
//! [`LagSnapshot`] ([`decide`]): accept it, slow it down (rate and delay from the
//! [`IntakePolicy`], deeper into the soft band the slower), or refuse it.

use std::cmp::Ordering;
use std::fmt;
use std::time::Duration;

use super::{BackpressureState, Lag, LagSnapshot, ProjectionLag, SOFT_CEILING_FACTOR, Trigger};
use crate::topology::{BackpressureConfig, Topology};

/// How intake slows down and refuses; the gateway and the publisher library share one.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakePolicy {
    /// Events per second suggested for an event type just past a soft threshold.
    pub slow_rate_max: f64,
    /// Events per second suggested at the hard threshold (or [`SOFT_CEILING_FACTOR`] × soft).
    pub slow_rate_min: f64,
    /// Delay suggested to one publisher before each event, just past a soft threshold.
    pub slow_delay_min: Duration,
    /// Delay suggested at the hard threshold.
    pub slow_delay_max: Duration,
    /// `Retry-After` at the hard threshold; it grows with `lag / hard threshold`.
    pub retry_after_min: Duration,
    /// The longest `Retry-After` suggested.
    pub retry_after_max: Duration,
}

impl Default for IntakePolicy {
    fn default() -> Self {
        Self {
            slow_rate_max: 5_000.0,
            slow_rate_min: 100.0,
            slow_delay_min: Duration::from_millis(10),
            slow_delay_max: Duration::from_secs(1),
            retry_after_min: Duration::from_secs(1),
            retry_after_max: Duration::from_secs(60),
        }
    }
}

/// Why intake is slowed or refused: which projection, in which state, past which threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionReason {
    /// The projection behind the decision.
    pub projection: String,
    /// Its backpressure state.
    pub state: BackpressureState,
    /// The threshold behind that state.
    pub trigger: Option<Trigger>,
    /// True when a refusal became a slow-down because the event type is critical.
    pub critical: bool,
}

impl DecisionReason {
    /// The threshold's key (`hard_lag`, …), or `none`: a low-cardinality metric label.
    pub fn threshold(&self) -> &'static str {
        self.trigger.map_or("none", |t| t.threshold.as_str())
    }
}

impl fmt::Display for DecisionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "projection {} is {}", self.projection, self.state)?;
        if let Some(t) = &self.trigger {
            write!(f, " ({t})")?;
        }
        if self.critical {
            f.write_str("; critical event type: slowed, never refused")?;
        }
        Ok(())
    }
}

/// What intake should do with one event of a type, given the projections it feeds.
#[derive(Debug, Clone, PartialEq)]
pub enum IntakeDecision {
    /// Take it.
    Allow,
    /// Take it, slower.
    Slow {
        /// How deep into the soft band the projection is, 0 (at the soft threshold) to 1 (at the
        /// hard one); `rate` and `delay` follow from it.
        pressure: f64,
        /// Events per second to let through for this event type (a [`TokenBucket`](super::TokenBucket) rate).
        rate: f64,
        /// Delay one publisher should wait before sending it.
        delay: Duration,
        /// Why.
        reason: DecisionReason,
    },
    /// Refuse it (HTTP 429, the library's `Backpressure` error).
    Refuse {
        /// When to try again (whole seconds, for `Retry-After`).
        retry_after: Duration,
        /// Why.
        reason: DecisionReason,
    },
}

impl IntakeDecision {
    /// `allow`, `slow` or `refuse`: the `decision` metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Slow { .. } => "slow",
            Self::Refuse { .. } => "refuse",
        }
    }

    /// The reason, unless allowed.
    pub fn reason(&self) -> Option<&DecisionReason> {
        match self {
            Self::Allow => None,
            Self::Slow { reason, .. } | Self::Refuse { reason, .. } => Some(reason),
        }
    }

    /// How severe, as a sortable key: allow < slow (by pressure) < refuse (by `retry_after`).
    pub fn severity(&self) -> (u8, f64) {
        match self {
            Self::Allow => (0, 0.0),
            Self::Slow { pressure, .. } => (1, *pressure),
            Self::Refuse { retry_after, .. } => (2, retry_after.as_secs_f64()),
        }
    }

    /// The more severe of two decisions (the first when equal).
    pub fn most_severe(self, other: Self) -> Self {
        let (a, b) = (self.severity(), other.severity());
        match a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)) {
            Ordering::Less => other,
            _ => self,
        }
    }

    /// The decision one projection implies for an event type it folds. `critical`: the event type
    /// is never refused (at most slowed as hard as possible).
    pub fn for_projection(
        projection: &str,
        lag: &ProjectionLag,
        cfg: &BackpressureConfig,
        critical: bool,
        policy: &IntakePolicy,
    ) -> Self {
        let reason = |critical| DecisionReason {
            projection: projection.to_owned(),
            state: lag.state,
            trigger: lag.trigger,
            critical,
        };
        match lag.state {
            BackpressureState::Normal => Self::Allow,
            BackpressureState::Soft => slow(soft_pressure(lag.lag(), cfg), policy, reason(false)),
            BackpressureState::Hard if critical => slow(1.0, policy, reason(true)),
            BackpressureState::Hard => {
                let ratio = hard_ratio(lag.lag(), cfg).max(1.0);
                let secs = policy.retry_after_min.as_secs_f64() * ratio;
                let secs = secs.min(policy.retry_after_max.as_secs_f64()).max(policy.retry_after_min.as_secs_f64());
                let retry_after = Duration::try_from_secs_f64(secs.ceil()).unwrap_or(policy.retry_after_max);
                Self::Refuse { retry_after, reason: reason(false) }
            }
        }
    }
}

/// A slow-down at `pressure` ∈ [0, 1]: rate and delay interpolated geometrically (they span orders
/// of magnitude) between the policy's bounds.
fn slow(pressure: f64, policy: &IntakePolicy, reason: DecisionReason) -> IntakeDecision {
    let p = if pressure.is_finite() { pressure.clamp(0.0, 1.0) } else { 1.0 };
    let rate = geometric(policy.slow_rate_max, policy.slow_rate_min, p);
    let delay = geometric(policy.slow_delay_min.as_secs_f64(), policy.slow_delay_max.as_secs_f64(), p);
    let delay = Duration::try_from_secs_f64(delay).unwrap_or(policy.slow_delay_max);
    IntakeDecision::Slow { pressure: p, rate, delay, reason }
}

/// From `a` (p = 0) to `b` (p = 1): geometric when both are positive, else linear.
fn geometric(a: f64, b: f64, p: f64) -> f64 {
    let v = if a > 0.0 && b > 0.0 { a * (b / a).powf(p) } else { a + (b - a) * p };
    if v.is_finite() { v.max(0.0) } else { b.max(0.0) }
}

/// How deep into the soft band (soft threshold → hard threshold, or [`SOFT_CEILING_FACTOR`] × soft
/// without one) the lag is: the largest over messages and age, 0 when below every soft threshold.
pub fn soft_pressure(lag: Lag, cfg: &BackpressureConfig) -> f64 {
    let band = |value: u64, soft: u64, hard: Option<u64>| {
        let ceiling = hard.filter(|h| *h > soft).unwrap_or(soft.saturating_mul(SOFT_CEILING_FACTOR));
        if ceiling <= soft {
            return if value > soft { 1.0 } else { 0.0 };
        }
        ((value.saturating_sub(soft)) as f64 / (ceiling - soft) as f64).clamp(0.0, 1.0)
    };
    let messages = cfg.soft_lag.map_or(0.0, |s| band(lag.messages, s, cfg.hard_lag));
    let age = match (cfg.soft_lag_age, lag.age_ms()) {
        (Some(s), Some(v)) => band(v, s.as_millis(), cfg.hard_lag_age.map(|h| h.as_millis())),
        _ => 0.0,
    };
    messages.max(age)
}

/// The largest `value / hard threshold` over messages and age (0 without hard thresholds).
fn hard_ratio(lag: Lag, cfg: &BackpressureConfig) -> f64 {
    let ratio = |v: u64, limit: u64| if limit == 0 { f64::INFINITY } else { v as f64 / limit as f64 };
    let messages = cfg.hard_lag.map_or(0.0, |h| ratio(lag.messages, h));
    let age = match (cfg.hard_lag_age, lag.age_ms()) {
        (Some(h), Some(v)) => ratio(v, h.as_millis()),
        _ => 0.0,
    };
    messages.max(age)
}

/// True when any projection lists `event_type` in its `critical_events`: an erase request is
/// critical whichever projection is behind, so the mark applies to the event type everywhere.
pub fn is_critical(topology: &Topology, event_type: &str) -> bool {
    topology.projections().any(|(_, p)| p.backpressure.critical_events.iter().any(|e| e == event_type))
}

/// The intake decision for one event of `event_type`: the most severe over every projection that
/// folds it (`events` of the projection). Projections missing from `snapshot` (not observed yet)
/// allow; an unknown event type is allowed here (the publisher refuses it for its own reasons).
pub fn decide(snapshot: &LagSnapshot, topology: &Topology, event_type: &str, policy: &IntakePolicy) -> IntakeDecision {
    let critical = is_critical(topology, event_type);
    topology
        .projections()
        .filter(|(_, p)| p.events.iter().any(|e| e == event_type))
        .filter_map(|(name, p)| {
            let lag = snapshot.projections.get(name)?;
            Some(IntakeDecision::for_projection(name, lag, &p.backpressure, critical, policy))
        })
        .fold(IntakeDecision::Allow, IntakeDecision::most_severe)
}
