//! `sluice bench --workers 1,2,3`: phase 1's backlog drained by `n` `sluice work` processes per
//! projection instead of one in-process worker — what scaling a projection out costs or gains on
//! the machine at hand.
//!
//! Every run starts from the same undrained backlog and an empty sink, so the runs compare: it
//! reads the isolated copy's topics with a consumer group of its own (`sluice.<projection>.w<n>`,
//! declared in a per-run copy of the isolated topology file) and writes a sink target of its own
//! (Couchbase collection `<bench collection>_w<n>`, ClickHouse database `<bench database>_w<n>`
//! via `SLUICE_CLICKHOUSE_DATABASE`, which the workers create when they migrate on start). The
//! clock runs from spawning the children until the run's group has committed every record of the
//! projection's sources, so process start and the group join are in it; the start-up share (spawn
//! → the group `Stable` with `n` members) is measured apart. The collections and databases are
//! dropped at the end unless `--keep`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sluice_consumers::group::describe;
use sluice_consumers::lag::LagMonitor;
use sluice_consumers::sinks::clickhouse::ClickHouse;
use sluice_consumers::sinks::couchbase::{Couchbase, drop_collection, setup};
use sluice_core::topology::{CouchbaseSink, Topology};

use super::Row;
use super::cost::{Cost, Meter};
use crate::Context;

/// How long one run may take to drain its backlog before the bench gives up: generous (the
/// slowest run measured, Couchbase's ~110 k events, took 15 s), since a run of three processes on
/// two cores may drain far slower than one.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// How long a SIGTERMed worker has to drain, commit and exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines of a crashed worker's stderr quoted in the error.
const STDERR_TAIL: usize = 20;

/// `--workers`: the numbers of worker processes to drain the backlog with, one run each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerCounts(pub(crate) Vec<usize>);

/// Parses `--workers`: a comma-separated list of distinct counts ≥ 1, e.g. `1,2,3`.
pub(crate) fn parse_counts(text: &str) -> Result<WorkerCounts, String> {
    let mut counts = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let n: usize = part.parse().map_err(|_| format!("{part:?} is not a number of workers"))?;
        if n == 0 {
            return Err("a run needs at least 1 worker".to_owned());
        }
        // Each run's group and sink target are named after its count: twice the same would share them.
        if counts.contains(&n) {
            return Err(format!("{n} is listed twice"));
        }
        counts.push(n);
    }
    Ok(WorkerCounts(counts))
}

/// The name of the run with `n` workers, the suffix of its group and sink targets.
fn run_name(n: usize) -> String {
    format!("w{n}")
}

/// The isolated topology `text` for run `run`: every projection (`[projections.<name>]`) with the
/// consumer group `sluice.<name>.<run>`, and Couchbase collection `collection` renamed
/// `<collection>_<run>`. Text-based, like `sample::isolated_topology`; the copy declares no group
/// of its own.
fn per_run_topology(text: &str, collection: &str, run: &str) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        let header = line.trim().strip_prefix("[projections.").and_then(|rest| rest.strip_suffix(']'));
        if let Some(name) = header.filter(|name| !name.contains('.')) {
            out.push_str(&format!("group = \"sluice.{name}.{run}\"\n"));
        }
    }
    out.replace(&format!("collection = \"{collection}\""), &format!("collection = \"{collection}_{run}\""))
}

/// The `sluice work` children of one run, killed when dropped so a failed run leaves none behind.
struct Children {
    children: Vec<(Child, PathBuf)>,
}

impl Children {
    /// Spawns `n` `sluice work --projection <projection>` of this binary on `topology`, each with
    /// its stderr in `dir`.
    fn spawn(
        env_file: Option<&Path>,
        topology: &Path,
        projection: &str,
        n: usize,
        database: &str,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the sluice binary")?;
        let mut children = Vec::with_capacity(n);
        for i in 0..n {
            let instance = format!("bench-{n}-{i}");
            let log = dir.join(format!("{projection}-{instance}.log"));
            let stderr = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
            let mut cmd = Command::new(&exe);
            if let Some(env_file) = env_file {
                cmd.arg("--env-file").arg(env_file);
            }
            cmd.arg("--topology")
                .arg(topology)
                .args(["--log", "warn", "work", "--projection", projection, "--instance-id", &instance])
                .env("SLUICE_CLICKHOUSE_DATABASE", database)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr);
            let child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
            children.push((child, log));
        }
        Ok(Self { children })
    }

    /// An error with the stderr tail of the first child that has exited, if any.
    fn check_running(&mut self) -> anyhow::Result<()> {
        for (child, log) in &mut self.children {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("a `sluice work` child exited early ({status}); the end of its stderr:\n{}", tail(log));
            }
        }
        Ok(())
    }

    /// SIGTERM to every child, then waits for each to drain and exit (killed past
    /// [`STOP_TIMEOUT`]). Exit statuses other than success are reported, not fatal: the run has
    /// been measured by then.
    async fn stop(mut self) -> anyhow::Result<()> {
        for (child, _) in &self.children {
            // The `kill` command, as the tests do: std sends SIGKILL only, and no signal crate is in the build.
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status().context("running kill -TERM")?;
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for (child, log) in &mut self.children {
            let status: ExitStatus = loop {
                if let Some(status) = child.try_wait()? {
                    break status;
                }
                if Instant::now() > deadline {
                    child.kill()?;
                    break child.wait()?;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            if !status.success() {
                eprintln!("    a worker stopped with {status}; the end of its stderr:\n{}", tail(log));
            }
        }
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (child, _) in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The last [`STDERR_TAIL`] lines of the file at `path`.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(STDERR_TAIL)..].join("\n")
}

/// One run's measurements.
struct Run {
    /// Records in the projection's sources, all committed at the end.
    events: u64,
    /// Spawn → every record committed.
    elapsed: Duration,
    /// Spawn → the group first seen `Stable` with `n` members; `None` if never seen so.
    startup: Option<Duration>,
    /// Records still not committed when the run gave up after [`RUN_TIMEOUT`] (`None`: drained).
    left: Option<u64>,
    /// The children's CPU time and largest peak memory.
    cost: Option<Cost>,
}

/// Drains the backlog of `projection` with `n` children; `topology` declares the run's group.
async fn drain(
    env_file: Option<&Path>,
    ctx: &Context,
    (path, topology): (&Path, &Topology),
    projection: &str,
    n: usize,
    database: &str,
) -> anyhow::Result<Run> {
    let kafka = ctx.connections.kafka.clone();
    let group = topology.projection(projection).map(|p| p.group.clone()).context("the projection is gone")?;
    // The group has committed nothing yet: its lag is everything in the sources.
    let before = LagMonitor::snapshot_once(topology, &kafka).await?;
    let events = before.projections.get(projection).map_or(0, |p| p.lag_messages);
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut children = Children::spawn(env_file, path, projection, n, database, dir)?;
    let meter = Meter::processes(children.children.iter().map(|(c, _)| c.id()));
    let start = Instant::now();
    let mut startup = None;
    let mut left = None;
    // The group as last described, told when it was never seen Stable with every worker.
    let mut last_seen = String::from("not described");
    loop {
        children.check_running()?;
        if startup.is_none() {
            let (kafka, group) = (kafka.clone(), group.clone());
            match tokio::task::spawn_blocking(move || describe(&kafka, &group)).await? {
                Ok(v) if v.state == "Stable" && v.members.len() == n => {
                    startup = Some(start.elapsed());
                    last_seen = format!("Stable with {n} members at {:.2?}", start.elapsed());
                }
                Ok(v) => last_seen = format!("{} with {} members at {:.2?}", v.state, v.members.len(), start.elapsed()),
                Err(e) => last_seen = e.to_string(),
            }
        }
        let snapshot = LagMonitor::snapshot_once(topology, &kafka).await?;
        let lag = snapshot.projections.get(projection).filter(|p| p.error.is_none());
        if lag.is_some_and(|p| p.lag_messages == 0) {
            break;
        }
        if start.elapsed() > RUN_TIMEOUT {
            let behind: Vec<String> = lag
                .iter()
                .flat_map(|p| &p.partitions)
                .filter(|p| p.lag_messages > 0)
                .map(|p| format!("{}[{}] at {:?} of {}", p.topic, p.partition, p.committed, p.high_watermark))
                .collect();
            // Reported as a row with what is left, not fatal: the other runs still measure.
            eprintln!(
                "    {n} workers of {projection} did not drain the backlog in {RUN_TIMEOUT:?}; behind: {} \
                 (their logs: {}; group {last_seen})",
                behind.join(", "),
                dir.display()
            );
            left = Some(lag.map_or(events, |p| p.lag_messages));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = start.elapsed();
    if startup.is_none() {
        eprintln!(
            "    {projection}: the group was not seen Stable with {n} members before it caught up (last: {last_seen})"
        );
    }
    let cost = meter.finish();
    children.stop().await?;
    Ok(Run { events, elapsed, startup, left, cost })
}

/// Phase 1 with `--workers`: the rows `backlog ×n` of each of `projections` (name, sink) for each
/// count, in order. Cleans up its collections and databases unless `keep`.
pub(super) async fn backlog_rows(
    env_file: Option<&Path>,
    ctx: &Context,
    projections: &[(String, &'static str)],
    counts: &WorkerCounts,
    suffix: &str,
    keep: bool,
) -> anyhow::Result<Vec<Row>> {
    let isolated = ctx.topology()?.path().to_owned();
    let text = std::fs::read_to_string(&isolated)?;
    let cb = Couchbase::connect(&ctx.connections.couchbase).await?;
    let mut made = Made::default();
    let rows = async {
        let mut runs = Vec::new();
        for &n in &counts.0 {
            let run = run_name(n);
            let path = isolated.with_file_name(format!("topology-{run}.toml"));
            std::fs::write(&path, per_run_topology(&text, &format!("sluice_{suffix}"), &run))?;
            let topology = Topology::load(&path).with_context(|| format!("reading {}", path.display()))?;
            let couchbase: Vec<(&str, &CouchbaseSink)> = topology.couchbase_projections().collect();
            made.collections.extend(couchbase.iter().map(|(_, c)| (c.scope.clone(), c.collection.clone())));
            setup(&cb, &couchbase).await?;
            runs.push((n, path, topology));
        }
        let mut rows = Vec::new();
        for (name, sink) in projections {
            for (n, path, topology) in &runs {
                let database = format!("{}_{}", ctx.connections.clickhouse.database, run_name(*n));
                if *sink == "clickhouse" {
                    made.databases.push(database.clone());
                }
                let r = drain(env_file, ctx, (path, topology), name, *n, &database)
                    .await
                    .with_context(|| format!("draining {name} with {n} workers"))?;
                let startup = r.startup.map_or("?".to_owned(), |d| format!("{d:.2?}"));
                match r.left {
                    None => eprintln!(
                        "  {name} ×{n}: {} events in {:.2?} (group stable after {startup})",
                        r.events, r.elapsed
                    ),
                    Some(left) => {
                        eprintln!("  {name} ×{n}: gave up after {:.2?} with {left} of {} left", r.elapsed, r.events)
                    }
                }
                let done = r.events - r.left.unwrap_or(0).min(r.events);
                let mut row = Row::drained(format!("backlog ×{n}"), name.clone(), sink, done, r.elapsed);
                row.startup = Some(r.startup);
                row.cost = r.cost;
                row.not_visible = r.left.map(Some);
                rows.push(row);
            }
        }
        Ok::<_, anyhow::Error>(rows)
    }
    .await;
    if !keep && let Err(e) = made.drop(ctx, &cb).await {
        eprintln!("could not remove the --workers runs' collections and databases: {e:#}");
    }
    rows
}

/// The sink targets the runs made.
#[derive(Default)]
struct Made {
    /// Couchbase (scope, collection).
    collections: std::collections::BTreeSet<(String, String)>,
    /// ClickHouse databases.
    databases: Vec<String>,
}

impl Made {
    async fn drop(&self, ctx: &Context, cb: &Couchbase) -> anyhow::Result<()> {
        let bucket = cb.open_bucket(None).await?;
        for (scope, collection) in &self.collections {
            drop_collection(&bucket, scope, collection).await?;
        }
        let conn = &ctx.connections.clickhouse;
        let client = ClickHouse::connect(conn).await?.client;
        for database in &self.databases {
            let drop = super::drop_database(database, conn.cluster.as_deref());
            client.query_raw(&drop).execute().await.with_context(|| drop.clone())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_distinct_counts_of_at_least_one() {
        assert_eq!(parse_counts("1,2,3"), Ok(WorkerCounts(vec![1, 2, 3])));
        assert_eq!(parse_counts(" 3, 1 "), Ok(WorkerCounts(vec![3, 1])));
        assert_eq!(parse_counts("2"), Ok(WorkerCounts(vec![2])));
        assert!(parse_counts("0,1").is_err());
        assert!(parse_counts("1,1").is_err());
        assert!(parse_counts("1,,2").is_err());
        assert!(parse_counts("").is_err());
        assert!(parse_counts("two").is_err());
    }

    #[test]
    fn each_run_has_its_group_and_collection() {
        let text = "[topics.users_b]\npartitions = 6\n\n[projections.user_state_b]\nsources = [\"users_b\"]\n\
                    sink = \"couchbase\"\n\n[projections.user_state_b.couchbase]\ncollection = \"sluice_b\"\n\n\
                    [projections.analytics_b]\nsink = \"clickhouse\"\n[projections.analytics_b.clickhouse.tables.x]\n";
        let out = per_run_topology(text, "sluice_b", "w2");
        assert_eq!(
            out,
            "[topics.users_b]\npartitions = 6\n\n[projections.user_state_b]\ngroup = \"sluice.user_state_b.w2\"\n\
             sources = [\"users_b\"]\nsink = \"couchbase\"\n\n[projections.user_state_b.couchbase]\n\
             collection = \"sluice_b_w2\"\n\n[projections.analytics_b]\ngroup = \"sluice.analytics_b.w2\"\n\
             sink = \"clickhouse\"\n[projections.analytics_b.clickhouse.tables.x]\n"
        );
    }

    #[test]
    fn the_rewrite_of_the_repository_topology_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("topology.toml")).expect("topology.toml");
        let schemas = root.join("schemas").canonicalize().expect("schemas");
        let isolated = sluice_sample::isolated_topology(&text, &schemas, "bt")
            .replace("collection = \"_default\"", "collection = \"sluice_bt\"");
        let dir = std::env::temp_dir().join(format!("sluice-bench-workers-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("topology.toml");
        std::fs::write(&path, per_run_topology(&isolated, "sluice_bt", "w3")).expect("write");
        let topology = Topology::load(&path).expect("the per-run topology parses");
        let user_state = topology.projection("user_state_bt").expect("user_state_bt");
        assert_eq!(user_state.group, "sluice.user_state_bt.w3");
        let collections: Vec<&str> = topology.couchbase_projections().map(|(_, c)| c.collection.as_str()).collect();
        assert!(!collections.is_empty() && collections.iter().all(|c| *c == "sluice_bt_w3"), "{collections:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
