//! The latest state of an entity, as both sinks define it: which event sets which column, and
//! which value a column ends up with.
//!
//! A state column (a Couchbase document field, a ClickHouse state-table column) takes, from each
//! event, the first of its candidate fields the event carries with a non-null value
//! ([`first_set`]); an event carrying none leaves the column as it is. Across events the newest
//! `aggregate_version` that set a column wins, and an erase (a delete) wins over every older
//! value. Couchbase applies that rule per document in [`crate::fold`]; ClickHouse applies it with
//! `argMaxIf` over one update row per event ([`row_changes`] says what each row holds). The
//! property test below holds the two to one answer: for any history, delivered in any order and
//! with duplicates, the ClickHouse rows fold to the fields the Couchbase fold keeps.

use std::borrow::Cow;

use serde_json::Value;

use crate::event::Event;
use crate::topology::columns::FieldPath;
use crate::topology::{StateChange, StateTable};

/// The value of the first of `candidates` that `event` carries, not null.
pub fn first_set<'a>(event: &'a Event, candidates: &[FieldPath]) -> Option<Cow<'a, Value>> {
    first_set_at(event, candidates).map(|(_, value)| value)
}

/// [`first_set`], with the candidate that gave the value.
pub fn first_set_at<'a, 'p>(event: &'a Event, candidates: &'p [FieldPath]) -> Option<(&'p FieldPath, Cow<'a, Value>)> {
    candidates.iter().map(|path| (path, event.value_at(path))).find(|(_, v)| !v.is_null())
}

/// What one event does to one column of the state.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnChange<'a> {
    /// Sets it to this value.
    Set(Cow<'a, Value>),
    /// Leaves it as it is.
    Keep,
    /// Erases it (a delete).
    Erase,
}

/// What `event` does to each column of `state`, in the order of `state.resolved`; every column is
/// kept when the event is not one of the state's.
pub fn row_changes<'a, 's>(state: &'s StateTable, event: &'a Event) -> impl Iterator<Item = ColumnChange<'a>> + 's
where
    'a: 's,
{
    let change = state.change(&event.envelope.event_type);
    state.resolved.iter().map(move |column| match change {
        None => ColumnChange::Keep,
        Some(StateChange::Delete) => ColumnChange::Erase,
        Some(_) => first_set(event, &column.sources).map_or(ColumnChange::Keep, ColumnChange::Set),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::{Map, json};

    use super::*;
    use crate::event::Position;
    use crate::fold::{self, Change, FoldEvent};
    use crate::topology::columns::ColumnType;
    use crate::topology::{FieldSource, StateColumn};

    fn state() -> StateTable {
        let column = |name: &str, sources: &[&str]| StateColumn {
            name: name.into(),
            sources: sources.iter().map(|s| FieldPath::parse(s).expect("path")).collect(),
            ty: ColumnType::String,
        };
        StateTable {
            key_column: "id".into(),
            events: vec!["e.created".into(), "e.changed".into(), "e.deleted".into()],
            creates: vec!["e.created".into()],
            deletes: vec!["e.deleted".into()],
            columns: BTreeMap::from([("a".into(), FieldSource(vec!["a".into()]))]),
            resolved: vec![column("a", &["a", "alt"]), column("b", &["nested.b"]), column("t", &["event_type"])],
        }
    }

    fn event(event_type: &str, version: i64, payload: Value) -> Event {
        let mut record = json!({
            "event_id": "7f0c1c9e-9a43-4c55-9d7b-2f8ad6c1e001", "event_type": event_type, "aggregate_id": "x",
            "aggregate_version": version, "occurred_at": 1, "producer": "p", "correlation_id": null,
            "causation_id": null, "traceparent": null, "tracestate": null,
        });
        if let (Some(r), Value::Object(p)) = (record.as_object_mut(), payload) {
            r.extend(p);
        }
        Event::from_record(record, Position { topic: "t".into(), partition: 0, offset: version }, 1).expect("event")
    }

    #[test]
    fn the_first_candidate_with_a_value_sets_the_column() {
        let s = state();
        fn changes<'a>(s: &StateTable, e: &'a Event) -> Vec<ColumnChange<'a>> {
            row_changes(s, e).collect()
        }
        let set = |v: Value| ColumnChange::Set(Cow::Owned(v));
        assert_eq!(
            changes(&s, &event("e.changed", 1, json!({"a": null, "alt": "z", "nested": {"b": "deep"}}))),
            [set(json!("z")), set(json!("deep")), set(json!("e.changed"))]
        );
        assert_eq!(
            changes(&s, &event("e.created", 1, json!({"a": "first", "alt": "z"}))),
            [set(json!("first")), ColumnChange::Keep, set(json!("e.created"))]
        );
        assert_eq!(changes(&s, &event("e.deleted", 1, json!({"a": "ignored"}))), [const { ColumnChange::Erase }; 3]);
        assert_eq!(changes(&s, &event("other", 1, json!({"a": "x"}))), [const { ColumnChange::Keep }; 3]);
    }

    /// What ClickHouse's `argMaxIf(value, version, set OR erased)` gives per column, with the
    /// erased (default) value as `None`.
    fn clickhouse(rows: &[(i64, Vec<ColumnChange<'_>>)], columns: usize) -> Vec<Option<Value>> {
        (0..columns)
            .map(|i| {
                rows.iter()
                    .filter(|(_, changes)| changes[i] != ColumnChange::Keep)
                    .max_by_key(|(version, _)| *version)
                    .and_then(|(_, changes)| match &changes[i] {
                        ColumnChange::Set(v) => Some(v.clone().into_owned()),
                        _ => None,
                    })
            })
            .collect()
    }

    /// The Couchbase fold of the same events, mapped the same way.
    fn couchbase(s: &StateTable, events: &[&Event]) -> Vec<Option<Value>> {
        let folds: Vec<FoldEvent> = events
            .iter()
            .map(|e| {
                let change = match s.change(&e.envelope.event_type) {
                    Some(StateChange::Delete) => Change::Erase,
                    _ => Change::Set(
                        s.resolved
                            .iter()
                            .zip(row_changes(s, e))
                            .filter_map(|(c, ch)| match ch {
                                ColumnChange::Set(v) => Some((c.name.clone(), v.into_owned())),
                                _ => None,
                            })
                            .collect::<Map<_, _>>(),
                    ),
                };
                FoldEvent {
                    version: e.envelope.aggregate_version,
                    change,
                    position: fold::Position { topic: "t".into(), partition: 0, offset: 0 },
                }
            })
            .collect();
        let folded = fold::fold(&folds);
        s.resolved.iter().map(|c| folded.as_ref().and_then(|f| f.fields.get(&c.name).cloned())).collect()
    }

    fn history() -> impl Strategy<Value = Vec<Event>> {
        let one = (0..3usize, proptest::option::of("[xy]"), proptest::option::of("[xy]"), proptest::option::of("[xy]"));
        proptest::collection::vec(one, 1..20).prop_map(|spec| {
            spec.into_iter()
                .enumerate()
                .map(|(i, (t, a, alt, b))| {
                    let ty = ["e.created", "e.changed", "e.deleted"][t];
                    event(ty, i as i64 + 1, json!({"a": a, "alt": alt, "nested": b.map(|b| json!({"b": b}))}))
                })
                .collect()
        })
    }

    proptest! {
        /// Both sinks give every column the same value for any history, in any delivery order,
        /// with duplicates.
        #[test]
        fn clickhouse_rows_fold_to_the_couchbase_state(
            events in history(),
            duplicates in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
            seed in any::<u64>(),
        ) {
            let s = state();
            let delivered = fold::tests::deliver(&events, &duplicates, seed);
            let rows: Vec<(i64, Vec<ColumnChange<'_>>)> =
                delivered.iter().map(|e| (e.envelope.aggregate_version, row_changes(&s, e).collect())).collect();
            prop_assert_eq!(clickhouse(&rows, s.resolved.len()), couchbase(&s, &delivered));
        }
    }
}
