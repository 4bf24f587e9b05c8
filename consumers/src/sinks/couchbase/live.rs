//! [`LiveProjection`]: the sink of `sluice work` for a Couchbase projection — a
//! [`CouchbaseProjection`] that follows the projection's live-collection [`pointer`](mod@super::pointer).
//!
//! Before every flush it reads the pointer document (one KV get per flush, not per event) and,
//! when `sluice rebuild` swapped a new version in, moves its writes to that collection. A flush
//! that started before the swap may still land in the old collection: the rebuild's catch-up pass
//! after the swap re-projects everything up to the high watermarks read after it, so the new
//! version misses nothing (the fold makes the overlap harmless).

use std::sync::{Arc, RwLock};

use couchbase::bucket::Bucket;
use sluice_core::topology::{CouchbaseSink, ProjectionConfig, SinkConfig};
use tracing::info;

use super::pointer::{self, Pointer};
use super::sink::CouchbaseProjection;
use super::{Couchbase, Error};
use crate::sink::{Batch, Batching, Rejected, Sink, SinkError};

/// A Couchbase projection writing to whichever collection its pointer names.
pub struct LiveProjection {
    name: String,
    config: CouchbaseSink,
    bucket: Bucket,
    batching: Batching,
    current: RwLock<(Pointer, Arc<CouchbaseProjection>)>,
}

impl std::fmt::Debug for LiveProjection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let live = self.current.read().ok().map(|c| c.0.clone());
        f.debug_struct("LiveProjection").field("name", &self.name).field("live", &live).finish_non_exhaustive()
    }
}

impl LiveProjection {
    /// The live sink of projection `name` (`projection` is its topology block).
    pub async fn from_projection(cb: &Couchbase, name: &str, projection: &ProjectionConfig) -> Result<Self, Error> {
        let SinkConfig::Couchbase { couchbase } = &projection.sink else {
            return Err(Error::NotCouchbase { projection: name.to_owned() });
        };
        let batching = Batching::of(projection);
        let bucket = cb.open_bucket(couchbase.bucket.as_deref()).await?;
        // Boxed: the SDK's futures are deep, and nested unboxed they exceed rustc's layout depth.
        let live = Box::pin(pointer::live(&bucket, name, couchbase)).await?;
        let sink = Box::pin(Self::open(&bucket, name, couchbase, &live, batching)).await?;
        info!(projection = name, keyspace = sink.keyspace(), generation = live.generation, "live Couchbase collection");
        Ok(Self {
            name: name.to_owned(),
            config: couchbase.clone(),
            bucket,
            batching,
            current: RwLock::new((live, Arc::new(sink))),
        })
    }

    async fn open(
        bucket: &Bucket,
        name: &str,
        config: &CouchbaseSink,
        at: &Pointer,
        batching: Batching,
    ) -> Result<CouchbaseProjection, Error> {
        let config = CouchbaseSink { scope: at.scope.clone(), collection: at.collection.clone(), ..config.clone() };
        Box::pin(CouchbaseProjection::on_bucket(bucket.clone(), name, &config, batching)).await
    }

    /// The sink of the collection the pointer names now.
    async fn follow(&self) -> Result<Arc<CouchbaseProjection>, SinkError> {
        let live = Box::pin(pointer::live(&self.bucket, &self.name, &self.config))
            .await
            .map_err(|e| SinkError::Transient(format!("reading the live-collection pointer: {e}")))?;
        if let Ok(current) = self.current.read()
            && current.0 == live
        {
            return Ok(current.1.clone());
        }
        let sink = Arc::new(
            Box::pin(Self::open(&self.bucket, &self.name, &self.config, &live, self.batching))
                .await
                .map_err(|e| SinkError::Transient(format!("opening the new live collection: {e}")))?,
        );
        info!(projection = %self.name, keyspace = sink.keyspace(), generation = live.generation,
              "the live collection changed (a rebuild was swapped in); writing there from now on");
        if let Ok(mut current) = self.current.write() {
            *current = (live, sink.clone());
        }
        Ok(sink)
    }

    /// One pointer read for the whole flush, then every partition's batch concurrently.
    pub async fn write_each<'a>(
        &self,
        batches: impl IntoIterator<Item = &'a Batch>,
    ) -> Result<Vec<Vec<Rejected>>, SinkError> {
        self.follow().await?.write_each(batches).await
    }
}

impl Sink for LiveProjection {
    type Encoded = Batch;

    fn kind(&self) -> &'static str {
        "couchbase"
    }

    fn encode(&self, batch: Batch) -> Batch {
        batch
    }

    async fn write_all(&self, batches: &[Batch]) -> Result<Vec<Vec<Rejected>>, SinkError> {
        self.write_each(batches).await
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    fn unchanged(&self) -> Option<u64> {
        self.current.read().ok().and_then(|c| c.1.unchanged())
    }
}
