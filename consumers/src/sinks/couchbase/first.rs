//! Whether the Couchbase sink writes a document it does not remember by inserting it first or by
//! reading it first (pure; the sink in [`super::sink`] asks and reports back).
//!
//! Where every write is one document (no side tombstone to check), a document that does not exist
//! yet costs one operation when inserted blind, against two when read first (get, insert); one
//! that exists costs three inserted blind (the insert refused, get, replace), against two read
//! first. With `p` the share of such documents that exist, insert-first costs `1 + 2p` operations
//! and read-first 2: insert-first wins while fewer than half of them exist. With side tombstones
//! (`on_erase = "remove"`), the tombstone is read before a blind insert and again after it: a new
//! document costs three (against four read first: the document, the tombstone, insert, the
//! tombstone again), an existing one four (tombstone, refused insert, get, replace; against two):
//! `3 + p` against `4 - 2p`, insert-first while fewer than a third exist. A backfill or rebuild
//! (all new documents) then skips a read per document; a live stream of updates of documents this
//! worker did not write last keeps reading first. `p` is a moving average over the last ~64
//! documents, learnt from what each write found, whichever way it went.

use std::sync::atomic::{AtomicU32, Ordering};

/// `p` = 1 in fixed point.
const ONE: u32 = 1 << 16;

/// Each outcome moves `p` by 1/`WINDOW` of the way towards it: about the last `WINDOW` documents
/// count.
const WINDOW: u32 = 64;

/// The moving share of unremembered documents that turned out to exist.
#[derive(Debug)]
pub(super) struct FirstWrite {
    existing: AtomicU32,
}

impl FirstWrite {
    /// Starts out expecting new documents: a worker starting on a backlog most often creates them,
    /// and a wrong guess is corrected within a few dozen documents.
    pub(super) fn new() -> Self {
        Self { existing: AtomicU32::new(0) }
    }

    /// Insert the next unremembered document without reading it first? `side_tombstones`: its
    /// tombstone, kept aside, is read before and after.
    pub(super) fn insert_first(&self, side_tombstones: bool) -> bool {
        let p = self.existing.load(Ordering::Relaxed);
        if side_tombstones { p < ONE / 3 } else { p < ONE / 2 }
    }

    /// A write found its document existing (`true`) or absent.
    pub(super) fn found(&self, existed: bool) {
        let target = if existed { ONE } else { 0 };
        // A lost update between concurrent writers only delays the average by one document.
        let p = self.existing.load(Ordering::Relaxed);
        self.existing.store(step(p, target), Ordering::Relaxed);
    }
}

/// `p` moved 1/`WINDOW` of the way to `target`, at least one unit, never past it.
fn step(p: u32, target: u32) -> u32 {
    if target >= p { p + (target - p).div_ceil(WINDOW) } else { p - (p - target).div_ceil(WINDOW) }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn new_documents_keep_it_inserting_existing_ones_turn_it_to_reading_and_back() {
        let first = FirstWrite::new();
        assert!(first.insert_first(false), "a fresh sink expects new documents");
        for _ in 0..1_000 {
            first.found(false);
        }
        assert!(first.insert_first(false));
        let flips_after = (1..=WINDOW).find(|_| {
            first.found(true);
            !first.insert_first(false)
        });
        assert!(flips_after.is_some_and(|n| n <= WINDOW), "{flips_after:?}: within a window of existing documents");
        for _ in 0..1_000 {
            first.found(true);
        }
        assert!(!first.insert_first(false));
        let back_after = (1..=WINDOW).find(|_| {
            first.found(false);
            first.insert_first(false)
        });
        assert!(back_after.is_some_and(|n| n <= WINDOW), "{back_after:?}");
    }

    #[test]
    fn a_mix_chooses_by_which_is_cheaper() {
        // One in four existing: 1 + 2/4 = 1.5 operations inserting first, 2 reading first.
        let first = FirstWrite::new();
        for i in 0..4_000 {
            first.found(i % 4 == 0);
        }
        assert!(first.insert_first(false));
        // Three in four existing: 2.5 against 2.
        for i in 0..4_000 {
            first.found(i % 4 != 0);
        }
        assert!(!first.insert_first(false));
        // Two in five existing: 3.4 operations against 3.2 with side tombstones; 1.8 against 2
        // without.
        for i in 0..4_000 {
            first.found(i % 5 < 2);
        }
        assert!(!first.insert_first(true));
        assert!(first.insert_first(false));
    }

    proptest! {
        #[test]
        fn the_share_stays_within_bounds_and_moves_towards_each_outcome(
            start in 0..=ONE,
            outcomes in proptest::collection::vec(any::<bool>(), 0..300),
        ) {
            let mut p = start;
            for existed in outcomes {
                let target = if existed { ONE } else { 0 };
                let next = step(p, target);
                prop_assert!(next <= ONE);
                if p != target {
                    prop_assert!(next.abs_diff(target) < p.abs_diff(target), "{p} -> {next} towards {target}");
                } else {
                    prop_assert_eq!(next, p);
                }
                p = next;
            }
        }
    }
}
