//! Reading projections back with a consistency token: a document only once it includes the
//! write the token names, and whether a projection (an analytics one, say) is past it yet.
//!
//! `GET /v1/projections/{projection}/documents/{key}?after=TOKEN&wait=5s`:
//! - 200 `{projection, key, version, document}`: the document, including the write;
//! - 409 `not_yet` (with `version`, the version the document holds, `behind`, and `Retry-After`):
//!   the projection has not included the write within `wait` — never the stale document;
//! - 404 `not_found`: the projection includes the write and has no such document;
//! - 410 `gone` (with `version`): the aggregate was erased (its tombstone's version).
//!
//! `GET /v1/projections/{projection}/progress?after=TOKEN&wait=5s`:
//! - 200 `{projection, included: true}` once the projection's committed offsets are past every
//!   write of the token (for any projection: its sink acknowledged them);
//! - 409 `not_yet` with `behind` (per partition: the token's offset and the committed one).
//!
//! Both: `wait` is at most 30 s, and at most the gateway's request timeout less a second;
//! 400 `token_*` for a token that is malformed or cannot be about this projection; 403 when the
//! bearer token lacks the scope `projection:<name>` (or a glob matching it); 404
//! `unknown_projection`; 501 `reads_disabled` when this gateway serves no reads.
//!
//! The gateway knows no sink: what answers is a [`ProjectionReads`] handed to it
//! ([`super::GatewayState::with_reads`]; `sluice gateway` gives it sluice's, which waits on a
//! shared reader of the committed offsets and reads documents from Couchbase when configured).

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
use sluice_core::inclusion::{Behind, Inclusion};
use tokio::time::{Instant, timeout_at};

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
    /// The projection includes the token and the aggregate was erased.
    Gone {
        /// The version its tombstone records.
        version: Option<i64>,
    },
    /// The projection did not include the token in time.
    NotYet {
        /// The version the document holds now (`None`: no document yet).
        version: Option<i64>,
        /// Where it is behind.
        behind: Vec<Behind>,
    },
}

/// Why a read could not be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// No such projection, or not one whose documents can be read.
    UnknownProjection(String),
    /// This reader reads no documents (no document store configured).
    Disabled(String),
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

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownProjection(why) | Self::Disabled(why) | Self::Unavailable(why) => f.write_str(why),
            Self::Token { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads projections for the gateway. Implemented where the sinks live.
pub trait ProjectionReads: Send + Sync + fmt::Debug {
    /// Reads `key` of `projection`, first waiting up to `wait` for `after` to be included.
    fn read<'a>(
        &'a self,
        projection: &'a str,
        key: &'a str,
        after: Option<&'a ConsistencyToken>,
        wait: Duration,
    ) -> BoxFuture<'a, Result<ReadOutcome, ReadError>>;

    /// Waits up to `wait` for `projection` to include `after`; where it stands then.
    fn progress<'a>(
        &'a self,
        projection: &'a str,
        after: &'a ConsistencyToken,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Inclusion, ReadError>>;
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

#[derive(Debug, Serialize)]
struct Included<'a> {
    projection: &'a str,
    included: bool,
}

/// `GET …/documents/{key}`.
pub(crate) async fn get_document(
    State(gw): State<Arc<GatewayState>>,
    Path((projection, key)): Path<(String, String)>,
    Query(query): Query<ReadQuery>,
    headers: HeaderMap,
) -> Response {
    answer(&gw, read_document(&gw, &projection, &key, &query, &headers).await)
}

/// `GET …/progress`.
pub(crate) async fn get_progress(
    State(gw): State<Arc<GatewayState>>,
    Path(projection): Path<String>,
    Query(query): Query<ReadQuery>,
    headers: HeaderMap,
) -> Response {
    answer(&gw, read_progress(&gw, &projection, &query, &headers).await)
}

/// The response; a refusal that is the gateway's or its services' (5xx) is logged with its cause,
/// as the write routes' are.
fn answer(gw: &GatewayState, result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| {
        gw.failures.note(&e, None);
        e.into_response()
    })
}

/// What every read checks first: the caller's scope, that reads are served, the wait and token;
/// and the deadline it answers by.
struct Request<'g> {
    reads: &'g dyn ProjectionReads,
    wait: Duration,
    token: Option<ConsistencyToken>,
    deadline: Instant,
}

fn request<'g>(
    gw: &'g GatewayState,
    projection: &str,
    query: &ReadQuery,
    headers: &HeaderMap,
) -> Result<Request<'g>, ApiError> {
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
    let reads = gw.reads.as_deref().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_IMPLEMENTED, "reads_disabled", "this gateway serves no reads of projections")
    })?;
    // The request's deadline (`request_timeout` from now) bounds the read; the wait ends a second
    // before it, which leaves the store that second to answer.
    let deadline = Instant::now() + gw.config.request_timeout;
    let wait = parse_wait(query.wait.as_deref())?.min(gw.config.request_timeout.saturating_sub(Duration::from_secs(1)));
    let token =
        match &query.after {
            None => None,
            Some(text) => Some(text.parse::<ConsistencyToken>().map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, e.code(), format!("`after`: {e}")).field("after")
            })?),
        };
    Ok(Request { reads, wait, token, deadline })
}

async fn read_document(
    gw: &GatewayState,
    projection: &str,
    key: &str,
    query: &ReadQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Request { reads, wait, token, deadline } = request(gw, projection, query, headers)?;
    let read = reads.read(projection, key, token.as_ref(), wait);
    match by_deadline(gw.config.request_timeout, deadline, read).await? {
        ReadOutcome::Found { document, version } => {
            Ok(axum::Json(Document { projection, key, version, document }).into_response())
        }
        ReadOutcome::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("projection {projection:?} has no document {key:?}"),
        )),
        ReadOutcome::Gone { version } => Err(ApiError::new(
            StatusCode::GONE,
            "gone",
            format!("the aggregate of {key:?} was erased from projection {projection:?}"),
        )
        .version(version)),
        ReadOutcome::NotYet { version, behind } => Err(not_yet(projection, wait, behind).version(version)),
    }
}

async fn read_progress(
    gw: &GatewayState,
    projection: &str,
    query: &ReadQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Request { reads, wait, token, deadline } = request(gw, projection, query, headers)?;
    let token = token.ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "missing_after", "`after`: the consistency token to check is required")
            .field("after")
    })?;
    let inclusion = by_deadline(gw.config.request_timeout, deadline, reads.progress(projection, &token, wait)).await?;
    if inclusion.included() {
        Ok(axum::Json(Included { projection, included: true }).into_response())
    } else {
        Err(not_yet(projection, wait, inclusion.behind))
    }
}

/// 409 `not_yet`: the projection did not include the write within `wait`.
fn not_yet(projection: &str, wait: Duration, behind: Vec<Behind>) -> ApiError {
    let listed: Vec<String> = behind.iter().map(ToString::to_string).collect();
    ApiError::new(
        StatusCode::CONFLICT,
        "not_yet",
        format!("projection {projection:?} has not included the write within {wait:?} (behind: {})", listed.join(", ")),
    )
    .behind(behind)
    .retry_after(Duration::from_secs(1))
}

/// `read`'s answer, or 503 `read_timeout` once the request's deadline passes: the wait ends a
/// second before it, so this is a store (or Kafka) too slow to answer in the second left. A read
/// changes nothing, so asking again is always safe.
async fn by_deadline<T>(
    request_timeout: Duration,
    deadline: Instant,
    read: impl Future<Output = Result<T, ReadError>>,
) -> Result<T, ApiError> {
    match timeout_at(deadline, read).await {
        Ok(answer) => answer.map_err(refusal),
        Err(_elapsed) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "read_timeout",
            format!("the read did not finish within the request timeout ({request_timeout:?})"),
        )
        .retry_after(Duration::from_secs(1))),
    }
}

fn refusal(e: ReadError) -> ApiError {
    match e {
        ReadError::UnknownProjection(why) => ApiError::new(StatusCode::NOT_FOUND, "unknown_projection", why),
        ReadError::Disabled(why) => ApiError::new(StatusCode::NOT_IMPLEMENTED, "reads_disabled", why),
        ReadError::Token { code, message } => ApiError::new(StatusCode::BAD_REQUEST, code, message).field("after"),
        ReadError::Unavailable(why) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why).retry_after(Duration::from_secs(1))
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

    #[tokio::test]
    async fn a_read_answers_by_its_deadline_with_a_json_refusal() {
        let timeout = Duration::from_millis(100);
        let deadline = Instant::now() + timeout;
        let hung = by_deadline(timeout, deadline, futures::future::pending::<Result<(), ReadError>>()).await;
        let refusal = hung.expect_err("a read past its deadline");
        assert_eq!((refusal.status, refusal.code()), (StatusCode::SERVICE_UNAVAILABLE, "read_timeout"));
        assert_eq!(refusal.body.retry_after_seconds, Some(1));
        assert!(Instant::now() >= deadline, "answered before the deadline");

        let deadline = Instant::now() + timeout;
        assert_eq!(by_deadline(timeout, deadline, async { Ok(7) }).await.expect("in time"), 7);
        let down = by_deadline(timeout, deadline, async { Err::<(), _>(ReadError::Unavailable("down".into())) });
        assert_eq!(down.await.expect_err("unavailable").code(), "unavailable");
    }
}
