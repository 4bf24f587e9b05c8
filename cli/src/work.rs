//! `sluice work --projection NAME`: run one projection's worker until SIGTERM/SIGINT.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use sluice_consumers::Sink;
use sluice_consumers::decode::Decoder;
use sluice_consumers::sinks::clickhouse::{ClickHouseProjection, Error as ClickHouseError};
use sluice_consumers::sinks::couchbase::{Couchbase, Error as CouchbaseError, LiveProjection};
use sluice_consumers::worker::ready::wait_for_sink;
use sluice_consumers::worker::{Stats, Worker, WorkerConfig};
use sluice_core::connections::RegistryConnection;
use sluice_core::topology::{ProjectionConfig, SinkConfig, Topology};
use sluice_producers::registry::sr_settings;
use tokio_util::sync::CancellationToken;

use crate::Context;

/// Options of `sluice work`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Each projection has its own consumer group: run more processes with the same \
                        --projection to spread its partitions (give each its own --instance-id); stop one \
                        with SIGTERM (Ctrl-C) and it writes what it buffered and commits before exiting. \
                        A worker whose sink does not answer waits for it (WARN once per attempt, \
                        sluice_worker_ready 0) and starts once it does; only a configuration the sink \
                        refuses stops it.")]
pub(crate) struct WorkArgs {
    /// The projection to run (a `[projections.<name>]` of the topology).
    #[arg(long, short)]
    pub(crate) projection: String,

    /// How long a shutdown may spend writing buffered records and committing.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain_deadline: Duration,

    /// This replica's stable identity in the projection's consumer group (Kafka static
    /// membership, `group.instance.id`): one per replica that stays the same across its restarts,
    /// e.g. the StatefulSet pod name. With it a restarted worker takes its partitions back at once
    /// instead of waiting out the session of the process it replaces. Two live workers must never
    /// share one: the newer fences the older, which stops.
    #[arg(long, env = "SLUICE_WORKER_INSTANCE_ID", value_name = "ID")]
    instance_id: Option<String>,

    /// A librdkafka consumer setting, `KEY=VALUE`, repeatable (like Kafka Connect's
    /// `consumer.override.*`), e.g. `--consumer-config session.timeout.ms=10000` (default 45000:
    /// how long a dead worker's partitions wait before they move to the others; a restart with
    /// the same --instance-id takes them back at once).
    #[arg(long = "consumer-config", value_name = "KEY=VALUE", value_parser = key_value)]
    consumer_config: Vec<(String, String)>,

    /// Stop by itself once every record that was on the projection's topics at start is projected
    /// and committed (by this worker or others of the group): for demos, backfills and catch-up.
    #[arg(long)]
    exit_at_end: bool,

    /// Memory budget of the records collected while a write is in flight, e.g. `64MiB`. With the
    /// sink's batch size it bounds the worker's memory: past it the worker stops fetching (and
    /// pauses its partitions if the write takes long) instead of buffering more.
    #[arg(long, default_value = "64MiB", value_parser = crate::gateway_cmd::byte_size)]
    max_buffered_bytes: usize,

    /// Serve Prometheus metrics on this address (`/metrics`), e.g. `127.0.0.1:9464`.
    #[arg(long, env = "SLUICE_METRICS_ADDR", value_name = "HOST:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,

    /// How often to look for a changed topology file or schema file (`0s`: never). A change that
    /// is valid — a schema version with a new optional field, a new declared column or event
    /// type — is picked up without a restart: the worker commits what the sink acknowledged and
    /// starts again on the new topology from there (adding the new ClickHouse columns first).
    /// An invalid change is logged and the running topology kept.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    reload_every: Duration,

    /// Threads running the worker's own work (decoding, the sink's encoding and I/O; librdkafka
    /// has threads of its own). One is enough for one projection and the cheapest: the sink's
    /// replies then wake the worker on the thread it runs on, not across threads. Measured on a
    /// 2-core machine, a 300,000-event backlog: a Couchbase projection spent 28–31 µs of CPU per
    /// event on one thread, 35–44 on two, and drained no slower; a ClickHouse one 8.2–8.3 against
    /// 8.6–10.1. More threads let a ClickHouse projection encode while its writes complete.
    #[arg(long, env = "SLUICE_WORKER_THREADS", default_value = "1", value_name = "N", value_parser = thread_count)]
    pub(crate) threads: std::num::NonZeroUsize,
}

fn thread_count(s: &str) -> Result<std::num::NonZeroUsize, String> {
    s.trim().parse().map_err(|_| format!("expected a number of threads, 1 or more, got {s:?}"))
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<sluice_core::topology::HumanDuration>().map(Into::into).map_err(|e| e.to_string())
}

/// Cancels `token` on SIGTERM or SIGINT.
pub(crate) fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the worker cleanly");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("stop requested: draining");
        token.cancel();
    });
}

pub(crate) async fn run_with<S: Sink>(
    cfg: WorkerConfig,
    sink: S,
    decoder: Decoder,
    exit_at_end: bool,
    token: CancellationToken,
) -> anyhow::Result<Stats> {
    if exit_at_end {
        sluice_consumers::worker::end::cancel_at_end(&cfg.kafka, &cfg.group, &cfg.topics, token.clone());
    }
    Ok(Worker::new(cfg, sink, decoder).run(token).await?)
}

/// How long one registry call of a worker's decoder may take (a schema is fetched once per id,
/// then cached); a registry that does not answer is retried by the worker like any transient error.
const REGISTRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The decoder of `projection`: reader schemas of every event type (so older writer schemas
/// resolve to the current ones), the CDC sources, and the projection's admission rules.
pub(crate) fn decoder(topology: &Topology, projection: &str, registry: &RegistryConnection) -> anyhow::Result<Decoder> {
    let settings = sr_settings(registry, REGISTRY_TIMEOUT)?;
    Decoder::new(settings, topology.events().map(|e| e.schema.clone()))
        .with_cdc(topology)
        .for_projection(topology, projection)
        .with_context(|| format!("no projection {projection:?} in the topology"))
}

/// How to run one projection (shared by `sluice work` and `sluice bench`).
#[derive(Debug, Clone, Default)]
pub(crate) struct RunOptions {
    pub(crate) drain_deadline: Duration,
    /// Byte budget of the next batch; 0 means the default.
    pub(crate) max_buffered_bytes: usize,
    pub(crate) consumer_config: Vec<(String, String)>,
    /// Static group membership (`--instance-id`).
    pub(crate) instance_id: Option<String>,
    pub(crate) exit_at_end: bool,
    /// How often to look for a changed topology (see [`crate::reload`]); zero: never.
    pub(crate) reload_every: Duration,
}

/// Runs the projection's worker until `token` is cancelled (or, with `exit_at_end`, until it
/// caught up); with `reload_every`, again on each valid change of the topology (see
/// [`crate::reload`]), from the offsets the previous run committed.
pub(crate) async fn run_projection(
    ctx: &Context,
    name: &str,
    opts: RunOptions,
    token: CancellationToken,
) -> anyhow::Result<Stats> {
    let mut topology = ctx.topology()?.clone();
    let mut total = Stats::default();
    loop {
        let generation = token.child_token();
        let next = {
            let run = run_on(ctx, &topology, name, opts.clone(), generation.clone());
            tokio::pin!(run);
            let next = tokio::select! {
                stats = &mut run => {
                    total += stats?;
                    return Ok(total);
                }
                next = crate::reload::changed(&topology, name, opts.reload_every), if !opts.reload_every.is_zero() => next,
            };
            tracing::info!(
                projection = %name, path = %topology.path().display(),
                "the topology changed: the worker commits what it wrote and starts again on the new one"
            );
            generation.cancel();
            total += run.await?;
            next
        };
        topology = next;
    }
}

/// The worker settings of projection `name` (`projection`) run as `opts` says.
pub(crate) fn worker_config(
    ctx: &Context,
    name: &str,
    projection: &ProjectionConfig,
    opts: &RunOptions,
) -> WorkerConfig {
    WorkerConfig {
        projection: name.to_owned(),
        group: projection.group.clone(),
        topics: projection.sources.clone(),
        dlq_topic: projection.dlq_topic.clone(),
        kafka: ctx.connections.kafka.clone(),
        drain_deadline: opts.drain_deadline,
        instance_id: opts.instance_id.clone(),
        consumer_overrides: opts.consumer_config.clone(),
        max_buffered_bytes: match opts.max_buffered_bytes {
            0 => sluice_consumers::worker::DEFAULT_MAX_BUFFERED_BYTES,
            n => n,
        },
        // Test failpoint, debug builds only (the integration tests run the debug binary).
        #[cfg(debug_assertions)]
        crash_after_batches: sluice_consumers::failpoint::crash_after_batches(),
    }
}

/// Builds the projection's sink from `topology` and runs its worker until `token` is cancelled.
async fn run_on(
    ctx: &Context,
    topology: &Topology,
    name: &str,
    opts: RunOptions,
    token: CancellationToken,
) -> anyhow::Result<Stats> {
    let projection = topology.projection(name).with_context(|| {
        let known: Vec<&str> = topology.projections().map(|(n, _)| n).collect();
        format!("no projection {name:?} in the topology (known: {})", known.join(", "))
    })?;
    let cfg = worker_config(ctx, name, projection, &opts);
    let decoder = decoder(topology, name, &ctx.connections.registry)?;
    // A sink that does not answer yet is waited for (see `ready`): under a supervisor, exiting
    // would only turn its outage into a crash loop.
    match &projection.sink {
        SinkConfig::Couchbase { .. } => {
            let connect = || async {
                let cb = Box::pin(Couchbase::connect(&ctx.connections.couchbase)).await?;
                // Follows the live-collection pointer, so a rebuild's swap moves its writes.
                let sink = Box::pin(LiveProjection::from_projection(&cb, name, projection)).await?;
                // The cluster handle lives as long as the sink: its bucket needs it.
                Ok::<_, CouchbaseError>((cb, sink))
            };
            let Some((_cb, sink)) = wait_for_sink(name, "couchbase", &token, connect).await? else {
                return Ok(Stats::default());
            };
            run_with(cfg, sink, decoder, opts.exit_at_end, token).await
        }
        SinkConfig::ClickHouse { .. } => {
            let connect = || async {
                let sink = ClickHouseProjection::connect(&ctx.connections.clickhouse, projection).await?;
                // The tables are the worker's to keep: create what is missing, refuse drift.
                for line in sink.migrate().await? {
                    tracing::info!(projection = %name, "{line}");
                }
                Ok::<_, ClickHouseError>(sink)
            };
            let Some(sink) = wait_for_sink(name, "clickhouse", &token, connect).await? else {
                return Ok(Stats::default());
            };
            run_with(cfg, sink, decoder, opts.exit_at_end, token).await
        }
    }
}

pub(crate) async fn run(ctx: &Context, args: WorkArgs) -> anyhow::Result<ExitCode> {
    if let Some(addr) = args.metrics_addr {
        crate::metrics::serve(addr).await?;
    }
    let token = CancellationToken::new();
    cancel_on_signals(token.clone());
    let opts = RunOptions {
        drain_deadline: args.drain_deadline,
        consumer_config: args.consumer_config,
        instance_id: args.instance_id,
        exit_at_end: args.exit_at_end,
        max_buffered_bytes: args.max_buffered_bytes,
        reload_every: args.reload_every,
    };
    let name = &args.projection;
    let stats = run_projection(ctx, name, opts, token).await?;
    println!(
        "projection {name}: consumed {}, projected {}, dead-lettered {}, batches {}",
        stats.consumed, stats.projected, stats.dead_lettered, stats.batches
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_count_is_one_or_more() {
        assert_eq!(thread_count("1").map(std::num::NonZeroUsize::get), Ok(1));
        assert_eq!(thread_count(" 4 ").map(std::num::NonZeroUsize::get), Ok(4));
        for bad in ["0", "-1", "two", ""] {
            let e = thread_count(bad).expect_err(bad);
            assert!(e.contains("1 or more") && e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
