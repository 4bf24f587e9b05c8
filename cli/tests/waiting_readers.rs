//! 1,000 readers waiting on the gateway at once (issue #16): each reads a different user's
//! document with its write's consistency token while the projection's worker is not running yet.
//! They share one reader of the projection's committed offsets, so the gateway's memory and CPU
//! while they wait stay small (printed for the README); once the worker runs, every one gets its
//! document, none a stale one.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::gateway::Gateway;
use common::{WorkerProcess, cpu_seconds, rss_kib, run_ok, setup, sluice};
use serde_json::{Value, json};
use sluice_tests::{fresh_topology, unique};

/// Readers waiting at once.
const READERS: usize = 1_000;
/// How long the readers wait with no worker running, CPU and memory measured meanwhile.
const WAITING: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_readers_wait_cheaply_and_each_gets_its_write() {
    let sfx = unique("wait1k");
    let topology = fresh_topology(&sfx);
    setup(&topology);
    run_ok(sluice(&topology).args(["couchbase", "setup"]));
    let gateway = Arc::new(Gateway::start(&topology).await);
    let user_state = format!("user_state_{sfx}");

    // A thousand users registered; each registration's own token.
    let events: Vec<Value> = (0..READERS)
        .map(|i| {
            json!({"event_type": "user.registered", "aggregate_id": format!("{sfx}-u{i}"), "aggregate_version": 1,
                "email": format!("u{i}@example.com"), "display_name": format!("user {i}"), "country": "NL"})
        })
        .collect();
    let mut tokens = Vec::new();
    for chunk in events.chunks(500) {
        let body = gateway.batch_answer(&chunk.iter().collect::<Vec<_>>()).await;
        for r in body["results"].as_array().expect("results") {
            assert_eq!(r["status"], 201, "{r}");
            tokens.push(r["consistency_token"].as_str().expect("a token per event").to_owned());
        }
    }

    // The gateway connects to Couchbase as it starts; a plain read shares that connection attempt,
    // so the window below measures the waiting, not the SDK's bootstrap.
    let (status, body) = gateway.get(&format!("/v1/projections/{user_state}/documents/user::{sfx}-nobody")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");

    let pid = gateway.pid();
    let rss_before = rss_kib(pid);
    let started = Instant::now();
    let readers: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            let (gateway, user_state, sfx) = (Arc::clone(&gateway), user_state.clone(), sfx.clone());
            tokio::spawn(
                async move { read_until_included(&gateway, &user_state, &format!("{sfx}-u{i}"), i, &token).await },
            )
        })
        .collect();

    // Every reader is waiting now (no worker): what does the gateway spend meanwhile?
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cpu_start, window_start) = (cpu_seconds(pid), Instant::now());
    let mut rss_peak = rss_kib(pid);
    while window_start.elapsed() < WAITING {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss_peak = rss_peak.max(rss_kib(pid));
    }
    let cores = (cpu_seconds(pid) - cpu_start) / window_start.elapsed().as_secs_f64();
    let finished_early = readers.iter().filter(|r| r.is_finished()).count();

    let worker_started = Instant::now();
    let _worker = WorkerProcess::start(&topology, &user_state, None);
    let mut not_yet = 0;
    for reader in readers {
        not_yet += reader.await.expect("the reader");
    }
    eprintln!(
        "waiting readers: {READERS} waiting; gateway RSS {} MiB before, peak {} MiB while they waited (+{} KiB per reader); \
         CPU while waiting {:.3} cores; all answered {:?} after the worker started ({:?} in all), {not_yet} 'not yet' or 'try again' answers re-asked",
        rss_before / 1024,
        rss_peak / 1024,
        (rss_peak.saturating_sub(rss_before)) / READERS as u64,
        cores,
        worker_started.elapsed(),
        started.elapsed(),
    );
    assert_eq!(finished_early, 0, "a reader was answered before its write was projected");
    // One shared reader of committed offsets: waiting costs the gateway next to nothing. A poll
    // per reader (1,000 Kafka requests every 100 ms) would take most of a core.
    assert!(cores < 0.25, "the gateway spent {cores:.3} cores on {READERS} waiting readers");
    assert!(rss_peak - rss_before < 100 * 1024, "waiting readers cost {} KiB", rss_peak - rss_before);
}

/// Reads user `uid`'s document with `token` until the projection includes it (re-asking after
/// each "not yet" or "try again", as Retry-After says); fails the test on a stale or wrong answer.
/// The number of answers re-asked.
async fn read_until_included(gateway: &Gateway, projection: &str, uid: &str, i: usize, token: &str) -> usize {
    let path = format!("/v1/projections/{projection}/documents/user::{uid}?after={token}&wait=9s");
    let start = Instant::now();
    let mut not_yet = 0;
    loop {
        let (status, body) = gateway.get(&path).await;
        match status {
            200 => {
                assert_eq!(body["version"], 1, "{body}");
                assert_eq!(body["document"]["display_name"], format!("user {i}").as_str(), "{body}");
                return not_yet;
            }
            409 => {
                assert_eq!(body["error"]["code"], "not_yet", "{body}");
                not_yet += 1;
            }
            // Kafka or Couchbase slow to answer (a loaded CI machine): asking again is what the
            // answer says to do. Counted with the "not yet" answers, which the output prints.
            503 => {
                assert!(matches!(body["error"]["code"].as_str(), Some("read_timeout" | "unavailable")), "{body}");
                assert!(body["error"]["retry_after_seconds"].is_u64(), "{body}");
                not_yet += 1;
            }
            other => panic!("read answered {other}: {body}"),
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{uid} still not included after 90 s");
    }
}
