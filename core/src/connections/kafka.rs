//! How every Kafka client sluice creates (publisher, gateway, workers, admin, lag monitor,
//! replay/rebuild, bench) connects: the brokers plus one list of librdkafka properties.
//!
//! The list is built in two layers: first `SLUICE_KAFKA_PROPERTIES_FILE`, a librdkafka properties
//! file passed through as it is (the `client.properties` a managed Kafka hands out, or any
//! property sluice has no variable for), then the `SLUICE_KAFKA_*` variables on top. A client then
//! adds its own role's settings (group id, acks, …), which the file may not set: sluice's delivery
//! guarantees rest on them, so such a key is refused rather than silently overwritten.
//!
//! Hostname verification is on unless `SLUICE_KAFKA_TLS_VERIFY_HOSTNAME=false` says otherwise.

use std::path::{Path, PathBuf};

use super::{Env, EnvError, Secret, TlsFiles};

/// Keys each client sets for its role; the properties file may not override them.
const RESERVED: &[(&str, &str)] = &[
    ("group.id", "each worker, replay and rebuild names its own consumer group"),
    ("group.instance.id", "set with `sluice work --instance-id`"),
    ("enable.auto.commit", "offsets are committed only after the sink acknowledged"),
    ("enable.auto.offset.store", "offsets are stored only after the sink acknowledged"),
    ("auto.offset.reset", "set per command (workers, replay and rebuild each choose)"),
    ("isolation.level", "set per command"),
    ("enable.idempotence", "the publisher requires it"),
    ("acks", "the publisher requires acks=all"),
    ("transactional.id", "sluice does not use transactions"),
    ("partition.assignment.strategy", "workers use cooperative-sticky"),
];

/// Keys of other clients that a copied properties file often carries, with what to do instead.
const FOREIGN: &[(&str, &str)] = &[
    (
        "sasl.jaas.config",
        "a Java client setting: give librdkafka sasl.username and sasl.password (or SLUICE_KAFKA_SASL_USERNAME / _PASSWORD)",
    ),
    ("schema.registry.url", "set SLUICE_SCHEMA_REGISTRY_URL"),
    ("basic.auth.credentials.source", "set SLUICE_SCHEMA_REGISTRY_USERNAME and _PASSWORD"),
    ("basic.auth.user.info", "set SLUICE_SCHEMA_REGISTRY_USERNAME and _PASSWORD"),
    ("key.serializer", "a Java client setting; sluice frames records itself"),
    ("value.serializer", "a Java client setting; sluice frames records itself"),
];

/// The librdkafka property names the `SLUICE_KAFKA_*` variables set.
mod key {
    pub(super) const BROKERS: &str = "bootstrap.servers";
    pub(super) const PROTOCOL: &str = "security.protocol";
    pub(super) const MECHANISM: &str = "sasl.mechanisms";
    pub(super) const MECHANISM_ALIAS: &str = "sasl.mechanism";
    pub(super) const USERNAME: &str = "sasl.username";
    pub(super) const PASSWORD: &str = "sasl.password";
    pub(super) const CA: &str = "ssl.ca.location";
    pub(super) const CERT: &str = "ssl.certificate.location";
    pub(super) const KEY: &str = "ssl.key.location";
    pub(super) const KEY_PASSWORD: &str = "ssl.key.password";
    pub(super) const VERIFY_HOSTNAME: &str = "ssl.endpoint.identification.algorithm";
}

/// The security protocols librdkafka speaks.
const PROTOCOLS: &[&str] = &["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
/// The SASL mechanisms this build supports (GSSAPI/Kerberos needs a libsasl2 build it lacks).
const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

/// How to reach Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KafkaConnection {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// librdkafka properties every client gets (values may be secrets), `bootstrap.servers`
    /// excluded; later entries win.
    settings: Vec<(String, Secret)>,
    /// The properties file, if one was given (for `sluice doctor`).
    pub properties_file: Option<PathBuf>,
}

impl KafkaConnection {
    /// Plaintext brokers and nothing else (tests, and tools pointed at the dev rig).
    pub fn plaintext(brokers: impl Into<String>) -> Self {
        Self { brokers: brokers.into(), ..Self::default() }
    }

    /// Reads `SLUICE_KAFKA_*`. `brokers` may come from the properties file's `bootstrap.servers`
    /// when `SLUICE_KAFKA_BROKERS` is unset; an empty result is left for the caller to report.
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        let properties_file = env.readable_file("SLUICE_KAFKA_PROPERTIES_FILE")?;
        let mut settings = match &properties_file {
            Some(path) => read_properties(path)?,
            None => Vec::new(),
        };
        let from_file = take(&mut settings, key::BROKERS);
        let brokers = env.get("SLUICE_KAFKA_BROKERS").or(from_file.map(|s| s.expose().to_owned())).unwrap_or_default();
        let mut conn = Self { brokers, settings, properties_file };
        conn.apply_variables(env)?;
        conn.validate()?;
        Ok(conn)
    }

    /// The `SLUICE_KAFKA_*` variables over the file's properties.
    fn apply_variables(&mut self, env: &Env) -> Result<(), EnvError> {
        let tls = TlsFiles::from_env(env, "SLUICE_KAFKA")?;
        let username = env.get("SLUICE_KAFKA_SASL_USERNAME");
        let password = env.secret("SLUICE_KAFKA_SASL_PASSWORD")?;
        let protocol = match env.get("SLUICE_KAFKA_SECURITY_PROTOCOL") {
            Some(p) => Some(parse_protocol(&p)?),
            // Credentials given without a protocol: they are meant to be used, and never in the clear.
            None if username.is_some() && self.get(key::PROTOCOL).is_none() => Some("sasl_ssl"),
            None if !tls.is_empty() && self.get(key::PROTOCOL).is_none() => Some("ssl"),
            None => None,
        };
        if let Some(p) = protocol {
            self.set(key::PROTOCOL, p);
        }
        if let Some(m) = env.get("SLUICE_KAFKA_SASL_MECHANISM") {
            self.set(key::MECHANISM, parse_mechanism(&m)?);
        }
        if let Some(u) = username {
            self.set(key::USERNAME, u);
        }
        if let Some(p) = password {
            self.set_secret(key::PASSWORD, p);
        }
        let files = [(key::CA, &tls.ca_file), (key::CERT, &tls.cert_file), (key::KEY, &tls.key_file)];
        for (k, path) in files {
            if let Some(path) = path {
                self.set(k, path.display().to_string());
            }
        }
        if let Some(p) = env.secret("SLUICE_KAFKA_TLS_KEY_PASSWORD")? {
            self.set_secret(key::KEY_PASSWORD, p);
        }
        let verify = env.flag("SLUICE_KAFKA_TLS_VERIFY_HOSTNAME", true)?;
        self.set(key::VERIFY_HOSTNAME, if verify { "https" } else { "none" });
        Ok(())
    }

    /// What the settings must hold together: a SASL protocol names its mechanism, and PLAIN or
    /// SCRAM has a user and a password.
    fn validate(&self) -> Result<(), EnvError> {
        if !self.protocol().starts_with("sasl") {
            return Ok(());
        }
        let Some(mechanism) = self.get(key::MECHANISM) else {
            return Err(EnvError::invalid(
                "SLUICE_KAFKA_SASL_MECHANISM",
                format!(
                    "security protocol {} needs a SASL mechanism: one of {}",
                    self.protocol(),
                    MECHANISMS.join(", ")
                ),
            ));
        };
        if mechanism == "OAUTHBEARER" {
            return Ok(());
        }
        for (k, var) in [(key::USERNAME, "SLUICE_KAFKA_SASL_USERNAME"), (key::PASSWORD, "SLUICE_KAFKA_SASL_PASSWORD")] {
            if self.get(k).is_none() {
                return Err(EnvError::invalid(
                    var,
                    format!("SASL {mechanism} needs it (or {k} in the properties file)"),
                ));
            }
        }
        Ok(())
    }

    /// Every property a client starts from, `bootstrap.servers` first, secrets exposed: for
    /// handing to librdkafka only.
    pub fn client_properties(&self) -> Vec<(&str, &str)> {
        std::iter::once((key::BROKERS, self.brokers.as_str()))
            .chain(self.settings.iter().map(|(k, v)| (k.as_str(), v.expose())))
            .collect()
    }

    /// The security protocol in force (librdkafka's name, lower case).
    pub fn protocol(&self) -> String {
        self.get(key::PROTOCOL).unwrap_or("plaintext").to_ascii_lowercase()
    }

    /// Whether the connection is encrypted.
    pub fn uses_tls(&self) -> bool {
        self.protocol().ends_with("ssl")
    }

    /// Whether the broker's name is checked against its certificate.
    pub fn verifies_hostname(&self) -> bool {
        self.get(key::VERIFY_HOSTNAME).is_none_or(|v| !v.eq_ignore_ascii_case("none"))
            && self.get("enable.ssl.certificate.verification").is_none_or(|v| v != "false")
    }

    /// The CA file in use, if any.
    pub fn ca_file(&self) -> Option<&str> {
        self.get(key::CA)
    }

    /// The mechanism and user, e.g. `SCRAM-SHA-512 as "sluice"`; `None` without SASL. Never the
    /// password.
    pub fn sasl(&self) -> Option<String> {
        if !self.protocol().starts_with("sasl") {
            return None;
        }
        let mechanism = self.get(key::MECHANISM).unwrap_or("GSSAPI");
        Some(match self.get(key::USERNAME) {
            Some(user) => format!("{mechanism} as {user:?}"),
            None => mechanism.to_owned(),
        })
    }

    /// The TLS files the settings name (for a TLS probe of the brokers).
    pub fn tls_files(&self) -> TlsFiles {
        let path = |k| self.get(k).map(PathBuf::from);
        TlsFiles { ca_file: path(key::CA), cert_file: path(key::CERT), key_file: path(key::KEY) }
    }

    /// Whether a client certificate is presented (mutual TLS).
    pub fn client_certificate(&self) -> bool {
        self.get(key::CERT).is_some()
            || self.get("ssl.certificate.pem").is_some()
            || self.get("ssl.keystore.location").is_some()
    }

    /// One line for `sluice doctor` and logs: protocol, authentication, trust. No secret.
    pub fn describe(&self) -> String {
        let mut parts = vec![self.protocol().to_ascii_uppercase()];
        parts.extend(self.sasl().map(|s| format!("SASL {s}")));
        if self.client_certificate() {
            parts.push("client certificate".to_owned());
        }
        if self.uses_tls() {
            parts.push(match self.ca_file() {
                Some(ca) => format!("CA {ca}"),
                None => "system CAs".to_owned(),
            });
            parts.push(if self.verifies_hostname() { "hostname verified" } else { "hostname NOT verified" }.to_owned());
        }
        if let Some(file) = &self.properties_file {
            parts.push(format!("properties from {}", file.display()));
        }
        parts.join(", ")
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.settings.iter().rev().find(|(name, _)| name == k).map(|(_, v)| v.expose())
    }

    fn set(&mut self, k: &str, value: impl Into<String>) {
        self.set_secret(k, Secret::new(value));
    }

    fn set_secret(&mut self, k: &str, value: Secret) {
        self.settings.retain(|(name, _)| name != k);
        self.settings.push((k.to_owned(), value));
    }
}

fn take(settings: &mut Vec<(String, Secret)>, k: &str) -> Option<Secret> {
    let at = settings.iter().rposition(|(name, _)| name == k)?;
    let value = settings.remove(at).1;
    settings.retain(|(name, _)| name != k);
    Some(value)
}

fn parse_protocol(value: &str) -> Result<&'static str, EnvError> {
    let lower = value.to_ascii_lowercase();
    PROTOCOLS.iter().find(|p| **p == lower).copied().ok_or_else(|| {
        EnvError::invalid("SLUICE_KAFKA_SECURITY_PROTOCOL", format!("{value:?} is not one of {}", PROTOCOLS.join(", ")))
    })
}

fn parse_mechanism(value: &str) -> Result<&'static str, EnvError> {
    let upper = value.to_ascii_uppercase();
    MECHANISMS.iter().find(|m| **m == upper).copied().ok_or_else(|| {
        EnvError::invalid("SLUICE_KAFKA_SASL_MECHANISM", format!("{value:?} is not one of {}", MECHANISMS.join(", ")))
    })
}

fn read_properties(path: &Path) -> Result<Vec<(String, Secret)>, EnvError> {
    let name = "SLUICE_KAFKA_PROPERTIES_FILE";
    let text = std::fs::read_to_string(path).map_err(|source| EnvError::File {
        name: name.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    parse_properties(&text)
        .map_err(|(line, message)| EnvError::invalid(name, format!("{}:{line}: {message}", path.display())))
}

/// Parses a properties file: `key=value` (or `key: value`) lines, `#`/`!` comments. Refuses keys
/// sluice sets per client and keys of other clients, each with what to do instead. Errors carry
/// the 1-based line and never a value.
pub fn parse_properties(text: &str) -> Result<Vec<(String, Secret)>, (usize, String)> {
    let mut out: Vec<(String, Secret)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let split = line.find(['=', ':']).ok_or((i + 1, "expected `key=value`".to_owned()))?;
        let (k, v) = (line[..split].trim(), line[split + 1..].trim());
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err((i + 1, "expected `key=value`".to_owned()));
        }
        if let Some((_, why)) = RESERVED.iter().chain(FOREIGN).find(|(name, _)| *name == k) {
            return Err((i + 1, format!("`{k}` cannot be set here: {why}")));
        }
        let k = if k == key::MECHANISM_ALIAS { key::MECHANISM } else { k };
        out.retain(|(name, _)| name != k);
        out.push((k.to_owned(), Secret::new(v)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_vars(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    fn props(c: &KafkaConnection) -> Vec<(String, String)> {
        c.client_properties().into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    fn prop<'c>(c: &'c KafkaConnection, k: &str) -> Option<&'c str> {
        c.client_properties().into_iter().find(|(name, _)| *name == k).map(|(_, v)| v)
    }

    #[test]
    fn plaintext_by_default_with_hostname_verification_on() {
        let c = KafkaConnection::from_env(&env(&[("SLUICE_KAFKA_BROKERS", "k:1")])).expect("plain");
        assert_eq!(c.protocol(), "plaintext");
        assert_eq!(prop(&c, "bootstrap.servers"), Some("k:1"));
        assert_eq!(prop(&c, "ssl.endpoint.identification.algorithm"), Some("https"));
        assert_eq!(c.describe(), "PLAINTEXT");
    }

    #[test]
    fn credentials_without_a_protocol_mean_sasl_ssl() {
        let c = KafkaConnection::from_env(&env(&[
            ("SLUICE_KAFKA_BROKERS", "k:1"),
            ("SLUICE_KAFKA_SASL_MECHANISM", "scram-sha-512"),
            ("SLUICE_KAFKA_SASL_USERNAME", "app"),
            ("SLUICE_KAFKA_SASL_PASSWORD", "hunter2"),
        ]))
        .expect("sasl");
        assert_eq!(prop(&c, "security.protocol"), Some("sasl_ssl"));
        assert_eq!(prop(&c, "sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(prop(&c, "sasl.password"), Some("hunter2"));
        assert_eq!(c.describe(), "SASL_SSL, SASL SCRAM-SHA-512 as \"app\", system CAs, hostname verified");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn a_sasl_protocol_needs_its_mechanism_and_credentials() {
        let no_mechanism = KafkaConnection::from_env(&env(&[
            ("SLUICE_KAFKA_BROKERS", "k:1"),
            ("SLUICE_KAFKA_SASL_USERNAME", "app"),
            ("SLUICE_KAFKA_SASL_PASSWORD", "hunter2"),
        ]))
        .expect_err("no mechanism")
        .to_string();
        assert!(
            no_mechanism.starts_with("SLUICE_KAFKA_SASL_MECHANISM: security protocol sasl_ssl needs"),
            "{no_mechanism}"
        );
        assert!(!no_mechanism.contains("hunter2"));
        let no_password = KafkaConnection::from_env(&env(&[
            ("SLUICE_KAFKA_BROKERS", "k:1"),
            ("SLUICE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("SLUICE_KAFKA_SASL_MECHANISM", "PLAIN"),
            ("SLUICE_KAFKA_SASL_USERNAME", "app"),
        ]))
        .expect_err("no password")
        .to_string();
        assert!(no_password.starts_with("SLUICE_KAFKA_SASL_PASSWORD: SASL PLAIN needs it"), "{no_password}");
        let bad = KafkaConnection::from_env(&env(&[("SLUICE_KAFKA_SECURITY_PROTOCOL", "tls")])).expect_err("bad");
        assert!(bad.to_string().contains("\"tls\" is not one of plaintext, ssl, sasl_plaintext, sasl_ssl"), "{bad}");
        let gssapi = KafkaConnection::from_env(&env(&[("SLUICE_KAFKA_SASL_MECHANISM", "GSSAPI")])).expect_err("gssapi");
        assert!(gssapi.to_string().contains("not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER"), "{gssapi}");
    }

    #[test]
    fn a_properties_file_is_passed_through_under_the_variables() {
        let dir = std::env::temp_dir().join(format!("sluice-kafka-props-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("client.properties");
        std::fs::write(
            &file,
            "# Confluent Cloud-style\nbootstrap.servers=pkc-1.example:9092\nsecurity.protocol=SASL_SSL\n\
             sasl.mechanism=PLAIN\nsasl.username=KEY\nsasl.password=SECRET\nsocket.keepalive.enable : true\n",
        )
        .expect("write");
        let path = file.display().to_string();
        let c = KafkaConnection::from_env(&env(&[("SLUICE_KAFKA_PROPERTIES_FILE", &path)])).expect("file");
        assert_eq!(c.brokers, "pkc-1.example:9092");
        assert_eq!(prop(&c, "sasl.mechanisms"), Some("PLAIN"));
        assert_eq!(prop(&c, "sasl.mechanism"), None);
        assert_eq!(prop(&c, "socket.keepalive.enable"), Some("true"));
        assert_eq!(props(&c).iter().filter(|(k, _)| k == "bootstrap.servers").count(), 1);
        assert!(c.describe().starts_with("SASL_SSL, SASL PLAIN as \"KEY\""), "{}", c.describe());
        let over = KafkaConnection::from_env(&env(&[
            ("SLUICE_KAFKA_PROPERTIES_FILE", &path),
            ("SLUICE_KAFKA_BROKERS", "local:1"),
            ("SLUICE_KAFKA_SASL_USERNAME", "other"),
        ]))
        .expect("override");
        assert_eq!((over.brokers.as_str(), prop(&over, "sasl.username")), ("local:1", Some("other")));
        assert_eq!(prop(&over, "sasl.password"), Some("SECRET"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn the_file_may_not_set_what_sluice_sets_per_client() {
        let (line, message) = parse_properties("a=1\nenable.auto.commit=true\n").expect_err("reserved");
        assert_eq!(line, 2);
        assert!(message.contains("only after the sink acknowledged"), "{message}");
        let (_, jaas) = parse_properties("sasl.jaas.config=org.apache...PlainLoginModule required password='p';")
            .expect_err("java");
        assert!(jaas.contains("sasl.username and sasl.password") && !jaas.contains("'p'"), "{jaas}");
        assert_eq!(parse_properties("no separator here").expect_err("syntax").0, 1);
    }

    #[test]
    fn tls_files_and_hostname_verification() {
        let ca = std::env::current_exe().expect("exe").display().to_string();
        let c = KafkaConnection::from_env(&env(&[
            ("SLUICE_KAFKA_BROKERS", "k:1"),
            ("SLUICE_KAFKA_TLS_CA_FILE", &ca),
            ("SLUICE_KAFKA_TLS_VERIFY_HOSTNAME", "false"),
        ]))
        .expect("tls");
        assert_eq!(c.protocol(), "ssl");
        assert_eq!(prop(&c, "ssl.ca.location"), Some(ca.as_str()));
        assert!(!c.verifies_hostname());
        assert!(c.describe().ends_with("hostname NOT verified"), "{}", c.describe());
        let missing =
            KafkaConnection::from_env(&env(&[("SLUICE_KAFKA_TLS_CA_FILE", "/no/such/ca.pem")])).expect_err("missing");
        assert!(
            missing.to_string().starts_with("SLUICE_KAFKA_TLS_CA_FILE=/no/such/ca.pem: cannot read the file"),
            "{missing}"
        );
        let half = KafkaConnection::from_env(&env(&[("SLUICE_KAFKA_TLS_CERT_FILE", &ca)])).expect_err("no key");
        assert!(half.to_string().contains("set SLUICE_KAFKA_TLS_KEY_FILE"), "{half}");
    }
}
