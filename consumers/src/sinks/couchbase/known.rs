//! The documents this worker wrote last, each with the state it wrote and the CAS the write
//! returned: the next write of one folds into that state and replaces at that CAS without reading
//! the document first — one operation instead of two for an update.
//!
//! Safe because every such write is CAS-guarded: if anything changed the document since (another
//! worker, an expiry, a removal, a person), the replace fails as a conflict, the entry is
//! forgotten and the write goes the long way (read, fold, write). An event that changes nothing
//! on the remembered state changes nothing on any later state either (the fold only moves
//! versions forward), so skipping its write is what the long way would do too. Any failed or
//! ambiguous write forgets the entry. Bounded by the encoded size of the documents held.

use std::sync::Arc;

use moka::sync::Cache;
use sluice_core::fold::State;

/// Encoded bytes of documents remembered per sink, at most.
pub(super) const KNOWN_BYTES: u64 = 16 * 1024 * 1024;

/// A document as this worker last wrote it.
#[derive(Debug)]
pub(super) struct Written {
    pub(super) state: State,
    pub(super) cas: u64,
    bytes: u32,
}

/// The documents written last ([`KNOWN_BYTES`] of them at most).
pub(super) struct Known(Cache<String, Arc<Written>>);

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Known").field("documents", &self.0.entry_count()).finish()
    }
}

impl Known {
    pub(super) fn new(max_bytes: u64) -> Self {
        // The key's bytes count too: a short document's key is a good part of what it costs.
        let weigher = |k: &String, v: &Arc<Written>| v.bytes.saturating_add(u32::try_from(k.len()).unwrap_or(u32::MAX));
        Self(Cache::builder().max_capacity(max_bytes).weigher(weigher).build())
    }

    /// The document `id` as last written here, if remembered.
    pub(super) fn get(&self, id: &str) -> Option<Arc<Written>> {
        self.0.get(id)
    }

    /// `id` now holds `state` (encoded in `bytes` bytes) at `cas`.
    pub(super) fn wrote(&self, id: &str, state: State, cas: u64, bytes: usize) {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.0.insert(id.to_owned(), Arc::new(Written { state, cas, bytes }));
    }

    /// Forgets `id`: the next write reads it.
    pub(super) fn forget(&self, id: &str) {
        self.0.invalidate(id);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Map;
    use sluice_core::fold::{Meta, Position};

    use super::*;

    fn state(version: i64) -> State {
        let source = Position { topic: "users".into(), partition: 0, offset: version };
        State { fields: Map::new(), meta: Meta { version, fields: Default::default(), erased_at: None, source } }
    }

    #[test]
    fn remembers_the_last_write_and_forgets_on_demand() {
        let known = Known::new(KNOWN_BYTES);
        assert!(known.get("user::a").is_none());
        known.wrote("user::a", state(1), 10, 100);
        known.wrote("user::a", state(2), 11, 100);
        let w = known.get("user::a").expect("remembered");
        assert_eq!((w.state.meta.version, w.cas), (2, 11));
        known.forget("user::a");
        assert!(known.get("user::a").is_none());
    }

    #[test]
    fn holds_no_more_than_its_byte_budget() {
        let known = Known::new(10_000);
        for i in 0..100 {
            known.wrote(&format!("user::{i}"), state(1), 1, 1_000);
        }
        known.0.run_pending_tasks();
        assert!(known.0.weighted_size() <= 10_000, "{}", known.0.weighted_size());
        assert!(known.0.entry_count() <= 10);
    }
}
