//! The storage side of a blue/green rebuild, per sink: create a version, swap it in, drop one.
//!
//! A *version* is one generation of a projection's storage ([`Generation`]): for ClickHouse the
//! projection's tables and views with the generation's suffix (`events__v2`, …; the live one has
//! the topology's names), for Couchbase a collection (`<projection>__v2`; generation 1 is the
//! topology's collection) that the live-collection [`pointer`](mod@pointer) names when it is live.
//!
//! The ClickHouse statements come from [`swap`] (pure); this module runs them. Every operation is
//! idempotent (`IF NOT EXISTS`/`IF EXISTS`, "already there" tolerated), so a step interrupted
//! half-way is simply run again on resume.

use couchbase::bucket::Bucket;
use sluice_core::rebuild::Generation;
use sluice_core::topology::{COUCHBASE_DEFAULT_COLLECTION, ClickHouseSink, CouchbaseSink};
use tracing::info;

use super::RebuildError;
use crate::sinks::clickhouse::schema::{Names, Plan, qualified};
use crate::sinks::clickhouse::swap::{self, SwapStrategy};
use crate::sinks::clickhouse::{self as ch, ClickHouse};
use crate::sinks::couchbase::{Couchbase, pointer, setup};

/// The storage of a projection, where versions are made and swapped.
pub enum Storage {
    /// A ClickHouse projection.
    ClickHouse {
        /// The server.
        server: ClickHouse,
        /// The projection's database.
        database: String,
        /// Its `clickhouse` block.
        config: ClickHouseSink,
    },
    /// A Couchbase projection.
    Couchbase {
        /// The cluster connection: the bucket handle works only while it lives.
        cluster: Couchbase,
        /// The projection's bucket.
        bucket: Bucket,
        /// The projection.
        projection: String,
        /// Its `couchbase` block.
        config: CouchbaseSink,
    },
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClickHouse { database, config, .. } => {
                f.debug_struct("ClickHouse").field("database", database).field("table", &config.table).finish()
            }
            Self::Couchbase { bucket, projection, .. } => {
                f.debug_struct("Couchbase").field("bucket", &bucket.name()).field("projection", projection).finish()
            }
        }
    }
}

fn clickhouse(what: String) -> impl FnOnce(clickhouse::error::Error) -> RebuildError {
    move |source| RebuildError::ClickHouse(ch::Error::Query { what, source })
}

impl Storage {
    /// The storage of a Couchbase projection.
    pub async fn couchbase(cluster: Couchbase, projection: &str, config: &CouchbaseSink) -> Result<Self, RebuildError> {
        let bucket = cluster.open_bucket(config.bucket.as_deref()).await?;
        Ok(Self::Couchbase { cluster, bucket, projection: projection.to_owned(), config: config.clone() })
    }

    /// `bucket.scope.collection` or `database`.`events…`: where generation `g` lives, for messages.
    pub fn describe(&self, g: Generation, live: bool) -> String {
        match self {
            Self::ClickHouse { database, config, .. } => {
                let suffix = if live { String::new() } else { g.suffix() };
                format!(
                    "ClickHouse tables {} (and its rollups and state)",
                    qualified(database, &format!("{}{suffix}", config.table))
                )
            }
            Self::Couchbase { bucket, projection, config, .. } => {
                let (scope, collection) = couchbase_place(projection, config, g);
                format!("Couchbase collection {}.{scope}.{collection}", bucket.name())
            }
        }
    }

    fn plan(&self, suffix: &str) -> Result<Plan, RebuildError> {
        let Self::ClickHouse { server, database, config } = self else {
            return Err(RebuildError::State("not a ClickHouse projection".to_owned()));
        };
        Ok(server.plan(database, config, &Names::versioned(config, suffix)).map_err(ch::Error::from)?)
    }

    async fn execute(server: &ClickHouse, statements: &[String]) -> Result<(), RebuildError> {
        for sql in statements {
            info!(%sql, "ClickHouse");
            // Verbatim: DDL has no bind placeholders, and `?` must not be read as one.
            server.client.query_raw(sql).execute().await.map_err(clickhouse(sql.clone()))?;
        }
        Ok(())
    }

    /// Creates the (empty) storage of generation `g`, not yet live; idempotent.
    pub async fn create(&self, g: Generation) -> Result<Vec<String>, RebuildError> {
        match self {
            Self::ClickHouse { server, database, config } => {
                let lines = ch::migrate_named(server, database, config, &Names::versioned(config, &g.suffix())).await?;
                Ok(lines.iter().map(ToString::to_string).collect())
            }
            Self::Couchbase { projection, config, .. } => {
                let (scope, collection) = couchbase_place(projection, config, g);
                let version = CouchbaseSink { scope, collection, ..config.clone() };
                // Boxed: the SDK's futures are deep (rustc's layout depth limit).
                Ok(vec![format!("{}", Box::pin(self.setup_version(projection, &version)).await?)])
            }
        }
    }

    async fn setup_version(&self, projection: &str, version: &CouchbaseSink) -> Result<setup::SetupLine, RebuildError> {
        let Self::Couchbase { bucket, .. } = self else { return Err(RebuildError::State("not Couchbase".into())) };
        let lines = Box::pin(setup::setup_on(bucket, &[(projection, version)])).await?;
        lines.into_iter().next().ok_or_else(|| RebuildError::State("setup returned nothing".into()))
    }

    /// Makes generation `new` the live one, `old` (the live one so far) keeping its data under
    /// its generation's name. Readers and live workers follow without a restart.
    pub async fn swap(&self, old: Generation, new: Generation) -> Result<String, RebuildError> {
        match self {
            Self::ClickHouse { server, database, .. } => {
                let engine: String = server
                    .client
                    .query("SELECT engine FROM system.databases WHERE name = ?")
                    .bind(database.as_str())
                    .fetch_one()
                    .await
                    .map_err(clickhouse(format!("reading the engine of database {database}")))?;
                let strategy = SwapStrategy::of(server.capabilities.exchange_tables, &engine);
                let statements =
                    swap::swap(&self.plan("")?, &self.plan(&new.suffix())?, &self.plan(&old.suffix())?, strategy);
                Self::execute(server, &statements).await?;
                Ok(format!("{strategy:?}"))
            }
            Self::Couchbase { bucket, projection, config, .. } => {
                let (scope, collection) = couchbase_place(projection, config, new);
                let at = pointer::Pointer { scope, collection, generation: new.0 };
                Box::pin(pointer::write(bucket, projection, &at, config.durability)).await?;
                Ok("pointer".to_owned())
            }
        }
    }

    /// Whether generation `g` is already live (a swap interrupted after it took effect).
    pub async fn is_live(&self, g: Generation) -> Result<bool, RebuildError> {
        match self {
            Self::ClickHouse { server, database, .. } => {
                // After a swap the old version's raw table (on a cluster: its local table) carries
                // its suffix and the new one's suffix is gone.
                let raw = self.plan(&g.suffix())?.objects.first().map(|o| o.name.clone()).unwrap_or_default();
                let count = |name: String| {
                    server
                        .client
                        .query("SELECT count() FROM system.tables WHERE database = ? AND name = ?")
                        .bind(database.as_str())
                        .bind(name)
                        .fetch_one::<u64>()
                };
                let building = count(raw).await.map_err(clickhouse("listing tables".to_owned()))?;
                Ok(building == 0)
            }
            Self::Couchbase { bucket, projection, config, .. } => {
                Ok(Box::pin(pointer::live(bucket, projection, config)).await?.generation == g.0)
            }
        }
    }

    /// Drops generation `g` (not the live one); idempotent. Returns what was done, for the CLI.
    pub async fn drop_version(&self, g: Generation) -> Result<String, RebuildError> {
        match self {
            Self::ClickHouse { server, .. } => {
                let statements = swap::drop_version(&self.plan(&g.suffix())?);
                Self::execute(server, &statements).await?;
                Ok(format!("dropped {}", self.describe(g, false)))
            }
            Self::Couchbase { bucket, projection, config, .. } => {
                let (scope, collection) = couchbase_place(projection, config, g);
                if collection == COUCHBASE_DEFAULT_COLLECTION {
                    // Couchbase cannot drop a default collection; nothing reads it any more.
                    return Ok(format!(
                        "kept {}: Couchbase cannot drop a default collection; its documents are no longer read \
                         (give the projection a named collection to have old versions dropped)",
                        self.describe(g, false)
                    ));
                }
                Box::pin(setup::drop_collection(bucket, &scope, &collection)).await?;
                Ok(format!("dropped {}", self.describe(g, false)))
            }
        }
    }
}

/// Scope and collection of generation `g` of a Couchbase projection.
pub fn couchbase_place(projection: &str, config: &CouchbaseSink, g: Generation) -> (String, String) {
    if g == Generation::FIRST {
        (config.scope.clone(), config.collection.clone())
    } else {
        (config.scope.clone(), pointer::collection_of(projection, g.0))
    }
}
