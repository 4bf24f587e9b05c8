//! The Couchbase projection's fold: how one event changes the latest-state document of its entity.
//!
//! Kafka delivers at least once and replays re-deliver history, so the same event, or an older
//! one, can reach a worker after newer ones. The fold is therefore a per-field last-writer-wins
//! map keyed by `aggregate_version`: each field remembers the version that last set it, an event
//! sets only the fields it is newer for, and an erase leaves a tombstone (no personal data, only
//! the version) so a late re-delivery of an older event cannot resurrect an erased entity.
//! Applying any permutation of a set of events, with any duplicates, gives the same document as
//! applying them once in version order (property-tested below).
//!
//! Two different events with the same aggregate version are a producer bug; the fold keeps the
//! first one it saw for each field (documented, not hidden).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where an event came from on Kafka, kept in the document for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// What an event does to its entity's document.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Set these fields (already mapped to document field names; no nulls-as-unchanged here:
    /// the mapping leaves out fields the event does not change).
    Set(Map<String, Value>),
    /// Erase the entity (GDPR): every field written by an older event goes away.
    Erase,
}

/// One event, reduced to what the fold needs.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldEvent {
    /// The per-aggregate version from the envelope.
    pub version: i64,
    /// The change.
    pub change: Change,
    /// Where it was read.
    pub position: Position,
}

/// Bookkeeping stored in the document under [`META_KEY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Highest version applied to this document.
    pub version: i64,
    /// The version that last set each field.
    pub fields: BTreeMap<String, i64>,
    /// Version of the last erase, if the entity was erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<i64>,
    /// Position of the event with the highest version.
    pub source: Position,
}

/// The document key holding [`Meta`]; event fields may not use it.
pub const META_KEY: &str = "_sluice";

/// The latest state of one entity: its fields plus the fold's bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The entity's fields.
    pub fields: Map<String, Value>,
    /// Bookkeeping.
    pub meta: Meta,
}

/// What the sink should do after folding an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Write this state (with CAS against the version read).
    Write(State),
    /// Nothing changes: a duplicate, or an event older than every field it touches.
    Unchanged,
}

impl State {
    /// Whether the entity is erased and nothing newer set a field since (readers see no entity).
    pub fn is_tombstone(&self) -> bool {
        self.meta.erased_at.is_some() && self.fields.is_empty()
    }

    /// The JSON document stored in Couchbase.
    pub fn to_document(&self) -> Value {
        let mut doc = self.fields.clone();
        // Meta is plain data: serializing it cannot fail.
        doc.insert(META_KEY.to_owned(), serde_json::to_value(&self.meta).unwrap_or(Value::Null));
        Value::Object(doc)
    }

    /// Reads a stored document back; `None` when it lacks valid bookkeeping (not ours).
    pub fn from_document(doc: &Value) -> Option<Self> {
        Self::from_value(doc.clone())
    }

    /// [`Self::from_document`], taking the document (no copy of its fields).
    pub fn from_value(doc: Value) -> Option<Self> {
        let Value::Object(mut fields) = doc else { return None };
        let meta = serde_json::from_value(fields.remove(META_KEY)?).ok()?;
        Some(Self { fields, meta })
    }
}

/// Folds `event` into `current` (the stored state, `None` when there is no document).
pub fn apply(current: Option<&State>, event: &FoldEvent) -> Outcome {
    let mut next = current.cloned();
    let changed = apply_in_place(&mut next, event);
    match next {
        Some(next) if changed => Outcome::Write(next),
        _ => Outcome::Unchanged,
    }
}

/// [`apply`] without copying the state: folds `event` into `state` (`None`: no document yet,
/// then one is started) and says whether it changed anything. An event that changes nothing
/// leaves `state` exactly as it was (a document is started only by an event that changes it,
/// which from nothing every event does).
pub fn apply_in_place(state: &mut Option<State>, event: &FoldEvent) -> bool {
    let v = event.version;
    let next = state.get_or_insert_with(|| State {
        fields: Map::new(),
        meta: Meta { version: i64::MIN, fields: BTreeMap::new(), erased_at: None, source: event.position.clone() },
    });
    let erased_at = next.meta.erased_at.unwrap_or(i64::MIN);
    let mut changed = false;
    match &event.change {
        Change::Erase => {
            if v > erased_at {
                next.meta.erased_at = Some(v);
                // Drop every field an older event wrote; fields newer than the erase stay.
                let older: Vec<String> =
                    next.meta.fields.iter().filter(|(_, fv)| **fv < v).map(|(k, _)| k.clone()).collect();
                for k in older {
                    next.fields.remove(&k);
                    next.meta.fields.remove(&k);
                }
                changed = true;
            }
        }
        Change::Set(values) => {
            for (k, value) in values {
                if k == META_KEY || v <= erased_at {
                    continue;
                }
                // In place where the field is there already: its key is not allocated again.
                match next.meta.fields.get_mut(k) {
                    Some(field_version) if v <= *field_version => continue,
                    Some(field_version) => *field_version = v,
                    None => {
                        next.meta.fields.insert(k.clone(), v);
                    }
                }
                match next.fields.get_mut(k) {
                    Some(slot) => *slot = value.clone(),
                    None => {
                        next.fields.insert(k.clone(), value.clone());
                    }
                }
                changed = true;
            }
        }
    }
    if v > next.meta.version {
        next.meta.version = v;
        next.meta.source = event.position.clone();
        changed = true;
    }
    changed
}

/// Folds a sequence, as the sink does one event at a time.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a FoldEvent>) -> Option<State> {
    events.into_iter().fold(None, |state, e| match apply(state.as_ref(), e) {
        Outcome::Write(next) => Some(next),
        Outcome::Unchanged => state,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn pos(offset: i64) -> Position {
        Position { topic: "users".into(), partition: 0, offset }
    }

    fn set(version: i64, fields: Value) -> FoldEvent {
        let Value::Object(map) = fields else { panic!("object") };
        FoldEvent { version, change: Change::Set(map), position: pos(version) }
    }

    fn erase(version: i64) -> FoldEvent {
        FoldEvent { version, change: Change::Erase, position: pos(version) }
    }

    #[test]
    fn newer_fields_win_and_duplicates_change_nothing() {
        let e1 = set(1, json!({"email": "a@x", "name": "Ada"}));
        let e2 = set(2, json!({"email": "b@x"}));
        let s = fold([&e1, &e2]).expect("state");
        assert_eq!(s.fields, json!({"email": "b@x", "name": "Ada"}).as_object().cloned().expect("obj"));
        assert_eq!(s.meta.version, 2);
        assert_eq!(apply(Some(&s), &e2), Outcome::Unchanged, "duplicate");
        assert_eq!(apply(Some(&s), &e1), Outcome::Unchanged, "stale");
    }

    #[test]
    fn erase_leaves_a_tombstone_that_stale_events_cannot_resurrect() {
        let s = fold([&set(1, json!({"email": "a@x"})), &erase(3)]).expect("state");
        assert!(s.is_tombstone());
        assert_eq!(apply(Some(&s), &set(2, json!({"email": "late@x"}))), Outcome::Unchanged);
        let Outcome::Write(after) = apply(Some(&s), &set(4, json!({"email": "new@x"}))) else {
            panic!("a newer event applies")
        };
        assert!(!after.is_tombstone());
        assert_eq!(after.fields["email"], "new@x");
    }

    #[test]
    fn document_roundtrip_and_foreign_documents() {
        let s = fold([&set(7, json!({"n": 1}))]).expect("state");
        let doc = s.to_document();
        assert_eq!(doc["_sluice"]["version"], 7);
        assert_eq!(State::from_document(&doc), Some(s));
        assert_eq!(State::from_document(&json!({"n": 1})), None);
    }

    /// Events with distinct versions 1..=n: each sets a few of fields a..e, or erases.
    fn history() -> impl Strategy<Value = Vec<FoldEvent>> {
        proptest::collection::vec(
            prop_oneof![
                9 => proptest::collection::btree_map("[a-e]", 0i64..100, 1..4).prop_map(Some),
                1 => Just(None),
            ],
            1..25,
        )
        .prop_map(|changes| {
            changes
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    let version = i as i64 + 1;
                    match c {
                        Some(fields) => {
                            let map = fields.into_iter().map(|(k, v)| (k, json!(v))).collect();
                            FoldEvent { version, change: Change::Set(map), position: pos(version) }
                        }
                        None => erase(version),
                    }
                })
                .collect()
        })
    }

    /// `items` as a redelivering broker hands them over: each once, plus the `duplicates` picked,
    /// in an order shuffled deterministically from `seed` (proptest shrinks the seed too).
    pub(crate) fn deliver<'a, T>(items: &'a [T], duplicates: &[prop::sample::Index], seed: u64) -> Vec<&'a T> {
        let mut delivered: Vec<&T> = items.iter().collect();
        delivered.extend(duplicates.iter().map(|i| &items[i.index(items.len())]));
        let mut s = seed | 1;
        for i in (1..delivered.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            delivered.swap(i, (s % (i as u64 + 1)) as usize);
        }
        delivered
    }

    proptest! {
        #[test]
        fn any_order_with_duplicates_equals_the_in_order_fold(
            events in history(),
            dup_picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
            seed in any::<u64>(),
        ) {
            let expected = fold(&events);
            prop_assert_eq!(fold(deliver(&events, &dup_picks, seed)), expected);
        }

        /// Folding in place (no copy per event, as the Couchbase sink folds a group): an event
        /// that changes nothing leaves the state untouched, and any delivery ends where the
        /// in-order fold does.
        #[test]
        fn folding_in_place_ends_where_the_in_order_fold_does(
            events in history(),
            dup_picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
            seed in any::<u64>(),
        ) {
            let mut state: Option<State> = None;
            for event in deliver(&events, &dup_picks, seed) {
                let before = state.clone();
                if !apply_in_place(&mut state, event) {
                    prop_assert_eq!(&state, &before);
                }
            }
            prop_assert_eq!(state, fold(&events));
        }
    }
}
