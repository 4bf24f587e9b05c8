//! The gateway's own failures (5xx answers), logged with their cause.
//!
//! A 4xx is the client's: the answer tells it everything, and it is counted
//! (`sluice_gateway_events_rejected_total`), never logged above DEBUG. A 5xx is the gateway's or
//! its services' (Kafka away, the registry away, a broken schema, a bug): an operator must see
//! why, so each is logged at WARN (503: a service is unavailable, retry) or ERROR (500: a bug
//! or a misconfiguration). During an outage every request fails the same way, thousands a
//! second, so each code logs at most one line per [`INTERVAL`], which says how many like it
//! were left out since the last.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::ApiError;

/// At most one log line per code this often.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// The last line logged per code, and the failures left out since.
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl FailureLog {
    /// Logs `error` when it is a 5xx and its code has not logged within [`INTERVAL`].
    pub(crate) fn note(&self, error: &ApiError, event_type: Option<&str>) {
        if !error.is_server_side() {
            return;
        }
        let Some(left_out) = self.admit(error.code(), Instant::now()) else { return };
        let (code, message) = (error.code(), error.body().message.as_str());
        let event_type = event_type.unwrap_or("-");
        if error.status.as_u16() == 500 {
            tracing::error!(code, event_type, left_out, "gateway failure (500): {message}");
        } else {
            tracing::warn!(code, event_type, left_out, status = error.status.as_u16(), "gateway failure: {message}");
        }
    }

    /// `Some(n)` when a failure of `code` at `now` is to be logged (`n` like it were left out
    /// since the last line); `None` when it is only counted.
    fn admit(&self, code: &'static str, now: Instant) -> Option<u64> {
        // A poisoned lock (a panic mid-update) only costs throttling, never the log line.
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match last.get_mut(code) {
            Some((at, left_out)) if now.saturating_duration_since(*at) < INTERVAL => {
                *left_out += 1;
                None
            }
            Some((at, left_out)) => {
                let n = *left_out;
                (*at, *left_out) = (now, 0);
                Some(n)
            }
            None => {
                last.insert(code, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_code_per_interval_with_the_count_left_out() {
        let log = FailureLog::default();
        let t0 = Instant::now();
        assert_eq!(log.admit("kafka_unavailable", t0), Some(0));
        assert_eq!(log.admit("kafka_unavailable", t0 + Duration::from_millis(10)), None);
        assert_eq!(log.admit("kafka_unavailable", t0 + Duration::from_millis(900)), None);
        assert_eq!(log.admit("internal", t0 + Duration::from_millis(900)), Some(0), "codes apart");
        assert_eq!(log.admit("kafka_unavailable", t0 + INTERVAL), Some(2));
        assert_eq!(log.admit("kafka_unavailable", t0 + INTERVAL * 3), Some(0));
    }
}
