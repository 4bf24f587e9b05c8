//! The gateway's Prometheus metrics (`sluice_gateway_<what>_<unit>`), served on its own `/metrics`.
//!
//! Recorded through the `metrics` facade, so whichever recorder the process installed sees them;
//! `sluice gateway` installs [`prometheus_builder`]'s and hands its handle to the state, whose
//! `/metrics` renders it. Labels stay bounded: `route` is the route template
//! (`/v1/events/{event_type}`), never the path; `event_type` only ever a type of the topology
//! (`unknown` otherwise); `code` one of the gateway's error codes.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Metric names, so dashboards and tests refer to one spelling.
pub mod names {
    /// Requests answered, by `route` and `status`.
    pub const REQUESTS: &str = "sluice_gateway_requests_total";
    /// From the request's arrival to its response, by `route`.
    pub const REQUEST_SECONDS: &str = "sluice_gateway_request_duration_seconds";
    /// Requests being handled now.
    pub const IN_FLIGHT: &str = "sluice_gateway_requests_in_flight";
    /// Events Kafka acknowledged, by `event_type`.
    pub const EVENTS_PUBLISHED: &str = "sluice_gateway_events_published_total";
    /// Events not published, by `event_type` and `code` (the error code of the answer).
    pub const EVENTS_REJECTED: &str = "sluice_gateway_events_rejected_total";
    /// Intake gate decisions other than `allow`, by `event_type` and `decision`.
    pub const GATE_DECISIONS: &str = "sluice_gateway_backpressure_decisions_total";
    /// Client connections open now.
    pub const CONNECTIONS_OPEN: &str = "sluice_gateway_connections_open";
    /// Times the connection limit was reached and accepting paused until one closed.
    pub const CONNECTION_LIMIT_WAITS: &str = "sluice_gateway_connection_limit_waits_total";
}

/// Latency buckets (seconds) for [`names::REQUEST_SECONDS`]: fine around the 20 ms objective.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A Prometheus exporter builder with the gateway's histogram buckets; install it with
/// `install_recorder()` and pass the handle to
/// [`GatewayState::with_metrics`](super::GatewayState::with_metrics).
pub fn prometheus_builder() -> PrometheusBuilder {
    // Only fails for an empty bucket list, and this one is not.
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(names::REQUEST_SECONDS.to_owned()), LATENCY_BUCKETS)
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

/// Describes the metrics (once per process is enough; repeating is harmless).
pub(crate) fn describe() {
    describe_counter!(names::REQUESTS, "Requests answered, by route and status.");
    describe_histogram!(names::REQUEST_SECONDS, metrics::Unit::Seconds, "Request duration, by route.");
    describe_gauge!(names::IN_FLIGHT, "Requests being handled.");
    describe_counter!(names::EVENTS_PUBLISHED, "Events acknowledged by Kafka, by event type.");
    describe_counter!(names::EVENTS_REJECTED, "Events not published, by event type and error code.");
    describe_counter!(names::GATE_DECISIONS, "Intake gate delays and refusals, by event type and decision.");
    describe_gauge!(names::CONNECTIONS_OPEN, "Client connections open.");
    describe_counter!(
        names::CONNECTION_LIMIT_WAITS,
        "Times the connection limit was reached (new connections waited in the listen backlog)."
    );
}

/// Per event type counters, registered once so the hot path does not build label sets.
#[derive(Debug, Clone)]
pub(crate) struct EventCounters {
    published: HashMap<String, Counter>,
}

impl EventCounters {
    pub(crate) fn new<'a>(event_types: impl Iterator<Item = &'a str>) -> Self {
        let published = event_types
            .map(|t| (t.to_owned(), counter!(names::EVENTS_PUBLISHED, "event_type" => t.to_owned())))
            .collect();
        Self { published }
    }

    pub(crate) fn published(&self, event_type: &str, n: u64) {
        if let Some(c) = self.published.get(event_type) {
            c.increment(n);
        }
    }

    /// Counts a rejected event; `event_type` is labelled only when the topology declares it.
    pub(crate) fn rejected(&self, event_type: Option<&str>, code: &'static str) {
        let label = event_type.filter(|t| self.published.contains_key(*t)).unwrap_or("unknown").to_owned();
        counter!(names::EVENTS_REJECTED, "event_type" => label, "code" => code).increment(1);
    }

    pub(crate) fn gate(&self, event_type: &str, decision: &'static str) {
        let label = if self.published.contains_key(event_type) { event_type } else { "unknown" }.to_owned();
        counter!(names::GATE_DECISIONS, "event_type" => label, "decision" => decision).increment(1);
    }
}

/// Middleware: counts every response by route template and status, and times it.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let in_flight = InFlight::enter();
    let response = next.run(request).await;
    drop(in_flight);
    let status = response.status();
    histogram!(names::REQUEST_SECONDS, "route" => route.clone()).record(started.elapsed().as_secs_f64());
    counter!(names::REQUESTS, "route" => route, "status" => status.as_str().to_owned()).increment(1);
    response
}

/// One request in [`names::IN_FLIGHT`]; leaves it when dropped, also when the client hangs up and
/// the request's future is dropped half-way.
struct InFlight(metrics::Gauge);

impl InFlight {
    fn enter() -> Self {
        let gauge = gauge!(names::IN_FLIGHT);
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
