//! `sluice bench`: the pipeline's throughput and publish→visible latency on the services at hand,
//! printed as a table. A benchmark, not a test: it asserts nothing, it measures.
//!
//! Everything runs on an isolated copy of the default topology (suffixed topics, groups and
//! tables), so it never touches real projections. Two phases:
//! 1. **backlog**: `--backlog` sample events are published as fast as possible, then each
//!    projection drains them alone; events/s = projected / busy time (first record read → last
//!    batch acknowledged, so start-up and the group join are not counted).
//! 2. **steady rate**: all projections run while events are published at `--rate` for
//!    `--duration`, each stamped `occurred_at = now`; latency is the worker's own
//!    `sluice_event_visible_latency_seconds` (event time → sink acknowledgement) per projection.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures::stream::{FuturesUnordered, StreamExt};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use sluice_consumers::worker::metrics::names;
use sluice_core::topology::{SinkConfig, Topology};
use sluice_producers::admin::topics::TopicAdmin;
use sluice_producers::{Publisher, PublisherOptions, sample};
use tokio_util::sync::CancellationToken;

use crate::work::{RunOptions, run_projection};
use crate::{Context, GlobalArgs};

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

/// Samples of every histogram, by metric name and projection label. Taking them drains them.
type Samples = BTreeMap<(String, String), Vec<f64>>;

fn take(snapshotter: &Snapshotter) -> Samples {
    let mut out = Samples::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (_, key) = key.into_parts();
        let projection = key.labels().find(|l| l.key() == "projection").map(|l| l.value().to_owned());
        if let (Some(p), DebugValue::Histogram(values)) = (projection, value) {
            out.entry((key.name().to_owned(), p)).or_default().extend(values.into_iter().map(|v| v.into_inner()));
        }
    }
    out
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
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// Sink write time p50/p99 (ms) in the phase.
    write_ms: Option<(f64, f64)>,
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// p50/p99 in ms of one metric of one projection.
fn p50_p99(samples: &Samples, metric: &str, projection: &str) -> Option<(f64, f64)> {
    let v = sorted(samples.get(&(metric.to_owned(), projection.to_owned()))?.clone());
    Some((quantile(&v, 0.5) * 1000.0, quantile(&v, 0.99) * 1000.0))
}

pub(crate) async fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<ExitCode> {
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
    std::fs::write(&path, sample::isolated_topology(&text, &schemas, &suffix))?;
    let mut global = global.clone();
    global.topology = path;
    let ctx = Context::load(&global)?;
    let topology = Arc::new(ctx.topology()?.clone());
    let admin = TopicAdmin::new(&ctx.connections.kafka_brokers, Duration::from_secs(30))?;
    admin.apply(admin.plan(&topology).await?).await?;
    let publisher = Publisher::new(topology.clone(), &ctx.connections, PublisherOptions::new("sluice-bench"))?;
    let projections: Vec<(String, &'static str)> = topology
        .projections()
        .map(|(n, p)| {
            (n.to_owned(), if matches!(p.sink, SinkConfig::Couchbase { .. }) { "couchbase" } else { "clickhouse" })
        })
        .collect();
    eprintln!("bench on isolated topology {} (suffix {suffix})", global.topology.display());
    let mut rows = Vec::new();

    if args.backlog > 0 {
        let (mut events, _) = sample::generate(args.backlog.div_ceil(12), 1, "0bac0106", &format!("{suffix}-b-"));
        events.truncate(args.backlog);
        let rate = publish(&publisher, &mut events, None).await?;
        eprintln!("phase 1: published {} events at {rate:.0}/s; draining each projection alone", events.len());
        rows.push(Row {
            phase: "backlog".into(),
            projection: "(publish)".into(),
            sink: "kafka",
            events: events.len() as u64,
            per_sec: rate,
            p50_ms: None,
            p99_ms: None,
            write_ms: None,
        });
        take(&snapshotter);
        for (name, sink) in &projections {
            let opts =
                RunOptions { drain_deadline: Duration::from_secs(30), exit_at_end: true, ..RunOptions::default() };
            let stats = run_projection(&ctx, name, opts, CancellationToken::new()).await?;
            let per_sec = stats.projected as f64 / stats.active.as_secs_f64().max(1e-9);
            eprintln!("  {name}: {} events in {:.2?}", stats.projected, stats.active);
            let write_ms = p50_p99(&take(&snapshotter), names::WRITE_SECONDS, name);
            rows.push(Row {
                phase: "backlog".into(),
                projection: name.clone(),
                sink,
                events: stats.projected,
                per_sec,
                p50_ms: None,
                p99_ms: None,
                write_ms,
            });
        }
        take(&snapshotter); // discard phase 1's samples
    }

    if args.rate > 0 {
        let count = (args.rate as f64 * args.duration.as_secs_f64()) as usize;
        let (mut events, _) = sample::generate(count.div_ceil(12), 2, "05eadbee", &format!("{suffix}-s-"));
        events.truncate(count);
        let token = CancellationToken::new();
        let mut workers = Vec::new();
        for (name, _) in &projections {
            let (ctx, name, token) = (&ctx, name.clone(), token.clone());
            let opts = RunOptions { drain_deadline: Duration::from_secs(30), ..RunOptions::default() };
            workers.push(async move { run_projection(ctx, &name, opts, token).await });
        }
        let all = futures::future::join_all(workers);
        let driver = async {
            // Let the workers join their groups and catch up with phase 1 before timing.
            tokio::time::sleep(Duration::from_secs(5)).await;
            take(&snapshotter);
            eprintln!("phase 2: publishing {} events at {}/s", events.len(), args.rate);
            let rate = publish(&publisher, &mut events, Some(args.rate)).await;
            // Give the projections time to make the last events visible.
            tokio::time::sleep(Duration::from_secs(3)).await;
            token.cancel();
            rate
        };
        let (results, rate) = tokio::join!(all, driver);
        let rate = rate?;
        let samples = take(&snapshotter);
        for ((name, sink), result) in projections.iter().zip(results) {
            let stats = result?;
            let visible = p50_p99(&samples, names::VISIBLE_SECONDS, name);
            let events = samples.get(&(names::VISIBLE_SECONDS.to_owned(), name.clone())).map_or(0, Vec::len);
            rows.push(Row {
                phase: format!("{}/s", args.rate),
                projection: name.clone(),
                sink,
                events: events as u64,
                per_sec: rate,
                p50_ms: visible.map(|v| v.0),
                p99_ms: visible.map(|v| v.1),
                write_ms: p50_p99(&samples, names::WRITE_SECONDS, name),
            });
            let _ = stats;
        }
    }

    println!(
        "\n{:<10} {:<16} {:<11} {:>9} {:>10} {:>9} {:>9} {:>15}",
        "PHASE", "PROJECTION", "SINK", "EVENTS", "EVENTS/S", "P50 ms", "P99 ms", "WRITE p50/p99"
    );
    for r in &rows {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let projection = r.projection.trim_end_matches(&format!("_{suffix}"));
        let write = r.write_ms.map_or("-".to_owned(), |(a, b)| format!("{a:.0}/{b:.0} ms"));
        println!(
            "{:<10} {:<16} {:<11} {:>9} {:>10.0} {:>9} {:>9} {:>15}",
            r.phase,
            projection,
            r.sink,
            r.events,
            r.per_sec,
            ms(r.p50_ms),
            ms(r.p99_ms),
            write
        );
    }
    Ok(ExitCode::SUCCESS)
}
