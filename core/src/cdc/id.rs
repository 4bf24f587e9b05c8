//! Deterministic event ids for change events: the same change, delivered again or read again,
//! gets the same id, so the ClickHouse raw table (which deduplicates by `event_id`) keeps one row.
//!
//! An id is a UUID version 8 (RFC 9562's custom, hash-based layout) made of the first 16 bytes of
//! the SHA-256 of its parts, each written with its length so no two part lists hash alike.

use apache_avro::Uuid;
use sha2::{Digest, Sha256};

/// The id made of `parts`, as a lowercase hyphenated UUID.
pub(crate) fn derive(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    Uuid::from_bytes(bytes).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_8_and_length_prefixed() {
        let id = derive(&[b"a", b"bc"]);
        let uuid = Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(uuid.get_version_num(), 8);
        assert_eq!(uuid.as_bytes()[8] & 0xc0, 0x80, "RFC 9562 variant");
        assert_ne!(id, derive(&[b"ab", b"c"]), "parts do not run into each other");
        assert_eq!(id, derive(&[b"a", b"bc"]));
    }
}
