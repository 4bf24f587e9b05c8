//! `sluice`: the command-line interface of the sluice event pipeline.
//!
//! Every subcommand finds the services through `SLUICE_*` variables layered over an env file
//! (`--env-file`, `$SLUICE_ENV_FILE`, or the nearest `.dev/env` that `dev/up` writes).

mod doctor;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_core::{Connections, Env};

/// sluice: domain events from Kafka (Avro, Confluent wire format) projected idempotently into
/// Couchbase (latest state) and ClickHouse (analytics), with lag-based backpressure.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, propagate_version = true)]
#[command(after_help = "Endpoints come from SLUICE_* variables (see `sluice doctor --help`), \
                        over the env file that `dev/up` writes (.dev/env).")]
struct Cli {
    /// Env file with `export SLUICE_...=...` lines; the process environment overrides it.
    /// Default: $SLUICE_ENV_FILE, else the nearest .dev/env up from the current directory.
    #[arg(long, global = true, value_name = "PATH")]
    env_file: Option<PathBuf>,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info`, `sluice=debug,rdkafka=warn`.
    #[arg(long, global = true, env = "SLUICE_LOG", default_value = "warn")]
    log: String,

    #[command(subcommand)]
    command: Command,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()))
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
    let env = match &cli.env_file {
        Some(path) => Env::with_file(path)?,
        None => Env::discover()?,
    };
    match cli.command {
        Command::Doctor => {
            let conns = Connections::from_env(&env).context("finding the services")?;
            if let Some(file) = env.file() {
                println!("endpoints from {} (SLUICE_* variables override it)\n", file.display());
            }
            Ok(if doctor::run(&conns).await { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
