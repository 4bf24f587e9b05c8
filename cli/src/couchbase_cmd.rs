//! `sluice couchbase …`: prepare Couchbase for the topology's projections, and read a document —
//! optionally only once the projection includes a given write (`get --after TOKEN`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use sluice_consumers::reads::Reads;
use sluice_consumers::sinks::couchbase::service::{KV_TIMEOUT, deadline};
use sluice_consumers::sinks::couchbase::{Couchbase, setup};
use sluice_core::consistency::ConsistencyToken;
use sluice_producers::gateway::reads::ReadOutcome;

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
        /// Read only once the projection includes this write (a consistency token from the
        /// gateway or `sluice publish`); needs --projection. Exit 2 when it does not within
        /// --wait: "not yet", never a stale document.
        #[arg(long, value_name = "TOKEN", requires = "projection")]
        after: Option<String>,
        /// With --after: how long to wait for the projection to include the write.
        #[arg(long, default_value = "5s", value_parser = crate::lag_cmd::duration, requires = "after")]
        wait: Duration,
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
        CouchbaseCommand::Get { key, projection, after, wait } => {
            let Some(name) = projection else {
                let cb = Couchbase::connect(&ctx.connections.couchbase).await?;
                let got = deadline("get", KV_TIMEOUT, cb.collection(None, None).get(&key, None)).await;
                let doc = got.with_context(|| format!("reading {key}"))?;
                let value: serde_json::Value = doc.content_as().context("the document is not JSON")?;
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(ExitCode::SUCCESS);
            };
            let reads = Reads::new(
                Arc::new(ctx.topology()?.clone()),
                ctx.connections.kafka.clone(),
                Some(ctx.connections.couchbase.clone()),
            );
            let token = match &after {
                Some(text) => Some(text.parse::<ConsistencyToken>().with_context(|| format!("--after {text:?}"))?),
                None => None,
            };
            match reads.document(&name, &key, token.as_ref(), wait).await? {
                ReadOutcome::Found { document, .. } => {
                    println!("{}", serde_json::to_string_pretty(&document)?);
                    Ok(ExitCode::SUCCESS)
                }
                ReadOutcome::NotFound => anyhow::bail!("no document {key} in projection {name}"),
                ReadOutcome::Gone { version } => {
                    anyhow::bail!(
                        "gone: the aggregate of {key} was erased from projection {name} (version {})",
                        shown(version)
                    )
                }
                ReadOutcome::NotYet { version, behind } => {
                    // Never the stale document: its version only, so the caller knows what it would have got.
                    let behind: Vec<String> = behind.iter().map(ToString::to_string).collect();
                    println!(
                        "not yet: projection {name} has not included the write within {wait:?} (behind: {}); {key} holds version {}",
                        behind.join(", "),
                        shown(version)
                    );
                    Ok(ExitCode::from(crate::lag_after::NOT_YET))
                }
            }
        }
    }
}

fn shown(version: Option<i64>) -> String {
    version.map_or_else(|| "none".to_owned(), |v| v.to_string())
}
