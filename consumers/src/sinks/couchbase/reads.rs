//! Reading a Couchbase projection's documents back, through the projection's live-collection
//! pointer: the document, or — when the aggregate was erased — its tombstone's version, whether
//! the tombstone replaced the document (`on_erase = "tombstone"`) or sits beside the removed one
//! (`<key>::erased`). Waiting for a write to be included first is [`crate::reads`]'s.

use couchbase::error::ErrorKind;
use serde_json::Value as Json;
use sluice_core::fold::{META_KEY, State};
use sluice_core::topology::{SinkConfig, Topology};
use sluice_producers::gateway::reads::ReadError;

use super::request_builder::tombstone_id;
use super::service::{KV_TIMEOUT, deadline};
use super::{Couchbase, Error, pointer};

/// What a projection holds under a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// The document.
    Document(Json),
    /// No document, and a tombstone: the aggregate was erased (the tombstone's version).
    Erased(Option<i64>),
    /// Neither.
    Absent,
}

impl Stored {
    /// The aggregate version held (the document's, or the tombstone's).
    pub fn version(&self) -> Option<i64> {
        match self {
            Self::Document(doc) => version_of(doc),
            Self::Erased(version) => *version,
            Self::Absent => None,
        }
    }
}

/// What `projection` holds under `key`, from its live collection.
pub async fn read_stored(
    cb: &Couchbase,
    topology: &Topology,
    projection: &str,
    key: &str,
) -> Result<Stored, ReadError> {
    // Boxed: the SDK's futures are deep enough to overflow the compiler's layout queries twice over.
    Ok(match Box::pin(read_live(cb, topology, projection, key)).await? {
        Some(doc) if is_tombstone(&doc) => Stored::Erased(version_of(&doc)),
        Some(doc) => Stored::Document(doc),
        None => match Box::pin(read_live(cb, topology, projection, &tombstone_id(key))).await? {
            Some(tombstone) => Stored::Erased(version_of(&tombstone)),
            None => Stored::Absent,
        },
    })
}

/// The document `key` of `projection` (`None`: there is none), from its live collection.
pub async fn read_live(
    cb: &Couchbase,
    topology: &Topology,
    projection: &str,
    key: &str,
) -> Result<Option<Json>, ReadError> {
    let Some(SinkConfig::Couchbase { couchbase }) = topology.projection(projection).map(|p| &p.sink) else {
        return Err(ReadError::UnknownProjection(format!(
            "{projection:?} is not a Couchbase projection of the topology: it has no documents to read"
        )));
    };
    let unavailable = |e: Error| ReadError::Unavailable(e.to_string());
    let bucket = cb.open_bucket(couchbase.bucket.as_deref()).await.map_err(unavailable)?;
    let live = pointer::live(&bucket, projection, couchbase).await.map_err(unavailable)?;
    let coll = bucket.scope(&live.scope).collection(&live.collection);
    match deadline("get", KV_TIMEOUT, coll.get(key, None)).await {
        Ok(doc) => doc.content_as().map(Some).map_err(|e| ReadError::Unavailable(format!("{key} is not JSON: {e}"))),
        Err(Error::Couchbase { source, .. }) if source.kind() == &ErrorKind::DocumentNotFound => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}

/// The aggregate version a projection document (or tombstone) records (`_sluice.version`).
pub fn version_of(document: &Json) -> Option<i64> {
    document.pointer("/_sluice/version").and_then(Json::as_i64)
}

/// Is this document an erased entity's tombstone (no fields, an erase in its bookkeeping)?
pub fn is_tombstone(document: &Json) -> bool {
    // The key count first: a document with fields is told apart without copying it into a State.
    document.as_object().is_some_and(|fields| fields.len() == 1 && fields.contains_key(META_KEY))
        && State::from_document(document).is_some_and(|state| state.is_tombstone())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_tombstone_is_bookkeeping_alone_with_an_erase() {
        let meta = json!({"version": 3, "fields": {}, "erased_at": 3,
                          "source": {"topic": "users", "partition": 2, "offset": 12}});
        let tombstone = json!({ "_sluice": meta.clone() });
        assert!(is_tombstone(&tombstone));
        assert_eq!(version_of(&tombstone), Some(3));
        let mut recreated = tombstone.clone();
        recreated["email"] = json!("new@example.com");
        assert!(!is_tombstone(&recreated), "a newer event brought the entity back");
        let mut never_erased = meta;
        never_erased.as_object_mut().map(|m| m.remove("erased_at"));
        assert!(!is_tombstone(&json!({ "_sluice": never_erased })), "no fields, but never erased");
        assert!(!is_tombstone(&json!({"_sluice": "not bookkeeping"})));
    }
}
