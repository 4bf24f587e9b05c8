//! The token bucket that paces a slowed event type at the rate of its
//! [`super::IntakeDecision::Slow`], with the time passed in.

use std::time::{Duration, Instant};

/// A token bucket with the time passed in: `rate` tokens per second, at most `burst` saved up.
/// The gateway keeps one per slowed event type and sets its rate from [`IntakeDecision::Slow`](super::IntakeDecision::Slow).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. A rate that is not a positive number never refills; a burst below
    /// one is one (a token must fit).
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self { rate: sanitize_rate(rate), burst, tokens: burst, updated: now }
    }

    /// Tokens per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Tokens available at `now` (negative while reservations are outstanding).
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Changes the rate from `now` on; what accrued until `now` is kept.
    pub fn set_rate(&mut self, rate: f64, now: Instant) {
        self.refill(now);
        self.rate = sanitize_rate(rate);
    }

    /// Takes a token if one is there; otherwise how long until one will be (nothing is taken).
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait_for(1.0 - self.tokens))
        }
    }

    /// Takes a token now, in advance if need be, and says how long to wait before using it; `None`
    /// (nothing taken) when that wait would exceed `max_wait`. Callers queue fairly this way: each
    /// reservation gets its own slot instead of all retrying at the same instant.
    pub fn reserve(&mut self, now: Instant, max_wait: Duration) -> Option<Duration> {
        self.reserve_n(1, now, max_wait)
    }

    /// [`Self::reserve`] for `tokens` tokens at once (a batch of events); more than the burst is
    /// allowed, the wait covers the difference.
    pub fn reserve_n(&mut self, tokens: u32, now: Instant, max_wait: Duration) -> Option<Duration> {
        self.refill(now);
        let n = f64::from(tokens);
        let wait = if self.tokens >= n { Duration::ZERO } else { self.wait_for(n - self.tokens) };
        if wait > max_wait {
            return None;
        }
        self.tokens -= n;
        Some(wait)
    }

    fn refill(&mut self, now: Instant) {
        // A `now` before the last update (callers racing) adds nothing rather than going back.
        let elapsed = now.saturating_duration_since(self.updated);
        if now > self.updated {
            self.updated = now;
        }
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
    }

    fn wait_for(&self, missing: f64) -> Duration {
        if self.rate <= 0.0 {
            return Duration::MAX;
        }
        Duration::try_from_secs_f64(missing / self.rate).unwrap_or(Duration::MAX)
    }
}

fn sanitize_rate(rate: f64) -> f64 {
    if rate.is_finite() && rate > 0.0 { rate } else { 0.0 }
}
