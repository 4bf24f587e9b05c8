//! The one "did you mean …" rule, for every hint that names a close candidate: topology keys,
//! section names and values ([`crate::topology`]), and JSON field names of events
//! ([`crate::avro`]).
//!
//! The rule: a candidate is close to a word when, with case and `_`/`-` ignored, it is at most
//! two edits away ([`levenshtein`]) and those edits touch less than half of the candidate's
//! characters. So a different spelling of the same name is always found (`amountCents` →
//! `amount_cents`, `Couchbase` → `couchbase`), as is a typo or two (`partitons` → `partitions`),
//! while a short word never suggests an unrelated one (`ab` → `xy` is two edits of two
//! characters). Of several close candidates the nearest wins, the first given on a tie.

/// Most edits between a word and a candidate it may be a misspelling of.
const MAX_EDITS: usize = 2;

/// The candidate `word` most likely meant, by the rule in the module docs; `None` when none is
/// close.
pub(crate) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = normalized(word);
    candidates
        .into_iter()
        .filter_map(|candidate| {
            let other = normalized(candidate);
            let edits = levenshtein(&word, &other);
            (edits <= MAX_EDITS && edits * 2 < other.chars().count().max(2)).then_some((edits, candidate))
        })
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, candidate)| candidate)
}

/// `s` with case and the separators `_` and `-` ignored: `amountCents` and `amount_cents` are
/// the same name spelt two ways.
fn normalized(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '_' | '-')).flat_map(char::to_lowercase).collect()
}

/// Levenshtein distance, counted in characters.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(above + 1).min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::{closest, levenshtein};

    #[test]
    fn distances() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("amont_cents", "amount_cents"), 1);
        assert_eq!(levenshtein("é", "e"), 1);
    }

    #[test]
    fn one_rule_for_every_hint() {
        // Another spelling of the same name, whatever its length.
        assert_eq!(closest("amountCents", ["currency", "amount_cents"]), Some("amount_cents"));
        assert_eq!(closest("Couchbse", ["couchbase", "clickhouse"]), Some("couchbase"));
        // Up to two edits, fewer than half the candidate's characters.
        assert_eq!(closest("partitons", ["partitions", "retention"]), Some("partitions"));
        assert_eq!(closest("prtitons", ["partitions"]), Some("partitions"));
        assert_eq!(closest("prtiton", ["partitions"]), None, "three edits");
        assert_eq!(closest("ab", ["xy"]), None, "two edits of two characters");
        assert_eq!(closest("item", ["items"]), Some("items"));
        // The nearest wins; on a tie, the first given.
        assert_eq!(closest("topik", ["topics", "topic"]), Some("topic"));
        assert_eq!(closest("cat", ["bat", "hat"]), Some("bat"));
        assert_eq!(closest("xyz", ["partitions"]), None);
    }
}
