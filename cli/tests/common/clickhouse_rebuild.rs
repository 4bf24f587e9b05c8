//! A blue/green rebuild of the sample domain's ClickHouse projection while events flow: shared by
//! the single-server tests (`rebuild.rs`) and the cluster tests (`cluster.rs`).

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::domain::generate;
use sluice_tests::{fresh_topology, unique};

use super::{WorkerProcess, run_ok, sluice, uuid_hex8, write_jsonl};

/// The status, stdout and stderr of a finished command, for a failure message.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Publishes `events` with `sluice publish` (as `dir/name`).
pub fn publish(topology: &Path, name: &str, events: &[&Value]) {
    let dir = topology.parent().expect("dir");
    run_ok(sluice(topology).args(["publish", "--file"]).arg(write_jsonl(dir, name, events)));
}

/// A command's stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Topics and schemas of `topology` applied.
pub fn setup(topology: &Path) {
    run_ok(sluice(topology).args(["topics", "apply"]));
    run_ok(sluice(topology).args(["schemas", "register"]));
}

/// The last lines of the log of the `sluice work` started by [`WorkerProcess::start`].
pub fn live_log(topology: &std::path::Path, projection: &str) -> String {
    let log = std::fs::read_to_string(topology.with_file_name(format!("{projection}.log"))).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Analytics rebuilt while events flow on the ClickHouse at `url` (a server of `cluster`, if
/// any); readers never fail nor see fewer events than before; the tables are swapped (on every
/// server); the old ones dropped on request.
pub async fn clickhouse_rebuild(url: &str, swap: &str, cluster: Option<&str>) {
    let sfx = unique("rbch");
    let topology = fresh_topology(&sfx);
    let dir = topology.parent().expect("dir").to_path_buf();
    let database = format!("db_{sfx}");
    std::fs::write(
        dir.join("clickhouse.env"),
        format!("SLUICE_CLICKHOUSE_URL={url}\nSLUICE_CLICKHOUSE_DATABASE={database}\n"),
    )
    .expect("clickhouse.env");
    let projection = format!("analytics_{sfx}");
    setup(&topology);
    run_ok(sluice(&topology).args(["clickhouse", "migrate"]));
    let (events, model) = generate(40, 3, &uuid_hex8(), &format!("{sfx}-"));
    let all: Vec<&Value> = events.iter().collect();
    let (wave1, rest) = all.split_at(all.len() / 2);
    let (wave2, wave3) = rest.split_at(rest.len() / 2);
    publish(&topology, "wave1.jsonl", wave1);
    let out = run_ok(sluice(&topology).args(["work", "--projection", &projection, "--exit-at-end"]));
    assert!(stdout(&out).contains("consumed"), "{}", text(&out));
    let mut live = WorkerProcess::start(&topology, &projection, None);

    let conn = sluice_core::connections::ClickHouseConnection {
        database: database.clone(),
        cluster: cluster.map(str::to_owned),
        ..sluice_core::connections::ClickHouseConnection::plain(url.to_owned())
    };
    let client = crate::common::analytics::client(&conn).await;
    let count_sql = format!("SELECT toUInt64(uniqExact(event_id)) FROM events_{sfx}");
    let floor: u64 = client.query(&count_sql).fetch_one().await.expect("count");
    assert_eq!(floor, wave1.len() as u64);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, client, sql) = (stop.clone(), client.clone(), count_sql.clone());
        tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n: u64 = client.query(&sql).fetch_one().await.expect("a reader never fails during the swap");
                assert!(n >= floor, "a reader saw {n} events, fewer than the {floor} before the rebuild");
                reads += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            reads
        })
    };
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
    assert!(printed.contains(&format!("swap ({swap})")), "{printed}");
    assert!(printed.contains("skipped as duplicates n/a"), "{printed}");
    // After the swap the live worker writes into the new tables.
    publish(&topology, "wave3.jsonl", wave3);
    let total: u64 = model.by_type.values().sum();
    let start = Instant::now();
    loop {
        let n: u64 = client.query(&count_sql).fetch_one().await.expect("count");
        if n == total {
            break;
        }
        // The swap must not stop the live worker (it once did: an insert between two renames
        // found no table).
        if let Some(status) = live.0.try_wait().expect("try_wait") {
            panic!(
                "the live worker exited ({status}) with {n} of {total} events:\n{}",
                live_log(&topology, &projection)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{n} of {total} events after the swap; the live worker's log:\n{}",
            live_log(&topology, &projection)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.await.expect("reader") > 0);

    let by_type: Vec<(String, u64)> = client
        .query(&format!(
            "SELECT event_type, toUInt64(count()) FROM events_{sfx} FINAL GROUP BY event_type ORDER BY event_type"
        ))
        .fetch_all()
        .await
        .expect("events by type");
    assert_eq!(by_type, model.by_type.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>());
    let daily: Vec<(String, u64, u64, u64, i64)> = client
        .query("SELECT user_id, toUInt64(page_views), toUInt64(clicks), toUInt64(purchases), toInt64(revenue_cents) FROM daily_engagement ORDER BY day, user_id")
        .fetch_all()
        .await
        .expect("daily");
    let expected: Vec<(String, u64, u64, u64, i64)> =
        model.daily.iter().map(|((_, u), (pv, c, p, r))| (u.clone(), *pv, *c, *p, *r)).collect();
    assert_eq!(daily, expected, "the rollup of the new version counts every event once");
    let users: Vec<(String, String)> = client
        .query(&format!("SELECT user_id, email FROM users_current_{sfx} WHERE is_deleted = 0 ORDER BY user_id"))
        .fetch_all()
        .await
        .expect("users_current");
    let expected: Vec<(String, String)> =
        model.users.iter().map(|(u, d)| (u.clone(), d["email"].as_str().unwrap_or_default().to_owned())).collect();
    assert_eq!(users, expected);

    let tables = |client: clickhouse::Client, database: String| async move {
        client
            .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
            .bind(database)
            .fetch_all::<String>()
            .await
            .expect("tables")
    };
    let before_drop = tables(client.clone(), database.clone()).await;
    assert!(before_drop.contains(&format!("events_{sfx}__v1")), "the old version is kept: {before_drop:?}");
    assert!(!before_drop.iter().any(|t| t.contains("__v2")), "{before_drop:?}");
    if cluster.is_some() {
        assert!(before_drop.contains(&format!("events_{sfx}__v1_local")), "{before_drop:?}");
    }
    run_ok(sluice(&topology).args(["rebuild", "--projection", &projection, "--drop-old"]));
    let after_drop = tables(client.clone(), database.clone()).await;
    assert!(!after_drop.iter().any(|t| t.contains("__v1")), "{after_drop:?}");
    let n: u64 = client.query(&count_sql).fetch_one().await.expect("count");
    assert_eq!(n, total, "dropping the old version leaves the live one");
    let (status, out) = live.terminate();
    assert!(status.success(), "{out}");
    let on_cluster = cluster.map(|c| format!(" ON CLUSTER {c}")).unwrap_or_default();
    client.query(&format!("DROP DATABASE IF EXISTS {database}{on_cluster}")).execute().await.expect("drop database");
}
