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

/// How many of `events`, folded in order into `base`, change nothing.
pub(super) fn count_unchanged(base: Option<State>, events: &[Pending]) -> u64 {
    let mut current = base;
    let mut unchanged = 0;
    for p in events {
        match fold::apply(current.as_ref(), &p.fold) {
            Outcome::Write(next) => current = Some(next),
            Outcome::Unchanged => unchanged += 1,
        }
    }
    unchanged
}

/// Folds a document's events into `base`, then the erase learned from a concurrent writer if any.
/// Returns the state to write with its encoding (`None` when nothing changed) and the events
/// refused because they would make the document too large.
pub(super) fn fold_group(
    base: Option<State>,
    events: &[Pending],
    learned_erase: Option<&FoldEvent>,
) -> (Option<(State, Vec<u8>)>, Vec<Rejected>) {
    let mut current = base;
    let mut encoded: Option<Vec<u8>> = None;
    let mut rejected = Vec::new();
    let learned = learned_erase.map(|fold| (None, fold));
    for (offset, event) in events.iter().map(|p| (Some(p.offset), &p.fold)).chain(learned) {
        let Outcome::Write(next) = fold::apply(current.as_ref(), event) else { continue };
        match encode(&next) {
            Ok(bytes) if bytes.len() <= MAX_DOCUMENT_BYTES => {
                current = Some(next);
                encoded = Some(bytes);
            }
            Ok(bytes) => {
                if let Some(offset) = offset {
                    let reason = format!(
                        "the document would be {} bytes, over Couchbase's limit of {MAX_DOCUMENT_BYTES} bytes",
                        bytes.len()
                    );
                    rejected.push(Rejected { offset, reason });
                }
            }
            Err(reason) => {
                if let Some(offset) = offset {
                    rejected.push(Rejected { offset, reason });
                }
            }
        }
    }
    (current.zip(encoded), rejected)
}

/// The document bytes of a state.
pub(super) fn encode(state: &State) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&state.to_document()).map_err(|e| format!("the document cannot be encoded as JSON: {e}"))
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
        let (state, rejected) = fold_group(None, &events, None);
        let (state, bytes) = state.expect("changed");
        assert!(rejected.is_empty());
        assert_eq!(Some(state.clone()), fold::fold(events.iter().map(|p| &p.fold)));
        let doc: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(State::from_document(&doc), Some(state));
        // Folding the same events again changes nothing: no write.
        let again = fold::fold(events.iter().map(|p| &p.fold));
        assert_eq!(fold_group(again, &events, None).0, None);
    }

    #[test]
    fn an_event_making_the_document_too_large_is_refused_alone() {
        let huge = "x".repeat(MAX_DOCUMENT_BYTES);
        let events = [set(1, json!({"a": 1})), set(2, json!({"blob": huge})), set(3, json!({"c": 3}))];
        let (state, rejected) = fold_group(None, &events, None);
        let (state, _) = state.expect("changed");
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].offset, 20);
        assert!(rejected[0].reason.contains("over Couchbase's limit"), "{}", rejected[0].reason);
        assert_eq!(Value::Object(state.fields), json!({"a": 1, "c": 3}));
    }

    #[test]
    fn a_learned_erase_is_folded_in_without_a_rejection() {
        let events = [set(1, json!({"a": 1})), set(5, json!({"b": 5}))];
        let erase = FoldEvent { version: 3, change: Change::Erase, position: pos(30) };
        let (state, rejected) = fold_group(None, &events, Some(&erase));
        let (state, _) = state.expect("changed");
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
