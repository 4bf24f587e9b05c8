//! sluice's reads of projections for the gateway and the CLI ([`ProjectionReads`]): waiting on
//! the shared reader of committed offsets ([`Progress`]) for a token to be included, then — for a
//! Couchbase projection — reading the document, never before.
//!
//! A read that did not see its write included in time reads the document only for its version
//! ("not yet, it holds version N"): the stale document itself is never handed out.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sluice_core::connections::{CouchbaseConnection, KafkaConnection};
use sluice_core::consistency::ConsistencyToken;
use sluice_core::inclusion::Inclusion;
use sluice_core::topology::{ProjectionConfig, Topology};
use sluice_producers::gateway::reads::{ProjectionReads, ReadError, ReadOutcome};
use tokio::sync::OnceCell;

use crate::consistency::{InclusionError, Progress};
use crate::sinks::couchbase::Couchbase;
use crate::sinks::couchbase::reads::{Stored, read_stored};

/// Reads of a topology's projections.
#[derive(Debug)]
pub struct Reads {
    topology: Arc<Topology>,
    progress: Progress,
    /// Where documents are read (`None`: no Couchbase configured; documents cannot be read).
    couchbase: Option<CouchbaseConnection>,
    connected: OnceCell<Couchbase>,
}

impl Reads {
    /// Reads of `topology`'s projections; documents from `couchbase` when given (connected on the
    /// first document read, or by [`Self::warm_up`]). Call within a tokio runtime.
    pub fn new(topology: Arc<Topology>, kafka: KafkaConnection, couchbase: Option<CouchbaseConnection>) -> Self {
        Self { topology, progress: Progress::new(kafka), couchbase, connected: OnceCell::new() }
    }

    fn projection(&self, name: &str) -> Result<&ProjectionConfig, ReadError> {
        self.topology
            .projection(name)
            .ok_or_else(|| ReadError::UnknownProjection(format!("no projection {name:?} in the topology")))
    }

    /// Waits up to `within` for `projection` to include `token`.
    pub async fn included(
        &self,
        name: &str,
        token: &ConsistencyToken,
        within: Duration,
    ) -> Result<Inclusion, ReadError> {
        let projection = self.projection(name)?;
        self.progress.wait(name, projection, token, within).await.map_err(read_error)
    }

    /// Connects to Couchbase now rather than on the first document read, when the topology has a
    /// Couchbase projection and a connection is configured; a server does this at start so that
    /// no reader pays the bootstrap (a second or more) out of its own deadline. On failure the
    /// next read tries again. Whether there was a connection to make.
    pub async fn warm_up(&self) -> Result<bool, ReadError> {
        match &self.couchbase {
            Some(connection) if self.topology.couchbase_projections().next().is_some() => {
                self.connect(connection).await.map(|_| true)
            }
            _ => Ok(false),
        }
    }

    /// The connection, made once: concurrent first callers share the one attempt.
    async fn connect(&self, connection: &CouchbaseConnection) -> Result<&Couchbase, ReadError> {
        self.connected
            .get_or_try_init(|| Couchbase::connect(connection))
            .await
            .map_err(|e| ReadError::Unavailable(e.to_string()))
    }

    /// The document `key` of `projection`, once it includes `after` (waiting up to `within`).
    pub async fn document(
        &self,
        projection: &str,
        key: &str,
        after: Option<&ConsistencyToken>,
        within: Duration,
    ) -> Result<ReadOutcome, ReadError> {
        self.projection(projection)?;
        let Some(connection) = &self.couchbase else {
            return Err(ReadError::Disabled("documents are read from Couchbase: set SLUICE_COUCHBASE_*".to_owned()));
        };
        // The first read connects while it waits: a connection made only after a long wait
        // would leave the read no time of its own before the caller's deadline.
        let inclusion = async {
            match after {
                Some(token) => self.included(projection, token, within).await.map(Some),
                None => Ok(None),
            }
        };
        let (inclusion, cb) = tokio::try_join!(inclusion, self.connect(connection))?;
        let stored = read_stored(cb, &self.topology, projection, key).await?;
        Ok(match (inclusion, stored) {
            (Some(i), stored) if !i.included() => ReadOutcome::NotYet { version: stored.version(), behind: i.behind },
            (_, Stored::Document(document)) => {
                let version = crate::sinks::couchbase::reads::version_of(&document);
                ReadOutcome::Found { document, version }
            }
            (_, Stored::Erased(version)) => ReadOutcome::Gone { version },
            (_, Stored::Absent) => ReadOutcome::NotFound,
        })
    }
}

/// A token's fault is the caller's (400, with its code); Kafka's is worth another try.
fn read_error(e: InclusionError) -> ReadError {
    match e.token_code() {
        Some(code) => ReadError::Token { code, message: e.to_string() },
        None => ReadError::Unavailable(e.to_string()),
    }
}

impl ProjectionReads for Reads {
    fn read<'a>(
        &'a self,
        projection: &'a str,
        key: &'a str,
        after: Option<&'a ConsistencyToken>,
        wait: Duration,
    ) -> BoxFuture<'a, Result<ReadOutcome, ReadError>> {
        Box::pin(self.document(projection, key, after, wait))
    }

    fn progress<'a>(
        &'a self,
        projection: &'a str,
        after: &'a ConsistencyToken,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Inclusion, ReadError>> {
        Box::pin(self.included(projection, after, wait))
    }
}
