//! How large to make a batch's row buffers before writing into them (pure): each table's bytes
//! per record of the previous batch.
//!
//! A buffer grown by doubling copies its rows about once more on the way and, at tens of
//! megabytes, lands on fresh pages the kernel must zero each time (mimalloc hands freed memory
//! back at once, see the binary's allocator); sized from the last batch, it is allocated once.
//! The last batch of any of the projection's partitions is the guess: their events usually come
//! in a like mix, and where they do not, a buffer grows, or gives its spare room back, as it
//! would without a guess.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A sixteenth on top of the last batch's size: a batch slightly heavier than the last still
/// fits without growing.
const HEADROOM: usize = 16;

/// Each table's bytes per record, shared by the clones of one projection.
#[derive(Debug, Default)]
pub struct Sizing {
    per_record: Vec<AtomicUsize>,
}

impl Sizing {
    /// Nothing learned yet for `tables` tables: their buffers start empty.
    pub fn new(tables: usize) -> Self {
        Self { per_record: (0..tables).map(|_| AtomicUsize::new(0)).collect() }
    }

    /// The bytes to reserve for table `table` of a batch of `records` records.
    pub fn capacity(&self, table: usize, records: usize) -> usize {
        let per_record = self.per_record.get(table).map_or(0, |b| b.load(Ordering::Relaxed));
        let bytes = per_record.saturating_mul(records);
        bytes.saturating_add(bytes / HEADROOM)
    }

    /// Learns from a batch of `records` records whose tables took `bytes` each.
    pub fn learn(&self, records: usize, bytes: impl IntoIterator<Item = usize>) {
        if records == 0 {
            return;
        }
        for (slot, bytes) in self.per_record.iter().zip(bytes) {
            slot.store(bytes.div_ceil(records), Ordering::Relaxed);
        }
    }
}

/// Whether a buffer of `len` bytes holding `capacity` should give its spare room back before it
/// waits in flight: when more than an eighth of it is unused.
pub fn worth_shrinking(len: usize, capacity: usize) -> bool {
    capacity - len > len / 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nothing_learned_reserves_nothing() {
        let sizing = Sizing::new(2);
        assert_eq!(sizing.capacity(0, 10_000), 0);
        assert_eq!(sizing.capacity(5, 10_000), 0, "a table past the known ones");
    }

    #[test]
    fn the_last_batch_sets_each_tables_size() {
        let sizing = Sizing::new(2);
        sizing.learn(1_000, [200_000, 0]);
        assert_eq!(sizing.capacity(0, 2_000), 400_000 + 25_000);
        assert_eq!(sizing.capacity(1, 2_000), 0, "a table no event took stays empty");
        sizing.learn(0, [7, 7]);
        assert_eq!(sizing.capacity(0, 2_000), 425_000, "an empty batch teaches nothing");
    }

    #[test]
    fn spare_room_is_given_back_past_an_eighth() {
        assert!(!worth_shrinking(800, 900));
        assert!(worth_shrinking(800, 901));
        assert!(!worth_shrinking(0, 0));
    }

    proptest! {
        /// A batch like the last one, up to a sixteenth heavier per record, fits the reserve.
        #[test]
        fn a_batch_like_the_last_fits(records in 1usize..100_000, per_record in 1usize..4_000, extra in 0usize..=16) {
            let sizing = Sizing::new(1);
            sizing.learn(records, [records * per_record]);
            let heavier = records * per_record + records * per_record * extra / 256;
            prop_assert!(sizing.capacity(0, records) >= heavier);
            prop_assert!(!worth_shrinking(records * per_record, sizing.capacity(0, records)));
        }
    }
}
