//! Noticing a changed topology while a worker runs, so a new schema version (an added optional
//! field), a new declared column or a new event type reaches the worker without a restart.
//!
//! The worker's reader schemas, admission rules and table plans all come from the topology file
//! and the schema files it names. [`changed`] reads them again every `poll` and hands back the new
//! topology once it differs from the running one and is valid for the running projection; an
//! invalid one is reported (once per distinct problem) and the running one is kept. The caller
//! (`sluice work`) then drains its worker — committed offsets are exactly what the sink
//! acknowledged — and starts a new one on the new topology, which resumes from those offsets:
//! nothing is lost or doubled, and the pause is a consumer group rejoin.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use sluice_core::topology::Topology;
use tracing::warn;

/// What a worker depends on in a topology: the file's text and every schema's text.
pub(crate) fn fingerprint(topology: &Topology) -> u64 {
    let mut h = DefaultHasher::new();
    std::fs::read(topology.path()).unwrap_or_default().hash(&mut h);
    for event in topology.events() {
        event.event_type.hash(&mut h);
        event.schema_text.hash(&mut h);
    }
    h.finish()
}

/// Waits until the topology at `current`'s path changes into one that is valid and still has
/// `projection`, and returns it. Never returns while nothing changes.
pub(crate) async fn changed(current: &Topology, projection: &str, poll: Duration) -> Topology {
    let path = current.path().to_owned();
    let running = fingerprint(current);
    let mut reported: Option<String> = None;
    loop {
        tokio::time::sleep(poll).await;
        match load(&path, projection) {
            Ok(next) if fingerprint(&next) != running => return next,
            Ok(_) => reported = None,
            Err(problem) => {
                if reported.as_deref() != Some(problem.as_str()) {
                    warn!(path = %path.display(), %problem, "the topology changed but cannot be used; the worker keeps the running one");
                    reported = Some(problem);
                }
            }
        }
    }
}

fn load(path: &Path, projection: &str) -> Result<Topology, String> {
    let topology = Topology::load(path).map_err(|e| e.to_string())?;
    if topology.projection(projection).is_none() {
        return Err(format!("it no longer declares projection {projection:?}"));
    }
    Ok(topology)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, topology: &str, schema: &str) {
        std::fs::write(dir.join("topology.toml"), topology).expect("topology");
        std::fs::write(dir.join("e.avsc"), schema).expect("schema");
    }

    const TOPOLOGY: &str = "[topics.t]\npartitions = 1\nreplication_factor = 1\n\n[events.\"a.b\"]\ntopic = \"t\"\n\
                            schema = \"e.avsc\"\n\n[projections.p]\nsources = [\"t\"]\nsink = \"clickhouse\"\n\n\
                            [projections.p.clickhouse]\ntable = \"events\"\n";

    fn schema(extra: &str) -> String {
        let envelope =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/users/deleted.avsc"))
                .expect("a repository schema");
        let mut value: serde_json::Value = serde_json::from_str(&envelope).expect("json");
        let fields = value["fields"].as_array_mut().expect("fields");
        fields.truncate(10);
        if !extra.is_empty() {
            fields.push(serde_json::json!({"name": extra, "type": ["null", "string"], "default": null}));
        }
        value.to_string()
    }

    #[tokio::test]
    async fn a_new_schema_version_is_picked_up_and_a_broken_file_is_not() {
        let dir = std::env::temp_dir().join(format!("sluice-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        write(&dir, TOPOLOGY, &schema(""));
        let current = Topology::load(&dir.join("topology.toml")).unwrap_or_else(|e| panic!("{e}"));
        let poll = Duration::from_millis(20);

        // Unchanged, or changed into something invalid: keeps waiting.
        let waited = tokio::time::timeout(Duration::from_millis(200), changed(&current, "p", poll)).await;
        assert!(waited.is_err(), "nothing changed");
        std::fs::write(dir.join("topology.toml"), format!("{TOPOLOGY}\n[oops")).expect("broken");
        let waited = tokio::time::timeout(Duration::from_millis(200), changed(&current, "p", poll)).await;
        assert!(waited.is_err(), "a broken topology is not taken");
        std::fs::write(dir.join("topology.toml"), TOPOLOGY.replace("projections.p", "projections.q")).expect("other");
        let waited = tokio::time::timeout(Duration::from_millis(200), changed(&current, "p", poll)).await;
        assert!(waited.is_err(), "one without the projection is not taken");

        // A schema file changed (a field added): the new topology comes back with it.
        write(&dir, TOPOLOGY, &schema("signed_by"));
        let next = tokio::time::timeout(Duration::from_secs(5), changed(&current, "p", poll)).await.expect("noticed");
        assert!(next.events().any(|e| e.schema_text.contains("signed_by")));
        assert_ne!(fingerprint(&next), fingerprint(&current));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
