//! `sluice couchbase …`: prepare Couchbase for the topology's projections, and read a document —
//! optionally only once the projection includes a given write (`get --after TOKEN`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use couchbase::error::ErrorKind;
use sluice_consumers::consistency::wait;
use sluice_consumers::sinks::couchbase::service::{KV_TIMEOUT, deadline};
use sluice_consumers::sinks::couchbase::{Couchbase, Error as CbError, pointer, setup};
use sluice_core::consistency::ConsistencyToken;
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
        /// Read only once the projection includes this write (a consistency token from the
        /// gateway or `sluice publish`); needs --projection. Exit 2 when it does not within
        /// --wait: "not yet", never a stale document.
        #[arg(long, value_name = "TOKEN", requires = "projection")]
        after: Option<String>,
        /// With --after: how long to wait for the projection to include the write.
        #[arg(long, default_value = "5s", value_parser = duration, requires = "after")]
        wait: Duration,
    },
}

fn duration(s: &str) -> Result<Duration, String> {
    s.parse::<sluice_core::topology::HumanDuration>().map(Into::into).map_err(|e| e.to_string())
}

/// The exit status of "not yet" (as `sluice lag --after`).
const NOT_YET: u8 = 2;

/// Waits until `projection` includes `token` (at most `within`); `Some(table of what is behind)`
/// when it did not.
async fn not_yet(ctx: &Context, projection: &str, token: &str, within: Duration) -> anyhow::Result<Option<String>> {
    let token: ConsistencyToken = token.parse().with_context(|| format!("--after {token:?}"))?;
    let config = ctx.topology()?.projection(projection).context("no such projection")?.clone();
    let (kafka, name) = (ctx.connections.kafka.clone(), projection.to_owned());
    let inclusion = tokio::task::spawn_blocking(move || wait(&kafka, &name, &config, &token, within, WAIT_EVERY))
        .await
        .context("the check did not finish")??;
    Ok((!inclusion.included()).then(|| {
        let behind: Vec<String> = inclusion
            .behind
            .iter()
            .map(|b| {
                let committed = b.committed.map_or_else(|| "nothing".to_owned(), |c| c.to_string());
                format!("{}/{} at {} (committed {committed})", b.topic, b.partition, b.offset)
            })
            .collect();
        behind.join(", ")
    }))
}

/// How often a waiting read asks Kafka again.
const WAIT_EVERY: Duration = Duration::from_millis(100);

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
            let behind = match (&after, &projection) {
                (Some(token), Some(name)) => not_yet(ctx, name, token, wait).await?,
                _ => None,
            };
            let value = read(ctx, &key, projection.as_deref()).await?;
            if let (Some(behind), Some(name)) = (behind, &projection) {
                // Never the stale document: its version only, so the caller knows what it would have got.
                let version = value
                    .as_ref()
                    .and_then(|v| v.pointer("/_sluice/version"))
                    .map_or_else(|| "none".to_owned(), ToString::to_string);
                println!(
                    "not yet: projection {name} has not included the write within {wait:?} (behind: {behind}); {key} holds version {version}"
                );
                return Ok(ExitCode::from(NOT_YET));
            }
            let value = value.with_context(|| format!("no document {key}"))?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The document `key` (`None`: there is none) from the default collection, or from `projection`'s
/// live collection (after a rebuild, the one its pointer names).
async fn read(ctx: &Context, key: &str, projection: Option<&str>) -> anyhow::Result<Option<serde_json::Value>> {
    let cb = Couchbase::connect(&ctx.connections.couchbase).await?;
    let coll = match projection {
        None => cb.collection(None, None),
        Some(name) => match ctx.topology()?.projection(name).map(|p| &p.sink) {
            Some(SinkConfig::Couchbase { couchbase }) => {
                let bucket = cb.open_bucket(couchbase.bucket.as_deref()).await?;
                let live = pointer::live(&bucket, name, couchbase).await?;
                bucket.scope(&live.scope).collection(&live.collection)
            }
            _ => anyhow::bail!("{name:?} is not a Couchbase projection of the topology"),
        },
    };
    match deadline("get", KV_TIMEOUT, coll.get(key, None)).await {
        Ok(doc) => Ok(Some(doc.content_as().context("the document is not JSON")?)),
        Err(CbError::Couchbase { source, .. }) if source.kind() == &ErrorKind::DocumentNotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {key}")),
    }
}
