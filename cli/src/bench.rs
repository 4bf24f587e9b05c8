//! `sluice bench`: the pipeline's throughput and publish→visible latency on the services at hand,
//! printed as a table. A benchmark, not a test: it asserts nothing, it measures.
//!
//! Everything runs on an isolated copy of the default topology (suffixed topics, groups and
//! tables), so it never touches real projections. Two phases:
//! 1. **backlog**: `--backlog` sample events are published as fast as possible, then each
//!    projection drains them alone; events/s = projected / busy time (first record read → last
//!    batch acknowledged, so start-up and the group join are not counted).
//! 2. **steady rate**: the projections run together (`--projection` picks some); once each has
//!    joined its group and caught up with a second of warm-up events, events are published at
//!    `--rate` for `--duration`, each stamped `occurred_at = now`. Each projection's events/s is
//!    its own: the events it made visible (sink acknowledged) while the phase ran, over the
//!    phase's length — a projection that falls behind shows it. When publishing ends, the bench
//!    waits up to `--catch-up` for every projection to commit everything published; events made
//!    visible in that wait (the tail) count in the latency, and those still not visible at the
//!    deadline are reported (with that many missing, the p99 is at least the wait). Latency is
//!    the worker's own `sluice_event_visible_latency_seconds` (event time → sink
//!    acknowledgement) per projection, split into its Kafka share
//!    (`sluice_record_read_latency_seconds`: record timestamp → read) and the sink's write time.
//!
//! In phase 1, each ClickHouse projection with typed tables (declared, state) also has a
//! **baseline**: the same projection writing its raw table only (every payload as JSON text),
//! `<name>_json`, drained from the same backlog, so the cost of the typed tables is read off one
//! run (the last line says how fast the typed projection drains relative to it).
//!
//! Each projection's backlog row comes with a [`blackhole`] row: its worker alone (consumer,
//! decoder, batching, commits) draining the same backlog into a sink that drops every event —
//! the floor under the projection's CPU, so what the sink itself costs reads off the difference.
//!
//! Each Couchbase projection's backlog row comes with its key-value operations per event
//! (`sluice_couchbase_operations_total`) and the worker's CPU per operation, and [`kv_floor`]
//! times the SDK alone on the same collection: the floor under that CPU.
//!
//! With `--workers 1,2,3`, phase 1 instead drains the backlog of each projection (baselines
//! left out) with 1, then 2, then 3 `sluice work` processes, each run with a consumer group and a
//! sink target of its own (see [`workers`]); its clock includes process start and the group join.
//!
//! The copy's topics, its ClickHouse database and its Couchbase collection (both
//! `sluice_<suffix>`) are dropped at the end unless `--keep`.

mod blackhole;
mod cost;
mod gateway;
mod kv_floor;
mod table;
mod workers;

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures::stream::{FuturesUnordered, StreamExt};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use sluice_consumers::lag::LagMonitor;
use sluice_consumers::sinks::clickhouse::ClickHouse;
use sluice_consumers::sinks::couchbase::{Couchbase, drop_collection, setup};
use sluice_consumers::worker::metrics::names;
use sluice_core::connections::KafkaConnection;
use sluice_core::topology::{CouchbaseSink, SinkConfig, Topology};
use sluice_producers::admin::topics::TopicAdmin;
use sluice_producers::{Publisher, PublisherOptions};
use sluice_sample as sample;
use tokio_util::sync::CancellationToken;

use crate::work::{RunOptions, run_projection};
use crate::{Context, GlobalArgs};
use table::print_rows;

/// Options of `sluice bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Events published up front and drained by each projection alone (phase 1; 0 skips it).
    #[arg(long, default_value_t = 100_000)]
    backlog: usize,
    /// Events per second published in the steady phase (phase 2; 0 skips it).
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Length of the steady phase.
    #[arg(long, default_value = "20s", value_parser = crate::work::parse_duration)]
    duration: Duration,
    /// After the steady phase, how long to wait for every projection to make the rest of the
    /// published events visible; those still missing then are reported as not visible.
    #[arg(long, default_value = "30s", value_parser = crate::work::parse_duration)]
    catch_up: Duration,
    /// Run only this projection (repeat for several; default: every projection). Alone, a
    /// projection has the machine's cores to itself: compare with all of them running to see how
    /// much of the latency is contention.
    #[arg(long = "projection", value_name = "NAME")]
    projections: Vec<String>,
    /// Keep the isolated copy (its topics, ClickHouse database and Couchbase collection) instead
    /// of dropping it at the end, e.g. to query what was written.
    #[arg(long)]
    keep: bool,
    /// Drain phase 1's backlog with this many `sluice work` processes per projection instead of
    /// one in-process worker, one run per count, e.g. `1,2,3`. Each run has its own consumer group
    /// and sink target, so every run starts from the same backlog and an empty sink; its time runs
    /// from spawning the processes until their group committed the whole backlog. The JSON-only
    /// baselines are not run.
    #[arg(long, value_name = "LIST", value_parser = workers::parse_counts)]
    workers: Option<workers::WorkerCounts>,
    /// Publish the steady phase through a gateway (`sluice gateway`, started in this process on
    /// a loopback port) over HTTP, one event per request, instead of the publisher library; its
    /// row shows the requests' p50/p99 (from when each was due). The gateway stamps `occurred_at`
    /// at intake, so publish → visible then starts there.
    #[arg(long)]
    gateway: bool,
    /// Connections the `--gateway` requests use, each with one request in flight.
    #[arg(long, default_value_t = 64, requires = "gateway")]
    gateway_connections: usize,
    /// Events per `--gateway` request: above 1, the events go in batches to `POST /v1/batch`.
    #[arg(long, default_value_t = 1, requires = "gateway")]
    gateway_batch: usize,
    /// The global `--env-file`, passed on to the `--workers` processes.
    #[arg(skip)]
    env_file: Option<std::path::PathBuf>,
}

const MAX_IN_FLIGHT: usize = 10_000;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Publishes `events`, at most `rate` per second when given, stamping `occurred_at` at send time.
async fn publish(publisher: &Publisher, events: &mut [serde_json::Value], rate: Option<u64>) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    for (i, e) in events.iter_mut().enumerate() {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        e["occurred_at"] = now_ms().into();
        let event_type = e["event_type"].as_str().unwrap_or_default().to_owned();
        pending.push(publisher.enqueue_json(&event_type, e).await?);
        while pending.len() >= MAX_IN_FLIGHT {
            if let Some(r) = pending.next().await {
                r?;
            }
        }
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    Ok(events.len() as f64 / start.elapsed().as_secs_f64())
}

/// Publishes the steady phase's `events` at `rate`: through `gateway` when there is one (with what
/// its requests measured), else with the publisher library. The rate reached.
async fn publish_steady(
    publisher: &Publisher,
    gateway: Option<&gateway::Gateway>,
    events: &mut [serde_json::Value],
    rate: u64,
) -> anyhow::Result<(f64, Option<crate::loadgen::PhaseResult>)> {
    let Some(gateway) = gateway else { return Ok((publish(publisher, events, Some(rate)).await?, None)) };
    let result = gateway.publish(events, rate).await?;
    Ok((result.events as f64 / result.elapsed.as_secs_f64().max(1e-9), Some(result)))
}

/// What the metrics recorded since the last take, by metric name and projection label: every
/// histogram's samples, and every counter's increase by its `operation` label (empty without
/// one). Taking them drains them.
#[derive(Debug, Default, Clone)]
struct Samples {
    histograms: BTreeMap<(String, String), Vec<f64>>,
    counters: BTreeMap<(String, String), BTreeMap<String, u64>>,
}

impl Samples {
    /// The samples of `metric` for `projection`.
    fn histogram(&self, metric: &str, projection: &str) -> Option<&Vec<f64>> {
        self.histograms.get(&(metric.to_owned(), projection.to_owned()))
    }
}

fn take(snapshotter: &Snapshotter) -> Samples {
    let mut out = Samples::default();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (_, key) = key.into_parts();
        let label = |name: &str| key.labels().find(|l| l.key() == name).map(|l| l.value().to_owned());
        let Some(projection) = label("projection") else { continue };
        let at = (key.name().to_owned(), projection);
        match value {
            DebugValue::Histogram(values) => {
                out.histograms.entry(at).or_default().extend(values.into_iter().map(|v| v.into_inner()));
            }
            DebugValue::Counter(n) => {
                *out.counters.entry(at).or_default().entry(label("operation").unwrap_or_default()).or_default() += n;
            }
            DebugValue::Gauge(_) => {}
        }
    }
    out
}

/// Records each of `projections` has not committed yet (`None`: its lag is unknown), polled
/// until every one is at 0 or `within` has passed.
async fn wait_caught_up(
    topology: &Topology,
    kafka: &KafkaConnection,
    projections: &[&str],
    within: Duration,
) -> anyhow::Result<BTreeMap<String, Option<u64>>> {
    let start = Instant::now();
    loop {
        let snapshot = LagMonitor::snapshot_once(topology, kafka).await?;
        let behind: BTreeMap<String, Option<u64>> = projections
            .iter()
            .map(|name| {
                let lag = snapshot.projections.get(*name).filter(|p| p.error.is_none()).map(|p| p.lag_messages);
                ((*name).to_owned(), lag)
            })
            .collect();
        if behind.values().all(|lag| *lag == Some(0)) || start.elapsed() > within {
            return Ok(behind);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the consumer groups of `projections` have committed everything published so far.
async fn caught_up(
    topology: &Topology,
    kafka: &KafkaConnection,
    projections: &[&str],
    within: Duration,
) -> anyhow::Result<()> {
    let behind: Vec<String> = wait_caught_up(topology, kafka, projections, within)
        .await?
        .into_iter()
        .filter_map(|(name, lag)| match lag {
            Some(0) => None,
            Some(n) => Some(format!("{name}: {n} behind")),
            None => Some(format!("{name}: no lag yet")),
        })
        .collect();
    if behind.is_empty() {
        return Ok(());
    }
    anyhow::bail!("the workers did not catch up with the warm-up events in {within:?}: {}", behind.join(", "))
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

struct Row {
    phase: String,
    projection: String,
    sink: &'static str,
    events: u64,
    per_sec: f64,
    /// Steady phase: events made visible after publishing ended, within `--catch-up`.
    tail: Option<u64>,
    /// Steady phase: records still not committed when `--catch-up` ended (`None` in the inner
    /// option: the lag could not be read).
    not_visible: Option<Option<u64>>,
    /// Publish → visible p50 and p99; only a lower bound when the events never seen reach them.
    p50_ms: Option<Latency>,
    p99_ms: Option<Latency>,
    /// Sink write time p50/p99 (ms) in the phase.
    write_ms: Option<(f64, f64)>,
    /// Kafka timestamp → read by the worker, p50/p99 (ms): the Kafka share of the latency.
    read_ms: Option<(f64, f64)>,
    /// `--workers` runs: spawn → the group `Stable` with every worker (`None` inside: never seen).
    startup: Option<Option<Duration>>,
    /// Backlog rows: the drain's CPU time and memory ([`cost`]).
    cost: Option<cost::Cost>,
    /// Backlog rows of Couchbase projections: the key-value operations sent, by kind.
    kv_operations: Option<BTreeMap<String, u64>>,
}

impl Row {
    /// The publisher's row of a phase.
    fn publish(phase: String, events: u64, per_sec: f64) -> Self {
        Self {
            phase,
            projection: "(publish)".into(),
            sink: "kafka",
            events,
            per_sec,
            tail: None,
            not_visible: None,
            p50_ms: None,
            p99_ms: None,
            write_ms: None,
            read_ms: None,
            startup: None,
            cost: None,
            kv_operations: None,
        }
    }

    /// A row of `events` drained in `elapsed`.
    fn drained(phase: String, projection: String, sink: &'static str, events: u64, elapsed: Duration) -> Self {
        Self {
            projection,
            sink,
            per_sec: events as f64 / elapsed.as_secs_f64().max(1e-9),
            ..Self::publish(phase, events, 0.0)
        }
    }
}

/// A latency quantile, or only its lower bound when it falls among the events never seen.
#[derive(Debug, Clone, Copy)]
enum Latency {
    Ms(f64),
    AtLeast(Duration),
}

/// The `q` quantile of `sorted` latencies and `missing` more known only to be larger than all of
/// them; `None` when it falls among the missing ones (or there are none at all).
fn quantile_with_missing(sorted: &[f64], missing: usize, q: f64) -> Option<f64> {
    let total = sorted.len() + missing;
    if total == 0 {
        return None;
    }
    sorted.get(((total - 1) as f64 * q).round() as usize).copied()
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// p50/p99 in ms of one metric of one projection.
fn p50_p99(samples: &Samples, metric: &str, projection: &str) -> Option<(f64, f64)> {
    let v = sorted(samples.histogram(metric, projection)?.clone());
    Some((quantile(&v, 0.5) * 1000.0, quantile(&v, 0.99) * 1000.0))
}

pub(crate) async fn run(global: &GlobalArgs, mut args: BenchArgs) -> anyhow::Result<ExitCode> {
    args.env_file.clone_from(&global.env_file);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;

    // An isolated copy of the default topology.
    let suffix = format!("bench{}", now_ms() % 1_000_000_000);
    let original = Topology::load(&global.topology).context("reading the topology")?;
    let dir = std::env::temp_dir().join(format!("sluice-{suffix}"));
    std::fs::create_dir_all(&dir)?;
    let text = std::fs::read_to_string(original.path())?;
    let schemas = original.path().parent().unwrap_or(std::path::Path::new(".")).join("schemas").canonicalize()?;
    let path = dir.join("topology.toml");
    // Its own Couchbase collection too, dropped at the end: documents left behind would pile up in
    // the rig's Couchbase mock, which slows down as it holds more.
    let mut isolated = sample::isolated_topology(&text, &schemas, &suffix)
        .replace("collection = \"_default\"", &format!("collection = \"sluice_{suffix}\""));
    isolated.push_str(&baselines(&original, &suffix));
    std::fs::write(&path, isolated)?;
    let mut global = global.clone();
    global.topology = path;
    let mut ctx = Context::load(&global).await?;
    // A database of its own: the copy's tables never meet the live ones (the rollups' names do
    // not carry the table suffix), and dropping it removes all of them.
    ctx.connections.clickhouse.database = format!("sluice_{suffix}");
    let topology = Arc::new(ctx.topology()?.clone());
    let admin = TopicAdmin::new(&ctx.connections.kafka, Duration::from_secs(30))?;
    admin.apply(admin.plan(&topology).await?).await?;
    let couchbase: Vec<(&str, &CouchbaseSink)> = topology.couchbase_projections().collect();
    let cb = Couchbase::connect(&ctx.connections.couchbase).await?;
    setup(&cb, &couchbase).await?;
    let publisher = Publisher::new(topology.clone(), &ctx.connections, PublisherOptions::new("sluice-bench"))?;
    for wanted in &args.projections {
        if original.projection(wanted).is_none() {
            anyhow::bail!("no projection {wanted:?} in {}", original.path().display());
        }
    }
    let chosen = |name: &str| {
        let name = name.strip_suffix(&format!("_{suffix}")).unwrap_or(name);
        let name = name.strip_suffix(BASELINE).unwrap_or(name);
        args.projections.is_empty() || args.projections.iter().any(|w| name == w)
    };
    let projections: Vec<(String, &'static str)> = topology
        .projections()
        .filter(|(n, _)| chosen(n))
        .map(|(n, p)| {
            (n.to_owned(), if matches!(p.sink, SinkConfig::Couchbase { .. }) { "couchbase" } else { "clickhouse" })
        })
        .collect();
    eprintln!("bench on isolated topology {} (suffix {suffix})", global.topology.display());
    let mut measured = measure(&args, &ctx, &topology, &publisher, &projections, &snapshotter, &suffix).await;
    // The SDK's own cost per operation, next to the Couchbase projections' backlog drains.
    let floor_on = couchbase.iter().find(|(name, _)| projections.iter().any(|(p, _)| p == name));
    if let (Ok(rows), Some((_, sink)), true) = (&mut measured, floor_on, args.backlog > 0 && args.workers.is_none()) {
        eprintln!("the Couchbase SDK alone: {KV_FLOOR_OPERATIONS} inserts, gets and removes");
        let floor = async {
            let bucket = cb.open_bucket(sink.bucket.as_deref()).await?;
            let collection = bucket.scope(&sink.scope).collection(&sink.collection);
            kv_floor::rows(&collection, &suffix, KV_FLOOR_OPERATIONS).await
        };
        // A failure here leaves the drains' rows as they are, and the copy is still cleaned up.
        match floor.await {
            Ok(floor) => rows.extend(floor),
            Err(e) => eprintln!("could not measure the Couchbase SDK alone: {e:#}"),
        }
    }
    if args.keep {
        eprintln!("kept the isolated copy (suffix {suffix})");
    } else if let Err(e) = clean_up(&ctx, &topology, &cb, &couchbase).await {
        eprintln!("could not remove the isolated copy (suffix {suffix}): {e:#}");
    }
    print_rows(&measured?, &suffix);
    Ok(ExitCode::SUCCESS)
}

/// Operations of each kind the Couchbase floor ([`kv_floor`]) times.
const KV_FLOOR_OPERATIONS: usize = 10_000;

/// Appended to a ClickHouse projection's name for its JSON-only baseline.
const BASELINE: &str = "_json";

/// The JSON-only baselines of `topology`'s ClickHouse projections with typed tables, as topology
/// text for the isolated copy: same sources, batches and raw table, nothing declared.
fn baselines(topology: &Topology, suffix: &str) -> String {
    let mut out = String::new();
    for (name, p) in topology.projections() {
        let SinkConfig::ClickHouse { clickhouse } = &p.sink else { continue };
        if clickhouse.tables.is_empty() && clickhouse.state.is_empty() {
            continue;
        }
        let sources: Vec<String> = p.sources.iter().map(|s| format!("{:?}", renamed_source(s, suffix))).collect();
        out.push_str(&format!(
            "\n[projections.{name}{BASELINE}_{suffix}]\nsources = [{}]\nsink = \"clickhouse\"\nbatch_size = {}\n\
             linger = \"{}\"\n\n[projections.{name}{BASELINE}_{suffix}.clickhouse]\ntable = \"{}{BASELINE}_{suffix}\"\n",
            sources.join(", "),
            p.batch_size,
            p.linger,
            clickhouse.table
        ));
    }
    out
}

/// A source topic as the isolated copy names it (see `sample::isolated_topology`).
fn renamed_source(topic: &str, suffix: &str) -> String {
    let text = sample::isolated_topology(&format!("sources = [\"{topic}\"]"), std::path::Path::new("."), suffix);
    text.split('"').nth(1).unwrap_or(topic).to_owned()
}

/// Drops what the bench made: the isolated topics (and dead-letter topics), its ClickHouse
/// database and its Couchbase collection.
async fn clean_up(
    ctx: &Context,
    topology: &Topology,
    cb: &Couchbase,
    couchbase: &[(&str, &CouchbaseSink)],
) -> anyhow::Result<()> {
    let places: BTreeSet<(&str, &str)> =
        couchbase.iter().map(|(_, c)| (c.scope.as_str(), c.collection.as_str())).collect();
    let bucket = cb.open_bucket(None).await?;
    for (scope, collection) in places {
        drop_collection(&bucket, scope, collection).await?;
    }
    let conn = &ctx.connections.clickhouse;
    let drop = drop_database(&conn.database, conn.cluster.as_deref());
    ClickHouse::connect(conn).await?.client.query_raw(&drop).execute().await.with_context(|| drop.clone())?;
    // A set: the dead-letter topics may be declared topics too, and Kafka refuses a request
    // naming a topic twice.
    let mut topics: BTreeSet<&str> = topology.topics().map(|(n, _)| n).collect();
    topics.extend(topology.projections().map(|(_, p)| p.dlq_topic.as_str()));
    let topics: Vec<&str> = topics.into_iter().collect();
    TopicAdmin::new(&ctx.connections.kafka, Duration::from_secs(30))?.delete(&topics).await?;
    Ok(())
}

/// `DROP DATABASE` of `database`, on every server of `cluster` when given (else the tables would
/// stay on the other servers, and their replicas in ZooKeeper).
fn drop_database(database: &str, cluster: Option<&str>) -> String {
    let on = cluster.map(|c| format!(" ON CLUSTER `{c}`")).unwrap_or_default();
    format!("DROP DATABASE IF EXISTS `{database}`{on}")
}

/// Both phases; the table's rows.
async fn measure(
    args: &BenchArgs,
    ctx: &Context,
    topology: &Arc<Topology>,
    publisher: &Publisher,
    projections: &[(String, &'static str)],
    snapshotter: &Snapshotter,
    suffix: &str,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();

    if args.backlog > 0 {
        let (mut events, _) = sample::generate(args.backlog.div_ceil(12), 1, "0bac0106", &format!("{suffix}-b-"));
        events.truncate(args.backlog);
        let rate = publish(publisher, &mut events, None).await?;
        eprintln!("phase 1: published {} events at {rate:.0}/s; draining each projection alone", events.len());
        rows.push(Row::publish("backlog".into(), events.len() as u64, rate));
        take(snapshotter);
        if let Some(counts) = &args.workers {
            let own: Vec<(String, &'static str)> =
                projections.iter().filter(|(n, _)| !n.contains(&format!("{BASELINE}_{suffix}"))).cloned().collect();
            eprintln!("  draining each projection with {:?} `sluice work` processes in turn", counts.0);
            rows.extend(workers::backlog_rows(args.env_file.as_deref(), ctx, &own, counts, suffix, args.keep).await?);
        }
        for (name, sink) in projections.iter().filter(|_| args.workers.is_none()) {
            let opts =
                RunOptions { drain_deadline: Duration::from_secs(30), exit_at_end: true, ..RunOptions::default() };
            let meter = cost::Meter::this_process();
            let stats = run_projection(ctx, name, opts, CancellationToken::new()).await?;
            let cost = meter.finish();
            let per_sec = stats.projected as f64 / stats.active.as_secs_f64().max(1e-9);
            eprintln!("  {name}: {} events in {:.2?}", stats.projected, stats.active);
            let drained = take(snapshotter);
            let write_ms = p50_p99(&drained, names::WRITE_SECONDS, name);
            let kv_operations = drained.counters.get(&(names::COUCHBASE_OPERATIONS.to_owned(), name.clone())).cloned();
            rows.push(Row {
                phase: "backlog".into(),
                projection: name.clone(),
                sink,
                events: stats.projected,
                per_sec,
                tail: None,
                not_visible: None,
                p50_ms: None,
                p99_ms: None,
                write_ms,
                read_ms: None,
                startup: None,
                cost,
                kv_operations,
            });
            if !name.contains(&format!("{BASELINE}_{suffix}")) {
                let floor = blackhole::row(ctx, name).await?;
                eprintln!(
                    "  {name}'s worker alone, into a blackhole: {} events at {:.0}/s",
                    floor.events, floor.per_sec
                );
                rows.push(floor);
                take(snapshotter);
            }
        }
        take(snapshotter); // discard phase 1's samples
    }

    if args.rate > 0 {
        let count = (args.rate as f64 * args.duration.as_secs_f64()) as usize;
        let (mut events, _) = sample::generate(count.div_ceil(12), 2, "05eadbee", &format!("{suffix}-s-"));
        events.truncate(count);
        let gateway = match args.gateway {
            true => Some(
                gateway::Gateway::start(ctx, topology.clone(), args.gateway_connections, args.gateway_batch).await?,
            ),
            false => None,
        };
        let token = CancellationToken::new();
        let mut workers = Vec::new();
        let steady: Vec<(String, &'static str)> =
            projections.iter().filter(|(n, _)| !n.contains(&format!("{BASELINE}_{suffix}"))).cloned().collect();
        let projections = &steady;
        for (name, _) in projections {
            let (name, token, ctx) = (name.clone(), token.clone(), ctx.clone());
            let opts = RunOptions { drain_deadline: Duration::from_secs(30), ..RunOptions::default() };
            // Each worker on a task of its own, so the runtime's threads run them side by side as
            // separate `sluice work` processes would; joined on this thread instead, one worker's
            // encoding would hold the others (and the publisher) up.
            workers.push(tokio::spawn(async move { run_projection(&ctx, &name, opts, token).await }));
        }
        let all = futures::future::join_all(workers);
        let names: Vec<&str> = projections.iter().map(|(n, _)| n.as_str()).collect();
        let driver = async {
            let phase = async {
                // Timing starts once every worker has joined its group and caught up with a
                // second of warm-up events (and phase 1): start-up is not publish → visible.
                let (mut warm, _) =
                    sample::generate((args.rate as usize).div_ceil(12), 3, "0a11ce00", &format!("{suffix}-w-"));
                warm.truncate(args.rate as usize);
                publish_steady(publisher, gateway.as_ref(), &mut warm, args.rate).await?;
                caught_up(topology, &ctx.connections.kafka, &names, Duration::from_secs(120)).await?;
                take(snapshotter);
                eprintln!("phase 2: publishing {} events at {}/s", events.len(), args.rate);
                let started = Instant::now();
                let (rate, requests) = publish_steady(publisher, gateway.as_ref(), &mut events, args.rate).await?;
                let elapsed = started.elapsed();
                // What each projection made visible while the phase ran, apart from the tail.
                let during = take(snapshotter);
                eprintln!("  published at {rate:.0}/s; waiting up to {:?} for the projections", args.catch_up);
                let behind = wait_caught_up(topology, &ctx.connections.kafka, &names, args.catch_up).await?;
                Ok::<_, anyhow::Error>((rate, requests, elapsed, during, take(snapshotter), behind))
            }
            .await;
            token.cancel();
            phase
        };
        let (results, phase) = tokio::join!(all, driver);
        if let Some(gateway) = gateway {
            gateway.stop().await?;
        }
        let (rate, requests, elapsed, during, tail, behind) = phase?;
        let mut publish_row = Row::publish(format!("{}/s", args.rate), events.len() as u64, rate);
        if let Some(r) = requests {
            let non_2xx: u64 = r.statuses.iter().filter(|(s, _)| !(200..300).contains(*s)).map(|(_, n)| n).sum();
            if non_2xx + r.errors > 0 {
                eprintln!("  the gateway answered {:?} ({} requests unanswered)", r.statuses, r.errors);
            }
            let at = |q: f64| Some(Latency::Ms(r.latency_us.value_at_quantile(q) as f64 / 1000.0));
            publish_row = Row {
                projection: "(gateway)".into(),
                sink: "http",
                events: r.events,
                p50_ms: at(0.5),
                p99_ms: at(0.99),
                ..publish_row
            };
        }
        rows.push(publish_row);
        let count =
            |samples: &Samples, metric: &str, name: &str| samples.histogram(metric, name).map_or(0, Vec::len) as u64;
        // The latency of every event seen, the tail's included.
        let mut samples = during.clone();
        for (key, values) in &tail.histograms {
            samples.histograms.entry(key.clone()).or_default().extend(values);
        }
        for ((name, sink), result) in projections.iter().zip(results) {
            result.with_context(|| format!("the worker of {name} panicked"))??;
            let visible_in_phase = count(&during, names::VISIBLE_SECONDS, name);
            let visible_after = count(&tail, names::VISIBLE_SECONDS, name);
            let not_visible = behind.get(name).copied().flatten();
            // Events never seen have a latency past the wait, above every one seen: the
            // quantiles are over all events, those included.
            let latencies = sorted(samples.histogram(names::VISIBLE_SECONDS, name).cloned().unwrap_or_default());
            let missing = not_visible.unwrap_or(0) as usize;
            let at = |q: f64| match quantile_with_missing(&latencies, missing, q) {
                Some(v) => Latency::Ms(v * 1000.0),
                None => Latency::AtLeast(args.catch_up),
            };
            rows.push(Row {
                phase: format!("{}/s", args.rate),
                projection: name.clone(),
                sink,
                events: visible_in_phase,
                per_sec: visible_in_phase as f64 / elapsed.as_secs_f64().max(1e-9),
                tail: Some(visible_after),
                not_visible: Some(not_visible),
                p50_ms: Some(at(0.5)),
                p99_ms: Some(at(0.99)),
                write_ms: p50_p99(&samples, names::WRITE_SECONDS, name),
                read_ms: p50_p99(&samples, names::READ_SECONDS, name),
                startup: None,
                // Every projection runs in this process at once: no cost of its own to tell.
                cost: None,
                kv_operations: None,
            });
        }
    }

    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::quantile_with_missing;

    #[test]
    fn events_never_seen_count_in_the_quantiles() {
        let seen: Vec<f64> = (1..=98).map(f64::from).collect();
        assert_eq!(quantile_with_missing(&seen, 0, 0.5), Some(50.0));
        // 98 seen and 2 missing: the p50 moves up, the p99 is among the missing.
        assert_eq!(quantile_with_missing(&seen, 2, 0.5), Some(51.0));
        assert_eq!(quantile_with_missing(&seen, 2, 0.99), None);
        assert_eq!(quantile_with_missing(&[], 0, 0.99), None);
    }
}
