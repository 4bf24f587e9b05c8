//! Support for the integration tests in `tests/tests/`: they run against the real services that
//! `dev/up` starts, found through `.dev/env` (or `SLUICE_*` variables pointing elsewhere).
//!
//! A missing service is a failure with a message saying how to start it, never a skip.

pub use sluice_sample as domain;

pub mod cdc;

use std::future::Future;
use std::time::Duration;

use sluice_core::{Connections, Env};

/// The endpoints of the rig; panics (failing the test) with instructions when they are unknown.
pub fn connections() -> Connections {
    let env = Env::discover().unwrap_or_else(|e| panic!("{e}"));
    Connections::from_env(&env).unwrap_or_else(|e| panic!("{e}"))
}

/// The sum of the high watermarks of every partition of `topic`: how many records it ever held.
pub fn high_watermarks(topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", connections().kafka.brokers).create().expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).expect("watermarks").1)
        .sum()
}

/// A fresh name for a topic, table, subject or document, so test runs never collide.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// Runs `fut` with a deadline; on expiry the test fails naming what hung. Client libraries retry
/// forever against a missing server (Couchbase's connect does), so every network step gets one.
pub async fn within<T>(what: &str, secs: u64, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {secs}s: is the service up? (dev/status)"),
    }
}

/// A copy of the repository's `topology.toml` whose topics, projections (so consumer groups and
/// DLQ topics) and ClickHouse tables carry `suffix`, so a test's pipeline shares nothing with
/// another run. Schemas stay the repository's. Returns the path of the written file.
pub fn fresh_topology(suffix: &str) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("topology.toml")).expect("read topology.toml");
    let schemas = root.join("schemas").canonicalize().expect("schemas dir");
    let text = sluice_sample::isolated_topology(&text, &schemas, suffix);
    let dir = std::env::temp_dir().join(format!("sluice-test-{suffix}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("topology.toml");
    std::fs::write(&path, text).expect("write topology");
    path
}
