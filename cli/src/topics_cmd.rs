//! `sluice topics …`: the topology's topics on the Kafka cluster.
//!
//! Reads the topology and the cluster through [`sluice_producers::admin::topics`], which decides
//! what to change; this module only prints the result as a table (stdout) and sets the exit code.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use sluice_core::Services;
use sluice_producers::admin::topics::{Change, TopicAdmin, TopicOutcome, TopicPlan};

use crate::{Context, GlobalArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum TopicsCommand {
    /// Create missing topics and fix what can be fixed on existing ones.
    ///
    /// Every topic of the topology, including the projections' dead-letter topics, is created
    /// with its partitions, replication factor, cleanup.policy, min.insync.replicas and
    /// retention.ms. On an existing topic, too few partitions are increased and a differing
    /// cleanup.policy, min.insync.replicas or retention.ms is altered (other topic-level settings
    /// are kept). Too many partitions (Kafka cannot remove
    /// any) or another replication factor are reported and left alone, and make the command
    /// exit non-zero. A second run reports every topic "up to date".
    Apply {
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The admin timeout of each Kafka request.
const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn run(args: &GlobalArgs, cmd: TopicsCommand) -> anyhow::Result<ExitCode> {
    let TopicsCommand::Apply { dry_run } = cmd;
    let ctx = Context::load_for(args, Services::KAFKA).await?;
    let topology = ctx.topology()?;
    let admin = TopicAdmin::new(&ctx.connections.kafka, TIMEOUT)?;
    let plans = admin.plan(topology).await?;
    let outcomes = if dry_run {
        plans.into_iter().map(|plan| TopicOutcome { plan, failures: Vec::new() }).collect()
    } else {
        admin.apply(plans).await?
    };

    let mut rows = Vec::new();
    let (mut changed, mut drifted, mut failed) = (0, 0, 0);
    for outcome in &outcomes {
        let p = &outcome.plan;
        let status = status(p, outcome, dry_run);
        changed += usize::from(!p.changes.is_empty());
        drifted += usize::from(!p.drift.is_empty());
        failed += usize::from(!outcome.failures.is_empty());
        rows.push(vec![
            p.topic.clone(),
            p.config.partitions.to_string(),
            p.config.replication_factor.to_string(),
            p.config.min_insync_replicas.to_string(),
            p.config.cleanup_policy.to_string(),
            p.config.retention.map_or_else(|| "broker default".to_owned(), |r| r.to_string()),
            status,
        ]);
    }
    crate::table::print_table(
        &["TOPIC", "PARTITIONS", "REPLICATION", "MIN INSYNC", "CLEANUP", "RETENTION", "STATUS"],
        &rows,
    );
    println!();
    let verb = if dry_run { "would change" } else { "changed" };
    println!(
        "{} topics: {changed} {verb}, {} up to date, {drifted} with drift apply cannot fix, {failed} failed",
        outcomes.len(),
        outcomes.iter().filter(|o| o.plan.is_up_to_date()).count()
    );
    Ok(if drifted + failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The status cell: what was (or would be) done, the failures and the drift, `; `-separated.
fn status(plan: &TopicPlan, outcome: &TopicOutcome, dry_run: bool) -> String {
    if plan.is_up_to_date() {
        return "up to date".to_owned();
    }
    let mut parts = Vec::new();
    for change in &plan.changes {
        let failure = outcome.failures.iter().find(|(c, _)| c == change).map(|(_, reason)| reason);
        parts.push(match (failure, dry_run, change) {
            (Some(reason), _, _) => format!("FAILED {change}: {reason}"),
            (None, true, Change::Create) => "would create".to_owned(),
            (None, true, _) => format!("would change {change}"),
            (None, false, Change::Create) => "created".to_owned(),
            (None, false, _) => format!("{change}"),
        });
    }
    parts.extend(plan.drift.iter().map(|d| format!("DRIFT: {d}")));
    parts.join("; ")
}
