//! `sluice couchbase setup`: create the scopes and collections the Couchbase projections write to.
//!
//! Input is each Couchbase projection's `[projections.<name>.couchbase]` block (from the
//! topology); output is one [`SetupLine`] per projection saying what was created and what was
//! already there, for the CLI to print. Creating is idempotent: a scope or collection that exists
//! (or that another run creates at the same moment) is reported as already there. A new collection
//! takes a moment to reach the data service, and a KV call against it hangs until then, so each
//! line is only returned once a read on its collection answers.

use std::fmt;
use std::time::{Duration, Instant};

use couchbase::bucket::Bucket;
use couchbase::error::ErrorKind;
use sluice_core::topology::{COUCHBASE_DEFAULT_COLLECTION, CouchbaseSink};

use super::Error;
use super::service::{Couchbase, MANAGEMENT_TIMEOUT, deadline};

/// How long a new collection may take to accept key-value operations.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one readiness probe may wait before trying again.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The key read to see whether a collection serves KV operations; it never exists.
const PROBE_KEY: &str = "sluice::setup::probe";

/// Whether set-up created something or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Created by this run.
    Created,
    /// It existed before (the `_default` scope and collection always do).
    AlreadyThere,
}

impl fmt::Display for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::AlreadyThere => "already there",
        })
    }
}

/// What set-up did for one projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupLine {
    /// The projection.
    pub projection: String,
    /// Its bucket.
    pub bucket: String,
    /// Its scope.
    pub scope: String,
    /// Its collection.
    pub collection: String,
    /// What happened to the scope.
    pub scope_presence: Presence,
    /// What happened to the collection.
    pub collection_presence: Presence,
    /// How long the collection took to accept KV operations.
    pub ready_after: Duration,
}

impl fmt::Display for SetupLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}.{}.{} (scope {}, collection {}; ready after {} ms)",
            self.projection,
            self.bucket,
            self.scope,
            self.collection,
            self.scope_presence,
            self.collection_presence,
            self.ready_after.as_millis()
        )
    }
}

/// Ensures the scope and collection of every `(projection name, Couchbase block)` exist and serve
/// KV operations; returns one line per projection, in the order given.
pub async fn setup(cb: &Couchbase, projections: &[(&str, &CouchbaseSink)]) -> Result<Vec<SetupLine>, Error> {
    let mut lines = Vec::with_capacity(projections.len());
    for (name, sink) in projections {
        let bucket = cb.open_bucket(sink.bucket.as_deref()).await?;
        // Boxed: the SDK's futures are deep, and callers' futures would exceed rustc's layout depth.
        lines.extend(Box::pin(setup_on(&bucket, &[(name, sink)])).await?);
    }
    Ok(lines)
}

/// [`setup`] on an opened bucket (the one every block names).
pub async fn setup_on(bucket: &Bucket, projections: &[(&str, &CouchbaseSink)]) -> Result<Vec<SetupLine>, Error> {
    let mut lines = Vec::with_capacity(projections.len());
    for (name, sink) in projections {
        let (scope_presence, collection_presence) = ensure(bucket, &sink.scope, &sink.collection).await?;
        let ready_after = wait_until_serving(bucket, &sink.scope, &sink.collection).await?;
        lines.push(SetupLine {
            projection: (*name).to_owned(),
            bucket: bucket.name().to_owned(),
            scope: sink.scope.clone(),
            collection: sink.collection.clone(),
            scope_presence,
            collection_presence,
            ready_after,
        });
    }
    Ok(lines)
}

/// Drops a collection and its documents; one already gone (or its scope) is fine.
pub async fn drop_collection(bucket: &Bucket, scope: &str, collection: &str) -> Result<(), Error> {
    let manager = bucket.collections();
    match deadline("drop collection", MANAGEMENT_TIMEOUT, manager.drop_collection(scope, collection, None)).await {
        Err(Error::Couchbase { source, .. })
            if matches!(source.kind(), ErrorKind::CollectionNotFound | ErrorKind::ScopeNotFound) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Creates the scope and collection when the bucket's manifest lacks them.
async fn ensure(bucket: &Bucket, scope: &str, collection: &str) -> Result<(Presence, Presence), Error> {
    let manager = bucket.collections();
    let scopes = deadline("list scopes", MANAGEMENT_TIMEOUT, manager.get_all_scopes(None)).await?;
    let existing = scopes.iter().find(|s| s.name() == scope);
    let scope_presence = if existing.is_some() || scope == COUCHBASE_DEFAULT_COLLECTION {
        Presence::AlreadyThere
    } else {
        tolerate(
            deadline("create scope", MANAGEMENT_TIMEOUT, manager.create_scope(scope, None)).await,
            &ErrorKind::ScopeExists,
        )?
    };
    let collection_known = existing.is_some_and(|s| s.collections().iter().any(|c| c.name() == collection));
    let default_pair = scope == COUCHBASE_DEFAULT_COLLECTION && collection == COUCHBASE_DEFAULT_COLLECTION;
    let collection_presence = if collection_known || default_pair {
        Presence::AlreadyThere
    } else {
        tolerate(
            deadline("create collection", MANAGEMENT_TIMEOUT, manager.create_collection(scope, collection, None, None))
                .await,
            &ErrorKind::CollectionExists,
        )?
    };
    Ok((scope_presence, collection_presence))
}

/// `Created` on success, `AlreadyThere` when it failed only because it exists (a concurrent run).
fn tolerate(result: Result<(), Error>, exists: &ErrorKind) -> Result<Presence, Error> {
    match result {
        Ok(()) => Ok(Presence::Created),
        Err(Error::Couchbase { source, .. }) if source.kind() == exists => Ok(Presence::AlreadyThere),
        Err(e) => Err(e),
    }
}

/// Reads a key that does not exist until the collection answers (found or not found).
async fn wait_until_serving(bucket: &Bucket, scope: &str, collection: &str) -> Result<Duration, Error> {
    let handle = bucket.scope(scope).collection(collection);
    let started = Instant::now();
    loop {
        match deadline("probe get", PROBE_TIMEOUT, handle.get(PROBE_KEY, None)).await {
            Ok(_) => return Ok(started.elapsed()),
            Err(Error::Couchbase { source, .. }) if *source.kind() == ErrorKind::DocumentNotFound => {
                return Ok(started.elapsed());
            }
            Err(Error::Couchbase { source, .. })
                if !matches!(source.kind(), ErrorKind::CollectionNotFound | ErrorKind::ScopeNotFound) =>
            {
                return Err(Error::Couchbase { what: "probe get", source });
            }
            // Not known to the data service yet (a timeout or "not found"): try again.
            Err(_) if started.elapsed() < READY_TIMEOUT => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => {
                return Err(Error::Timeout { what: "waiting for the collection to serve reads", after: READY_TIMEOUT });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_sentences() {
        let line = SetupLine {
            projection: "user_state".into(),
            bucket: "default".into(),
            scope: "app".into(),
            collection: "users".into(),
            scope_presence: Presence::AlreadyThere,
            collection_presence: Presence::Created,
            ready_after: Duration::from_millis(12),
        };
        assert_eq!(
            line.to_string(),
            "user_state: default.app.users (scope already there, collection created; ready after 12 ms)"
        );
    }
}
