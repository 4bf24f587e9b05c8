//! Test-only failpoints: hooks the integration tests set through the environment to kill a
//! process at the worst moment, so at-least-once delivery is tested against a real crash.
//!
//! The whole module exists only in debug builds (`#[cfg(debug_assertions)]` on its `mod` line):
//! the integration tests run the debug binary, so they keep their hooks, while a release build
//! holds neither the code nor the variable names — nothing in production can trip them.

/// After this many batches were written, die before committing them (the crash between a sink
/// write and its commit that at-least-once delivery must survive). Read by `sluice work`,
/// `sluice rebuild`.
pub const CRASH_AFTER_BATCHES: &str = "SLUICE_FAILPOINT_CRASH_AFTER_BATCHES";

/// The batch count of [`CRASH_AFTER_BATCHES`], when it is set to a number.
pub fn crash_after_batches() -> Option<u64> {
    std::env::var(CRASH_AFTER_BATCHES).ok().and_then(|v| v.parse().ok())
}

/// Aborts the process when `batches` reached `after`: like SIGKILL, no drain and no commit, so
/// the written batches will be re-delivered.
pub fn crash_after(batches: u64, after: Option<u64>) {
    if after.is_some_and(|n| batches >= n) {
        tracing::error!(batches, "failpoint: crashing after the sink write, before the commit");
        std::process::abort();
    }
}
