//! The schema registry, through its Confluent API: the calls producers and `sluice schemas` make.
//!
//! Schemas go in (register under a subject, set the subject's compatibility level) and ids and
//! versions come back; the publisher asks once per event type for the id it frames events with.
//! Registration and lookups use schema_registry_converter (`post_schema`, `POST
//! /subjects/<subject>`), which lacks the config and compatibility-against-latest calls, so those
//! two go through reqwest. Tested against Apicurio 3 (its `ccompat/v7` API), which gives the same
//! schema the same id under every subject.

use std::error::Error as _;
use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_all_subjects, get_all_versions, get_schema_by_subject_and_version, perform_sr_call, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{RawError, SchemaType, SrCall, SuppliedSchema};
use serde::Deserialize;
use sluice_core::connections::{RegistryAuth, RegistryConnection};
use sluice_core::topology::Compatibility;

use crate::RegistryError;

mod connect;

pub use connect::{is_refusal, sr_settings, tls_client_builder};

/// A schema registered under a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    /// The subject.
    pub subject: String,
    /// The version within the subject (1, 2, …).
    pub version: u32,
    /// The registry-wide schema id (what the Confluent frame carries).
    pub id: u32,
    /// The schema text as the registry keeps it.
    pub schema: String,
}

/// A client of one registry.
#[derive(Debug, Clone)]
pub struct Registry {
    settings: SrSettings,
    http: reqwest::Client,
    base_url: String,
    auth: RegistryAuth,
}

/// What a registry call failed with, once the response is read.
enum Failure {
    /// 404: no such subject, or the schema is not under it.
    NotFound,
    Other(RegistryError),
}

/// The status-like code of a failed call: the registry's `error_code` (40401, 409, …) when it
/// sent an error body.
fn classify(e: &SRCError, subject: &str) -> Failure {
    let chain = format!("{}: {}", describe(e), e.source().map(error_chain).unwrap_or_default());
    if is_refusal(&chain) {
        return Failure::Other(RegistryError::Refused(chain));
    }
    let raw = e.source().and_then(|s| s.downcast_ref::<RawError>());
    match raw {
        Some(raw) if raw.error_code == 404 || (40_400..40_500).contains(&raw.error_code) => Failure::NotFound,
        Some(raw) if raw.error_code == 409 || (40_900..41_000).contains(&raw.error_code) => {
            Failure::Other(RegistryError::Incompatible { subject: subject.to_owned(), message: raw.message.clone() })
        }
        Some(raw) if (500..600).contains(&raw.error_code) || raw.error_code >= 50_000 => {
            Failure::Other(RegistryError::Unavailable(raw.message.clone()))
        }
        Some(raw) if !e.retriable => Failure::Other(RegistryError::Rejected(format!("{}: {}", e.error, raw.message))),
        _ if e.retriable => Failure::Other(RegistryError::Unavailable(describe(e))),
        _ => Failure::Other(RegistryError::Rejected(describe(e))),
    }
}

/// Runs a registry call, trying it again twice when `unanswered` says the registry could not be
/// reached at all (a reset or refused connection, no answer in time — e.g. a pooled keep-alive
/// connection the server just closed, or a registry stalled under load): every call of this
/// client is idempotent (registering the same schema returns its id). An answer from the registry
/// (an error body) or a refusal (bad credentials or certificate) is final.
async fn retrying<T, E, F, Fut>(call: F, unanswered: impl Fn(&E) -> bool) -> Result<T, E>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 0u32;
    loop {
        match call().await {
            Err(e) if attempt < 2 && unanswered(&e) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt))).await;
            }
            done => return done,
        }
    }
}

/// Whether a failed schema_registry_converter call never got an answer from the registry (and was
/// not refused).
fn unreached(e: &SRCError) -> bool {
    let answered = e.source().is_some_and(|s| s.downcast_ref::<RawError>().is_some());
    e.retriable
        && !answered
        && !is_refusal(&format!("{}: {}", describe(e), e.source().map(error_chain).unwrap_or_default()))
}

fn describe(e: &SRCError) -> String {
    match &e.cause {
        Some(cause) => format!("{}: {cause}", e.error),
        None => e.error.clone(),
    }
}

/// An error with its causes ("error sending request" alone does not say why).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn escape(subject: &str) -> String {
    subject.replace('/', "%2F")
}

#[derive(Deserialize)]
struct ConfigBody {
    #[serde(rename = "compatibilityLevel", alias = "compatibility")]
    level: String,
}

#[derive(Deserialize)]
struct CompatibilityBody {
    is_compatible: bool,
}

impl Registry {
    /// A client of the registry at `url` (the Confluent API base, e.g.
    /// `http://127.0.0.1:18081/apis/ccompat/v7`); every call gives up after `timeout`.
    pub fn new(conn: &RegistryConnection, timeout: Duration) -> Result<Self, RegistryError> {
        let base_url = conn.url.trim_end_matches('/').to_owned();
        let settings = sr_settings(conn, timeout)?;
        let http = connect::http_client(conn, timeout)?;
        Ok(Self { settings, http, base_url, auth: conn.auth.clone() })
    }

    /// The registry's URL.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// The version of `subject` whose schema is `schema` (an Avro schema text), if registered.
    pub async fn lookup(&self, subject: &str, schema: &str) -> Result<Option<SubjectVersion>, RegistryError> {
        let body = serde_json::json!({"schema": schema, "schemaType": "AVRO"}).to_string();
        match retrying(|| perform_sr_call(&self.settings, SrCall::PostForVersion(subject, &body)), unreached).await {
            Ok(raw) => match (raw.version, raw.id) {
                (Some(version), Some(id)) => Ok(Some(SubjectVersion {
                    subject: subject.to_owned(),
                    version,
                    id,
                    schema: raw.schema.unwrap_or_else(|| schema.to_owned()),
                })),
                _ => Err(RegistryError::Rejected(format!("lookup in {subject}: the answer has no version or id"))),
            },
            Err(e) => match classify(&e, subject) {
                Failure::NotFound => Ok(None),
                Failure::Other(e) => Err(e),
            },
        }
    }

    /// Registers `schema` under `subject` and returns its id: a new version when it is new to the
    /// subject (the registry checks the subject's compatibility level first), the existing id
    /// when it is already registered.
    pub async fn register(&self, subject: &str, schema: &str, record_name: &str) -> Result<u32, RegistryError> {
        let supplied = SuppliedSchema::new(Some(record_name.to_owned()), SchemaType::Avro, schema.to_owned());
        match retrying(|| post_schema(&self.settings, subject.to_owned(), supplied.clone()), unreached).await {
            Ok(registered) => Ok(registered.id),
            Err(e) => match classify(&e, subject) {
                Failure::NotFound => Err(RegistryError::Rejected(format!("register in {subject}: {}", describe(&e)))),
                Failure::Other(e) => Err(e),
            },
        }
    }

    /// The latest version of `subject`; `None` for a subject that does not exist.
    pub async fn latest(&self, subject: &str) -> Result<Option<SubjectVersion>, RegistryError> {
        self.version(subject, None).await
    }

    /// Version `version` of `subject` (the latest when `None`); `None` when there is no such
    /// subject or version.
    pub async fn version(&self, subject: &str, version: Option<u32>) -> Result<Option<SubjectVersion>, RegistryError> {
        match retrying(|| get_schema_by_subject_and_version(&self.settings, subject, version), unreached).await {
            Ok(s) => Ok(Some(SubjectVersion {
                subject: subject.to_owned(),
                version: s.version.or(version).unwrap_or_default(),
                id: s.id,
                schema: s.schema,
            })),
            Err(e) => match classify(&e, subject) {
                Failure::NotFound => Ok(None),
                Failure::Other(e) => Err(e),
            },
        }
    }

    /// Every version number of `subject`, oldest first; empty for a subject that does not exist.
    pub async fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        match retrying(|| get_all_versions(&self.settings, subject.to_owned()), unreached).await {
            Ok(mut versions) => {
                versions.sort_unstable();
                Ok(versions)
            }
            Err(e) => match classify(&e, subject) {
                Failure::NotFound => Ok(Vec::new()),
                Failure::Other(e) => Err(e),
            },
        }
    }

    /// Every subject of the registry, in the registry's order.
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        retrying(|| get_all_subjects(&self.settings), unreached).await.map_err(|e| match classify(&e, "") {
            Failure::NotFound => RegistryError::Rejected(format!("listing the subjects: {}", describe(&e))),
            Failure::Other(e) => e,
        })
    }

    /// The registry's global compatibility level (`GET /config`), which applies to every subject
    /// without a level of its own; `None` when the registry has none.
    pub async fn global_compatibility(&self) -> Result<Option<String>, RegistryError> {
        let url = format!("{}/config", self.base_url);
        match self.send(|| self.http.get(&url), "").await? {
            None => Ok(None),
            Some(body) => serde_json::from_str::<ConfigBody>(&body)
                .map(|c| Some(c.level))
                .map_err(|e| RegistryError::Rejected(format!("unexpected config answer {body:?}: {e}"))),
        }
    }

    /// Sets the compatibility level of `subject` (allowed before its first version).
    pub async fn set_compatibility(&self, subject: &str, level: Compatibility) -> Result<(), RegistryError> {
        let url = format!("{}/config/{}", self.base_url, escape(subject));
        let body = serde_json::json!({"compatibility": level.as_str()});
        // Two processes configuring a brand-new subject at once race in Apicurio ("A rule named
        // 'COMPATIBILITY' already exists"): the loser's second PUT updates the rule that now exists.
        let mut attempt = 0u32;
        loop {
            match self.send(|| self.http.put(&url).json(&body), subject).await {
                Err(RegistryError::Rejected(message) | RegistryError::Incompatible { message, .. })
                    if attempt < 3 && message.contains("already exists") =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt))).await;
                }
                other => return other.map(drop),
            }
        }
    }

    /// The compatibility level set on `subject` itself; `None` when it has none of its own (the
    /// registry's global level applies).
    pub async fn compatibility(&self, subject: &str) -> Result<Option<String>, RegistryError> {
        let url = format!("{}/config/{}", self.base_url, escape(subject));
        match self.send(|| self.http.get(&url), subject).await? {
            None => Ok(None),
            Some(body) => serde_json::from_str::<ConfigBody>(&body)
                .map(|c| Some(c.level))
                .map_err(|e| RegistryError::Rejected(format!("unexpected config answer {body:?}: {e}"))),
        }
    }

    /// The registry's verdict on `schema` as the next version of `subject` under the subject's
    /// level (against the latest version). It says only yes or no: see
    /// [`crate::admin::schemas::check`] for the reason. `None` for a subject without versions.
    pub async fn is_compatible(&self, subject: &str, schema: &str) -> Result<Option<bool>, RegistryError> {
        let url = format!("{}/compatibility/subjects/{}/versions/latest", self.base_url, escape(subject));
        let body = serde_json::json!({"schema": schema, "schemaType": "AVRO"}).to_string();
        let request = || {
            self.http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/vnd.schemaregistry.v1+json")
                .body(body.clone())
        };
        match self.send(request, subject).await? {
            None => Ok(None),
            Some(body) => serde_json::from_str::<CompatibilityBody>(&body)
                .map(|c| Some(c.is_compatible))
                .map_err(|e| RegistryError::Rejected(format!("unexpected compatibility answer {body:?}: {e}"))),
        }
    }

    /// Sends a reqwest call; `Ok(None)` on 404. A failure to reach the registry at all (refused
    /// or reset connection — e.g. a pooled keep-alive connection the server just closed — or no
    /// answer within the timeout, as when the registry stalls under load) is tried again twice:
    /// every call here is idempotent (registering the same schema returns its id).
    async fn send(
        &self,
        request: impl Fn() -> reqwest::RequestBuilder,
        subject: &str,
    ) -> Result<Option<String>, RegistryError> {
        let unreachable = |e: reqwest::Error| {
            let chain = error_chain(&e);
            if is_refusal(&chain) { RegistryError::Refused(chain) } else { RegistryError::Unavailable(chain) }
        };
        let response = retrying(
            || connect::authorize(request(), &self.auth).send(),
            |e: &reqwest::Error| !is_refusal(&error_chain(e)),
        )
        .await
        .map_err(unreachable)?;
        let status = response.status();
        let body = response.text().await.map_err(|e| RegistryError::Unavailable(e.to_string()))?;
        let message = || {
            serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_else(|| body.clone())
        };
        match status.as_u16() {
            200..=299 => Ok(Some(body)),
            404 => Ok(None),
            401 | 403 => Err(RegistryError::Refused(format!("{status}: {}", message()))),
            409 => Err(RegistryError::Incompatible { subject: subject.to_owned(), message: message() }),
            500..=599 => Err(RegistryError::Unavailable(format!("{status}: {}", message()))),
            _ => Err(RegistryError::Rejected(format!("{status}: {}", message()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    async fn attempts(error: impl Fn() -> SRCError) -> u32 {
        let calls = AtomicU32::new(0);
        let result: Result<(), SRCError> = retrying(
            || {
                calls.fetch_add(1, Ordering::Relaxed);
                let e = error();
                async move { Err(e) }
            },
            unreached,
        )
        .await;
        assert!(result.is_err());
        calls.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn a_registry_that_did_not_answer_is_asked_twice_more_and_an_answer_is_final() {
        let reset =
            || SRCError::retryable_with_cause(std::io::Error::other("connection reset by peer"), "http call failed");
        assert_eq!(attempts(reset).await, 3, "no answer: tried again twice");
        let answered = || {
            let raw: RawError =
                serde_json::from_value(serde_json::json!({"error_code": 50_001, "message": "store down"}))
                    .expect("a registry error body");
            SRCError::retryable_with_cause(raw, "http call failed")
        };
        assert_eq!(attempts(answered).await, 1, "the registry answered: final");
        let refused = || SRCError::retryable_with_cause(std::io::Error::other("401 Unauthorized"), "http call failed");
        assert_eq!(attempts(refused).await, 1, "refused: final");
        assert_eq!(attempts(|| SRCError::non_retryable_without_cause("bad schema")).await, 1);
    }
}
