//! The one place Kafka clients get their connection settings, and the check that they work.
//!
//! Every client sluice creates — publisher, gateway, workers, DLQ producer, admin, lag monitor,
//! replay, rebuild, bench — starts from [`client_config`], so security settings reach all of them
//! or none. [`preflight`] connects once at a command's start: librdkafka retries a refused login or
//! an untrusted certificate forever, quietly, so without it a wrong password looks like a hang.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use sluice_core::connections::KafkaConnection;
use thiserror::Error;

/// A client configuration holding the brokers and every security setting; the caller adds its
/// role's settings (group id, acks, …) on top.
pub fn client_config(kafka: &KafkaConnection) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in kafka.client_properties() {
        config.set(key, value);
    }
    config
}

/// Why Kafka cannot be used. Names the brokers and the security in force, never a secret.
#[derive(Debug, Error)]
pub enum KafkaAccessError {
    /// librdkafka refused the configuration (an unknown property, a file it cannot load).
    #[error("Kafka ({brokers}): the client configuration is refused: {source}")]
    Config {
        /// The brokers.
        brokers: String,
        /// librdkafka's reason.
        source: KafkaError,
    },
    /// The brokers answered but refused us: bad credentials, an untrusted certificate, a name
    /// that does not match the certificate. Retrying will not help.
    #[error("Kafka ({brokers}; {security}): {reason}")]
    Refused {
        /// The brokers.
        brokers: String,
        /// Protocol, mechanism, user and trust, as [`KafkaConnection::describe`] gives them.
        security: String,
        /// librdkafka's reason.
        reason: String,
    },
}

/// What the preflight saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reached {
    /// The brokers answered with metadata: this many brokers.
    Brokers(usize),
    /// No answer within the window (brokers down or far away); the command goes on and its own
    /// retries take over.
    NoAnswer(String),
}

/// Connects once and fetches metadata within `window`, failing at once on what will not heal
/// (authentication, TLS trust, hostname). Blocking: call it from `spawn_blocking`.
pub fn preflight(kafka: &KafkaConnection, window: Duration) -> Result<Reached, KafkaAccessError> {
    let brokers = kafka.brokers.clone();
    let context = Capture::default();
    let mut config = client_config(kafka);
    // Only to find out; the client sends nothing.
    config.set("client.id", "sluice-preflight");
    let producer: BaseProducer<Capture> = config
        .create_with_context(context.clone())
        .map_err(|source| KafkaAccessError::Config { brokers: brokers.clone(), source })?;
    let deadline = Instant::now() + window;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match producer.client().fetch_metadata(None, Duration::from_millis(500)) {
            Ok(md) if !md.brokers().is_empty() => return Ok(Reached::Brokers(md.brokers().len())),
            Ok(_) => last = "no broker in the metadata".to_owned(),
            Err(e) => last = e.to_string(),
        }
        producer.poll(Duration::ZERO);
        if let Some(reason) = context.fatal() {
            return Err(KafkaAccessError::Refused { brokers, security: kafka.describe(), reason });
        }
        if let Some(reason) = context.last() {
            last = reason;
        }
    }
    Ok(Reached::NoAnswer(last))
}

/// Async [`preflight`] for a command's start: a refusal is an error, no answer only a warning.
pub async fn check_reachable(kafka: &KafkaConnection) -> Result<(), KafkaAccessError> {
    let kafka_for_task = kafka.clone();
    let reached = tokio::task::spawn_blocking(move || preflight(&kafka_for_task, PREFLIGHT_WINDOW))
        .await
        .unwrap_or_else(|e| Ok(Reached::NoAnswer(format!("the check did not finish: {e}"))))?;
    if let Reached::NoAnswer(reason) = reached {
        tracing::warn!(brokers = %kafka.brokers, reason = %reason, "Kafka did not answer yet; going on, clients retry");
    }
    Ok(())
}

/// How long a command's start waits for Kafka's first answer before going on without it. A
/// refused login arrives within ~100 ms on loopback, a TLS failure sooner.
pub const PREFLIGHT_WINDOW: Duration = Duration::from_secs(5);

/// A librdkafka global error: its code, if it has one, and its reason.
type GlobalError = (Option<RDKafkaErrorCode>, String);

/// Collects librdkafka's global errors for the preflight.
#[derive(Debug, Clone, Default)]
struct Capture {
    errors: Arc<Mutex<Vec<GlobalError>>>,
}

impl Capture {
    fn fatal(&self) -> Option<String> {
        let errors = self.errors.lock().ok()?;
        errors.iter().find(|(code, reason)| is_refusal(*code, reason)).map(|(_, reason)| reason.clone())
    }

    fn last(&self) -> Option<String> {
        self.errors.lock().ok()?.last().map(|(_, reason)| reason.clone())
    }
}

impl ProducerContext for Capture {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl ClientContext for Capture {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut errors) = self.errors.lock() {
            errors.push((error.rdkafka_error_code(), reason.to_owned()));
        }
    }
}

/// Whether a librdkafka error means the brokers refused us (credentials, certificate trust,
/// hostname), as opposed to not answering. librdkafka reports TLS failures as transport errors
/// whose reason says so, hence the look at the text.
pub fn is_refusal(code: Option<RDKafkaErrorCode>, reason: &str) -> bool {
    const MARKS: &[&str] = &[
        "SSL handshake failed",
        "certificate verify failed",
        // The broker refused our certificate (mutual TLS): an alert in the first read after the handshake.
        "alert bad certificate",
        "alert certificate required",
        "alert unknown ca",
        "SASL authentication",
        "Authentication failed",
    ];
    matches!(code, Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed))
        || MARKS.iter().any(|m| reason.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_from_silence() {
        assert!(is_refusal(Some(RDKafkaErrorCode::Authentication), "whatever"));
        assert!(is_refusal(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "ssl://127.0.0.1:19094/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed"
        ));
        assert!(is_refusal(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "ssl://127.0.0.1:19095/bootstrap: Receive failed: error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42"
        ));
        assert!(!is_refusal(Some(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down"));
        assert!(!is_refusal(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "Connect to ipv4#127.0.0.1:1 failed: Connection refused"
        ));
    }

    #[test]
    fn every_setting_reaches_the_client_config() {
        let kafka = KafkaConnection::plaintext("k:1");
        let config = client_config(&kafka);
        assert_eq!(config.get("bootstrap.servers"), Some("k:1"));
    }

    #[test]
    fn a_bad_property_is_a_config_error_naming_the_brokers() {
        let dir = std::env::temp_dir().join(format!("sluice-preflight-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("client.properties");
        std::fs::write(&file, "no.such.property=1\n").expect("write");
        let env = sluice_core::Env::from_vars([
            ("SLUICE_KAFKA_BROKERS".to_owned(), "127.0.0.1:1".to_owned()),
            ("SLUICE_KAFKA_PROPERTIES_FILE".to_owned(), file.display().to_string()),
        ]);
        let kafka = KafkaConnection::from_env(&env).expect("parsed");
        let err = preflight(&kafka, Duration::from_millis(10)).expect_err("unknown property").to_string();
        assert!(err.starts_with("Kafka (127.0.0.1:1): the client configuration is refused"), "{err}");
        assert!(err.contains("no.such.property"), "{err}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
