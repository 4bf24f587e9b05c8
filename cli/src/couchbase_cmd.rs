//! `sluice couchbase …`: prepare Couchbase for the topology's projections.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use sluice_consumers::sinks::couchbase::service::{KV_TIMEOUT, deadline};
use sluice_consumers::sinks::couchbase::{Couchbase, pointer, setup};
use sluice_core::topology::SinkConfig;

use crate::Context;

#[derive(Debug, Subcommand)]
pub(crate) enum CouchbaseCommand {
    /// Create the scopes and collections the Couchbase projections write to (idempotent).
    ///
    /// Prints one line per projection: created or already there. Buckets are not created: that
    /// is a cluster administrator's decision (memory quota, replicas).
    Setup,

    /// Print one document as JSON, e.g. `sluice couchbase get user::demo-u1`.
    Get {
        /// The document key.
        key: String,
        /// Read from this projection's live collection (after a rebuild, the one its pointer
        /// document names; default: the bucket's default collection).
        #[arg(long, short)]
        projection: Option<String>,
    },
}

pub(crate) async fn run(ctx: &Context, cmd: CouchbaseCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CouchbaseCommand::Setup => {
            let topology = ctx.topology()?;
            let projections: Vec<_> = topology.couchbase_projections().collect();
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
        CouchbaseCommand::Get { key, projection } => {
            let cb = Couchbase::connect(&ctx.connections.couchbase).await?;
            let coll = match &projection {
                None => cb.collection(None, None),
                Some(name) => match ctx.topology()?.projection(name).map(|p| &p.sink) {
                    // The live version: the collection the pointer names after a rebuild.
                    Some(SinkConfig::Couchbase { couchbase }) => {
                        let bucket = cb.open_bucket(couchbase.bucket.as_deref()).await?;
                        let live = pointer::live(&bucket, name, couchbase).await?;
                        bucket.scope(&live.scope).collection(&live.collection)
                    }
                    _ => anyhow::bail!("{name:?} is not a Couchbase projection of the topology"),
                },
            };
            let doc =
                deadline("get", KV_TIMEOUT, coll.get(&key, None)).await.with_context(|| format!("reading {key}"))?;
            let value: serde_json::Value = doc.content_as().context("the document is not JSON")?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
