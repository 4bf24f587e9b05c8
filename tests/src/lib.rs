//! Support for the integration tests in `tests/tests/`: they run against the real services that
//! `dev/up` starts, found through `.dev/env` (or `SLUICE_*` variables pointing elsewhere).
//!
//! A missing service is a failure with a message saying how to start it, never a skip.

use std::future::Future;
use std::time::Duration;

use sluice_core::{Connections, Env};

/// The endpoints of the rig; panics (failing the test) with instructions when they are unknown.
pub fn connections() -> Connections {
    let env = Env::discover().unwrap_or_else(|e| panic!("{e}"));
    Connections::from_env(&env).unwrap_or_else(|e| panic!("{e}"))
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
