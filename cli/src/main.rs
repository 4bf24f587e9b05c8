//! `sluice`: the command-line interface of the sluice event pipeline.
//!
//! Every subcommand reads the topology (`--topology`, default `topology.toml`) and finds the
//! services through `SLUICE_*` variables, layered: process environment > env file (`--env-file`,
//! `$SLUICE_ENV_FILE`, or the nearest `.dev/env` that `dev/up` writes) > the topology's
//! `[connections]` defaults.

mod context;
mod doctor;
mod topology_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) use context::Context;

/// sluice: domain events from Kafka (Avro, Confluent wire format) projected idempotently into
/// Couchbase (latest state) and ClickHouse (analytics), with lag-based backpressure.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, propagate_version = true)]
#[command(after_help = "Start here: `sluice doctor` checks every service, `sluice topology check` the \
                        topology file.\nEndpoints come from SLUICE_* variables (see `sluice doctor --help`), \
                        over the env file that `dev/up` writes (.dev/env).")]
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

    /// Work with the topology file.
    #[command(subcommand)]
    Topology(topology_cmd::TopologyCommand),
}

/// The largest allocation the Avro decoder may make for one value. A corrupt body can claim a
/// huge string length; without this bound apache-avro would try to allocate up to 512 MB first.
/// Kafka records are far smaller (1 MiB by default), so 16 MiB is generous.
const AVRO_MAX_ALLOCATION: usize = 16 * 1024 * 1024;

fn main() -> ExitCode {
    let cli = Cli::parse();
    apache_avro::util::max_allocation_bytes(AVRO_MAX_ALLOCATION);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.global.log).unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Doctor => {
            let ctx = Context::connections_only(&cli.global)?;
            Ok(if doctor::run(&ctx.connections).await { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Topology(cmd) => topology_cmd::run(&cli.global, cmd),
    }
}
