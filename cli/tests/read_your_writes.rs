//! Read your own writes through the gateway (issue #16): 10,000 writes, each read back at once
//! with its consistency token, across two Couchbase projections (users and sessions), many
//! writers at a time, while one projection's worker is killed and replaced; no read ever returns
//! a document older than the write it waited for.
//!
//! Prints the waits (p50/p99, per projection) for the README.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::gateway::Gateway;
use common::{WorkerProcess, run_ok, setup, sluice};
use serde_json::{Value, json};
use sluice_tests::{fresh_topology, unique};

/// Users and sessions written to at once, each by its own writer.
const USERS: usize = 30;
const SESSIONS: usize = 20;
/// Writes per aggregate, each read back at once: (USERS + SESSIONS) × ROUNDS = 10,000 reads.
const ROUNDS: i64 = 200;
/// The user projection's worker is replaced once this many reads were answered.
const REPLACE_AT: usize = 4_000;

/// One aggregate's writes: what to post for version `v`, the document to read, and the field
/// that shows the version's write.
#[derive(Clone)]
struct Aggregate {
    projection: String,
    key: String,
    field: &'static str,
    event: fn(&str, i64) -> Value,
    id: String,
}

impl Aggregate {
    /// Aggregate `id` of `projection`, whose documents are keyed `<kind>::<id>`.
    fn new(projection: &str, kind: &str, id: String, field: &'static str, event: fn(&str, i64) -> Value) -> Self {
        Self { projection: projection.to_owned(), key: format!("{kind}::{id}"), field, event, id }
    }
}

fn user_event(id: &str, v: i64) -> Value {
    if v == 1 {
        json!({"event_type": "user.registered", "aggregate_id": id, "aggregate_version": 1,
            "email": format!("{id}@example.com"), "display_name": "v1", "country": "NL"})
    } else {
        json!({"event_type": "user.profile_updated", "aggregate_id": id, "aggregate_version": v, "display_name": format!("v{v}")})
    }
}

fn session_event(id: &str, v: i64) -> Value {
    if v == 1 {
        json!({"event_type": "session.started", "aggregate_id": id, "aggregate_version": 1,
            "user_id": "v1", "device": "d", "ip_country": null, "user_agent": null})
    } else {
        json!({"event_type": "session.heartbeat", "aggregate_id": id, "aggregate_version": v, "user_id": format!("v{v}")})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_writes_are_read_back_fresh_across_projections_while_a_worker_is_replaced() {
    let sfx = unique("ryw");
    let topology = fresh_topology(&sfx);
    setup(&topology);
    run_ok(sluice(&topology).args(["couchbase", "setup"]));
    let gateway = Arc::new(Gateway::start(&topology).await);
    let (user_state, session_state) = (format!("user_state_{sfx}"), format!("session_state_{sfx}"));
    let mut user_worker = Some(WorkerProcess::start(&topology, &user_state, None));
    let _session_worker = WorkerProcess::start(&topology, &session_state, None);

    let users =
        (0..USERS).map(|i| Aggregate::new(&user_state, "user", format!("{sfx}-u{i}"), "display_name", user_event));
    let sessions = (0..SESSIONS)
        .map(|i| Aggregate::new(&session_state, "session", format!("{sfx}-s{i}"), "user_id", session_event));
    let answered = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = users
        .chain(sessions)
        .map(|aggregate| {
            let (gateway, answered) = (Arc::clone(&gateway), Arc::clone(&answered));
            tokio::spawn(async move { write_and_read_back(&gateway, &aggregate, &answered).await })
        })
        .collect();

    // Mid-run the user projection's worker dies; a new one takes over its partitions.
    while answered.load(Ordering::Relaxed) < REPLACE_AT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(w) = user_worker.take() {
        w.kill();
    }
    user_worker = Some(WorkerProcess::start(&topology, &user_state, None));

    let mut by_projection: [(Vec<Duration>, usize); 2] = Default::default();
    for writer in writers {
        let (projection, waits, not_yet) = writer.await.expect("the writer");
        let slot = &mut by_projection[usize::from(projection == session_state)];
        slot.0.extend(waits);
        slot.1 += not_yet;
    }
    drop(user_worker);
    let mut all: Vec<Duration> = Vec::new();
    for ((waits, not_yet), name) in by_projection.iter_mut().zip(["user_state", "session_state"]) {
        report(name, waits, *not_yet);
        all.extend(waits.iter().copied());
    }
    let not_yet: usize = by_projection.iter().map(|(_, n)| n).sum();
    report("all", &mut all, not_yet);
    assert_eq!(all.len() + not_yet, (USERS + SESSIONS) * ROUNDS as usize, "every write was read back");
    // The replacement may cost each user's writer one read that outwaits the gateway's request
    // timeout; the sessions' projection was never stopped.
    assert!(by_projection[1].1 == 0, "'not yet' from the sessions' projection, never stopped");
    assert!(not_yet <= USERS, "{not_yet} 'not yet' answers: more than one per user writer");
}

fn report(name: &str, waits: &mut [Duration], not_yet: usize) {
    waits.sort();
    let at = |q: f64| waits[((waits.len() - 1) as f64 * q) as usize];
    eprintln!(
        "read-your-writes {name}: {} fresh reads, {not_yet} not yet (wait 9s), wait p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        waits.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        waits.last().copied().unwrap_or_default()
    );
}

/// Writes versions 1..=ROUNDS of `aggregate`, each read back at once with the write's token;
/// fails the test on a stale document. The projection, the waits of fresh reads, the count of
/// "not yet" answers.
async fn write_and_read_back(
    gateway: &Gateway,
    aggregate: &Aggregate,
    answered: &AtomicUsize,
) -> (String, Vec<Duration>, usize) {
    let (mut waits, mut not_yet) = (Vec::new(), 0);
    for v in 1..=ROUNDS {
        let (status, _, body) = gateway.single(&(aggregate.event)(&aggregate.id, v)).await;
        assert_eq!(status, 201, "{body}");
        let token = body["consistency_token"].as_str().expect("a token");
        let path =
            format!("/v1/projections/{}/documents/{}?after={token}&wait=9s", aggregate.projection, aggregate.key);
        let start = Instant::now();
        let (status, body) = gateway.get(&path).await;
        let waited = start.elapsed();
        match status {
            200 => {
                let version = body["version"].as_i64().expect("a version");
                assert!(version >= v, "stale read: version {version} after writing {v}: {body}");
                if version == v {
                    assert_eq!(body["document"][aggregate.field], format!("v{v}").as_str(), "stale field: {body}");
                }
                waits.push(waited);
            }
            409 => {
                assert_eq!(body["error"]["code"], "not_yet", "{body}");
                assert!(body.get("document").is_none(), "a 'not yet' carries no document: {body}");
                not_yet += 1;
            }
            other => panic!("read answered {other}: {body}"),
        }
        answered.fetch_add(1, Ordering::Relaxed);
    }
    (aggregate.projection.clone(), waits, not_yet)
}
