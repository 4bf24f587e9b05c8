//! The pipeline on a cluster, through the real binary: Kafka with three brokers and topics
//! replicated three times, ClickHouse 18.16 as two shards of two replicas (`dev/up --cluster`).
//! Run with `SLUICE_ENV_FILE=.dev/cluster.env`, as `dev/test` does; against any other rig these
//! tests fail and say so.
//!
//! Faults while events flow through the gateway: the ClickHouse server the worker writes to stopped
//! for 30 s and brought back (the worker goes on through the next server it knows, the shard
//! through its other replica),
//! the leader of a busy partition SIGKILLed and brought back, a worker crashed between its write
//! and its commit.
//! Afterwards the Couchbase documents, the `Distributed` tables (read `FINAL`), the rollup and
//! the state table equal a model of the published events — none lost, none visible twice — from any server, and the two
//! replicas of each shard hold the same rows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clickhouse::Client;
use serde_json::Value;
use sluice_consumers::sinks::couchbase::Couchbase;
use sluice_core::connections::Env;
use sluice_tests::domain::generate;
use sluice_tests::{connections, fresh_topology, unique, within};

mod common;
use common::gateway::Gateway;
use common::*;

/// The cluster rig's variables, or a failure saying how to get them.
fn cluster_env() -> Env {
    let env = Env::discover().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        env.get("SLUICE_CLICKHOUSE_CLUSTER").is_some() && env.get("SLUICE_DEV_CLUSTER_CLICKHOUSE_URLS").is_some(),
        "these tests run against the cluster rig: `dev/up --cluster`, then SLUICE_ENV_FILE=.dev/cluster.env \
         (dev/test does both)"
    );
    env
}

/// The HTTP URLs of the ClickHouse servers, by shard: `[[s1r1, s1r2], [s2r1, s2r2]]`.
fn shards(env: &Env) -> Vec<Vec<String>> {
    let urls: Vec<String> =
        env.get("SLUICE_DEV_CLUSTER_CLICKHOUSE_URLS").unwrap_or_default().split(',').map(str::to_owned).collect();
    urls.chunks(2).map(<[String]>::to_vec).collect()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `dev/cluster ARGS`: the rig's own control of its nodes.
fn dev_cluster(args: &[&str]) -> String {
    let out = Command::new(root().join("dev/cluster")).args(args).output().expect("run dev/cluster");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "dev/cluster {args:?} failed: {text}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A client of one server (18.16: rows without names and types, errors at the end of the body).
fn client(url: &str, database: &str) -> Client {
    Client::default()
        .with_url(url)
        .with_database(database)
        .with_validation(false)
        .with_setting("wait_end_of_query", "1")
}

async fn count(url: &str, database: &str, sql: &str) -> u64 {
    client(url, database).query(sql).fetch_one::<u64>().await.unwrap_or_else(|e| panic!("{sql} at {url}: {e}"))
}

/// Every replica of each shard holds the same rows of every local table, after each has fetched
/// what its shard's other replica wrote; each shard holds some of them; the two shards share no
/// aggregate.
async fn assert_replicas_agree(shards: &[Vec<String>], database: &str, sfx: &str) {
    let tables: Vec<String> = client(&shards[0][0], database)
        .query("SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE 'Replicated%'")
        .fetch_all()
        .await
        .expect("local tables");
    assert!(tables.len() >= 5, "{tables:?}");
    for table in &tables {
        let mut per_shard = Vec::new();
        for replicas in shards {
            let mut counts = Vec::new();
            for url in replicas {
                client(url, database)
                    .query(&format!("SYSTEM SYNC REPLICA {database}.{table}"))
                    .execute()
                    .await
                    .unwrap_or_else(|e| panic!("sync {table} at {url}: {e}"));
                counts.push(count(url, database, &format!("SELECT count() FROM {table}")).await);
            }
            assert!(counts.iter().all(|c| *c == counts[0]), "{table}: the replicas of a shard differ: {counts:?}");
            per_shard.push(counts[0]);
        }
        assert!(per_shard.iter().all(|c| *c > 0), "{table}: a shard holds none of its rows: {per_shard:?}");
    }
    let ids = |url: String| async move {
        client(&url, database)
            .query(&format!("SELECT DISTINCT aggregate_id FROM events_{sfx}_local"))
            .fetch_all::<String>()
            .await
            .expect("aggregates")
    };
    let (one, two) = (ids(shards[0][0].clone()).await, ids(shards[1][0].clone()).await);
    assert!(!one.iter().any(|id| two.contains(id)), "an aggregate's events are on both shards");
}

async fn await_healthy(url: &str, secs: u64) {
    let start = Instant::now();
    while client(url, "default").query("SELECT 1").fetch_one::<u8>().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{url} not back within {secs}s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_on_a_sharded_replicated_cluster_equal_the_model_through_faults() {
    let env = cluster_env();
    let shards = shards(&env);
    assert_eq!((shards.len(), shards[0].len()), (2, 2), "two shards of two replicas");
    let sfx = unique("cl");
    let topology = fresh_topology(&sfx);
    let text = std::fs::read_to_string(&topology).expect("topology");
    std::fs::write(&topology, text.replace("replication_factor = 1", "replication_factor = 3")).expect("write");
    let dir = topology.parent().expect("dir").to_path_buf();
    let database = format!("db_{sfx}");
    // The worker knows both servers of shard 1: when the first is away it writes through the second.
    let servers = format!("{},{}", shards[0][0], shards[0][1]);
    std::fs::write(
        dir.join("clickhouse.env"),
        format!("SLUICE_CLICKHOUSE_DATABASE={database}\nSLUICE_CLICKHOUSE_URL={servers}\n"),
    )
    .expect("env");
    let projection = format!("analytics_{sfx}");
    let topics: Vec<String> = ["users", "sessions", "engagement"].iter().map(|t| format!("{t}_{sfx}")).collect();
    run_ok(sluice(&topology).args(["topics", "apply"]));
    run_ok(sluice(&topology).args(["schemas", "register"]));
    let out = run_ok(sluice(&topology).args(["clickhouse", "migrate"]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains(&format!("created distributed table `{database}`.`events_{sfx}`")), "{text}");
    let out = run_ok(sluice(&topology).args(["clickhouse", "migrate"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 created"), "a second migrate changes nothing");
    for url in shards.iter().flatten() {
        let objects =
            count(url, &database, "SELECT count() FROM system.tables WHERE database = currentDatabase()").await;
        assert_eq!(objects, 14, "every server has every object ({url})");
    }

    // The operational projection runs all along, through the same faults.
    let users = WorkerProcess::start(&topology, &format!("user_state_{sfx}"), None);
    let (events, model) = generate(60, 7, &uuid_hex8(), &format!("{sfx}-"));
    let (first, second) = events.split_at(events.len() / 2);
    let w = publish_twice_through_a_crash(&topology, &projection, first, &topics).await;

    // The rest flows through the gateway while the server the worker writes to is away for 30 s
    // (the worker writes through the next one it knows, shard 1 through its other replica) and
    // the leader of a busy partition crashes.
    let gateway = Gateway::start(&topology).await;
    dev_cluster(&["stop", "clickhouse-s1r1"]);
    let stopped = Instant::now();
    let half: Vec<&Value> = second[..second.len() / 2].iter().collect();
    gateway.publish_all(&half, 50, 120).await;
    let leader = dev_cluster(&["leader", &topics[0], "0"]);
    dev_cluster(&["kill", &leader]);
    let rest: Vec<&Value> = second[second.len() / 2..].iter().collect();
    gateway.publish_all(&rest, 50, 120).await;
    await_caught_up(&format!("sluice.{projection}"), &topics, 180).await;
    // An outage of 30 s: time itself must pass here, it is what is being survived.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(stopped.elapsed())).await;
    dev_cluster(&["start", "clickhouse-s1r1", &leader]);
    await_healthy(&shards[0][0], 60).await;
    drop(gateway);

    let conn = connections().clickhouse;
    assert_eq!(conn.cluster.as_deref(), env.get("SLUICE_CLICKHOUSE_CLUSTER").as_deref());
    assert_replicas_agree(&shards, &database, &sfx).await;
    // Analysts may ask any server: each answers for the whole cluster.
    for url in [&shards[0][0], &shards[1][1], &shards[0][1]] {
        assert_analysts_see_the_model(&client(url, &database), &sfx, &model).await;
    }

    let cb = within("couchbase", 30, Couchbase::connect(&connections().couchbase)).await.expect("couchbase");
    await_user_docs(&cb, &model, 120).await;
    for worker in [w, users] {
        let (status, out) = worker.terminate();
        assert!(status.success(), "clean shutdown: {status}\n{out}");
    }

    // `--key` re-inserts one aggregate's events through the Distributed tables: nothing doubles.
    let user = model.users.keys().next().expect("a user");
    let out = run_ok(sluice(&topology).args(["rebuild", "--projection", &projection, "--key", user]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_analysts_see_the_model(&client(&shards[1][0], &database), &sfx, &model).await;

    let cluster = conn.cluster.unwrap_or_default();
    client(&shards[0][0], "default")
        .query(&format!("DROP DATABASE IF EXISTS {database} ON CLUSTER {cluster}"))
        .execute()
        .await
        .expect("drop database");
}

/// A blue/green rebuild on the cluster while events flow: the local tables swap on every server,
/// readers of the `Distributed` tables never fail nor see fewer events, the old version is
/// dropped everywhere on request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_swaps_every_shard_while_events_flow() {
    let env = cluster_env();
    let (url, cluster) = (shards(&env)[0][0].clone(), env.get("SLUICE_CLICKHOUSE_CLUSTER"));
    clickhouse_rebuild(&url, "Rename", cluster.as_deref()).await;
}

/// Workers of one projection scaled 1 → 2 → 3 → 1 on the cluster while events flow, one
/// SIGKILLed: every event once in the `Distributed` tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_scaled_1_2_3_1_with_a_kill_on_the_cluster() {
    cluster_env();
    common::scale_out::workers_scaled_1_2_3_1_with_a_kill().await;
}
