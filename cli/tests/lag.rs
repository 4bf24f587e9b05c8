//! The lag monitor and `sluice lag` against the real Kafka: lag counts what was published and not
//! yet processed, per partition, with the age of the oldest such event; a worker that catches up
//! brings it to zero; small thresholds in a test topology move the backpressure state through
//! soft and hard, and the intake gate follows (critical event types slowed, never refused); the
//! CLI's table and JSON show the same numbers.
//!
//! Each test gets a fresh copy of the topology (its own topics and consumer groups).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use sluice_consumers::lag::{LagGate, LagMonitor};
use sluice_core::lag::{BackpressureState, IntakePolicy, LagSnapshot, ProjectionLag, Threshold};
use sluice_core::topology::Topology;
use sluice_producers::gateway::{Decision, IntakeGate};
use sluice_producers::{EventDraft, Publisher, PublisherOptions};
use sluice_tests::{connections, fresh_topology, unique, within};

mod common;
use common::*;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The process-wide Prometheus recorder, installed once for this test binary.
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().expect("install the recorder"))
}

/// The samples of `metric` whose labels include `projection="<projection>"`, as (labels, value).
fn samples(metric: &str, projection: &str) -> Vec<(String, f64)> {
    let label = format!("projection=\"{projection}\"");
    prometheus()
        .render()
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&label))
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().expect("sample value"))))
        .collect()
}

/// A fresh topology (its text passed through `edit`) with its topics created and schemas
/// registered; its path and the loaded topology.
fn prepare(prefix: &str, edit: impl FnOnce(String) -> String) -> (String, std::path::PathBuf, Arc<Topology>) {
    let sfx = unique(prefix);
    let path = fresh_topology(&sfx);
    let text = std::fs::read_to_string(&path).expect("read topology");
    std::fs::write(&path, edit(text)).expect("write topology");
    run_ok(sluice(&path).args(["topics", "apply"]));
    run_ok(sluice(&path).args(["schemas", "register"]));
    let topology = Arc::new(Topology::load(&path).unwrap_or_else(|e| panic!("{e}")));
    (sfx, path, topology)
}

fn publisher(topology: &Arc<Topology>) -> Publisher {
    Publisher::new(Arc::clone(topology), &connections(), PublisherOptions::new("lag-test")).expect("publisher")
}

/// Where one published event landed, and the wall-clock window in which Kafka stamped it.
struct Published {
    partition: i32,
    sent_ms: i64,
    acked_ms: i64,
}

async fn publish_users(p: &Publisher, prefix: &str, n: usize) -> Vec<Published> {
    let mut out = Vec::new();
    for i in 0..n {
        let draft = EventDraft::new("user.registered", format!("{prefix}-u{i}"), 1).payload(&json!({
            "email": format!("u{i}@example.com"), "display_name": format!("User {i}"), "country": "NL"
        }));
        let sent_ms = now_ms();
        let d = within("publish", 30, p.publish(draft)).await.expect("publish user");
        out.push(Published { partition: d.partition, sent_ms, acked_ms: now_ms() });
    }
    out
}

async fn publish_session(p: &Publisher, id: &str) {
    let draft = EventDraft::new("session.started", id, 1)
        .payload(&json!({"user_id": "u", "device": "web", "ip_country": null, "user_agent": null}));
    within("publish", 30, p.publish(draft)).await.expect("publish session");
}

/// Waits until the monitor publishes a snapshot satisfying `ok`; fails with the last one.
async fn await_snapshot(
    rx: &mut watch::Receiver<LagSnapshot>,
    secs: u64,
    what: &str,
    ok: impl Fn(&LagSnapshot) -> bool,
) -> LagSnapshot {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        {
            let s = rx.borrow_and_update();
            if s.taken_at_ms > 0 && ok(&s) {
                return s.clone();
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
            panic!("{what}: not within {secs}s; last snapshot:\n{:#?}", *rx.borrow());
        }
    }
}

fn projection<'a>(s: &'a LagSnapshot, name: &str) -> &'a ProjectionLag {
    s.projections.get(name).unwrap_or_else(|| panic!("no {name} in {s:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_unprocessed_events_until_a_worker_catches_up() {
    let (sfx, path, topology) = prepare("lag", |t| t);
    let user_state = format!("user_state_{sfx}");
    let analytics = format!("analytics_{sfx}");
    let users = format!("users_{sfx}");
    let kafka = connections().kafka;

    // Nothing published yet: no lag anywhere.
    let empty = within("snapshot", 60, LagMonitor::snapshot_once(&topology, &kafka)).await.expect("snapshot");
    for (name, p) in &empty.projections {
        assert_eq!((p.lag_messages, p.state, &p.error), (0, BackpressureState::Normal, &None), "{name}");
        assert_eq!(p.age, Some(Duration::ZERO), "{name}");
    }

    let publisher = publisher(&topology);
    let published = publish_users(&publisher, &sfx, 40).await;
    let mut expected: BTreeMap<i32, (u64, &Published)> = BTreeMap::new();
    for p in &published {
        expected.entry(p.partition).or_insert((0, p)).0 += 1;
    }
    // Some age to measure: time itself must pass (an age is the wall-clock distance to a record's
    // timestamp, stamped with this process's clock), until the first record of every partition is
    // at least 1.5 s old — what the checks below ask of each partition's age.
    let ripe = expected.values().map(|(_, first)| first.acked_ms).max().expect("published") + 1_500;
    tokio::time::sleep(Duration::from_millis(u64::try_from(ripe - now_ms()).unwrap_or(0))).await;

    let s = within("snapshot", 60, LagMonitor::snapshot_once(&topology, &kafka)).await.expect("snapshot");
    let p = projection(&s, &user_state);
    assert_eq!(p.error, None);
    assert_eq!(p.group, format!("sluice.{user_state}"));
    // user_state also reads the legacy app's CDC topics: nothing was written there.
    let (users_parts, cdc_parts): (Vec<_>, Vec<_>) = p.partitions.iter().partition(|x| x.topic == users);
    assert_eq!(users_parts.len(), 6, "every partition of the users topic: {p:#?}");
    assert!(cdc_parts.iter().all(|x| x.lag_messages == 0), "{cdc_parts:?}");
    assert_eq!(p.lag_messages, 40);
    for part in users_parts {
        assert_eq!((part.topic.as_str(), part.committed), (users.as_str(), None), "no commit yet");
        match expected.get(&part.partition) {
            None => assert_eq!((part.lag_messages, part.age), (0, Some(Duration::ZERO)), "{part:?}"),
            Some((count, first)) => {
                assert_eq!(part.lag_messages, *count, "{part:?}");
                assert_eq!(part.high_watermark - part.low_watermark, *count as i64);
                // The oldest unprocessed record is the first published there: Kafka stamped it
                // between the call and the acknowledgement.
                let age = part.age.expect("age known").as_millis() as i64;
                let (min, max) = (s.taken_at_ms - first.acked_ms, s.taken_at_ms - first.sent_ms);
                assert!(min - 2 <= age && age <= max + 2, "age {age} ms outside [{min}, {max}]: {part:?}");
                assert!(age >= 1_500, "published 1.5 s ago: {age}");
            }
        }
    }
    let oldest = published.iter().map(|p| p.sent_ms).min().expect("published");
    assert!(p.age.expect("age").as_millis() as i64 <= s.taken_at_ms - oldest + 2, "projection age is the max");
    assert_eq!(p.state, BackpressureState::Normal, "40 is far below soft_lag = 10000");
    // analytics reads the same users partitions (and two more topics, empty), under its own group.
    let a = projection(&s, &analytics);
    assert_eq!((a.lag_messages, a.partitions.len()), (40, 6 + 6 + 12 + 3 + 3 + 3));

    // `sluice lag --json` is the same snapshot, restricted to the projection asked for.
    let out = run_ok(sluice(&path).args(["lag", "--json", "--projection", &user_state]));
    let cli: LagSnapshot = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(cli.projections.keys().collect::<Vec<_>>(), vec![&user_state]);
    let c = projection(&cli, &user_state);
    let offsets = |p: &ProjectionLag| {
        p.partitions.iter().map(|x| (x.partition, x.high_watermark, x.committed, x.lag_messages)).collect::<Vec<_>>()
    };
    assert_eq!(offsets(c), offsets(p));
    assert_eq!((c.lag_messages, c.state), (40, BackpressureState::Normal));
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(raw["projections"][&user_state]["lag_seconds"].as_f64().is_some_and(|s| s >= 1.5), "{raw}");

    // The table: one row per partition, a total, the state.
    let out = run_ok(sluice(&path).args(["lag", "--projection", &user_state]));
    let table = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("PROJECTION") && lines[0].contains("LAG") && lines[0].contains("AGE"), "{table}");
    // 6 partitions of users, 3 + 3 of the legacy CDC topics, the total.
    assert_eq!(lines.iter().filter(|l| l.starts_with(&user_state)).count(), 6 + 6 + 1, "{table}");
    let total = lines.iter().find(|l| l.contains("(total)")).expect("total row");
    assert!(total.contains(" normal ") && total.split_whitespace().any(|w| w == "40"), "{total}");

    // A worker catches up: the watched lag drains to zero, the state is normal, every partition
    // committed at its high watermark. analytics, without a worker, still lags.
    let shutdown = CancellationToken::new();
    let mut rx = LagMonitor::spawn(Arc::clone(&topology), &kafka, Duration::from_millis(500), shutdown.clone())
        .expect("monitor");
    let worker = WorkerProcess::start(&path, &user_state, None);
    let s = await_snapshot(&mut rx, 120, "user_state caught up", |s| {
        s.projections.get(&user_state).is_some_and(|p| p.lag_messages == 0)
    })
    .await;
    let p = projection(&s, &user_state);
    assert_eq!((p.state, p.trigger, p.age), (BackpressureState::Normal, None, Some(Duration::ZERO)));
    for part in &p.partitions {
        let expected_commit = (part.high_watermark > 0).then_some(part.high_watermark);
        assert_eq!(part.committed, expected_commit, "{part:?}");
    }
    assert_eq!(projection(&s, &analytics).lag_messages, 40);
    drop(worker);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_follow_the_thresholds_and_the_gate_follows_the_states() {
    // Small thresholds: user_state soft at 5 messages, hard at 20; session_state soft by age, 2 s.
    let (sfx, path, topology) = prepare("lagbp", |text| {
        let users = "soft_lag = 10000\nhard_lag = 100000\nsoft_lag_age = \"30s\"\nhard_lag_age = \"5m\"";
        let sessions = "soft_lag = 50000\nhard_lag = 500000\nsoft_lag_age = \"1m\"\nhard_lag_age = \"10m\"";
        assert!(text.contains(users) && text.contains(sessions), "the repository's thresholds changed");
        text.replace(users, "soft_lag = 5\nhard_lag = 20\nsoft_lag_age = \"1h\"\nhard_lag_age = \"2h\"")
            .replace(sessions, "soft_lag = 50000\nhard_lag = 500000\nsoft_lag_age = \"2s\"\nhard_lag_age = \"1h\"")
    });
    let user_state = format!("user_state_{sfx}");
    let session_state = format!("session_state_{sfx}");
    let kafka = connections().kafka;
    prometheus();
    let shutdown = CancellationToken::new();
    let mut rx = LagMonitor::spawn(Arc::clone(&topology), &kafka, Duration::from_millis(300), shutdown.clone())
        .expect("monitor");
    let gate = LagGate::new(rx.clone(), Arc::clone(&topology), IntakePolicy::default());
    let publisher = publisher(&topology);
    let lag_is =
        |name: String, n: u64| move |s: &LagSnapshot| s.projections.get(&name).is_some_and(|p| p.lag_messages == n);

    publish_users(&publisher, &format!("{sfx}-a"), 3).await;
    let s = await_snapshot(&mut rx, 30, "3 behind", lag_is(user_state.clone(), 3)).await;
    assert_eq!(projection(&s, &user_state).state, BackpressureState::Normal);
    assert_eq!(gate.check("user.registered"), Decision::Allow);

    publish_users(&publisher, &format!("{sfx}-b"), 4).await;
    let s = await_snapshot(&mut rx, 30, "7 behind", lag_is(user_state.clone(), 7)).await;
    let p = projection(&s, &user_state);
    assert_eq!(p.state, BackpressureState::Soft);
    assert_eq!(p.trigger.map(|t| (t.threshold, t.value, t.limit)), Some((Threshold::SoftLag, 7, 5)));
    // Soft: slowed. The first events pass on the bucket's burst, then they wait.
    let paced: Vec<Decision> = (0..2_000).map(|_| gate.check("user.registered")).collect();
    assert!(paced.iter().all(|d| matches!(d, Decision::Allow | Decision::Delay(_))), "soft never refuses");
    assert!(paced.iter().any(|d| matches!(d, Decision::Delay(_))), "2000 at once exceed the soft rate");
    assert_eq!(gate.check("session.started"), Decision::Allow, "session_state is not behind");

    publish_users(&publisher, &format!("{sfx}-c"), 15).await;
    let s = await_snapshot(&mut rx, 30, "22 behind", lag_is(user_state.clone(), 22)).await;
    let p = projection(&s, &user_state);
    assert_eq!(p.state, BackpressureState::Hard);
    assert_eq!(p.trigger.map(|t| (t.threshold, t.value, t.limit)), Some((Threshold::HardLag, 22, 20)));
    assert!(
        matches!(gate.check("user.registered"), Decision::Refuse { retry_after } if retry_after >= Duration::from_secs(1))
    );
    assert!(matches!(gate.check_batch("user.email_changed", 10), Decision::Refuse { .. }));
    // The gauges and the decision counter say the same.
    let lag: Vec<(String, f64)> = samples("sluice_lag_messages", &user_state);
    let users_lag: Vec<&(String, f64)> = lag.iter().filter(|(k, _)| k.contains("topic=\"users_")).collect();
    assert_eq!((users_lag.len(), lag.iter().map(|(_, v)| v).sum::<f64>()), (6, 22.0), "{lag:?}");
    assert!(lag.iter().all(|(k, _)| k.contains("partition=\"")), "{lag:?}");
    assert_eq!(samples("sluice_backpressure_state", &user_state).first().map(|s| s.1), Some(2.0));
    assert_eq!(
        samples("sluice_lag_seconds", &user_state).iter().filter(|(k, _)| k.contains("topic=\"users_")).count(),
        6
    );
    let refusals = samples("sluice_backpressure_decisions_total", &user_state);
    assert!(
        refusals
            .iter()
            .any(|(k, v)| k.contains("decision=\"refuse\"") && k.contains("threshold=\"hard_lag\"") && *v >= 2.0),
        "{refusals:?}"
    );
    // user.deleted is critical for user_state: slowed, never refused.
    assert!(matches!(gate.check("user.deleted"), Decision::Delay(_)), "{:?}", gate.check("user.deleted"));

    // The one-shot CLI (no history) agrees.
    let out = run_ok(sluice(&path).args(["lag", "--json"]));
    let cli: LagSnapshot = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (projection(&cli, &user_state).state, projection(&cli, &user_state).lag_messages),
        (BackpressureState::Hard, 22)
    );

    // Age: one session event, older than soft_lag_age = 2s after a while.
    publish_session(&publisher, &format!("{sfx}-s1")).await;
    let s = await_snapshot(&mut rx, 30, "session_state soft by age", |s| {
        s.projections.get(&session_state).is_some_and(|p| p.state == BackpressureState::Soft)
    })
    .await;
    let p = projection(&s, &session_state);
    assert_eq!(p.lag_messages, 1);
    let t = p.trigger.expect("trigger");
    assert!(t.threshold == Threshold::SoftLagAge && t.value >= 2_000 && t.limit == 2_000, "{t:?}");
    assert!(matches!(gate.check("session.started"), Decision::Allow | Decision::Delay(_)));

    // `sluice lag --watch --json`: one document per line, refreshed, until interrupted.
    let mut watch = sluice(&path)
        .args(["lag", "--watch", "--json", "--interval", "300ms", "--projection", &user_state])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lag --watch");
    // Three documents printed (the first and two refreshes), then Ctrl-C.
    let out = tokio::task::spawn_blocking(move || {
        let stdout = watch.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut lines = Vec::new();
        let started = Instant::now();
        while lines.len() < 3 {
            match rx.recv_timeout(Duration::from_secs(30).saturating_sub(started.elapsed())) {
                Ok(line) => lines.push(line),
                Err(e) => {
                    let _ = watch.kill();
                    panic!("sluice lag --watch printed {} of 3 documents within 30 s ({e}): {lines:?}", lines.len());
                }
            }
        }
        let _ = Command::new("kill").args(["-INT", &watch.id().to_string()]).status();
        // What it printed until its stdout closed, then its exit status.
        let started = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_secs(10).saturating_sub(started.elapsed())) {
                Ok(line) => lines.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = watch.kill();
                    panic!("sluice lag --watch did not stop on SIGINT");
                }
            }
        }
        loop {
            if let Some(status) = watch.try_wait().expect("try_wait") {
                return (status, lines);
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = watch.kill();
                panic!("sluice lag --watch closed its stdout but did not exit on SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("join");
    assert!(out.0.success(), "Ctrl-C ends --watch cleanly: {}", out.0);
    let docs: Vec<LagSnapshot> =
        out.1.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(docs.iter().all(|d| d.projections.len() == 1 && projection(d, &user_state).lag_messages == 22));
    assert!(docs.windows(2).all(|w| w[0].taken_at_ms < w[1].taken_at_ms));

    // The worker drains user_state: from hard straight to normal, the gate lets everything in.
    let worker = WorkerProcess::start(&path, &user_state, None);
    let s = await_snapshot(&mut rx, 120, "user_state drained", lag_is(user_state.clone(), 0)).await;
    assert_eq!(projection(&s, &user_state).state, BackpressureState::Normal);
    assert_eq!(gate.check("user.registered"), Decision::Allow);
    drop(worker);
    shutdown.cancel();
}
