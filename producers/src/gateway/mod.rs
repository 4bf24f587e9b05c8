//! The HTTP ingest gateway (`sluice gateway`): JSON events from services not written in Rust,
//! validated against their Avro schema and published to Kafka by a [`Publisher`].
//!
//! Events arrive as HTTP requests, authenticated by bearer tokens scoped to event types
//! ([`auth`]); the handlers check them, ask the backpressure hook ([`crate::intake`]), and hand each event
//! to the publisher; the answer goes back only once Kafka acknowledged the event (or said why
//! not). The caller owns the lifecycle ([`serve`] takes a listener and a shutdown future, like
//! mini-redis), so tests run a real gateway in-process on `127.0.0.1:0`.
//!
//! - [`auth`]: bearer tokens, their scopes, the 401/403 decisions. Pure.
//! - [`tls`]: the optional TLS certificate and key, re-read without a restart.
//! - [`reload`]: re-reading the tokens file (on the caller's signal) and the TLS pair (on the
//!   caller's signal and when its files change), the old ones staying when the new do not load.
//! - [`crate::intake`]: the [`IntakeGate`] hook consulted before publishing ([`AlwaysAllow`] by default).
//! - `body` (private): content type and coding, size limit, strict JSON parsing.
//! - `connections` (private): the accept loop: TLS handshake, header-read timeout, connection limit.
//! - `write_stall` (private): a connection whose client stopped reading is closed.
//! - `handlers` (private): the routes.
//! - `error` (private): every refusal's status and JSON body.
//! - `failures` (private): the gateway's own failures (5xx) logged with their cause.
//! - `health` (private): `/healthz`, and `/readyz` from a cached background probe.
//! - [`metrics`]: the Prometheus metrics and their names.
//!
//! # The API
//!
//! Every intake request carries `Authorization: Bearer <token>` and `Content-Type:
//! application/json`, and may be compressed (`Content-Encoding: gzip` or `deflate`; the body
//! limits hold both for the body as sent and once decompressed).
//!
//! | Route | Body | Success |
//! |---|---|---|
//! | `POST /v1/events/{event_type}` | one event object (≤ 1 MiB) | **201** `{"event_id", "event_type", "topic", "partition", "offset"}` |
//! | `POST /v1/events/{event_type}/batch` | an array of events of that type (≤ 10 MiB, ≤ 10 000 events) | **200** when every event was published, **207** otherwise: `{"published": n, "failed": m, "results": [..]}` |
//! | `POST /v1/batch` | an array of events, each with its `event_type` | as above |
//! | `GET /healthz` | | 200 while the process runs |
//! | `GET /readyz` | | 200 when Kafka (every topic present) and the registry (every schema id) answered the last probe; else 503; the body says what each check saw |
//! | `GET /metrics` | | Prometheus text |
//!
//! An event is the JSON of its Avro schema ([`sluice_core::avro`] describes the mapping), which
//! may leave out `event_type` (taken from the path), `event_id` (a new UUID v4), `occurred_at`
//! (now) and `producer` (the token's name). Success means Kafka acknowledged the event
//! (`acks=all`, idempotent producer); the answer carries where it was written.
//!
//! **Idempotency**: `event_id` is the idempotency key. Posting an event again with the same
//! `event_id` (after a timeout, a 503, a lost connection) may write it twice to Kafka, and that
//! is harmless: every projection keeps the `event_id`s it applied and drops a duplicate. A client
//! that wants safe retries sends its own `event_id`; when it did not, a 503 answer carries the
//! one the gateway generated (`error.event_id`).
//!
//! **Batches are per event, not all-or-nothing**: each event is validated and published on its
//! own; an invalid event is not published and the valid ones are, in the batch's order. The
//! answer lists every event (`index`, `status` as a single request would have had it, and
//! either `event_id`/`topic`/`partition`/`offset` or `error`). A request-level problem (token,
//! content type, size, malformed JSON, not an array) refuses the whole batch with one error and
//! publishes nothing.
//!
//! **Refusals** are `{"error": {"code", "message", "field"?, "expected"?, "found"?, "value"?,
//! "suggestion"?, "allowed"?, "retry_after_seconds"?, "event_id"?}}`:
//!
//! | Status | `code` | When |
//! |---|---|---|
//! | 400 | `malformed_json` | the body is not JSON (the message has line and column) |
//! | 400 | `duplicate_key` | an object of the body repeats a key (`field`: its path) |
//! | 400 | `malformed_encoding` | a compressed body does not decompress |
//! | 401 | `unauthorized` | no token, not `Bearer`, or an unknown token (`WWW-Authenticate: Bearer`) |
//! | 403 | `forbidden` | the event type is outside the token's scopes |
//! | 404 | `unknown_event_type` | the topology has no such type (`allowed`: the types the token may post) |
//! | 408 | `request_timeout` | the body did not arrive in time |
//! | 413 | `payload_too_large`, `too_many_events` | over the body limit (as sent or decompressed) or the batch's event count |
//! | 413 | `record_too_large` | the event, as a Kafka record, is over the topic's limit (`size_bytes`, `limit_bytes`) |
//! | 415 | `unsupported_media_type`, `unsupported_content_encoding` | not `application/json`; a coding other than `gzip`, `deflate`, `identity` (`allowed`) |
//! | 422 | `too_long` | `aggregate_id` over [`MAX_AGGREGATE_ID_BYTES`](sluice_core::event::MAX_AGGREGATE_ID_BYTES) bytes |
//! | 422 | `wrong_type`, `missing_field`, `unknown_field`, `out_of_range`, `invalid_enum_symbol`, `invalid_uuid`, `invalid_timestamp`, `invalid_time`, `invalid_date`, `invalid_bytes`, `invalid_decimal`, `no_union_branch`, `event_type_mismatch` | the event does not fit its schema; `field` is the JSON path (for a missing or unknown field, the field itself) |
//! | 429 | `backpressure` | the intake gate refuses the type for now (`Retry-After`) |
//! | 503 | `kafka_unavailable`, `kafka_overloaded`, `publish_timeout`, `registry_unavailable`, `schema_not_registered`, `topic_missing` | try again after `Retry-After`; after `publish_timeout` the event may have been written |
//! | 503 | `unavailable`, `read_timeout` | a read of a projection ([`reads`]): Kafka or the store did not answer, or not by the request timeout; try again after `Retry-After` |
//!
//! Nothing the client sends gets a 5xx: a 5xx is the gateway's or its services' trouble, and
//! its cause is logged at WARN (503) or ERROR (500), at most once a second per code.
//!
//! Checks run in that order of cost: token, type and scope, gate (before the body is read, for a
//! single event), content type and coding, size, JSON, `aggregate_id` length, schema, record
//! size. A schema is validated once its id is known,
//! so with the registry unreachable and the id not yet cached (the readiness probe resolves every
//! id at start), even an invalid event gets 503.
//!
//! # TLS and reloading
//!
//! With [`GatewayState::with_tls`] every connection is TLS (1.2 or 1.3); without it, plain HTTP.
//! [`GatewayState::reloader`] gives the handle that re-reads the tokens file and the TLS pair
//! (`sluice gateway` calls it on SIGHUP); [`serve`] also watches the TLS files and the tokens
//! file and reloads what changed. A pair or tokens file that does not load is logged and the previous
//! one stays in use.
//!
//! # Shutdown
//!
//! When the shutdown future completes, `/readyz` turns 503, the listener stops accepting,
//! in-flight requests finish (each within its request timeout), idle keep-alive connections
//! close, and the producer is flushed; [`GatewayConfig::drain_deadline`] bounds the whole drain.

pub mod auth;
mod body;
mod connections;
mod error;
mod failures;
mod handlers;
mod health;
pub mod metrics;
mod other_routes;
pub mod reads;
pub mod reload;
pub mod tls;
mod write_stall;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use sluice_core::Connections;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

pub use crate::intake::{AlwaysAllow, Decision, IntakeGate};
pub use auth::{Principal, Tokens, TokensError};
pub use reload::{ReloadReport, Reloader, TokenSource};
pub use tls::{TlsCertificate, TlsError, TlsFiles};

use crate::{Publisher, RegistryError};

/// Why the gateway could not be set up or stopped serving.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// A setting is unusable.
    #[error("invalid gateway configuration: {0}")]
    Config(String),
    /// The tokens could not be read.
    #[error(transparent)]
    Tokens(#[from] TokensError),
    /// The TLS certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The readiness probe's registry client could not be built.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The listener failed.
    #[error("serving HTTP: {0}")]
    Serve(#[from] std::io::Error),
}

/// The gateway's limits and timings. Start from [`GatewayConfig::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Largest body of a single-event request. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Largest body of a batch request. Default 10 MiB.
    pub max_batch_body_bytes: usize,
    /// Most events in one batch. Default 10 000.
    pub max_batch_events: usize,
    /// Longest a request may take, from the end of its headers to the answer: reading the body,
    /// gate delay, queueing and Kafka's acknowledgement. Past it: 503 `publish_timeout` (or 408
    /// while the body is still arriving). Also the longest the write of an answer may make no
    /// progress (a client that stopped reading) before the connection is closed. Default 10 s;
    /// the publisher's delivery timeout should not be longer.
    pub request_timeout: Duration,
    /// The `Retry-After` suggested with a 503. Default 5 s.
    pub retry_after: Duration,
    /// Longest a shutdown waits for in-flight requests and the producer flush. Default 30 s.
    pub drain_deadline: Duration,
    /// How often the readiness probe runs. Default 5 s.
    pub ready_interval: Duration,
    /// Longest one readiness check (Kafka, registry) may take. Default 3 s.
    pub probe_timeout: Duration,
    /// Longest a client may take to send a request's headers, counted from when the gateway
    /// starts waiting for them (a new connection, or a kept-alive one after its last answer):
    /// past it the connection is closed. Also how long an idle keep-alive connection stays.
    /// Default 10 s: headers come in one packet, a client slower than that is broken or
    /// hostile (a byte a second holds a connection forever otherwise).
    pub header_read_timeout: Duration,
    /// Most client connections open at once. At the limit, new connections wait in the
    /// listen backlog until one closes (they are not refused). Default 4096; keep it under the
    /// process's open-file limit (`ulimit -n`), which Kafka's sockets share.
    pub max_connections: usize,
    /// How often the TLS certificate and key files and the tokens file are checked for a change
    /// (modification time, size, inode); a change reloads what changed. Default 5 s: a rotated
    /// Kubernetes secret is served within seconds of the kubelet writing it, for three `stat`s
    /// per interval.
    pub watch_interval: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_batch_body_bytes: 10 * 1024 * 1024,
            max_batch_events: 10_000,
            request_timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(5),
            drain_deadline: Duration::from_secs(30),
            ready_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            watch_interval: Duration::from_secs(5),
        }
    }
}

impl GatewayConfig {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let fail = |m: &str| Err(GatewayError::Config(m.to_owned()));
        if self.max_body_bytes == 0 || self.max_batch_body_bytes == 0 || self.max_batch_events == 0 {
            return fail("body limits and the batch size must be positive");
        }
        if self.request_timeout.is_zero()
            || self.ready_interval.is_zero()
            || self.probe_timeout.is_zero()
            || self.header_read_timeout.is_zero()
            || self.watch_interval.is_zero()
        {
            return fail(
                "the request and header-read timeouts, readiness interval, probe timeout and file watch interval must be positive",
            );
        }
        if self.max_connections == 0 || u32::try_from(self.max_connections).is_err() {
            return fail("the connection limit must be between 1 and 4294967295");
        }
        Ok(())
    }
}

/// Everything the handlers share: the publisher, the tokens, the gate, the limits, the
/// readiness report, the metrics handle. Built once, then handed to [`serve`] (or [`router`]).
#[derive(Debug)]
pub struct GatewayState {
    publisher: Arc<Publisher>,
    /// Swapped whole by a reload; a request holds the principal it authenticated as.
    tokens: Arc<ArcSwap<Tokens>>,
    token_source: Option<Arc<TokenSource>>,
    tls: Option<Arc<TlsCertificate>>,
    gate: Arc<dyn IntakeGate>,
    config: GatewayConfig,
    readiness: Arc<health::Readiness>,
    probe: Option<health::Probe>,
    metrics: Option<PrometheusHandle>,
    counters: metrics::EventCounters,
    failures: failures::FailureLog,
    /// What serves `GET /v1/projections/…/documents/…`, if anything.
    reads: Option<Arc<dyn reads::ProjectionReads>>,
}

impl GatewayState {
    /// The state of a gateway publishing with `publisher`, probing readiness against the Kafka
    /// cluster and registry of `connections` (the publisher's), accepting `tokens`. The gate is
    /// [`AlwaysAllow`] and there are no metrics until set.
    pub fn new(
        publisher: Arc<Publisher>,
        connections: &Connections,
        tokens: Tokens,
        config: GatewayConfig,
    ) -> Result<Self, GatewayError> {
        config.validate()?;
        if tokens.is_empty() {
            return Err(GatewayError::Config(
                "no bearer tokens: set SLUICE_GATEWAY_TOKENS or pass --tokens-file".to_owned(),
            ));
        }
        let probe = health::Probe::new(Arc::clone(&publisher), connections, config.probe_timeout)?;
        metrics::describe();
        let counters = metrics::EventCounters::new(publisher.topology().events().map(|e| e.event_type.as_str()));
        Ok(Self {
            publisher,
            tokens: Arc::new(ArcSwap::from_pointee(tokens)),
            token_source: None,
            tls: None,
            gate: Arc::new(AlwaysAllow),
            config,
            readiness: Arc::new(health::Readiness::new()),
            probe: Some(probe),
            metrics: None,
            counters,
            failures: failures::FailureLog::default(),
            reads: None,
        })
    }

    /// Consults `gate` before publishing (the lag-based backpressure plugs in here).
    #[must_use]
    pub fn with_gate(mut self, gate: Arc<dyn IntakeGate>) -> Self {
        self.gate = gate;
        self
    }

    /// Serves reads of projection documents with `reads` ([`reads`]).
    #[must_use]
    pub fn with_reads(mut self, reads: Arc<dyn reads::ProjectionReads>) -> Self {
        self.reads = Some(reads);
        self
    }

    /// Serves `/metrics` from `handle` (of a recorder installed with
    /// [`metrics::prometheus_builder`]).
    #[must_use]
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Re-reads tokens from `source` on [`Reloader::reload`] (the tokens given to
    /// [`GatewayState::new`] are those it loaded at start).
    #[must_use]
    pub fn with_token_source(mut self, source: TokenSource) -> Self {
        self.token_source = Some(Arc::new(source));
        self
    }

    /// Serves HTTPS with `tls` rather than plain HTTP.
    #[must_use]
    pub fn with_tls(mut self, tls: Arc<TlsCertificate>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The handle that re-reads the tokens file and the TLS pair of this gateway.
    pub fn reloader(&self) -> Reloader {
        Reloader { tokens: Arc::clone(&self.tokens), source: self.token_source.clone(), tls: self.tls.clone() }
    }

    /// The settings.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The publisher.
    pub fn publisher(&self) -> &Arc<Publisher> {
        &self.publisher
    }
}

/// The gateway's routes and middleware over `state`, without a listener (for tests that call it
/// as a service, or a caller that mounts it in a larger router). No readiness probe runs: use
/// [`serve`] for that.
pub fn router(state: Arc<GatewayState>) -> Router {
    // A backstop only: every handler answers by its own deadline, with a JSON body. This one
    // catches what would hang past it anyway.
    let backstop = state.config.request_timeout + Duration::from_secs(2);
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            // Method and route template only: never headers (the token) nor the raw path.
            let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
            tracing::debug_span!("gateway_request", method = %request.method(), route)
        })
        // A 503 per request during a Kafka outage would be thousands of error lines a second;
        // the outage is logged once by the readiness probe and counted in the metrics.
        .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG));
    Router::new()
        .route("/v1/events/{event_type}", post(handlers::post_event))
        .route("/v1/events/{event_type}/batch", post(handlers::post_typed_batch))
        .route("/v1/batch", post(handlers::post_mixed_batch))
        .route("/v1/projections/{projection}/documents/{key}", get(reads::get_document))
        .route("/v1/projections/{projection}/progress", get(reads::get_progress))
        .route("/healthz", get(other_routes::healthz))
        .route("/readyz", get(other_routes::readyz))
        .route("/metrics", get(other_routes::metrics))
        .fallback(other_routes::not_found)
        .method_not_allowed_fallback(other_routes::method_not_allowed)
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, backstop))
        .layer(CatchPanicLayer::custom(other_routes::panic_response))
        .layer(trace)
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

/// Serves the gateway on `listener` until `shutdown` completes, then drains: stops accepting,
/// lets in-flight requests finish, flushes the producer, all within
/// [`GatewayConfig::drain_deadline`]. Runs the readiness probe (and the metrics upkeep) meanwhile.
pub async fn serve(
    listener: TcpListener,
    mut state: GatewayState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let stop = CancellationToken::new();
    let drain_deadline = state.config.drain_deadline;
    let mut background = tokio::task::JoinSet::new();
    if let Some(probe) = state.probe.take() {
        background.spawn(probe.run(Arc::clone(&state.readiness), state.config.ready_interval, stop.clone()));
    }
    if let Some(handle) = state.metrics.clone() {
        let stop = stop.clone();
        // Histogram samples wait in the recorder until rendered; upkeep bounds them when nobody
        // scrapes.
        background.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
                }
            }
        });
    }
    let reloader = state.reloader();
    if reloader.watches_files() {
        background.spawn(reloader.watch_files(state.config.watch_interval, stop.clone()));
    }
    let state = Arc::new(state);
    let readiness = Arc::clone(&state.readiness);
    let trigger = stop.clone();
    background.spawn(async move {
        tokio::select! {
            () = shutdown => {
                tracing::info!("shutdown requested: draining in-flight requests");
                readiness.set_draining();
                trigger.cancel();
            }
            () = trigger.cancelled() => {}
        }
    });

    let addr = listener.local_addr()?;
    let tls = state.tls.clone();
    tracing::info!(%addr, tls = tls.is_some(), "gateway listening");
    let limits = connections::Limits {
        header_read_timeout: state.config.header_read_timeout,
        write_stall_timeout: state.config.request_timeout,
        max_connections: state.config.max_connections,
    };
    let server = connections::serve_connections(listener, tls, router(Arc::clone(&state)), limits, stop.clone());
    let drain = async {
        stop.cancelled().await;
        tokio::time::sleep(drain_deadline).await;
    };
    tokio::select! {
        () = server => {}
        () = drain => {
            tracing::warn!(?drain_deadline, "drain deadline passed with requests still in flight: abandoning them");
        }
    }
    stop.cancel();
    background.shutdown().await;

    // The handlers awaited their own deliveries; what is left in the queue belongs to requests
    // abandoned by a deadline. Flush it so an event acknowledged late is not lost with the process.
    let publisher = Arc::clone(&state.publisher);
    let flush = tokio::task::spawn_blocking(move || publisher.flush(drain_deadline.min(Duration::from_secs(10)))).await;
    match flush {
        Ok(Ok(())) => tracing::info!("producer flushed; gateway stopped"),
        Ok(Err(e)) => tracing::warn!(error = %e, "producer flush incomplete"),
        Err(e) => tracing::warn!(error = %e, "producer flush task failed"),
    }
    Ok(())
}
