//! `sluice rebuild` end to end, through the real binary and services:
//!
//! - Couchbase: a rebuild while events keep flowing and the live worker runs ends with the new
//!   collection equal to the model of every event, then the pointer swap; a reader resolving the
//!   pointer never misses a document meanwhile; the live worker writes to the new collection after
//!   the swap; `--drop-old` removes the old collection.
//! - ClickHouse (the modern engine and 18.16): the same for the raw table, the rollup and the
//!   users' state, swapped with EXCHANGE or RENAME; a reader never gets an error or fewer events
//!   than before the rebuild.
//! - A rebuild killed mid-way (the failpoint) resumes and finishes with the same result;
//!   `--abort` removes the partial version and leaves live untouched.
//! - `--key` restores a deliberately corrupted document and writes no other document.
//!
//! Each test gets a fresh copy of the topology (its own topics, groups, collections, tables).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use couchbase::collection::Collection;
use couchbase::error::ErrorKind;
use serde_json::{Value, json};
use sluice_consumers::sinks::couchbase::service::deadline;
use sluice_consumers::sinks::couchbase::{Couchbase, Error as CbError, pointer};
use sluice_tests::domain::{Model, generate};
use sluice_tests::{connections, fresh_topology, unique, within};

mod common;
use common::*;

/// A fresh topology whose user_state projection writes to its own named collection (so its old
/// version can be dropped) with batches of `batch` events.
fn couchbase_topology(sfx: &str, batch: u32) -> (PathBuf, String, String) {
    let path = fresh_topology(sfx);
    let collection = format!("users_{sfx}");
    let original = std::fs::read_to_string(&path).expect("topology");
    let mut text = original.replacen(
        "scope = \"_default\"\ncollection = \"_default\"\ndocument_id = \"user::",
        &format!("scope = \"_default\"\ncollection = \"{collection}\"\ndocument_id = \"user::"),
        1,
    );
    text = text.replacen("batch_size = 500", &format!("batch_size = {batch}"), 1);
    assert_ne!(text, original, "the user_state block moved: update this test");
    std::fs::write(&path, text).expect("write topology");
    (path, format!("user_state_{sfx}"), collection)
}

fn user_events(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["event_type"].as_str().is_some_and(|t| t.starts_with("user."))).collect()
}

fn expected_docs(model: &Model) -> Vec<(String, Option<Value>)> {
    model
        .users
        .iter()
        .map(|(u, d)| (u.clone(), Some(Value::Object(d.clone()))))
        .chain(model.erased.iter().map(|u| (u.clone(), None)))
        .collect()
}

/// One document without its `_sluice` bookkeeping, with its CAS; `None` when missing.
async fn doc(coll: &Collection, key: &str) -> Option<(Value, u64)> {
    match deadline("get", Duration::from_secs(10), coll.get(key, None)).await {
        Ok(r) => {
            let mut v: Value = r.content_as().expect("json doc");
            if let Some(o) = v.as_object_mut() {
                o.remove("_sluice");
            }
            Some((v, r.cas()))
        }
        Err(CbError::Couchbase { source, .. }) if source.kind() == &ErrorKind::DocumentNotFound => None,
        Err(e) => panic!("get {key}: {e}"),
    }
}

async fn docs(coll: &Collection, model: &Model) -> Vec<(String, Option<Value>)> {
    let mut out = Vec::new();
    for uid in model.users.keys().chain(model.erased.iter()) {
        out.push((uid.clone(), doc(coll, &format!("user::{uid}")).await.map(|(v, _)| v)));
    }
    out
}

/// The collection readers use now: the pointer's, else `fallback`.
async fn live_collection(cb: &Couchbase, projection: &str, fallback: &str) -> (Collection, String) {
    let name = match pointer::read(&cb.bucket, projection).await.expect("pointer") {
        Some(p) => p.collection,
        None => fallback.to_owned(),
    };
    (cb.collection(Some("_default"), Some(&name)), name)
}

async fn await_docs(cb: &Couchbase, projection: &str, fallback: &str, model: &Model, secs: u64) {
    let expected = expected_docs(model);
    let start = Instant::now();
    loop {
        let (coll, name) = live_collection(cb, projection, fallback).await;
        let got = docs(&coll, model).await;
        if got == expected {
            return;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let diff = got.iter().zip(&expected).find(|(g, e)| g != e);
            panic!("{name} did not converge to the model within {secs}s; first difference (got, expected): {diff:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn collection_exists(cb: &Couchbase, name: &str) -> bool {
    Couchbase::collection_exists(&cb.bucket, "_default", name).await.expect("list collections")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couchbase_rebuild_while_events_flow_swaps_without_a_gap_then_drops_the_old_version() {
    let sfx = unique("rb");
    let (topology, projection, original) = couchbase_topology(&sfx, 50);
    setup(&topology);
    run_ok(sluice(&topology).args(["couchbase", "setup"]));
    let (events, model) = generate(60, 21, &uuid_hex8(), &format!("{sfx}-"));
    let users = user_events(&events);
    let (wave1, rest) = users.split_at(users.len() / 2);
    let (wave2, wave3) = rest.split_at(rest.len() / 2);

    publish(&topology, "wave1.jsonl", wave1);
    let live = WorkerProcess::start(&topology, &projection, None);
    let cb = within("couchbase", 30, Couchbase::connect(&connections().couchbase)).await.expect("couchbase");
    // Documents the live worker projected before the rebuild: a reader must never miss one.
    let start = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < 10 {
        assert!(start.elapsed() < Duration::from_secs(60), "the live worker projected nothing");
        let (coll, _) = live_collection(&cb, &projection, &original).await;
        seen.clear();
        for (uid, _) in model.users.iter().take(20) {
            if doc(&coll, &format!("user::{uid}")).await.is_some() {
                seen.push(uid.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let misses = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, misses, reads, projection, original) =
            (stop.clone(), misses.clone(), reads.clone(), projection.clone(), original.clone());
        let conn = connections().couchbase;
        tokio::spawn(async move {
            let cb = Couchbase::connect(&conn).await.expect("couchbase");
            while !stop.load(Ordering::Relaxed) {
                let (coll, _) = live_collection(&cb, &projection, &original).await;
                for uid in &seen {
                    reads.fetch_add(1, Ordering::Relaxed);
                    if doc(&coll, &format!("user::{uid}")).await.is_none() {
                        misses.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    // The rebuild runs while more events arrive and the live worker keeps projecting.
    let rebuild = sluice(&topology)
        .args(["rebuild", "--projection", &projection])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rebuild");
    publish(&topology, "wave2.jsonl", wave2);
    let out = rebuild.wait_with_output().expect("rebuild");
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    println!("{printed}");
    assert!(printed.contains("planned: rebuilding") && printed.contains("into v2"), "{printed}");
    assert!(printed.contains("swap (pointer)"), "{printed}");
    assert!(printed.contains("summary: events read ") && printed.contains("sent to the DLQ 0"), "{printed}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("building ") && stderr.contains(" events"),
        "plain progress lines when not a tty: {stderr}"
    );

    let new = format!("{projection}__v2");
    assert_eq!(
        pointer::read(&cb.bucket, &projection).await.expect("pointer"),
        Some(pointer::Pointer { scope: "_default".into(), collection: new.clone(), generation: 2 })
    );
    // After the swap the live worker writes to the new collection.
    publish(&topology, "wave3.jsonl", wave3);
    await_docs(&cb, &projection, &original, &model, 90).await;
    // `sluice couchbase get --projection` reads the live version through the pointer.
    let (uid, expected) = model.users.iter().next().expect("a user");
    let out =
        run_ok(sluice(&topology).args(["couchbase", "get", "--projection", &projection, &format!("user::{uid}")]));
    let got: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got["email"], expected["email"], "{got}");
    stop.store(true, Ordering::Relaxed);
    reader.await.expect("reader");
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(misses.load(Ordering::Relaxed), 0, "a reader never misses a document during the rebuild and swap");

    // Another rebuild is refused while the old version is kept; then the old one goes.
    let out = sluice(&topology).args(["rebuild", "--projection", &projection]).output().expect("run");
    assert!(!out.status.success() && text(&out).contains("--drop-old"), "{}", text(&out));
    assert!(collection_exists(&cb, &original).await);
    let out = run_ok(sluice(&topology).args(["rebuild", "--projection", &projection, "--drop-old"]));
    assert!(stdout(&out).contains("old version v1"), "{}", text(&out));
    assert!(!collection_exists(&cb, &original).await, "the old collection is dropped");
    await_docs(&cb, &projection, &original, &model, 30).await;
    let out = sluice(&topology).args(["rebuild", "--projection", &projection, "--drop-old"]).output().expect("run");
    assert!(!out.status.success() && text(&out).contains("no old version to drop"), "{}", text(&out));
    let (status, out) = live.terminate();
    assert!(status.success(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_rebuild_resumes_to_the_same_result_and_abort_leaves_live_untouched() {
    let sfx = unique("rbk");
    let (topology, projection, original) = couchbase_topology(&sfx, 20);
    setup(&topology);
    run_ok(sluice(&topology).args(["couchbase", "setup"]));
    let (events, model) = generate(60, 5, &uuid_hex8(), &format!("{sfx}-"));
    publish(&topology, "users.jsonl", &user_events(&events));
    let out = run_ok(sluice(&topology).args(["work", "--projection", &projection, "--exit-at-end"]));
    assert!(stdout(&out).contains("consumed"), "{}", text(&out));
    let cb = within("couchbase", 30, Couchbase::connect(&connections().couchbase)).await.expect("couchbase");
    await_docs(&cb, &projection, &original, &model, 30).await;
    let before = docs(&cb.collection(Some("_default"), Some(&original)), &model).await;

    let status = |topology: &Path| -> Value {
        let out = run_ok(sluice(topology).args(["rebuild", "--projection", &projection, "--status"]));
        serde_json::from_str(&stdout(&out)).expect("status json")
    };
    // Killed after its second batch, before committing it.
    let out = sluice(&topology)
        .args(["rebuild", "--projection", &projection])
        .env("SLUICE_FAILPOINT_CRASH_AFTER_BATCHES", "2")
        .output()
        .expect("run");
    assert!(!out.status.success(), "the failpoint kills the rebuild: {}", text(&out));
    let st = status(&topology);
    assert_eq!(st["phase"], "building", "{st}");
    assert_eq!(st["building"], 2);
    let new = format!("{projection}__v2");
    assert!(collection_exists(&cb, &new).await, "the partial version exists");
    assert_eq!(pointer::read(&cb.bucket, &projection).await.expect("pointer"), None, "live is untouched");

    // Resumed: the same target, the same result.
    let out = run_ok(sluice(&topology).args(["rebuild", "--projection", &projection]));
    let printed = stdout(&out);
    assert!(printed.contains("resuming the rebuild") && printed.contains("into v2 (building)"), "{printed}");
    assert_eq!(docs(&cb.collection(Some("_default"), Some(&new)), &model).await, expected_docs(&model));
    assert_eq!(status(&topology)["phase"], "swapped");
    run_ok(sluice(&topology).args(["rebuild", "--projection", &projection, "--drop-old"]));

    // A second rebuild (v3), killed, then aborted: the partial collection goes, live stays v2.
    let out = sluice(&topology)
        .args(["rebuild", "--projection", &projection])
        .env("SLUICE_FAILPOINT_CRASH_AFTER_BATCHES", "1")
        .output()
        .expect("run");
    assert!(!out.status.success(), "{}", text(&out));
    let v3 = format!("{projection}__v3");
    assert!(collection_exists(&cb, &v3).await);
    let live_before = docs(&cb.collection(Some("_default"), Some(&new)), &model).await;
    let out = run_ok(sluice(&topology).args(["rebuild", "--projection", &projection, "--abort"]));
    assert!(stdout(&out).contains("aborted"), "{}", text(&out));
    assert!(!collection_exists(&cb, &v3).await, "the partial version is removed");
    assert_eq!(pointer::read(&cb.bucket, &projection).await.expect("pointer").map(|p| p.generation), Some(2));
    assert_eq!(docs(&cb.collection(Some("_default"), Some(&new)), &model).await, live_before, "live untouched");
    assert_eq!(live_before, before, "and equal to what the first version held");
    assert_eq!(status(&topology)["phase"], "aborted");
    let out = sluice(&topology).args(["rebuild", "--projection", &projection, "--abort"]).output().expect("run");
    assert!(!out.status.success() && text(&out).contains("no rebuild in progress to abort"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilding_one_key_restores_a_corrupted_document_and_touches_no_other() {
    let sfx = unique("rbkey");
    let (topology, projection, original) = couchbase_topology(&sfx, 500);
    setup(&topology);
    run_ok(sluice(&topology).args(["couchbase", "setup"]));
    let (events, model) = generate(30, 9, &uuid_hex8(), &format!("{sfx}-"));
    publish(&topology, "users.jsonl", &user_events(&events));
    run_ok(sluice(&topology).args(["work", "--projection", &projection, "--exit-at-end"]));
    let cb = within("couchbase", 30, Couchbase::connect(&connections().couchbase)).await.expect("couchbase");
    await_docs(&cb, &projection, &original, &model, 30).await;
    let coll = cb.collection(Some("_default"), Some(&original));

    // Corrupt one document, keeping its bookkeeping (so every event now looks like a duplicate).
    let (victim, good) = model.users.iter().next().map(|(u, d)| (u.clone(), d.clone())).expect("a user");
    let key = format!("user::{victim}");
    let stored = deadline("get", Duration::from_secs(10), coll.get(&key, None)).await.expect("get");
    let mut corrupted: Value = stored.content_as().expect("json");
    corrupted["email"] = json!("corrupted@example.invalid");
    corrupted["country"] = json!("XX");
    deadline("upsert", Duration::from_secs(10), coll.upsert(&key, &corrupted, None)).await.expect("corrupt");
    let cas_before: BTreeMap<String, Option<u64>> = {
        let mut m = BTreeMap::new();
        for uid in model.users.keys().chain(model.erased.iter()).filter(|u| **u != victim) {
            m.insert(uid.clone(), doc(&coll, &format!("user::{uid}")).await.map(|(_, cas)| cas));
        }
        m
    };

    let out = run_ok(sluice(&topology).args(["rebuild", "--projection", &projection, "--key", &victim]));
    let printed = stdout(&out);
    println!("{printed}");
    assert!(printed.contains(&format!("removed {key}")), "{printed}");
    assert!(printed.contains(&format!("repaired {victim}: events read ")), "{printed}");
    assert_eq!(doc(&coll, &key).await.map(|(v, _)| v), Some(Value::Object(good)), "restored");
    for (uid, cas) in &cas_before {
        assert_eq!(doc(&coll, &format!("user::{uid}")).await.map(|(_, c)| c), *cas, "{uid} was written");
    }
    // Only the victim's events were applied.
    let victim_events = user_events(&events).iter().filter(|e| e["aggregate_id"] == victim.as_str()).count();
    assert!(printed.contains(&format!("applied {victim_events},")), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_rebuild_on_the_modern_engine() {
    clickhouse_rebuild(&connections().clickhouse.url, "Exchange", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_rebuild_on_clickhouse_18() {
    let url = connections().clickhouse_compat.expect("SLUICE_CLICKHOUSE_COMPAT_URL: start the rig with dev/up").url;
    clickhouse_rebuild(&url, "Rename", None).await;
}
