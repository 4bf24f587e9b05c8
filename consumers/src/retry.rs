//! Waiting between attempts, shared by the worker and the re-projection runner: exponential
//! backoff with jitter, and a sleep that a cancellation token cuts short.

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

/// Exponential backoff with "equal jitter", capped at 30 s: a random wait between half the
/// exponential step and the whole of it (100 ms, 200 ms, … 30 s). Half of the step is kept so a
/// retry never comes right back (full jitter may wait ~0), the other half spreads the workers
/// that failed together.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let cap = Duration::from_millis(100).saturating_mul(1 << attempt.min(9)).min(Duration::from_secs(30));
    Duration::from_millis(rand::rng().random_range(cap.as_millis() as u64 / 2..=cap.as_millis() as u64))
}

/// Sleeps unless cancelled first; false when cancelled.
pub(crate) async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}
