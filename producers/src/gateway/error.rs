//! What the gateway answers when it does not publish: a status and a machine-readable body.
//!
//! Every refusal, of a whole request or of one event in a batch, is an [`ApiError`]: an HTTP
//! status and `{"error": {"code": …, "message": …, "field": …, "expected": …, …}}`. Client
//! mistakes (4xx) name the place in the event (`field`, a JSON path as in
//! [`sluice_core::avro`]) and what was expected there; server-side trouble (503) says when to try
//! again (`Retry-After`). The mapping from the publisher's [`PublishError`] and the converter's
//! [`ConvertError`] lives here, pure, so every code is unit-tested.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sluice_core::avro::{ConvertError, ConvertErrorKind, EncodeError};
use sluice_core::inclusion::Behind;

use crate::{PublishError, RegistryError};

/// The body of a refusal: `{"error": ErrorBody}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ErrorBody {
    /// A stable snake_case code (`wrong_type`, `unknown_event_type`, …).
    pub(crate) code: &'static str,
    /// A sentence for a person.
    pub(crate) message: String,
    /// Where in the event (`$.amount_cents`); for a missing or unknown field, the field itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) field: Option<String>,
    /// What the schema wanted there (`long`, `null or string`, an event type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expected: Option<String>,
    /// The JSON type found (`string`, `object`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) found: Option<&'static str>,
    /// The offending value, as JSON text (shortened), for scalars.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<String>,
    /// A likely intended field name, for an unknown one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) suggestion: Option<String>,
    /// The allowed values (enum symbols, event types the token may post).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) allowed: Option<Vec<String>>,
    /// The size that was too large, in bytes (413 `record_too_large`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) size_bytes: Option<usize>,
    /// The largest size taken, in bytes (413s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limit_bytes: Option<usize>,
    /// Seconds to wait before trying again (also in the `Retry-After` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after_seconds: Option<u64>,
    /// The refused event's `event_id` (single-event answers, once the event has one): after a
    /// 503, post the event again with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) event_id: Option<String>,
    /// The aggregate version a document holds (409 `not_yet` of a read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<i64>,
    /// Where a projection has not yet included a write (409 `not_yet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) behind: Option<Vec<Behind>>,
}

/// A refusal: status, body, and the headers that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    /// Boxed: refusals travel through every `Result` of the request path, and the happy path
    /// should not carry their size.
    pub(crate) body: Box<ErrorBody>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a ErrorBody,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: Box::new(ErrorBody {
                code,
                message: message.into(),
                field: None,
                expected: None,
                found: None,
                value: None,
                suggestion: None,
                allowed: None,
                size_bytes: None,
                limit_bytes: None,
                retry_after_seconds: None,
                event_id: None,
                version: None,
                behind: None,
            }),
        }
    }

    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    pub(crate) fn expected(mut self, expected: impl Into<String>) -> Self {
        self.body.expected = Some(expected.into());
        self
    }

    pub(crate) fn found(mut self, found: &'static str) -> Self {
        self.body.found = Some(found);
        self
    }

    pub(crate) fn value(mut self, value: Option<String>) -> Self {
        self.body.value = value;
        self
    }

    pub(crate) fn version(mut self, version: Option<i64>) -> Self {
        self.body.version = version;
        self
    }

    pub(crate) fn behind(mut self, behind: Vec<Behind>) -> Self {
        self.body.behind = Some(behind);
        self
    }

    pub(crate) fn allowed(mut self, allowed: Vec<String>) -> Self {
        self.body.allowed = Some(allowed);
        self
    }

    /// Sets the size and limit of a 413 (`size` unknown when 0).
    pub(crate) fn sizes(mut self, size: usize, limit: usize) -> Self {
        self.body.size_bytes = (size > 0).then_some(size);
        self.body.limit_bytes = Some(limit);
        self
    }

    /// Whether the client can fix it (4xx) rather than the gateway or its services (5xx).
    pub(crate) fn is_server_side(&self) -> bool {
        self.status.is_server_error()
    }

    /// Sets `Retry-After`, in whole seconds rounded up (at least 1).
    pub(crate) fn retry_after(mut self, after: Duration) -> Self {
        self.body.retry_after_seconds = Some(retry_seconds(after));
        self
    }

    /// The code, for metrics and logs.
    pub(crate) fn code(&self) -> &'static str {
        self.body.code
    }

    // The request-level refusals.

    pub(crate) fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub(crate) fn forbidden(principal: &str, event_type: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the token {principal:?} may not post {event_type:?} events"),
        )
        .field("$.event_type")
        .value(Some(quote(event_type)))
    }

    pub(crate) fn unknown_event_type(event_type: &str, allowed: Vec<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_event_type",
            format!("unknown event type {event_type:?}: the topology declares no such type"),
        )
        .field("$.event_type")
        .value(Some(quote(event_type)))
        .allowed(allowed)
    }

    pub(crate) fn backpressure(event_type: &str, retry_after: Duration) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "backpressure",
            format!("{event_type:?} events are refused for now: a projection they feed is too far behind"),
        )
        .retry_after(retry_after)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// A JSON value of the wrong kind at `path` (the body is not an object, the batch not an
    /// array).
    pub(crate) fn wrong_shape(path: &str, expected: &str, json: &serde_json::Value) -> Self {
        let found = json_type(json);
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "wrong_type", format!("{path}: expected {expected}, found {found}"))
            .field(path)
            .expected(expected)
            .found(found)
    }

    /// The error of a publish that did not happen.
    pub(crate) fn from_publish(e: &PublishError, retry_after: Duration) -> Self {
        let unavailable = |code: &'static str| {
            Self::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string()).retry_after(retry_after)
        };
        match e {
            PublishError::Invalid(convert) => Self::from_convert(convert),
            PublishError::UnknownEventType { event_type, .. } => Self::unknown_event_type(event_type, Vec::new()),
            PublishError::EventTypeMismatch { expected, found } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "event_type_mismatch", e.to_string())
                    .field("$.event_type")
                    .expected(expected.clone())
                    .found("string")
                    .value(Some(quote(found)))
            }
            PublishError::Payload(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_payload", e.to_string()),
            PublishError::AggregateIdTooLong { max, bytes } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "too_long", e.to_string())
                    .field("$.aggregate_id")
                    .expected(format!("at most {max} bytes (UTF-8)"))
                    .found("string")
                    .sizes(*bytes, *max)
            }
            // Too large for Kafka: whether found before sending or refused by the producer or
            // the broker, the event's own size, so 413 like a body over the limit.
            PublishError::RecordTooLarge { bytes, limit, .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "record_too_large", e.to_string())
                    .expected(format!("at most {limit} bytes as a Kafka record"))
                    .sizes(*bytes, *limit)
            }
            // Converted but not encodable: the converter let through a value the encoder
            // refuses. The value is the client's (422); the mismatch is logged as the bug it is.
            PublishError::Encode(EncodeError::Mismatch(_)) => {
                tracing::error!(error = %e, "an event passed conversion but not encoding: a converter bug");
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_event", e.to_string())
            }
            PublishError::Registry(RegistryError::Unavailable(_)) => unavailable("registry_unavailable"),
            // A deployment not finished yet (`sluice schemas register`, `sluice topics apply`):
            // the same request succeeds once it is.
            PublishError::Registry(RegistryError::NotRegistered { .. }) => unavailable("schema_not_registered"),
            PublishError::UnknownTopic(_) => unavailable("topic_missing"),
            PublishError::BrokerUnavailable(_) => unavailable("kafka_unavailable"),
            PublishError::QueueFull(_) => unavailable("kafka_overloaded"),
            PublishError::Backpressure { event_type, retry_after } => Self::backpressure(event_type, *retry_after),
            PublishError::Timeout(_) | PublishError::Canceled => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "publish_timeout",
                format!(
                    "{e}; the event may have been written: post it again with the same event_id \
                     (projections drop duplicates)"
                ),
            )
            .retry_after(retry_after),
            // New variants (and Kafka's own retriable refusals) fall back on the publisher's
            // verdict: retriable is 503, anything else a server-side bug or misconfiguration.
            other if other.is_retriable() => unavailable("unavailable"),
            other => Self::internal(other.to_string()),
        }
    }

    /// The error of an event that does not fit its schema (422, but 500 for a broken schema).
    pub(crate) fn from_convert(e: &ConvertError) -> Self {
        let path = e.path.as_str();
        let invalid = |code: &'static str| Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string()).field(path);
        match &e.kind {
            ConvertErrorKind::MissingField { name } => invalid("missing_field").field(child(path, name)),
            ConvertErrorKind::UnknownField { name, suggestion } => {
                let mut err = invalid("unknown_field").field(child(path, name));
                err.body.suggestion.clone_from(suggestion);
                err
            }
            ConvertErrorKind::WrongType { expected, found, value } => {
                invalid("wrong_type").expected(expected.clone()).found(found).value(value.clone())
            }
            ConvertErrorKind::OutOfRange { expected, value } => {
                invalid("out_of_range").expected(expected.clone()).value(Some(value.clone()))
            }
            ConvertErrorKind::InvalidEnumSymbol { symbol, allowed } => {
                invalid("invalid_enum_symbol").value(Some(symbol.clone())).allowed(allowed.clone())
            }
            ConvertErrorKind::InvalidUuid { value, .. } => {
                invalid("invalid_uuid").expected("uuid").value(Some(value.clone()))
            }
            ConvertErrorKind::InvalidTimestamp { value, .. } => invalid("invalid_timestamp")
                .expected("RFC 3339 date-time or integer since the epoch")
                .value(Some(value.clone())),
            ConvertErrorKind::InvalidTime { value, .. } => invalid("invalid_time")
                .expected("HH:MM:SS with any fraction, or integer since midnight")
                .value(Some(value.clone())),
            ConvertErrorKind::InvalidDate { value, .. } => invalid("invalid_date")
                .expected("YYYY-MM-DD or integer days since 1970-01-01")
                .value(Some(value.clone())),
            ConvertErrorKind::InvalidBytes { value, .. } => {
                invalid("invalid_bytes").expected("hex string").value(Some(value.clone()))
            }
            ConvertErrorKind::InvalidDecimal { value, .. } => {
                invalid("invalid_decimal").expected("decimal").value(Some(value.clone()))
            }
            ConvertErrorKind::NoUnionBranch { tried, found, value } => {
                invalid("no_union_branch").expected(tried.join(" or ")).found(found).value(value.clone())
            }
            // The schema itself is broken: not the client's fault.
            ConvertErrorKind::InvalidDefault { .. }
            | ConvertErrorKind::UnresolvedRef { .. }
            | ConvertErrorKind::InvalidSchema { .. } => Self::internal(format!("the event type's schema: {e}")),
        }
    }

    /// The JSON of `{"error": …}` alone (for a batch's per-event result).
    pub(crate) fn body(&self) -> &ErrorBody {
        &self.body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Envelope { error: &self.body }).unwrap_or_default();
        let mut response =
            (self.status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.body.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"sluice\""));
        }
        response
    }
}

/// `Retry-After` seconds: rounded up, at least 1 (0 would invite a retry storm).
pub(crate) fn retry_seconds(after: Duration) -> u64 {
    (after.as_secs() + u64::from(after.subsec_nanos() > 0)).max(1)
}

/// The path of field `name` in the record at `path`, spelled like the converter spells paths.
fn child(path: &str, name: &str) -> String {
    let identifier = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier { format!("{path}.{name}") } else { format!("{path}[{}]", quote(name)) }
}

fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

pub(crate) fn json_type(json: &serde_json::Value) -> &'static str {
    match json {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(path: &str, kind: ConvertErrorKind) -> ApiError {
        ApiError::from_convert(&ConvertError { path: path.to_owned(), kind })
    }

    #[test]
    fn convert_errors_name_the_field_and_what_was_expected() {
        let e = convert(
            "$.items[0]",
            ConvertErrorKind::WrongType { expected: "long".into(), found: "string", value: Some("\"12\"".into()) },
        );
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            serde_json::to_value(e.body()).expect("json"),
            serde_json::json!({
                "code": "wrong_type", "message": "$.items[0]: expected long, found string \"12\"",
                "field": "$.items[0]", "expected": "long", "found": "string", "value": "\"12\""
            })
        );
        let e = convert("$", ConvertErrorKind::MissingField { name: "order_id".into() });
        assert_eq!((e.code(), e.body.field.as_deref()), ("missing_field", Some("$.order_id")));
        let e = convert(
            "$.meta",
            ConvertErrorKind::UnknownField { name: "order id".into(), suggestion: Some("order_id".into()) },
        );
        assert_eq!(e.body.field.as_deref(), Some("$.meta[\"order id\"]"));
        assert_eq!(e.body.suggestion.as_deref(), Some("order_id"));
        let e = convert("$", ConvertErrorKind::InvalidSchema { reason: "x".into() });
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn server_trouble_is_503_with_retry_after_and_a_refusal_429() {
        let after = Duration::from_millis(2500);
        let e = ApiError::from_publish(&PublishError::Timeout(Duration::from_secs(10)), after);
        assert_eq!(
            (e.status, e.code(), e.body.retry_after_seconds),
            (StatusCode::SERVICE_UNAVAILABLE, "publish_timeout", Some(3))
        );
        assert!(e.body.message.contains("same event_id"), "{}", e.body.message);
        let e = ApiError::from_publish(&PublishError::Registry(RegistryError::Unavailable("down".into())), after);
        assert_eq!((e.status, e.code()), (StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable"));
        let e = ApiError::from_publish(&PublishError::Config("bad".into()), after);
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        let response = ApiError::backpressure("user.registered", Duration::ZERO).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = ApiError::unauthorized("no token").into_response();
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn an_events_size_is_the_clients_never_a_5xx() {
        let e = ApiError::from_publish(
            &PublishError::RecordTooLarge { topic: "t".into(), bytes: 1_040_036, limit: 1_000_000 },
            Duration::from_secs(1),
        );
        assert_eq!((e.status, e.code()), (StatusCode::PAYLOAD_TOO_LARGE, "record_too_large"));
        assert_eq!((e.body.size_bytes, e.body.limit_bytes), (Some(1_040_036), Some(1_000_000)));
        assert!(e.body.message.contains("1040036 bytes") && e.body.message.contains("1000000"), "{}", e.body.message);
        let e = ApiError::from_publish(&PublishError::AggregateIdTooLong { bytes: 600_000, max: 200 }, Duration::ZERO);
        assert_eq!(
            (e.status, e.code(), e.body.field.as_deref()),
            (StatusCode::UNPROCESSABLE_ENTITY, "too_long", Some("$.aggregate_id"))
        );
        assert!(!e.is_server_side());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_seconds(Duration::ZERO), 1);
        assert_eq!(retry_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_seconds(Duration::from_secs(5)), 5);
        assert_eq!(retry_seconds(Duration::from_millis(5001)), 6);
    }
}
