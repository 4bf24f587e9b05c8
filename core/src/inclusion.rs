//! Whether a projection includes the writes of a consistency token, from its committed offsets
//! (the next offset to read of each partition): pure, shared by the waiting side (sluice's
//! consumers) and the gateway that reports it.

use std::collections::HashMap;

use serde::Serialize;

/// One write of a token a projection answers for: its topic, partition and offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the token's (last) write there.
    pub offset: i64,
}

/// One partition the projection has not caught up on yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Behind {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the token's write there.
    pub offset: i64,
    /// The projection's committed offset (the next to read); `None`: nothing committed yet.
    pub committed: Option<i64>,
}

/// Where a projection stands against a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    /// The partitions not yet included; empty when the projection includes every write.
    pub behind: Vec<Behind>,
}

impl Inclusion {
    /// Whether every write of the token is included.
    pub fn included(&self) -> bool {
        self.behind.is_empty()
    }

    /// Where it is behind, e.g. `users/1 at 5310 (committed 5290), users/2 at 17 (committed nothing)`.
    pub fn describe_behind(&self) -> String {
        let parts: Vec<String> = self.behind.iter().map(ToString::to_string).collect();
        parts.join(", ")
    }
}

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.committed {
            Some(c) => write!(f, "{}/{} at {} (committed {c})", self.topic, self.partition, self.offset),
            None => write!(f, "{}/{} at {} (committed nothing)", self.topic, self.partition, self.offset),
        }
    }
}

/// Committed offsets (the next offset to read) by topic and partition.
pub type Committed = HashMap<(String, i32), i64>;

/// Where `committed` stands against `positions`: a write at offset `o` is included once the
/// committed offset (the next to read) is past it.
pub fn inclusion(positions: &[Position], committed: &Committed) -> Inclusion {
    let behind = positions
        .iter()
        .filter_map(|p| {
            let committed = committed.get(&(p.topic.clone(), p.partition)).copied();
            committed.is_none_or(|c| c <= p.offset).then(|| Behind {
                topic: p.topic.clone(),
                partition: p.partition,
                offset: p.offset,
                committed,
            })
        })
        .collect();
    Inclusion { behind }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pos(topic: &str, partition: i32, offset: i64) -> Position {
        Position { topic: topic.to_owned(), partition, offset }
    }

    #[test]
    fn a_write_is_included_once_the_committed_offset_is_past_it() {
        let at = [pos("users", 0, 10), pos("users", 1, 3)];
        let mut committed = Committed::from([(("users".to_owned(), 0), 10)]);
        let inc = inclusion(&at, &committed);
        assert_eq!(inc.describe_behind(), "users/0 at 10 (committed 10), users/1 at 3 (committed nothing)");
        committed.insert(("users".to_owned(), 0), 11);
        committed.insert(("users".to_owned(), 1), 4);
        assert!(inclusion(&at, &committed).included());
    }

    proptest! {
        /// Included exactly when every position's committed offset is past it, and behind lists
        /// precisely the others.
        #[test]
        fn behind_lists_exactly_the_positions_not_yet_committed(
            entries in proptest::collection::vec((0i32..4, 0i64..50, proptest::option::of(0i64..60)), 1..8)
        ) {
            let mut at = Vec::new();
            let mut committed = Committed::new();
            for (partition, offset, c) in &entries {
                if at.iter().any(|p: &Position| p.partition == *partition) { continue; }
                at.push(pos("t", *partition, *offset));
                if let Some(c) = c { committed.insert(("t".to_owned(), *partition), *c); }
            }
            let inc = inclusion(&at, &committed);
            let expect: Vec<i32> = at.iter()
                .filter(|p| committed.get(&("t".to_owned(), p.partition)).is_none_or(|c| *c <= p.offset))
                .map(|p| p.partition).collect();
            let got: Vec<i32> = inc.behind.iter().map(|b| b.partition).collect();
            prop_assert_eq!(&got, &expect);
            prop_assert_eq!(inc.included(), expect.is_empty());
        }
    }
}
