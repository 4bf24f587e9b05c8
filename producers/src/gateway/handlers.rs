//! The intake routes: one event, a batch of one type, a batch of mixed types.
//!
//! A request goes: bearer token → event type known and in the token's scope → intake gate →
//! content type and coding → body (size limit, decompressed, strict JSON) → the event object, completed with the envelope
//! defaults → [`Publisher::enqueue_json`](crate::Publisher::enqueue_json) (validation against the
//! Avro schema, encoding, the producer's queue) → Kafka's acknowledgement → the answer. The first
//! step that fails answers with its [`ApiError`], and an event that failed any step before the
//! producer's queue was never written. Every wait (gate delay, queue, acknowledgement) is bounded
//! by the request's deadline; past it the answer is 503 `publish_timeout`, whose event may still
//! land: the client posts it again with the same `event_id`, and the projections drop the
//! duplicate.
//!
//! A batch is validated and queued in its order (events of one aggregate keep their order on
//! Kafka), and answered per event once every queued one is acknowledged or failed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json as JsonResponse;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use serde_json::Value as Json;
use sluice_core::consistency::ConsistencyToken;
use tokio::time::{Instant, timeout_at};

use super::GatewayState;
use super::auth::{AuthFailure, Principal};
use super::body;
use super::error::{ApiError, ErrorBody};
use crate::intake::Decision;
use crate::{Delivery, PendingDelivery, PublishError, fill_envelope_defaults};

/// Queued batch events between two yields to the scheduler: validating and encoding is pure CPU,
/// and a 10 000-event batch must not hold an async worker for its whole length.
const YIELD_EVERY: usize = 256;

/// The answer to a published event (201), and each published event's entry in a batch answer.
#[derive(Debug, Serialize)]
struct Published {
    event_id: String,
    event_type: String,
    topic: String,
    partition: i32,
    offset: i64,
    /// Hand it to a read that must include this event (see `sluice_core::consistency`).
    consistency_token: String,
}

/// One event's outcome in a batch answer.
#[derive(Debug, Serialize)]
struct EventResult {
    /// The event's position in the batch, from 0.
    index: usize,
    /// 201 when published, else the status a single request would have got.
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consistency_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

impl EventResult {
    fn published(index: usize, event_type: String, d: Delivery) -> Self {
        Self {
            index,
            status: StatusCode::CREATED.as_u16(),
            consistency_token: Some(d.token().to_string()),
            event_id: Some(d.event_id),
            event_type: Some(event_type),
            topic: Some(d.topic),
            partition: Some(d.partition),
            offset: Some(d.offset),
            error: None,
        }
    }

    fn failed(index: usize, event_type: Option<String>, event_id: Option<String>, error: ApiError) -> Self {
        Self {
            index,
            status: error.status.as_u16(),
            event_id,
            event_type,
            topic: None,
            partition: None,
            offset: None,
            consistency_token: None,
            error: Some(error.body().clone()),
        }
    }
}

/// A batch answer: 200 when every event was published, 207 otherwise.
#[derive(Debug, Serialize)]
struct BatchAnswer {
    published: usize,
    failed: usize,
    /// One token covering every published event of the batch (absent when none was).
    #[serde(skip_serializing_if = "Option::is_none")]
    consistency_token: Option<String>,
    results: Vec<EventResult>,
}

/// `POST /v1/events/{event_type}`: one event; 201 once Kafka acknowledged it.
pub(crate) async fn post_event(
    State(gw): State<Arc<GatewayState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let deadline = Instant::now() + gw.config.request_timeout;
    let event_type = match path {
        Ok(Path(t)) => t,
        Err(e) => return bad_path(&e),
    };
    match single(&gw, &event_type, &headers, body, deadline).await {
        Ok(published) => (StatusCode::CREATED, JsonResponse(published)).into_response(),
        Err((error, event_id)) => {
            let known = gw.publisher.topology().event(&event_type).is_some();
            gw.counters.rejected(known.then_some(event_type.as_str()), error.code());
            gw.failures.note(&error, Some(&event_type));
            let mut error = error;
            error.body.event_id = event_id;
            error.into_response()
        }
    }
}

/// `POST /v1/events/{event_type}/batch`: a JSON array of events of one type.
pub(crate) async fn post_typed_batch(
    State(gw): State<Arc<GatewayState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let deadline = Instant::now() + gw.config.request_timeout;
    match path {
        Ok(Path(t)) => answer(&gw, batch(&gw, Some(&t), &headers, body, deadline).await),
        Err(e) => bad_path(&e),
    }
}

/// `POST /v1/batch`: a JSON array of events, each naming its `event_type`.
pub(crate) async fn post_mixed_batch(State(gw): State<Arc<GatewayState>>, headers: HeaderMap, body: Body) -> Response {
    let deadline = Instant::now() + gw.config.request_timeout;
    answer(&gw, batch(&gw, None, &headers, body, deadline).await)
}

fn bad_path(e: &PathRejection) -> Response {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_path", format!("cannot read the event type from the path: {e}"))
        .into_response()
}

fn answer(gw: &GatewayState, result: Result<BatchAnswer, ApiError>) -> Response {
    let batch = match result {
        Ok(batch) => batch,
        Err(e) => {
            gw.failures.note(&e, None);
            return e.into_response();
        }
    };
    let status = if batch.failed == 0 { StatusCode::OK } else { StatusCode::MULTI_STATUS };
    let retry_after = batch.results.iter().filter_map(|r| r.error.as_ref()?.retry_after_seconds).max();
    let mut response = (status, JsonResponse(batch)).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The whole single-event path; the error comes with the event's `event_id` once it has one.
async fn single(
    gw: &GatewayState,
    event_type: &str,
    headers: &HeaderMap,
    body: Body,
    deadline: Instant,
) -> Result<Published, (ApiError, Option<String>)> {
    let principal = gw.authenticate(headers).map_err(|e| (e, None))?;
    gw.admit(&principal, event_type).map_err(|e| (e, None))?;
    // Before the body is read: a refusal under pressure should cost as little as possible.
    gw.pass_gate(event_type, gw.gate.check(event_type), deadline).await.map_err(|e| (e, None))?;
    body::check_content_type(headers).map_err(|e| (e, None))?;
    let coding = body::content_coding(headers).map_err(|e| (e, None))?;
    let limit = gw.config.max_body_bytes;
    let bytes = body::read(headers, body, limit, remaining(deadline)).await.map_err(|e| (e, None))?;
    let json = body::decode_off_thread(coding, bytes, limit).await.map_err(|e| (e, None))?;
    let event = complete(json, Some(event_type), &principal).map_err(|e| (e, None))?;
    let event_id = event.get("event_id").and_then(Json::as_str).map(str::to_owned);
    let delivery = gw.publish(event_type, &event, deadline).await.map_err(|e| (e, event_id))?;
    gw.counters.published(event_type, 1);
    Ok(Published {
        consistency_token: delivery.token().to_string(),
        event_id: delivery.event_id,
        event_type: event_type.to_owned(),
        topic: delivery.topic,
        partition: delivery.partition,
        offset: delivery.offset,
    })
}

/// The whole batch path. `Err` refuses the request as a whole (nothing published); `Ok` has
/// every event's outcome.
async fn batch(
    gw: &GatewayState,
    path_type: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    deadline: Instant,
) -> Result<BatchAnswer, ApiError> {
    let principal = gw.authenticate(headers)?;
    if let Some(t) = path_type {
        gw.admit(&principal, t)?;
    }
    body::check_content_type(headers)?;
    let coding = body::content_coding(headers)?;
    let limit = gw.config.max_batch_body_bytes;
    let bytes = body::read(headers, body, limit, remaining(deadline)).await?;
    let items = match body::decode_off_thread(coding, bytes, limit).await? {
        Json::Array(items) => items,
        other => return Err(ApiError::wrong_shape("$", "array of events", &other)),
    };
    let max = gw.config.max_batch_events;
    if items.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!("the batch has {} events; at most {max} per request", items.len()),
        )
        .expected(format!("at most {max} events")));
    }

    let mut outcomes = Outcomes::new(gw, items.len());

    // 1. Each event on its own: shape, type, scope, envelope defaults.
    let mut accepted: Vec<(usize, String, Json)> = Vec::with_capacity(items.len());
    let mut admissions: HashMap<String, Result<(), ApiError>> = HashMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let event_id = item.get("event_id").and_then(Json::as_str).map(str::to_owned);
        let event_type = match path_type.map_or_else(|| type_of(&item), |t| Ok(t.to_owned())) {
            Ok(t) => t,
            Err(e) => {
                outcomes.fail(i, None, event_id, e);
                continue;
            }
        };
        // Asked once per type of the batch (the typed route's type was admitted above).
        let admitted = match (path_type, admissions.get(&event_type)) {
            (Some(_), _) => Ok(()),
            (None, Some(known)) => known.clone(),
            (None, None) => {
                let verdict = gw.admit(&principal, &event_type);
                admissions.insert(event_type.clone(), verdict.clone());
                verdict
            }
        };
        match admitted.and_then(|()| complete(item, Some(&event_type), &principal)) {
            Ok(event) => accepted.push((i, event_type, event)),
            Err(e) => outcomes.fail(i, Some(&event_type), event_id, e),
        }
    }

    // 2. The gate, once per event type, with its number of events.
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (_, t, _) in &accepted {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    let mut refused: HashMap<String, ApiError> = HashMap::new();
    let mut delay = Duration::ZERO;
    for (t, n) in counts {
        match gw.gate.check_batch(t, n) {
            Decision::Allow => {}
            Decision::Delay(d) if Instant::now() + d < deadline => {
                gw.counters.gate(t, "delay");
                delay = delay.max(d);
            }
            Decision::Delay(retry_after) | Decision::Refuse { retry_after } => {
                gw.counters.gate(t, "refuse");
                refused.insert(t.to_owned(), ApiError::backpressure(t, retry_after));
            }
        }
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    // 3. Validate, encode and queue, in the batch's order.
    let mut pending = FuturesUnordered::new();
    for (n, (i, t, event)) in accepted.into_iter().enumerate() {
        let event_id = event.get("event_id").and_then(Json::as_str).map(str::to_owned);
        if let Some(error) = refused.get(&t) {
            outcomes.fail(i, Some(&t), event_id, error.clone());
            continue;
        }
        match gw.enqueue(&t, &event, deadline).await {
            Ok(delivery) => pending.push(Queued { index: i, event_type: t, event_id, delivery }),
            Err(e) => outcomes.fail(i, Some(&t), event_id, e),
        }
        if n % YIELD_EVERY == YIELD_EVERY - 1 {
            tokio::task::yield_now().await;
        }
    }

    // 4. Kafka's acknowledgements, until the deadline.
    loop {
        match timeout_at(deadline, pending.next()).await {
            Ok(Some((i, t, _, Ok(delivery)))) => outcomes.published(i, t, delivery),
            Ok(Some((i, t, event_id, Err(e)))) => {
                outcomes.fail(i, Some(&t), event_id, ApiError::from_publish(&e, gw.config.retry_after));
            }
            Ok(None) => break,
            Err(_elapsed) => {
                // Dropping a delivery future leaves the record in the producer's queue: it may
                // still be written, which the answer (publish_timeout) says.
                tracing::warn!(events = pending.len(), "batch deadline passed before every acknowledgement came");
                for late in pending.iter_mut() {
                    let event_id = late.event_id.take();
                    let event_type = std::mem::take(&mut late.event_type);
                    outcomes.fail(late.index, Some(&event_type), event_id, gw.timeout_error());
                }
                break;
            }
        }
    }
    Ok(outcomes.finish())
}

/// A batch event in the producer's queue: its acknowledgement, with what the answer needs.
struct Queued {
    index: usize,
    event_type: String,
    event_id: Option<String>,
    delivery: PendingDelivery,
}

impl Future for Queued {
    type Output = (usize, String, Option<String>, Result<Delivery, PublishError>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        Pin::new(&mut this.delivery)
            .poll(cx)
            .map(|result| (this.index, std::mem::take(&mut this.event_type), this.event_id.take(), result))
    }
}

/// The outcome of each event of a batch, filled in as the steps decide them.
struct Outcomes<'a> {
    gw: &'a GatewayState,
    results: Vec<Option<EventResult>>,
    /// Covers every event published so far.
    token: ConsistencyToken,
}

impl<'a> Outcomes<'a> {
    fn new(gw: &'a GatewayState, n: usize) -> Self {
        let mut results = Vec::with_capacity(n);
        results.resize_with(n, || None);
        Self { gw, results, token: ConsistencyToken::default() }
    }

    fn fail(&mut self, i: usize, event_type: Option<&str>, event_id: Option<String>, error: ApiError) {
        self.gw.counters.rejected(event_type, error.code());
        self.gw.failures.note(&error, event_type);
        if let Some(slot) = self.results.get_mut(i) {
            *slot = Some(EventResult::failed(i, event_type.map(str::to_owned), event_id, error));
        }
    }

    fn published(&mut self, i: usize, event_type: String, delivery: Delivery) {
        self.token.include(&delivery.topic, delivery.partition, delivery.offset);
        if let Some(slot) = self.results.get_mut(i) {
            *slot = Some(EventResult::published(i, event_type, delivery));
        }
    }

    /// Every event's result (each has one by now; a gap would be a bug, answered as a timeout).
    fn finish(self) -> BatchAnswer {
        let results: Vec<EventResult> = self
            .results
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|| EventResult::failed(i, None, None, self.gw.timeout_error())))
            .collect();
        let mut by_type: HashMap<&str, u64> = HashMap::new();
        for r in results.iter().filter(|r| r.error.is_none()) {
            *by_type.entry(r.event_type.as_deref().unwrap_or_default()).or_default() += 1;
        }
        for (event_type, n) in by_type {
            self.gw.counters.published(event_type, n);
        }
        let published = results.iter().filter(|r| r.error.is_none()).count();
        let consistency_token = (!self.token.is_empty()).then(|| self.token.to_string());
        BatchAnswer { published, failed: results.len() - published, consistency_token, results }
    }
}

/// The `event_type` field of a mixed batch's event.
fn type_of(item: &Json) -> Result<String, ApiError> {
    match item {
        Json::Object(map) => match map.get("event_type") {
            Some(Json::String(t)) => Ok(t.clone()),
            None | Some(Json::Null) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing_field",
                "$: missing required field \"event_type\" (a batch of /v1/batch names each event's type)",
            )
            .field("$.event_type")
            .expected("string")),
            Some(other) => Err(ApiError::wrong_shape("$.event_type", "string", other)),
        },
        other => Err(ApiError::wrong_shape("$", "object", other)),
    }
}

/// The event object with the envelope defaults filled in: `event_type` from the path when
/// absent, `event_id` (a new UUID v4), `occurred_at` (now) and `producer` (the token's name).
fn complete(json: Json, event_type: Option<&str>, principal: &Principal) -> Result<Json, ApiError> {
    let Json::Object(mut event) = json else {
        return Err(ApiError::wrong_shape("$", "object", &json));
    };
    if let Some(t) = event_type {
        match event.get("event_type") {
            None | Some(Json::Null) => {
                event.insert("event_type".to_owned(), Json::String(t.to_owned()));
            }
            Some(Json::String(found)) if found != t => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "event_type_mismatch",
                    format!("$.event_type: the event says {found:?} but is posted as {t:?}"),
                )
                .field("$.event_type")
                .expected(t)
                .found("string")
                .value(Some(Json::String(found.clone()).to_string())));
            }
            // A wrong type is the converter's to report, with the schema's words.
            Some(_) => {}
        }
    }
    if event.get("event_id").is_none_or(Json::is_null) {
        // From the thread's RNG rather than `Uuid::new_v4` (a getrandom system call per id): a
        // 10 000-event batch would otherwise spend a visible share of its time in the kernel.
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        event.insert("event_id".to_owned(), Json::String(id.hyphenated().to_string()));
    }
    fill_envelope_defaults(&mut event, principal.name());
    Ok(Json::Object(event))
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

impl GatewayState {
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, ApiError> {
        let header = headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
        self.tokens.load().authenticate(header).map_err(|failure| match failure {
            AuthFailure::Missing => ApiError::unauthorized("no bearer token: send `Authorization: Bearer <token>`"),
            AuthFailure::Malformed => ApiError::unauthorized("the Authorization header is not `Bearer <token>`"),
            AuthFailure::Unknown { fingerprint } => {
                tracing::debug!(%fingerprint, "unknown bearer token");
                ApiError::unauthorized("unknown bearer token")
            }
        })
    }

    /// The event type exists (404 otherwise, listing the types the token may post) and is in
    /// the token's scope (403).
    fn admit(&self, principal: &Principal, event_type: &str) -> Result<(), ApiError> {
        let topology = self.publisher.topology();
        if topology.event(event_type).is_none() {
            let allowed = topology
                .events()
                .map(|e| e.event_type.as_str())
                .filter(|t| principal.allows(t))
                .map(str::to_owned)
                .collect();
            return Err(ApiError::unknown_event_type(event_type, allowed));
        }
        if !principal.allows(event_type) {
            tracing::debug!(principal = principal.name(), event_type, "event type outside the token's scope");
            return Err(ApiError::forbidden(principal.name(), event_type));
        }
        Ok(())
    }

    async fn pass_gate(&self, event_type: &str, decision: Decision, deadline: Instant) -> Result<(), ApiError> {
        match decision {
            Decision::Allow => Ok(()),
            Decision::Delay(d) if Instant::now() + d < deadline => {
                self.counters.gate(event_type, "delay");
                tokio::time::sleep(d).await;
                Ok(())
            }
            Decision::Delay(retry_after) | Decision::Refuse { retry_after } => {
                self.counters.gate(event_type, "refuse");
                Err(ApiError::backpressure(event_type, retry_after))
            }
        }
    }

    /// Validates, encodes and queues; the delivery is awaited by the caller.
    async fn enqueue(&self, event_type: &str, event: &Json, deadline: Instant) -> Result<PendingDelivery, ApiError> {
        match timeout_at(deadline, self.publisher.enqueue_json(event_type, event)).await {
            Ok(Ok(pending)) => Ok(pending),
            Ok(Err(e)) => Err(ApiError::from_publish(&e, self.config.retry_after)),
            Err(_elapsed) => Err(self.timeout_error()),
        }
    }

    async fn publish(&self, event_type: &str, event: &Json, deadline: Instant) -> Result<Delivery, ApiError> {
        let pending = self.enqueue(event_type, event, deadline).await?;
        match timeout_at(deadline, pending).await {
            Ok(Ok(delivery)) => Ok(delivery),
            Ok(Err(e)) => Err(ApiError::from_publish(&e, self.config.retry_after)),
            Err(_elapsed) => Err(self.timeout_error()),
        }
    }

    fn timeout_error(&self) -> ApiError {
        ApiError::from_publish(&PublishError::Timeout(self.config.request_timeout), self.config.retry_after)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gateway::Tokens;

    fn principal() -> Arc<Principal> {
        let tokens = Tokens::parse("web:aaaaaaaaaaaaaaaa:*", "test").expect("tokens");
        tokens.authenticate(Some(b"Bearer aaaaaaaaaaaaaaaa")).expect("known")
    }

    #[test]
    fn completing_an_event() {
        let p = principal();
        let event = complete(json!({"aggregate_id": "u-1"}), Some("user.deleted"), &p).expect("object");
        assert_eq!(event["event_type"], "user.deleted");
        assert_eq!(event["producer"], "web", "the token's name by default");
        assert!(event["event_id"].is_string() && event["occurred_at"].is_i64());
        let kept = complete(json!({"event_id": "mine", "producer": "svc"}), Some("x"), &p).expect("object");
        assert_eq!((kept["event_id"].as_str(), kept["producer"].as_str()), (Some("mine"), Some("svc")));

        let e = complete(json!({"event_type": "user.registered"}), Some("user.deleted"), &p).expect_err("mismatch");
        assert_eq!((e.code(), e.body().field.as_deref()), ("event_type_mismatch", Some("$.event_type")));
        let e = complete(json!([1]), Some("x"), &p).expect_err("array");
        assert_eq!(
            (e.status, e.code(), e.body().found),
            (StatusCode::UNPROCESSABLE_ENTITY, "wrong_type", Some("array"))
        );
    }

    #[test]
    fn mixed_batch_events_name_their_type() {
        assert_eq!(type_of(&json!({"event_type": "a.b"})).ok().as_deref(), Some("a.b"));
        let e = type_of(&json!({"aggregate_id": "x"})).expect_err("missing");
        assert_eq!((e.code(), e.body().field.as_deref()), ("missing_field", Some("$.event_type")));
        assert_eq!(type_of(&json!({"event_type": 3})).expect_err("number").body().found, Some("number"));
        assert_eq!(type_of(&json!("x")).expect_err("string").body().field.as_deref(), Some("$"));
    }
}
