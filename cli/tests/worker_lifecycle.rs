//! A worker's life under a supervisor, through the real binary and the real services: started
//! while its sink does not answer, it waits (saying why, not ready) and starts once the sink
//! answers — a TCP proxy put in front of the rig's real server at the address it was given; a
//! sink that refuses its configuration stops it with a clear message; SIGKILLed and restarted
//! with the same `--instance-id`, it takes its partitions back at once instead of waiting out the
//! dead process's session.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_consumers::sinks::couchbase::Couchbase;
use sluice_tests::domain::generate;
use sluice_tests::{connections, fresh_topology, unique, within};
use tokio_util::sync::CancellationToken;

mod common;
use common::proxy::{authority, free_port, proxy};
use common::*;

/// The WARN line a worker writes once per attempt while its sink does not answer.
const WAITING: &str = "not ready: the sink does not answer; waiting for it";

/// Waits until the worker's log holds `n` lines containing `needle`; fails with the log.
async fn await_log(topology: &Path, log: &str, needle: &str, n: usize, secs: u64) -> String {
    let start = Instant::now();
    loop {
        let text = log_of(topology, log);
        if text.lines().filter(|l| l.contains(needle)).count() >= n {
            return text;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "no {n}× {needle:?} within {secs}s; log:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fresh topology with its topics and schemas; its path and suffix.
fn prepare(prefix: &str) -> (std::path::PathBuf, String) {
    let sfx = unique(prefix);
    let topology = fresh_topology(&sfx);
    run_ok(sluice(&topology).args(["topics", "apply"]));
    run_ok(sluice(&topology).args(["schemas", "register"]));
    (topology, sfx)
}

fn publish(topology: &Path, name: &str, events: &[Value]) {
    let all: Vec<&Value> = events.iter().collect();
    let dir = topology.parent().expect("dir");
    run_ok(sluice(topology).args(["publish", "--file"]).arg(write_jsonl(dir, name, &all)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_waits_for_an_absent_clickhouse_and_starts_once_it_answers() {
    let (topology, sfx) = prepare("wait_ch");
    let projection = format!("analytics_{sfx}");
    let (port, metrics_port) = (free_port(), free_port());
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let env = [("SLUICE_CLICKHOUSE_URL", format!("http://127.0.0.1:{port}"))];
    let mut w = WorkerProcess::spawn(&topology, &projection, &["--metrics-addr", &metrics_addr], &env, "ch");

    // Nothing listens: the worker keeps running, says why at WARN once per attempt, not ready.
    let log = await_log(&topology, "ch", WAITING, 3, 30).await;
    assert!(w.is_running(), "the worker must wait, not exit; log:\n{log}");
    let line = log.lines().find(|l| l.contains(WAITING)).unwrap_or_default();
    assert!(
        line.contains("WARN") && line.contains("retry_in=") && line.contains(&format!("127.0.0.1:{port}")),
        "{line}"
    );
    assert_eq!(metric(&metrics_addr, "sluice_worker_ready"), 0.0, "not ready while waiting");

    let (events, model) = generate(20, 5, &uuid_hex8(), &format!("{sfx}-"));
    publish(&topology, "all.jsonl", &events);

    // The sink comes up at that address: the real server, behind a proxy.
    let stop = CancellationToken::new();
    proxy(port, authority(&connections().clickhouse.url), stop.clone()).await;
    let topics: Vec<String> = ["users", "sessions", "engagement"].iter().map(|t| format!("{t}_{sfx}")).collect();
    await_caught_up(&format!("sluice.{projection}"), &topics, 120).await;
    await_log(&topology, "ch", "the sink answers: the worker starts", 1, 5).await;
    assert_eq!(metric(&metrics_addr, "sluice_worker_ready"), 1.0, "ready once projecting");

    let ch = sluice_consumers::sinks::clickhouse::ClickHouse::connect(&connections().clickhouse).await.expect("ch");
    let n: u64 =
        ch.client.query(&format!("SELECT toUInt64(count()) FROM events_{sfx} FINAL")).fetch_one().await.expect("count");
    assert_eq!(n, model.by_type.values().sum::<u64>(), "every event once");
    let (status, out) = w.terminate();
    assert!(status.success(), "{out}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_waits_for_an_absent_couchbase_and_starts_once_it_answers() {
    let (topology, sfx) = prepare("wait_cb");
    let projection = format!("user_state_{sfx}");
    let (port, metrics_addr) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let env = [("SLUICE_COUCHBASE_CONNSTR", format!("couchbase://127.0.0.1:{port}"))];
    let mut w = WorkerProcess::spawn(&topology, &projection, &["--metrics-addr", &metrics_addr], &env, "cb");
    // One attempt lasts up to the connect deadline (20 s) against an address where nobody answers.
    let log = await_log(&topology, "cb", WAITING, 1, 60).await;
    assert!(w.is_running(), "the worker must wait, not exit; log:\n{log}");
    assert!(log.contains(&format!("Couchbase at couchbase://127.0.0.1:{port} is unreachable")), "{log}");
    assert_eq!(metric(&metrics_addr, "sluice_worker_ready"), 0.0);

    let (events, model) = generate(10, 9, &uuid_hex8(), &format!("{sfx}-"));
    let users: Vec<Value> =
        events.into_iter().filter(|e| e["event_type"].as_str().is_some_and(|t| t.starts_with("user."))).collect();
    publish(&topology, "users.jsonl", &users);
    // The cluster comes up at that address: the proxy leads the SDK's bootstrap to a real node,
    // whose cluster map then names the others.
    let connstr = connections().couchbase.connstr;
    let node = authority(&connstr).split(',').next().unwrap_or_default().to_owned();
    let stop = CancellationToken::new();
    proxy(port, node, stop.clone()).await;
    let cb = within("couchbase", 30, Couchbase::connect(&connections().couchbase)).await.expect("couchbase");
    await_user_docs(&cb, &model, 90).await;
    assert_eq!(metric(&metrics_addr, "sluice_worker_ready"), 1.0);
    let (status, out) = w.terminate();
    assert!(status.success(), "{out}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_waiting_for_its_sink_stops_at_once_on_sigterm() {
    let (topology, sfx) = prepare("wait_stop");
    let env = [("SLUICE_CLICKHOUSE_URL", format!("http://127.0.0.1:{}", free_port()))];
    let mut w = WorkerProcess::spawn(&topology, &format!("analytics_{sfx}"), &[], &env, "stop");
    let log = await_log(&topology, "stop", WAITING, 1, 30).await;
    assert!(w.is_running(), "{log}");
    let started = Instant::now();
    let (status, out) = w.terminate();
    assert!(status.success(), "SIGTERM while waiting is a clean stop: {status}\n{out}");
    assert!(started.elapsed() < Duration::from_secs(10), "stopped in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_live_worker_with_the_same_instance_id_stops_the_first_with_a_clear_message() {
    let (topology, sfx) = prepare("fenced");
    let projection = format!("user_state_{sfx}");
    let args = ["--instance-id", "twin"];
    let mut first = WorkerProcess::spawn(&topology, &projection, &args, &[], "first");
    await_log(&topology, "first", "worker started", 1, 60).await;
    // Give the first one its partitions before the twin shows up.
    let cb = within("couchbase", 30, Couchbase::connect(&connections().couchbase)).await.expect("couchbase");
    project_next(&cb, &topology, &sfx, 1, 60).await;
    let second = WorkerProcess::spawn(&topology, &projection, &args, &[], "second");
    let status = first.wait_exit(60);
    let log = log_of(&topology, "first");
    assert!(!status.success(), "{log}");
    assert!(log.contains("another worker joined the group with this worker's instance id \"twin\""), "{log}");
    // The newer one projects.
    project_next(&cb, &topology, &sfx, 2, 30).await;
    let (status, out) = second.terminate();
    assert!(status.success(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_refuses_the_topology_stops_the_worker_with_a_clear_message() {
    let (topology, sfx) = prepare("refused");
    // A table of the projection's name that is not what sluice writes: a topology the sink
    // refuses (the rig's ClickHouse ignores credentials, so a wrong password cannot show it).
    let ch = sluice_consumers::sinks::clickhouse::ClickHouse::connect(&connections().clickhouse).await.expect("ch");
    let ddl = format!("CREATE TABLE events_{sfx} (something_else UInt8) ENGINE = MergeTree ORDER BY something_else");
    ch.client.query(&ddl).execute().await.expect("create a drifted table");
    let mut w = WorkerProcess::spawn(&topology, &format!("analytics_{sfx}"), &[], &[], "refused");
    let status = w.wait_exit(60);
    let log = log_of(&topology, "refused");
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("refuses the worker's configuration (waiting cannot fix this)")
            && log.contains(&format!("events_{sfx}")),
        "{log}"
    );
    assert!(!log.contains(WAITING), "a configuration error is not waited for:\n{log}");
    ch.client.query(&format!("DROP TABLE events_{sfx}")).execute().await.expect("drop");
}

/// Publishes a fresh set of users and returns the time until their documents are all there.
async fn project_next(cb: &Couchbase, topology: &Path, sfx: &str, round: u32, secs: u64) -> Duration {
    let (events, model) = generate(15, u64::from(round), &uuid_hex8(), &format!("{sfx}-r{round}-"));
    let users: Vec<Value> =
        events.into_iter().filter(|e| e["event_type"].as_str().is_some_and(|t| t.starts_with("user."))).collect();
    let start = Instant::now();
    publish(topology, &format!("round{round}.jsonl"), &users);
    await_user_docs(cb, &model, secs).await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_and_restarted_with_its_instance_id_resumes_at_once() {
    let (topology, sfx) = prepare("handover");
    let projection = format!("user_state_{sfx}");
    let cb = within("couchbase", 30, Couchbase::connect(&connections().couchbase)).await.expect("couchbase");
    let id = format!("worker-{sfx}");
    // The default session timeout (45 s): what a restart without an instance id waits out.
    let args = ["--instance-id", id.as_str()];
    let mut w = WorkerProcess::spawn(&topology, &projection, &args, &[], "handover");
    project_next(&cb, &topology, &sfx, 1, 90).await;

    // Two quick kills, each restart with the same id: the events published after each restart
    // are projected well within the 45 s session the dead process leaves behind.
    for round in 2..=3 {
        w.kill();
        w = WorkerProcess::spawn(&topology, &projection, &args, &[], "handover");
        let took = project_next(&cb, &topology, &sfx, round, 15).await;
        eprintln!("round {round}: published and projected {took:?} after the SIGKILL and restart");
    }
    let (status, out) = w.terminate();
    assert!(status.success(), "{out}");
}
