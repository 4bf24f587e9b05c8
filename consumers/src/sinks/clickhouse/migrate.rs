//! Runs the [`schema`](mod@super::schema) plan against a server: creates what is missing, then checks
//! that what exists is what the sink writes and analysts read.
//!
//! Input: a connected [`ClickHouse`], the database, the projection's `clickhouse` block. It reads
//! `system.databases`, `system.tables` and `system.columns` (the columns `DESCRIBE TABLE` shows,
//! for every object in one query) and issues only `CREATE … IF NOT EXISTS`, so running it again —
//! or from two workers at once — changes nothing. It never alters or drops: a table that drifted
//! (a changed type, a missing column, a table where a view belongs) is reported as
//! [`Error::Drift`] naming each table and column, for an operator to decide.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use sluice_core::topology::ClickHouseSink;
use tracing::info;

use super::schema::{self, DescribedColumn, Layout, Names, ObjectKind, Plan, PlanError, qualified, quote};
use super::{ClickHouse, Error};

/// What [`migrate`] did with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationAction {
    /// It did not exist and was created.
    Created,
    /// It existed, with the expected engine and columns.
    UpToDate,
    /// A declared table existed without a column its event types now have: it was added
    /// (the line's name is the column).
    AddedColumn,
}

/// One line of a migration report: an object and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationLine {
    /// Database, table, materialized view or view.
    pub kind: ObjectKind,
    /// The quoted, qualified name (`` `analytics`.`events` ``).
    pub name: String,
    /// Created, or already there.
    pub action: MigrationAction,
}

impl fmt::Display for MigrationLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.action {
            MigrationAction::Created => write!(f, "created {} {}", self.kind, self.name),
            MigrationAction::UpToDate => write!(f, "{} {} is up to date", self.kind, self.name),
            MigrationAction::AddedColumn => write!(f, "added column {}", self.name),
        }
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct TableRow {
    name: String,
    engine: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct ColumnRow {
    table: String,
    name: String,
    ty: String,
    default_kind: String,
}

fn failed(what: String) -> impl FnOnce(clickhouse::error::Error) -> Error {
    move |source| Error::Query { what, source }
}

async fn engines(ch: &ClickHouse, database: &str) -> Result<BTreeMap<String, String>, Error> {
    let rows: Vec<TableRow> = ch
        .client
        .query("SELECT name, engine FROM system.tables WHERE database = ?")
        .bind(database)
        .fetch_all()
        .await
        .map_err(failed(format!("listing the tables of {}", quote(database))))?;
    Ok(rows.into_iter().map(|r| (r.name, r.engine)).collect())
}

async fn database_exists(ch: &ClickHouse, database: &str) -> Result<bool, Error> {
    let databases: u64 = ch
        .client
        .query("SELECT count() FROM system.databases WHERE name = ?")
        .bind(database)
        .fetch_one()
        .await
        .map_err(failed("listing databases".to_owned()))?;
    Ok(databases > 0)
}

async fn columns(ch: &ClickHouse, database: &str) -> Result<Vec<DescribedColumn>, Error> {
    let rows: Vec<ColumnRow> = ch
        .client
        .query("SELECT table, name, type AS ty, default_kind FROM system.columns WHERE database = ?")
        .bind(database)
        .fetch_all()
        .await
        .map_err(failed(format!("describing the tables of {}", quote(database))))?;
    Ok(rows
        .into_iter()
        .map(|r| DescribedColumn { table: r.table, name: r.name, ty: r.ty, default_kind: r.default_kind })
        .collect())
}

impl ClickHouse {
    /// The objects of the version of `sink` that `names` names in `database`, as this server
    /// (or its cluster) has them.
    pub fn plan(&self, database: &str, sink: &ClickHouseSink, names: &Names) -> Result<Plan, PlanError> {
        let plan = schema::plan_named(database, sink, Layout::of(&self.capabilities), names)?;
        Ok(match &self.cluster {
            Some(cluster) => schema::on_cluster(plan, cluster),
            None => plan,
        })
    }
}

/// `CREATE DATABASE IF NOT EXISTS` (on every server of the plan's cluster).
fn create_database(plan: &Plan) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {}{}", quote(&plan.database), plan.on_cluster())
}

/// Creates the database and every table and view `sink` needs that does not exist yet (in the
/// layout of this server), then checks that all of them have the expected engine and columns.
/// Idempotent. Returns one line per object; fails with [`Error::Drift`] listing every difference.
pub async fn migrate(ch: &ClickHouse, database: &str, sink: &ClickHouseSink) -> Result<Vec<MigrationLine>, Error> {
    migrate_named(ch, database, sink, &Names::of(sink)).await
}

/// [`migrate`] for the version of the projection `names` names (a rebuild's `__v<n>` objects).
pub async fn migrate_named(
    ch: &ClickHouse,
    database: &str,
    sink: &ClickHouseSink,
    names: &Names,
) -> Result<Vec<MigrationLine>, Error> {
    let layout = Layout::of(&ch.capabilities);
    let plan = ch.plan(database, sink, names)?;
    for note in &plan.notes {
        tracing::warn!("{note}");
    }
    let mut lines = Vec::with_capacity(plan.objects.len() + 1);

    let exists = database_exists(ch, database).await?;
    let action = if !exists {
        ch.client
            .query_raw(&create_database(&plan))
            .execute()
            .await
            .map_err(failed(format!("creating database {}", quote(database))))?;
        MigrationAction::Created
    } else {
        MigrationAction::UpToDate
    };
    lines.push(MigrationLine { kind: ObjectKind::Database, name: quote(database), action });

    let existing = engines(ch, database).await?;
    for object in &plan.objects {
        let name = qualified(database, &object.name);
        let action = if existing.contains_key(&object.name) {
            MigrationAction::UpToDate
        } else {
            // Verbatim: the statement has no bind placeholders, and `?` must not be read as one.
            ch.client
                .query_raw(&object.create)
                .execute()
                .await
                .map_err(failed(format!("creating {} {name}", object.kind)))?;
            MigrationAction::Created
        };
        lines.push(MigrationLine { kind: object.kind, name, action });
    }

    // Online evolution: a declared table gets the columns its event types gained (an added
    // optional field). Old rows read the column's default (NULL, or empty).
    for (object, column, sql) in schema::additions(&plan, &columns(ch, database).await?) {
        ch.client.query_raw(&sql).execute().await.map_err(failed(format!("adding column {column} to {object}")))?;
        info!(%object, %column, "column added");
        lines.push(MigrationLine {
            kind: ObjectKind::Table,
            name: format!("{object}.{}", quote(&column)),
            action: MigrationAction::AddedColumn,
        });
    }

    // Check everything, the new objects too: a server that stores a type differently from the
    // plan fails now rather than on the next start.
    let drift = schema::check(&plan, &engines(ch, database).await?, &columns(ch, database).await?);
    if !drift.is_empty() {
        return Err(Error::Drift { database: database.to_owned(), drift });
    }
    let created = lines.iter().filter(|l| l.action == MigrationAction::Created).count();
    info!(
        database,
        created,
        up_to_date = lines.len() - created,
        datetime64 = layout.datetime64,
        low_cardinality = layout.low_cardinality,
        insert_deduplication = layout.insert_deduplication,
        cluster = ch.cluster.as_deref().unwrap_or("-"),
        "ClickHouse schema migrated"
    );
    Ok(lines)
}

/// The statements [`migrate_named`] would run now, without running them (`migrate --plan`):
/// the database and objects to create, the columns to add.
pub async fn statements(
    ch: &ClickHouse,
    database: &str,
    sink: &ClickHouseSink,
    names: &Names,
) -> Result<Vec<String>, Error> {
    let plan = ch.plan(database, sink, names)?;
    let exists = database_exists(ch, database).await?;
    let mut out = Vec::new();
    if !exists {
        out.push(create_database(&plan));
    }
    let existing = engines(ch, database).await?;
    out.extend(plan.objects.iter().filter(|o| !existing.contains_key(&o.name)).map(|o| o.create.clone()));
    out.extend(schema::additions(&plan, &columns(ch, database).await?).into_iter().map(|(_, _, sql)| sql));
    Ok(out)
}
