//! Consistency tokens: what a writer gets back for an accepted write, and what a reader hands in to
//! wait until a projection includes it.
//!
//! A token names log positions — for each partition written, the offset of the last record — and,
//! for a single event, its aggregate and version. A projection includes the write once its
//! consumer group's committed offset on every named partition is past the named offset: workers
//! commit only after the sink acknowledged, so a committed offset is a promise the write is
//! readable.
//!
//! The text form is `st1.` and the base64url (no padding) of a small binary: a version byte, the
//! positions (topic, partition, offset as varints), and an optional aggregate. Opaque to callers,
//! but carrying no secret: anyone can decode it. Pure, so it is tested without Kafka.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use thiserror::Error;

/// The text prefix of every token (format version 1).
pub const PREFIX: &str = "st1.";

/// Longest topic name Kafka allows; a longer one in a token is malformed.
const MAX_TOPIC: usize = 249;
/// Most positions one token holds (a batch touches at most this many partitions).
const MAX_POSITIONS: usize = 4096;
/// Longest aggregate id carried.
const MAX_AGGREGATE_ID: usize = 4096;

/// Why a token cannot be read. Each names the part at fault; a caller answers 400 with
/// [`TokenError::code`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Not `st1.` followed by the payload.
    #[error("not a sluice consistency token (it starts with `{PREFIX}`)")]
    Prefix,
    /// The payload is not base64url.
    #[error("the token is not base64url after `{PREFIX}`")]
    Encoding,
    /// The payload ends early: the token was cut.
    #[error("the token is truncated")]
    Truncated,
    /// A field has an impossible value.
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    /// Bytes after the last field.
    #[error("the token has trailing bytes")]
    Trailing,
}

impl TokenError {
    /// A stable machine-readable code for API answers.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Prefix => "token_prefix",
            Self::Encoding => "token_encoding",
            Self::Truncated => "token_truncated",
            Self::Malformed(_) => "token_malformed",
            Self::Trailing => "token_trailing",
        }
    }
}

/// A write's aggregate: its id and the version the write gave it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AggregateVersion {
    /// The aggregate id.
    pub id: String,
    /// Its version after the write.
    pub version: i64,
}

/// Log positions a reader waits for, and (for one event) the aggregate written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsistencyToken {
    /// For each (topic, partition) written, the offset of the last record written there.
    positions: BTreeMap<(String, i32), i64>,
    /// The aggregate of a single-event write.
    aggregate: Option<AggregateVersion>,
}

impl ConsistencyToken {
    /// The token of one event at `topic`/`partition`/`offset`.
    pub fn single(topic: &str, partition: i32, offset: i64, aggregate: Option<AggregateVersion>) -> Self {
        let mut t = Self::default();
        t.include(topic, partition, offset);
        t.aggregate = aggregate;
        t
    }

    /// Adds a written record: the token then covers it (the highest offset per partition wins).
    /// A negative partition or offset (librdkafka's "unknown") names no position and is ignored.
    pub fn include(&mut self, topic: &str, partition: i32, offset: i64) {
        if partition < 0 || offset < 0 {
            return;
        }
        let at = self.positions.entry((topic.to_owned(), partition)).or_insert(offset);
        *at = (*at).max(offset);
    }

    /// A token covering both (a batch's); the aggregate is kept only if both name the same one.
    #[must_use]
    pub fn merge(mut self, other: &Self) -> Self {
        for ((topic, partition), offset) in &other.positions {
            self.include(topic, *partition, *offset);
        }
        if self.aggregate != other.aggregate {
            self.aggregate = None;
        }
        self
    }

    /// The positions: ((topic, partition), offset of the last record written).
    pub fn positions(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.positions.iter().map(|((t, p), o)| (t.as_str(), *p, *o))
    }

    /// The topics the token names.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        let mut last = None;
        self.positions.keys().filter_map(move |(t, _)| {
            let new = last != Some(t);
            last = Some(t);
            new.then_some(t.as_str())
        })
    }

    /// The aggregate of a single-event write.
    pub fn aggregate(&self) -> Option<&AggregateVersion> {
        self.aggregate.as_ref()
    }

    /// Whether it names no position (an empty batch).
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Whether committed offsets (the next offset to read, per partition, Kafka's convention)
    /// include every write the token names. A partition without a committed offset has not
    /// included anything yet.
    pub fn is_included_by(&self, committed: impl Fn(&str, i32) -> Option<i64>) -> bool {
        self.positions().all(|(topic, partition, offset)| committed(topic, partition).is_some_and(|c| c > offset))
    }

    /// The binary form (see the module doc).
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![1u8];
        put_varint(&mut out, self.positions.len() as u64);
        for ((topic, partition), offset) in &self.positions {
            put_str(&mut out, topic);
            put_varint(&mut out, u64::from(partition.unsigned_abs()));
            put_varint(&mut out, offset.unsigned_abs());
        }
        match &self.aggregate {
            None => out.push(0),
            Some(a) => {
                out.push(1);
                put_str(&mut out, &a.id);
                put_varint(&mut out, zigzag(a.version));
            }
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        let mut r = Reader(bytes);
        if r.byte()? != 1 {
            return Err(TokenError::Malformed("unknown format version"));
        }
        let n = usize::try_from(r.varint()?).map_err(|_| TokenError::Malformed("too many positions"))?;
        if n > MAX_POSITIONS {
            return Err(TokenError::Malformed("too many positions"));
        }
        let mut token = Self::default();
        for _ in 0..n {
            let topic = r.str(MAX_TOPIC, "topic name")?;
            if topic.is_empty() {
                return Err(TokenError::Malformed("empty topic name"));
            }
            let partition = i32::try_from(r.varint()?).map_err(|_| TokenError::Malformed("partition out of range"))?;
            let offset = i64::try_from(r.varint()?).map_err(|_| TokenError::Malformed("offset out of range"))?;
            if token.positions.insert((topic, partition), offset).is_some() {
                return Err(TokenError::Malformed("a partition named twice"));
            }
        }
        token.aggregate = match r.byte()? {
            0 => None,
            1 => {
                Some(AggregateVersion { id: r.str(MAX_AGGREGATE_ID, "aggregate id")?, version: unzigzag(r.varint()?) })
            }
            _ => return Err(TokenError::Malformed("aggregate flag")),
        };
        if !r.0.is_empty() {
            return Err(TokenError::Trailing);
        }
        Ok(token)
    }
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", URL_SAFE_NO_PAD.encode(self.to_bytes()))
    }
}

impl std::str::FromStr for ConsistencyToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        let payload = s.trim().strip_prefix(PREFIX).ok_or(TokenError::Prefix)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Encoding)?;
        Self::from_bytes(&bytes)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads the binary form, every read bounded by what is left.
struct Reader<'b>(&'b [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, TokenError> {
        let (&b, rest) = self.0.split_first().ok_or(TokenError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, TokenError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f).checked_shl(shift).ok_or(TokenError::Malformed("varint too long"))?;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(TokenError::Malformed("varint too long"))
    }

    fn str(&mut self, max: usize, what: &'static str) -> Result<String, TokenError> {
        let len = usize::try_from(self.varint()?).map_err(|_| TokenError::Malformed(what))?;
        if len > max {
            return Err(TokenError::Malformed(what));
        }
        if len > self.0.len() {
            return Err(TokenError::Truncated);
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(s.to_vec()).map_err(|_| TokenError::Malformed(what))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_single_write_round_trips_and_is_compact() {
        let agg = AggregateVersion { id: "user-42".into(), version: 7 };
        let t = ConsistencyToken::single("sluice.users", 2, 12_345, Some(agg.clone()));
        let text = t.to_string();
        assert!(text.starts_with("st1.") && text.len() < 60, "{text}");
        let back: ConsistencyToken = text.parse().expect("parses");
        assert_eq!(back, t);
        assert_eq!(back.aggregate(), Some(&agg));
        assert_eq!(back.topics().collect::<Vec<_>>(), ["sluice.users"]);
    }

    #[test]
    fn a_batch_keeps_the_highest_offset_per_partition() {
        let mut t = ConsistencyToken::default();
        for (p, o) in [(0, 5), (1, 3), (0, 9), (0, 7)] {
            t.include("a", p, o);
        }
        let t = t.merge(&ConsistencyToken::single("b", 0, 1, None));
        assert_eq!(t.positions().collect::<Vec<_>>(), [("a", 0, 9), ("a", 1, 3), ("b", 0, 1)]);
        assert_eq!(t.topics().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn inclusion_needs_every_partition_committed_past_its_offset() {
        let mut t = ConsistencyToken::single("a", 0, 9, None);
        t.include("a", 1, 3);
        assert!(t.is_included_by(|_, p| Some(if p == 0 { 10 } else { 4 })));
        assert!(
            !t.is_included_by(|_, p| Some(if p == 0 { 9 } else { 4 })),
            "committed 9 is the next to read: 9 is not in"
        );
        assert!(!t.is_included_by(|_, p| (p == 0).then_some(10)), "a partition never committed");
    }

    #[test]
    fn bad_tokens_say_what_is_wrong() {
        let good =
            ConsistencyToken::single("topic", 1, 2, Some(AggregateVersion { id: "x".into(), version: -1 })).to_string();
        assert_eq!("st2.AAAA".parse::<ConsistencyToken>(), Err(TokenError::Prefix));
        assert_eq!("st1.!!!".parse::<ConsistencyToken>(), Err(TokenError::Encoding));
        assert_eq!(good[..good.len() - 3].parse::<ConsistencyToken>(), Err(TokenError::Truncated));
        let mut bytes = URL_SAFE_NO_PAD.decode(&good[4..]).expect("b64");
        bytes.push(0);
        assert_eq!(
            format!("st1.{}", URL_SAFE_NO_PAD.encode(&bytes)).parse::<ConsistencyToken>(),
            Err(TokenError::Trailing)
        );
        bytes[0] = 9;
        let err = format!("st1.{}", URL_SAFE_NO_PAD.encode(&bytes)).parse::<ConsistencyToken>().expect_err("version");
        assert_eq!(
            (err.code(), err.to_string().as_str()),
            ("token_malformed", "the token is malformed: unknown format version")
        );
    }

    proptest! {
        #[test]
        fn any_token_round_trips(
            positions in proptest::collection::vec(("[a-z._-]{1,40}", 0i32..1000, 0i64..i64::MAX), 0..20),
            aggregate in proptest::option::of(("\\PC{0,30}", any::<i64>())),
        ) {
            let mut t = ConsistencyToken::default();
            for (topic, p, o) in &positions {
                t.include(topic, *p, *o);
            }
            t.aggregate = aggregate.map(|(id, version)| AggregateVersion { id, version });
            let back: ConsistencyToken = t.to_string().parse().expect("round trip");
            prop_assert_eq!(back, t);
        }

        #[test]
        fn no_input_panics_and_every_refusal_has_a_code(text in "st1\\.[A-Za-z0-9_-]{0,80}") {
            if let Err(e) = text.parse::<ConsistencyToken>() {
                prop_assert!(e.code().starts_with("token_"));
            }
        }

        #[test]
        fn every_cut_of_a_valid_token_is_refused(cut in 0usize..40) {
            let t = ConsistencyToken::single("sluice.orders", 3, 1 << 40, Some(AggregateVersion { id: "o-1".into(), version: 3 }));
            let text = t.to_string();
            let cut = cut.min(text.len() - 1);
            prop_assert!(text[..cut].parse::<ConsistencyToken>().is_err());
        }
    }
}
