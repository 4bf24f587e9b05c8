//! The model of a ClickHouse projection's derived tables, declared next to its typed tables:
//! current-state tables (`[projections.<name>.clickhouse.state.<table>]`) and rollups
//! (`[projections.<name>.clickhouse.rollups.<rollup>]`). Values come from
//! [`crate::topology::parse`]; [`crate::topology::validate`] checks them against the event types'
//! schemas and fills in what they resolve to (the columns' types). The ClickHouse sink turns them
//! into tables, materialized views and views.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::FieldSource;
use crate::topology::columns::{ColumnType, FieldPath};

/// The default name of a state table's key column (it holds the events' `aggregate_id`).
pub const DEFAULT_KEY_COLUMN: &str = "aggregate_id";

/// The columns a state table's objects have besides its key and declared columns (and
/// `aggregate_id`), which a declared column may therefore not be named.
pub const STATE_RESERVED_COLUMNS: &[&str] = &[
    "aggregate_version",
    "event_id",
    "event_type",
    "occurred_at",
    "occurred_at_ms",
    "producer",
    "is_deleted",
    "erases",
    "updated_at",
    "version",
];

/// `[projections.<name>.clickhouse.state.<table>]`: the latest value of each column per entity
/// (`aggregate_id`), by the newest event version that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateTable {
    /// The name of the column holding the entity's `aggregate_id` (default
    /// [`DEFAULT_KEY_COLUMN`]).
    pub key_column: String,
    /// The event types that set columns.
    pub events: Vec<String>,
    /// Those of `events` that make the entity live (`is_deleted = 0`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub creates: Vec<String>,
    /// Those of `events` that erase it: every column back to its type's default, `is_deleted = 1`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deletes: Vec<String>,
    /// Column = event field, or a list of them (the first one the event carries with a value wins;
    /// none: the column keeps its value).
    pub columns: BTreeMap<String, FieldSource>,
    /// The columns with their types, derived from the schemas by validation.
    #[serde(skip)]
    pub resolved: Vec<StateColumn>,
}

/// A column of a state table as validation resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateColumn {
    /// The column name.
    pub name: String,
    /// The candidate fields, in order (an envelope field is a one-step path).
    pub sources: Vec<FieldPath>,
    /// Its type: a scalar, never nullable (the state table holds the type's default until set).
    pub ty: ColumnType,
}

/// What one event does to the state row of its entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateChange {
    /// Sets the columns it carries; the others and `is_deleted` stay.
    Update,
    /// Sets the columns it carries and `is_deleted = 0`: the entity is live (again).
    Create,
    /// Erases the columns and sets `is_deleted = 1`.
    Delete,
}

impl StateTable {
    /// What an event of `event_type` does to the state row; `None` when it does not touch it.
    /// A delete wins over a create (validation refuses a type listed as both).
    pub fn change(&self, event_type: &str) -> Option<StateChange> {
        let listed = |list: &[String]| list.iter().any(|t| t == event_type);
        if !listed(&self.events) {
            None
        } else if listed(&self.deletes) {
            Some(StateChange::Delete)
        } else if listed(&self.creates) {
            Some(StateChange::Create)
        } else {
            Some(StateChange::Update)
        }
    }
}

spelled_enum! {
    /// The time bucket of a rollup.
    #[derive(Default)]
    TimeBucket {
        /// `toStartOfMinute`, a `DateTime`.
        Minute = "minute",
        /// `toStartOfHour`, a `DateTime`.
        Hour = "hour",
        /// `toDate`, a `Date`.
        #[default]
        Day = "day",
        /// `toStartOfMonth`, a `Date`.
        Month = "month",
    }
}

impl TimeBucket {
    /// Whether the bucket is a whole number of days (so it works on `date` columns too).
    pub fn is_calendar(self) -> bool {
        matches!(self, Self::Day | Self::Month)
    }
}

/// The default time column of a rollup.
pub const DEFAULT_ROLLUP_TIME: &str = "occurred_at";

/// `[projections.<name>.clickhouse.rollups.<rollup>]`: aggregates of a declared table per time
/// bucket and dimensions, each event counted once however often it is delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollup {
    /// The declared table whose rows are aggregated.
    pub from: String,
    /// The time bucket (default `day`); also the name of its column.
    pub bucket: TimeBucket,
    /// The time column bucketed (default [`DEFAULT_ROLLUP_TIME`]).
    pub time: String,
    /// The columns grouped by, besides the bucket.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<String>,
    /// Only rows of these event types (default: every event type of the table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// Only rows whose column equals one of the values (`where = { currency = "EUR" }`).
    #[serde(rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, Vec<FilterValue>>,
    /// Measure name = aggregate.
    pub measures: BTreeMap<String, Measure>,
}

/// A value a rollup filter compares a column with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum FilterValue {
    /// A string (also for enums, uuids).
    Text(String),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Bool(bool),
}

/// One aggregate of a rollup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measure {
    /// `count()`: the events.
    Count,
    /// `countIf(type, …)`: the events of these types.
    CountIf(Vec<String>),
    /// An aggregate of one column.
    Of(Aggregate, String),
}

spelled_enum! {
    /// An aggregate function over one column.
    Aggregate {
        /// The sum (numbers).
        Sum = "sum",
        /// The smallest value (numbers, times, strings).
        Min = "min",
        /// The largest value.
        Max = "max",
        /// The mean (numbers).
        Avg = "avg",
        /// Distinct values, approximately (HyperLogLog-like, 0.8% error typical).
        Uniq = "uniq",
        /// Distinct values, exactly (memory grows with them).
        UniqExact = "uniqExact",
    }
}

impl Aggregate {
    /// Whether it needs numbers.
    pub fn is_arithmetic(self) -> bool {
        matches!(self, Self::Sum | Self::Avg)
    }
}

/// Why a measure does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MeasureError(pub String);

impl FromStr for Measure {
    type Err = MeasureError;

    /// `count()`, `countIf(a.b, c.d)`, `sum(column)`, … (spaces allowed around the parts).
    fn from_str(text: &str) -> Result<Self, MeasureError> {
        let text = text.trim();
        let (name, rest) = text
            .split_once('(')
            .ok_or_else(|| MeasureError(format!("{text:?} is not an aggregate: write it like \"sum(total)\"")))?;
        let inner =
            rest.strip_suffix(')').ok_or_else(|| MeasureError(format!("{text:?} lacks its closing parenthesis")))?;
        let args: Vec<&str> = inner.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
        match (name.trim(), args.as_slice()) {
            ("count", []) => Ok(Self::Count),
            ("count", _) => Err(MeasureError(
                "`count()` takes nothing: count the events of some types with `countIf(type, …)`".into(),
            )),
            ("countIf", []) => {
                Err(MeasureError("`countIf` needs the event types it counts: `countIf(order.paid)`".into()))
            }
            ("countIf", types) => Ok(Self::CountIf(types.iter().map(|t| (*t).to_owned()).collect())),
            (f, [column]) => match f.parse::<Aggregate>() {
                Ok(a) => Ok(Self::Of(a, (*column).to_owned())),
                Err(()) => Err(MeasureError(format!(
                    "unknown aggregate `{f}`: use count, countIf, {}",
                    Aggregate::NAMES.join(", ")
                ))),
            },
            (f, _) => Err(MeasureError(format!("`{f}` takes one column: `{f}(total)`"))),
        }
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count => f.write_str("count()"),
            Self::CountIf(types) => write!(f, "countIf({})", types.join(", ")),
            Self::Of(a, column) => write!(f, "{a}({column})"),
        }
    }
}

impl Serialize for Measure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Rollup {
    /// The source columns the rollup reads besides the envelope: dimensions, measured columns and
    /// filtered columns, each once, in that order.
    pub fn source_columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let measured = self.measures.values().filter_map(|m| match m {
            Measure::Of(_, column) => Some(column.as_str()),
            _ => None,
        });
        for column in
            self.dimensions.iter().map(String::as_str).chain(measured).chain(self.filter.keys().map(String::as_str))
        {
            if !out.contains(&column) {
                out.push(column);
            }
        }
        out
    }

    /// Whether a measure counts by event type (so the per-event rows keep it).
    pub fn counts_by_type(&self) -> bool {
        self.measures.values().any(|m| matches!(m, Measure::CountIf(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_parse_and_print_back() {
        for (text, measure) in [
            ("count()", Measure::Count),
            ("countIf(order.paid)", Measure::CountIf(vec!["order.paid".into()])),
            ("countIf( a.b , c.d )", Measure::CountIf(vec!["a.b".into(), "c.d".into()])),
            ("sum(total)", Measure::Of(Aggregate::Sum, "total".into())),
            (" uniqExact( customer_id ) ", Measure::Of(Aggregate::UniqExact, "customer_id".into())),
        ] {
            assert_eq!(text.parse::<Measure>(), Ok(measure.clone()), "{text}");
            assert_eq!(measure.to_string().parse::<Measure>(), Ok(measure));
        }
        for bad in ["count", "sum(a, b)", "median(x)", "count(x)", "countIf()", "sum(x"] {
            assert!(bad.parse::<Measure>().is_err(), "{bad}");
        }
    }

    #[test]
    fn state_changes() {
        let state = StateTable {
            key_column: DEFAULT_KEY_COLUMN.into(),
            events: vec!["a.created".into(), "a.changed".into(), "a.deleted".into()],
            creates: vec!["a.created".into()],
            deletes: vec!["a.deleted".into()],
            columns: BTreeMap::new(),
            resolved: Vec::new(),
        };
        assert_eq!(state.change("a.created"), Some(StateChange::Create));
        assert_eq!(state.change("a.changed"), Some(StateChange::Update));
        assert_eq!(state.change("a.deleted"), Some(StateChange::Delete));
        assert_eq!(state.change("b.other"), None);
    }
}
