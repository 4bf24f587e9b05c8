//! Readiness: whether a worker is projecting, and waiting for a sink that does not answer yet.
//!
//! A worker started while its sink is down (a rolling deploy, a node restart, everything starting
//! at once) waits for it instead of exiting: under a supervisor an exit is a crash loop, which
//! only adds restarts to the outage. [`wait_for_sink`] retries the sink's connection with
//! backoff, saying at WARN why and when the next attempt is, until it answers; only a
//! configuration error (bad credentials, a topology the sink refuses) stops it, because waiting
//! cannot fix those. The worker joins its consumer group only once the sink answered, so a worker
//! that waits holds no partitions that others could project.
//!
//! `sluice_worker_ready{projection}` is 1 while the worker projects, 0 while it waits for its
//! sink at start-up or while writes to the sink fail (its partitions are then paused).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use metrics::{describe_gauge, gauge};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::metrics::names;
use crate::retry::{backoff, sleep_or_cancel};
use crate::sink::SinkError;

/// Sets `sluice_worker_ready{projection}`: 1 ready, 0 not.
pub fn set_ready(projection: &str, ready: bool) {
    describe_gauge!(names::READY, "1 while the worker projects; 0 while it waits for its sink or its writes fail.");
    let gauge = gauge!(names::READY, "projection" => projection.to_owned());
    super::health::ReadyGauge::new(gauge, projection).set(if ready { 1.0 } else { 0.0 });
}

/// How a failed connection attempt ends the wait, and the message for the log.
pub trait StartupError: Display {
    /// [`SinkError::Config`] stops the worker; [`SinkError::Transient`] waits and tries again.
    fn at_startup(&self) -> SinkError;
}

/// Why a worker stopped before its sink answered.
#[derive(Debug, thiserror::Error)]
#[error("{sink} refuses the worker's configuration (waiting cannot fix this): {message}")]
pub struct SinkRefused {
    /// Sink kind.
    pub sink: &'static str,
    /// What it said.
    pub message: String,
}

/// Calls `connect` until it succeeds, waiting with backoff (100 ms doubling up to 30 s, jittered)
/// while it fails transiently and logging each failure at WARN with its reason and the next
/// delay; `Ok(None)` when `shutdown` is cancelled first. A configuration error ends the wait
/// with [`SinkRefused`].
pub async fn wait_for_sink<T, E, F, Fut>(
    projection: &str,
    sink: &'static str,
    shutdown: &CancellationToken,
    mut connect: F,
) -> Result<Option<T>, SinkRefused>
where
    E: StartupError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    set_ready(projection, false);
    let mut attempt = 0u32;
    loop {
        let outcome = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(None),
            outcome = connect() => outcome,
        };
        match outcome {
            Ok(connected) => {
                if attempt > 0 {
                    info!(projection, sink, attempts = attempt + 1, "the sink answers: the worker starts");
                }
                return Ok(Some(connected));
            }
            Err(e) => match e.at_startup() {
                SinkError::Config(message) => return Err(SinkRefused { sink, message }),
                SinkError::Transient(_) => {
                    let delay = backoff(attempt);
                    attempt += 1;
                    warn!(projection, sink, attempt, reason = %e, retry_in = ?Rounded(delay),
                          "not ready: the sink does not answer; waiting for it");
                    if !sleep_or_cancel(delay, shutdown).await {
                        return Ok(None);
                    }
                }
            },
        }
    }
}

/// A delay shown to the millisecond.
struct Rounded(Duration);

impl std::fmt::Debug for Rounded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", Duration::from_millis(self.0.as_millis() as u64))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Failure(bool);

    impl Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(if self.0 { "bad password" } else { "connection refused" })
        }
    }

    impl StartupError for Failure {
        fn at_startup(&self) -> SinkError {
            if self.0 { SinkError::Config(self.to_string()) } else { SinkError::Transient(self.to_string()) }
        }
    }

    #[tokio::test]
    async fn waits_through_transient_failures_and_stops_at_a_config_error() {
        let calls = AtomicU32::new(0);
        let token = CancellationToken::new();
        let got = wait_for_sink("p", "test", &token, || async {
            if calls.fetch_add(1, Ordering::Relaxed) < 3 { Err(Failure(false)) } else { Ok(7) }
        })
        .await;
        assert_eq!(got.ok().flatten(), Some(7));
        assert_eq!(calls.load(Ordering::Relaxed), 4);

        let refused = wait_for_sink("p", "test", &token, || async { Err::<(), _>(Failure(true)) }).await;
        assert_eq!(refused.err().map(|e| e.message), Some("bad password".to_owned()));
    }

    #[tokio::test]
    async fn a_cancelled_wait_ends_without_a_connection() {
        let token = CancellationToken::new();
        let stop = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.cancel();
        });
        let got = wait_for_sink("p", "test", &token, || async { Err::<(), _>(Failure(false)) }).await;
        assert!(matches!(got, Ok(None)));
    }
}
