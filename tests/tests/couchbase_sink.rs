//! The Couchbase sink against the real gocaves server: events built in the test (no Kafka) are
//! written through `CouchbaseProjection` into a fresh collection made by `couchbase::setup`, and
//! the documents read back are compared with a model of the projection computed here.
//!
//! The projections are the repository's own `user_state` and `session_state` from `topology.toml`,
//! so the field mapping under test is the one that ships.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use couchbase::collection::Collection;
use couchbase::options::kv_options::GetOptions;
use futures::{StreamExt, stream};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use sluice_consumers::sinks::couchbase::request_builder::tombstone_id;
use sluice_consumers::sinks::couchbase::service::deadline;
use sluice_consumers::sinks::couchbase::{Couchbase, CouchbaseProjection, Error, Presence, setup};
use sluice_consumers::worker::metrics::names;
use sluice_consumers::{Batch, Batching, Rejected, Sink, SinkError};
use sluice_core::calendar::{Unit, format_date_time};
use sluice_core::event::{Envelope, Event, Position};
use sluice_core::topology::{CouchbaseSink, HumanDuration, OnErase, SinkConfig, Topology};
use sluice_tests::{connections, unique, within};

const OP: Duration = Duration::from_secs(10);
/// Every test collection lives in this scope (created by the first test that needs it).
const SCOPE: &str = "sluice_tests";
const T0: i64 = 1_750_000_000_000;

async fn connect() -> Couchbase {
    within("connecting to Couchbase", 60, Couchbase::connect(&connections().couchbase))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The Couchbase block of a projection of the repository's topology.
fn shipped(projection: &str) -> (CouchbaseSink, Batching) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topology.toml");
    let topology = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let p = topology.projection(projection).unwrap_or_else(|| panic!("no projection {projection}"));
    let SinkConfig::Couchbase { couchbase } = &p.sink else { panic!("{projection} is not a Couchbase projection") };
    let batching = Batching::of(p);
    (couchbase.clone(), batching)
}

/// `config` moved to a fresh collection (made by `setup`), and the sink writing there.
async fn fresh(cb: &Couchbase, name: &str, mut config: CouchbaseSink) -> (CouchbaseProjection, Collection) {
    config.scope = SCOPE.into();
    config.collection = unique("c");
    let lines = within("couchbase setup", 60, setup(cb, &[(name, &config)])).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].collection_presence, Presence::Created, "{}", lines[0]);
    let sink = open(cb, name, &config).await;
    let collection = cb.collection(Some(SCOPE), Some(&config.collection));
    (sink, collection)
}

/// A sink of projection `name` writing as `config` says.
async fn open(cb: &Couchbase, name: &str, config: &CouchbaseSink) -> CouchbaseProjection {
    let batching = Batching { max_records: 500, linger: Duration::from_millis(50), max_in_flight: 2 };
    within("opening the sink", 30, CouchbaseProjection::new(cb, name, config, batching))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Another sink (another worker: nothing remembered) on the collection `sink` writes to.
async fn another(
    cb: &Couchbase,
    name: &str,
    config: &CouchbaseSink,
    sink: &CouchbaseProjection,
) -> CouchbaseProjection {
    let c = sink.collection();
    let config = CouchbaseSink { scope: c.scope_name().into(), collection: c.name().into(), ..config.clone() };
    open(cb, name, &config).await
}

/// `user_state` as shipped, its erases leaving what `on_erase` says.
fn users(on_erase: OnErase) -> CouchbaseSink {
    CouchbaseSink { on_erase, ..shipped("user_state").0 }
}

fn event(topic: &str, position: (i32, i64), event_type: &str, aggregate: &str, version: i64, payload: Value) -> Event {
    let Value::Object(payload) = payload else { panic!("payload must be an object") };
    Event {
        envelope: Envelope {
            event_id: format!("{aggregate}-{version}"),
            event_type: event_type.into(),
            aggregate_id: aggregate.into(),
            aggregate_version: version,
            occurred_at: T0 + version * 1000,
            producer: "tests".into(),
            correlation_id: None,
            causation_id: None,
            traceparent: None,
            tracestate: None,
        },
        payload,
        position: Position { topic: topic.into(), partition: position.0, offset: position.1 },
        schema_id: 1,
    }
}

fn batch(events: Vec<Event>) -> Batch {
    let first = events.iter().map(|e| e.position.offset).min().unwrap_or(0);
    let last = events.iter().map(|e| e.position.offset).max().unwrap_or(0);
    let (topic, partition) =
        events.first().map_or(("t".into(), 0), |e| (e.position.topic.clone(), e.position.partition));
    Batch { topic, partition, events, first_offset: first, last_offset: last }
}

/// Writes like the worker: a transient error means "write the same batch again".
async fn write(sink: &CouchbaseProjection, batch: &Batch) -> (Vec<Rejected>, u32) {
    let mut transients = 0;
    loop {
        match within("a sink write", 120, sink.write(batch)).await {
            Ok(rejected) => return (rejected, transients),
            Err(SinkError::Transient(reason)) if transients < 5 => {
                eprintln!("transient ({reason}); writing the batch again");
                transients += 1;
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
}

/// A document and its CAS, `None` when absent.
async fn read(collection: &Collection, key: &str) -> Option<(Value, u64)> {
    match deadline("get", OP, collection.get(key, None)).await {
        Ok(found) => Some((found.content_as().expect("a JSON document"), found.cas())),
        Err(Error::Couchbase { source, .. }) if *source.kind() == couchbase::error::ErrorKind::DocumentNotFound => None,
        Err(e) => panic!("{e}"),
    }
}

/// Every key's document (main and tombstone) and CAS.
async fn snapshot(collection: &Collection, ids: &[String]) -> BTreeMap<String, Option<(Value, u64)>> {
    let keys: Vec<String> = ids.iter().flat_map(|id| [id.clone(), tombstone_id(id)]).collect();
    stream::iter(keys)
        .map(|key| async move {
            let doc = read(collection, &key).await;
            (key, doc)
        })
        .buffer_unordered(64)
        .collect()
        .await
}

// ---------------------------------------------------------------------------------------------
// User histories and their model.

/// A generated user event (before it gets a Kafka position).
#[derive(Debug, Clone)]
struct UserEvent {
    aggregate: String,
    version: i64,
    event_type: &'static str,
    payload: Value,
}

/// Random, valid histories of `users` users: registration, profile updates, email changes,
/// erasures and re-registrations after an erasure.
fn user_histories(rng: &mut StdRng, prefix: &str, users: usize) -> Vec<Vec<UserEvent>> {
    let pick = |rng: &mut StdRng, options: &[&str]| -> Value {
        if rng.random_bool(0.3) { Value::Null } else { json!(options[rng.random_range(0..options.len())]) }
    };
    (0..users)
        .map(|u| {
            let aggregate = format!("{prefix}-{u}");
            let mut history = Vec::new();
            let mut email = format!("{aggregate}.1@example.com");
            let mut registered = false;
            let length = rng.random_range(1..=10);
            for version in 1..=length {
                let roll = rng.random_range(0..100);
                let (event_type, payload) = if !registered && roll < 85 {
                    registered = true;
                    email = format!("{aggregate}.{version}@example.com");
                    let referrer = pick(rng, &["ads", "friend"]);
                    (
                        "user.registered",
                        json!({"email": email, "display_name": format!("User {u}"),
                                               "country": "NL", "referrer": referrer}),
                    )
                } else if roll < 12 {
                    registered = false;
                    ("user.deleted", json!({"reason": "GDPR_ERASURE"}))
                } else if roll < 40 {
                    let new_email = format!("{aggregate}.{version}@example.org");
                    let old = std::mem::replace(&mut email, new_email.clone());
                    ("user.email_changed", json!({"old_email": old, "new_email": new_email}))
                } else {
                    (
                        "user.profile_updated",
                        json!({
                            "display_name": pick(rng, &["Ada", "Grace", "Edsger"]),
                            "country": pick(rng, &["NL", "DE", "FR"]),
                            "locale": pick(rng, &["nl-NL", "en-GB"]),
                            "avatar_url": pick(rng, &["https://img/1", "https://img/2"]),
                        }),
                    )
                };
                history.push(UserEvent { aggregate: aggregate.clone(), version, event_type, payload });
            }
            history
        })
        .collect()
}

/// The partitions' event streams: each user on one partition, users interleaved at random,
/// one user's events in version order.
fn interleave(rng: &mut StdRng, histories: &[Vec<UserEvent>], partitions: i32) -> Vec<Vec<Event>> {
    let mut streams: Vec<Vec<Event>> = vec![Vec::new(); partitions as usize];
    for p in 0..partitions {
        let mut queues: Vec<VecDeque<&UserEvent>> = histories
            .iter()
            .enumerate()
            .filter(|(u, _)| *u as i32 % partitions == p)
            .map(|(_, h)| h.iter().collect())
            .collect();
        let stream = &mut streams[p as usize];
        while !queues.is_empty() {
            let q = rng.random_range(0..queues.len());
            if let Some(e) = queues[q].pop_front() {
                let offset = stream.len() as i64;
                stream.push(event("users", (p, offset), e.event_type, &e.aggregate, e.version, e.payload.clone()));
            }
            if queues[q].is_empty() {
                queues.swap_remove(q);
            }
        }
    }
    streams
}

/// The expected main document and tombstone of one user, folding its events in version order by
/// hand, with the mapping of `topology.toml`'s `user_state` spelled out.
fn user_model(events: &[&Event]) -> (Option<Value>, Option<Value>) {
    let mut fields = Map::new();
    let mut set_at: BTreeMap<String, i64> = BTreeMap::new();
    let mut erased_at: Option<i64> = None;
    let mut last: Option<&Event> = None;
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.envelope.aggregate_version);
    for e in sorted {
        let v = e.envelope.aggregate_version;
        let p = &e.payload;
        let mapped: Vec<(&str, Value)> = match e.envelope.event_type.as_str() {
            "user.deleted" => {
                fields.clear();
                set_at.clear();
                erased_at = Some(v);
                Vec::new()
            }
            "user.registered" => ["email", "display_name", "country", "referrer"].map(|f| (f, p[f].clone())).to_vec(),
            "user.email_changed" => vec![("email", p["new_email"].clone())],
            "user.profile_updated" => {
                ["display_name", "country", "locale", "avatar_url"].map(|f| (f, p[f].clone())).to_vec()
            }
            other => panic!("unexpected {other}"),
        };
        // `occurred_at` reads in a document as every timestamp does: RFC 3339 text.
        let stamp = (e.envelope.event_type != "user.deleted")
            .then(|| ("updated_at", json!(format_date_time(e.envelope.occurred_at, Unit::Millis, true))));
        for (name, value) in mapped.into_iter().chain(stamp) {
            if !value.is_null() {
                fields.insert(name.into(), value);
                set_at.insert(name.into(), v);
            }
        }
        last = Some(e);
    }
    let Some(last) = last else { return (None, None) };
    let mut meta = json!({
        "version": last.envelope.aggregate_version,
        "fields": set_at,
        "source": {"topic": last.position.topic, "partition": last.position.partition, "offset": last.position.offset},
    });
    if let Some(at) = erased_at {
        meta["erased_at"] = json!(at);
    }
    if fields.is_empty() && erased_at.is_some() {
        (None, Some(json!({ "_sluice": meta })))
    } else {
        fields.insert("_sluice".into(), meta);
        (Some(Value::Object(fields)), None)
    }
}

/// Writes each partition's stream in batches of `batch_size`, partitions concurrently (as the
/// worker does); returns the number of events and the rejections.
async fn write_in_order(
    sink: &CouchbaseProjection,
    streams: &[Vec<Event>],
    batch_size: usize,
) -> (usize, Vec<Rejected>) {
    let per_partition = futures::future::join_all(streams.iter().map(|events| async move {
        let mut rejected = Vec::new();
        for chunk in events.chunks(batch_size) {
            rejected.extend(write(sink, &batch(chunk.to_vec())).await.0);
        }
        rejected
    }))
    .await;
    (streams.iter().map(Vec::len).sum(), per_partition.into_iter().flatten().collect())
}

/// Asserts every user's document and tombstone equal the model, the tombstone where `on_erase`
/// keeps it.
async fn assert_matches_model(collection: &Collection, streams: &[Vec<Event>], on_erase: OnErase) -> usize {
    let mut by_user: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in streams.iter().flatten() {
        by_user.entry(&e.envelope.aggregate_id).or_default().push(e);
    }
    let ids: Vec<String> = by_user.keys().map(|u| format!("user::{u}")).collect();
    let stored = snapshot(collection, &ids).await;
    let mut erased = 0;
    for (user, events) in &by_user {
        let id = format!("user::{user}");
        let (main, tombstone) = user_model(events);
        erased += usize::from(tombstone.is_some());
        let got_main = stored[&id].as_ref().map(|(doc, _)| doc.clone());
        let got_side = stored[&tombstone_id(&id)].as_ref().map(|(doc, _)| doc.clone());
        match on_erase {
            OnErase::Remove => {
                assert_eq!(got_main, main, "document {id}");
                if tombstone.is_some() {
                    assert_eq!(got_side, tombstone, "tombstone of {id}");
                }
            }
            OnErase::Tombstone => {
                assert_eq!(got_main, main.or(tombstone), "document {id}: its fields, or its tombstone in its place");
                assert_eq!(got_side, None, "no side tombstone of {id}");
            }
        }
    }
    erased
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_in_order_batches_equal_the_model() {
    in_order_batches_equal_the_model(OnErase::Remove).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_in_order_batches_equal_the_model_with_tombstones_in_place() {
    in_order_batches_equal_the_model(OnErase::Tombstone).await;
}

async fn in_order_batches_equal_the_model(on_erase: OnErase) {
    let cb = connect().await;
    let (sink, collection) = fresh(&cb, "user_state", users(on_erase)).await;
    let seed = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let histories = user_histories(&mut rng, &unique("u"), 400);
    let streams = interleave(&mut rng, &histories, 6);

    let started = Instant::now();
    let (events, rejected) = write_in_order(&sink, &streams, 97).await;
    let took = started.elapsed();
    assert!(rejected.is_empty(), "{rejected:?}");
    let erased = assert_matches_model(&collection, &streams, on_erase).await;
    eprintln!(
        "in order ({on_erase}): {events} events of {} users ({erased} erased at the end) in {took:?} ({:.0} events/s)",
        histories.len(),
        events as f64 / took.as_secs_f64()
    );
    assert!(erased > 0, "the histories should end with some erased users");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn b_shuffled_duplicated_redelivery_gives_identical_documents() {
    shuffled_duplicated_redelivery_gives_identical_documents(OnErase::Remove).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn b_shuffled_duplicated_redelivery_gives_identical_documents_with_tombstones_in_place() {
    shuffled_duplicated_redelivery_gives_identical_documents(OnErase::Tombstone).await;
}

async fn shuffled_duplicated_redelivery_gives_identical_documents(on_erase: OnErase) {
    let cb = connect().await;
    let config = users(on_erase);
    let (in_order, ordered_collection) = fresh(&cb, "user_state", config.clone()).await;
    let (shuffled, shuffled_collection) = fresh(&cb, "user_state", config).await;
    let seed = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let histories = user_histories(&mut rng, &unique("u"), 300);
    let streams = interleave(&mut rng, &histories, 6);
    write_in_order(&in_order, &streams, 100).await;

    // Every event once more, a third of them twice more, all shuffled, in batches of any size,
    // several batches at once (so one document is also written by concurrent batches).
    let mut all: Vec<Event> = streams.iter().flatten().cloned().collect();
    let extra: Vec<Event> = all.iter().filter(|_| rng.random_bool(0.33)).cloned().collect();
    all.extend(extra);
    all.shuffle(&mut rng);
    let mut batches = Vec::new();
    while !all.is_empty() {
        let n = rng.random_range(1..=150).min(all.len());
        batches.push(batch(all.drain(..n).collect()));
    }
    let delivered: usize = batches.iter().map(|b| b.events.len()).sum();

    let ids: Vec<String> = histories.iter().map(|h| format!("user::{}", h[0].aggregate)).collect();
    let before = snapshot(&ordered_collection, &ids).await;
    // Another worker writing the same collection remembers none of it: every document is read (or
    // inserted blind and found to exist) before its events fold into nothing new.
    let other_worker = another(&cb, "user_state", &users(on_erase), &in_order).await;
    for (sink, label) in [
        (&in_order, "again into the same collection"),
        (&other_worker, "again into the same collection by another worker"),
        (&shuffled, "into a fresh collection"),
    ] {
        let started = Instant::now();
        let rejected: Vec<Rejected> = stream::iter(&batches)
            .map(|b| async move { write(sink, b).await.0 })
            .buffer_unordered(4)
            .flat_map(stream::iter)
            .collect()
            .await;
        assert!(rejected.is_empty(), "{rejected:?}");
        eprintln!(
            "shuffled + duplicated, {label}: {delivered} events in {} batches in {:?}",
            batches.len(),
            started.elapsed()
        );
    }

    // The re-delivery into the same collection wrote nothing: same documents, same CAS.
    let after = snapshot(&ordered_collection, &ids).await;
    assert_eq!(after, before, "a re-delivery must not change (or even rewrite) any document");
    // The shuffled fold equals the in-order one for every document; tombstones of the users
    // erased at the end are the same too (other tombstones depend on the order and are
    // superseded by their main document).
    let fresh_docs = snapshot(&shuffled_collection, &ids).await;
    let mut compared = 0;
    for id in &ids {
        let doc = |s: &BTreeMap<String, Option<(Value, u64)>>, k: &str| s[k].as_ref().map(|(d, _)| d.clone());
        assert_eq!(doc(&fresh_docs, id), doc(&before, id), "document {id}");
        if on_erase == OnErase::Remove && doc(&before, id).is_none() {
            let t = tombstone_id(id);
            assert_eq!(doc(&fresh_docs, &t), doc(&before, &t), "tombstone {t}");
            assert!(doc(&before, &t).is_some(), "an erased user has a tombstone");
        }
        compared += 1;
    }
    assert_eq!(compared, 300);
    assert_matches_model(&shuffled_collection, &streams, on_erase).await;
}

#[tokio::test]
async fn c_erase_removes_the_document_and_nothing_older_resurrects_it() {
    let cb = connect().await;
    let (sink, collection) = fresh(&cb, "user_state", shipped("user_state").0).await;
    let user = unique("u");
    let id = format!("user::{user}");
    let e = |offset: i64, event_type: &str, version: i64, payload: Value| {
        event("users", (2, offset), event_type, &user, version, payload)
    };
    let registered = e(
        10,
        "user.registered",
        1,
        json!({"email": "ada@example.com", "display_name": "Ada",
                                                         "country": "NL", "referrer": "ads"}),
    );
    let updated = e(
        11,
        "user.profile_updated",
        2,
        json!({"display_name": "Ada L.", "country": null,
                                                          "locale": "nl-NL", "avatar_url": null}),
    );
    let deleted = e(12, "user.deleted", 3, json!({"reason": "GDPR_ERASURE"}));

    write(&sink, &batch(vec![registered.clone(), updated.clone()])).await;
    let (doc, _) = read(&collection, &id).await.expect("written");
    assert_eq!(doc["email"], "ada@example.com");
    assert_eq!(doc["display_name"], "Ada L.");
    assert_eq!(doc["locale"], "nl-NL");
    assert_eq!(doc["_sluice"]["version"], 2);

    write(&sink, &batch(vec![deleted.clone()])).await;
    assert_eq!(read(&collection, &id).await, None, "the erase removes the document");
    let (tombstone, tomb_cas) = read(&collection, &tombstone_id(&id)).await.expect("a tombstone");
    assert_eq!(
        tombstone,
        json!({"_sluice": {"version": 3, "fields": {}, "erased_at": 3,
                           "source": {"topic": "users", "partition": 2, "offset": 12}}}),
        "the tombstone holds only bookkeeping"
    );
    assert!(!tombstone.to_string().contains("ada"), "no personal data in the tombstone");

    // Re-deliveries of older events (alone, together, with the erase again) change nothing.
    for again in
        [vec![updated.clone()], vec![registered.clone(), updated.clone()], vec![registered.clone(), deleted.clone()]]
    {
        let (rejected, _) = write(&sink, &batch(again)).await;
        assert!(rejected.is_empty());
        assert_eq!(read(&collection, &id).await, None, "an older event must not resurrect the user");
        assert_eq!(
            read(&collection, &tombstone_id(&id)).await.map(|(_, cas)| cas),
            Some(tomb_cas),
            "tombstone untouched"
        );
    }

    // A newer event (a new registration) creates the user again, with nothing from before.
    let again = e(
        13,
        "user.registered",
        4,
        json!({"email": "new@example.com", "display_name": "New",
                                                   "country": "DE", "referrer": null}),
    );
    write(&sink, &batch(vec![again])).await;
    let (doc, _) = read(&collection, &id).await.expect("re-registered");
    assert_eq!(doc["email"], "new@example.com");
    assert_eq!(doc.get("locale"), None, "nothing survives the erase");
    assert_eq!(doc["_sluice"]["erased_at"], 3);
    assert_eq!(doc["_sluice"]["version"], 4);

    // An erase that arrives before anything else of its user still leaves a tombstone that the
    // older events bounce off.
    let other = unique("u");
    let other_id = format!("user::{other}");
    let early_erase = event("users", (0, 1), "user.deleted", &other, 5, json!({"reason": "FRAUD"}));
    let late_register = event(
        "users",
        (0, 2),
        "user.registered",
        &other,
        1,
        json!({"email": "x@example.com", "display_name": "X", "country": "NL", "referrer": null}),
    );
    write(&sink, &batch(vec![early_erase, late_register])).await;
    assert_eq!(read(&collection, &other_id).await, None);
    let (tombstone, _) = read(&collection, &tombstone_id(&other_id)).await.expect("tombstone");
    assert_eq!(tombstone["_sluice"]["erased_at"], 5);
}

/// `on_erase = "tombstone"`: the erase replaces the document with its tombstone, and neither this
/// worker nor another (nothing remembered, inserting blind) brings older state back.
#[tokio::test]
async fn c_an_erase_in_place_leaves_the_tombstone_under_the_key_and_nothing_older_resurrects_it() {
    let cb = connect().await;
    let config = users(OnErase::Tombstone);
    let (sink, collection) = fresh(&cb, "user_state", config.clone()).await;
    let user = unique("u");
    let id = format!("user::{user}");
    let e = |offset: i64, event_type: &str, version: i64, payload: Value| {
        event("users", (2, offset), event_type, &user, version, payload)
    };
    let registered = e(
        10,
        "user.registered",
        1,
        json!({"email": "ada@example.com", "display_name": "Ada", "country": "NL", "referrer": "ads"}),
    );
    let deleted = e(12, "user.deleted", 3, json!({"reason": "GDPR_ERASURE"}));
    write(&sink, &batch(vec![registered.clone()])).await;
    write(&sink, &batch(vec![deleted.clone()])).await;
    let (tombstone, tomb_cas) = read(&collection, &id).await.expect("the tombstone, under the document's key");
    assert_eq!(
        tombstone,
        json!({"_sluice": {"version": 3, "fields": {}, "erased_at": 3,
                           "source": {"topic": "users", "partition": 2, "offset": 12}}}),
        "the tombstone holds only bookkeeping"
    );
    assert_eq!(read(&collection, &tombstone_id(&id)).await, None, "no side document");

    let other_worker = another(&cb, "user_state", &config, &sink).await;
    for writer in [&sink, &other_worker] {
        for again in [vec![registered.clone()], vec![registered.clone(), deleted.clone()]] {
            let (rejected, _) = write(writer, &batch(again)).await;
            assert!(rejected.is_empty(), "{rejected:?}");
            assert_eq!(read(&collection, &id).await, Some((tombstone.clone(), tomb_cas)), "untouched");
        }
    }

    // A newer registration, by the worker that did not write the tombstone, brings the user back
    // with nothing from before.
    let again = e(
        13,
        "user.registered",
        4,
        json!({"email": "new@example.com", "display_name": "New", "country": "DE", "referrer": null}),
    );
    write(&other_worker, &batch(vec![again])).await;
    let (doc, _) = read(&collection, &id).await.expect("re-registered");
    assert_eq!(doc["email"], "new@example.com");
    assert_eq!(doc.get("referrer"), None, "nothing survives the erase");
    assert_eq!((doc["_sluice"]["erased_at"].clone(), doc["_sluice"]["version"].clone()), (json!(3), json!(4)));

    // An erase before anything else of its user leaves its tombstone; the older events bounce off.
    let other = unique("u");
    let early_erase = event("users", (0, 1), "user.deleted", &other, 5, json!({"reason": "FRAUD"}));
    let late_register = event(
        "users",
        (0, 2),
        "user.registered",
        &other,
        1,
        json!({"email": "x@example.com", "display_name": "X", "country": "NL", "referrer": null}),
    );
    write(&sink, &batch(vec![early_erase])).await;
    write(&other_worker, &batch(vec![late_register])).await;
    let (tombstone, _) = read(&collection, &format!("user::{other}")).await.expect("tombstone");
    assert_eq!(tombstone.as_object().map(|o| o.len()), Some(1), "{tombstone}");
    assert_eq!(tombstone["_sluice"]["erased_at"], 5);
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

async fn expiry_of(collection: &Collection, key: &str) -> Option<i64> {
    let got = deadline("get with expiry", OP, collection.get(key, GetOptions::new().expiry(true)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    got.expiry_time().map(|t| t.timestamp())
}

#[tokio::test]
async fn d_session_documents_expire_after_their_ttl_renewed_by_every_write() {
    let cb = connect().await;
    let (config, _) = shipped("session_state");
    assert_eq!(config.ttl, Some(HumanDuration::from_millis(30 * 60 * 1000)), "topology.toml's session ttl");
    let (sink, collection) = fresh(&cb, "session_state", config.clone()).await;
    let session = unique("s");
    let id = format!("session::{session}");
    let started = event(
        "sessions",
        (1, 1),
        "session.started",
        &session,
        1,
        json!({"user_id": "u-1", "device": "ios", "ip_country": "NL", "user_agent": null}),
    );
    write(&sink, &batch(vec![started])).await;
    let first = expiry_of(&collection, &id).await.expect("the session document has an expiry");
    let expected = now_secs() + 30 * 60;
    assert!((expected - 5..=expected + 1).contains(&first), "expiry {first}, expected about {expected}");
    let (doc, _) = read(&collection, &id).await.expect("written");
    assert_eq!(doc["last_event"], "session.started");
    assert_eq!(doc["device"], "ios");

    // Time itself must pass, not synchronisation: the expiry is the server's clock plus the ttl,
    // in whole seconds, so a renewal only shows as a later expiry once 2 s went by.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let heartbeat = event("sessions", (1, 2), "session.heartbeat", &session, 2, json!({"user_id": "u-1"}));
    write(&sink, &batch(vec![heartbeat])).await;
    let renewed = expiry_of(&collection, &id).await.expect("still expiring");
    assert!(renewed >= first + 2, "the heartbeat renews the expiry: {first} → {renewed}");
    let (doc, _) = read(&collection, &id).await.expect("written");
    assert_eq!(doc["last_event"], "session.heartbeat");
    assert_eq!(doc["device"], "ios", "fields the heartbeat lacks stay");

    // And the server really drops the document: the same projection with a 2 s ttl.
    let short = CouchbaseSink { ttl: Some(HumanDuration::from_millis(2000)), ..config };
    let (sink, collection) = fresh(&cb, "session_state", short).await;
    let quick = unique("s");
    write(
        &sink,
        &batch(vec![event(
            "sessions",
            (0, 9),
            "session.started",
            &quick,
            1,
            json!({"user_id": "u", "device": "web", "ip_country": null, "user_agent": null}),
        )]),
    )
    .await;
    let quick_id = format!("session::{quick}");
    let written = Instant::now();
    assert!(read(&collection, &quick_id).await.is_some(), "there until its ttl runs out");
    // Gone once its 2 s ttl ran out (the server's clock counts whole seconds: 1 to 3 s from now).
    while read(&collection, &quick_id).await.is_some() {
        assert!(written.elapsed() < Duration::from_secs(15), "the document with a 2 s ttl is still there after 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 64 single-event batches for one document, written at once from parallel tasks; `erases` are
/// the versions that are `user.deleted`. Returns the document, the tombstone and the transients.
async fn concurrent_writers(
    sink: &Arc<CouchbaseProjection>,
    collection: &Collection,
    erases: &[i64],
) -> (Option<Value>, Option<Value>, u32) {
    let user = unique("hot");
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (1..=64i64)
        .map(|v| {
            let (sink, barrier) = (sink.clone(), barrier.clone());
            let e = if erases.contains(&v) {
                event("users", (0, v), "user.deleted", &user, v, json!({"reason": "OTHER"}))
            } else {
                event("users", (0, v), "user.profile_updated", &user, v, json!({ format!("f{v}"): v, "last": v }))
            };
            tokio::spawn(async move {
                barrier.wait().await;
                write(&sink, &batch(vec![e])).await
            })
        })
        .collect();
    let mut transients = 0;
    for t in tasks {
        let (rejected, retried) = t.await.expect("writer task");
        assert!(rejected.is_empty(), "{rejected:?}");
        transients += retried;
    }
    let id = format!("user::{user}");
    (
        read(collection, &id).await.map(|(d, _)| d),
        read(collection, &tombstone_id(&id)).await.map(|(d, _)| d),
        transients,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e_concurrent_writers_on_one_document_lose_nothing() {
    concurrent_writers_on_one_document_lose_nothing(OnErase::Remove).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e_concurrent_writers_on_one_document_lose_nothing_with_tombstones_in_place() {
    concurrent_writers_on_one_document_lose_nothing(OnErase::Tombstone).await;
}

async fn concurrent_writers_on_one_document_lose_nothing(on_erase: OnErase) {
    let cb = connect().await;
    // Every payload field under its own name, so each writer sets a field of its own.
    let config = CouchbaseSink { fields: None, ..users(on_erase) };
    let (sink, collection) = fresh(&cb, "user_state", config).await;
    let sink = Arc::new(sink);

    let started = Instant::now();
    let (doc, _, transients) = concurrent_writers(&sink, &collection, &[]).await;
    eprintln!("64 concurrent writers on one document: {:?}, {transients} batch retries", started.elapsed());
    let doc = doc.expect("written");
    assert_eq!(doc["_sluice"]["version"], 64);
    assert_eq!(doc["last"], 64, "the highest version wins the shared field");
    for v in 1..=64 {
        assert_eq!(doc[format!("f{v}")], v, "field f{v} lost");
        assert_eq!(doc["_sluice"]["fields"][format!("f{v}")], v);
    }
    assert_eq!(doc.as_object().map(Map::len), Some(66), "f1..f64, last and _sluice");

    // With two erases among them: only what is newer than the last erase survives.
    let (doc, _, _) = concurrent_writers(&sink, &collection, &[20, 40]).await;
    let doc = doc.expect("alive after the last erase");
    assert_eq!(doc["_sluice"]["erased_at"], 40);
    assert_eq!(doc["_sluice"]["version"], 64);
    assert_eq!(doc["last"], 64);
    let kept: Vec<i64> = (1..=64).filter(|v| doc.get(format!("f{v}")).is_some()).collect();
    assert_eq!(kept, (41..=64).collect::<Vec<_>>(), "fields older than the erase are gone");

    // The newest event is an erase: nothing remains but the tombstone.
    let (doc, side, _) = concurrent_writers(&sink, &collection, &[20, 64]).await;
    let tombstone = match on_erase {
        OnErase::Remove => {
            assert_eq!(doc, None, "erased by the newest event");
            side.expect("tombstone")
        }
        OnErase::Tombstone => {
            assert_eq!(side, None, "no side tombstone");
            doc.expect("the tombstone in the document's place")
        }
    };
    assert_eq!(tombstone["_sluice"]["erased_at"], 64);
    assert_eq!(tombstone["_sluice"]["version"], 64);
    assert_eq!(tombstone.as_object().map(Map::len), Some(1));
}

#[tokio::test]
async fn f_per_event_problems_are_rejected_and_the_rest_is_written() {
    let cb = connect().await;
    let (shipped_config, _) = shipped("user_state");
    let (sink, collection) = fresh(&cb, "user_state", shipped_config.clone()).await;

    // A document sluice did not write is never overwritten.
    let foreign = unique("u");
    deadline("upsert", OP, collection.upsert(format!("user::{foreign}"), json!({"owner": "someone else"}), None))
        .await
        .expect("upsert");
    let good = unique("u");
    let huge = "x".repeat(21 * 1024 * 1024);
    let events = vec![
        event(
            "users",
            (0, 1),
            "user.registered",
            &foreign,
            1,
            json!({"email": "f@example.com", "display_name": "F", "country": "NL", "referrer": null}),
        ),
        event(
            "users",
            (0, 2),
            "user.registered",
            &good,
            1,
            json!({"email": "g@example.com", "display_name": "G", "country": "NL", "referrer": null}),
        ),
        event(
            "users",
            (0, 3),
            "user.profile_updated",
            &good,
            2,
            json!({"display_name": huge, "country": null, "locale": null, "avatar_url": null}),
        ),
        event(
            "users",
            (0, 4),
            "user.profile_updated",
            &good,
            3,
            json!({"display_name": null, "country": "BE", "locale": null, "avatar_url": null}),
        ),
    ];
    let (rejected, _) = write(&sink, &batch(events)).await;
    let offsets: Vec<i64> = rejected.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![1, 3], "{rejected:?}");
    assert!(rejected[0].reason.contains("not written by sluice"), "{}", rejected[0].reason);
    assert!(rejected[1].reason.contains("over Couchbase's limit"), "{}", rejected[1].reason);
    let (doc, _) = read(&collection, &format!("user::{foreign}")).await.expect("still there");
    assert_eq!(doc, json!({"owner": "someone else"}));
    let (doc, _) = read(&collection, &format!("user::{good}")).await.expect("written");
    assert_eq!(doc["display_name"], "G");
    assert_eq!(doc["country"], "BE");
    assert_eq!(doc["_sluice"]["version"], 3);

    // An event without the fields of the key template has no document.
    let keyed = CouchbaseSink {
        document_id: sluice_core::topology::DocumentId::parse("{tenant}::{aggregate_id}").expect("template"),
        ..shipped_config
    };
    let (sink, _) = fresh(&cb, "user_state", keyed).await;
    let (rejected, _) =
        write(&sink, &batch(vec![event("users", (0, 7), "user.registered", &good, 1, json!({"email": "x"}))])).await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].offset, 7);
    assert_eq!(
        rejected[0].reason,
        "document id `{tenant}::{aggregate_id}` needs field `tenant`, which the event does not carry"
    );
}

#[tokio::test]
async fn g_setup_is_idempotent_and_a_missing_collection_is_a_config_error() {
    let cb = connect().await;
    let (mut config, batching) = shipped("user_state");
    config.scope = unique("scope");
    config.collection = unique("c");
    let shipped_session = shipped("session_state").0;
    let projections = [("user_state", &config), ("session_state", &shipped_session)];

    let first = within("setup", 60, setup(&cb, &projections)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (first[0].scope_presence, first[0].collection_presence),
        (Presence::Created, Presence::Created),
        "{}",
        first[0]
    );
    assert_eq!(
        (first[1].scope_presence, first[1].collection_presence),
        (Presence::AlreadyThere, Presence::AlreadyThere),
        "_default._default always exists: {}",
        first[1]
    );
    let again = within("setup", 60, setup(&cb, &projections)).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        again
            .iter()
            .all(|l| l.scope_presence == Presence::AlreadyThere && l.collection_presence == Presence::AlreadyThere)
    );
    for line in first.iter().chain(&again) {
        eprintln!("{line}");
    }

    let missing = CouchbaseSink { collection: unique("never_created"), ..config };
    match within("opening the sink", 30, CouchbaseProjection::new(&cb, "user_state", &missing, batching)).await {
        Err(e @ Error::MissingCollection { .. }) => {
            assert!(e.to_string().contains("sluice couchbase setup"), "{e}");
        }
        other => panic!("expected a missing-collection error, got {other:?}"),
    }
}

#[tokio::test]
async fn h_a_collection_dropped_under_a_running_sink_is_a_config_error() {
    let cb = connect().await;
    let (mut config, batching) = shipped("user_state");
    config.scope = SCOPE.into();
    config.collection = unique("c");
    let manager = cb.bucket.collections();
    // Made by hand, not by `setup`: no KV call may resolve the collection before it is dropped
    // (the SDK would cache its id, and the mock keeps serving a dropped collection by id).
    match deadline("create scope", OP, manager.create_scope(SCOPE, None)).await {
        Err(Error::Couchbase { source, .. }) if *source.kind() != couchbase::error::ErrorKind::ScopeExists => {
            panic!("{source}")
        }
        Err(e @ Error::Timeout { .. }) => panic!("{e}"),
        _ => {}
    }
    deadline("create collection", OP, manager.create_collection(SCOPE, &config.collection, None, None))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sink = within("opening the sink", 30, CouchbaseProjection::new(&cb, "user_state", &config, batching))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    deadline("drop collection", OP, manager.drop_collection(SCOPE, &config.collection, None))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let user = unique("u");
    let e = event("users", (0, 1), "user.registered", &user, 1, json!({"email": "a@example.com"}));
    let started = Instant::now();
    // A KV call on a missing collection hangs until the sink's deadline; then the sink looks.
    match within("a write to a dropped collection", 60, sink.write(&batch(vec![e]))).await {
        Err(SinkError::Config(message)) => {
            assert!(message.contains("does not exist") && message.contains("sluice couchbase setup"), "{message}");
            eprintln!("diagnosed after {:?}: {message}", started.elapsed());
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// The sink remembers what it wrote and updates that document without reading it first; a
/// document changed elsewhere meanwhile (another worker, a person, a removal) must be read again,
/// never overwritten from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_a_document_changed_elsewhere_after_this_sink_wrote_it_is_read_again() {
    let cb = connect().await;
    let (sink, collection) = fresh(&cb, "user_state", CouchbaseSink { fields: None, ..shipped("user_state").0 }).await;
    // A second writer on the same collection: another worker, with a memory of its own.
    let config = CouchbaseSink {
        fields: None,
        scope: collection.scope_name().to_owned(),
        collection: collection.name().to_owned(),
        ..shipped("user_state").0
    };
    let batching = Batching { max_records: 500, linger: Duration::from_millis(50), max_in_flight: 1 };
    let other = within("opening the sink", 30, CouchbaseProjection::new(&cb, "user_state", &config, batching))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let user = unique("known");
    let id = format!("user::{user}");
    let update = |v: i64, field: &str| event("users", (0, v), "user.profile_updated", &user, v, json!({ field: v }));

    write(&sink, &batch(vec![update(1, "a")])).await;
    write(&other, &batch(vec![update(2, "b")])).await;
    write(&sink, &batch(vec![update(3, "c")])).await;
    let (doc, _) = read(&collection, &id).await.expect("written");
    assert_eq!((doc["a"].clone(), doc["b"].clone(), doc["c"].clone()), (json!(1), json!(2), json!(3)), "{doc}");
    assert_eq!(doc["_sluice"]["version"], 3);

    // Removed by a person: the next write finds it gone and creates it again from its event.
    deadline("remove", OP, collection.remove(&id, None)).await.expect("removed");
    write(&sink, &batch(vec![update(4, "d")])).await;
    let (doc, _) = read(&collection, &id).await.expect("written again");
    assert_eq!((doc.get("a"), doc["d"].clone()), (None, json!(4)), "{doc}");

    // Unchanged events on the remembered state write nothing, as on the stored one.
    let (_, cas) = read(&collection, &id).await.expect("there");
    write(&sink, &batch(vec![update(4, "d"), update(3, "d")])).await;
    assert_eq!(read(&collection, &id).await.expect("there").1, cas, "a duplicate and an older event wrote");
}

/// The operations counted in `sluice_couchbase_operations_total` for `projection` since the last
/// call, by kind (the first call installs the recorder: before it, nothing was counted).
fn operations(projection: &str) -> BTreeMap<String, u64> {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    static SNAPSHOTTER: std::sync::OnceLock<Snapshotter> = std::sync::OnceLock::new();
    let snapshotter = SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder).expect("no other recorder in this test binary");
        snapshotter
    });
    let mut out = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (_, key) = key.into_parts();
        let label = |name: &str| key.labels().find(|l| l.key() == name).map(|l| l.value().to_owned());
        if let (true, Some(p), Some(op), DebugValue::Counter(n)) =
            (key.name() == names::COUCHBASE_OPERATIONS, label("projection"), label("operation"), value)
            && p == projection
            && n > 0
        {
            out.insert(op, n);
        }
    }
    out
}

/// What each kind of write costs the cluster, counted as the metric counts it: a new document
/// with `erase_on` three operations whatever its events (inserted blind by a sink that expects new
/// documents, its tombstone read before and after the insert), an update of a document this sink
/// wrote last one, an erase of it three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_each_write_sends_the_operations_its_protocol_needs_and_no_more() {
    operations("");
    let cb = connect().await;
    let projection = unique("ops");
    let config = CouchbaseSink { fields: None, ..shipped("user_state").0 };
    let (sink, collection) = fresh(&cb, &projection, config.clone()).await;
    let user = unique("ops");
    let id = format!("user::{user}");
    let update = |v: i64| event("users", (0, v), "user.profile_updated", &user, v, json!({ "n": v }));
    let counts = |pairs: &[(&str, u64)]| pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect::<BTreeMap<_, _>>();

    write(&sink, &batch(vec![update(1), update(2), update(3)])).await;
    assert_eq!(operations(&projection), counts(&[("get", 2), ("insert", 1)]), "a new document");
    write(&sink, &batch(vec![update(4), update(5)])).await;
    assert_eq!(operations(&projection), counts(&[("replace", 1)]), "an update of what this sink wrote last");
    write(&sink, &batch(vec![update(5)])).await;
    assert_eq!(operations(&projection), BTreeMap::new(), "a duplicate of what this sink wrote last");
    let erase = event("users", (0, 6), "user.deleted", &user, 6, json!({}));
    write(&sink, &batch(vec![erase])).await;
    assert_eq!(
        operations(&projection),
        counts(&[("get", 1), ("insert", 1), ("remove", 1)]),
        "an erase: the tombstone read and written, then the document removed"
    );
    assert!(read(&collection, &id).await.is_none(), "erased");
    assert!(read(&collection, &tombstone_id(&id)).await.is_some(), "its tombstone kept");

    let other_worker = another(&cb, &projection, &config, &sink).await;
    write(&other_worker, &batch(vec![update(3)])).await;
    assert_eq!(
        operations(&projection),
        counts(&[("get", 3)]),
        "a late event at a worker guessing \"new\": the tombstone found, the document and the tombstone read, nothing written"
    );
    assert!(read(&collection, &id).await.is_none(), "still erased");
}

/// With `on_erase = "tombstone"` every write is one document: a new one costs its insert alone,
/// an erase of what this sink wrote last one replace, a late event nothing; a worker that
/// remembers nothing and guesses "new" pays the refused insert and a read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_with_tombstones_in_place_a_new_document_costs_one_write() {
    operations("");
    let cb = connect().await;
    let projection = unique("ops");
    let config = CouchbaseSink { fields: None, ..users(OnErase::Tombstone) };
    let (sink, collection) = fresh(&cb, &projection, config.clone()).await;
    let user = unique("ops");
    let id = format!("user::{user}");
    let update = |v: i64| event("users", (0, v), "user.profile_updated", &user, v, json!({ "n": v }));
    let counts = |pairs: &[(&str, u64)]| pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect::<BTreeMap<_, _>>();

    write(&sink, &batch(vec![update(1), update(2), update(3)])).await;
    assert_eq!(operations(&projection), counts(&[("insert", 1)]), "a new document");
    write(&sink, &batch(vec![update(4), update(5)])).await;
    assert_eq!(operations(&projection), counts(&[("replace", 1)]), "an update of what this sink wrote last");
    let erase = event("users", (0, 6), "user.deleted", &user, 6, json!({}));
    write(&sink, &batch(vec![erase])).await;
    assert_eq!(operations(&projection), counts(&[("replace", 1)]), "an erase: the tombstone replaces the document");
    write(&sink, &batch(vec![update(2)])).await;
    assert_eq!(operations(&projection), BTreeMap::new(), "a late event, folded into the remembered tombstone");
    let (tombstone, _) = read(&collection, &id).await.expect("the tombstone");
    assert_eq!(tombstone.as_object().map(|o| o.len()), Some(1), "bookkeeping alone: {tombstone}");

    let other_worker = another(&cb, &projection, &config, &sink).await;
    write(&other_worker, &batch(vec![update(3)])).await;
    assert_eq!(
        operations(&projection),
        counts(&[("get", 1), ("insert", 1)]),
        "a late event at a worker guessing \"new\": the insert refused, the tombstone read, nothing written"
    );
}
