//! Lag-based backpressure end to end, through the real binaries and services: events flow through
//! `sluice gateway` into two projections; the ClickHouse one loses its server. Its worker must
//! pause (memory flat, lag growing), the gateway must refuse — 429 with `Retry-After` — only the
//! event types that feed it once its lag passes the hard threshold, and the Couchbase projection
//! must keep up meanwhile. With the server back, the lag drains to 0, the refused events are
//! accepted again, and ClickHouse holds every accepted event exactly once.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_consumers::sinks::clickhouse::ClickHouse;
use sluice_consumers::sinks::couchbase::Couchbase;
use sluice_core::connections::ClickHouseConnection;
use sluice_tests::domain::generate;
use sluice_tests::{connections, fresh_topology, unique, within};

mod common;
use common::gateway::Gateway;
use common::*;

/// The analytics projection's batch size in this test: small, so "bounded" is visible in counts.
const BATCH: u64 = 100;
/// Its hard lag threshold (messages).
const HARD_LAG: u64 = 300;

/// The topology of this test: the repository's, isolated by `sfx`, with the analytics projection
/// reading only engagement events in small batches and refusing intake past `HARD_LAG`.
fn topology_with_small_thresholds(sfx: &str) -> std::path::PathBuf {
    let path = fresh_topology(sfx);
    let text = std::fs::read_to_string(&path).expect("read topology");
    // The analytics projection's own lines (up to its next table): sources and batch size.
    let header = format!("[projections.analytics_{sfx}]");
    let mut in_analytics = false;
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            in_analytics = line == header;
        }
        lines.push(match line {
            l if in_analytics && l.starts_with("sources = ") => format!("sources = [\"engagement_{sfx}\"]"),
            l if in_analytics && l.starts_with("batch_size = ") => format!("batch_size = {BATCH}"),
            l => l.to_owned(),
        });
    }
    let patched = (lines.join("\n") + "\n").replace(
        "soft_lag = 1000000\nsoft_lag_age = \"5m\"",
        &format!("soft_lag = {}\nhard_lag = {HARD_LAG}", HARD_LAG - 50),
    );
    assert!(patched.contains(&format!("hard_lag = {HARD_LAG}")), "thresholds patched");
    assert!(patched.contains(&format!("batch_size = {BATCH}\n")), "analytics batch size patched");
    assert!(patched.contains(&format!("sources = [\"engagement_{sfx}\"]")), "analytics sources patched");
    std::fs::write(&path, patched).expect("write topology");
    path
}

fn of_kind<'a>(events: &'a [Value], prefix: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event_type"].as_str().is_some_and(|t| t.starts_with(prefix))).collect()
}

fn sluice_lag_messages(topology: &std::path::Path, projection: &str) -> u64 {
    let out = run_ok(sluice(topology).args(["lag", "--json", "--projection", projection]));
    let snapshot: Value = serde_json::from_slice(&out.stdout).expect("lag json");
    snapshot["projections"][projection]["lag_messages"].as_u64().expect("lag_messages")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_refuses_its_event_types_keeps_couchbase_going_and_loses_nothing() {
    let sfx = unique("bp");
    let topology = topology_with_small_thresholds(&sfx);
    let dir = topology.parent().expect("dir").to_path_buf();
    let server = PrivateClickHouse::start(&dir);
    std::fs::write(dir.join("clickhouse.env"), format!("SLUICE_CLICKHOUSE_URL={}\n", server.url())).expect("env");
    let (analytics, user_state) = (format!("analytics_{sfx}"), format!("user_state_{sfx}"));
    run_ok(sluice(&topology).args(["topics", "apply"]));
    run_ok(sluice(&topology).args(["schemas", "register"]));
    run_ok(sluice(&topology).args(["clickhouse", "migrate"]));

    let metrics_addr = format!("127.0.0.1:{}", PrivateClickHouse::free_port());
    let mut cmd = sluice(&topology);
    cmd.args(["work", "--projection", &analytics, "--metrics-addr", &metrics_addr])
        .env("SLUICE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("analytics.log")).expect("log"));
    let analytics_worker = WorkerProcess(cmd.spawn().expect("analytics worker"));
    let user_worker = WorkerProcess::start(&topology, &user_state, None);
    let gateway = Gateway::start(&topology).await;
    // The workers joined their groups and own their partitions before ClickHouse goes away.
    await_members(&topology, &analytics, 1, 90);
    await_members(&topology, &user_state, 1, 90);

    let (events, model) = generate(300, 5, &uuid_hex8(), &format!("{sfx}-"));
    let (users, engagement) = (of_kind(&events, "user."), of_kind(&events, "engagement."));
    assert!(engagement.len() as u64 > 3 * HARD_LAG, "enough engagement events: {}", engagement.len());

    // ClickHouse goes away; events keep flowing through the gateway, users and engagement mixed.
    server.dev(&["down"]);
    let mut accepted: Vec<&Value> = Vec::new();
    let mut refused: Vec<&Value> = Vec::new();
    let (mut u, mut e) = (users.iter(), engagement.iter());
    let start = Instant::now();
    while refused.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(90), "no refusal after {} accepted", accepted.len());
        let chunk: Vec<&Value> = u.by_ref().take(5).chain(e.by_ref().take(25)).copied().collect();
        assert!(!chunk.is_empty(), "ran out of events before the gateway refused any");
        for (event, status) in chunk.iter().zip(gateway.batch(&chunk).await) {
            match status {
                201 => accepted.push(event),
                429 => refused.push(event),
                other => panic!("unexpected status {other} for {event}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused.iter().all(|e| e["event_type"].as_str().is_some_and(|t| t.starts_with("engagement."))),
        "only event types that feed the lagging projection are refused"
    );
    // The rest: user events still go in, engagement events are turned away.
    let rest_users: Vec<&Value> = u.copied().collect();
    for chunk in rest_users.chunks(50) {
        assert!(gateway.batch(chunk).await.iter().all(|s| *s == 201), "user events are not held back");
    }
    accepted.extend(rest_users);
    refused.extend(e.copied());
    let (status, retry_after, body) = gateway.single(refused[refused.len() - 1]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("backpressure")), "{body}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)), "Retry-After set");

    // The ClickHouse worker paused instead of buffering: it read about two batches, no more,
    // while its lag is past the hard threshold; its memory is that of an idle process.
    let paused_by = Instant::now();
    // Not `metric(..) < 1.0`: NaN (no answer from the metrics endpoint) is no pause.
    let paused = || metric(&metrics_addr, "sluice_paused_partitions") >= 1.0;
    while !paused() {
        assert!(paused_by.elapsed() < Duration::from_secs(60), "the analytics worker did not pause");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let consumed = metric(&metrics_addr, "sluice_events_consumed_total");
    // A NaN (no answer) would read as 0 below.
    assert!(consumed.is_finite(), "sluice_events_consumed_total: {consumed}");
    let consumed = consumed as u64;
    let accepted_engagement =
        accepted.iter().filter(|e| e["event_type"].as_str().is_some_and(|t| t.starts_with("engagement."))).count()
            as u64;
    assert!(consumed <= 3 * BATCH, "read {consumed} records while its sink is down: not bounded by the batches");
    assert!(accepted_engagement >= HARD_LAG, "accepted {accepted_engagement} before refusing");
    let lag = sluice_lag_messages(&topology, &analytics);
    assert!(lag >= HARD_LAG, "lag {lag} grows while ClickHouse is down");
    let rss = rss_kib(analytics_worker.0.id());
    assert!(rss < 256 * 1024, "analytics worker uses {rss} KiB");
    eprintln!(
        "while ClickHouse was down: accepted {} events ({accepted_engagement} engagement), refused {}; \
         analytics worker read {consumed} records, lag {lag}, RSS {rss} KiB",
        accepted.len(),
        refused.len()
    );

    // Couchbase kept up meanwhile: every user event is projected.
    await_caught_up(&format!("sluice.{user_state}"), &[format!("users_{sfx}")], 60).await;
    let cb = within("couchbase connect", 30, Couchbase::connect(&connections().couchbase)).await.expect("couchbase");
    await_user_docs(&cb, &model, 30).await;

    // ClickHouse is back: the worker resumes and drains its lag to 0; intake reopens, and the
    // refused events go in on a retry.
    server.dev(&["up", "clickhouse_compat"]);
    await_caught_up(&format!("sluice.{analytics}"), &[format!("engagement_{sfx}")], 120).await;
    assert_eq!(metric(&metrics_addr, "sluice_paused_partitions"), 0.0, "resumed");
    let reopened = Instant::now();
    let mut waiting = refused.clone();
    while !waiting.is_empty() {
        assert!(reopened.elapsed() < Duration::from_secs(60), "{} events still refused", waiting.len());
        let chunk: Vec<&Value> = waiting.iter().take(200).copied().collect();
        let statuses = gateway.batch(&chunk).await;
        let mut still = Vec::new();
        for (event, status) in chunk.iter().zip(statuses) {
            match status {
                201 => accepted.push(event),
                429 => still.push(*event),
                other => panic!("unexpected status {other} for {event}"),
            }
        }
        still.extend(waiting.iter().skip(200));
        if !still.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        waiting = still;
    }
    await_caught_up(&format!("sluice.{analytics}"), &[format!("engagement_{sfx}")], 120).await;
    assert_eq!(sluice_lag_messages(&topology, &analytics), 0, "lag drained");

    // Nothing lost, nothing doubled: ClickHouse holds exactly the engagement events (all of
    // them accepted in the end), each once.
    let conn = ClickHouseConnection::plain(server.url());
    let ch = ClickHouse::connect(&conn).await.expect("clickhouse");
    let ids: Vec<String> = ch
        .client
        .query(&format!("SELECT toString(event_id) FROM events_{sfx} FINAL"))
        .fetch_all()
        .await
        .expect("event ids");
    let expected: BTreeSet<String> =
        engagement.iter().map(|e| e["event_id"].as_str().expect("event_id").to_owned()).collect();
    assert_eq!(ids.len(), expected.len(), "each event once");
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), expected, "every engagement event");
    await_user_docs(&cb, &model, 30).await;

    for w in [analytics_worker, user_worker] {
        let (status, out) = w.terminate();
        assert!(status.success(), "clean shutdown: {out}");
    }
}
