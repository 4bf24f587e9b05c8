//! Lag and backpressure, as pure decisions: how far behind each projection is, which
//! backpressure state that puts it in, and what intake should do about an event type.
//!
//! Data comes from the lag monitor (`sluice_consumers::lag`), which reads, for every projection's
//! consumer group and source partition, the watermarks, the committed offset and the Kafka
//! timestamp of the oldest unprocessed record ([`PartitionOffsets`]). From those this module
//! computes a [`LagSnapshot`]: per partition the lag in messages (high watermark − committed
//! offset) and its age (now − timestamp of the record at the committed offset), per projection the
//! sum and the maximum, and a [`BackpressureState`] decided from the projection's
//! [`BackpressureConfig`] with hysteresis ([`LOW_WATER_PERCENT`]) so it does not flap. The snapshot
//! goes to the workers, the gateway and `sluice lag`; [`decide`] turns it into an
//! [`IntakeDecision`] for one event type, and a [`TokenBucket`] paces intake while it is slowed.
//!
//! Time is always passed in (`now_ms`, an [`Instant`]): nothing here reads a clock or a socket.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::topology::{BackpressureConfig, Topology};

/// The low-water mark of every threshold, in percent of it. A state is entered when a measure
/// reaches its threshold and left only once every measure of that state is below this share of
/// its threshold, so a lag hovering around a threshold does not switch intake on and off at every
/// refresh.
pub const LOW_WATER_PERCENT: u64 = 80;

/// Without a hard threshold, the slow-down of a soft one is strongest at this multiple of it.
pub const SOFT_CEILING_FACTOR: u64 = 2;

/// What the lag monitor read from Kafka for one source partition of one consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Source topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Low watermark: the oldest offset still retained.
    pub low: i64,
    /// High watermark: the offset the next record will get.
    pub high: i64,
    /// The group's committed offset (the next record to process); `None` before its first commit.
    pub committed: Option<i64>,
    /// Kafka timestamp (ms since the Unix epoch) of the record at [`Self::position`], when known.
    pub oldest_timestamp_ms: Option<i64>,
}

impl PartitionOffsets {
    /// The offset of the oldest record the group has not processed: the committed offset, or the
    /// low watermark when the group never committed (a new group starts from the earliest record)
    /// or committed below it (retention deleted what it had not read); never past the high mark.
    pub fn position(&self) -> i64 {
        self.committed.unwrap_or(self.low).max(self.low).min(self.high)
    }

    /// Records between [`Self::position`] and the high watermark.
    pub fn lag_messages(&self) -> u64 {
        u64::try_from(self.high.saturating_sub(self.position())).unwrap_or(0)
    }
}

/// The lag of one source partition of a projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLag {
    /// Source topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Low watermark.
    pub low_watermark: i64,
    /// High watermark.
    pub high_watermark: i64,
    /// The group's committed offset; `null` before its first commit.
    pub committed: Option<i64>,
    /// Records not yet processed.
    pub lag_messages: u64,
    /// Age of the oldest unprocessed record (seconds in JSON): zero when caught up, `null` when
    /// its timestamp could not be read.
    #[serde(rename = "lag_seconds", with = "opt_seconds")]
    pub age: Option<Duration>,
}

impl PartitionLag {
    /// The lag of `offsets` at `now_ms` (ms since the Unix epoch). A record timestamp in the future
    /// (clock skew between producer and monitor) counts as zero age.
    pub fn compute(offsets: &PartitionOffsets, now_ms: i64) -> Self {
        let lag_messages = offsets.lag_messages();
        let age = if lag_messages == 0 {
            Some(Duration::ZERO)
        } else {
            offsets
                .oldest_timestamp_ms
                .map(|ts| Duration::from_millis(u64::try_from(now_ms.saturating_sub(ts)).unwrap_or(0)))
        };
        Self {
            topic: offsets.topic.clone(),
            partition: offsets.partition,
            low_watermark: offsets.low,
            high_watermark: offsets.high,
            committed: offsets.committed,
            lag_messages,
            age,
        }
    }
}

/// A projection's lag as its thresholds see it: messages summed over partitions, the oldest
/// unprocessed record's age (the maximum over partitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// Messages behind.
    pub messages: u64,
    /// Age of the oldest unprocessed record; `None` when unknown (then age thresholds are silent).
    pub age: Option<Duration>,
}

impl Lag {
    /// Sum of messages and maximum of the known ages of `partitions`; an empty list is no lag.
    pub fn aggregate<'a>(partitions: impl IntoIterator<Item = &'a PartitionLag>) -> Self {
        let mut lag = Self { messages: 0, age: Some(Duration::ZERO) };
        let mut unknown = false;
        for p in partitions {
            lag.messages = lag.messages.saturating_add(p.lag_messages);
            match p.age {
                Some(age) => lag.age = lag.age.max(Some(age)),
                None => unknown = true,
            }
        }
        // Every lagging partition unreadable: the age is unknown, not zero.
        if unknown && lag.age == Some(Duration::ZERO) {
            lag.age = None;
        }
        lag
    }

    fn age_ms(&self) -> Option<u64> {
        self.age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX))
    }
}

/// How hard a projection pushes back on intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackpressureState {
    /// Below every threshold: intake is not limited.
    #[default]
    Normal,
    /// Past a soft threshold: intake of the event types feeding the projection is slowed.
    Soft,
    /// Past a hard threshold: intake of those event types is refused, critical ones excepted.
    Hard,
}

impl BackpressureState {
    /// `normal`, `soft` or `hard`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Soft => "soft",
            Self::Hard => "hard",
        }
    }

    /// The value of the `sluice_backpressure_state` gauge: 0, 1 or 2.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Normal => 0.0,
            Self::Soft => 1.0,
            Self::Hard => 2.0,
        }
    }
}

impl fmt::Display for BackpressureState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One threshold of `[projections.<name>.backpressure]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    /// `soft_lag` (messages).
    SoftLag,
    /// `hard_lag` (messages).
    HardLag,
    /// `soft_lag_age` (age of the oldest unprocessed event).
    SoftLagAge,
    /// `hard_lag_age`.
    HardLagAge,
}

impl Threshold {
    /// The key in `topology.toml`; also the `threshold` label of decision metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SoftLag => "soft_lag",
            Self::HardLag => "hard_lag",
            Self::SoftLagAge => "soft_lag_age",
            Self::HardLagAge => "hard_lag_age",
        }
    }

    /// True for the age thresholds (values in milliseconds).
    pub fn is_age(self) -> bool {
        matches!(self, Self::SoftLagAge | Self::HardLagAge)
    }
}

/// Why a projection is in its state: the threshold that put or keeps it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Which threshold.
    pub threshold: Threshold,
    /// The measured value: messages, or milliseconds for the age thresholds.
    pub value: u64,
    /// The threshold, in the same unit.
    pub limit: u64,
    /// True when the value is below the threshold but not yet below its low-water mark
    /// ([`LOW_WATER_PERCENT`]): the state holds rather than being entered.
    pub holding: bool,
}

impl Trigger {
    /// `value / limit`, for comparing triggers of different units.
    fn ratio(&self) -> f64 {
        if self.limit == 0 { f64::INFINITY } else { self.value as f64 / self.limit as f64 }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.threshold.as_str();
        let (value, limit) = if self.threshold.is_age() {
            (format!("oldest unprocessed event {} old", fmt_ms(self.value)), fmt_ms(self.limit))
        } else {
            (format!("lag {} messages", self.value), self.limit.to_string())
        };
        if self.holding {
            write!(f, "{value}, still at or above {LOW_WATER_PERCENT}% of {key} {limit}")
        } else {
            write!(f, "{value} ≥ {key} {limit}")
        }
    }
}

/// Milliseconds for people: `0s`, `850ms`, `12.3s`, `4m05s`, `2h07m`.
pub fn fmt_ms(ms: u64) -> String {
    match ms {
        0 => "0s".to_owned(),
        1..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1_000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// `value ≥ LOW_WATER_PERCENT % of limit`, exactly (no rounding of the mark).
fn above_low_water(value: u64, limit: u64) -> bool {
    u128::from(value) * 100 >= u128::from(limit) * u128::from(LOW_WATER_PERCENT)
}

/// The thresholds of one level with the measured values, as triggers that fire (value ≥ limit)
/// or, when `may_hold`, hold (value at or above the low-water mark); the largest `value / limit`
/// wins, so the reason names the threshold most exceeded.
fn level_trigger(level: BackpressureState, lag: Lag, cfg: &BackpressureConfig, may_hold: bool) -> Option<Trigger> {
    let (messages, age) = match level {
        BackpressureState::Hard => ((Threshold::HardLag, cfg.hard_lag), (Threshold::HardLagAge, cfg.hard_lag_age)),
        _ => ((Threshold::SoftLag, cfg.soft_lag), (Threshold::SoftLagAge, cfg.soft_lag_age)),
    };
    let candidates = [
        messages.1.map(|limit| (messages.0, lag.messages, limit)),
        age.1.zip(lag.age_ms()).map(|(limit, value)| (age.0, value, limit.as_millis())),
    ];
    candidates
        .into_iter()
        .flatten()
        .filter_map(|(threshold, value, limit)| {
            if value >= limit {
                Some(Trigger { threshold, value, limit, holding: false })
            } else if may_hold && above_low_water(value, limit) {
                Some(Trigger { threshold, value, limit, holding: true })
            } else {
                None
            }
        })
        // A firing trigger beats a holding one; then the most exceeded.
        .max_by(|a, b| (!a.holding).cmp(&!b.holding).then(a.ratio().total_cmp(&b.ratio())))
}

/// The next backpressure state of a projection whose state was `previous` and whose lag is now
/// `lag`, with the trigger that explains it (`None` for [`BackpressureState::Normal`]).
///
/// A state is entered when one of its thresholds is reached, and held while one of them stays at
/// or above [`LOW_WATER_PERCENT`] of it. Leaving `Hard` goes to `Soft` when a soft threshold still
/// holds. On a constant lag the state settles after at most one step; it is monotone in the lag
/// and in `previous`.
pub fn next_state(
    previous: BackpressureState,
    lag: Lag,
    cfg: &BackpressureConfig,
) -> (BackpressureState, Option<Trigger>) {
    use BackpressureState::{Hard, Normal, Soft};
    if let Some(t) = level_trigger(Hard, lag, cfg, previous == Hard) {
        return (Hard, Some(t));
    }
    if let Some(t) = level_trigger(Soft, lag, cfg, previous >= Soft) {
        return (Soft, Some(t));
    }
    (Normal, None)
}

/// One projection in a [`LagSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectionLag {
    /// Its consumer group.
    pub group: String,
    /// Backpressure state.
    pub state: BackpressureState,
    /// The threshold behind a state other than normal.
    pub trigger: Option<Trigger>,
    /// Messages behind, summed over partitions.
    pub lag_messages: u64,
    /// Age of the oldest unprocessed record over all partitions (seconds in JSON).
    #[serde(rename = "lag_seconds", with = "opt_seconds")]
    pub age: Option<Duration>,
    /// Every source partition, by topic then partition.
    pub partitions: Vec<PartitionLag>,
    /// Why the last refresh failed; the other fields are then those of the refresh before it
    /// (a monitor that cannot see does not lift backpressure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ProjectionLag {
    /// The lag of a projection with consumer group `group` and thresholds `cfg`, from what the
    /// monitor `observed` at `now_ms`, continuing from its `previous` entry (hysteresis).
    pub fn compute(
        group: &str,
        cfg: &BackpressureConfig,
        previous: Option<&ProjectionLag>,
        observed: Result<&[PartitionOffsets], &str>,
        now_ms: i64,
    ) -> Self {
        let offsets = match observed {
            Ok(offsets) => offsets,
            Err(error) => {
                return match previous {
                    Some(p) => Self { error: Some(error.to_owned()), ..p.clone() },
                    None => Self {
                        group: group.to_owned(),
                        state: BackpressureState::Normal,
                        trigger: None,
                        lag_messages: 0,
                        age: None,
                        partitions: Vec::new(),
                        error: Some(error.to_owned()),
                    },
                };
            }
        };
        let mut partitions: Vec<PartitionLag> = offsets.iter().map(|o| PartitionLag::compute(o, now_ms)).collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let lag = Lag::aggregate(&partitions);
        let (state, trigger) = next_state(previous.map_or(BackpressureState::Normal, |p| p.state), lag, cfg);
        Self {
            group: group.to_owned(),
            state,
            trigger,
            lag_messages: lag.messages,
            age: lag.age,
            partitions,
            error: None,
        }
    }

    /// The aggregated lag the thresholds compare against.
    pub fn lag(&self) -> Lag {
        Lag { messages: self.lag_messages, age: self.age }
    }
}

/// What a projection's monitor saw in one refresh: its partitions' offsets, or why it could not.
pub type Observation = Result<Vec<PartitionOffsets>, String>;

/// The lag of every projection at one moment; what the lag monitor publishes.
///
/// JSON (`sluice lag --json`):
/// `{"taken_at_ms": …, "projections": {"<name>": {"group", "state", "trigger", "lag_messages",
/// "lag_seconds", "partitions": [{"topic", "partition", "low_watermark", "high_watermark",
/// "committed", "lag_messages", "lag_seconds"}], "error"?}}}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LagSnapshot {
    /// When it was taken, ms since the Unix epoch; 0 for the empty snapshot before the first.
    pub taken_at_ms: i64,
    /// By projection name.
    pub projections: BTreeMap<String, ProjectionLag>,
}

impl LagSnapshot {
    /// No data yet: every projection is taken as normal.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The snapshot after `previous` given what was `observed` (by projection name) at `now_ms`.
    /// Projections of `topology` that were not observed are left out.
    pub fn compute(
        topology: &Topology,
        observed: &BTreeMap<String, Observation>,
        previous: &LagSnapshot,
        now_ms: i64,
    ) -> Self {
        let projections = topology
            .projections()
            .filter_map(|(name, p)| {
                let seen = observed.get(name)?;
                let lag = ProjectionLag::compute(
                    &p.group,
                    &p.backpressure,
                    previous.projections.get(name),
                    seen.as_deref().map_err(String::as_str),
                    now_ms,
                );
                Some((name.to_owned(), lag))
            })
            .collect();
        Self { taken_at_ms: now_ms, projections }
    }
}

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
        /// Events per second to let through for this event type (a [`TokenBucket`] rate).
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

/// A token bucket with the time passed in: `rate` tokens per second, at most `burst` saved up.
/// The gateway keeps one per slowed event type and sets its rate from [`IntakeDecision::Slow`].
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. A rate that is not a positive number never refills; a burst below
    /// one is one (a token must fit).
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self { rate: sanitize_rate(rate), burst, tokens: burst, updated: now }
    }

    /// Tokens per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Tokens available at `now` (negative while reservations are outstanding).
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Changes the rate from `now` on; what accrued until `now` is kept.
    pub fn set_rate(&mut self, rate: f64, now: Instant) {
        self.refill(now);
        self.rate = sanitize_rate(rate);
    }

    /// Takes a token if one is there; otherwise how long until one will be (nothing is taken).
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait_for(1.0 - self.tokens))
        }
    }

    /// Takes a token now, in advance if need be, and says how long to wait before using it; `None`
    /// (nothing taken) when that wait would exceed `max_wait`. Callers queue fairly this way: each
    /// reservation gets its own slot instead of all retrying at the same instant.
    pub fn reserve(&mut self, now: Instant, max_wait: Duration) -> Option<Duration> {
        self.reserve_n(1, now, max_wait)
    }

    /// [`Self::reserve`] for `tokens` tokens at once (a batch of events); more than the burst is
    /// allowed, the wait covers the difference.
    pub fn reserve_n(&mut self, tokens: u32, now: Instant, max_wait: Duration) -> Option<Duration> {
        self.refill(now);
        let n = f64::from(tokens);
        let wait = if self.tokens >= n { Duration::ZERO } else { self.wait_for(n - self.tokens) };
        if wait > max_wait {
            return None;
        }
        self.tokens -= n;
        Some(wait)
    }

    fn refill(&mut self, now: Instant) {
        // A `now` before the last update (callers racing) adds nothing rather than going back.
        let elapsed = now.saturating_duration_since(self.updated);
        if now > self.updated {
            self.updated = now;
        }
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
    }

    fn wait_for(&self, missing: f64) -> Duration {
        if self.rate <= 0.0 {
            return Duration::MAX;
        }
        Duration::try_from_secs_f64(missing / self.rate).unwrap_or(Duration::MAX)
    }
}

fn sanitize_rate(rate: f64) -> f64 {
    if rate.is_finite() && rate > 0.0 { rate } else { 0.0 }
}

/// `Option<Duration>` as seconds with millisecond precision (`12.345`), `null` when unknown.
mod opt_seconds {
    use std::time::Duration;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as f64 / 1000.0)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?.map(|s| Duration::try_from_secs_f64(s).map_err(D::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::topology::HumanDuration;

    use BackpressureState::{Hard, Normal, Soft};

    fn cfg(soft: Option<u64>, hard: Option<u64>, soft_age: Option<u64>, hard_age: Option<u64>) -> BackpressureConfig {
        BackpressureConfig {
            soft_lag: soft,
            hard_lag: hard,
            soft_lag_age: soft_age.map(HumanDuration::from_millis),
            hard_lag_age: hard_age.map(HumanDuration::from_millis),
            critical_events: Vec::new(),
        }
    }

    fn lag(messages: u64, age_ms: Option<u64>) -> Lag {
        Lag { messages, age: age_ms.map(Duration::from_millis) }
    }

    fn offsets(low: i64, high: i64, committed: Option<i64>, ts: Option<i64>) -> PartitionOffsets {
        PartitionOffsets { topic: "t".into(), partition: 0, low, high, committed, oldest_timestamp_ms: ts }
    }

    fn projection(state: BackpressureState, l: Lag, c: &BackpressureConfig) -> ProjectionLag {
        let (state, trigger) = next_state(state, l, c);
        ProjectionLag {
            group: "g".into(),
            state,
            trigger,
            lag_messages: l.messages,
            age: l.age,
            partitions: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn lag_per_partition() {
        // Never committed: everything retained is behind.
        let p = PartitionLag::compute(&offsets(5, 15, None, Some(1_000)), 4_000);
        assert_eq!((p.lag_messages, p.age), (10, Some(Duration::from_secs(3))));
        // Committed: high − committed; the age is that of the record at the committed offset.
        let p = PartitionLag::compute(&offsets(5, 15, Some(12), Some(3_500)), 4_000);
        assert_eq!((p.lag_messages, p.age), (3, Some(Duration::from_millis(500))));
        // Caught up: no lag, zero age whatever the timestamp says.
        let p = PartitionLag::compute(&offsets(5, 15, Some(15), None), 4_000);
        assert_eq!((p.lag_messages, p.age), (0, Some(Duration::ZERO)));
        // Committed below the low watermark (retention deleted records): what is retained.
        assert_eq!(offsets(5, 15, Some(2), None).lag_messages(), 10);
        assert_eq!(offsets(5, 15, Some(2), None).position(), 5);
        // Committed past the high watermark (a recreated topic): nothing behind.
        assert_eq!(offsets(0, 3, Some(9), None).lag_messages(), 0);
        // A timestamp in the future (skew) is zero age; an unknown one is unknown.
        assert_eq!(PartitionLag::compute(&offsets(0, 3, None, Some(9_000)), 4_000).age, Some(Duration::ZERO));
        assert_eq!(PartitionLag::compute(&offsets(0, 3, None, None), 4_000).age, None);
    }

    #[test]
    fn aggregates_sum_and_max() {
        let parts = [
            PartitionLag::compute(&offsets(0, 10, Some(4), Some(1_000)), 5_000),
            PartitionLag::compute(&offsets(0, 7, None, Some(3_000)), 5_000),
            PartitionLag::compute(&offsets(0, 7, Some(7), None), 5_000),
        ];
        assert_eq!(Lag::aggregate(&parts), lag(13, Some(4_000)));
        assert_eq!(Lag::aggregate(&[]), lag(0, Some(0)));
        let unknown = [PartitionLag::compute(&offsets(0, 7, None, None), 5_000)];
        assert_eq!(Lag::aggregate(&unknown), lag(7, None));
    }

    #[test]
    fn states_with_hysteresis() {
        let c = cfg(Some(100), Some(1_000), None, None);
        assert_eq!(next_state(Normal, lag(99, None), &c).0, Normal);
        let (s, t) = next_state(Normal, lag(100, None), &c);
        assert_eq!((s, t.map(|t| (t.threshold, t.holding))), (Soft, Some((Threshold::SoftLag, false))));
        assert_eq!(next_state(Normal, lag(1_000, None), &c).0, Hard);
        // Hard holds down to 80 % of hard_lag, then Soft (soft still fires), …
        let (s, t) = next_state(Hard, lag(800, None), &c);
        assert_eq!((s, t.map(|t| t.holding)), (Hard, Some(true)));
        assert_eq!(next_state(Hard, lag(799, None), &c).0, Soft);
        // … Soft holds down to 80 % of soft_lag, then Normal.
        assert_eq!(next_state(Soft, lag(80, None), &c).0, Soft);
        assert_eq!(next_state(Soft, lag(79, None), &c).0, Normal);
        // From Hard straight below every low-water mark: Normal.
        assert_eq!(next_state(Hard, lag(0, Some(0)), &c), (Normal, None));
        // Soft does not hold Hard.
        assert_eq!(next_state(Soft, lag(900, None), &c).0, Soft);
    }

    #[test]
    fn age_thresholds_and_unknown_age() {
        let c = cfg(None, None, Some(30_000), Some(300_000));
        assert_eq!(next_state(Normal, lag(1_000_000, None), &c).0, Normal, "no message thresholds");
        assert_eq!(next_state(Normal, lag(1, Some(29_999)), &c).0, Normal);
        let (s, t) = next_state(Normal, lag(1, Some(45_000)), &c);
        assert_eq!(s, Soft);
        assert_eq!(t.map(|t| t.to_string()), Some("oldest unprocessed event 45.0s old ≥ soft_lag_age 30.0s".into()));
        assert_eq!(next_state(Normal, lag(1, Some(300_000)), &c).0, Hard);
        // An unknown age holds nothing: it cannot be shown to be above the mark.
        assert_eq!(next_state(Hard, lag(1, None), &c).0, Normal);
    }

    #[test]
    fn reasons_name_the_most_exceeded_threshold() {
        let c = cfg(Some(100), Some(1_000), Some(10_000), Some(60_000));
        let (_, t) = next_state(Normal, lag(150, Some(59_000)), &c);
        assert_eq!(t.map(|t| t.threshold), Some(Threshold::SoftLagAge), "59 s / 10 s beats 150 / 100");
        let (_, t) = next_state(Normal, lag(5_000, Some(70_000)), &c);
        assert_eq!(t.map(|t| t.to_string()), Some("lag 5000 messages ≥ hard_lag 1000".into()));
        let (_, t) = next_state(Hard, lag(900, Some(0)), &c);
        assert_eq!(t.map(|t| t.to_string()), Some("lag 900 messages, still at or above 80% of hard_lag 1000".into()));
    }

    #[test]
    fn decisions() {
        let policy = IntakePolicy::default();
        let c = cfg(Some(100), Some(1_000), None, None);
        assert_eq!(
            IntakeDecision::for_projection("p", &projection(Normal, lag(5, None), &c), &c, false, &policy),
            IntakeDecision::Allow
        );

        let at_soft = IntakeDecision::for_projection("p", &projection(Normal, lag(100, None), &c), &c, false, &policy);
        let IntakeDecision::Slow { pressure, rate, delay, reason } = &at_soft else { panic!("{at_soft:?}") };
        assert_eq!((*pressure, *rate, *delay), (0.0, 5_000.0, Duration::from_millis(10)));
        assert_eq!(reason.to_string(), "projection p is soft (lag 100 messages ≥ soft_lag 100)");
        assert_eq!(reason.threshold(), "soft_lag");

        let mid = IntakeDecision::for_projection("p", &projection(Normal, lag(550, None), &c), &c, false, &policy);
        let IntakeDecision::Slow { pressure, rate, .. } = mid else { panic!("{mid:?}") };
        assert!((pressure - 0.5).abs() < 1e-9 && (rate - (5_000.0f64 * 100.0).sqrt()).abs() < 1e-6, "{rate}");

        let hard = IntakeDecision::for_projection("p", &projection(Normal, lag(3_500, None), &c), &c, false, &policy);
        let IntakeDecision::Refuse { retry_after, .. } = &hard else { panic!("{hard:?}") };
        assert_eq!(*retry_after, Duration::from_secs(4), "ceil(3.5 × 1 s)");
        let huge =
            IntakeDecision::for_projection("p", &projection(Normal, lag(u64::MAX, None), &c), &c, false, &policy);
        assert_eq!(huge.severity(), (2, 60.0), "capped at retry_after_max");

        let critical = IntakeDecision::for_projection("p", &projection(Hard, lag(3_500, None), &c), &c, true, &policy);
        let IntakeDecision::Slow { pressure, rate, reason, .. } = &critical else { panic!("{critical:?}") };
        assert_eq!((*pressure, *rate, reason.critical), (1.0, 100.0, true));
        assert!(reason.to_string().ends_with("critical event type: slowed, never refused"), "{reason}");

        // Soft only (no hard threshold): strongest at twice the soft threshold.
        let c = cfg(Some(100), None, None, None);
        assert_eq!(soft_pressure(lag(150, None), &c), 0.5);
        assert_eq!(soft_pressure(lag(400, None), &c), 1.0);
        assert_eq!(next_state(Normal, lag(u64::MAX, None), &c).0, Soft, "never hard without a hard threshold");
    }

    fn topology() -> Topology {
        let text = r#"
[topics.users]
partitions = 2
replication_factor = 1
subject_strategy = "record"

[events."user.registered"]
topic = "users"
schema = "schemas/users/registered.avsc"

[events."user.deleted"]
topic = "users"
schema = "schemas/users/deleted.avsc"

[projections.state]
sources = ["users"]
sink = "couchbase"
[projections.state.backpressure]
soft_lag = 10
hard_lag = 100
critical_events = ["user.deleted"]
[projections.state.couchbase]
document_id = "user::{aggregate_id}"

[projections.history]
sources = ["users"]
events = ["user.registered"]
sink = "couchbase"
[projections.history.backpressure]
soft_lag = 5
[projections.history.couchbase]
document_id = "h::{aggregate_id}"
"#;
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Topology::from_parts(text, Path::new("topology.toml"), |p| std::fs::read_to_string(repo.join(p)))
            .unwrap_or_else(|r| panic!("{r}"))
    }

    fn observed(entries: &[(&str, i64)]) -> BTreeMap<String, Observation> {
        entries.iter().map(|(name, high)| ((*name).to_owned(), Ok(vec![offsets(0, *high, None, Some(0))]))).collect()
    }

    #[test]
    fn decides_over_the_projections_an_event_type_feeds() {
        let t = topology();
        let policy = IntakePolicy::default();
        let s = LagSnapshot::compute(&t, &observed(&[("state", 200), ("history", 7)]), &LagSnapshot::empty(), 1_000);
        assert_eq!(s.projections["state"].state, Hard);
        assert_eq!(s.projections["history"].state, Soft);
        assert_eq!(s.projections["state"].group, "sluice.state");
        // Fed by both: the hard one wins.
        let d = decide(&s, &t, "user.registered", &policy);
        assert_eq!((d.kind(), d.reason().map(|r| r.projection.as_str())), ("refuse", Some("state")));
        // Critical (marked by `state`), and `history` does not fold it: slowed, never refused.
        let d = decide(&s, &t, "user.deleted", &policy);
        assert_eq!((d.kind(), d.reason().map(|r| r.critical)), ("slow", Some(true)));
        // Unknown event type, and an empty snapshot: allowed.
        assert_eq!(decide(&s, &t, "nope", &policy), IntakeDecision::Allow);
        assert_eq!(decide(&LagSnapshot::empty(), &t, "user.registered", &policy), IntakeDecision::Allow);

        // A failed refresh keeps the last state and says why.
        let mut failed = BTreeMap::new();
        failed.insert("state".to_owned(), Err("broker down".to_owned()));
        let s2 = LagSnapshot::compute(&t, &failed, &s, 2_000);
        assert_eq!(s2.projections["state"].state, Hard);
        assert_eq!(s2.projections["state"].error.as_deref(), Some("broker down"));
        assert!(!s2.projections.contains_key("history"), "not observed, left out");
    }

    #[test]
    fn json_shape_roundtrips() {
        let t = topology();
        let s = LagSnapshot::compute(&t, &observed(&[("state", 20)]), &LagSnapshot::empty(), 1_500);
        let json = serde_json::to_value(&s).expect("serialize");
        assert_eq!(json["taken_at_ms"], 1_500);
        let p = &json["projections"]["state"];
        assert_eq!(
            (p["state"].as_str(), p["lag_messages"].as_u64(), p["lag_seconds"].as_f64()),
            (Some("soft"), Some(20), Some(1.5))
        );
        assert_eq!(p["trigger"]["threshold"], "soft_lag");
        assert_eq!(p["partitions"][0]["committed"], serde_json::Value::Null);
        assert!(p.get("error").is_none());
        let back: LagSnapshot = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, s);
    }

    #[test]
    fn token_bucket_paces() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut b = TokenBucket::new(10.0, 2, t0);
        assert_eq!(b.try_take(at(0)), Ok(()));
        assert_eq!(b.try_take(at(0)), Ok(()));
        assert_eq!(b.try_take(at(0)), Err(Duration::from_millis(100)));
        assert_eq!(b.try_take(at(100)), Ok(()));
        // Reservations queue: each waits one more interval.
        assert_eq!(b.reserve(at(100), Duration::from_secs(1)), Some(Duration::from_millis(100)));
        assert_eq!(b.reserve(at(100), Duration::from_secs(1)), Some(Duration::from_millis(200)));
        assert_eq!(b.reserve(at(100), Duration::from_millis(250)), None, "would wait 300 ms");
        // A batch larger than the burst waits for the difference, and those after it queue behind.
        let mut batch = TokenBucket::new(100.0, 10, t0);
        assert_eq!(batch.reserve_n(30, at(0), Duration::from_secs(1)), Some(Duration::from_millis(200)));
        assert_eq!(batch.reserve_n(10, at(0), Duration::from_secs(1)), Some(Duration::from_millis(300)));
        assert_eq!(batch.reserve_n(100, at(0), Duration::from_secs(1)), None);
        b.set_rate(0.0, at(100));
        assert_eq!(b.try_take(at(10_000)), Err(Duration::MAX), "a zero rate never refills");
        // A clock going backwards adds nothing.
        let mut b = TokenBucket::new(1.0, 1, at(1_000));
        assert_eq!(b.try_take(at(1_000)), Ok(()));
        assert!(b.try_take(at(0)).is_err());
    }

    fn state() -> impl Strategy<Value = BackpressureState> {
        prop_oneof![Just(Normal), Just(Soft), Just(Hard)]
    }

    /// Thresholds as the parser allows them (soft below hard), each possibly absent.
    fn config() -> impl Strategy<Value = BackpressureConfig> {
        (1u64..10_000, 1u64..10_000, 1u64..600_000, 1u64..600_000, any::<[bool; 4]>()).prop_map(|(s, h, sa, ha, on)| {
            cfg(on[0].then_some(s), on[1].then_some(s + h), on[2].then_some(sa), on[3].then_some(sa + ha))
        })
    }

    fn any_lag() -> impl Strategy<Value = Lag> {
        (0u64..40_000, proptest::option::weighted(0.9, 0u64..2_500_000)).prop_map(|(m, a)| lag(m, a))
    }

    proptest! {
        #[test]
        fn hysteresis_never_flaps_on_a_constant_lag(c in config(), l in any_lag(), start in state()) {
            let mut s = start;
            let mut changes = 0;
            for step in 0..10 {
                let (next, _) = next_state(s, l, &c);
                if next != s {
                    changes += 1;
                    prop_assert_eq!(step, 0, "changed at step {} ({:?} → {:?})", step, s, next);
                }
                s = next;
            }
            prop_assert!(changes <= 1);
        }

        #[test]
        fn state_and_decision_are_monotone_in_lag(
            c in config(), prev in state(), a in any_lag(), more in 0u64..40_000, older in 0u64..2_500_000,
            critical in any::<bool>(),
        ) {
            let b = Lag { messages: a.messages + more, age: a.age.map(|x| x + Duration::from_millis(older)) };
            prop_assert!(next_state(prev, a, &c).0 <= next_state(prev, b, &c).0);
            let policy = IntakePolicy::default();
            let da = IntakeDecision::for_projection("p", &projection(prev, a, &c), &c, critical, &policy);
            let db = IntakeDecision::for_projection("p", &projection(prev, b, &c), &c, critical, &policy);
            let (sa, sb) = (da.severity(), db.severity());
            prop_assert!(sa.0 < sb.0 || (sa.0 == sb.0 && sa.1 <= sb.1), "{:?} then {:?}", da, db);
            // Within a slow-down, more pressure never means a higher rate or a shorter delay.
            if let (IntakeDecision::Slow { rate: ra, delay: wa, .. }, IntakeDecision::Slow { rate: rb, delay: wb, .. }) = (&da, &db) {
                prop_assert!(*rb <= *ra * (1.0 + 1e-9) && wb.as_secs_f64() >= wa.as_secs_f64() * (1.0 - 1e-9));
            }
        }

        #[test]
        fn critical_event_types_are_never_refused(c in config(), prev in state(), l in any_lag()) {
            let d = IntakeDecision::for_projection("p", &projection(prev, l, &c), &c, true, &IntakePolicy::default());
            prop_assert_ne!(d.kind(), "refuse");
        }

        /// Over any window, a bucket grants at most `burst + rate × window` tokens.
        #[test]
        fn token_bucket_never_exceeds_its_rate(
            rate in 1.0f64..1_000.0, burst in 1u32..20, steps in proptest::collection::vec((0u64..50, any::<bool>()), 1..200),
        ) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(rate, burst, t0);
            let mut now = t0;
            let mut granted: Vec<Instant> = Vec::new();
            for (advance, reserve) in steps {
                now += Duration::from_millis(advance);
                if reserve {
                    if let Some(wait) = b.reserve(now, Duration::from_secs(1)) { granted.push(now + wait); }
                } else if b.try_take(now).is_ok() {
                    granted.push(now);
                }
            }
            granted.sort();
            for (i, first) in granted.iter().enumerate() {
                for (j, last) in granted.iter().enumerate().skip(i) {
                    let window = last.duration_since(*first).as_secs_f64();
                    let allowed = f64::from(burst) + rate * window + 1e-6;
                    prop_assert!((j - i + 1) as f64 <= allowed, "{} tokens in {window}s", j - i + 1);
                }
            }
        }
    }
}
