//! End to end, through the real binary and the real services: topics and schemas applied, events
//! published with `sluice publish`, projected by `sluice work` into Couchbase and ClickHouse, and
//! the projections compared with a model computed by the test. Then the hard parts: a worker that
//! dies between a sink write and its commit, the same events published again shuffled, and poison
//! records that must land in the DLQ without stopping the partition.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use sluice_consumers::sinks::couchbase::Couchbase;
use sluice_consumers::sinks::couchbase::service::deadline;
use sluice_tests::domain::generate;
use sluice_tests::{connections, fresh_topology, unique, within};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couchbase_projection_survives_crashes_duplicates_and_poison() {
    let sfx = unique("e2e");
    let topology = fresh_topology(&sfx);
    let dir = topology.parent().expect("dir").to_path_buf();
    let projection = format!("user_state_{sfx}");
    let users_topic = format!("users_{sfx}");
    run_ok(sluice(&topology).args(["topics", "apply"]));
    run_ok(sluice(&topology).args(["schemas", "register"]));

    let run = &uuid_hex8();
    let (events, model) = generate(60, 42, run, &format!("{sfx}-"));
    let user_events: Vec<&Value> =
        events.iter().filter(|e| e["event_type"].as_str().is_some_and(|t| t.starts_with("user."))).collect();
    let file = write_jsonl(&dir, "users.jsonl", &user_events);
    let out = run_ok(sluice(&topology).args(["publish", "--file"]).arg(&file));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains(&format!("published {}", user_events.len())), "{summary}");

    // 1. A worker that dies after its first batch write, before committing it.
    let mut w = WorkerProcess::start(&topology, &projection, Some(1));
    let status = w.wait_exit(90);
    assert!(!status.success(), "the failpoint kills the worker: {status}");
    drop(w);

    // 2. A fresh worker re-reads the uncommitted batch and finishes: the documents equal the model.
    let cb = within("couchbase", 30, Couchbase::connect(&connections().couchbase)).await.expect("couchbase");
    let w = WorkerProcess::start(&topology, &projection, None);
    await_user_docs(&cb, &model, 90).await;

    // 3. The same events again, in reverse order (every aggregate's versions now arrive newest
    //    first), while the worker runs: nothing changes.
    let reversed: Vec<&Value> = user_events.iter().rev().copied().collect();
    let file = write_jsonl(&dir, "users-again.jsonl", &reversed);
    run_ok(sluice(&topology).args(["publish", "--file"]).arg(&file));

    // 4. Poison records between valid ones: wrong magic byte, unknown schema id, truncated body.
    let brokers = connections().kafka.brokers;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("producer");
    let poison: [(&str, Vec<u8>); 3] = [
        ("wrong magic", b"{\"not\":\"avro\"}".to_vec()),
        ("unknown schema id", vec![0, 0x7f, 0xff, 0xff, 0xf0, 2, 4]),
        ("truncated", vec![0, 0, 0]),
    ];
    for (key, value) in &poison {
        let record = FutureRecord::to(&users_topic).key(*key).payload(value).partition(0);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("send poison");
    }
    // A valid event after the poison, on the same partition, must still be projected.
    let late_user = format!("{sfx}-late");
    let late = json!({
        "event_type": "user.registered", "aggregate_id": late_user, "aggregate_version": 1,
        "occurred_at": 1_764_000_000_000i64, "producer": "sluice-tests",
        "email": "late@example.com", "display_name": "Late", "country": "NL"
    });
    let file = write_jsonl(&dir, "late.jsonl", &[&late]);
    run_ok(sluice(&topology).args(["publish", "--file"]).arg(&file));

    let start = Instant::now();
    let coll = cb.collection(None, None);
    loop {
        if deadline("get", Duration::from_secs(10), coll.get(format!("user::{late_user}"), None)).await.is_ok() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the event after the poison was not projected");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    await_user_docs(&cb, &model, 30).await;

    // The DLQ holds the three poison records with their reasons and origin.
    let dlq: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("dlq_reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("dlq consumer");
    dlq.subscribe(&[&format!("{projection}.dlq")]).expect("subscribe dlq");
    let mut reasons = Vec::new();
    while reasons.len() < 3 {
        let m = within("dlq record", 60, dlq.recv()).await.expect("dlq message");
        let headers = m.headers().expect("dlq headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        assert_eq!(header("sluice.source.topic"), users_topic);
        assert_eq!(header("sluice.source.partition"), "0");
        assert!(!header("sluice.source.offset").is_empty());
        reasons.push((String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(), header("sluice.dlq.reason")));
    }
    reasons.sort();
    assert!(reasons[0].0 == "truncated" && reasons[0].1.contains("truncated header"), "{reasons:?}");
    assert!(reasons[1].0 == "unknown schema id" && reasons[1].1.contains("schema id"), "{reasons:?}");
    assert!(reasons[2].0 == "wrong magic" && reasons[2].1.contains("wrong magic byte 0x7b"), "{reasons:?}");

    // 5. SIGTERM: the worker drains, commits and says what it did.
    let (status, out) = w.terminate();
    assert!(status.success(), "clean shutdown: {status}");
    assert!(out.contains(&format!("projection {projection}:")), "{out}");
    // Everything was consumed by this worker: the batch the crashed one wrote but never committed
    // (re-delivered), the duplicates, the poison and the late event.
    let n = user_events.len();
    assert!(out.contains(&format!("consumed {}, projected {}, dead-lettered 3", 2 * n + 4, 2 * n + 1)), "{out}");
}

/// The whole pipeline into ClickHouse at `url`: the analyst queries equal the model, after a
/// crash between write and commit and with every event published twice.
async fn analytics_end_to_end(url: &str) {
    let sfx = unique("e2e");
    let topology = fresh_topology(&sfx);
    let dir = topology.parent().expect("dir").to_path_buf();
    let database = format!("db_{sfx}");
    std::fs::write(
        dir.join("clickhouse.env"),
        format!("SLUICE_CLICKHOUSE_URL={url}\nSLUICE_CLICKHOUSE_DATABASE={database}\n"),
    )
    .expect("clickhouse.env");
    let projection = format!("analytics_{sfx}");
    let topics: Vec<String> = ["users", "sessions", "engagement"].iter().map(|t| format!("{t}_{sfx}")).collect();
    run_ok(sluice(&topology).args(["topics", "apply"]));
    run_ok(sluice(&topology).args(["schemas", "register"]));
    let out = run_ok(sluice(&topology).args(["clickhouse", "migrate"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created table"), "migrate creates the tables");
    let out = run_ok(sluice(&topology).args(["clickhouse", "migrate"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 created"), "a second migrate changes nothing");

    let (events, model) = generate(40, 7, &uuid_hex8(), &format!("{sfx}-"));
    let w = publish_twice_through_a_crash(&topology, &projection, &events, &topics).await;

    let conn = sluice_core::connections::ClickHouseConnection {
        database: database.clone(),
        ..sluice_core::connections::ClickHouseConnection::plain(url.to_owned())
    };
    let client = crate::common::analytics::client(&conn).await;

    assert_analysts_see_the_model(&client, &sfx, &model).await;

    let (status, out) = w.terminate();
    assert!(status.success(), "clean shutdown: {status}\n{out}");
    client.query(&format!("DROP DATABASE IF EXISTS {database}")).execute().await.expect("drop database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_projection_on_the_modern_engine() {
    analytics_end_to_end(&connections().clickhouse.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_projection_on_clickhouse_18() {
    let url = connections().clickhouse_compat.expect("SLUICE_CLICKHOUSE_COMPAT_URL: start the rig with dev/up").url;
    analytics_end_to_end(&url).await;
}

/// The sink goes down while events keep coming: the worker pauses its partitions instead of
/// buffering, keeps its group membership, and when the server is back it resumes and projects
/// every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_pauses_while_clickhouse_is_down_and_loses_nothing() {
    let sfx = unique("e2e");
    let topology = fresh_topology(&sfx);
    let dir = topology.parent().expect("dir").to_path_buf();
    let server = PrivateClickHouse::start(&dir);
    std::fs::write(dir.join("clickhouse.env"), format!("SLUICE_CLICKHOUSE_URL={}\n", server.url())).expect("env");
    let projection = format!("analytics_{sfx}");
    run_ok(sluice(&topology).args(["topics", "apply"]));
    run_ok(sluice(&topology).args(["clickhouse", "migrate"]));

    let metrics_addr = format!("127.0.0.1:{}", PrivateClickHouse::free_port());
    let mut cmd = sluice(&topology);
    cmd.args(["work", "--projection", &projection, "--metrics-addr", &metrics_addr])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let w = WorkerProcess(cmd.spawn().expect("worker"));
    // The worker is up, in its group and owns every partition before the server goes away.
    await_members(&topology, &projection, 1, 90);

    server.dev(&["down"]);
    let (events, model) = generate(30, 11, &uuid_hex8(), &format!("{sfx}-"));
    let all: Vec<&Value> = events.iter().collect();
    run_ok(sluice(&topology).args(["publish", "--file"]).arg(write_jsonl(&dir, "all.jsonl", &all)));
    let start = Instant::now();
    // Not `metric(..) < 1.0`: NaN (no answer from the metrics endpoint) is no pause.
    let paused = || metric(&metrics_addr, "sluice_paused_partitions") >= 1.0;
    while !paused() {
        assert!(start.elapsed() < Duration::from_secs(60), "the worker did not pause its partitions");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(metric(&metrics_addr, "sluice_events_projected_total"), 0.0, "nothing is written while down");

    server.dev(&["up", "clickhouse_compat"]);
    await_caught_up(
        &format!("sluice.{projection}"),
        &["users", "sessions", "engagement"].map(|t| format!("{t}_{sfx}")),
        120,
    )
    .await;
    assert_eq!(metric(&metrics_addr, "sluice_paused_partitions"), 0.0, "resumed");
    // Resumed for real: events published now are projected too.
    let (later, later_model) = generate(10, 12, &uuid_hex8(), &format!("{sfx}-later-"));
    let later: Vec<&Value> = later.iter().collect();
    run_ok(sluice(&topology).args(["publish", "--file"]).arg(write_jsonl(&dir, "later.jsonl", &later)));
    await_caught_up(
        &format!("sluice.{projection}"),
        &["users", "sessions", "engagement"].map(|t| format!("{t}_{sfx}")),
        60,
    )
    .await;

    let conn = sluice_core::connections::ClickHouseConnection::plain(server.url());
    let ch = sluice_consumers::sinks::clickhouse::ClickHouse::connect(&conn).await.expect("clickhouse");
    let n: u64 =
        ch.client.query(&format!("SELECT toUInt64(count()) FROM events_{sfx} FINAL")).fetch_one().await.expect("count");
    assert_eq!(
        n,
        (model.by_type.values().sum::<u64>() + later_model.by_type.values().sum::<u64>()),
        "every event once"
    );
    let (status, out) = w.terminate();
    assert!(status.success(), "{out}");
}
