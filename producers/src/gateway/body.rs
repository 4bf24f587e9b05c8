//! From the request body to JSON: content type, size limit, parse.
//!
//! The body is read here rather than by axum's `Json` extractor so every refusal has the
//! gateway's JSON shape: 415 for another content type, 413 past the route's limit (checked on
//! `Content-Length` first, so an announced oversized body is refused before a byte of it is read),
//! 408 for a client that sends too slowly, 400 for malformed JSON with its line and column.
//! Large bodies are parsed on the blocking pool: a 10 MiB batch takes tens of milliseconds to
//! parse, which would otherwise stall every request sharing the async worker.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value as Json;

use super::error::ApiError;

/// Bodies at least this large are parsed off the async workers.
const PARSE_OFF_THREAD_BYTES: usize = 256 * 1024;

/// Refuses a body that is not `application/json` (parameters such as `charset=utf-8` allowed,
/// and `application/<something>+json`).
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let essence = value.map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        Some(t) if t.starts_with("application/") && t.ends_with("+json") => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the body must be JSON (Content-Type: application/json), not {}", value.unwrap_or("unspecified")),
        )
        .expected("application/json")),
    }
}

/// Reads the whole body, at most `limit` bytes, within `timeout`.
pub(crate) async fn read(headers: &HeaderMap, body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than this endpoint's limit of {limit} bytes"),
        )
        .expected(format!("at most {limit} bytes"))
    };
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_elapsed) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the body did not arrive within {timeout:?}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "body_read_failed", format!("cannot read the body: {e}")))
        }
    }
}

/// Parses the body as JSON: 400 `malformed_json` with the line and column of the first problem.
pub(crate) async fn parse(bytes: Bytes) -> Result<Json, ApiError> {
    if bytes.len() < PARSE_OFF_THREAD_BYTES {
        return parse_now(&bytes);
    }
    tokio::task::spawn_blocking(move || parse_now(&bytes))
        .await
        .map_err(|e| ApiError::internal(format!("parsing the body: {e}")))?
}

fn parse_now(bytes: &[u8]) -> Result<Json, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not valid JSON: {e}"))
            .expected("a JSON document")
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn json_content_types_only() {
        assert!(check_content_type(&headers(&[(header::CONTENT_TYPE, "application/json")])).is_ok());
        assert!(check_content_type(&headers(&[(header::CONTENT_TYPE, "Application/JSON; charset=utf-8")])).is_ok());
        assert!(check_content_type(&headers(&[(header::CONTENT_TYPE, "application/vnd.sluice+json")])).is_ok());
        let e = check_content_type(&headers(&[(header::CONTENT_TYPE, "text/plain")])).expect_err("text");
        assert_eq!((e.status, e.code()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
        assert!(check_content_type(&HeaderMap::new()).is_err());
    }

    #[tokio::test]
    async fn limits_and_parse_errors() {
        let none = HeaderMap::new();
        let ok = read(&none, Body::from("[1,2]"), 5, Duration::from_secs(1)).await.expect("at the limit");
        assert_eq!(&ok[..], b"[1,2]");
        let e = read(&none, Body::from("[1,2,3]"), 5, Duration::from_secs(1)).await.expect_err("over");
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let announced = headers(&[(header::CONTENT_LENGTH, "6000000")]);
        let e = read(&announced, Body::empty(), 5, Duration::from_secs(1)).await.expect_err("announced");
        assert_eq!(e.code(), "payload_too_large");

        let e = parse(Bytes::from_static(b"{\"a\": 1,\n \"b\": }")).await.expect_err("malformed");
        assert_eq!((e.status, e.code()), (StatusCode::BAD_REQUEST, "malformed_json"));
        assert!(e.body().message.contains("line 2 column"), "{}", e.body().message);
        let big = format!("[{}0]", "1,".repeat(PARSE_OFF_THREAD_BYTES));
        let parsed = parse(Bytes::from(big)).await.expect("large bodies parse too");
        assert_eq!(parsed.as_array().map(Vec::len), Some(PARSE_OFF_THREAD_BYTES + 1));
    }
}
