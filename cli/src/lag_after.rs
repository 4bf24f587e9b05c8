//! `sluice lag --after TOKEN`: does each projection that reads the token's topics include the
//! write yet? Optionally waits (`--wait`) until they all do. Exit 0: included; 2: not yet (the
//! table says where each one stands); 1: an error — a token that cannot be about these
//! projections is one at once, never a wait.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use sluice_consumers::consistency::Progress;
use sluice_core::connections::KafkaConnection;
use sluice_core::consistency::ConsistencyToken;
use sluice_core::inclusion::Inclusion;
use sluice_core::topology::{ProjectionConfig, Topology};

/// The exit status of "not yet" (1 is an error), here and in `sluice couchbase get --after`.
pub(crate) const NOT_YET: u8 = 2;

/// The projections to check: `only`, or every one reading a topic of the token.
fn projections<'t>(
    topology: &'t Topology,
    token: &ConsistencyToken,
    only: Option<&str>,
) -> anyhow::Result<Vec<(&'t str, &'t ProjectionConfig)>> {
    let chosen: Vec<(&str, &ProjectionConfig)> = topology
        .projections()
        .filter(|(name, p)| match only {
            Some(o) => *name == o,
            None => token.topics().any(|t| p.sources.iter().any(|s| s == t)),
        })
        .collect();
    if chosen.is_empty() {
        let topics: Vec<&str> = token.topics().collect();
        anyhow::bail!("no projection of the topology reads {} (the token's topics)", topics.join(", "));
    }
    Ok(chosen)
}

/// Checks (and waits up to `within`) each projection; prints a table; the exit code says whether
/// all include the token.
pub(crate) async fn run(
    topology: &Topology,
    kafka: &KafkaConnection,
    token: &ConsistencyToken,
    only: Option<&str>,
    within: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let progress = Progress::new(kafka.clone());
    let chosen = projections(topology, token, only)?;
    // Every projection waits at once, so --wait bounds the whole command, not each projection.
    let waits = chosen.iter().map(|(name, projection)| progress.wait(name, projection, token, within));
    let mut rows = Vec::new();
    for ((name, _), inclusion) in chosen.iter().zip(futures::future::join_all(waits).await) {
        rows.push((*name, inclusion.with_context(|| format!("projection {name}"))?));
    }
    print(&rows, json);
    Ok(if rows.iter().all(|(_, i)| i.included()) { ExitCode::SUCCESS } else { ExitCode::from(NOT_YET) })
}

fn print(rows: &[(&str, Inclusion)], json: bool) {
    if json {
        let doc: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, i)| {
                let behind: Vec<serde_json::Value> = i
                    .behind
                    .iter()
                    .map(|b| serde_json::json!({"topic": b.topic, "partition": b.partition, "offset": b.offset, "committed": b.committed}))
                    .collect();
                serde_json::json!({"projection": name, "included": i.included(), "behind": behind})
            })
            .collect();
        println!("{}", serde_json::Value::Array(doc));
        return;
    }
    println!("{:<32} {:<9} BEHIND", "PROJECTION", "INCLUDED");
    for (name, i) in rows {
        let behind = if i.included() { "-".to_owned() } else { i.describe_behind() };
        println!("{:<32} {:<9} {behind}", name, if i.included() { "yes" } else { "not yet" });
    }
}
