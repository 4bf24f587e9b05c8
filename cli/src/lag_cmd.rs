//! `sluice lag`: how far behind each projection is, per partition, with its backpressure state.
//!
//! The numbers come from the lag monitor (`sluice_consumers::lag`): once, or refreshed with
//! `--watch` until Ctrl-C. Output is a table for people or, with `--json`, the snapshot as one
//! JSON document (one per line with `--watch`) for scripts. Each projection's consumer group is
//! described too (`sluice_consumers::group`): the OWNER column names the member that owns each
//! partition — its instance id, else the start of its member id — and a members table lists them.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sluice_consumers::group::{GroupView, describe};
use sluice_consumers::lag::LagMonitor;
use sluice_core::connections::KafkaConnection;
use sluice_core::consistency::ConsistencyToken;
use sluice_core::lag::{LagSnapshot, fmt_ms};
use tokio_util::sync::CancellationToken;

use crate::Context;

/// Options of `sluice lag`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Lag is the high watermark minus the group's committed offset (everything retained \
                        before a first commit); its age is how long ago the oldest unprocessed record was \
                        written. STATE is the projection's backpressure state against the thresholds of \
                        [projections.<name>.backpressure]; with --watch it has hysteresis, like the \
                        gateway's. OWNER is the group member that owns the partition: its --instance-id, \
                        else the start of its member id (the members table below names them all). \
                        Exits non-zero when a projection's lag cannot be read.")]
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

    /// Instead of the lag: whether each projection reading the token's topics (or --projection)
    /// includes the write of this consistency token (the `consistency_token` the gateway and
    /// `sluice publish` return). Exit 0 when all do, 2 when one does not yet, 1 on an error (a
    /// malformed token, or one about topics or offsets these projections cannot have).
    #[arg(long, value_name = "TOKEN", conflicts_with = "watch")]
    after: Option<String>,

    /// With --after: wait up to this long for the projections to include the write, e.g. `10s`.
    #[arg(long, default_value = "0s", value_parser = duration, requires = "after")]
    wait: Duration,
}

pub(crate) fn duration(s: &str) -> Result<Duration, String> {
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
    let kafka = &ctx.connections.kafka;
    if let Some(token) = &args.after {
        // Parsed here rather than by clap: clap's usage errors exit 2, which is "not yet".
        let token: ConsistencyToken = token.parse().with_context(|| format!("--after {token:?}"))?;
        return crate::lag_after::run(topology, kafka, &token, args.projection.as_deref(), args.wait, args.json).await;
    }
    if !args.watch {
        let snapshot = LagMonitor::snapshot_once(topology, kafka).await.context("reading the lag")?;
        let snapshot = only(snapshot, args.projection.as_deref());
        let groups = groups(&snapshot, kafka).await;
        print(&snapshot, &groups, args.json, false)?;
        return Ok(if has_errors(&snapshot) { ExitCode::FAILURE } else { ExitCode::SUCCESS });
    }

    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    let mut rx = LagMonitor::spawn(Arc::new(topology.clone()), kafka, args.interval, shutdown.clone())
        .context("starting the lag monitor")?;
    let redraw = !args.json && std::io::stdout().is_terminal();
    let mut first = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = rx.changed() => if changed.is_err() { break },
        }
        let snapshot = only(rx.borrow_and_update().clone(), args.projection.as_deref());
        let groups = groups(&snapshot, kafka).await;
        if !args.json && !redraw && !first {
            // Not a terminal: successive tables, one blank line apart.
            println!();
        }
        first = false;
        print(&snapshot, &groups, args.json, redraw)?;
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

/// Each projection's consumer group, or why it could not be described.
type Groups = BTreeMap<String, Result<GroupView, String>>;

/// Describes the consumer group of every projection in `snapshot` (on the blocking pool).
async fn groups(snapshot: &LagSnapshot, kafka: &KafkaConnection) -> Groups {
    let wanted: Vec<(String, String)> =
        snapshot.projections.iter().map(|(n, p)| (n.clone(), p.group.clone())).collect();
    let kafka = kafka.clone();
    let described = tokio::task::spawn_blocking(move || {
        wanted.into_iter().map(|(name, group)| (name, describe(&kafka, &group).map_err(|e| e.to_string()))).collect()
    });
    described.await.unwrap_or_else(|e| {
        let why = format!("describing the consumer groups failed: {e}");
        snapshot.projections.keys().map(|n| (n.clone(), Err(why.clone()))).collect()
    })
}

fn has_errors(snapshot: &LagSnapshot) -> bool {
    snapshot.projections.values().any(|p| p.error.is_some())
}

fn print(snapshot: &LagSnapshot, groups: &Groups, json: bool, redraw: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &with_groups(snapshot, groups)?)?;
        writeln!(out)?;
    } else {
        if redraw {
            // Home and clear: the table is redrawn in place.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        write!(out, "{}", table(snapshot, groups))?;
    }
    out.flush()?;
    Ok(())
}

/// The snapshot as JSON, each projection with its consumer group (`group_members`: state and
/// members) or why it could not be described (`group_error`).
fn with_groups(snapshot: &LagSnapshot, groups: &Groups) -> anyhow::Result<serde_json::Value> {
    let mut doc = serde_json::to_value(snapshot)?;
    for (name, group) in groups {
        if let Some(p) = doc.pointer_mut(&format!("/projections/{}", name.replace('~', "~0").replace('/', "~1")))
            && let Some(p) = p.as_object_mut()
        {
            match group {
                Ok(view) => p.insert("group_members".to_owned(), serde_json::to_value(view)?),
                Err(e) => p.insert("group_error".to_owned(), e.clone().into()),
            };
        }
    }
    Ok(doc)
}

/// The table: one row per projection and partition with its owner, then a total row per
/// projection; the group members, the reasons and errors below it.
fn table(snapshot: &LagSnapshot, groups: &Groups) -> String {
    const HEADER: [&str; 9] = ["PROJECTION", "STATE", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "AGE", "OWNER"];
    const MEMBERS: [&str; 6] = ["PROJECTION", "OWNER", "HOST", "PARTITIONS", "CLIENT", "MEMBER"];
    let age = |a: Option<Duration>| a.map_or_else(|| "?".to_owned(), |a| fmt_ms(a.as_millis() as u64));
    let mut rows: Vec<[String; 9]> = Vec::new();
    let mut members: Vec<[String; 6]> = Vec::new();
    let mut notes = Vec::new();
    for (name, p) in &snapshot.projections {
        let group = groups.get(name);
        let owners = match group {
            Some(Ok(view)) => sluice_core::group::owners(&view.members),
            _ => BTreeMap::new(),
        };
        match group {
            Some(Ok(view)) => {
                for m in &view.members {
                    members.push([
                        name.clone(),
                        m.owner(),
                        m.host.clone(),
                        m.partitions.len().to_string(),
                        m.client_id.clone(),
                        m.member_id.clone(),
                    ]);
                }
                // Stable, Empty (no member) and Dead (never joined) need no word; a rebalance
                // explains owners that are about to change.
                if view.state.contains("Rebalance") {
                    notes.push(format!("{name}: consumer group {} is {}", p.group, view.state));
                }
            }
            Some(Err(e)) => notes.push(format!("{name}: cannot describe the consumer group: {e}")),
            None => {}
        }
        for part in &p.partitions {
            let owner = match group {
                Some(Ok(_)) => {
                    owners.get(&(part.topic.clone(), part.partition)).cloned().unwrap_or_else(|| "-".to_owned())
                }
                _ => "?".to_owned(),
            };
            rows.push([
                name.clone(),
                p.state.to_string(),
                part.topic.clone(),
                part.partition.to_string(),
                part.committed.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                part.high_watermark.to_string(),
                part.lag_messages.to_string(),
                age(part.age),
                owner,
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
            String::new(),
        ]);
        if let Some(t) = &p.trigger {
            notes.push(format!("{name}: {} — {t}", p.state));
        }
        if let Some(e) = &p.error {
            notes.push(format!("{name}: cannot read the lag: {e}"));
        }
    }
    // Names left-aligned, numbers right-aligned.
    let mut text = crate::table::render_with(&HEADER, &rows, |i| i < 3 || i == 8);
    if snapshot.projections.is_empty() {
        text.push_str("(no projections)\n");
    }
    if !members.is_empty() {
        text.push('\n');
        text.push_str(&crate::table::render_with(&MEMBERS, &members, |i| i != 3));
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
        let members = vec![
            sluice_core::group::Member::new(
                "w-0-4e1f",
                "sluice-user_state/w-0",
                "/10.0.0.7",
                vec![("users".into(), 0)],
            ),
            sluice_core::group::Member::new("sluice-user_state-9f8e7d6c-5b", "sluice-user_state", "/10.0.0.8", vec![]),
        ];
        let groups =
            Groups::from([("user_state".to_owned(), Ok(GroupView { state: "PreparingRebalance".into(), members }))]);
        let expected = "\
PROJECTION  STATE  TOPIC    PARTITION  COMMITTED  END  LAG    AGE  OWNER
user_state  soft   users            0          -   10   10  35.2s  w-0
user_state  soft   users            1          5    7    2      ?  -
user_state  soft   (total)                              12  35.2s

PROJECTION  OWNER     HOST      PARTITIONS  CLIENT                 MEMBER
user_state  w-0       10.0.0.7           1  sluice-user_state/w-0  w-0-4e1f
user_state  9f8e7d6c  10.0.0.8           0  sluice-user_state      sluice-user_state-9f8e7d6c-5b

user_state: consumer group sluice.user_state is PreparingRebalance
user_state: soft — lag 12 messages ≥ soft_lag 10
";
        assert_eq!(table(&snapshot, &groups), expected);
        assert_eq!(
            table(&LagSnapshot::empty(), &Groups::new()),
            "PROJECTION  STATE  TOPIC  PARTITION  COMMITTED  END  LAG  AGE  OWNER\n(no projections)\n"
        );
        let unknown = Groups::from([("user_state".to_owned(), Err("broker away".to_owned()))]);
        let text = table(&snapshot, &unknown);
        assert!(
            text.contains("35.2s  ?\n") && text.contains("cannot describe the consumer group: broker away"),
            "{text}"
        );
        let json = with_groups(&snapshot, &unknown).expect("json");
        assert_eq!(json["projections"]["user_state"]["group_error"], "broker away");
    }
}
