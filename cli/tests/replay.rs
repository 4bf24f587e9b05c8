//! `sluice replay` end to end, through the real binary and services: events published in two
//! waves with an instant T between them and projected into Couchbase; a replay from T plans
//! exactly the second wave (per partition), changes nothing without `--yes`, is refused while a
//! worker runs, and once applied makes the next worker consume exactly the second wave again and
//! leave the documents as they were (idempotence). A replay from `earliest` re-projects everything,
//! with the same result. A bounded replay (`--to`) re-projects exactly the events between its
//! bounds itself, with progress and a summary, and never moves the group.
//!
//! Each test gets a fresh copy of the topology (its own topics, consumer groups, documents).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_consumers::replay::group_members;
use sluice_consumers::sinks::couchbase::Couchbase;
use sluice_core::lag::LagSnapshot;
use sluice_core::replay::fmt_rfc3339_ms;
use sluice_tests::domain::generate;
use sluice_tests::{connections, fresh_topology, unique, within};

mod common;
use common::*;

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `sluice work --exit-at-end` to completion and returns N of its `consumed N` summary.
fn work_to_end(topology: &Path, projection: &str) -> u64 {
    let out = run_ok(sluice(topology).args([
        "work",
        "--projection",
        projection,
        "--exit-at-end",
        "--consumer-config",
        "session.timeout.ms=6000",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("projection {projection}: consumed ")))
        .unwrap_or_else(|| panic!("no summary line: {}", text(&out)));
    line.split("consumed ").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok()).expect("count")
}

/// The projection's offsets as `sluice lag --json` reads them: partition → (high, committed).
fn offsets(topology: &Path, projection: &str) -> BTreeMap<i32, (i64, Option<i64>)> {
    let out = run_ok(sluice(topology).args(["lag", "--json", "--projection", projection]));
    let snapshot: LagSnapshot = serde_json::from_slice(&out.stdout).expect("lag json");
    let p = snapshot.projections.get(projection).expect("projection in the lag snapshot");
    assert_eq!(p.error, None);
    p.partitions.iter().map(|x| (x.partition, (x.high_watermark, x.committed))).collect()
}

/// Every user document of the model (without `_sluice`), `None` when missing.
/// The `(total)` row's events count of a printed plan.
fn planned_total(stdout: &str) -> u64 {
    let total = stdout.lines().find(|l| l.starts_with("(total)")).unwrap_or_else(|| panic!("no total row:\n{stdout}"));
    total.split_whitespace().last().and_then(|n| n.parse().ok()).expect("total events")
}

/// Per partition, the EVENTS column of a printed plan.
fn planned_rows(stdout: &str, topic: &str) -> BTreeMap<i32, u64> {
    stdout
        .lines()
        .filter(|l| l.starts_with(&format!("{topic} ")))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[1].parse().expect("partition"), cells[cells.len() - 1].parse().expect("events"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_a_timestamp_re_projects_exactly_what_followed_it() {
    let sfx = unique("replay");
    let topology = fresh_topology(&sfx);
    let dir = topology.parent().expect("dir").to_path_buf();
    let projection = format!("user_state_{sfx}");
    let users = format!("users_{sfx}");
    let group = format!("sluice.{projection}");
    let kafka = connections().kafka;
    run_ok(sluice(&topology).args(["topics", "apply"]));
    run_ok(sluice(&topology).args(["schemas", "register"]));

    let (events, model) = generate(60, 7, &unique("r").trim_start_matches("r_")[..8], &format!("{sfx}-"));
    let user_events: Vec<&Value> =
        events.iter().filter(|e| e["event_type"].as_str().is_some_and(|t| t.starts_with("user."))).collect();
    let (wave1, wave2) = user_events.split_at(user_events.len() / 2);

    // Two waves, T between them; Kafka stamps each record when the producer sends it.
    run_ok(sluice(&topology).args(["publish", "--file"]).arg(write_jsonl(&dir, "wave1.jsonl", wave1)));
    let after_wave1 = offsets(&topology, &projection);
    // T strictly between the waves. Time itself must pass, but only a millisecond each side: the
    // records carry CreateTime stamps from the producer's clock (this machine's, millisecond
    // resolution) taken when `sluice publish` sent them, so every wave-1 record is stamped at or
    // before `published` (the process has exited), and every wave-2 record at or after its start.
    let published = now_ms();
    wait_until("the clock moves past the end of wave 1", 5, || now_ms() > published);
    let t_ms = now_ms();
    let t = fmt_rfc3339_ms(t_ms);
    wait_until("the clock moves past T", 5, || now_ms() > t_ms);
    run_ok(sluice(&topology).args(["publish", "--file"]).arg(write_jsonl(&dir, "wave2.jsonl", wave2)));
    let after_wave2 = offsets(&topology, &projection);
    let second: BTreeMap<i32, u64> = after_wave2
        .iter()
        .map(|(p, (high, _))| (*p, (high - after_wave1.get(p).map_or(0, |(h, _)| *h)) as u64))
        .collect();
    assert_eq!(second.values().sum::<u64>(), wave2.len() as u64, "{second:?}");

    // Project everything; the documents are the model.
    assert_eq!(work_to_end(&topology, &projection), user_events.len() as u64);
    let cb = within("couchbase", 30, Couchbase::connect(&connections().couchbase)).await.expect("couchbase");
    let snapshot = user_docs(&cb, &model).await;
    let expected: Vec<(String, Option<Value>)> = model
        .users
        .iter()
        .map(|(u, d)| (u.clone(), Some(Value::Object(d.clone()))))
        .chain(model.erased.iter().map(|u| (u.clone(), None)))
        .collect();
    assert_eq!(snapshot, expected, "the first run projects the model");
    let caught_up = offsets(&topology, &projection);
    assert!(caught_up.values().all(|(high, c)| *high == 0 || *c == Some(*high)), "{caught_up:?}");

    // Dry run: the plan is the second wave, per partition; nothing changes.
    let out = run_ok(sluice(&topology).args(["replay", "--projection", &projection, "--from", &t]));
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{plan}");
    assert!(plan.contains("dry run: pass --yes to apply"), "{plan}");
    assert_eq!(planned_total(&plan), wave2.len() as u64, "{plan}");
    assert_eq!(planned_rows(&plan, &users), second, "{plan}");
    assert_eq!(offsets(&topology, &projection), caught_up, "a dry run commits nothing");

    // A running worker: refused, with how to stop it; nothing changes.
    let worker = WorkerProcess::start(&topology, &projection, None);
    let start = Instant::now();
    while group_members(&kafka, &group).await.expect("members").is_empty() {
        assert!(start.elapsed() < Duration::from_secs(60), "the worker did not join its group");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out =
        sluice(&topology).args(["replay", "--projection", &projection, "--from", &t, "--yes"]).output().expect("run");
    assert!(!out.status.success(), "refused while a worker runs: {}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert!(stderr.contains(&group) && stderr.contains("live member"), "{stderr}");
    assert!(stderr.contains(&format!("SIGTERM the `sluice work --projection {projection}` processes")), "{stderr}");
    assert!(worker.terminate().0.success());
    assert_eq!(offsets(&topology, &projection), caught_up, "a refused replay commits nothing");

    // Stopped: applied. The committed offsets are the plan's.
    let start = Instant::now();
    while !group_members(&kafka, &group).await.expect("members").is_empty() {
        assert!(start.elapsed() < Duration::from_secs(60), "the worker did not leave its group");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = run_ok(sluice(&topology).args(["replay", "--projection", &projection, "--from", &t, "--yes"]));
    let applied = String::from_utf8_lossy(&out.stdout);
    println!("{applied}");
    assert!(applied.contains("applied: committed new offsets"), "{applied}");
    for (p, (high, committed)) in offsets(&topology, &projection) {
        let back = second.get(&p).copied().unwrap_or(0) as i64;
        let expected = if back == 0 { caught_up[&p].1 } else { Some(high - back) };
        assert_eq!(committed, expected, "partition {p}");
    }

    // The worker re-projects exactly the second wave; the documents are unchanged.
    assert_eq!(work_to_end(&topology, &projection), wave2.len() as u64);
    assert_eq!(user_docs(&cb, &model).await, snapshot, "re-projecting changes nothing");
    assert_eq!(offsets(&topology, &projection), caught_up);

    // From earliest: everything again, same documents.
    let out = run_ok(sluice(&topology).args(["replay", "--projection", &projection, "--from", "earliest", "--yes"]));
    assert_eq!(planned_total(&String::from_utf8_lossy(&out.stdout)), user_events.len() as u64);
    assert_eq!(work_to_end(&topology, &projection), user_events.len() as u64);
    assert_eq!(user_docs(&cb, &model).await, snapshot, "re-projecting everything changes nothing");

    // Bounded (`--to`): the command itself re-projects exactly the second wave, every event a
    // duplicate of what the documents hold, and leaves the group's offsets alone — even with a
    // worker running.
    let worker = WorkerProcess::start(&topology, &projection, None);
    let out = run_ok(sluice(&topology).args([
        "replay",
        "--projection",
        &projection,
        "--from",
        &t,
        "--to",
        "latest",
        "--yes",
    ]));
    let replayed = String::from_utf8_lossy(&out.stdout);
    println!("{replayed}");
    assert_eq!(planned_total(&replayed), wave2.len() as u64, "{replayed}");
    let n = wave2.len();
    assert!(
        replayed
            .contains(&format!("replayed: events read {n}, applied {n}, skipped as duplicates {n}, sent to the DLQ 0")),
        "{replayed}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("replaying {projection}: {n}/{n} events")), "progress lines: {stderr}");
    assert_eq!(user_docs(&cb, &model).await, snapshot, "a bounded replay changes nothing either");
    assert!(worker.terminate().0.success());
    assert_eq!(offsets(&topology, &projection), caught_up, "a bounded replay never moves the group");

    // Up to an explicit bound on one partition: only the records before it.
    let (p, (high, _)) = caught_up.iter().find(|(_, (high, _))| *high >= 2).expect("a partition with records");
    let to = format!("{users}:{p}:{}", high - 1);
    let out = run_ok(sluice(&topology).args([
        "replay",
        "--projection",
        &projection,
        "--from",
        "earliest",
        "--to",
        &to,
        "--yes",
    ]));
    let replayed = String::from_utf8_lossy(&out.stdout);
    let expected = user_events.len() as i64 - 1;
    assert!(replayed.contains(&format!("replayed: events read {expected}, applied {expected},")), "{replayed}");
    assert_eq!(user_docs(&cb, &model).await, snapshot);
}

#[test]
fn replay_refuses_bad_positions_with_clear_errors() {
    let sfx = unique("replaybad");
    let topology = fresh_topology(&sfx);
    let projection = format!("user_state_{sfx}");
    let out =
        sluice(&topology).args(["replay", "--projection", &projection, "--from", "yesterday"]).output().expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected `earliest`, `latest`, an RFC 3339 timestamp"),
        "{}",
        text(&out)
    );
    let out = sluice(&topology)
        .args(["replay", "--projection", &projection, "--from", "2026-11-26T05:30:00"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a time zone: Z or an offset"), "{}", text(&out));
    let out = sluice(&topology).args(["replay", "--projection", "nope", "--from", "earliest"]).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no projection \"nope\""), "{}", text(&out));
}
