//! `sluice couchbase …`: prepare Couchbase for the topology's projections.

use std::process::ExitCode;

use clap::Subcommand;
use sluice_consumers::sinks::couchbase::{Couchbase, setup};
use sluice_core::topology::SinkConfig;

use crate::Context;

#[derive(Debug, Subcommand)]
pub(crate) enum CouchbaseCommand {
    /// Create the scopes and collections the Couchbase projections write to (idempotent).
    ///
    /// Prints one line per projection: created or already there. Buckets are not created: that
    /// is a cluster administrator's decision (memory quota, replicas).
    Setup,
}

pub(crate) async fn run(ctx: &Context, cmd: CouchbaseCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CouchbaseCommand::Setup => {
            let topology = ctx.topology()?;
            let projections: Vec<_> = topology
                .projections()
                .filter_map(|(name, p)| match &p.sink {
                    SinkConfig::Couchbase { couchbase } => Some((name, couchbase)),
                    SinkConfig::ClickHouse { .. } => None,
                })
                .collect();
            if projections.is_empty() {
                println!("no Couchbase projection in {}", topology.path().display());
                return Ok(ExitCode::SUCCESS);
            }
            let cb = Couchbase::connect(&ctx.connections.couchbase).await?;
            for line in setup(&cb, &projections).await? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
