//! The documents this worker wrote last, each as the bytes it wrote and the CAS the write
//! returned: the next write of one folds into that state and replaces at that CAS without reading
//! the document first — one operation instead of two for an update.
//!
//! Safe because every such write is CAS-guarded: if anything changed the document since (another
//! worker, an expiry, a removal, a person), the replace fails as a conflict, the entry is
//! forgotten and the write goes the long way (read, fold, write). An event that changes nothing
//! on the remembered state changes nothing on any later state either (the fold only moves
//! versions forward), so skipping its write is what the long way would do too. Any failed or
//! ambiguous write forgets the entry. Bounded by the encoded size of the documents held, which is
//! what they take: a document is kept as the JSON it was written as and parsed again when it is
//! next written (a parse of a few hundred bytes, against the read it saves), not as the folded
//! state, whose maps and strings took several times its encoding.
//!
//! A `quick_cache` (CLOCK-Pro) rather than moka: on a drain of new documents every write inserts
//! and hardly any is read again, and perf put moka's bookkeeping (its concurrent hash map's
//! rehashing, reference-counted entries, and dropping it all at the end) at ~11 % of a Couchbase
//! worker's CPU, against the SDK's insert at ~26 %.

use std::sync::Arc;

use quick_cache::Weighter;
use quick_cache::sync::Cache;
use serde_json::Value;
use sluice_core::fold::State;

/// Encoded bytes of documents remembered per sink, at most.
pub(super) const KNOWN_BYTES: u64 = 16 * 1024 * 1024;

/// A document as this worker last wrote it.
#[derive(Debug)]
pub(super) struct Written {
    /// The document's JSON, as written.
    bytes: Box<[u8]>,
    pub(super) cas: u64,
}

impl Written {
    /// The state written (`None` if the bytes are not a state of ours, which they always are).
    pub(super) fn state(&self) -> Option<State> {
        serde_json::from_slice::<Value>(&self.bytes).ok().and_then(State::from_value)
    }
}

/// A guess at the encoded size of a remembered document, to size the cache's table up front.
const TYPICAL_BYTES: u64 = 640;

/// What an entry takes besides its document and key bytes: the key's and the document's own
/// allocations, the shared handle, the cache's slot and index, rounded up to the allocator's size
/// classes. Counted without it, a cache of documents of a few hundred bytes each held more than its
/// budget: a `session_state` drain by one `sluice work` peaked 20–27 MiB higher with the 16 MiB
/// budget than with 1 MiB (149–156 against 129 MiB).
const ENTRY_BYTES: u64 = 160;

/// An entry weighs its encoded document, its key and [`ENTRY_BYTES`]: a short document's key and
/// entry are a good part of what it costs.
#[derive(Debug, Clone, Copy)]
struct Bytes;

impl Weighter<String, Arc<Written>> for Bytes {
    fn weight(&self, key: &String, written: &Arc<Written>) -> u64 {
        (written.bytes.len() as u64).saturating_add(key.len() as u64).saturating_add(ENTRY_BYTES)
    }
}

/// The documents written last ([`KNOWN_BYTES`] of them at most).
pub(super) struct Known(Cache<String, Arc<Written>, Bytes>);

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Known").field("documents", &self.0.len()).finish()
    }
}

impl Known {
    pub(super) fn new(max_bytes: u64) -> Self {
        let items = usize::try_from(max_bytes / TYPICAL_BYTES).unwrap_or(usize::MAX).max(1);
        Self(Cache::with_weighter(items, max_bytes, Bytes))
    }

    /// The document `id` as last written here, if remembered.
    pub(super) fn get(&self, id: &str) -> Option<Arc<Written>> {
        self.0.get(id)
    }

    /// `id` now holds the document `bytes` at `cas`.
    pub(super) fn wrote(&self, id: &str, bytes: Vec<u8>, cas: u64) {
        self.0.insert(id.to_owned(), Arc::new(Written { bytes: bytes.into_boxed_slice(), cas }));
    }

    /// Forgets `id`: the next write reads it.
    pub(super) fn forget(&self, id: &str) {
        self.0.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};
    use sluice_core::fold::{Meta, Position};

    use super::*;

    fn state(version: i64) -> State {
        let source = Position { topic: "users".into(), partition: 0, offset: version };
        let fields: Map<String, Value> =
            [("email".to_owned(), json!("a@x")), ("n".to_owned(), json!(1.5))].into_iter().collect();
        let field_versions = fields.keys().map(|k| (k.clone(), version)).collect();
        State { fields, meta: Meta { version, fields: field_versions, erased_at: None, source } }
    }

    fn bytes(state: &State) -> Vec<u8> {
        serde_json::to_vec(&state.to_document()).expect("a state encodes")
    }

    #[test]
    fn remembers_the_last_write_and_forgets_on_demand() {
        let known = Known::new(KNOWN_BYTES);
        assert!(known.get("user::a").is_none());
        known.wrote("user::a", bytes(&state(1)), 10);
        known.wrote("user::a", bytes(&state(2)), 11);
        let w = known.get("user::a").expect("remembered");
        assert_eq!(w.cas, 11);
        assert_eq!(w.state(), Some(state(2)), "the state written comes back whole");
        known.forget("user::a");
        assert!(known.get("user::a").is_none());
    }

    #[test]
    fn holds_no_more_than_its_byte_budget() {
        let known = Known::new(10_000);
        for i in 0..100 {
            known.wrote(&format!("user::{i}"), vec![b' '; 1_000 - ENTRY_BYTES as usize], 1);
        }
        assert!(known.0.weight() <= 10_000, "{}", known.0.weight());
        assert!(known.0.len() <= 10, "{}", known.0.len());
        assert!(known.get("user::99").is_some(), "the latest write is remembered");
    }
}
