//! The Couchbase [`Sink`]: folds each batch into one latest-state JSON document per entity.
//!
//! Data path: the worker hands over a [`Batch`] of one partition's events; [`request_builder`]
//! turns each into a document key and a fold change (events without a usable key are rejected to
//! the DLQ); events are grouped by key in offset order. Different documents are written
//! concurrently, one document's events in order: read the stored state (`get`, with its CAS),
//! fold the group's events into it with [`fold::apply`], and write the result back with that CAS —
//! `insert` when there was no document, `replace` otherwise, `remove` when the entity is erased.
//! A CAS conflict means another writer got there first: read again and fold again.
//!
//! Erase (GDPR): the main document is removed, and a side document `<key>::erased` keeps only the
//! fold's bookkeeping (version, erase version, source position; no personal data), so a late
//! re-delivery of an older event cannot bring the entity back. It is read only when the main
//! document is missing. Its writes are monotonic (CAS-guarded, erase version only grows) and the
//! two documents are written in an order that keeps every interleaving safe: the tombstone before
//! the removal, and after an insert over a tombstone, a check that no newer erase landed meanwhile.
//!
//! Errors say what the worker does next: timeouts and unexplained server failures are
//! [`SinkError::Transient`]; bad credentials, a missing bucket or collection are
//! [`SinkError::Config`]; per-event problems (no key, a foreign document in the way, a document
//! over 20 MiB) are [`Rejected`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use couchbase::bucket::Bucket;
use couchbase::collection::Collection;
use couchbase::error::ErrorKind;
use couchbase::options::kv_options::{InsertOptions, RemoveOptions, ReplaceOptions};
use couchbase::transcoding::raw_json;
use futures::{StreamExt, TryStreamExt, stream};
use rand::Rng;
use serde_json::{Map, Value};
use sluice_core::fold::{self, Change, FoldEvent, Meta, Outcome, State};
use sluice_core::topology::{CouchbaseSink, ProjectionConfig, SinkConfig};
use tracing::{debug, warn};

use super::Error;
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

/// The largest document Couchbase stores (20 MiB). The local mock does not enforce it, so the
/// sink does: a bigger document is refused per event instead of failing the batch forever.
pub const MAX_DOCUMENT_BYTES: usize = 20 * 1024 * 1024;

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

/// One event of a document's group: where it came from (for rejections) and its fold change.
#[derive(Debug, Clone)]
struct Pending {
    offset: i64,
    fold: FoldEvent,
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
        let tomb_id = request_builder::tombstone_id(id);
        let mut learned_erase: Option<FoldEvent> = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                // Jitter spreads writers contending for one document so most succeed next round.
                let cap = 1u64 << attempt.min(7);
                let pause = Duration::from_millis(rand::rng().random_range(0..=cap));
                tokio::time::sleep(pause).await;
            }
            match self.attempt(id, &tomb_id, events, learned_erase.as_ref()).await {
                Ok(Step::Done(rejected)) => return Ok(rejected),
                Ok(Step::Retry) | Err(OpError::Conflict) => {
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
        tomb_id: &str,
        events: &[Pending],
        learned_erase: Option<&FoldEvent>,
    ) -> Result<Step, OpError> {
        // Without erase_on no tombstone is ever written, so a missing document costs one get.
        let tombstones = !self.config.erase_on.is_empty();
        let (base, at) = match self.read(id).await? {
            Stored::Foreign(reason) => return Err(OpError::Reject(reason)),
            Stored::Ours(state, cas) => (Some(state), Base::Main(cas)),
            Stored::Missing if tombstones => match self.read(tomb_id).await? {
                Stored::Foreign(reason) => return Err(OpError::Reject(reason)),
                Stored::Ours(state, cas) => (Some(state.clone()), Base::Absent(Some((state, cas)))),
                Stored::Missing => (None, Base::Absent(None)),
            },
            Stored::Missing => (None, Base::Absent(None)),
        };
        let unchanged = count_unchanged(base.clone(), events);
        let (next, rejected) = fold_group(base, events, learned_erase);
        let Some((next, bytes)) = next else {
            self.unchanged.fetch_add(unchanged, Ordering::Relaxed);
            return Ok(Step::Done(rejected));
        };
        match (next.is_tombstone(), at) {
            (true, Base::Main(cas)) => {
                // Tombstone first: if we stop between the two writes, the entity still exists and
                // the erase is re-delivered; never the other way round (gone, but resurrectable).
                self.put_tombstone(tomb_id, &next, None).await?;
                self.remove(id, cas).await?;
            }
            (true, Base::Absent(tomb)) => {
                self.put_tombstone(tomb_id, &next, Some(tomb)).await?;
                // A writer that found no tombstone may have created the document meanwhile: it
                // must be erased too (that writer, in turn, checks the tombstone after it).
                if !matches!(self.read(id).await?, Stored::Missing) {
                    return Ok(Step::Retry);
                }
            }
            (false, Base::Main(cas)) => self.replace(id, &bytes, cas).await?,
            (false, Base::Absent(tomb)) => {
                self.insert(id, &bytes).await?;
                if tombstones {
                    // The counterpart of the check above: an eraser that wrote the tombstone after
                    // we read it may have missed our insert.
                    let read_cas = tomb.map(|(_, cas)| cas);
                    if let Stored::Ours(now, cas) = self.read(tomb_id).await?
                        && Some(cas) != read_cas
                        && let Some(erased_at) = now.meta.erased_at
                    {
                        let erase = FoldEvent { version: erased_at, change: Change::Erase, position: now.meta.source };
                        return Ok(Step::Reconcile(erase));
                    }
                }
            }
        }
        self.unchanged.fetch_add(unchanged, Ordering::Relaxed);
        Ok(Step::Done(rejected))
    }

    /// Reads a document and its CAS; a document without valid `_sluice` bookkeeping is foreign.
    async fn read(&self, key: &str) -> Result<Stored, OpError> {
        let found = match deadline("get", KV_TIMEOUT, self.collection.get(key, None)).await {
            Ok(found) => found,
            Err(Error::Couchbase { source, .. }) if *source.kind() == ErrorKind::DocumentNotFound => {
                return Ok(Stored::Missing);
            }
            Err(e) => return Err(self.classify(e)),
        };
        let state = found.content_as::<Value>().ok().and_then(|doc| State::from_document(&doc));
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
            None => self.insert(tomb_id, &bytes).await,
            Some((_, cas)) => self.replace(tomb_id, &bytes, cas).await,
        }
    }

    fn expiry(&self) -> Option<Duration> {
        self.config.ttl.map(|ttl| ttl.get())
    }

    async fn insert(&self, key: &str, bytes: &[u8]) -> Result<(), OpError> {
        let (value, flags) = raw_json::encode(&bytes).map_err(|e| self.classify_sdk("insert", e))?;
        let mut options = InsertOptions::new();
        if let Some(expiry) = self.expiry() {
            options = options.expiry(expiry);
        }
        deadline("insert", KV_TIMEOUT, self.collection.insert_raw(key, value, flags, options))
            .await
            .map(drop)
            .map_err(|e| self.classify(e))
    }

    async fn replace(&self, key: &str, bytes: &[u8], cas: u64) -> Result<(), OpError> {
        let (value, flags) = raw_json::encode(&bytes).map_err(|e| self.classify_sdk("replace", e))?;
        // Every write sets the expiry again: a TTL counts from the entity's latest change.
        let mut options = ReplaceOptions::new().cas(cas);
        if let Some(expiry) = self.expiry() {
            options = options.expiry(expiry);
        }
        deadline("replace", KV_TIMEOUT, self.collection.replace_raw(key, value, flags, options))
            .await
            .map(drop)
            .map_err(|e| self.classify(e))
    }

    async fn remove(&self, key: &str, cas: u64) -> Result<(), OpError> {
        deadline("remove", KV_TIMEOUT, self.collection.remove(key, RemoveOptions::new().cas(cas)))
            .await
            .map(drop)
            .map_err(|e| self.classify(e))
    }

    fn classify_sdk(&self, what: &'static str, source: couchbase::error::Error) -> OpError {
        self.classify(Error::Couchbase { what, source })
    }

    /// What an operation's error means for the write loop.
    fn classify(&self, e: Error) -> OpError {
        let Error::Couchbase { source, .. } = &e else {
            return match e {
                Error::Timeout { .. } => OpError::Fail(Failure::Timeout(format!("{e} (on {})", self.keyspace))),
                other => OpError::Fail(Failure::Transient(other.to_string())),
            };
        };
        match source.kind() {
            ErrorKind::CasMismatch | ErrorKind::DocumentExists | ErrorKind::DocumentNotFound => OpError::Conflict,
            ErrorKind::AuthenticationFailure
            | ErrorKind::BucketNotFound
            | ErrorKind::ScopeNotFound
            | ErrorKind::CollectionNotFound => OpError::Fail(Failure::Config(format!("{e} (on {})", self.keyspace))),
            ErrorKind::ValueTooLarge | ErrorKind::InvalidArgument(_) => OpError::Reject(e.to_string()),
            _ => OpError::Fail(Failure::Transient(format!("{e} (on {})", self.keyspace))),
        }
    }
}

impl Sink for CouchbaseProjection {
    fn kind(&self) -> &'static str {
        "couchbase"
    }

    fn write(&self, batch: &Batch) -> impl Future<Output = Result<Vec<Rejected>, SinkError>> + Send {
        self.write_batch(batch)
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    fn unchanged(&self) -> Option<u64> {
        Some(self.unchanged.load(Ordering::Relaxed))
    }
}

/// How many of `events`, folded in order into `base`, change nothing.
fn count_unchanged(base: Option<State>, events: &[Pending]) -> u64 {
    let mut current = base;
    let mut unchanged = 0;
    for p in events {
        match fold::apply(current.as_ref(), &p.fold) {
            Outcome::Write(next) => current = Some(next),
            Outcome::Unchanged => unchanged += 1,
        }
    }
    unchanged
}

/// Folds a document's events into `base`, then the erase learned from a concurrent writer if any.
/// Returns the state to write with its encoding (`None` when nothing changed) and the events
/// refused because they would make the document too large.
fn fold_group(
    base: Option<State>,
    events: &[Pending],
    learned_erase: Option<&FoldEvent>,
) -> (Option<(State, Vec<u8>)>, Vec<Rejected>) {
    let mut current = base;
    let mut encoded: Option<Vec<u8>> = None;
    let mut rejected = Vec::new();
    let learned = learned_erase.map(|fold| (None, fold));
    for (offset, event) in events.iter().map(|p| (Some(p.offset), &p.fold)).chain(learned) {
        let Outcome::Write(next) = fold::apply(current.as_ref(), event) else { continue };
        match encode(&next) {
            Ok(bytes) if bytes.len() <= MAX_DOCUMENT_BYTES => {
                current = Some(next);
                encoded = Some(bytes);
            }
            Ok(bytes) => {
                if let Some(offset) = offset {
                    let reason = format!(
                        "the document would be {} bytes, over Couchbase's limit of {MAX_DOCUMENT_BYTES} bytes",
                        bytes.len()
                    );
                    rejected.push(Rejected { offset, reason });
                }
            }
            Err(reason) => {
                if let Some(offset) = offset {
                    rejected.push(Rejected { offset, reason });
                }
            }
        }
    }
    (current.zip(encoded), rejected)
}

/// The document bytes of a state.
fn encode(state: &State) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&state.to_document()).map_err(|e| format!("the document cannot be encoded as JSON: {e}"))
}

/// The tombstone to store after erasing to `next`: only bookkeeping, the newest version and
/// erase of the stored tombstone and `next`. `None` when the stored one already says as much
/// (tombstones only move forward, whatever order concurrent erasers write them in).
fn merge_tombstone(stored: Option<&State>, next: &State) -> Option<State> {
    let (version, source) = match stored {
        Some(s) if s.meta.version >= next.meta.version => (s.meta.version, s.meta.source.clone()),
        _ => (next.meta.version, next.meta.source.clone()),
    };
    let erased_at = stored.and_then(|s| s.meta.erased_at).max(next.meta.erased_at);
    let tombstone = State { fields: Map::new(), meta: Meta { version, fields: Default::default(), erased_at, source } };
    (stored != Some(&tombstone)).then_some(tombstone)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_core::fold::Position;

    use super::*;

    fn pos(offset: i64) -> Position {
        Position { topic: "users".into(), partition: 0, offset }
    }

    fn pending(version: i64, change: Change) -> Pending {
        Pending { offset: version * 10, fold: FoldEvent { version, change, position: pos(version * 10) } }
    }

    fn set(version: i64, fields: Value) -> Pending {
        let Value::Object(map) = fields else { panic!("object") };
        pending(version, Change::Set(map))
    }

    #[test]
    fn a_group_folds_like_the_core_fold() {
        let events = [set(1, json!({"a": 1, "b": 1})), set(3, json!({"a": 3})), set(2, json!({"b": 2}))];
        let (state, rejected) = fold_group(None, &events, None);
        let (state, bytes) = state.expect("changed");
        assert!(rejected.is_empty());
        assert_eq!(Some(state.clone()), fold::fold(events.iter().map(|p| &p.fold)));
        let doc: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(State::from_document(&doc), Some(state));
        // Folding the same events again changes nothing: no write.
        let again = fold::fold(events.iter().map(|p| &p.fold));
        assert_eq!(fold_group(again, &events, None).0, None);
    }

    #[test]
    fn an_event_making_the_document_too_large_is_refused_alone() {
        let huge = "x".repeat(MAX_DOCUMENT_BYTES);
        let events = [set(1, json!({"a": 1})), set(2, json!({"blob": huge})), set(3, json!({"c": 3}))];
        let (state, rejected) = fold_group(None, &events, None);
        let (state, _) = state.expect("changed");
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].offset, 20);
        assert!(rejected[0].reason.contains("over Couchbase's limit"), "{}", rejected[0].reason);
        assert_eq!(Value::Object(state.fields), json!({"a": 1, "c": 3}));
    }

    #[test]
    fn a_learned_erase_is_folded_in_without_a_rejection() {
        let events = [set(1, json!({"a": 1})), set(5, json!({"b": 5}))];
        let erase = FoldEvent { version: 3, change: Change::Erase, position: pos(30) };
        let (state, rejected) = fold_group(None, &events, Some(&erase));
        let (state, _) = state.expect("changed");
        assert!(rejected.is_empty());
        assert_eq!(Value::Object(state.fields), json!({"b": 5}));
        assert_eq!(state.meta.erased_at, Some(3));
    }

    #[test]
    fn tombstones_hold_no_personal_data_and_only_move_forward() {
        let erased = |version: i64, erased_at: i64| State {
            fields: Map::new(),
            meta: Meta { version, fields: Default::default(), erased_at: Some(erased_at), source: pos(version) },
        };
        let first = merge_tombstone(None, &erased(4, 4)).expect("new tombstone");
        assert_eq!(first, erased(4, 4));
        assert_eq!(
            first.to_document(),
            json!({"_sluice": {"version": 4, "fields": {}, "erased_at": 4,
            "source": {"topic": "users", "partition": 0, "offset": 4}}})
        );
        assert_eq!(merge_tombstone(Some(&erased(9, 9)), &erased(4, 4)), None, "an older erase changes nothing");
        assert_eq!(merge_tombstone(Some(&erased(4, 4)), &erased(4, 4)), None, "the same erase changes nothing");
        assert_eq!(merge_tombstone(Some(&erased(4, 4)), &erased(9, 9)), Some(erased(9, 9)));
        // A newer version whose erase is older (an event after the erase that set nothing).
        let mixed = merge_tombstone(Some(&erased(9, 9)), &erased(12, 4)).expect("newer version");
        assert_eq!((mixed.meta.version, mixed.meta.erased_at), (12, Some(9)));
    }
}
