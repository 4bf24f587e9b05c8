//! `sluice`: the command-line interface of the sluice event pipeline.
//!
//! Every subcommand reads the topology (`--topology`, default `topology.toml`) and finds the
//! services through `SLUICE_*` variables, layered: process environment > env file (`--env-file`,
//! `$SLUICE_ENV_FILE`, or the nearest `.dev/env` that `dev/up` writes) > the topology's
//! `[connections]` defaults.

mod allocator;
mod bench;
mod clickhouse_cmd;
mod context;
mod couchbase_cmd;
mod deploy;
mod doctor;
mod gateway_cmd;
mod lag_after;
mod lag_cmd;
mod loadgen;
mod metrics;
mod preflight;
mod publish;
mod rebuild_cmd;
mod reload;
mod replay_cmd;
mod reproject;
mod sample_cmd;
mod schemas_cmd;
mod table;
mod topics_cmd;
mod topology_cmd;
mod work;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice_core::Services;

pub(crate) use context::Context;

/// sluice: domain events from Kafka (Avro, Confluent wire format) projected idempotently into
/// Couchbase (latest state) and ClickHouse (analytics), with lag-based backpressure.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, propagate_version = true)]
#[command(after_help = "Start here: `sluice doctor` checks every service, `sluice topology check` the \
                        topology file (`sluice topology init` writes a first one from an existing registry \
                        and Kafka cluster).\nEndpoints come from SLUICE_* variables (see `sluice doctor \
                        --help`), over the env file that `dev/up` writes (.dev/env).")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,

    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GlobalArgs {
    /// Env file with `export SLUICE_...=...` lines; the process environment overrides it.
    /// Default: $SLUICE_ENV_FILE, else the nearest .dev/env up from the current directory.
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) env_file: Option<PathBuf>,

    /// The topology file: topics, event types and their schemas, projections.
    #[arg(long, global = true, value_name = "PATH", env = "SLUICE_TOPOLOGY", default_value = "topology.toml")]
    pub(crate) topology: PathBuf,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info`, `sluice=debug,rdkafka=warn`.
    #[arg(long, global = true, env = "SLUICE_LOG", default_value = "warn")]
    pub(crate) log: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that every service answers: Kafka, the schema registry, Couchbase, ClickHouse.
    ///
    /// Makes one real request to each (broker metadata, registry subjects, a Couchbase KV read,
    /// `SELECT version()`), prints a table with version and latency, and exits non-zero when any
    /// service is down.
    #[command(after_help = doctor::VARIABLES_HELP.as_str())]
    Doctor,

    /// Work with the topology file: check it, show it, or write a first one from what exists.
    #[command(subcommand)]
    Topology(topology_cmd::TopologyCommand),

    /// Publish JSON-lines events (a file or stdin) to their Kafka topics.
    ///
    /// Each line is one event object; its `event_type` field (or --event-type) picks the schema.
    /// event_id, occurred_at and producer ("sluice-cli") are filled in when absent. Bad lines are
    /// reported with their line number and counted; the run ends with `published N, rejected M`
    /// and exits non-zero when any line was rejected or any delivery failed.
    Publish(publish::PublishArgs),

    /// Register and check the event schemas in the schema registry.
    #[command(subcommand)]
    Schemas(schemas_cmd::SchemasCommand),

    /// Create and reconcile the topology's Kafka topics.
    #[command(subcommand)]
    Topics(topics_cmd::TopicsCommand),

    /// Run a projection: consume its topics and write to its sink until stopped (SIGTERM/Ctrl-C).
    ///
    /// Decodes each record (schema from the registry), folds it into the sink idempotently,
    /// sends records that can never be applied to the projection's dead-letter topic with the
    /// reason, and commits offsets only after the sink acknowledged.
    Work(work::WorkArgs),

    /// Create and check the ClickHouse tables of the projections.
    #[command(subcommand, name = "clickhouse")]
    ClickHouse(clickhouse_cmd::ClickHouseCommand),

    /// Prepare Couchbase for the projections (scopes, collections).
    #[command(subcommand)]
    Couchbase(couchbase_cmd::CouchbaseCommand),

    /// Measure the pipeline here: drain throughput per projection and publish→visible latency at
    /// a steady rate, on an isolated copy of the topology; prints a table.
    Bench(bench::BenchArgs),

    /// Print realistic sample events of the default domain as JSON lines (pipe into `publish`).
    Sample(sample_cmd::SampleArgs),

    /// Run the HTTP ingest gateway: JSON events over HTTP, validated and published to Kafka.
    ///
    /// Bearer tokens scoped to event types (SLUICE_GATEWAY_TOKENS or --tokens-file); answers
    /// after Kafka acknowledged, with partition and offset; /healthz, /readyz, /metrics. SIGTERM
    /// stops accepting, finishes in-flight requests and flushes the producer.
    Gateway(gateway_cmd::GatewayArgs),

    /// Load-test a running gateway on this machine and print throughput and latency.
    ///
    /// Bounded in requests and time; loopback addresses only. The token comes from
    /// SLUICE_LOADGEN_TOKEN.
    Loadgen(loadgen::LoadgenArgs),

    /// Show how far behind each projection is: lag in messages and seconds per partition, and
    /// the backpressure state.
    ///
    /// A table of projection × partition (`--json` for scripts); `--watch` refreshes it every
    /// second until Ctrl-C.
    Lag(lag_cmd::LagArgs),

    /// Re-project history: move a projection's consumer group to earlier (or later) offsets.
    ///
    /// Prints per partition the committed offset, the new one and the events to re-project, and
    /// changes nothing without --yes; refuses while the projection's workers run.
    Replay(replay_cmd::ReplayArgs),

    /// Rebuild a projection blue/green, or repair one aggregate.
    ///
    /// Builds a new version of the projection (new ClickHouse tables / a new Couchbase collection)
    /// from the whole retained history with its own consumer group while the live one keeps
    /// serving, then swaps readers and the live worker over; the old version stays until
    /// --drop-old. Interrupted, the same command resumes; --abort removes the partial version.
    Rebuild(rebuild_cmd::RebuildArgs),

    /// Generate deployment manifests from the topology (`sluice deploy k8s`).
    #[command(subcommand)]
    Deploy(deploy::DeployCommand),
}

/// The largest allocation the Avro decoder may make for one value. A corrupt body can claim a
/// huge string length; without this bound apache-avro would try to allocate up to 512 MB first.
/// Kafka records are far smaller (1 MiB by default), so 16 MiB is generous.
const AVRO_MAX_ALLOCATION: usize = 16 * 1024 * 1024;

fn main() -> ExitCode {
    allocator::return_freed_memory_at_once();
    let cli = Cli::parse();
    apache_avro::util::max_allocation_bytes(AVRO_MAX_ALLOCATION);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.global.log).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: piped into a file or a CI log they are noise.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let runtime = match runtime(&cli.command) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The command runs on one of the runtime's worker threads, not on this one: the sinks' I/O
    // completes on those threads, and a future polled here would be woken across threads (a
    // futex wake and a context switch) for every Couchbase operation — a sixth of a Couchbase
    // worker's CPU. A panic in the command is an error of its own (the join error says so).
    let command = runtime.block_on(async { tokio::spawn(run(cli)).await });
    match command.unwrap_or_else(|e| Err(anyhow::anyhow!("the command stopped: {e}"))) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The async runtime of `command`: as many worker threads as it asks for ([`work::WorkArgs`]'
/// `--threads`), else one per core.
fn runtime(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Work(args) = command {
        builder.worker_threads(args.threads.get());
    }
    builder.enable_all().build()
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Doctor => {
            let ctx = Context::connections_only(&cli.global)?;
            Ok(if doctor::run(&ctx.connections).await { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Topology(cmd) => topology_cmd::run(&cli.global, cmd).await,
        Command::Publish(args) => publish::run(&cli.global, args).await,
        Command::Schemas(cmd) => schemas_cmd::run(&cli.global, cmd).await,
        Command::Topics(cmd) => topics_cmd::run(&cli.global, cmd).await,
        Command::ClickHouse(cmd) => {
            clickhouse_cmd::run(&Context::load_for(&cli.global, Services::CLICKHOUSE).await?, cmd).await
        }
        Command::Couchbase(cmd) => {
            couchbase_cmd::run(&Context::load_for(&cli.global, Services::COUCHBASE).await?, cmd).await
        }
        Command::Bench(args) => bench::run(&cli.global, args).await,
        Command::Sample(args) => sample_cmd::run(&args),
        Command::Lag(args) => lag_cmd::run(&Context::load_for(&cli.global, Services::KAFKA).await?, args).await,
        Command::Replay(args) => {
            replay_cmd::run(&Context::load_for_projection(&cli.global, &args.projection).await?, args).await
        }
        Command::Rebuild(args) => {
            rebuild_cmd::run(&Context::load_for_projection(&cli.global, &args.projection).await?, args).await
        }
        Command::Work(args) => {
            work::run(&Context::load_for_projection(&cli.global, &args.projection).await?, args).await
        }
        Command::Gateway(args) => {
            gateway_cmd::run(&Context::load_for(&cli.global, Services::KAFKA.and(Services::REGISTRY)).await?, args)
                .await
        }
        Command::Loadgen(args) => loadgen::run(args).await,
        Command::Deploy(cmd) => deploy::run(&cli.global, cmd),
    }
}
