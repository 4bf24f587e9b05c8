//! Consistency tokens (issue #16, first slice), through the real binary against the rig: what
//! `sluice publish` and the gateway return for accepted writes, and `sluice lag --after` saying
//! whether each projection includes them — "not yet" before its worker ran and within the promised
//! wait, "yes" after; a token that cannot be about the projection is refused at once.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::gateway::Gateway;
use common::proxy::{authority, free_port, proxy};
use common::{run_ok, setup, sluice, text, uuid_hex8, write_jsonl};
use serde_json::{Value, json};
use sluice_core::consistency::ConsistencyToken;
use sluice_tests::domain::generate;
use sluice_tests::{connections, fresh_topology, unique};
use tokio_util::sync::CancellationToken;

/// The token `sluice publish` printed.
fn token_of(out: &Output) -> ConsistencyToken {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("consistency token: "))
        .unwrap_or_else(|| panic!("no token in\n{stdout}"));
    line.split_whitespace().next().expect("the token").parse().expect("a valid token")
}

fn lag_after(topology: &Path, token: &str, extra: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let out = sluice(topology).args(["lag", "--after", token]).args(extra).output().expect("run sluice");
    (out, start.elapsed())
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh sample-domain topology with `users` users' events published by `sluice publish`
/// (topics and schemas applied, Couchbase set up): its path, suffix, model and the token printed.
fn published(
    prefix: &str,
    users: usize,
    per_user: u64,
) -> (std::path::PathBuf, String, sluice_tests::domain::Model, ConsistencyToken) {
    let sfx = unique(prefix);
    let topology = fresh_topology(&sfx);
    setup(&topology);
    run_ok(sluice(&topology).args(["couchbase", "setup"]));
    let (events, model) = generate(users, per_user, &uuid_hex8(), &format!("{sfx}-"));
    let all: Vec<&Value> = events.iter().collect();
    let file = write_jsonl(topology.parent().expect("dir"), "events.jsonl", &all);
    let token = token_of(&run_ok(sluice(&topology).args(["publish", "--file"]).arg(&file)));
    (topology, sfx, model, token)
}

#[test]
fn a_published_write_is_not_yet_included_then_included_once_its_worker_ran() {
    let (topology, sfx, _, token) = published("cons", 20, 2);
    assert!(token.topics().all(|t| t.ends_with(&sfx)), "{token:?}");
    let text_token = token.to_string();
    let user_state = format!("user_state_{sfx}");

    // Nothing consumed yet: every projection reading those topics says "not yet"; exit 2.
    let (out, _) = lag_after(&topology, &text_token, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stdout(&out).contains(&user_state) && stdout(&out).contains("not yet"), "{}", text(&out));

    // A bounded wait answers "not yet" in the promised time, not later.
    let (out, took) = lag_after(&topology, &text_token, &["--projection", &user_state, "--wait", "2s"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(12), "{took:?}");

    run_ok(sluice(&topology).args(["work", "--projection", &user_state, "--exit-at-end"]));
    let (out, _) = lag_after(&topology, &text_token, &["--projection", &user_state, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc[0]["projection"], user_state.as_str());
    assert_eq!(doc[0]["included"], true, "{doc}");
}

#[test]
fn a_read_after_a_token_waits_for_the_write_and_never_returns_the_stale_document() {
    let (topology, sfx, model, token) = published("consr", 10, 1);
    let token = token.to_string();
    let user_state = format!("user_state_{sfx}");
    let (uid, expected) = model.users.iter().next().expect("a user the model keeps");
    let key = format!("user::{uid}");
    let get = |wait: &str| {
        sluice(&topology)
            .args(["couchbase", "get", &key, "--projection", &user_state, "--after", &token, "--wait", wait])
            .output()
            .expect("run sluice")
    };

    let start = Instant::now();
    let out = get("1s");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stdout(&out).starts_with("not yet: projection"), "{}", text(&out));
    assert!(start.elapsed() < Duration::from_secs(10), "not yet answered late: {:?}", start.elapsed());

    let _worker = common::WorkerProcess::start(&topology, &user_state, None);
    let out = get("60s");
    assert!(out.status.success(), "{}", text(&out));
    let mut doc: Value = serde_json::from_slice(&out.stdout).expect("the document as JSON");
    doc.as_object_mut().expect("object").remove("_sluice");
    assert_eq!(doc, Value::Object(expected.clone()), "the read includes every write the token names");
}

#[test]
fn a_token_that_cannot_be_about_the_projection_is_refused_at_once() {
    let (topology, sfx, _, token) = published("consb", 4, 1);
    let users = format!("users_{sfx}");
    let (topic, partition, _) = token.positions().find(|(t, _, _)| *t == users).expect("a users position");
    let user_state = format!("user_state_{sfx}");
    let truncated = token.to_string();
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        ("not-a-token".to_owned(), vec![], "not a sluice consistency token"),
        (truncated[..truncated.len() - 4].to_owned(), vec![], "truncated"),
        (
            ConsistencyToken::single("someone.elses.topic", 0, 1, None).to_string(),
            vec![],
            "no projection of the topology reads",
        ),
        (ConsistencyToken::single(topic, 999, 0, None).to_string(), vec!["--projection", &user_state], "which has"),
        (
            ConsistencyToken::single(topic, partition, 1 << 40, None).to_string(),
            vec!["--projection", &user_state],
            "past the partition's end",
        ),
        (
            ConsistencyToken::single(&format!("events_{sfx}_unread"), 0, 0, None).to_string(),
            vec!["--projection", &user_state],
            "none of which projection",
        ),
    ];
    for (bad, extra, says) in cases {
        let mut args = extra.clone();
        args.extend(["--wait", "30s"]);
        let (out, took) = lag_after(&topology, &bad, &args);
        let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{bad}: {all}");
        assert_eq!(out.status.code(), Some(1), "{bad}: an error, not a 'not yet': {all}");
        assert!(all.contains(says), "{bad}: {says:?} not in\n{all}");
        assert!(took < Duration::from_secs(15), "{bad}: refused after {took:?}, not at once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_returns_a_token_per_event_and_one_per_batch() {
    let sfx = unique("consg");
    let topology = fresh_topology(&sfx);
    setup(&topology);
    let (events, _) = generate(6, 1, &uuid_hex8(), &format!("{sfx}-"));
    let gateway = Gateway::start(&topology).await;

    let (status, _, body) = gateway.single(&events[0]).await;
    assert_eq!(status, 201, "{body}");
    let token: ConsistencyToken = body["consistency_token"].as_str().expect("a token").parse().expect("valid");
    let (topic, partition, offset) = token.positions().next().expect("one position");
    assert_eq!(
        (topic, i64::from(partition), offset),
        (
            body["topic"].as_str().expect("topic"),
            body["partition"].as_i64().expect("partition"),
            body["offset"].as_i64().expect("offset")
        )
    );
    let aggregate = token.aggregate().expect("the event's aggregate");
    assert_eq!(aggregate.id, events[0]["aggregate_id"].as_str().expect("id"));

    let rest: Vec<&Value> = events[1..].iter().collect();
    let body = gateway.batch_answer(&rest).await;
    let batch: ConsistencyToken = body["consistency_token"].as_str().expect("a batch token").parse().expect("valid");
    for r in body["results"].as_array().expect("results") {
        let (t, p, o) = (
            r["topic"].as_str().expect("topic"),
            r["partition"].as_i64().expect("p"),
            r["offset"].as_i64().expect("o"),
        );
        let covered = batch.positions().any(|(bt, bp, bo)| bt == t && i64::from(bp) == p && bo >= o);
        assert!(covered, "{r} is not covered by the batch token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reads_a_document_only_once_it_includes_the_write() {
    let sfx = unique("consgr");
    let topology = fresh_topology(&sfx);
    setup(&topology);
    run_ok(sluice(&topology).args(["couchbase", "setup"]));
    let (events, model) = generate(6, 1, &uuid_hex8(), &format!("{sfx}-"));
    let gateway = Gateway::start(&topology).await;
    let user = events
        .iter()
        .find(|e| {
            e["event_type"] == "user.registered"
                && model.users.contains_key(e["aggregate_id"].as_str().unwrap_or_default())
        })
        .expect("a registration of a user the model keeps");
    let (status, _, body) = gateway.single(user).await;
    assert_eq!(status, 201, "{body}");
    let token = body["consistency_token"].as_str().expect("a token").to_owned();
    let uid = user["aggregate_id"].as_str().expect("id");
    let user_state = format!("user_state_{sfx}");
    let http = reqwest::Client::new();
    let get = |key: String, query: String| {
        let url = format!("{}/v1/projections/{user_state}/documents/{key}?{query}", gateway.base);
        let http = http.clone();
        async move {
            let resp = http.get(url).bearer_auth(common::gateway::TOKEN).send().await.expect("get");
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get("retry-after").is_some();
            (status, retry_after, resp.json::<Value>().await.expect("json"))
        }
    };

    // No worker yet: "not yet" within the wait, with Retry-After, and no document in the body.
    let start = Instant::now();
    let (status, retry_after, body) = get(format!("user::{uid}"), format!("after={token}&wait=1s")).await;
    assert_eq!((status, retry_after), (409, true), "{body}");
    assert_eq!(body["error"]["code"], "not_yet", "{body}");
    assert!(body.get("document").is_none());
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());
    let behind = &body["error"]["behind"][0];
    assert!(behind["topic"] == format!("users_{sfx}").as_str() && behind["committed"].is_null(), "{body}");

    // Bad tokens are refused at once.
    for (bad, code) in [
        ("nope".to_owned(), "token_prefix"),
        (ConsistencyToken::single("elsewhere", 0, 0, None).to_string(), "token_foreign"),
    ] {
        let (status, _, body) = get(format!("user::{uid}"), format!("after={bad}&wait=10s")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some(code)), "{body}");
    }

    // A worker starts; the reader does what Retry-After tells it until the write is in (the
    // gateway bounds one wait by its request timeout, 9 s here).
    let _worker = common::WorkerProcess::start(&topology, &user_state, None);
    let start = Instant::now();
    let (status, body) = loop {
        let (status, _, body) = get(format!("user::{uid}"), format!("after={token}&wait=30s")).await;
        if status != 409 || start.elapsed() > Duration::from_secs(60) {
            break (status, body);
        }
        assert_eq!(body["error"]["code"], "not_yet", "{body}");
    };
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], user["aggregate_version"], "{body}");
    assert_eq!(body["document"]["_sluice"]["version"], user["aggregate_version"], "{body}");

    // Included, and no such document: 404, not a wait.
    let (status, _, body) = get(format!("user::{sfx}-nobody"), format!("after={token}&wait=10s")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");

    // The user is erased: read with the erasure's token, the document is gone, with its version.
    let version = user["aggregate_version"].as_i64().expect("version") + 1;
    let erase = json!({"event_type": "user.deleted", "aggregate_id": uid, "aggregate_version": version, "reason": "GDPR_ERASURE"});
    let (status, _, body) = gateway.single(&erase).await;
    assert_eq!(status, 201, "{body}");
    let token = body["consistency_token"].as_str().expect("a token").to_owned();
    let (status, _, body) = get(format!("user::{uid}"), format!("after={token}&wait=9s")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (410, Some("gone")), "{body}");
    assert_eq!(body["error"]["version"], version, "{body}");
    let out = sluice(&topology)
        .args(["couchbase", "get", &format!("user::{uid}"), "--projection", &user_state, "--after", &token])
        .output()
        .expect("run sluice");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&format!("gone: the aggregate of user::{uid} was erased")), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analytics_projection_says_behind_while_clickhouse_is_down_then_caught_up() {
    let sfx = unique("consa");
    let topology = fresh_topology(&sfx);
    setup(&topology);
    let (events, _) = generate(4, 2, &uuid_hex8(), &format!("{sfx}-"));
    let gateway = Gateway::start(&topology).await;
    let all: Vec<&Value> = events.iter().collect();
    let body = gateway.batch_answer(&all).await;
    let token = body["consistency_token"].as_str().expect("a batch token").to_owned();
    let analytics = format!("analytics_{sfx}");
    let progress = |wait: &str| format!("/v1/projections/{analytics}/progress?after={token}&wait={wait}");

    // ClickHouse is down for the worker: nothing listens at the address it was given.
    let port = free_port();
    let env = [("SLUICE_CLICKHOUSE_URL", format!("http://127.0.0.1:{port}"))];
    let _worker = common::WorkerProcess::spawn(&topology, &analytics, &[], &env, "analytics");
    let start = Instant::now();
    let (status, body) = gateway.get(&progress("2s")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_yet")), "{body}");
    let behind = body["error"]["behind"].as_array().expect("behind");
    assert!(!behind.is_empty() && behind.iter().all(|b| b["offset"].is_i64()), "{body}");
    assert!(
        start.elapsed() >= Duration::from_secs(2) && start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    let (out, _) = lag_after(&topology, &token, &["--projection", &analytics]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // Bad requests are refused at once.
    let (status, body) = gateway.get(&format!("/v1/projections/{analytics}/progress")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("missing_after")), "{body}");
    let (status, body) = gateway.get(&format!("/v1/projections/nope_{sfx}/progress?after={token}")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_projection")), "{body}");

    // ClickHouse comes back (the rig's real server, behind a proxy at that address).
    let stop = CancellationToken::new();
    proxy(port, authority(&connections().clickhouse.url), stop.clone()).await;
    let start = Instant::now();
    let body = loop {
        let (status, body) = gateway.get(&progress("9s")).await;
        if status == 200 {
            break body;
        }
        assert_eq!(body["error"]["code"], "not_yet", "{body}");
        assert!(start.elapsed() < Duration::from_secs(120), "still behind after 120 s: {body}");
    };
    assert_eq!(body, json!({"projection": analytics, "included": true}));
    let (out, _) = lag_after(&topology, &token, &["--projection", &analytics]);
    assert!(out.status.success(), "{}", text(&out));
    stop.cancel();
}
