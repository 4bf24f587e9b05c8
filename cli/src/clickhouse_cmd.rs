//! `sluice clickhouse …`: the analytics tables of the ClickHouse projections.

use std::process::ExitCode;

use std::io::Write;

use clap::Subcommand;
use sluice_consumers::sinks::clickhouse::ClickHouse;
use sluice_consumers::sinks::clickhouse::state;
use sluice_consumers::sinks::clickhouse::typing::physical;
use sluice_consumers::sinks::clickhouse::{ClickHouseProjection, MigrationAction};
use sluice_core::topology::SinkConfig;

use crate::Context;

#[derive(Debug, Subcommand)]
pub(crate) enum ClickHouseCommand {
    /// Create the tables, materialized views and views of every ClickHouse projection, and check
    /// existing ones against what sluice expects (idempotent; exits non-zero on drift).
    ///
    /// The table layout adapts to the server's version (e.g. DateTime64 and dedup tokens on
    /// current servers, DateTime plus a milliseconds column on old ones); see docs/analytics.md.
    /// A declared table whose event types gained a field (a compatible schema change) gets the
    /// column added online; a changed type is refused, naming the table, column and both types.
    Migrate {
        /// Print the statements it would run (CREATE, ALTER … ADD COLUMN) and change nothing.
        #[arg(long)]
        plan: bool,
    },

    /// Print every table a ClickHouse projection writes, as this server gets it: declared tables
    /// and state tables with each column's type and the event field it comes from, rollups with
    /// their buckets, dimensions and measures (see docs/analytics.md).
    Describe,

    /// Run one SQL query against the projections' database and print the result as a table
    /// (tab-separated with a header; `--format` takes any ClickHouse output format).
    ///
    /// Example: sluice clickhouse query "SELECT * FROM daily_engagement ORDER BY day DESC LIMIT 5"
    Query {
        /// The SQL.
        sql: String,
        /// Output format.
        #[arg(long, default_value = "PrettyCompactNoEscapes")]
        format: String,
    },
}

pub(crate) async fn run(ctx: &Context, cmd: ClickHouseCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ClickHouseCommand::Migrate { plan } => {
            let topology = ctx.topology()?;
            let (mut created, mut up_to_date, mut added) = (0, 0, 0);
            for (name, projection) in topology.projections() {
                if !matches!(projection.sink, SinkConfig::ClickHouse { .. }) {
                    continue;
                }
                let sink = ClickHouseProjection::connect(&ctx.connections.clickhouse, projection).await?;
                println!("projection {name} → {} at {}", sink.database(), ctx.connections.clickhouse.url);
                if plan {
                    let statements = sink.migration_statements().await?;
                    if statements.is_empty() {
                        println!("  -- nothing to do");
                    }
                    for sql in statements {
                        println!("{sql};\n");
                    }
                    continue;
                }
                for line in sink.migrate().await? {
                    match line.action {
                        MigrationAction::Created => created += 1,
                        MigrationAction::UpToDate => up_to_date += 1,
                        MigrationAction::AddedColumn => added += 1,
                    }
                    println!("  {line}");
                }
            }
            if !plan {
                println!("{created} created, {added} columns added, {up_to_date} up to date");
            }
            Ok(ExitCode::SUCCESS)
        }
        ClickHouseCommand::Describe => {
            let topology = ctx.topology()?;
            for (name, projection) in topology.projections() {
                let SinkConfig::ClickHouse { clickhouse } = &projection.sink else { continue };
                let sink = ClickHouseProjection::connect(&ctx.connections.clickhouse, projection).await?;
                println!("projection {name} → database {} at {}", sink.database(), ctx.connections.clickhouse.url);
                println!("  {} (raw table: every event, its payload as JSON text)", clickhouse.table);
                for (table, declared) in &clickhouse.tables {
                    println!("\n  {table} ({}; events: {})", declared.engine, declared.events.join(", "));
                    let rows: Vec<Vec<String>> = declared
                        .resolved
                        .iter()
                        .flat_map(|c| {
                            physical(&c.name, &c.ty, sink.layout())
                                .into_iter()
                                .map(|p| vec![p.name, p.sql, c.path.to_string(), c.ty.to_string()])
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    print!("{}", indent(&crate::table::render(&["column", "type", "from field", "Avro"], &rows, 4)));
                }
                for (table, state) in &clickhouse.state {
                    println!(
                        "\n  {table} (state: the newest value of each column per {}; events: {})",
                        state.key_column,
                        state.events.join(", ")
                    );
                    if !state.creates.is_empty() || !state.deletes.is_empty() {
                        println!("    creates: {}; deletes: {}", or_none(&state.creates), or_none(&state.deletes));
                    }
                    let mut rows =
                        vec![vec![state.key_column.clone(), "String".into(), "aggregate_id".into(), String::new()]];
                    rows.extend(state::view_columns(state, sink.layout()).into_iter().map(|(name, sql, c)| {
                        let sources: Vec<String> = c.sources.iter().map(ToString::to_string).collect();
                        vec![name, sql, sources.join(" or "), c.ty.to_string()]
                    }));
                    rows.push(vec!["is_deleted".into(), "UInt8".into(), or_none(&state.deletes), String::new()]);
                    rows.push(vec![
                        "updated_at".into(),
                        sink.layout().time_type().into(),
                        "occurred_at".into(),
                        String::new(),
                    ]);
                    print!("{}", indent(&crate::table::render(&["column", "type", "from field", "Avro"], &rows, 4)));
                }
                for (name, rollup) in &clickhouse.rollups {
                    let filter =
                        rollup.events.as_ref().map_or(String::new(), |e| format!("; events: {}", e.join(", ")));
                    println!(
                        "\n  {name} (rollup of {} per {} of {}{}{filter}; each event counted once)",
                        rollup.from,
                        rollup.bucket,
                        rollup.time,
                        if rollup.dimensions.is_empty() {
                            String::new()
                        } else {
                            format!(" and {}", rollup.dimensions.join(", "))
                        },
                    );
                    for (column, values) in &rollup.filter {
                        let values: Vec<String> =
                            values.iter().map(|v| serde_json::to_string(v).unwrap_or_default()).collect();
                        println!("    where {column} in ({})", values.join(", "));
                    }
                    let rows: Vec<Vec<String>> =
                        rollup.measures.iter().map(|(m, measure)| vec![m.clone(), measure.to_string()]).collect();
                    print!("{}", indent(&crate::table::render(&["measure", "aggregate"], &rows, 4)));
                }
                println!();
            }
            Ok(ExitCode::SUCCESS)
        }
        ClickHouseCommand::Query { sql, format } => {
            let conn = &ctx.connections.clickhouse;
            let ch = ClickHouse::connect(conn).await?;
            // `query_raw`: the SQL is the user's, so `?` is not a bind placeholder here.
            let mut cursor = ch.client.with_database(&conn.database).query_raw(&sql).fetch_bytes(&format)?;
            let bytes = cursor.collect().await?;
            std::io::stdout().write_all(&bytes)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The list, comma-separated, or "none".
fn or_none(list: &[String]) -> String {
    if list.is_empty() { "none".to_owned() } else { list.join(", ") }
}

/// `text` with every line indented by four spaces.
fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
