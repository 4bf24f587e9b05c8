//! The backpressure hook: may this event type come in now?
//!
//! Both ways in ask the [`IntakeGate`] before anything is published. The HTTP gateway asks after
//! authentication: a single-event request once (before its body is even read, so a refusal costs
//! nothing), a batch once per event type it carries ([`IntakeGate::check_batch`], with the
//! number of events). The [`Publisher`](crate::Publisher) library asks once per event when a gate
//! was given to it ([`Publisher::with_gate`](crate::Publisher::with_gate)).
//! [`Decision::Delay`] holds the event that long, then publishes (the soft threshold: intake
//! slows down); [`Decision::Refuse`] publishes nothing: the gateway answers 429 with
//! `Retry-After`, the library returns [`PublishError::Backpressure`](crate::PublishError) (the
//! hard threshold). The default, [`AlwaysAllow`], never holds anything back; the lag-based gate
//! (`sluice_consumers::lag::LagGate`: projection lag against the topology's
//! `[projections.*.backpressure]` thresholds, critical event types never refused) plugs in here.

use std::fmt;
use std::time::Duration;

/// What the gate says about an event type right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Publish now.
    Allow,
    /// Publish after waiting this long (a delay as long as the request's remaining time is a
    /// refusal with that `Retry-After`).
    Delay(Duration),
    /// Publish nothing: answer 429 with this `Retry-After`.
    Refuse {
        /// When the client should try again.
        retry_after: Duration,
    },
}

impl Decision {
    /// The metric label: `allow`, `delay` or `refuse`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Delay(_) => "delay",
            Self::Refuse { .. } => "refuse",
        }
    }
}

/// Decides whether events of a type may come in now. Called on every request, from the async
/// handlers: it must answer from state it already holds (a lag snapshot refreshed elsewhere, a
/// token bucket), never wait on I/O.
pub trait IntakeGate: fmt::Debug + Send + Sync + 'static {
    /// The decision for one event of `event_type`.
    fn check(&self, event_type: &str) -> Decision;

    /// The decision for `events` events of `event_type` arriving together in a batch. The
    /// default asks [`IntakeGate::check`] once; a token bucket takes `events` tokens instead.
    fn check_batch(&self, event_type: &str, events: usize) -> Decision {
        let _ = events;
        self.check(event_type)
    }
}

/// The gate that lets everything in: the gateway's default until lag is watched.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysAllow;

impl IntakeGate for AlwaysAllow {
    fn check(&self, _event_type: &str) -> Decision {
        Decision::Allow
    }
}
