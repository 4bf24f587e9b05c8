//! Rebuild as pure logic: the life of a blue/green rebuild of a projection, what it must
//! re-project, and which partition holds one aggregate's events.
//!
//! Input comes from `sluice rebuild` through `sluice_consumers::rebuild`: the stored
//! [`RebuildState`] of the projection (if any), the command given ([`Command`]), and the source
//! partitions' watermarks and the rebuild group's committed offsets ([`PartitionOffsets`]). Out
//! go decisions — what to do next ([`Step`]), the ranges to re-project ([`Span`]), whether the new
//! version caught up — which the consumers crate carries out against Kafka and the sink, saving
//! the state after every transition. Nothing here reads a clock or a socket.
//!
//! # The state machine
//!
//! ```text
//!  planned ─▶ building ─▶ caught-up ─▶ swapped ─▶ old-dropped
//!     └──────────┴────────────┴──▶ aborted
//! ```
//!
//! * **planned**: the new generation's name, consumer group and target offsets (the high
//!   watermarks at the start) are recorded before anything is created, so an interrupted start
//!   can still be aborted or resumed against the *same* target.
//! * **building**: the new version's tables or collection exist and the rebuild group projects
//!   the history into them, committing as it goes; an interrupted build resumes from the group's
//!   committed offsets.
//! * **caught-up**: every partition reached its target; the live projection is untouched.
//! * **swapped**: readers (and the live worker) now use the new version; the old one is kept
//!   under its generation's name until `--drop-old`.
//! * **old-dropped** / **aborted**: finished; a new rebuild may start.
//!
//! Generation numbers only grow (an aborted generation's number is never reused), so a consumer
//! group or table name never refers to two different attempts.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lag::PartitionOffsets;

/// One version of a projection's storage. Generation 1 is the projection as first set up (the
/// names of the topology, unsuffixed); each rebuild makes the next one (`<name>__v2`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Generation(pub u32);

impl Generation {
    /// The projection as first set up.
    pub const FIRST: Self = Self(1);

    /// The suffix of this generation's object names while it is not the live one: `__v<n>`.
    pub fn suffix(self) -> String {
        format!("__v{}", self.0)
    }

    /// `base` with this generation's suffix.
    pub fn name(self, base: &str) -> String {
        format!("{base}{}", self.suffix())
    }

    /// The generation after this one.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// Where a rebuild stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Name, group and targets recorded; nothing created yet.
    Planned,
    /// The new version exists and is being filled.
    Building,
    /// Every partition reached its target.
    CaughtUp,
    /// Readers use the new version; the old one is kept.
    Swapped,
    /// The old version is gone: finished.
    OldDropped,
    /// The partial new version was removed; live untouched: finished.
    Aborted,
}

impl Phase {
    /// True once nothing is left to do.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::OldDropped | Self::Aborted)
    }

    /// True while the new version is not yet what readers use.
    pub fn before_swap(self) -> bool {
        matches!(self, Self::Planned | Self::Building | Self::CaughtUp)
    }

    /// Whether a rebuild in this phase may move to `to`. Phases only move forward; a phase may
    /// be entered again (a resumed step saves it again), and only a rebuild that has not swapped
    /// can be aborted.
    pub fn may_become(self, to: Self) -> bool {
        use Phase::*;
        self == to && !self.is_finished()
            || matches!(
                (self, to),
                (Planned, Building) | (Building, CaughtUp) | (CaughtUp, Swapped) | (Swapped, OldDropped)
            )
            || (self.before_swap() && to == Aborted)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Planned => "planned",
            Self::Building => "building",
            Self::CaughtUp => "caught-up",
            Self::Swapped => "swapped",
            Self::OldDropped => "old-dropped",
            Self::Aborted => "aborted",
        })
    }
}

/// Offsets `start..end` of one source partition, to re-project.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    /// Source topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset to read.
    pub start: i64,
    /// One past the last offset to read (a high watermark).
    pub end: i64,
}

impl Span {
    /// Records in the span.
    pub fn len(&self) -> u64 {
        u64::try_from(self.end - self.start).unwrap_or(0)
    }

    /// True when there is nothing to read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What is left once the records below `position` were projected.
    pub fn rest(&self, position: Option<i64>) -> Self {
        let start = position.map_or(self.start, |p| p.clamp(self.start, self.end.max(self.start)));
        Self { start, ..self.clone() }
    }
}

/// The whole retained history of every partition: low → high watermark.
pub fn history(partitions: &[PartitionOffsets]) -> Vec<Span> {
    let mut spans: Vec<Span> = partitions
        .iter()
        .map(|p| Span { topic: p.topic.clone(), partition: p.partition, start: p.low, end: p.high.max(p.low) })
        .collect();
    spans.sort();
    spans
}

/// What is left of `targets` given the rebuild group's committed offsets (`partitions`, as read
/// for that group): per target, from the committed offset (or the target's start) to its end.
pub fn remaining(targets: &[Span], partitions: &[PartitionOffsets]) -> Vec<Span> {
    let committed: BTreeMap<(&str, i32), Option<i64>> =
        partitions.iter().map(|p| ((p.topic.as_str(), p.partition), p.committed)).collect();
    targets.iter().map(|t| t.rest(committed.get(&(t.topic.as_str(), t.partition)).copied().flatten())).collect()
}

/// Spans from the rebuild group's committed offsets up to the *current* high watermarks: the
/// catch-up passes right before and after the swap, which take in what arrived during the build.
pub fn catch_up(partitions: &[PartitionOffsets]) -> Vec<Span> {
    let mut spans: Vec<Span> = partitions
        .iter()
        .map(|p| Span { topic: p.topic.clone(), partition: p.partition, start: p.position(), end: p.high.max(p.low) })
        .collect();
    spans.sort();
    spans
}

/// Records in `spans`.
pub fn total(spans: &[Span]) -> u64 {
    spans.iter().map(Span::len).sum()
}

/// The last catch-up pass before the swap found at most this many new records: what arrives
/// while the swap itself runs is small, and the pass after the swap takes it in.
pub const SWAP_WHEN_AT_MOST: u64 = 1_000;

/// How many catch-up passes to try before swapping anyway (a producer faster than the rebuild
/// would otherwise keep it from ever swapping; the post-swap pass still takes everything in).
pub const MAX_CATCH_UP_PASSES: u32 = 5;

/// Whether to swap after a catch-up pass that projected `last_pass` records, the `passes`-th.
pub fn ready_to_swap(last_pass: u64, passes: u32) -> bool {
    last_pass <= SWAP_WHEN_AT_MOST || passes >= MAX_CATCH_UP_PASSES
}

/// The stored record of a projection's rebuild: enough to resume it with the same target, abort
/// it, or drop the old version, from any process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildState {
    /// The projection.
    pub projection: String,
    /// The generation readers used when the rebuild started.
    pub live: Generation,
    /// The generation being built.
    pub building: Generation,
    /// The rebuild's own consumer group.
    pub group: String,
    /// Where it stands.
    pub phase: Phase,
    /// What the new version must hold before it may be swapped in: every source partition from
    /// its low watermark to its high watermark as captured when the rebuild was planned.
    pub targets: Vec<Span>,
    /// When it was planned (ms since the Unix epoch).
    pub started_at_ms: i64,
    /// When it last changed phase.
    pub updated_at_ms: i64,
}

impl RebuildState {
    /// A new rebuild of `projection` (consumer group `live_group`) whose live generation is
    /// `live`, targeting `targets`.
    pub fn plan(projection: &str, live_group: &str, live: Generation, targets: Vec<Span>, now_ms: i64) -> Self {
        let building = live.next();
        Self {
            projection: projection.to_owned(),
            live,
            group: rebuild_group(live_group, building),
            building,
            phase: Phase::Planned,
            targets,
            started_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }

    /// Moves to `to`, or says why it may not.
    pub fn advance(&mut self, to: Phase, now_ms: i64) -> Result<(), RebuildError> {
        if !self.phase.may_become(to) {
            return Err(RebuildError::Transition { projection: self.projection.clone(), from: self.phase, to });
        }
        self.phase = to;
        self.updated_at_ms = now_ms;
        Ok(())
    }

    /// The generation readers use in this phase.
    pub fn live_generation(&self) -> Generation {
        match self.phase {
            Phase::Swapped | Phase::OldDropped => self.building,
            _ => self.live,
        }
    }
}

/// The consumer group of the rebuild of generation `generation`: the live group's name with the
/// generation, so `sluice lag` and Kafka tools show which projection it belongs to.
pub fn rebuild_group(live_group: &str, generation: Generation) -> String {
    format!("{live_group}.rebuild.{generation}")
}

/// What was asked of `sluice rebuild`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Start a rebuild, or resume the one in progress.
    Run,
    /// Remove a partial new version.
    Abort,
    /// Remove the old version after a swap.
    DropOld,
}

/// What to do for a [`Command`], given the stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Plan a new rebuild whose live generation is this one.
    Start {
        /// The generation readers use now.
        live: Generation,
        /// The last generation number used (never reused).
        last: Generation,
    },
    /// Resume the stored rebuild from its phase.
    Resume,
    /// Remove the partial version of the stored rebuild.
    Abort,
    /// Remove the old version of the stored rebuild.
    DropOld,
}

/// Why a rebuild command cannot go on; every message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RebuildError {
    /// A finished swap left the old version in place; a new rebuild would need a third one.
    #[error(
        "projection {projection} was rebuilt into {building} and still keeps its old version {live}: \
         drop it first with `sluice rebuild --projection {projection} --drop-old`"
    )]
    OldVersionKept {
        /// The projection.
        projection: String,
        /// The old generation.
        live: Generation,
        /// The new, live generation.
        building: Generation,
    },
    /// `--abort` with nothing in progress.
    #[error("projection {projection} has no rebuild in progress to abort{}", last.map(|p| format!(" (the last one is {p})")).unwrap_or_default())]
    NothingToAbort {
        /// The projection.
        projection: String,
        /// The phase of the last rebuild, if any.
        last: Option<Phase>,
    },
    /// `--abort` after the swap.
    #[error(
        "the rebuild of projection {projection} was already swapped in: readers use {building}; the old \
         version {live} is kept until `sluice rebuild --projection {projection} --drop-old`"
    )]
    AlreadySwapped {
        /// The projection.
        projection: String,
        /// The old generation.
        live: Generation,
        /// The new, live generation.
        building: Generation,
    },
    /// `--drop-old` with no swapped rebuild.
    #[error("projection {projection} has no old version to drop{}", match last {
        Some(p) if p.before_swap() => format!(": its rebuild is still {p} — run `sluice rebuild --projection {projection}` to finish it (or --abort)"),
        Some(p) => format!(" (the last rebuild is {p})"),
        None => " (it was never rebuilt)".to_owned(),
    })]
    NothingToDrop {
        /// The projection.
        projection: String,
        /// The phase of the last rebuild, if any.
        last: Option<Phase>,
    },
    /// A transition the state machine does not allow: a bug, or two rebuilds racing.
    #[error(
        "the rebuild of projection {projection} cannot go from {from} to {to} (is another `sluice rebuild` running?)"
    )]
    Transition {
        /// The projection.
        projection: String,
        /// The current phase.
        from: Phase,
        /// The phase asked for.
        to: Phase,
    },
}

/// What `command` means for `projection`, whose last stored rebuild is `state`.
pub fn decide(projection: &str, state: Option<&RebuildState>, command: Command) -> Result<Step, RebuildError> {
    let name = || projection.to_owned();
    let last = state.map(|s| s.phase);
    match (command, state) {
        (Command::Run, None) => Ok(Step::Start { live: Generation::FIRST, last: Generation::FIRST }),
        (Command::Run, Some(s)) => match s.phase {
            p if p.before_swap() => Ok(Step::Resume),
            Phase::Swapped => {
                Err(RebuildError::OldVersionKept { projection: name(), live: s.live, building: s.building })
            }
            _ => Ok(Step::Start { live: s.live_generation(), last: s.building }),
        },
        (Command::Abort, Some(s)) if s.phase.before_swap() => Ok(Step::Abort),
        (Command::Abort, Some(s)) if s.phase == Phase::Swapped => {
            Err(RebuildError::AlreadySwapped { projection: name(), live: s.live, building: s.building })
        }
        (Command::Abort, _) => Err(RebuildError::NothingToAbort { projection: name(), last }),
        (Command::DropOld, Some(s)) if s.phase == Phase::Swapped => Ok(Step::DropOld),
        (Command::DropOld, _) => Err(RebuildError::NothingToDrop { projection: name(), last }),
    }
}

/// The plan of a new rebuild for [`Step::Start`]: the next generation after `last` (numbers are
/// never reused), its group, and the whole retained history as target.
pub fn start(
    projection: &str,
    live_group: &str,
    live: Generation,
    last: Generation,
    partitions: &[PartitionOffsets],
    now_ms: i64,
) -> RebuildState {
    let mut state = RebuildState::plan(projection, live_group, live, history(partitions), now_ms);
    state.building = live.max(last).next();
    state.group = rebuild_group(live_group, state.building);
    state
}

/// The partition librdkafka's default partitioner (`consistent_random`, which sluice's publisher
/// and gateway use) gives a record keyed `key` on a topic of `partitions` partitions:
/// CRC-32 of the key modulo the partition count.
pub fn partition_of_key(key: &[u8], partitions: u32) -> i32 {
    if partitions == 0 {
        return 0;
    }
    i32::try_from(crc32fast::hash(key) % partitions).unwrap_or(0)
}

/// Events per second over `elapsed`, and the time left for `left` more at that rate; `None`
/// before anything was done.
pub fn rate_and_eta(done: u64, left: u64, elapsed: Duration) -> Option<(f64, Duration)> {
    let secs = elapsed.as_secs_f64();
    if done == 0 || secs <= 0.0 {
        return None;
    }
    let rate = done as f64 / secs;
    Some((rate, Duration::from_secs_f64(left as f64 / rate)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn part(partition: i32, low: i64, high: i64, committed: Option<i64>) -> PartitionOffsets {
        PartitionOffsets { topic: "users".into(), partition, low, high, committed, oldest_timestamp_ms: None }
    }

    const ALL: [Phase; 6] =
        [Phase::Planned, Phase::Building, Phase::CaughtUp, Phase::Swapped, Phase::OldDropped, Phase::Aborted];

    #[test]
    fn generations_name_their_objects() {
        assert_eq!(Generation::FIRST.next().name("events"), "events__v2");
        assert_eq!(Generation(7).to_string(), "v7");
        assert_eq!(rebuild_group("sluice.user_state", Generation(2)), "sluice.user_state.rebuild.v2");
    }

    #[test]
    fn a_rebuild_goes_through_its_phases_in_order() {
        let mut s = RebuildState::plan("p", "sluice.p", Generation::FIRST, vec![], 1);
        for (i, to) in [Phase::Building, Phase::CaughtUp, Phase::Swapped, Phase::OldDropped].into_iter().enumerate() {
            s.advance(to, 2 + i as i64).expect("forward");
        }
        assert_eq!((s.phase, s.updated_at_ms, s.live_generation()), (Phase::OldDropped, 5, Generation(2)));
        assert_eq!(
            s.advance(Phase::Building, 9).expect_err("finished").to_string(),
            "the rebuild of projection p cannot go from old-dropped to building (is another `sluice rebuild` running?)"
        );
        let mut s = RebuildState::plan("p", "sluice.p", Generation::FIRST, vec![], 1);
        s.advance(Phase::Building, 2).expect("build");
        s.advance(Phase::Building, 3).expect("resume saves the phase again");
        s.advance(Phase::Aborted, 4).expect("abort before the swap");
        assert_eq!(s.live_generation(), Generation::FIRST);
    }

    #[test]
    fn decides_what_each_command_means() {
        let at = |phase| RebuildState { phase, ..RebuildState::plan("p", "g", Generation(2), vec![], 0) };
        assert_eq!(
            decide("p", None, Command::Run),
            Ok(Step::Start { live: Generation::FIRST, last: Generation::FIRST })
        );
        assert_eq!(decide("p", Some(&at(Phase::Building)), Command::Run), Ok(Step::Resume));
        assert_eq!(decide("p", Some(&at(Phase::CaughtUp)), Command::Run), Ok(Step::Resume));
        assert_eq!(
            decide("p", Some(&at(Phase::OldDropped)), Command::Run),
            Ok(Step::Start { live: Generation(3), last: Generation(3) })
        );
        assert_eq!(
            decide("p", Some(&at(Phase::Aborted)), Command::Run),
            Ok(Step::Start { live: Generation(2), last: Generation(3) })
        );
        assert_eq!(
            decide("p", Some(&at(Phase::Swapped)), Command::Run).expect_err("kept").to_string(),
            "projection p was rebuilt into v3 and still keeps its old version v2: drop it first with \
             `sluice rebuild --projection p --drop-old`"
        );
        assert_eq!(decide("p", Some(&at(Phase::Planned)), Command::Abort), Ok(Step::Abort));
        assert_eq!(
            decide("p", None, Command::Abort).expect_err("none").to_string(),
            "projection p has no rebuild in progress to abort"
        );
        assert!(matches!(
            decide("p", Some(&at(Phase::Swapped)), Command::Abort),
            Err(RebuildError::AlreadySwapped { .. })
        ));
        assert_eq!(decide("p", Some(&at(Phase::Swapped)), Command::DropOld), Ok(Step::DropOld));
        assert_eq!(
            decide("p", Some(&at(Phase::Building)), Command::DropOld).expect_err("building").to_string(),
            "projection p has no old version to drop: its rebuild is still building — run \
             `sluice rebuild --projection p` to finish it (or --abort)"
        );
        assert_eq!(
            decide("p", None, Command::DropOld).expect_err("never").to_string(),
            "projection p has no old version to drop (it was never rebuilt)"
        );
    }

    #[test]
    fn generation_numbers_are_never_reused() {
        let parts = [part(0, 0, 10, None)];
        let s = start("p", "sluice.p", Generation(2), Generation(3), &parts, 0);
        assert_eq!((s.live, s.building, s.group.as_str()), (Generation(2), Generation(4), "sluice.p.rebuild.v4"));
        assert_eq!(s.targets, vec![Span { topic: "users".into(), partition: 0, start: 0, end: 10 }]);
    }

    #[test]
    fn spans_left_and_catch_up() {
        let parts = [part(1, 2, 9, Some(5)), part(0, 0, 4, None)];
        let targets = history(&parts);
        assert_eq!(
            targets.iter().map(|s| (s.partition, s.start, s.end)).collect::<Vec<_>>(),
            vec![(0, 0, 4), (1, 2, 9)]
        );
        assert_eq!(total(&targets), 11);
        // The group later committed 3 on partition 0; partition 1 moved on to 12 meanwhile.
        let later = [part(0, 0, 4, Some(3)), part(1, 2, 12, Some(5))];
        let left = remaining(&targets, &later);
        assert_eq!(left.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>(), vec![(3, 4), (5, 9)], "the target stays");
        let more = catch_up(&later);
        assert_eq!(more.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>(), vec![(3, 4), (5, 12)]);
        assert!(ready_to_swap(SWAP_WHEN_AT_MOST, 1) && !ready_to_swap(SWAP_WHEN_AT_MOST + 1, 1));
        assert!(ready_to_swap(u64::MAX, MAX_CATCH_UP_PASSES));
    }

    #[test]
    fn key_partitions_follow_librdkafka() {
        // CRC-32's check value (the function librdkafka's `consistent` partitioners use) modulo
        // the partition count.
        assert_eq!(partition_of_key(b"123456789", 6), (0xCBF4_3926u32 % 6) as i32);
        assert_eq!(partition_of_key(b"123456789", 7), (0xCBF4_3926u32 % 7) as i32);
        assert_eq!(partition_of_key(b"x", 0), 0);
    }

    #[test]
    fn rate_and_eta_of_progress() {
        assert_eq!(rate_and_eta(0, 10, Duration::from_secs(1)), None);
        let (rate, eta) = rate_and_eta(100, 300, Duration::from_secs(2)).expect("rate");
        assert!((rate - 50.0).abs() < 1e-9);
        assert_eq!(eta, Duration::from_secs(6));
    }

    proptest! {
        /// Whatever transitions are attempted, the phase only moves forward, a finished rebuild
        /// stays finished, and only a rebuild that has not swapped is ever aborted.
        #[test]
        fn phases_only_move_forward(attempts in prop::collection::vec(0usize..6, 0..20)) {
            let mut s = RebuildState::plan("p", "g", Generation::FIRST, vec![], 0);
            for (i, a) in attempts.into_iter().enumerate() {
                let before = s.phase;
                let to = ALL[a];
                match s.advance(to, i as i64) {
                    Ok(()) => {
                        prop_assert!(to >= before, "{before} -> {to}");
                        prop_assert!(!before.is_finished());
                        if to == Phase::Aborted { prop_assert!(before.before_swap()); }
                    }
                    Err(_) => prop_assert_eq!(s.phase, before),
                }
            }
        }

        /// The remaining spans never start before the target's start nor end after its end, and
        /// together with what was done they cover the target.
        #[test]
        fn remaining_stays_inside_the_target(
            marks in prop::collection::vec((0i64..50, 0i64..50, prop::option::of(0i64..120)), 1..8)
        ) {
            let at_plan: Vec<PartitionOffsets> =
                marks.iter().enumerate().map(|(i, (low, len, _))| part(i as i32, *low, low + len, None)).collect();
            let targets = history(&at_plan);
            let now: Vec<PartitionOffsets> = marks.iter().enumerate()
                .map(|(i, (low, len, c))| part(i as i32, *low, low + len + 7, *c)).collect();
            for (t, r) in targets.iter().zip(remaining(&targets, &now)) {
                prop_assert!(t.start <= r.start && r.start <= r.end.max(t.start) && r.end == t.end);
                prop_assert!(r.len() <= t.len());
            }
        }

        /// Keys land on a partition in range, the same one every time.
        #[test]
        fn key_partition_is_stable_and_in_range(key in prop::collection::vec(any::<u8>(), 0..64), n in 1u32..64) {
            let p = partition_of_key(&key, n);
            prop_assert!((0..n as i32).contains(&p));
            prop_assert_eq!(p, partition_of_key(&key, n));
        }
    }
}
