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

/// Samples of one histogram per projection label.
fn histograms(snapshotter: &Snapshotter, name: &str) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (_, key) = key.into_parts();
        if key.name() != name {
            continue;
        }
        let projection = key.labels().find(|l| l.key() == "projection").map(|l| l.value().to_owned());
        if let (Some(p), DebugValue::Histogram(values)) = (projection, value) {
            out.entry(p).or_default().extend(values.into_iter().map(|v| v.into_inner()));
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
        .map(|(n, p)| (n.to_owned(), if matches!(p.sink, SinkConfig::Couchbase { .. }) { "couchbase" } else { "clickhouse" }))
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
        });
        for (name, sink) in &projections {
            let opts = RunOptions { drain_deadline: Duration::from_secs(30), exit_at_end: true, ..RunOptions::default() };
            let stats = run_projection(&ctx, name, opts, CancellationToken::new()).await?;
            let per_sec = stats.projected as f64 / stats.active.as_secs_f64().max(1e-9);
            eprintln!("  {name}: {} events in {:.2?}", stats.projected, stats.active);
            rows.push(Row { phase: "backlog".into(), projection: name.clone(), sink, events: stats.projected, per_sec, p50_ms: None, p99_ms: None });
        }
        histograms(&snapshotter, names::VISIBLE_SECONDS); // discard phase 1's latencies
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
            histograms(&snapshotter, names::VISIBLE_SECONDS);
            eprintln!("phase 2: publishing {} events at {}/s", events.len(), args.rate);
            let rate = publish(&publisher, &mut events, Some(args.rate)).await;
            // Give the projections time to make the last events visible.
            tokio::time::sleep(Duration::from_secs(3)).await;
            token.cancel();
            rate
        };
        let (results, rate) = tokio::join!(all, driver);
        let rate = rate?;
        let latencies = histograms(&snapshotter, names::VISIBLE_SECONDS);
        for ((name, sink), result) in projections.iter().zip(results) {
            let stats = result?;
            let mut l = latencies.get(name).cloned().unwrap_or_default();
            l.sort_by(f64::total_cmp);
            rows.push(Row {
                phase: format!("{}/s", args.rate),
                projection: name.clone(),
                sink,
                events: l.len() as u64,
                per_sec: rate,
                p50_ms: Some(quantile(&l, 0.50) * 1000.0),
                p99_ms: Some(quantile(&l, 0.99) * 1000.0),
            });
            let _ = stats;
        }
    }

    println!("\n{:<10} {:<28} {:<11} {:>9} {:>10} {:>9} {:>9}", "PHASE", "PROJECTION", "SINK", "EVENTS", "EVENTS/S", "P50 ms", "P99 ms");
    for r in &rows {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let projection = r.projection.trim_end_matches(&format!("_{suffix}"));
        println!(
            "{:<10} {:<28} {:<11} {:>9} {:>10.0} {:>9} {:>9}",
            r.phase, projection, r.sink, r.events, r.per_sec, ms(r.p50_ms), ms(r.p99_ms)
        );
    }
    Ok(ExitCode::SUCCESS)
}
