//! The Couchbase [`Sink`]: folds each batch into one latest-state JSON document per entity.
//!
//! Data path: the worker hands over a [`Batch`] of one partition's events; [`request_builder`]
//! turns each into a document key and a fold change (events without a usable key are rejected to
//! the DLQ); events are grouped by key in offset order. Different documents are written
//! concurrently, one document's events in order: read the stored state (`get`, with its CAS),
//! fold the group's events into it with [`fold::apply`], and write the result back with that CAS —
//! `insert` when there was no document, `replace` otherwise, `remove` when the entity is erased.
//! A CAS conflict means another writer got there first: read again and fold again. The read is
//! skipped for a document this worker wrote last (`known`: replaced at that write's CAS)
//! and, where every write is one document, for one it guesses is new (`first`: folded
//! into nothing and inserted; the insert refused means it exists, and it is read after all).
//!
//! Erase (GDPR), as the projection's `on_erase` says. `tombstone`: the document is replaced by its
//! tombstone — the fold's bookkeeping alone (version, erase version, source position; no personal
//! data), so a late re-delivery of an older event folds into it and changes nothing; one document
//! per entity, written like any other. `remove` (the default): the main document is removed, and a
//! side document `<key>::erased` keeps the tombstone. It is read only when the main document is
//! missing. Its writes are monotonic (CAS-guarded, erase version only grows) and the two documents
//! are written in an order that keeps every interleaving safe: the tombstone before the removal,
//! and after an insert over a tombstone, a check that no newer erase landed meanwhile.
//!
//! Every insert, replace and remove carries the projection's `durability` ([`super::durability`]).
//!
//! Errors say what the worker does next: timeouts and unexplained server failures are
//! [`SinkError::Transient`]; bad credentials, a missing bucket or collection, and a bucket that
//! cannot give the projection's `durability` are [`SinkError::Config`]; per-event problems (no
//! key, a foreign document in the way, a document over 20 MiB) are [`Rejected`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use couchbase::bucket::Bucket;
use couchbase::collection::Collection;
use couchbase::error::ErrorKind;
use couchbase::transcoding::raw_json;
use futures::{StreamExt, TryStreamExt, stream};
use rand::Rng;
use serde_json::Value;
use sluice_core::fold::{self, Change, FoldEvent, State};
use sluice_core::topology::{CouchbaseDurability, CouchbaseSink, OnErase, ProjectionConfig, SinkConfig};
use tracing::{debug, warn};

use super::Error;
use super::durability::{self, DurabilityError};
use super::first::FirstWrite;
pub use super::group::MAX_DOCUMENT_BYTES;
use super::group::{Folded, Pending, encode, fold_group, merge_tombstone};
use super::known::{KNOWN_BYTES, Known};
use super::operations::Operations;
use super::request_builder::{self, DocumentChange};
use super::service::{Couchbase, KV_TIMEOUT, deadline};
use crate::sink::{Batch, Batching, Rejected, Sink, SinkError};

/// Documents written concurrently within one batch. Each document costs two or three round trips
/// and the SDK pipelines requests over a few connections, so some dozens in flight keep the
/// connections busy; far more only queue up in the client and hit their deadlines together when
/// the cluster slows down. Events of one document never run concurrently with each other.
pub const MAX_DOCUMENTS_IN_FLIGHT: usize = 64;

/// Read-fold-write attempts on one document before the batch is handed back as transient. Each
/// failed attempt means another writer changed the document meanwhile, so the bound is only hit
/// under pathological contention; the worker then backs off and writes the batch again.
pub const MAX_ATTEMPTS: u32 = 32;

/// A projection writing the latest state of each entity to a Couchbase collection.
pub struct CouchbaseProjection {
    name: String,
    config: CouchbaseSink,
    bucket: Bucket,
    collection: Collection,
    keyspace: String,
    batching: Batching,
    /// Events written that changed nothing (duplicates, or older than every field they touch).
    unchanged: AtomicU64,
    /// The documents written last, updated without a read first ([`super::known`]).
    known: Known,
    /// The operations sent, by kind.
    operations: Operations,
    /// Whether the documents not remembered are mostly new ([`super::first`]).
    first: FirstWrite,
}

impl fmt::Debug for CouchbaseProjection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CouchbaseProjection")
            .field("name", &self.name)
            .field("keyspace", &self.keyspace)
            .field("document_id", &self.config.document_id.as_str())
            .field("batching", &self.batching)
            .finish_non_exhaustive()
    }
}

/// Why a document could not be written: what the whole batch reports.
#[derive(Debug)]
enum Failure {
    /// An operation hit its deadline (maybe the collection is gone: checked once per batch).
    Timeout(String),
    /// Worth retrying.
    Transient(String),
    /// Retrying cannot help.
    Config(String),
}

/// How one Couchbase operation ended, as the write loop needs it.
#[derive(Debug)]
enum OpError {
    /// CAS mismatch or the document appeared or vanished: another writer was first; read again.
    Conflict,
    /// An insert found the document there: read it (another writer was first, or a blind insert
    /// guessed wrong).
    Exists,
    /// Permanent for the events of this document.
    Reject(String),
    /// For the whole batch.
    Fail(Failure),
}

/// A stored document as read.
#[derive(Debug)]
enum Stored {
    Missing,
    Ours(State, u64),
    Foreign(String),
}

/// What the state was folded against, so the write knows which operation and CAS to use.
#[derive(Debug)]
enum Base {
    /// The main document, at this CAS.
    Main(u64),
    /// No main document; the tombstone (and its CAS) when there is one.
    Absent(Option<(State, u64)>),
}

/// How one attempt at a document ended.
#[derive(Debug)]
enum Step {
    /// Written (or nothing to write); these events were refused.
    Done(Vec<Rejected>),
    /// Someone else wrote meanwhile: read and fold again.
    Retry,
    /// An erase landed on the tombstone while we inserted: fold it in too, and write again.
    Reconcile(FoldEvent),
}

impl CouchbaseProjection {
    /// The sink of projection `name`, whose `[projections.<name>]` block is `projection`.
    pub async fn from_projection(cb: &Couchbase, name: &str, projection: &ProjectionConfig) -> Result<Self, Error> {
        let SinkConfig::Couchbase { couchbase } = &projection.sink else {
            return Err(Error::NotCouchbase { projection: name.to_owned() });
        };
        let batching = Batching::of(projection);
        Self::new(cb, name, couchbase, batching).await
    }

    /// A sink writing to the collection `config` names, batching as `batching` says. Fails when
    /// the bucket cannot be opened or the collection does not exist (run `sluice couchbase setup`).
    pub async fn new(cb: &Couchbase, name: &str, config: &CouchbaseSink, batching: Batching) -> Result<Self, Error> {
        let bucket = cb.open_bucket(config.bucket.as_deref()).await?;
        // Boxed: the SDK's futures are deep, and callers' futures would exceed rustc's layout depth.
        Box::pin(Self::on_bucket(bucket, name, config, batching)).await
    }

    /// [`Self::new`] on an opened bucket (the one `config` names).
    pub async fn on_bucket(
        bucket: Bucket,
        name: &str,
        config: &CouchbaseSink,
        batching: Batching,
    ) -> Result<Self, Error> {
        let bucket_name = bucket.name().to_owned();
        match Couchbase::collection_exists(&bucket, &config.scope, &config.collection).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::MissingCollection {
                    bucket: bucket_name,
                    scope: config.scope.clone(),
                    collection: config.collection.clone(),
                });
            }
            Err(e @ Error::Timeout { .. }) => return Err(e),
            // Listing collections needs more rights than writing documents; a worker's user may
            // lack them. Go on: a missing collection then shows up as a write timeout, diagnosed.
            Err(e) => warn!(projection = name, error = %e, "cannot check that the collection exists; going on"),
        }
        let collection = bucket.scope(&config.scope).collection(&config.collection);
        Ok(Self {
            name: name.to_owned(),
            keyspace: format!("{bucket_name}.{}.{}", config.scope, config.collection),
            config: config.clone(),
            bucket,
            collection,
            batching,
            unchanged: AtomicU64::new(0),
            known: Known::new(KNOWN_BYTES),
            operations: Operations::new(name),
            first: FirstWrite::new(),
        })
    }

    /// `bucket.scope.collection`, for messages.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// The collection written to.
    pub fn collection(&self) -> &Collection {
        &self.collection
    }

    /// Writes every partition's batch concurrently; the refused events of each, in order.
    pub async fn write_each<'a>(
        &self,
        batches: impl IntoIterator<Item = &'a Batch>,
    ) -> Result<Vec<Vec<Rejected>>, SinkError> {
        futures::future::try_join_all(batches.into_iter().map(|b| self.write_batch(b))).await
    }

    /// Groups the batch by document and writes the groups, [`MAX_DOCUMENTS_IN_FLIGHT`] at a time.
    pub(super) async fn write_batch(&self, batch: &Batch) -> Result<Vec<Rejected>, SinkError> {
        let mut rejected = Vec::new();
        let mut groups: Vec<(String, Vec<Pending>)> = Vec::new();
        let mut group_of: HashMap<String, usize> = HashMap::new();
        for event in &batch.events {
            let offset = event.position.offset;
            match request_builder::build(&self.config, event) {
                Ok(DocumentChange { document_id, fold }) => {
                    let i = match group_of.get(&document_id) {
                        Some(&i) => i,
                        None => {
                            group_of.insert(document_id.clone(), groups.len());
                            groups.push((document_id, Vec::new()));
                            groups.len() - 1
                        }
                    };
                    if let Some((_, events)) = groups.get_mut(i) {
                        events.push(Pending { offset, fold });
                    }
                }
                Err(e) => rejected.push(Rejected { offset, reason: e.to_string() }),
            }
        }
        // Owned groups: a closure over borrowed ones trips rustc's `Send` inference (#102211).
        let writes = groups.into_iter().map(|(id, events)| async move { self.write_document(&id, &events).await });
        let written: Result<Vec<Vec<Rejected>>, Failure> =
            stream::iter(writes).buffer_unordered(MAX_DOCUMENTS_IN_FLIGHT).try_collect().await;
        match written {
            Ok(per_document) => {
                rejected.extend(per_document.into_iter().flatten());
                rejected.sort_by_key(|r| r.offset);
                Ok(rejected)
            }
            Err(Failure::Transient(reason)) => Err(SinkError::Transient(reason)),
            Err(Failure::Config(reason)) => Err(SinkError::Config(reason)),
            Err(Failure::Timeout(reason)) => Err(self.diagnose_timeout(reason).await),
        }
    }

    /// A KV call against a collection that does not exist never answers; tell that apart from a
    /// slow cluster by looking at the bucket's collections once.
    async fn diagnose_timeout(&self, reason: String) -> SinkError {
        match Couchbase::collection_exists(&self.bucket, &self.config.scope, &self.config.collection).await {
            Ok(false) => SinkError::Config(
                Error::MissingCollection {
                    bucket: self.bucket.name().to_owned(),
                    scope: self.config.scope.clone(),
                    collection: self.config.collection.clone(),
                }
                .to_string(),
            ),
            _ => SinkError::Transient(reason),
        }
    }

    /// Folds one document's events (in offset order) into its stored state and writes it,
    /// reading again and folding again whenever another writer got there first.
    async fn write_document(&self, id: &str, events: &[Pending]) -> Result<Vec<Rejected>, Failure> {
        // The side tombstone's key, where erases keep one: read when the document is missing, and
        // checked after an insert.
        let tomb_id = self.side_tombstones().then(|| request_builder::tombstone_id(id));
        let mut learned_erase: Option<FoldEvent> = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                // Jitter spreads writers contending for one document so most succeed next round.
                let cap = 1u64 << attempt.min(7);
                let pause = Duration::from_millis(rand::rng().random_range(0..=cap));
                tokio::time::sleep(pause).await;
            }
            let step = self.attempt(id, tomb_id.as_deref(), events, learned_erase.as_ref()).await;
            if !matches!(step, Ok(Step::Done(_))) {
                // What this worker wrote last may no longer be what is stored: read it next time.
                self.known.forget(id);
            }
            match step {
                Ok(Step::Done(rejected)) => return Ok(rejected),
                Ok(Step::Retry) | Err(OpError::Conflict | OpError::Exists) => {
                    debug!(projection = %self.name, document = id, attempt, "document changed meanwhile; folding again");
                }
                Ok(Step::Reconcile(erase)) => {
                    debug!(projection = %self.name, document = id, erase = erase.version,
                           "an erase landed while the document was created; applying it");
                    learned_erase = Some(erase);
                }
                Err(OpError::Reject(reason)) => {
                    warn!(projection = %self.name, document = id, %reason, "refusing the document's events");
                    return Ok(events.iter().map(|p| Rejected { offset: p.offset, reason: reason.clone() }).collect());
                }
                Err(OpError::Fail(failure)) => return Err(failure),
            }
        }
        Err(Failure::Transient(format!(
            "document {id} in {} kept changing under {MAX_ATTEMPTS} attempts to write it",
            self.keyspace
        )))
    }

    /// One read-fold-write round on a document.
    async fn attempt(
        &self,
        id: &str,
        tomb_id: Option<&str>,
        events: &[Pending],
        learned_erase: Option<&FoldEvent>,
    ) -> Result<Step, OpError> {
        // A document this worker wrote last is folded as written and replaced at that write's CAS,
        // unread: a conflict sends the next attempt the long way ([`super::known`]).
        let remembered = self.known.get(id).and_then(|w| Some(Stored::Ours(w.state()?, w.cas)));
        let stored = match remembered {
            Some(stored) => stored,
            None if learned_erase.is_none() && self.first.insert_first(tomb_id.is_some()) => {
                match self.create(id, tomb_id, events).await? {
                    Some(done) => return Ok(done),
                    None => self.read(id).await?,
                }
            }
            None => {
                let stored = self.read(id).await?;
                self.first.found(!matches!(stored, Stored::Missing));
                stored
            }
        };
        let (base, at) = match stored {
            Stored::Foreign(reason) => return Err(OpError::Reject(reason)),
            Stored::Ours(state, cas) => (Some(state), Base::Main(cas)),
            Stored::Missing => match tomb_id {
                Some(tomb_id) => match self.read(tomb_id).await? {
                    Stored::Foreign(reason) => return Err(OpError::Reject(reason)),
                    Stored::Ours(state, cas) => (Some(state.clone()), Base::Absent(Some((state, cas)))),
                    Stored::Missing => (None, Base::Absent(None)),
                },
                None => (None, Base::Absent(None)),
            },
        };
        let Folded { write, rejected, unchanged } = fold_group(base, events, learned_erase);
        let Some((next, bytes)) = write else {
            self.unchanged.fetch_add(unchanged, Ordering::Relaxed);
            return Ok(Step::Done(rejected));
        };
        match (tomb_id.filter(|_| next.is_tombstone()), at) {
            (Some(tomb_id), Base::Main(cas)) => {
                // Tombstone first: if we stop between the two writes, the entity still exists and
                // the erase is re-delivered; never the other way round (gone, but resurrectable).
                self.put_tombstone(tomb_id, &next, None).await?;
                self.known.forget(id);
                self.remove(id, cas).await?;
            }
            (Some(tomb_id), Base::Absent(tomb)) => {
                self.put_tombstone(tomb_id, &next, Some(tomb)).await?;
                // A writer that found no tombstone may have created the document meanwhile: it
                // must be erased too (that writer, in turn, checks the tombstone after it).
                if !matches!(self.read(id).await?, Stored::Missing) {
                    return Ok(Step::Retry);
                }
            }
            (None, Base::Main(cas)) => {
                let cas = self.replace(id, &bytes, cas).await?;
                self.known.wrote(id, bytes, cas);
            }
            (None, Base::Absent(tomb)) => {
                let cas = self.insert(id, &bytes).await?;
                if let Some(tomb_id) = tomb_id
                    && let Some(erase) = self.erase_since(tomb_id, tomb.map(|(_, cas)| cas)).await?
                {
                    return Ok(Step::Reconcile(erase));
                }
                self.known.wrote(id, bytes, cas);
            }
        }
        self.unchanged.fetch_add(unchanged, Ordering::Relaxed);
        Ok(Step::Done(rejected))
    }

    /// Does an erase keep its tombstone in a side document (`<key>::erased`), so that a missing
    /// document must be looked up there too?
    fn side_tombstones(&self) -> bool {
        !self.config.erase_on.is_empty() && self.config.on_erase == OnErase::Remove
    }

    /// A blind insert ([`super::first`]): the events folded into nothing, inserted. With side
    /// tombstones, only when the entity has none, and checked again after the insert as the long
    /// way does. `None` when the document (or its tombstone) turned out to exist, or the events
    /// alone write nothing or an erased entity: read it, fold again.
    async fn create(&self, id: &str, tomb_id: Option<&str>, events: &[Pending]) -> Result<Option<Step>, OpError> {
        if let Some(tomb_id) = tomb_id
            && !matches!(self.read(tomb_id).await?, Stored::Missing)
        {
            return Ok(None);
        }
        let Folded { write, rejected, unchanged } = fold_group(None, events, None);
        // An erased entity's state goes to its side tombstone: the long way writes it there.
        let Some((_, bytes)) = write.filter(|(next, _)| !(tomb_id.is_some() && next.is_tombstone())) else {
            return Ok(None);
        };
        match self.insert(id, &bytes).await {
            Ok(cas) => {
                self.first.found(false);
                if let Some(tomb_id) = tomb_id
                    && let Some(erase) = self.erase_since(tomb_id, None).await?
                {
                    return Ok(Some(Step::Reconcile(erase)));
                }
                self.known.wrote(id, bytes, cas);
                self.unchanged.fetch_add(unchanged, Ordering::Relaxed);
                Ok(Some(Step::Done(rejected)))
            }
            Err(OpError::Exists) => {
                self.first.found(true);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The erase that landed on the side tombstone since it was read at `read_cas` (`None`: it was
    /// absent), if any: after an insert, the counterpart of an eraser's check that it missed no
    /// document — an eraser that wrote the tombstone after we read it may have missed our insert.
    async fn erase_since(&self, tomb_id: &str, read_cas: Option<u64>) -> Result<Option<FoldEvent>, OpError> {
        if let Stored::Ours(now, cas) = self.read(tomb_id).await?
            && Some(cas) != read_cas
            && let Some(erased_at) = now.meta.erased_at
        {
            return Ok(Some(FoldEvent { version: erased_at, change: Change::Erase, position: now.meta.source }));
        }
        Ok(None)
    }

    // Each SDK call below is boxed: its future is several kilobytes, and inline it would make
    // every document's future that size, copied whole as the batch's stream takes it in (perf:
    // `memmove` of those futures was ~3 % of a drain).

    /// Reads a document and its CAS; a document without valid `_sluice` bookkeeping is foreign.
    async fn read(&self, key: &str) -> Result<Stored, OpError> {
        self.operations.get.increment(1);
        let found = match deadline("get", KV_TIMEOUT, Box::pin(self.collection.get(key, None))).await {
            Ok(found) => found,
            Err(Error::Couchbase { source, .. }) if *source.kind() == ErrorKind::DocumentNotFound => {
                return Ok(Stored::Missing);
            }
            Err(e) => return Err(self.classify(e)),
        };
        let state = found.content_as::<Value>().ok().and_then(State::from_value);
        Ok(match state {
            Some(state) => Stored::Ours(state, found.cas()),
            None => Stored::Foreign(format!(
                "document {key:?} in {} exists but was not written by sluice (no valid `{}` bookkeeping); \
                 refusing to overwrite it",
                self.keyspace,
                fold::META_KEY
            )),
        })
    }

    /// Writes the tombstone for `next` (an erased state) unless the stored one already covers it.
    /// `known` is the tombstone as read this round, when it was.
    async fn put_tombstone(
        &self,
        tomb_id: &str,
        next: &State,
        known: Option<Option<(State, u64)>>,
    ) -> Result<(), OpError> {
        let stored = match known {
            Some(known) => known,
            None => match self.read(tomb_id).await? {
                Stored::Ours(state, cas) => Some((state, cas)),
                Stored::Missing => None,
                Stored::Foreign(reason) => return Err(OpError::Reject(reason)),
            },
        };
        let Some(tombstone) = merge_tombstone(stored.as_ref().map(|(state, _)| state), next) else {
            return Ok(());
        };
        let bytes = encode(&tombstone).map_err(OpError::Reject)?;
        match stored {
            None => self.insert(tomb_id, &bytes).await.map(drop),
            Some((_, cas)) => self.replace(tomb_id, &bytes, cas).await.map(drop),
        }
    }

    fn expiry(&self) -> Option<Duration> {
        self.config.ttl.map(|ttl| ttl.get())
    }

    /// Creates `key`; the new document's CAS.
    async fn insert(&self, key: &str, bytes: &[u8]) -> Result<u64, OpError> {
        let (value, flags) = raw_json::encode(&bytes).map_err(|e| self.classify_sdk("insert", e))?;
        let options = durability::insert_options(self.config.durability, self.expiry());
        self.operations.insert.increment(1);
        deadline("insert", KV_TIMEOUT, Box::pin(self.collection.insert_raw(key, value, flags, options)))
            .await
            .map(|written| written.cas())
            .map_err(|e| self.classify(e))
    }

    /// Replaces `key` if it is still at `cas`; the new CAS.
    async fn replace(&self, key: &str, bytes: &[u8], cas: u64) -> Result<u64, OpError> {
        let (value, flags) = raw_json::encode(&bytes).map_err(|e| self.classify_sdk("replace", e))?;
        // Every write sets the expiry again: a TTL counts from the entity's latest change.
        let options = durability::replace_options(self.config.durability, self.expiry(), cas);
        self.operations.replace.increment(1);
        deadline("replace", KV_TIMEOUT, Box::pin(self.collection.replace_raw(key, value, flags, options)))
            .await
            .map(|written| written.cas())
            .map_err(|e| self.classify(e))
    }

    async fn remove(&self, key: &str, cas: u64) -> Result<(), OpError> {
        let options = durability::remove_options(self.config.durability, Some(cas));
        self.operations.remove.increment(1);
        deadline("remove", KV_TIMEOUT, Box::pin(self.collection.remove(key, options)))
            .await
            .map(drop)
            .map_err(|e| self.classify(e))
    }

    fn classify_sdk(&self, what: &'static str, source: couchbase::error::Error) -> OpError {
        self.classify(Error::Couchbase { what, source })
    }

    /// What an operation's error means for the write loop.
    fn classify(&self, e: Error) -> OpError {
        classify(e, &self.name, &self.keyspace, self.config.durability)
    }
}

impl Sink for CouchbaseProjection {
    /// The events themselves: they are folded into the documents read at write time.
    type Encoded = Batch;

    fn kind(&self) -> &'static str {
        "couchbase"
    }

    fn encode(&self, batch: Batch) -> Batch {
        batch
    }

    fn write_all(&self, batches: &[Batch]) -> impl Future<Output = Result<Vec<Vec<Rejected>>, SinkError>> + Send {
        self.write_each(batches)
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    fn unchanged(&self) -> Option<u64> {
        Some(self.unchanged.load(Ordering::Relaxed))
    }
}

/// What an operation's error means for the write loop of projection `projection` writing to
/// `keyspace` with `durability`.
fn classify(e: Error, projection: &str, keyspace: &str, durability: CouchbaseDurability) -> OpError {
    let Error::Couchbase { source, .. } = &e else {
        return match e {
            Error::Timeout { .. } => OpError::Fail(Failure::Timeout(format!("{e} (on {keyspace})"))),
            other => OpError::Fail(Failure::Transient(other.to_string())),
        };
    };
    match durability::classify(source.kind()) {
        Some(DurabilityError::Unsatisfiable) => {
            let message = durability::unsatisfiable(projection, keyspace, durability, &e.to_string());
            return OpError::Fail(Failure::Config(message));
        }
        Some(DurabilityError::Ambiguous) => {
            return OpError::Fail(Failure::Transient(format!("{e} (on {keyspace}): writing the batch again")));
        }
        Some(DurabilityError::InProgress) => return OpError::Conflict,
        None => {}
    }
    match source.kind() {
        ErrorKind::DocumentExists => OpError::Exists,
        ErrorKind::CasMismatch | ErrorKind::DocumentNotFound => OpError::Conflict,
        ErrorKind::AuthenticationFailure
        | ErrorKind::BucketNotFound
        | ErrorKind::ScopeNotFound
        | ErrorKind::CollectionNotFound => OpError::Fail(Failure::Config(format!("{e} (on {keyspace})"))),
        ErrorKind::ValueTooLarge | ErrorKind::InvalidArgument(_) => OpError::Reject(e.to_string()),
        _ => OpError::Fail(Failure::Transient(format!("{e} (on {keyspace})"))),
    }
}

#[cfg(test)]
mod tests {
    use couchbase::error::Error as SdkError;

    use super::*;

    fn classified(kind: ErrorKind) -> OpError {
        let e = Error::Couchbase { what: "replace", source: SdkError::new(kind) };
        classify(e, "user_state", "default._default.users", CouchbaseDurability::Majority)
    }

    #[test]
    fn a_durability_the_bucket_cannot_give_stops_the_worker_naming_projection_and_level() {
        for kind in [ErrorKind::DurabilityImpossible, ErrorKind::DurabilityLevelNotAvailable] {
            let OpError::Fail(Failure::Config(message)) = classified(kind.clone()) else {
                panic!("{kind:?} must be a configuration error, not retried nor refused per event");
            };
            assert!(message.contains("projection `user_state`"), "{message}");
            assert!(message.contains("durability = \"majority\""), "{message}");
            assert!(message.contains("default._default.users"), "{message}");
        }
        assert!(matches!(classified(ErrorKind::DurabilityAmbiguous), OpError::Fail(Failure::Transient(_))));
        assert!(matches!(classified(ErrorKind::DurabilityWriteInProgress), OpError::Conflict));
        // What was there before stays as it was.
        assert!(matches!(classified(ErrorKind::CasMismatch), OpError::Conflict));
        assert!(matches!(classified(ErrorKind::DocumentExists), OpError::Exists), "a blind insert reads next");
        assert!(matches!(classified(ErrorKind::CollectionNotFound), OpError::Fail(Failure::Config(_))));
        assert!(matches!(classified(ErrorKind::ValueTooLarge), OpError::Reject(_)));
    }
}
