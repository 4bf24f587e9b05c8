//! `sluice clickhouse …`: the analytics tables of the ClickHouse projections.

use std::process::ExitCode;

use std::io::Write;

use clap::Subcommand;
use sluice_consumers::sinks::clickhouse::ClickHouse;
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
    /// with each column's type and the event field it comes from (see docs/analytics.md).
    Describe,

    /// Run one SQL query against the projections' database and print the result as a table
    /// (tab-separated with a header; `--format` takes any ClickHouse output format).
    ///
    /// Example: sluice clickhouse query "SELECT * FROM daily_engagement ORDER BY revenue_cents DESC LIMIT 5"
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

/// `text` with every line indented by four spaces.
fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
