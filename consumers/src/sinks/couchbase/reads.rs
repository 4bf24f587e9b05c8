//! Reading a Couchbase projection's documents back: through the projection's live-collection
//! pointer, and — for the gateway's reads and `sluice couchbase get --after` — only once the
//! projection includes a given write ([`crate::consistency`]).
//!
//! Each waiting read asks Kafka for the projection's committed offsets every 100 ms until they pass
//! the token's; the document is read once, after that (or, at the deadline, only for its
//! version: a read that did not wait long enough gets "not yet", never the stale document).

use std::sync::Arc;
use std::time::Duration;

use couchbase::error::ErrorKind;
use futures::future::BoxFuture;
use serde_json::Value as Json;
use sluice_core::connections::{CouchbaseConnection, KafkaConnection};
use sluice_core::consistency::ConsistencyToken;
use sluice_core::topology::{ProjectionConfig, SinkConfig, Topology};
use sluice_producers::gateway::reads::{DocumentReads, ReadError, ReadOutcome};
use tokio::sync::OnceCell;

use super::service::{KV_TIMEOUT, deadline};
use super::{Couchbase, Error, pointer};
use crate::consistency::{InclusionError, wait};

/// How often a waiting read asks Kafka again.
pub const WAIT_EVERY: Duration = Duration::from_millis(100);

/// The document `key` of `projection` (`None`: there is none), from its live collection.
pub async fn read_live(
    cb: &Couchbase,
    topology: &Topology,
    projection: &str,
    key: &str,
) -> Result<Option<Json>, ReadError> {
    let Some(SinkConfig::Couchbase { couchbase }) = topology.projection(projection).map(|p| &p.sink) else {
        return Err(ReadError::UnknownProjection(format!(
            "{projection:?} is not a Couchbase projection of the topology"
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

/// The aggregate version a projection document records (`_sluice.version`).
pub fn version_of(document: &Json) -> Option<i64> {
    document.pointer("/_sluice/version").and_then(Json::as_i64)
}

/// Waits up to `within` for `projection` to include `token`; `Some(where it is behind)` when it
/// did not. Errors name what is wrong with the token, with the gateway's codes.
pub async fn behind(
    kafka: &KafkaConnection,
    name: &str,
    projection: &ProjectionConfig,
    token: &ConsistencyToken,
    within: Duration,
) -> Result<Option<String>, ReadError> {
    let (kafka, name, projection, token) = (kafka.clone(), name.to_owned(), projection.clone(), token.clone());
    let inclusion = tokio::task::spawn_blocking(move || wait(&kafka, &name, &projection, &token, within, WAIT_EVERY))
        .await
        .map_err(|e| ReadError::Unavailable(format!("the check did not finish: {e}")))?
        .map_err(|e| {
            let code = match &e {
                InclusionError::ForeignTopic { .. } => "token_foreign",
                InclusionError::UnknownPartition { .. } => "token_partition",
                InclusionError::BeyondEnd { .. } => "token_beyond_end",
                InclusionError::Kafka { .. } => return ReadError::Unavailable(e.to_string()),
            };
            ReadError::Token { code, message: e.to_string() }
        })?;
    Ok((!inclusion.included()).then(|| inclusion.describe_behind()))
}

/// The gateway's reads of Couchbase projections. Connects to Couchbase on the first read.
#[derive(Debug)]
pub struct CouchbaseReads {
    topology: Arc<Topology>,
    kafka: KafkaConnection,
    connection: CouchbaseConnection,
    couchbase: OnceCell<Couchbase>,
}

impl CouchbaseReads {
    /// Reads of `topology`'s Couchbase projections.
    pub fn new(topology: Arc<Topology>, kafka: KafkaConnection, connection: CouchbaseConnection) -> Self {
        Self { topology, kafka, connection, couchbase: OnceCell::new() }
    }

    async fn read_after(
        &self,
        projection: &str,
        key: &str,
        after: Option<&ConsistencyToken>,
        within: Duration,
    ) -> Result<ReadOutcome, ReadError> {
        let config = self
            .topology
            .projection(projection)
            .ok_or_else(|| ReadError::UnknownProjection(format!("no projection {projection:?} in the topology")))?;
        let behind = match after {
            Some(token) => behind(&self.kafka, projection, config, token, within).await?,
            None => None,
        };
        let cb = self
            .couchbase
            .get_or_try_init(|| Couchbase::connect(&self.connection))
            .await
            .map_err(|e| ReadError::Unavailable(e.to_string()))?;
        let document = read_live(cb, &self.topology, projection, key).await?;
        let version = document.as_ref().and_then(version_of);
        Ok(match (behind, document) {
            (Some(behind), _) => ReadOutcome::NotYet { version, behind },
            (None, Some(document)) => ReadOutcome::Found { document, version },
            (None, None) => ReadOutcome::NotFound,
        })
    }
}

impl DocumentReads for CouchbaseReads {
    fn read<'a>(
        &'a self,
        projection: &'a str,
        key: &'a str,
        after: Option<&'a ConsistencyToken>,
        wait: Duration,
    ) -> BoxFuture<'a, Result<ReadOutcome, ReadError>> {
        Box::pin(self.read_after(projection, key, after, wait))
    }
}
