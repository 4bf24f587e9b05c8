//! `sluice replay --projection P --from …`: move a projection's consumer group back (or forward)
//! so its worker re-projects history.
//!
//! The plan comes from Kafka through `sluice_consumers::replay` (watermarks, the group's committed
//! offsets, offsets by timestamp) and `sluice_core::replay` (current → new offset, events to
//! re-project per partition). It is always printed; only `--yes` commits it, and only while no
//! worker of the projection runs. Projections are idempotent, so re-projecting is safe.
//!
//! With `--to` the replay is bounded, and that changes how it runs. A consumer-group offset reset
//! cannot express an upper bound: a worker started from the reset offsets runs on past it. So
//! `--to` never touches the group: the command re-projects `[from, to)` itself, in process
//! (`sluice_consumers::rebuild::runner`: partitions assigned, written through the projection's
//! live sink, dead letters to its DLQ), shows progress and stops at the bound. The live workers
//! may keep running meanwhile (every write is idempotent), and an interrupted bounded replay is
//! simply run again.

use std::process::ExitCode;

use anyhow::Context as _;
use sluice_consumers::rebuild::runner::{self, Bounded};
use sluice_consumers::replay::{apply, read_plan};
use sluice_core::rebuild::Span;
use sluice_core::replay::{Position, ReplayPlan};
use tokio_util::sync::CancellationToken;

use crate::Context;
use crate::reproject::{self, Bars, Version};

/// Options of `sluice replay`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Without --yes nothing changes: the plan is printed and the command exits 0. With \
                        --yes the group's offsets are committed, which Kafka accepts only while the group \
                        has no members: stop the projection's `sluice work` processes first (SIGTERM), \
                        then start them again to re-project. Positions: `earliest` (oldest retained), \
                        `latest`, an RFC 3339 timestamp (the first record at or after it on each \
                        partition), or `partition:offset,…` (single-source projections) / \
                        `topic:partition:offset,…` (partitions not listed stay where they are).\n\n\
                        With --to the replay is bounded and runs here: the events from --from up to (not \
                        including) --to are re-projected by this command through the projection's sink, \
                        with progress on stderr and a summary at the end; the consumer group is left \
                        alone, so the workers may keep running.\n\n\
                        Examples:\n  \
                        sluice replay -p user_state --from 2026-11-26T00:00:00Z            # plan only\n  \
                        sluice replay -p user_state --from 2026-11-26T00:00:00Z --yes      # reset the group\n  \
                        sluice replay -p analytics --from 2026-11-26T00:00:00Z --to 2026-11-26T06:00:00Z --yes\n  \
                        sluice replay -p user_state --from 0:120 --to 0:480 --yes           # one partition's range")]
pub(crate) struct ReplayArgs {
    /// The projection to replay (a `[projections.<name>]` of the topology).
    #[arg(long, short)]
    pub(crate) projection: String,

    /// Where to restart: earliest | latest | RFC 3339 timestamp | `[topic:]partition:offset,…`
    #[arg(long, value_name = "POSITION", value_parser = position)]
    from: Position,

    /// Re-project only up to here (exclusive), in this process: latest | RFC 3339 timestamp |
    /// `[topic:]partition:offset,…` (partitions not listed go to their current end).
    #[arg(long, value_name = "POSITION", value_parser = position)]
    to: Option<Position>,

    /// Commit the new offsets, or with --to run the bounded replay (otherwise a dry run).
    #[arg(long)]
    yes: bool,
}

fn position(s: &str) -> Result<Position, String> {
    s.parse().map_err(|e: sluice_core::replay::ReplayError| e.to_string())
}

pub(crate) async fn run(ctx: &Context, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let topology = ctx.topology()?;
    let name = &args.projection;
    let projection = topology.projection(name).with_context(|| {
        let known: Vec<&str> = topology.projections().map(|(n, _)| n).collect();
        format!("no projection {name:?} in the topology (known: {})", known.join(", "))
    })?;
    let kafka = &ctx.connections.kafka;
    println!("reading the offsets of consumer group {} (projection {name}, from {})", projection.group, args.from);
    let plan = read_plan(kafka, name, projection, &args.from, args.to.as_ref()).await.context("planning the replay")?;
    print!("{}", table(&plan));
    if !args.yes {
        println!("dry run: pass --yes to apply");
        return Ok(ExitCode::SUCCESS);
    }
    if args.to.is_some() {
        return bounded(ctx, name, projection, &plan).await;
    }
    let committed = apply(kafka, &plan).await?;
    println!(
        "applied: committed new offsets of consumer group {} on {committed} partition(s); start `sluice work \
         --projection {name}` to re-project {} event(s)",
        plan.group,
        plan.events()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--to`: re-projects each partition's `new..end` here, through the live sink.
async fn bounded(
    ctx: &Context,
    name: &str,
    projection: &sluice_core::topology::ProjectionConfig,
    plan: &ReplayPlan,
) -> anyhow::Result<ExitCode> {
    let spans: Vec<Span> = plan
        .partitions
        .iter()
        .map(|p| Span { topic: p.topic.clone(), partition: p.partition, start: p.new, end: p.end })
        .collect();
    let sink =
        reproject::sink(ctx, name, projection, &Version::Live(format!("replay-{}:", uuid::Uuid::new_v4().simple())))
            .await?;
    let cfg = Bounded {
        projection: name.to_owned(),
        kafka: ctx.connections.kafka.clone(),
        group: None,
        dlq_topic: projection.dlq_topic.clone(),
        spans: spans.clone(),
        key: None,
        max_batch: sluice_consumers::sink::Batching::of(projection).max_records,
        #[cfg(debug_assertions)]
        crash_after_batches: None,
    };
    let token = CancellationToken::new();
    crate::work::cancel_on_signals(token.clone());
    let decoder = crate::work::decoder(ctx.topology()?, name, &ctx.connections.registry)?;
    let bars = Bars::new(&format!("replaying {name}"), &spans);
    let result = runner::run(&cfg, &sink, &decoder, &bars, &token).await;
    bars.finish();
    let summary = result?;
    if token.is_cancelled() {
        println!("stopped: {}", reproject::summary(&summary));
        anyhow::bail!("the replay was stopped before its end; run it again (re-projecting is idempotent)");
    }
    println!("replayed: {}", reproject::summary(&summary));
    Ok(ExitCode::SUCCESS)
}

/// The plan as a table: one row per partition, a total row, and a note on skipped events.
fn table(plan: &ReplayPlan) -> String {
    const HEADER: [&str; 5] = ["TOPIC", "PARTITION", "CURRENT", "NEW", "EVENTS"];
    let mut rows: Vec<[String; 5]> = plan
        .partitions
        .iter()
        .map(|p| {
            [
                p.topic.clone(),
                p.partition.to_string(),
                p.current.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                if p.unchanged() { format!("{} (unchanged)", p.new) } else { p.new.to_string() },
                p.events().to_string(),
            ]
        })
        .collect();
    rows.push(["(total)".to_owned(), String::new(), String::new(), String::new(), plan.events().to_string()]);
    let mut text = crate::table::render(&HEADER, &rows, 1);
    let changed = plan.changes().count();
    text.push_str(&format!(
        "{changed} of {} partition(s) change; {} event(s) to re-project\n",
        plan.partitions.len(),
        plan.events()
    ));
    if plan.skipped() > 0 {
        text.push_str(&format!("warning: {} event(s) not yet processed will be skipped\n", plan.skipped()));
    }
    text
}

#[cfg(test)]
mod tests {
    use sluice_core::replay::PartitionReplay;

    use super::*;

    #[test]
    fn renders_the_plan() {
        let row = |partition, current, new, high| PartitionReplay {
            topic: "users".into(),
            partition,
            low: 0,
            high,
            current,
            new,
            end: high,
        };
        let plan = ReplayPlan {
            projection: "user_state".into(),
            group: "sluice.user_state".into(),
            partitions: vec![row(0, Some(10), 6, 10), row(1, None, 0, 3), row(2, Some(4), 4, 4)],
        };
        let expected = "\
TOPIC    PARTITION  CURRENT            NEW  EVENTS
users            0       10              6       4
users            1        -              0       3
users            2        4  4 (unchanged)       0
(total)                                          7
2 of 3 partition(s) change; 7 event(s) to re-project
";
        assert_eq!(table(&plan), expected);
    }
}
