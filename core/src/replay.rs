//! Replay as a pure plan: where a projection's consumer group will restart on each source
//! partition, and how many events that re-projects.
//!
//! Input comes from `sluice replay`: a [`Position`] parsed from `--from` (`earliest`, an RFC 3339
//! timestamp, or an explicit `partition:offset,…` / `topic:partition:offset,…` list), and what
//! `sluice_consumers::replay` read from Kafka for the projection's group — per partition the
//! watermarks and the committed offset ([`PartitionOffsets`]), plus, for a timestamp, the first
//! offset at or after it ([`TimeOffsets`]). Out goes a [`ReplayPlan`]: per partition current →
//! new offset and the events to re-project, which the CLI prints and, with `--yes`, the consumers
//! crate commits for the group. Nothing here reads a clock or a socket.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::lag::PartitionOffsets;

/// Why a `--from`/`--to` value or a plan is invalid; every message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The position is none of the accepted forms.
    #[error(
        "cannot read {0:?} as a position: expected `earliest`, `latest`, an RFC 3339 timestamp \
         (e.g. 2026-11-26T05:30:00Z) or a list `partition:offset,…` / `topic:partition:offset,…`"
    )]
    Syntax(String),
    /// It looks like a timestamp but is not a valid RFC 3339 one.
    #[error("invalid RFC 3339 timestamp {input:?}: {reason} (e.g. 2026-11-26T05:30:00Z or 2026-11-26T06:30:00+01:00)")]
    Timestamp {
        /// The value given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `partition:offset` entry without a topic while the projection reads several topics.
    #[error(
        "partition {partition} given without a topic, but the projection reads {sources}: write topic:partition:offset"
    )]
    AmbiguousTopic {
        /// The partition given.
        partition: i32,
        /// The projection's source topics, comma-separated.
        sources: String,
    },
    /// A topic that is not a source of the projection.
    #[error("topic {topic} is not a source of the projection (its sources: {sources})")]
    NotASource {
        /// The topic given.
        topic: String,
        /// The projection's source topics, comma-separated.
        sources: String,
    },
    /// A partition the topic does not have.
    #[error("topic {topic} has no partition {partition} (it has {count})")]
    NoSuchPartition {
        /// Topic.
        topic: String,
        /// The partition given.
        partition: i32,
        /// How many partitions the topic has.
        count: usize,
    },
    /// The same partition listed twice.
    #[error("{topic}:{partition} is listed more than once")]
    Duplicate {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// An explicit offset outside what the partition retains.
    #[error(
        "offset {offset} of {topic}:{partition} is outside the retained range {low}..={high} \
         (below: deleted by retention; above: not written yet)"
    )]
    OutOfRange {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The offset given.
        offset: i64,
        /// Low watermark.
        low: i64,
        /// High watermark.
        high: i64,
    },
    /// A timestamp position whose per-partition offsets were not looked up: a bug of the caller.
    #[error("no offset was looked up for the timestamp on {topic}:{partition}")]
    TimeNotResolved {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
}

/// Where a replay starts (`--from`) or ends (`--to`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The low watermark: the oldest record still retained.
    Earliest,
    /// The high watermark: the offset the next record will get.
    Latest,
    /// The first record whose Kafka timestamp is at or after this instant (ms since the Unix
    /// epoch); the high watermark where there is none.
    Timestamp(i64),
    /// Explicit offsets; partitions not listed are left as they are.
    Offsets(Vec<ExplicitOffset>),
}

/// One entry of an explicit offset list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplicitOffset {
    /// The topic, when given (`topic:partition:offset`); else the projection's single source.
    pub topic: Option<String>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

impl Position {
    /// The instant to look up with `offsets_for_times`, for a timestamp position.
    pub fn timestamp_ms(&self) -> Option<i64> {
        match self {
            Self::Timestamp(ms) => Some(*ms),
            _ => None,
        }
    }
}

impl FromStr for Position {
    type Err = ReplayError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "earliest" | "beginning" => return Ok(Self::Earliest),
            "latest" | "end" => return Ok(Self::Latest),
            _ => {}
        }
        // A timestamp starts with a four-digit year and a dash; offsets lists never do.
        if s.len() >= 5 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit) && s.as_bytes()[4] == b'-' {
            return parse_rfc3339_ms(s).map(Self::Timestamp);
        }
        let syntax = || ReplayError::Syntax(s.to_owned());
        let mut entries = Vec::new();
        for entry in s.split(',').map(str::trim) {
            let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
            let (topic, partition, offset) = match parts.as_slice() {
                [p, o] => (None, *p, *o),
                [t, p, o] if !t.is_empty() => (Some((*t).to_owned()), *p, *o),
                _ => return Err(syntax()),
            };
            let partition: i32 = partition.parse().map_err(|_| syntax())?;
            let offset: i64 = offset.parse().map_err(|_| syntax())?;
            if partition < 0 || offset < 0 {
                return Err(syntax());
            }
            entries.push(ExplicitOffset { topic, partition, offset });
        }
        Ok(Self::Offsets(entries))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Earliest => f.write_str("earliest"),
            Self::Latest => f.write_str("latest"),
            Self::Timestamp(ms) => write!(f, "{}", fmt_rfc3339_ms(*ms)),
            Self::Offsets(list) => {
                for (i, e) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    if let Some(t) = &e.topic {
                        write!(f, "{t}:")?;
                    }
                    write!(f, "{}:{}", e.partition, e.offset)?;
                }
                Ok(())
            }
        }
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp: `YYYY-MM-DDTHH:MM:SS[.fff…](Z|±HH:MM)`
/// (`t`/space for `T` and `z` accepted; fractions beyond milliseconds are truncated toward the
/// past). The same parser, and so the same rules, as timestamps in events (leap seconds refused).
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, ReplayError> {
    let err = |reason| ReplayError::Timestamp { input: s.to_owned(), reason };
    let nanos = crate::calendar::parse_rfc3339(s).map_err(err)?;
    i64::try_from(nanos.div_euclid(1_000_000)).map_err(|_| err("out of range".to_owned()))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of milliseconds since the Unix epoch.
pub fn fmt_rfc3339_ms(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1_000), ms.rem_euclid(1_000));
    let (days, tod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::calendar::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", tod / 3_600, tod % 3_600 / 60, tod % 60)
}

/// For a timestamp position: per (topic, partition), the first offset whose timestamp is at or
/// after it, `None` when the partition has none (the plan then uses the high watermark).
pub type TimeOffsets = BTreeMap<(String, i32), Option<i64>>;

/// One partition of a [`ReplayPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReplay {
    /// Source topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Low watermark.
    pub low: i64,
    /// High watermark when read.
    pub high: i64,
    /// The group's committed offset; `None` before its first commit.
    pub current: Option<i64>,
    /// The offset the group will restart from.
    pub new: i64,
    /// Where the re-projection is counted up to: the `--to` offset, else the high watermark.
    pub end: i64,
}

impl PartitionReplay {
    /// Events to re-project: from the new offset up to [`Self::end`].
    pub fn events(&self) -> u64 {
        u64::try_from(self.end.saturating_sub(self.new)).unwrap_or(0)
    }

    /// Events the group had not processed yet and that moving forward skips.
    pub fn skipped(&self) -> u64 {
        let position = self.current.unwrap_or(self.low).clamp(self.low, self.high);
        u64::try_from(self.new.saturating_sub(position)).unwrap_or(0)
    }

    /// True when the new offset is the committed one.
    pub fn unchanged(&self) -> bool {
        self.current == Some(self.new)
    }
}

/// What a replay will change: per partition current → new offset and the events to re-project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPlan {
    /// The projection.
    pub projection: String,
    /// Its consumer group.
    pub group: String,
    /// Every affected partition, by topic then partition.
    pub partitions: Vec<PartitionReplay>,
}

impl ReplayPlan {
    /// Events to re-project, summed over partitions.
    pub fn events(&self) -> u64 {
        self.partitions.iter().map(PartitionReplay::events).sum()
    }

    /// Unprocessed events skipped, summed over partitions.
    pub fn skipped(&self) -> u64 {
        self.partitions.iter().map(PartitionReplay::skipped).sum()
    }

    /// The partitions whose committed offset changes.
    pub fn changes(&self) -> impl Iterator<Item = &PartitionReplay> {
        self.partitions.iter().filter(|p| !p.unchanged())
    }
}

/// The offset `position` designates on one partition; `None` for an explicit list that does not
/// name it.
fn offset_of(
    position: &Position,
    p: &PartitionOffsets,
    sources: &[String],
    times: &TimeOffsets,
) -> Result<Option<i64>, ReplayError> {
    Ok(match position {
        Position::Earliest => Some(p.low),
        Position::Latest => Some(p.high),
        Position::Timestamp(_) => match times.get(&(p.topic.clone(), p.partition)) {
            // Before retention's start: the oldest retained record.
            Some(found) => Some(found.map_or(p.high, |o| o.clamp(p.low, p.high))),
            None => return Err(ReplayError::TimeNotResolved { topic: p.topic.clone(), partition: p.partition }),
        },
        Position::Offsets(list) => list
            .iter()
            .find(|e| e.partition == p.partition && e.topic.as_deref().unwrap_or(&sources[0]) == p.topic)
            .map(|e| e.offset),
    })
}

/// Checks an explicit list against the projection's sources and the partitions read.
fn validate_list(
    list: &[ExplicitOffset],
    sources: &[String],
    partitions: &[PartitionOffsets],
) -> Result<(), ReplayError> {
    let joined = || sources.join(", ");
    let mut seen = BTreeSet::new();
    for e in list {
        let topic = match (&e.topic, sources) {
            (Some(t), _) => t.clone(),
            (None, [only]) => only.clone(),
            (None, _) => return Err(ReplayError::AmbiguousTopic { partition: e.partition, sources: joined() }),
        };
        if !sources.contains(&topic) {
            return Err(ReplayError::NotASource { topic, sources: joined() });
        }
        let Some(p) = partitions.iter().find(|p| p.topic == topic && p.partition == e.partition) else {
            let count = partitions.iter().filter(|p| p.topic == topic).count();
            return Err(ReplayError::NoSuchPartition { topic, partition: e.partition, count });
        };
        if e.offset < p.low || e.offset > p.high {
            return Err(ReplayError::OutOfRange {
                topic,
                partition: e.partition,
                offset: e.offset,
                low: p.low,
                high: p.high,
            });
        }
        if !seen.insert((topic.clone(), e.partition)) {
            return Err(ReplayError::Duplicate { topic, partition: e.partition });
        }
    }
    Ok(())
}

/// The plan of replaying `projection` (consumer group `group`, source topics `sources`) from
/// `from`, counted up to `to` (the high watermarks when `None`), given every source partition's
/// offsets and, for timestamp positions, the offsets looked up for `from` and `to`.
///
/// An explicit list leaves the partitions it does not name out of the plan. A `to` before the
/// new offset counts no events.
pub fn plan(
    projection: &str,
    group: &str,
    sources: &[String],
    partitions: &[PartitionOffsets],
    from: (&Position, &TimeOffsets),
    to: Option<(&Position, &TimeOffsets)>,
) -> Result<ReplayPlan, ReplayError> {
    if sources.is_empty() {
        return Err(ReplayError::Syntax("(a projection without sources)".to_owned()));
    }
    for position in std::iter::once(from.0).chain(to.map(|t| t.0)) {
        if let Position::Offsets(list) = position {
            validate_list(list, sources, partitions)?;
        }
    }
    let mut out = Vec::new();
    for p in partitions {
        let Some(new) = offset_of(from.0, p, sources, from.1)? else { continue };
        let end = match to {
            None => p.high,
            Some((position, times)) => offset_of(position, p, sources, times)?.unwrap_or(p.high),
        };
        out.push(PartitionReplay {
            topic: p.topic.clone(),
            partition: p.partition,
            low: p.low,
            high: p.high,
            current: p.committed,
            new,
            end: end.max(new),
        });
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(ReplayPlan { projection: projection.to_owned(), group: group.to_owned(), partitions: out })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn part(topic: &str, partition: i32, low: i64, high: i64, committed: Option<i64>) -> PartitionOffsets {
        PartitionOffsets { topic: topic.into(), partition, low, high, committed, oldest_timestamp_ms: None }
    }

    fn sources(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_every_form_of_position() {
        assert_eq!("earliest".parse(), Ok(Position::Earliest));
        assert_eq!(" Latest ".parse(), Ok(Position::Latest));
        assert_eq!("1970-01-01T00:00:01Z".parse(), Ok(Position::Timestamp(1_000)));
        assert_eq!(
            "0:5, users:2:7".parse(),
            Ok(Position::Offsets(vec![
                ExplicitOffset { topic: None, partition: 0, offset: 5 },
                ExplicitOffset { topic: Some("users".into()), partition: 2, offset: 7 },
            ]))
        );
        for bad in ["", "yesterday", "0", "0:x", "a:b:c:d", "-1:0", "0:-3", ":0:1", "0:1,"] {
            assert_eq!(bad.parse::<Position>(), Err(ReplayError::Syntax(bad.trim().to_owned())), "{bad:?}");
        }
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339_ms("2026-11-26T05:30:00Z"), Ok(1_795_671_000_000));
        assert_eq!(parse_rfc3339_ms("2026-11-26T06:30:00+01:00"), Ok(1_795_671_000_000));
        assert_eq!(parse_rfc3339_ms("2026-11-26t05:30:00.25z"), Ok(1_795_671_000_250));
        assert_eq!(parse_rfc3339_ms("2026-11-26 05:30:00.123456789-00:00"), Ok(1_795_671_000_123));
        assert_eq!(parse_rfc3339_ms("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.999Z"), Ok(-1));
        let reason = |s: &str| match parse_rfc3339_ms(s) {
            Err(ReplayError::Timestamp { reason, .. }) => reason,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(reason("2026-11-26T05:30:00"), "expected a time zone: Z or an offset like +02:00");
        assert_eq!(reason("2025-02-29T00:00:00Z"), "day 29 does not exist in 2025-02");
        assert_eq!(reason("2026-13-01T00:00:00Z"), "month 13 does not exist");
        assert_eq!(reason("2026-11-26T24:00:00Z"), "time 24:00 does not exist");
        // One rule for every timestamp sluice reads: events cannot hold a leap second, so a
        // replay position cannot name one either.
        assert_eq!(reason("2026-12-31T23:59:60Z"), "second 60 does not exist (leap seconds are not supported)");
        for bad in ["2026-11-26T05:30:00.Z", "2026-11-26", "2026-11-26T05:30"] {
            assert!(reason(bad).starts_with("expected an RFC 3339 date-time"), "{bad}: {}", reason(bad));
        }
        assert_eq!(reason("2026-11-26T05:30:00+0100"), "expected a time zone: Z or an offset like +02:00");
        // Through the position parser, the same message.
        assert!(matches!("2026-11-26T05:30:00".parse::<Position>(), Err(ReplayError::Timestamp { .. })));
    }

    proptest! {
        #[test]
        fn rfc3339_round_trips(ms in -62_135_596_800_000i64..253_402_300_799_999) {
            let text = fmt_rfc3339_ms(ms);
            prop_assert_eq!(parse_rfc3339_ms(&text), Ok(ms));
            prop_assert_eq!(text.parse::<Position>(), Ok(Position::Timestamp(ms)));
        }

        /// Whatever the offsets, a plan from a timestamp re-projects exactly what lies at or after
        /// the looked-up offsets, never counts below zero, and never starts outside retention.
        #[test]
        fn plan_counts_what_lies_after_the_new_offset(
            marks in prop::collection::vec((0i64..50, 0i64..50, prop::option::of(0i64..120), prop::option::of(0i64..120)), 1..8)
        ) {
            let partitions: Vec<PartitionOffsets> = marks.iter().enumerate()
                .map(|(i, (low, len, committed, _))| part("t", i as i32, *low, low + len, *committed)).collect();
            let times: TimeOffsets = marks.iter().enumerate()
                .map(|(i, (_, _, _, found))| (("t".to_owned(), i as i32), *found)).collect();
            let plan = plan("p", "g", &sources(&["t"]), &partitions, (&Position::Timestamp(0), &times), None)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(plan.partitions.len(), partitions.len());
            for (row, p) in plan.partitions.iter().zip(&partitions) {
                prop_assert!(p.low <= row.new && row.new <= p.high);
                prop_assert_eq!(row.events(), (p.high - row.new) as u64);
                prop_assert_eq!(row.current, p.committed);
            }
            prop_assert_eq!(plan.events(), plan.partitions.iter().map(|r| (r.high - r.new) as u64).sum::<u64>());
        }
    }

    #[test]
    fn plans_from_a_timestamp() {
        let parts = [part("users", 0, 0, 10, Some(10)), part("users", 1, 3, 8, Some(8)), part("users", 2, 0, 4, None)];
        let times: TimeOffsets = [
            (("users".to_owned(), 0), Some(6)),
            // Before retention: clamped to the low watermark.
            (("users".to_owned(), 1), Some(1)),
            // No record at or after it: the end.
            (("users".to_owned(), 2), None),
        ]
        .into_iter()
        .collect();
        let plan = plan(
            "user_state",
            "sluice.user_state",
            &sources(&["users"]),
            &parts,
            (&Position::Timestamp(5), &times),
            None,
        )
        .expect("plan");
        let rows: Vec<_> = plan.partitions.iter().map(|r| (r.partition, r.current, r.new, r.events())).collect();
        assert_eq!(rows, vec![(0, Some(10), 6, 4), (1, Some(8), 3, 5), (2, None, 4, 0)]);
        assert_eq!((plan.events(), plan.skipped()), (9, 4), "partition 2 never committed: moving to 4 skips 4");
        assert_eq!(plan.changes().count(), 3);
    }

    #[test]
    fn plans_from_earliest_latest_and_lists_with_an_end() {
        let parts = [part("users", 0, 2, 10, Some(7)), part("users", 1, 0, 5, Some(5))];
        let none = TimeOffsets::new();
        let src = sources(&["users"]);
        let earliest = plan("p", "g", &src, &parts, (&Position::Earliest, &none), None).expect("plan");
        assert_eq!(earliest.partitions.iter().map(|r| (r.new, r.events())).collect::<Vec<_>>(), vec![(2, 8), (0, 5)]);
        assert_eq!((earliest.events(), earliest.skipped()), (13, 0));

        let latest = plan("p", "g", &src, &parts, (&Position::Latest, &none), None).expect("plan");
        assert_eq!((latest.events(), latest.skipped()), (0, 3));
        assert_eq!(latest.changes().count(), 1, "partition 1 is already at its end");

        let list: Position = "1:2".parse().expect("list");
        let to: Position = "users:1:4".parse().expect("to");
        let p = plan("p", "g", &src, &parts, (&list, &none), Some((&to, &none))).expect("plan");
        assert_eq!(p.partitions.len(), 1, "only the listed partition");
        assert_eq!((p.partitions[0].new, p.partitions[0].end, p.events()), (2, 4, 2));
    }

    #[test]
    fn refuses_bad_lists_with_clear_errors() {
        let parts = [part("users", 0, 2, 10, Some(7)), part("sessions", 0, 0, 5, None)];
        let none = TimeOffsets::new();
        let two = sources(&["users", "sessions"]);
        let err = |src: &[String], s: &str| {
            plan("p", "g", src, &parts, (&s.parse().expect("syntax"), &none), None).expect_err(s).to_string()
        };
        assert_eq!(
            err(&two, "0:3"),
            "partition 0 given without a topic, but the projection reads users, sessions: write topic:partition:offset"
        );
        assert_eq!(
            err(&two, "orders:0:1"),
            "topic orders is not a source of the projection (its sources: users, sessions)"
        );
        assert_eq!(err(&two, "users:4:1"), "topic users has no partition 4 (it has 1)");
        assert_eq!(err(&two, "users:0:3,users:0:4"), "users:0 is listed more than once");
        assert_eq!(
            err(&two, "users:0:1"),
            "offset 1 of users:0 is outside the retained range 2..=10 (below: deleted by retention; above: not written yet)"
        );
        assert!(err(&two, "users:0:11").contains("outside the retained range"));
        assert!(plan("p", "g", &two, &parts, (&Position::Timestamp(1), &none), None).is_err());
    }
}
