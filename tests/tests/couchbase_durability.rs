//! Couchbase `durability` against the rig's gocaves server: a projection writing with each level
//! creates, updates, erases and re-creates documents (insert, replace, tombstone, remove), and the
//! live-collection pointer is written with it too.
//!
//! What gocaves does with a level (v0.0.1-75, checked in its source and here): it advertises
//! `durableWrite` and negotiates synchronous replication, accepts every level on insert, replace,
//! upsert and remove, and acknowledges the write as it would without one; it never answers
//! `durability impossible` (its `default` bucket has 1 replica on 2 nodes anyway). So these tests
//! show that durable writes go through the sink's every path; what a bucket that cannot give a
//! level does is unit-tested on the error kinds the SDK returns then
//! (`consumers/src/sinks/couchbase/{durability,sink}.rs`).

use std::path::Path;
use std::time::Duration;

use couchbase::collection::Collection;
use serde_json::{Value, json};
use sluice_consumers::sinks::couchbase::pointer::{self, Pointer};
use sluice_consumers::sinks::couchbase::request_builder::tombstone_id;
use sluice_consumers::sinks::couchbase::service::{KV_TIMEOUT, deadline};
use sluice_consumers::sinks::couchbase::{Couchbase, CouchbaseProjection, Error, Presence, setup};
use sluice_consumers::{Batch, Batching, Sink};
use sluice_core::event::{Envelope, Event, Position};
use sluice_core::topology::{CouchbaseDurability, CouchbaseSink, SinkConfig, Topology};
use sluice_tests::{connections, unique, within};

const SCOPE: &str = "sluice_tests";

async fn connect() -> Couchbase {
    within("connecting to Couchbase", 60, Couchbase::connect(&connections().couchbase))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The repository's `user_state` projection in a fresh collection, writing with `durability`.
async fn durable_sink(cb: &Couchbase, durability: CouchbaseDurability) -> (CouchbaseProjection, Collection) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topology.toml");
    let topology = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let p = topology.projection("user_state").expect("user_state");
    let SinkConfig::Couchbase { couchbase } = &p.sink else { panic!("user_state is not a Couchbase projection") };
    let config = CouchbaseSink { scope: SCOPE.into(), collection: unique("durable"), durability, ..couchbase.clone() };
    let lines = within("couchbase setup", 60, setup(cb, &[("user_state", &config)])).await.expect("setup");
    assert_eq!(lines[0].collection_presence, Presence::Created, "{}", lines[0]);
    let batching = Batching { max_records: 10, linger: Duration::from_millis(10), max_in_flight: 1 };
    let sink = within("opening the sink", 30, CouchbaseProjection::new(cb, "user_state", &config, batching))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (sink, cb.collection(Some(SCOPE), Some(&config.collection)))
}

/// One event of `aggregate` at `version` (its offset too) as a one-event batch.
fn batch(event_type: &str, aggregate: &str, version: i64, payload: Value) -> Batch {
    let Value::Object(payload) = payload else { panic!("payload must be an object") };
    let event = Event {
        envelope: Envelope {
            event_id: format!("{aggregate}-{version}"),
            event_type: event_type.into(),
            aggregate_id: aggregate.into(),
            aggregate_version: version,
            occurred_at: 1_750_000_000_000 + version * 1000,
            producer: "tests".into(),
            correlation_id: None,
            causation_id: None,
            traceparent: None,
            tracestate: None,
        },
        payload,
        position: Position { topic: "users".into(), partition: 0, offset: version },
        schema_id: 1,
    };
    Batch { topic: "users".into(), partition: 0, events: vec![event], first_offset: version, last_offset: version }
}

async fn read(collection: &Collection, key: &str) -> Option<Value> {
    match deadline("get", KV_TIMEOUT, collection.get(key, None)).await {
        Ok(found) => Some(found.content_as().expect("a JSON document")),
        Err(Error::Couchbase { source, .. }) if *source.kind() == couchbase::error::ErrorKind::DocumentNotFound => None,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn every_write_path_of_a_durable_projection_goes_through() {
    let cb = connect().await;
    for durability in [
        CouchbaseDurability::Majority,
        CouchbaseDurability::MajorityAndPersistActive,
        CouchbaseDurability::PersistToMajority,
    ] {
        let (sink, collection) = durable_sink(&cb, durability).await;
        let user = unique("u");
        let id = format!("user::{user}");
        let write = |b: Batch| {
            let sink = &sink;
            async move {
                let rejected = within("a durable write", 60, sink.write(&b))
                    .await
                    .unwrap_or_else(|e| panic!("durability = \"{durability}\": {e}"));
                assert!(rejected.is_empty(), "{rejected:?}");
            }
        };

        // insert
        write(batch(
            "user.registered",
            &user,
            1,
            json!({"email": "a@example.com", "display_name": "A",
            "country": "NL", "referrer": null}),
        ))
        .await;
        assert_eq!(read(&collection, &id).await.map(|d| d["email"].clone()), Some(json!("a@example.com")));
        // replace
        write(batch(
            "user.profile_updated",
            &user,
            2,
            json!({"display_name": "B", "country": null,
            "locale": null, "avatar_url": null}),
        ))
        .await;
        assert_eq!(read(&collection, &id).await.map(|d| d["display_name"].clone()), Some(json!("B")));
        // tombstone insert, then remove
        write(batch("user.deleted", &user, 3, json!({"reason": "GDPR_ERASURE"}))).await;
        assert_eq!(read(&collection, &id).await, None, "{durability}: erased");
        assert!(read(&collection, &tombstone_id(&id)).await.is_some(), "{durability}: tombstone written");
        // insert over a tombstone, then a replace of the tombstone by a later erase
        write(batch(
            "user.registered",
            &user,
            4,
            json!({"email": "c@example.com", "display_name": "C",
            "country": "DE", "referrer": null}),
        ))
        .await;
        assert_eq!(read(&collection, &id).await.map(|d| d["email"].clone()), Some(json!("c@example.com")));
        write(batch("user.deleted", &user, 5, json!({"reason": "GDPR_ERASURE"}))).await;
        assert_eq!(read(&collection, &id).await, None);
        let tomb = read(&collection, &tombstone_id(&id)).await.expect("tombstone");
        assert_eq!(tomb["_sluice"]["erased_at"], 5, "{durability}: the tombstone moved forward: {tomb}");
    }
}

#[tokio::test]
async fn the_live_collection_pointer_is_written_with_the_projections_durability() {
    let cb = connect().await;
    let projection = unique("durable_pointer");
    let at = Pointer { scope: SCOPE.into(), collection: unique("c"), generation: 2 };
    within("write pointer", 30, pointer::write(&cb.bucket, &projection, &at, CouchbaseDurability::PersistToMajority))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let read_back = within("read pointer", 30, pointer::read(&cb.bucket, &projection)).await.expect("read");
    assert_eq!(read_back, Some(at));
    let removed = cb.bucket.default_collection().remove(pointer::pointer_key(&projection), None).await;
    assert!(removed.is_ok(), "{removed:?}");
}
