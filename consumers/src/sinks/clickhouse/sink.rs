//! [`ClickHouseProjection`]: the [`Sink`] writing a projection's batches into its ClickHouse tables.
//!
//! Data path: the worker hands over one partition's [`Batch`] → the projection keeps the event
//! types it folds → [`super::declared`] encodes the rows of the declared tables and of the state
//! tables' updates (`RowBinary`), [`Rows::encode`] the raw table's, for this server's layout
//! (refusing the events no row can hold: an event one table cannot hold is refused for all) →
//! one `INSERT` per table. Rollups and states are filled by materialized views on those inserts,
//! inside the same request.
//!
//! Idempotency: every table collapses a re-delivered event (see [`super::schema`]). Where the
//! server has it, each insert also carries `insert_deduplication_token` = the batch's token plus
//! the table (the token identifies one insert, and a batch makes one per table), so a batch the
//! worker re-sends after a failure or a crash is dropped at insert time rather than merged away
//! later.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clickhouse::{RowOwned, RowWrite};
use sluice_core::connections::ClickHouseConnection;
use sluice_core::event::Event;
use sluice_core::topology::{ClickHouseSink, ProjectionConfig, SinkConfig};
use tracing::{debug, info, warn};

use super::declared::{self, DeclaredRows, Target};
use super::migrate::{MigrationLine, migrate_named};
use super::request_builder::{Encoded, EventRow, EventRowCompat, Rows};
use super::schema::{Layout, Names, qualified};
use super::service::{classify, is_missing_table};
use super::{ClickHouse, Error};
use crate::sink::{Batch, Batching, Rejected, Sink, SinkError};

/// Longest time to hand one chunk of rows to the socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the server to finish an insert (including its materialized views).
const END_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an insert waits for its table to come back. A rebuild's swap on a server without
/// `EXCHANGE TABLES` (18.16) renames the live tables one after the other in one statement, so an
/// insert can arrive between two renames and find no table for a few milliseconds; without this
/// the live worker would stop on a configuration error (`UNKNOWN_TABLE`).
const SWAP_GRACE: Duration = Duration::from_secs(10);
/// The pause between two tries while the table is missing.
const SWAP_POLL: Duration = Duration::from_millis(100);

/// A ClickHouse projection: raw events, declared tables, states and rollups.
#[derive(Debug, Clone)]
pub struct ClickHouseProjection {
    ch: ClickHouse,
    database: String,
    config: ClickHouseSink,
    layout: Layout,
    names: Names,
    /// Qualified raw table.
    events_table: String,
    /// Event types folded; every type when empty.
    folds: BTreeSet<String>,
    /// The declared tables and the state tables' updates, named for this version.
    declared: Vec<Target>,
    batching: Batching,
    /// Prepended to every insert's deduplication token: a rebuild's inserts must never be taken
    /// for the live worker's (same offsets, another insert) and dropped.
    token_prefix: String,
}

impl ClickHouseProjection {
    /// A projection for `projection` over a connected server; `default_database` is used when
    /// the projection names none. Fails when the projection's sink is not ClickHouse.
    pub fn new(ch: ClickHouse, default_database: &str, projection: &ProjectionConfig) -> Result<Self, Error> {
        let SinkConfig::ClickHouse { clickhouse: config } = &projection.sink else {
            return Err(Error::NotClickHouse(projection.sink.kind().to_string()));
        };
        let database = config.database.clone().unwrap_or_else(|| default_database.to_owned());
        let names = Names::of(config);
        let layout = Layout::of(&ch.capabilities);
        let this = Self {
            declared: declared::targets(config, &names, layout),
            events_table: qualified(&database, &names.events),
            folds: projection.events.iter().cloned().collect(),
            batching: Batching::of(projection),
            ch,
            database,
            config: config.clone(),
            layout,
            names,
            token_prefix: String::new(),
        };
        let dedup = if layout.insert_deduplication {
            "insert_deduplication_token, then merges"
        } else {
            "merges and FINAL only"
        };
        info!(
            database = %this.database, table = %this.events_table,
            tables = ?this.config.tables.keys().collect::<Vec<_>>(),
            state = ?this.config.state.keys().collect::<Vec<_>>(),
            rollups = ?this.config.rollups.keys().collect::<Vec<_>>(), time = layout.time_type(), dedup,
            low_cardinality = layout.low_cardinality,
            "ClickHouse projection ready; strategy chosen from the server's version"
        );
        Ok(this)
    }

    /// Connects to `conn` (choosing the client's strategy from the server's version) and builds
    /// the projection; the connection's database is the default.
    pub async fn connect(conn: &ClickHouseConnection, projection: &ProjectionConfig) -> Result<Self, Error> {
        let ch = ClickHouse::connect(conn).await?;
        Self::new(ch, &conn.database, projection)
    }

    /// The same projection writing to the version whose objects carry `suffix` (`__v2`; empty:
    /// the live names), its insert tokens prefixed with `token_prefix`. `sluice rebuild` writes
    /// the new version through this.
    pub fn versioned(mut self, suffix: &str, token_prefix: &str) -> Self {
        self.names = Names::versioned(&self.config, suffix);
        self.declared = declared::targets(&self.config, &self.names, self.layout);
        self.events_table = qualified(&self.database, &self.names.events);
        self.token_prefix = token_prefix.to_owned();
        self
    }

    /// Creates the projection's tables where missing and checks the existing ones; see
    /// [`migrate`](super::migrate()).
    pub async fn migrate(&self) -> Result<Vec<MigrationLine>, Error> {
        migrate_named(&self.ch, &self.database, &self.config, &self.names).await
    }

    /// What [`Self::migrate`] would run now, without running it.
    pub async fn migration_statements(&self) -> Result<Vec<String>, Error> {
        super::migrate::statements(&self.ch, &self.database, &self.config, &self.names).await
    }

    /// The server connection.
    pub fn server(&self) -> &ClickHouse {
        &self.ch
    }

    /// The projection's `clickhouse` block.
    pub fn config(&self) -> &ClickHouseSink {
        &self.config
    }

    /// The database written to.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The column layout chosen for the server.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    fn folds(&self, event: &Event) -> bool {
        self.folds.is_empty() || self.folds.contains(&event.envelope.event_type)
    }

    /// One `INSERT` of `rows` into `table`, deduplicated by `token` where the server can.
    async fn insert<T>(&self, table: &str, rows: &[T], token: String) -> Result<(), SinkError>
    where
        T: RowOwned + RowWrite,
    {
        let what = format!("inserting {} rows into {table}", rows.len());
        self.within_swap_grace(table, what, || self.try_insert(table, rows, &token)).await
    }

    /// Runs `attempt` again while its table is missing for a moment (see [`SWAP_GRACE`]);
    /// missing for longer, it is a configuration error.
    async fn within_swap_grace<F, Fut>(&self, table: &str, what: String, mut attempt: F) -> Result<(), SinkError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), clickhouse::error::Error>>,
    {
        let started = Instant::now();
        loop {
            match attempt().await {
                Err(e) if is_missing_table(&e) && started.elapsed() < SWAP_GRACE => {
                    debug!(table, error = %e, "table missing for a moment (a rebuild's swap?); retrying");
                    tokio::time::sleep(SWAP_POLL).await;
                }
                other => return other.map_err(|e| classify(&what, &e)),
            }
        }
    }

    async fn try_insert<T>(&self, table: &str, rows: &[T], token: &str) -> Result<(), clickhouse::error::Error>
    where
        T: RowOwned + RowWrite,
    {
        let mut insert =
            self.ch.client.insert_unescaped::<T>(table).await?.with_timeouts(Some(SEND_TIMEOUT), Some(END_TIMEOUT));
        if self.layout.insert_deduplication {
            insert = insert.with_setting("insert_deduplication_token", token);
        }
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
    }

    /// One `RowBinary` insert of `rows` (encoded rows) into a declared or state table.
    async fn insert_declared(&self, table: &Target, rows: DeclaredRows, token: &str) -> Result<(), SinkError> {
        let data = Bytes::from(rows.bytes);
        let token = format!("{token}:{}", table.name());
        let what = format!("inserting {} rows into {}", rows.count, table.name());
        self.within_swap_grace(table.name(), what, || async {
            let mut insert = self
                .ch
                .client
                .insert_formatted_with(table.insert_sql(&self.database))
                .with_timeouts(Some(SEND_TIMEOUT), Some(END_TIMEOUT));
            if self.layout.insert_deduplication {
                insert = insert
                    .with_setting("insert_deduplication_token", token.as_str())
                    // The materialized views' target tables (rollups, states) deduplicate with
                    // tokens derived from it.
                    .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1");
            }
            insert.send(data.clone()).await?;
            insert.end().await
        })
        .await
    }

    /// The declared tables' inserts, all at once (each is idempotent).
    async fn write_declared(&self, token: &str, rows: Vec<DeclaredRows>) -> Result<(), SinkError> {
        let inserts = self
            .declared
            .iter()
            .zip(rows)
            .filter(|(_, r)| r.count > 0)
            .map(|(table, r)| self.insert_declared(table, r, token));
        futures::future::try_join_all(inserts).await.map(|_| ())
    }

    /// The raw table's insert.
    async fn write_raw<E>(&self, token: &str, rows: Vec<E>) -> Result<(), SinkError>
    where
        E: RowOwned + RowWrite,
    {
        if rows.is_empty() {
            return Ok(());
        }
        self.insert(&self.events_table, &rows, format!("{token}:{}", self.names.events)).await
    }
}

impl Sink for ClickHouseProjection {
    fn kind(&self) -> &'static str {
        "clickhouse"
    }

    async fn write(&self, batch: &Batch) -> Result<Vec<Rejected>, SinkError> {
        let mut rejected = self.write_all(std::slice::from_ref(batch)).await?;
        Ok(rejected.pop().unwrap_or_default())
    }

    /// All partitions of a flush in one insert per table: ClickHouse wants few big inserts (each
    /// insert is a part to merge, and here also a round of materialized views), not one per
    /// partition. The dedup token joins the batches' tokens, so the same flush sent again is
    /// still recognised.
    async fn write_all(&self, batches: &[Batch]) -> Result<Vec<Vec<Rejected>>, SinkError> {
        let token = format!("{}{}", self.token_prefix, batches.iter().map(Batch::token).collect::<Vec<_>>().join(","));
        let mut declared_rows = vec![DeclaredRows::default(); self.declared.len()];
        let mut modern: Encoded<EventRow> = Encoded::default();
        let mut compat: Encoded<EventRowCompat> = Encoded::default();
        let mut rejected = Vec::with_capacity(batches.len());
        // Encoded per batch, so each refusal stays with its partition; written together. The
        // declared tables first: an event they refuse is kept out of every table.
        for b in batches {
            let folded: Vec<&Event> = b.events.iter().filter(|e| self.folds(e)).collect();
            let mut refused = declared::encode(&self.declared, folded.iter().copied(), &mut declared_rows);
            let kept = folded.into_iter().filter(|e| !refused.iter().any(|r| r.offset == e.position.offset));
            refused.extend(match Rows::encode(kept, self.layout) {
                Rows::Modern(r) => modern.append(r),
                Rows::Compat(r) => compat.append(r),
            });
            rejected.push(refused);
        }
        let raw = async {
            self.write_raw(&token, modern.events).await?;
            self.write_raw(&token, compat.events).await
        };
        futures::try_join!(raw, self.write_declared(&token, declared_rows))?;
        for r in rejected.iter().flatten() {
            warn!(offset = r.offset, reason = %r.reason, "event refused by the ClickHouse sink");
        }
        Ok(rejected)
    }

    fn batching(&self) -> Batching {
        self.batching
    }
}
