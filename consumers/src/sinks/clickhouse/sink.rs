//! [`ClickHouseProjection`]: the [`Sink`] writing a projection's batches into its ClickHouse tables.
//!
//! Data path: the worker hands over one partition's events as it decodes them → the
//! [`Sink::encoder`] keeps the event types the projection folds and writes each event's rows
//! straight into the `RowBinary` body of every table that takes it — the declared tables, the
//! state tables' updates ([`super::declared`]) and the raw table ([`super::request_builder`]) —
//! for this server's layout, refusing the events no row can hold (an event one table cannot hold
//! is refused for all), and drops the event: a batch never holds its decoded events, and the
//! bodies start at the last batch's size ([`super::sizing`]) → [`Sink::write_all`] sends one
//! `INSERT` per table for all the partitions of a flush, each partition's body a chunk of it.
//! Rollups and states are filled by materialized views on those inserts, inside the same request.
//!
//! Idempotency: every table collapses a re-delivered event (see [`super::schema`]). Where the
//! server has it, each insert also carries `insert_deduplication_token` = the batch's token plus
//! the table (the token identifies one insert, and a batch makes one per table), so a batch the
//! worker re-sends after a failure or a crash is dropped at insert time rather than merged away
//! later.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_core::connections::ClickHouseConnection;
use sluice_core::event::Event;
use sluice_core::topology::{ClickHouseSink, ProjectionConfig, SinkConfig};
use tracing::{debug, info, warn};

use super::declared::{self, BatchRows, Target};
use super::migrate::{MigrationLine, migrate_named};
use super::schema::{Layout, Names};
use super::service::{classify, is_missing_table};
use super::sizing::{Sizing, worth_shrinking};
use super::{ClickHouse, Error};
use crate::sink::{Batch, Batching, Encoder, Rejected, Sink, SinkError, batch_token};

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

/// One partition's batch as the ClickHouse sink writes it: each table's `RowBinary` rows (in
/// the order of the projection's tables) and the events refused.
#[derive(Debug)]
pub struct EncodedBatch {
    token: String,
    rows: Vec<TableRows>,
    rejected: Vec<Rejected>,
}

/// One table's rows of one batch.
#[derive(Debug)]
struct TableRows {
    bytes: Bytes,
    count: usize,
}

impl EncodedBatch {
    /// The events refused, with the reasons.
    pub fn rejected(&self) -> &[Rejected] {
        &self.rejected
    }
}

/// A ClickHouse projection: raw events, declared tables, states and rollups.
#[derive(Debug, Clone)]
pub struct ClickHouseProjection {
    ch: ClickHouse,
    database: String,
    config: ClickHouseSink,
    layout: Layout,
    names: Names,
    /// Event types folded; every type when empty.
    folds: BTreeSet<String>,
    /// Every table written: the declared tables, the state tables' updates and the raw table,
    /// named for this version.
    targets: Vec<Target>,
    /// How large each target's rows of a batch start.
    sizing: Arc<Sizing>,
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
        let targets = declared::targets(config, &names, layout);
        let this = Self {
            sizing: Arc::new(Sizing::new(targets.len())),
            targets,
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
            database = %this.database, table = %this.names.events,
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
        self.targets = declared::targets(&self.config, &self.names, self.layout);
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

    /// One `RowBinary` insert into `table` of `count` rows, sent as `chunks` (a partition's rows
    /// each), deduplicated by `token` where the server can.
    async fn insert(&self, table: &Target, chunks: &[Bytes], count: usize, token: &str) -> Result<(), SinkError> {
        let token = format!("{token}:{}", table.name());
        let what = format!("inserting {count} rows into {}", table.name());
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
            for chunk in chunks {
                insert.send(chunk.clone()).await?;
            }
            insert.end().await
        })
        .await
    }

    /// Writes the encoded batches of a flush, all partitions in one insert per table: ClickHouse
    /// wants few big inserts (each insert is a part to merge, and here also a round of
    /// materialized views), not one per partition. The dedup token joins the batches' tokens, so
    /// the same flush sent again is still recognised. The refused events of each batch, in order.
    pub async fn write_each<'a>(
        &self,
        batches: impl IntoIterator<Item = &'a EncodedBatch>,
    ) -> Result<Vec<Vec<Rejected>>, SinkError> {
        let batches: Vec<&EncodedBatch> = batches.into_iter().collect();
        let token =
            format!("{}{}", self.token_prefix, batches.iter().map(|b| b.token.as_str()).collect::<Vec<_>>().join(","));
        let inserts = self.targets.iter().enumerate().filter_map(|(i, table)| {
            let rows: Vec<&TableRows> = batches.iter().map(|b| &b.rows[i]).filter(|r| r.count > 0).collect();
            let count = rows.iter().map(|r| r.count).sum::<usize>();
            let chunks: Vec<Bytes> = rows.into_iter().map(|r| r.bytes.clone()).collect();
            let token = &token;
            (count > 0).then_some(async move { self.insert(table, &chunks, count, token).await })
        });
        futures::future::try_join_all(inserts).await?;
        for r in batches.iter().flat_map(|b| b.rejected()) {
            warn!(offset = r.offset, reason = %r.reason, "event refused by the ClickHouse sink");
        }
        Ok(batches.iter().map(|b| b.rejected.clone()).collect())
    }
}

/// One partition's batch written into its tables' rows as its events are decoded.
#[derive(Debug)]
struct RowsEncoder<'a> {
    projection: &'a ClickHouseProjection,
    topic: String,
    partition: i32,
    /// The records the batch was sized for.
    records: usize,
    rows: BatchRows,
    rejected: Vec<Rejected>,
}

impl Encoder<EncodedBatch> for RowsEncoder<'_> {
    fn push(&mut self, event: Event) {
        if !self.projection.folds(&event) {
            return;
        }
        if let Err(reason) = self.rows.push(&self.projection.targets, &event) {
            self.rejected.push(Rejected { offset: event.position.offset, reason });
        }
    }

    fn finish(self: Box<Self>, first_offset: i64, last_offset: i64) -> EncodedBatch {
        let Self { projection, topic, partition, records, rows, rejected } = *self;
        projection.sizing.learn(records, rows.tables.iter().map(|r| r.bytes.len()));
        let rows = rows
            .tables
            .into_iter()
            .map(|mut r| {
                // A batch in flight holds its bodies until it lands: not much spare room with them.
                if worth_shrinking(r.bytes.len(), r.bytes.capacity()) {
                    r.bytes.shrink_to_fit();
                }
                TableRows { bytes: Bytes::from(r.bytes), count: r.count }
            })
            .collect();
        EncodedBatch { token: batch_token(&topic, partition, first_offset, last_offset), rows, rejected }
    }
}

impl Sink for ClickHouseProjection {
    type Encoded = EncodedBatch;

    fn kind(&self) -> &'static str {
        "clickhouse"
    }

    fn encode(&self, batch: Batch) -> EncodedBatch {
        let mut encoder = self.encoder(&batch.topic, batch.partition, batch.events.len());
        for event in batch.events {
            encoder.push(event);
        }
        encoder.finish(batch.first_offset, batch.last_offset)
    }

    fn encoder<'a>(&'a self, topic: &str, partition: i32, records: usize) -> Box<dyn Encoder<EncodedBatch> + 'a> {
        let sizing = &self.sizing;
        Box::new(RowsEncoder {
            projection: self,
            topic: topic.to_owned(),
            partition,
            records,
            rows: BatchRows::with_capacity(self.targets.len(), |i| sizing.capacity(i, records)),
            rejected: Vec::new(),
        })
    }

    async fn write_all(&self, batches: &[EncodedBatch]) -> Result<Vec<Vec<Rejected>>, SinkError> {
        self.write_each(batches).await
    }

    fn batching(&self) -> Batching {
        self.batching
    }
}
