//! `sluice lag`: how far behind each projection is, per partition, with its backpressure state.
//!
//! The numbers come from the lag monitor (`sluice_consumers::lag`): once, or refreshed with
//! `--watch` until Ctrl-C. Output is a table for people or, with `--json`, the snapshot as one
//! JSON document (one per line with `--watch`) for scripts.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sluice_consumers::lag::LagMonitor;
use sluice_core::lag::{LagSnapshot, fmt_ms};
use tokio_util::sync::CancellationToken;

use crate::Context;

/// Options of `sluice lag`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Lag is the high watermark minus the group's committed offset (everything retained \
                        before a first commit); its age is how long ago the oldest unprocessed record was \
                        written. STATE is the projection's backpressure state against the thresholds of \
                        [projections.<name>.backpressure]; with --watch it has hysteresis, like the \
                        gateway's. Exits non-zero when a projection's lag cannot be read.")]
pub(crate) struct LagArgs {
    /// Only this projection (a `[projections.<name>]` of the topology).
    #[arg(long, short)]
    projection: Option<String>,

    /// Refresh until Ctrl-C.
    #[arg(long, short)]
    watch: bool,

    /// The snapshot as JSON: one document, or one per line with --watch.
    #[arg(long)]
    json: bool,

    /// Refresh interval of --watch, e.g. `1s`, `500ms`.
    #[arg(long, default_value = "1s", value_parser = duration)]
    interval: Duration,
}

fn duration(s: &str) -> Result<Duration, String> {
    s.parse::<sluice_core::topology::HumanDuration>().map(Into::into).map_err(|e| e.to_string())
}

pub(crate) async fn run(ctx: &Context, args: LagArgs) -> anyhow::Result<ExitCode> {
    let topology = ctx.topology()?;
    if let Some(name) = &args.projection
        && topology.projection(name).is_none()
    {
        let known: Vec<&str> = topology.projections().map(|(n, _)| n).collect();
        anyhow::bail!("no projection {name:?} in the topology (known: {})", known.join(", "));
    }
    let brokers = &ctx.connections.kafka_brokers;
    if !args.watch {
        let snapshot = LagMonitor::snapshot_once(topology, brokers).await.context("reading the lag")?;
        let snapshot = only(snapshot, args.projection.as_deref());
        print(&snapshot, args.json, false)?;
        return Ok(if has_errors(&snapshot) { ExitCode::FAILURE } else { ExitCode::SUCCESS });
    }

    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    let mut rx = LagMonitor::spawn(Arc::new(topology.clone()), brokers, args.interval, shutdown.clone())
        .context("starting the lag monitor")?;
    let redraw = !args.json && std::io::stdout().is_terminal();
    let mut first = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = rx.changed() => if changed.is_err() { break },
        }
        let snapshot = only(rx.borrow_and_update().clone(), args.projection.as_deref());
        if !args.json && !redraw && !first {
            // Not a terminal: successive tables, one blank line apart.
            println!();
        }
        first = false;
        print(&snapshot, args.json, redraw)?;
        if redraw {
            println!("\nevery {}; Ctrl-C to stop", fmt_ms(args.interval.as_millis() as u64));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The snapshot restricted to `projection`, when given.
fn only(mut snapshot: LagSnapshot, projection: Option<&str>) -> LagSnapshot {
    if let Some(name) = projection {
        snapshot.projections.retain(|n, _| n == name);
    }
    snapshot
}

fn has_errors(snapshot: &LagSnapshot) -> bool {
    snapshot.projections.values().any(|p| p.error.is_some())
}

fn print(snapshot: &LagSnapshot, json: bool, redraw: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, snapshot)?;
        writeln!(out)?;
    } else {
        if redraw {
            // Home and clear: the table is redrawn in place.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        write!(out, "{}", table(snapshot))?;
    }
    out.flush()?;
    Ok(())
}

/// The table: one row per projection and partition, then a total row per projection; the reasons
/// and errors below it.
fn table(snapshot: &LagSnapshot) -> String {
    const HEADER: [&str; 8] = ["PROJECTION", "STATE", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "AGE"];
    let age = |a: Option<Duration>| a.map_or_else(|| "?".to_owned(), |a| fmt_ms(a.as_millis() as u64));
    let mut rows: Vec<[String; 8]> = Vec::new();
    let mut notes = Vec::new();
    for (name, p) in &snapshot.projections {
        for part in &p.partitions {
            rows.push([
                name.clone(),
                p.state.to_string(),
                part.topic.clone(),
                part.partition.to_string(),
                part.committed.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                part.high_watermark.to_string(),
                part.lag_messages.to_string(),
                age(part.age),
            ]);
        }
        rows.push([
            name.clone(),
            p.state.to_string(),
            "(total)".to_owned(),
            String::new(),
            String::new(),
            String::new(),
            p.lag_messages.to_string(),
            age(p.age),
        ]);
        if let Some(t) = &p.trigger {
            notes.push(format!("{name}: {} — {t}", p.state));
        }
        if let Some(e) = &p.error {
            notes.push(format!("{name}: cannot read the lag: {e}"));
        }
    }
    // Names left-aligned, numbers right-aligned.
    let mut text = crate::table::render(&HEADER, &rows, 3);
    if snapshot.projections.is_empty() {
        text.push_str("(no projections)\n");
    }
    if !notes.is_empty() {
        text.push('\n');
        for n in notes {
            text.push_str(&n);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use sluice_core::lag::{BackpressureState, PartitionLag, ProjectionLag, Threshold, Trigger};

    use super::*;

    #[test]
    fn renders_a_table_with_totals_and_reasons() {
        let part = |partition, committed, high, lag, age| PartitionLag {
            topic: "users".into(),
            partition,
            low_watermark: 0,
            high_watermark: high,
            committed,
            lag_messages: lag,
            age,
        };
        let mut snapshot = LagSnapshot::empty();
        snapshot.projections.insert(
            "user_state".into(),
            ProjectionLag {
                group: "sluice.user_state".into(),
                state: BackpressureState::Soft,
                trigger: Some(Trigger { threshold: Threshold::SoftLag, value: 12, limit: 10, holding: false }),
                lag_messages: 12,
                age: Some(Duration::from_millis(35_200)),
                partitions: vec![
                    part(0, None, 10, 10, Some(Duration::from_millis(35_200))),
                    part(1, Some(5), 7, 2, None),
                ],
                error: None,
            },
        );
        let expected = "\
PROJECTION  STATE  TOPIC    PARTITION  COMMITTED  END  LAG    AGE
user_state  soft   users            0          -   10   10  35.2s
user_state  soft   users            1          5    7    2      ?
user_state  soft   (total)                              12  35.2s

user_state: soft — lag 12 messages ≥ soft_lag 10
";
        assert_eq!(table(&snapshot), expected);
        assert_eq!(
            table(&LagSnapshot::empty()),
            "PROJECTION  STATE  TOPIC  PARTITION  COMMITTED  END  LAG  AGE\n(no projections)\n"
        );
    }
}
