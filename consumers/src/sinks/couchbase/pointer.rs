//! The live-collection pointer of a Couchbase projection: which collection readers and the live
//! worker use, so a rebuilt version can be swapped in with one document write.
//!
//! The document `sluice::projection::<name>` in the default collection of the projection's bucket
//! names the scope and collection of the live version. Absent (a projection never rebuilt), the
//! topology's collection is live. `sluice rebuild` writes it at the swap; the worker's sink reads
//! it before every flush ([`super::sink`]), and `sluice couchbase get --projection` reads through
//! it. One document write is atomic for every reader: the swap has no moment without a live
//! collection.

use couchbase::bucket::Bucket;
use couchbase::error::ErrorKind;
use serde::{Deserialize, Serialize};
use sluice_core::topology::{CouchbaseDurability, CouchbaseSink};

use super::Error;
use super::service::{KV_TIMEOUT, deadline};

/// Where the live version of a projection is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// Scope of the live collection.
    pub scope: String,
    /// The live collection.
    pub collection: String,
    /// Its generation (1: the topology's collection).
    pub generation: u32,
}

impl Pointer {
    /// What is live when no pointer was ever written: the topology's collection.
    pub fn of_config(config: &CouchbaseSink) -> Self {
        Self { scope: config.scope.clone(), collection: config.collection.clone(), generation: 1 }
    }
}

/// The key of the pointer document of `projection`.
pub fn pointer_key(projection: &str) -> String {
    format!("sluice::projection::{projection}")
}

/// The collection of generation `generation` of `projection`, as a rebuild creates it.
pub fn collection_of(projection: &str, generation: u32) -> String {
    format!("{projection}__v{generation}")
}

/// The stored pointer of `projection`; `None` when it was never rebuilt.
pub async fn read(bucket: &Bucket, projection: &str) -> Result<Option<Pointer>, Error> {
    let coll = bucket.default_collection();
    match deadline("get pointer", KV_TIMEOUT, coll.get(pointer_key(projection), None)).await {
        Ok(found) => found
            .content_as::<Pointer>()
            .map(Some)
            .map_err(|source| Error::Couchbase { what: "decode pointer", source }),
        Err(Error::Couchbase { source, .. }) if *source.kind() == ErrorKind::DocumentNotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The live version of `projection`: its pointer, else the topology's collection.
pub async fn live(bucket: &Bucket, projection: &str, config: &CouchbaseSink) -> Result<Pointer, Error> {
    Ok(read(bucket, projection).await?.unwrap_or_else(|| Pointer::of_config(config)))
}

/// Points readers and the live worker of `projection` at `pointer`, written with the
/// projection's `durability` (a swap lost in a failover would silently undo the rebuild).
pub async fn write(
    bucket: &Bucket,
    projection: &str,
    pointer: &Pointer,
    durability: CouchbaseDurability,
) -> Result<(), Error> {
    let coll = bucket.default_collection();
    let options = super::durability::upsert_options(durability);
    deadline("write pointer", KV_TIMEOUT, coll.upsert(pointer_key(projection), pointer, options)).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(pointer_key("user_state"), "sluice::projection::user_state");
        assert_eq!(collection_of("user_state", 3), "user_state__v3");
        let json =
            serde_json::to_value(Pointer { scope: "s".into(), collection: "c".into(), generation: 2 }).expect("json");
        assert_eq!(json, serde_json::json!({"scope": "s", "collection": "c", "generation": 2}));
    }
}
