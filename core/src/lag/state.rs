//! Backpressure states with hysteresis: which [`BackpressureState`] a projection's [`Lag`] puts it
//! in given its [`BackpressureConfig`] and the previous state ([`next_state`]), and which
//! [`Trigger`] (threshold, value, limit) says why.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Lag;
use crate::topology::BackpressureConfig;

/// The low-water mark of every threshold, in percent of it. A state is entered when a measure
/// reaches its threshold and left only once every measure of that state is below this share of
/// its threshold, so a lag hovering around a threshold does not switch intake on and off at every
/// refresh.
pub const LOW_WATER_PERCENT: u64 = 80;

/// Without a hard threshold, the slow-down of a soft one is strongest at this multiple of it.
pub const SOFT_CEILING_FACTOR: u64 = 2;

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
