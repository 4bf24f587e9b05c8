//! `GET /v1/projections/{projection}/documents/{key}?after=TOKEN&wait=5s`: a projection's
//! document, read only once the projection includes the write the consistency token names.
//!
//! The gateway knows no sink: what reads the document is a [`DocumentReads`] handed to it
//! ([`super::GatewayState::with_reads`]; `sluice gateway` gives it the Couchbase one when
//! Couchbase is configured). The answers:
//! - 200 `{projection, key, version, document}`: the document, including the write;
//! - 409 `not_yet` (with `version`, the version the document holds, and `Retry-After`): the
//!   projection has not included the write within `wait` (at most 30 s, and at most the
//!   gateway's request timeout less a second) — never the stale document;
//! - 404 `not_found`: the projection includes the write and has no such document;
//! - 400 `token_*`: a token that is malformed, or cannot be about this projection;
//! - 403: the bearer token lacks the scope `projection:<name>` (or a glob matching it);
//! - 501 `reads_disabled`: this gateway serves no reads.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sluice_core::consistency::ConsistencyToken;

use super::GatewayState;
use super::error::ApiError;

/// Longest `wait` a request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// `wait` when the request names none.
const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// What a read found.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadOutcome {
    /// The document, including every write of the token.
    Found {
        /// The document (bookkeeping included).
        document: Json,
        /// The aggregate version it holds, if it records one.
        version: Option<i64>,
    },
    /// The projection includes the token and has no such document.
    NotFound,
    /// The projection did not include the token in time.
    NotYet {
        /// The version the document holds now (`None`: no document yet).
        version: Option<i64>,
        /// Where it is behind, e.g. `users/1 at 5310 (committed 5290)`.
        behind: String,
    },
}

/// Why a read could not be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// No such projection, or not one whose documents can be read.
    UnknownProjection(String),
    /// The token cannot be about this projection (names no topic it reads, a partition the topic
    /// lacks, an offset past the end).
    Token {
        /// A stable code (`token_foreign`, `token_partition`, `token_beyond_end`).
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Kafka or the sink did not answer: try again.
    Unavailable(String),
}

/// Reads projection documents for the gateway. Implemented where the sinks live.
pub trait DocumentReads: Send + Sync + fmt::Debug {
    /// Reads `key` of `projection`, first waiting up to `wait` for `after` to be included.
    fn read<'a>(
        &'a self,
        projection: &'a str,
        key: &'a str,
        after: Option<&'a ConsistencyToken>,
        wait: Duration,
    ) -> BoxFuture<'a, Result<ReadOutcome, ReadError>>;
}

/// The query of a read.
#[derive(Debug, Deserialize)]
pub(crate) struct ReadQuery {
    after: Option<String>,
    wait: Option<String>,
}

#[derive(Debug, Serialize)]
struct Document<'a> {
    projection: &'a str,
    key: &'a str,
    version: Option<i64>,
    document: Json,
}

/// The handler.
pub(crate) async fn get_document(
    State(gw): State<Arc<GatewayState>>,
    Path((projection, key)): Path<(String, String)>,
    Query(query): Query<ReadQuery>,
    headers: HeaderMap,
) -> Response {
    match read(&gw, &projection, &key, &query, &headers).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn read(
    gw: &GatewayState,
    projection: &str,
    key: &str,
    query: &ReadQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let principal = gw.authenticate(headers)?;
    let scope = format!("projection:{projection}");
    if !principal.allows(&scope) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "the token {:?} may not read projection {projection:?} (it needs the scope {scope:?})",
                principal.name()
            ),
        ));
    }
    let reads = gw.reads.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "reads_disabled",
            "this gateway serves no reads: configure Couchbase (SLUICE_COUCHBASE_*) for it",
        )
    })?;
    // The request's own deadline (`request_timeout`, plus the backstop's margin) bounds the wait:
    // "not yet" must come back before the gateway would cut the request off with a 503.
    let wait = parse_wait(query.wait.as_deref())?.min(gw.config.request_timeout.saturating_sub(Duration::from_secs(1)));
    let token =
        match &query.after {
            None => None,
            Some(text) => Some(text.parse::<ConsistencyToken>().map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, e.code(), format!("`after`: {e}")).field("after")
            })?),
        };
    match reads.read(projection, key, token.as_ref(), wait).await {
        Ok(ReadOutcome::Found { document, version }) => {
            Ok(axum::Json(Document { projection, key, version, document }).into_response())
        }
        Ok(ReadOutcome::NotFound) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("projection {projection:?} has no document {key:?}"),
        )),
        Ok(ReadOutcome::NotYet { version, behind }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_yet",
            format!("projection {projection:?} has not included the write within {wait:?} (behind: {behind})"),
        )
        .version(version)
        .retry_after(Duration::from_secs(1))),
        Err(ReadError::UnknownProjection(why)) => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_projection", why)),
        Err(ReadError::Token { code, message }) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, code, message).field("after"))
        }
        Err(ReadError::Unavailable(why)) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why).retry_after(Duration::from_secs(1)))
        }
    }
}

fn parse_wait(text: Option<&str>) -> Result<Duration, ApiError> {
    let Some(text) = text else { return Ok(DEFAULT_WAIT) };
    let bad = |why: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_wait", why).field("wait");
    let wait: Duration = text
        .parse::<sluice_core::topology::HumanDuration>()
        .map(Into::into)
        .map_err(|e| bad(format!("`wait`: {e}")))?;
    if wait > MAX_WAIT {
        return Err(bad(format!("`wait` is at most {MAX_WAIT:?}")));
    }
    Ok(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_bounded_and_defaults_to_five_seconds() {
        assert_eq!(parse_wait(None).expect("default"), Duration::from_secs(5));
        assert_eq!(parse_wait(Some("250ms")).expect("ms"), Duration::from_millis(250));
        assert_eq!(parse_wait(Some("31s")).expect_err("too long").code(), "bad_wait");
        assert_eq!(parse_wait(Some("soon")).expect_err("not a duration").code(), "bad_wait");
    }
}
