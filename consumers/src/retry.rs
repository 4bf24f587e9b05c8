//! Waiting between attempts, shared by the worker and the re-projection runner: exponential
//! backoff with jitter, a sleep that a cancellation token cuts short, and the retry of a blocking
//! Kafka request through a moment of trouble (a leader moving after a broker restart).

use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
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

/// How long a blocking Kafka request is retried through transient errors: a partition's
/// leadership moves within the brokers' session timeout (9 s by default) after a broker dies.
pub(crate) const TRANSIENT_DEADLINE: Duration = Duration::from_secs(30);

/// Whether a Kafka error is one that a moment fixes: a partition's leader moving or not elected
/// yet (a broker restarted), a coordinator loading, a broker unreachable or a request timing out.
pub(crate) fn is_transient_kafka(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::ReplicaNotAvailable
                | C::FencedLeaderEpoch
                | C::UnknownLeaderEpoch
                | C::NotCoordinator
                | C::CoordinatorNotAvailable
                | C::CoordinatorLoadInProgress
                | C::BrokerNotAvailable
                | C::NetworkException
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::BrokerTransportFailure
                | C::AllBrokersDown
        )
    )
}

/// Runs the blocking `attempt` until it succeeds, fails with an error `transient` refuses, or
/// has failed for `deadline` ([`TRANSIENT_DEADLINE`] for a request that must go through); waits
/// [`backoff`] between attempts. Returns the last result.
pub(crate) fn retry_blocking<T, E>(
    deadline: Duration,
    transient: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let start = Instant::now();
    let mut n = 0;
    loop {
        match attempt() {
            Err(e) if transient(&e) && start.elapsed() < deadline => {
                std::thread::sleep(backoff(n));
                n += 1;
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moving_leader_is_waited_out_and_a_missing_topic_is_not() {
        let e = |code| KafkaError::MetadataFetch(code);
        assert!(is_transient_kafka(&e(RDKafkaErrorCode::NotLeaderForPartition)));
        assert!(is_transient_kafka(&e(RDKafkaErrorCode::LeaderNotAvailable)));
        assert!(!is_transient_kafka(&e(RDKafkaErrorCode::UnknownTopicOrPartition)));
        assert!(!is_transient_kafka(&e(RDKafkaErrorCode::TopicAuthorizationFailed)));

        let mut failures = 2;
        let result = retry_blocking(TRANSIENT_DEADLINE, is_transient_kafka, || {
            if failures == 0 {
                return Ok(7);
            }
            failures -= 1;
            Err(e(RDKafkaErrorCode::NotLeaderForPartition))
        });
        assert_eq!((result.ok(), failures), (Some(7), 0), "retried until it succeeded");

        let mut attempts = 0;
        let result: Result<(), _> = retry_blocking(TRANSIENT_DEADLINE, is_transient_kafka, || {
            attempts += 1;
            Err(e(RDKafkaErrorCode::UnknownTopicOrPartition))
        });
        assert!(result.is_err());
        assert_eq!(attempts, 1, "a lasting error is returned at once");

        let start = Instant::now();
        let mut attempts = 0;
        let result: Result<(), _> = retry_blocking(Duration::from_millis(300), is_transient_kafka, || {
            attempts += 1;
            Err(e(RDKafkaErrorCode::NotLeaderForPartition))
        });
        assert!(result.is_err(), "a transient error that lasts is returned at the deadline");
        assert!(attempts >= 2, "retried meanwhile: {attempts}");
        // The last backoff may start just before the deadline: at most 400 ms past it.
        assert!(start.elapsed() < Duration::from_millis(700), "{:?}", start.elapsed());
    }
}
