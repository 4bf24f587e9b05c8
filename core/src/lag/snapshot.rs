//! The lag of every projection at one moment ([`LagSnapshot`]), built from what each
//! projection's monitor observed ([`Observation`]); what the lag monitor publishes to the workers,
//! the gateway and `sluice lag`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BackpressureState, Lag, PartitionLag, PartitionOffsets, Trigger, next_state, opt_seconds};
use crate::topology::{BackpressureConfig, Topology};

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
