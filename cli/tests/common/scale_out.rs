//! Many workers per projection, shared by the single-node test (`scale_out.rs`) and the cluster
//! tests (`cluster.rs`): `sluice work` processes of one projection share its partitions
//! (cooperative-sticky assignment, static membership), scaled 1 → 2 → 3 → 1 while events flow,
//! one of them SIGKILLed on the way; the ClickHouse tables then equal a model of the published
//! events — none missing, none doubled — and `sluice lag` names the owner of every partition
//! while two workers run.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::domain::generate;
use sluice_tests::{connections, fresh_topology, unique};

use super::{WorkerProcess, assert_analysts_see_the_model, await_caught_up, run_ok, sluice, uuid_hex8, write_jsonl};

/// `sluice publish` of `events` in the background: events flow while workers come and go.
pub fn publish_in_background(topology: &Path, name: &str, events: &[Value]) -> Child {
    let all: Vec<&Value> = events.iter().collect();
    let file = write_jsonl(topology.parent().expect("dir"), name, &all);
    sluice(topology).args(["publish", "--file"]).arg(file).stdout(Stdio::null()).spawn().expect("publish")
}

pub fn finish(mut publish: Child) {
    let status = publish.wait().expect("publish");
    assert!(status.success(), "publish failed: {status}");
}

/// A worker of `projection` with instance id `id` and a short session (a killed or stopped
/// static member's partitions wait this long for it before they move).
pub fn worker(topology: &Path, projection: &str, id: &str) -> WorkerProcess {
    let args = ["--instance-id", id, "--consumer-config", "session.timeout.ms=6000"];
    WorkerProcess::spawn(topology, projection, &args, &[], id)
}

/// `sluice lag --json` of `projection`, once the group is stable with `owners` members whose
/// partitions are every partition of the projection, each once; fails with the last answer.
pub fn await_owners(topology: &Path, projection: &str, owners: &[&str], secs: u64) -> Value {
    let wanted: BTreeSet<Option<String>> = owners.iter().map(|o| Some((*o).to_owned())).collect();
    let what = format!("owners {owners:?} in place");
    await_group(topology, projection, &what, secs, |ids| ids.iter().cloned().collect::<BTreeSet<_>>() == wanted)
}

/// `sluice lag --json` of `projection`, once its group is stable with `n` members (workers with
/// or without `--instance-id`) that own every partition of the projection, each once: the
/// workers joined and were assigned. Fails with the last answer.
pub fn await_members(topology: &Path, projection: &str, n: usize, secs: u64) -> Value {
    let what = format!("{n} worker(s) of {projection} joined its group and own every partition");
    await_group(topology, projection, &what, secs, |ids| ids.len() == n)
}

/// Polls `sluice lag --json` of `projection` until its group is stable, every partition of the
/// projection is assigned to exactly one member, and `members_ok` holds for the members'
/// instance ids (`None` for a worker without one); fails after `secs` with `what` and the last
/// answer.
fn await_group(
    topology: &Path,
    projection: &str,
    what: &str,
    secs: u64,
    members_ok: impl Fn(&[Option<String>]) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let out = run_ok(sluice(topology).args(["lag", "--json", "--projection", projection]));
        let doc: Value = serde_json::from_slice(&out.stdout).expect("lag JSON");
        let p = &doc["projections"][projection];
        let all: BTreeSet<(String, i64)> = p["partitions"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|x| (x["topic"].as_str().unwrap_or("").to_owned(), x["partition"].as_i64().unwrap_or(-1)))
                    .collect()
            })
            .unwrap_or_default();
        let members = p["group_members"]["members"].as_array().cloned().unwrap_or_default();
        let mut assigned = Vec::new();
        let mut ids = Vec::new();
        for m in &members {
            ids.push(m["client_id"].as_str().and_then(|c| c.rsplit_once('/')).map(|(_, id)| id.to_owned()));
            for tp in m["partitions"].as_array().into_iter().flatten() {
                assigned.push((tp[0].as_str().unwrap_or("").to_owned(), tp[1].as_i64().unwrap_or(-1)));
            }
        }
        let each_once = assigned.len() == all.len() && assigned.iter().cloned().collect::<BTreeSet<_>>() == all;
        if p["group_members"]["state"] == "Stable" && members_ok(&ids) && each_once && !all.is_empty() {
            return doc;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}: not within {secs}s:\n{doc:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Workers of the sample analytics projection scaled 1 → 2 → 3 → 1 while events flow, one
/// SIGKILLed; on a cluster (`SLUICE_CLICKHOUSE_CLUSTER` set) with topics replicated three times.
pub async fn workers_scaled_1_2_3_1_with_a_kill() {
    let sfx = unique("scale");
    let topology = fresh_topology(&sfx);
    let cluster = connections().clickhouse.cluster;
    if cluster.is_some() {
        let text = std::fs::read_to_string(&topology).expect("topology");
        std::fs::write(&topology, text.replace("replication_factor = 1", "replication_factor = 3")).expect("write");
    }
    let dir = topology.parent().expect("dir").to_path_buf();
    let database = format!("db_{sfx}");
    let url = connections().clickhouse.url;
    std::fs::write(
        dir.join("clickhouse.env"),
        format!("SLUICE_CLICKHOUSE_URL={url}\nSLUICE_CLICKHOUSE_DATABASE={database}\n"),
    )
    .expect("clickhouse.env");
    let projection = format!("analytics_{sfx}");
    let topics: Vec<String> = ["users", "sessions", "engagement"].iter().map(|t| format!("{t}_{sfx}")).collect();
    run_ok(sluice(&topology).args(["topics", "apply"]));
    run_ok(sluice(&topology).args(["schemas", "register"]));

    let (events, model) = generate(160, 31, &uuid_hex8(), &format!("{sfx}-"));
    let chunks: Vec<&[Value]> = events.chunks(events.len().div_ceil(4)).collect();
    // A backlog first, then the rest published while the workers scale.
    finish(publish_in_background(&topology, "c0.jsonl", chunks[0]));

    let a = worker(&topology, &projection, &format!("a-{sfx}"));
    let flowing = publish_in_background(&topology, "c1.jsonl", chunks[1]);
    let b = worker(&topology, &projection, &format!("b-{sfx}"));
    let (ida, idb, idc) = (format!("a-{sfx}"), format!("b-{sfx}"), format!("c-{sfx}"));
    // Two workers: `sluice lag` names the owner of every partition.
    let doc = await_owners(&topology, &projection, &[&ida, &idb], 90);
    let members =
        doc["projections"][projection.as_str()]["group_members"]["members"].as_array().cloned().unwrap_or_default();
    assert!(
        members.iter().all(|m| !m["partitions"].as_array().is_none_or(Vec::is_empty)),
        "both own partitions: {members:#?}"
    );
    let table = String::from_utf8_lossy(&run_ok(sluice(&topology).args(["lag", "--projection", &projection])).stdout)
        .into_owned();
    let header = table.lines().next().unwrap_or_default();
    assert!(header.ends_with("OWNER"), "{table}");
    for id in [&ida, &idb] {
        assert!(
            table.lines().skip(1).any(|l| l.starts_with(&projection) && l.ends_with(id.as_str())),
            "{id} owns a partition:\n{table}"
        );
    }
    finish(flowing);

    let c = worker(&topology, &projection, &idc);
    await_owners(&topology, &projection, &[&ida, &idb, &idc], 90);
    // Three workers take events; one of them dies without a word (no drain, no commit) while
    // they flow: its partitions go to the others once its session expired.
    let flowing = publish_in_background(&topology, "c2.jsonl", chunks[2]);
    b.kill();
    finish(flowing);
    // Back to one, with events flowing while the third drains, commits and stops.
    let flowing = publish_in_background(&topology, "c3.jsonl", chunks[3]);
    let (status, out) = c.terminate();
    assert!(status.success(), "{out}");
    assert!(!out.contains("consumed 0,"), "the third worker took part: {out}");
    finish(flowing);
    await_owners(&topology, &projection, &[&ida], 90);
    await_caught_up(&format!("sluice.{projection}"), &topics, 180).await;

    let conn = sluice_core::connections::ClickHouseConnection {
        database: database.clone(),
        cluster: cluster.clone(),
        ..sluice_core::connections::ClickHouseConnection::plain(url)
    };
    let client = crate::common::analytics::client(&conn).await;
    assert_analysts_see_the_model(&client, &sfx, &model).await;

    let (status, out) = a.terminate();
    assert!(status.success(), "{out}");
    let on_cluster = cluster.map(|c| format!(" ON CLUSTER {c}")).unwrap_or_default();
    client.query(&format!("DROP DATABASE IF EXISTS {database}{on_cluster}")).execute().await.expect("drop database");
}
