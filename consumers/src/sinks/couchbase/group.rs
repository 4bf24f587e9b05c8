//! One document's events folded into its stored state (pure): what the Couchbase sink
//! ([`super::sink`]) writes back, the events refused for making the document too large, and the
//! tombstone an erase leaves.

use serde_json::Map;
use sluice_core::fold::{self, FoldEvent, Meta, Outcome, State};

use crate::sink::Rejected;

/// The largest document Couchbase stores (20 MiB). The local mock does not enforce it, so the
/// sink does: a bigger document is refused per event instead of failing the batch forever.
pub const MAX_DOCUMENT_BYTES: usize = 20 * 1024 * 1024;

/// One event of a document's group: where it came from (for rejections) and its fold change.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) offset: i64,
    pub(super) fold: FoldEvent,
}

/// A document's group folded: what to write, what was refused, what changed nothing.
#[derive(Debug, PartialEq)]
pub(super) struct Folded {
    /// The state to write with its encoding (`None` when nothing changed).
    pub(super) write: Option<(State, Vec<u8>)>,
    /// The events refused because they would make the document too large.
    pub(super) rejected: Vec<Rejected>,
    /// How many of the events changed nothing (duplicates, or older than every field they touch).
    pub(super) unchanged: u64,
}

/// Folds a document's events into `base`, then the erase learned from a concurrent writer if any.
///
/// Every event is folded in place and the document encoded once; only a document that comes out
/// over [`MAX_DOCUMENT_BYTES`] is folded again event by event, to refuse just the events that
/// make it too large.
pub(super) fn fold_group(base: Option<State>, events: &[Pending], learned_erase: Option<&FoldEvent>) -> Folded {
    let mut current = base.clone();
    let (mut changed, mut unchanged) = (false, 0);
    for (offset, event) in with_offsets(events, learned_erase) {
        if fold::apply_in_place(&mut current, event) {
            changed = true;
        } else if offset.is_some() {
            unchanged += 1;
        }
    }
    let Some(state) = current.filter(|_| changed) else {
        return Folded { write: None, rejected: Vec::new(), unchanged };
    };
    match encode(&state) {
        Ok(bytes) if bytes.len() <= MAX_DOCUMENT_BYTES => {
            Folded { write: Some((state, bytes)), rejected: Vec::new(), unchanged }
        }
        _ => fold_each(base, events, learned_erase, unchanged),
    }
}

/// The group's events with their offsets, then the learned erase (which has none: it is not one
/// of this batch's events).
fn with_offsets<'e>(
    events: &'e [Pending],
    learned_erase: Option<&'e FoldEvent>,
) -> impl Iterator<Item = (Option<i64>, &'e FoldEvent)> {
    events.iter().map(|p| (Some(p.offset), &p.fold)).chain(learned_erase.map(|fold| (None, fold)))
}

/// [`fold_group`]'s slow path: encodes after every event and refuses each event that would make
/// the document too large (or cannot be encoded), keeping the state before it.
fn fold_each(base: Option<State>, events: &[Pending], learned_erase: Option<&FoldEvent>, unchanged: u64) -> Folded {
    let mut current = base;
    let mut encoded: Option<Vec<u8>> = None;
    let mut rejected = Vec::new();
    for (offset, event) in with_offsets(events, learned_erase) {
        let Outcome::Write(next) = fold::apply(current.as_ref(), event) else { continue };
        let refusal = match encode(&next) {
            Ok(bytes) if bytes.len() <= MAX_DOCUMENT_BYTES => {
                current = Some(next);
                encoded = Some(bytes);
                continue;
            }
            Ok(bytes) => format!(
                "the document would be {} bytes, over Couchbase's limit of {MAX_DOCUMENT_BYTES} bytes",
                bytes.len()
            ),
            Err(reason) => reason,
        };
        if let Some(offset) = offset {
            rejected.push(Rejected { offset, reason: refusal });
        }
    }
    Folded { write: current.zip(encoded), rejected, unchanged }
}

/// The document bytes of a state: its fields, then the bookkeeping under `_sluice` (written
/// straight from the state, no JSON tree built in between).
pub(super) fn encode(state: &State) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&Document(state)).map_err(|e| format!("the document cannot be encoded as JSON: {e}"))
}

/// A state as its stored document ([`State::to_document`]'s JSON, the same bytes).
struct Document<'s>(&'s State);

impl serde::Serialize for Document<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.0.fields.len() + 1))?;
        for (k, v) in &self.0.fields {
            map.serialize_entry(k, v)?;
        }
        map.serialize_entry(fold::META_KEY, &self.0.meta)?;
        map.end()
    }
}

/// The tombstone to store after erasing to `next`: only bookkeeping, the newest version and
/// erase of the stored tombstone and `next`. `None` when the stored one already says as much
/// (tombstones only move forward, whatever order concurrent erasers write them in).
pub(super) fn merge_tombstone(stored: Option<&State>, next: &State) -> Option<State> {
    let (version, source) = match stored {
        Some(s) if s.meta.version >= next.meta.version => (s.meta.version, s.meta.source.clone()),
        _ => (next.meta.version, next.meta.source.clone()),
    };
    let erased_at = stored.and_then(|s| s.meta.erased_at).max(next.meta.erased_at);
    let tombstone = State { fields: Map::new(), meta: Meta { version, fields: Default::default(), erased_at, source } };
    (stored != Some(&tombstone)).then_some(tombstone)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use sluice_core::fold::{Change, Position};

    use super::*;

    fn pos(offset: i64) -> Position {
        Position { topic: "users".into(), partition: 0, offset }
    }

    fn pending(version: i64, change: Change) -> Pending {
        Pending { offset: version * 10, fold: FoldEvent { version, change, position: pos(version * 10) } }
    }

    fn set(version: i64, fields: Value) -> Pending {
        let Value::Object(map) = fields else { panic!("object") };
        pending(version, Change::Set(map))
    }

    #[test]
    fn a_group_folds_like_the_core_fold() {
        let events = [set(1, json!({"a": 1, "b": 1})), set(3, json!({"a": 3})), set(2, json!({"b": 2}))];
        let folded = fold_group(None, &events, None);
        let (state, bytes) = folded.write.expect("changed");
        assert!(folded.rejected.is_empty());
        assert_eq!(folded.unchanged, 0, "b=2 after b=1 still sets b, though version 3 came first");
        assert_eq!(Some(state.clone()), fold::fold(events.iter().map(|p| &p.fold)));
        assert_eq!(bytes, serde_json::to_vec(&state.to_document()).expect("json"), "the stored document's bytes");
        let doc: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(State::from_document(&doc), Some(state));
        // Folding the same events again changes nothing: no write, every event unchanged.
        let again = fold::fold(events.iter().map(|p| &p.fold));
        assert_eq!(fold_group(again, &events, None), Folded { write: None, rejected: Vec::new(), unchanged: 3 });
    }

    #[test]
    fn an_event_making_the_document_too_large_is_refused_alone() {
        let huge = "x".repeat(MAX_DOCUMENT_BYTES);
        let events = [set(1, json!({"a": 1})), set(2, json!({"blob": huge})), set(3, json!({"c": 3}))];
        let Folded { write, rejected, .. } = fold_group(None, &events, None);
        let (state, _) = write.expect("changed");
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].offset, 20);
        assert!(rejected[0].reason.contains("over Couchbase's limit"), "{}", rejected[0].reason);
        assert_eq!(Value::Object(state.fields), json!({"a": 1, "c": 3}));
    }

    #[test]
    fn a_learned_erase_is_folded_in_without_a_rejection() {
        let events = [set(1, json!({"a": 1})), set(5, json!({"b": 5}))];
        let erase = FoldEvent { version: 3, change: Change::Erase, position: pos(30) };
        let Folded { write, rejected, .. } = fold_group(None, &events, Some(&erase));
        let (state, _) = write.expect("changed");
        assert!(rejected.is_empty());
        assert_eq!(Value::Object(state.fields), json!({"b": 5}));
        assert_eq!(state.meta.erased_at, Some(3));
    }

    #[test]
    fn tombstones_hold_no_personal_data_and_only_move_forward() {
        let erased = |version: i64, erased_at: i64| State {
            fields: Map::new(),
            meta: Meta { version, fields: Default::default(), erased_at: Some(erased_at), source: pos(version) },
        };
        let first = merge_tombstone(None, &erased(4, 4)).expect("new tombstone");
        assert_eq!(first, erased(4, 4));
        assert_eq!(
            first.to_document(),
            json!({"_sluice": {"version": 4, "fields": {}, "erased_at": 4,
            "source": {"topic": "users", "partition": 0, "offset": 4}}})
        );
        assert_eq!(merge_tombstone(Some(&erased(9, 9)), &erased(4, 4)), None, "an older erase changes nothing");
        assert_eq!(merge_tombstone(Some(&erased(4, 4)), &erased(4, 4)), None, "the same erase changes nothing");
        assert_eq!(merge_tombstone(Some(&erased(4, 4)), &erased(9, 9)), Some(erased(9, 9)));
        // A newer version whose erase is older (an event after the erase that set nothing).
        let mixed = merge_tombstone(Some(&erased(9, 9)), &erased(12, 4)).expect("newer version");
        assert_eq!((mixed.meta.version, mixed.meta.erased_at), (12, Some(9)));
    }
}
