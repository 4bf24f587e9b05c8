//! Read your own writes through the gateway (issue #16): every write is read back at once with its
//! consistency token, many writers at a time, while the projection's worker is killed and
//! replaced; no read ever returns a document older than the write it waited for.
//!
//! Prints the waits (p50/p99) for the README.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::gateway::{Gateway, TOKEN};
use common::{WorkerProcess, run_ok, setup, sluice};
use serde_json::{Value, json};
use sluice_tests::{fresh_topology, unique};

/// Users written to at once.
const USERS: usize = 20;
/// Updates per user, each read back at once.
const ROUNDS: i64 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_is_read_back_fresh_while_the_worker_is_replaced() {
    let sfx = unique("ryw");
    let topology = fresh_topology(&sfx);
    setup(&topology);
    run_ok(sluice(&topology).args(["couchbase", "setup"]));
    let gateway = Arc::new(Gateway::start(&topology).await);
    let user_state = format!("user_state_{sfx}");
    let mut worker = Some(WorkerProcess::start(&topology, &user_state, None));
    let users: Vec<String> = (0..USERS).map(|i| format!("{sfx}-u{i}")).collect();

    for uid in &users {
        let registered = json!({"event_type": "user.registered", "aggregate_id": uid, "aggregate_version": 1,
            "email": format!("{uid}@example.com"), "display_name": "u-1", "country": "NL"});
        let (status, _, body) = gateway.single(&registered).await;
        assert_eq!(status, 201, "{body}");
    }

    let mut waits: Vec<Duration> = Vec::new();
    let mut not_yet = 0usize;
    for round in 2..=ROUNDS {
        if round == ROUNDS / 2 {
            // The worker dies mid-run; a new one takes over its partitions.
            if let Some(w) = worker.take() {
                w.kill();
            }
            worker = Some(WorkerProcess::start(&topology, &user_state, None));
        }
        let tasks: Vec<_> = users
            .iter()
            .map(|uid| {
                let (gateway, uid, user_state) = (Arc::clone(&gateway), uid.clone(), user_state.clone());
                tokio::spawn(async move { write_then_read(&gateway, &user_state, &uid, round).await })
            })
            .collect();
        for task in tasks {
            match task.await.expect("the task") {
                Read::Fresh(waited) => waits.push(waited),
                Read::NotYet => not_yet += 1,
            }
        }
    }
    drop(worker);
    waits.sort();
    let at = |q: f64| waits[((waits.len() - 1) as f64 * q) as usize];
    eprintln!(
        "read-your-writes: {} fresh reads, {not_yet} not yet (wait 9s: the request timeout less a second), wait p50 {:?}, p99 {:?}, max {:?}",
        waits.len(),
        at(0.5),
        at(0.99),
        waits.last().copied().unwrap_or_default()
    );
    assert_eq!(waits.len() + not_yet, USERS * (ROUNDS as usize - 1));
    assert!(not_yet <= USERS, "{not_yet} 'not yet' answers: more than one round's worth (the worker's replacement)");
}

enum Read {
    /// The read included the write; how long the read took.
    Fresh(Duration),
    /// 409: the projection did not include the write within the wait (never a stale document).
    NotYet,
}

/// Updates `uid` to version `round` and reads it back with the write's token; fails the test on a
/// stale document.
async fn write_then_read(gateway: &Gateway, projection: &str, uid: &str, round: i64) -> Read {
    let name = format!("u-{round}");
    let update = json!({"event_type": "user.profile_updated", "aggregate_id": uid, "aggregate_version": round, "display_name": name});
    let (status, _, body) = gateway.single(&update).await;
    assert_eq!(status, 201, "{body}");
    let token = body["consistency_token"].as_str().expect("a token").to_owned();
    let url = format!("{}/v1/projections/{projection}/documents/user::{uid}?after={token}&wait=9s", gateway.base);
    let start = Instant::now();
    let resp = reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.expect("read");
    let waited = start.elapsed();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json");
    match status {
        200 => {
            let version = body["version"].as_i64().expect("a version");
            assert!(version >= round, "stale read: version {version} after writing {round}: {body}");
            if version == round {
                assert_eq!(body["document"]["display_name"], name.as_str(), "stale field: {body}");
            }
            Read::Fresh(waited)
        }
        409 => {
            assert_eq!(body["error"]["code"], "not_yet", "{body}");
            assert!(body.get("document").is_none(), "a 'not yet' carries no document: {body}");
            Read::NotYet
        }
        other => panic!("read answered {other}: {body}"),
    }
}
