//! Where the services are and how to reach them securely: Kafka, the schema registry, Couchbase
//! and ClickHouse endpoints, credentials and TLS files.
//!
//! Values come from `SLUICE_*` environment variables, layered over an env file (`dev/up` writes
//! `.dev/env`; a deployment may point `SLUICE_ENV_FILE` at its own). The process environment always
//! wins, so a user can override one endpoint without editing the file. Credentials come only from
//! here (or from the files `…_FILE` variables name), never from `topology.toml`, and [`Secret`]
//! keeps them out of logs, errors and `sluice doctor`.

mod env;
mod kafka;
mod registry;
mod secret;
mod tls;

pub use env::{Env, EnvError, parse_env_file};
pub use kafka::{KafkaConnection, parse_properties};
pub use registry::{RegistryAuth, RegistryConnection, split_userinfo};
pub use secret::Secret;
pub use tls::TlsFiles;

/// How to reach a ClickHouse server over HTTP(S).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseConnection {
    /// `http://host:8123` or `https://host:8443`; a comma list names several servers of one
    /// cluster.
    pub url: String,
    /// Database of tables that name none (`SLUICE_CLICKHOUSE_DATABASE`, default `default`).
    pub database: String,
    /// User (`SLUICE_CLICKHOUSE_USER`); the server's default user when unset.
    pub user: Option<String>,
    /// Password (`SLUICE_CLICKHOUSE_PASSWORD` or `_PASSWORD_FILE`).
    pub password: Option<Secret>,
    /// The cluster the server belongs to (`SLUICE_CLICKHOUSE_CLUSTER`, a `<remote_servers>` entry):
    /// tables are then replicated and sharded across it, DDL runs `ON CLUSTER`. `None`: one server.
    pub cluster: Option<String>,
    /// TLS files for `https://` servers (`SLUICE_CLICKHOUSE_TLS_*`).
    pub tls: TlsFiles,
    /// How insert bodies travel (`SLUICE_CLICKHOUSE_COMPRESSION`).
    pub compression: ClickHouseCompression,
}

/// How insert bodies travel to ClickHouse (`SLUICE_CLICKHOUSE_COMPRESSION`, `lz4` or `none`).
///
/// LZ4 (the default, as in ClickHouse's own clients) costs the worker CPU to compress and the
/// server CPU to decompress, and saves network: right for a server across a network. `none`
/// suits a server on the same host or link, where bytes are cheap and CPU is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClickHouseCompression {
    /// ClickHouse's LZ4 blocks.
    #[default]
    Lz4,
    /// The bodies as they are.
    None,
}

impl ClickHouseCompression {
    /// The value of `SLUICE_CLICKHOUSE_COMPRESSION`, case-insensitive.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "lz4" => Ok(Self::Lz4),
            "none" => Ok(Self::None),
            _ => Err(format!("expected lz4 or none, got {text:?}")),
        }
    }
}

impl ClickHouseConnection {
    /// A server reached as the default user over plain HTTP (tests, the dev rig).
    pub fn plain(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            database: "default".to_owned(),
            user: None,
            password: None,
            cluster: None,
            tls: TlsFiles::default(),
            compression: ClickHouseCompression::default(),
        }
    }

    /// For `sluice doctor`: who sluice is there, never the password.
    pub fn describe_auth(&self) -> String {
        match (&self.user, &self.password) {
            (Some(user), Some(_)) => format!("user {user:?} with a password"),
            (Some(user), None) => format!("user {user:?} without a password"),
            (None, _) => "the server's default user".to_owned(),
        }
    }
}

/// How to reach the Couchbase cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouchbaseConnection {
    /// `couchbase://host` or `couchbases://host` connection string.
    pub connstr: String,
    /// RBAC user name (unused with a client certificate).
    pub username: String,
    /// RBAC password (unused with a client certificate).
    pub password: Secret,
    /// Default bucket for projections that do not name one.
    pub bucket: String,
    /// TLS files for `couchbases://` (`SLUICE_COUCHBASE_TLS_*`); a client certificate replaces
    /// the user and password (certificate authentication).
    pub tls: TlsFiles,
}

impl CouchbaseConnection {
    /// Whether the connection string asks for TLS.
    pub fn uses_tls(&self) -> bool {
        self.connstr.starts_with("couchbases://")
    }

    /// For `sluice doctor`: the mechanism and user, never the password.
    pub fn describe_auth(&self) -> String {
        if self.tls.client_auth() {
            "client certificate".to_owned()
        } else {
            format!("user {:?} with a password", self.username)
        }
    }
}

/// Every endpoint sluice talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connections {
    /// Kafka: brokers and client security.
    pub kafka: KafkaConnection,
    /// The Confluent-API schema registry.
    pub registry: RegistryConnection,
    /// The Couchbase cluster.
    pub couchbase: CouchbaseConnection,
    /// The ClickHouse server projections write to.
    pub clickhouse: ClickHouseConnection,
    /// A second, older ClickHouse server (the compatibility target of the dev rig), if any.
    pub clickhouse_compat: Option<ClickHouseConnection>,
}

/// The variables [`Connections::from_env`] reads, with their meaning (for `--help` and the README).
/// Every one marked secret may instead be given as `NAME_FILE`, a file holding the value.
pub const VARIABLES: &[(&str, &str)] = &[
    ("SLUICE_KAFKA_BROKERS", "Kafka bootstrap servers, host:port[,host:port…]"),
    (
        "SLUICE_KAFKA_SECURITY_PROTOCOL",
        "plaintext, ssl, sasl_plaintext or sasl_ssl (default: sasl_ssl with a SASL user, ssl with TLS files, else plaintext)",
    ),
    ("SLUICE_KAFKA_SASL_MECHANISM", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"),
    ("SLUICE_KAFKA_SASL_USERNAME", "Kafka SASL user (an API key on Confluent Cloud)"),
    ("SLUICE_KAFKA_SASL_PASSWORD", "Kafka SASL password (secret)"),
    ("SLUICE_KAFKA_TLS_CA_FILE", "CA bundle (PEM) to verify the brokers with (default: the system's)"),
    ("SLUICE_KAFKA_TLS_CERT_FILE", "client certificate (PEM) for mutual TLS"),
    ("SLUICE_KAFKA_TLS_KEY_FILE", "the client certificate's key (PEM)"),
    ("SLUICE_KAFKA_TLS_KEY_PASSWORD", "the key's password, if it is encrypted (secret)"),
    ("SLUICE_KAFKA_TLS_VERIFY_HOSTNAME", "check the broker's name against its certificate (default: true)"),
    (
        "SLUICE_KAFKA_PROPERTIES_FILE",
        "librdkafka properties file applied to every Kafka client, under the variables above",
    ),
    ("SLUICE_SCHEMA_REGISTRY_URL", "Confluent-API schema registry base URL"),
    ("SLUICE_SCHEMA_REGISTRY_USERNAME", "registry basic-auth user (an API key on Confluent Cloud)"),
    ("SLUICE_SCHEMA_REGISTRY_PASSWORD", "registry basic-auth password (secret)"),
    ("SLUICE_SCHEMA_REGISTRY_TOKEN", "registry bearer token, instead of basic auth (secret)"),
    (
        "SLUICE_SCHEMA_REGISTRY_TLS_CA_FILE",
        "CA bundle (PEM) to verify the registry with; also _TLS_CERT_FILE/_TLS_KEY_FILE",
    ),
    ("SLUICE_COUCHBASE_CONNSTR", "Couchbase connection string, couchbase://host or couchbases://host"),
    ("SLUICE_COUCHBASE_USERNAME", "Couchbase user"),
    ("SLUICE_COUCHBASE_PASSWORD", "Couchbase password (secret)"),
    ("SLUICE_COUCHBASE_BUCKET", "Couchbase bucket (default: default)"),
    (
        "SLUICE_COUCHBASE_TLS_CA_FILE",
        "CA bundle (PEM) for couchbases://; _TLS_CERT_FILE/_TLS_KEY_FILE: certificate auth",
    ),
    ("SLUICE_CLICKHOUSE_URL", "ClickHouse HTTP(S) URL, http://host:8123 or https://host:8443"),
    ("SLUICE_CLICKHOUSE_USER", "ClickHouse user (optional)"),
    ("SLUICE_CLICKHOUSE_PASSWORD", "ClickHouse password (optional, secret)"),
    ("SLUICE_CLICKHOUSE_DATABASE", "ClickHouse database (default: default)"),
    ("SLUICE_CLICKHOUSE_CLUSTER", "ClickHouse cluster to place tables on (optional; one server when unset)"),
    ("SLUICE_CLICKHOUSE_COMPRESSION", "insert bodies: lz4 (default) or none (a server on the same host)"),
    ("SLUICE_CLICKHOUSE_TLS_CA_FILE", "CA bundle (PEM) for https:// servers; also _TLS_CERT_FILE/_TLS_KEY_FILE"),
    ("SLUICE_CLICKHOUSE_COMPAT_URL", "a second, older ClickHouse (dev rig's compatibility target; optional)"),
];

/// The variables that hold secrets: each may be given as `NAME_FILE` instead.
pub const SECRET_VARIABLES: &[&str] = &[
    "SLUICE_KAFKA_SASL_PASSWORD",
    "SLUICE_KAFKA_TLS_KEY_PASSWORD",
    "SLUICE_SCHEMA_REGISTRY_PASSWORD",
    "SLUICE_SCHEMA_REGISTRY_TOKEN",
    "SLUICE_COUCHBASE_PASSWORD",
    "SLUICE_CLICKHOUSE_PASSWORD",
];

/// Which services a command talks to: [`Connections::for_services`] requires the variables of
/// these only, so `sluice publish` starts without any Couchbase or ClickHouse settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Services {
    /// Kafka (`SLUICE_KAFKA_BROKERS`).
    pub kafka: bool,
    /// The schema registry (`SLUICE_SCHEMA_REGISTRY_URL`).
    pub registry: bool,
    /// Couchbase (`SLUICE_COUCHBASE_CONNSTR`, `_USERNAME`, `_PASSWORD`).
    pub couchbase: bool,
    /// ClickHouse (`SLUICE_CLICKHOUSE_URL`).
    pub clickhouse: bool,
}

impl Services {
    /// Every service.
    pub const ALL: Self = Self { kafka: true, registry: true, couchbase: true, clickhouse: true };
    /// Kafka only.
    pub const KAFKA: Self = Self { kafka: true, registry: false, couchbase: false, clickhouse: false };
    /// The schema registry only.
    pub const REGISTRY: Self = Self { kafka: false, registry: true, couchbase: false, clickhouse: false };
    /// Couchbase only.
    pub const COUCHBASE: Self = Self { kafka: false, registry: false, couchbase: true, clickhouse: false };
    /// ClickHouse only.
    pub const CLICKHOUSE: Self = Self { kafka: false, registry: false, couchbase: false, clickhouse: true };

    /// The services of both.
    #[must_use]
    pub const fn and(self, other: Self) -> Self {
        Self {
            kafka: self.kafka || other.kafka,
            registry: self.registry || other.registry,
            couchbase: self.couchbase || other.couchbase,
            clickhouse: self.clickhouse || other.clickhouse,
        }
    }
}

impl Connections {
    /// Reads every endpoint; names all missing required variables at once.
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        Self::for_services(env, Services::ALL)
    }

    /// Reads the endpoints, requiring only the variables of `services` (all missing ones named at
    /// once). A service not asked for is read as far as it is set; what is unset stays empty, and
    /// a client given it fails to connect, so a command asks for every service it talks to. A
    /// value that is set but wrong (an unreadable CA file, a half-given credential) is an error
    /// whichever services are asked for: it would fail later, further from its cause.
    pub fn for_services(env: &Env, services: Services) -> Result<Self, EnvError> {
        let kafka = KafkaConnection::from_env(env)?;
        let registry = RegistryConnection::from_env(env)?;
        let couchbase_tls = TlsFiles::from_env(env, "SLUICE_COUCHBASE")?;
        let couchbase_password = env.secret("SLUICE_COUCHBASE_PASSWORD")?;
        let mut missing = Vec::new();
        let mut need = |name: &'static str, value: Option<String>, required: bool| {
            value.unwrap_or_else(|| {
                if required {
                    missing.push(name);
                }
                String::new()
            })
        };
        let _ = need("SLUICE_KAFKA_BROKERS", Some(kafka.brokers.clone()).filter(|b| !b.is_empty()), services.kafka);
        let _ =
            need("SLUICE_SCHEMA_REGISTRY_URL", Some(registry.url.clone()).filter(|u| !u.is_empty()), services.registry);
        let connstr = need("SLUICE_COUCHBASE_CONNSTR", env.get("SLUICE_COUCHBASE_CONNSTR"), services.couchbase);
        // A client certificate is the credential on its own (Couchbase certificate auth).
        let by_password = services.couchbase && !couchbase_tls.client_auth();
        let username = need("SLUICE_COUCHBASE_USERNAME", env.get("SLUICE_COUCHBASE_USERNAME"), by_password);
        let password =
            need("SLUICE_COUCHBASE_PASSWORD", couchbase_password.map(|s| s.expose().to_owned()), by_password);
        let clickhouse_url = need("SLUICE_CLICKHOUSE_URL", env.get("SLUICE_CLICKHOUSE_URL"), services.clickhouse);
        if !missing.is_empty() {
            return Err(EnvError::Missing(missing));
        }
        let clickhouse_tls = TlsFiles::from_env(env, "SLUICE_CLICKHOUSE")?;
        let clickhouse_password = env.secret("SLUICE_CLICKHOUSE_PASSWORD")?;
        let clickhouse_compression = env
            .get("SLUICE_CLICKHOUSE_COMPRESSION")
            .map(|v| ClickHouseCompression::parse(&v))
            .transpose()
            .map_err(|message| EnvError::invalid("SLUICE_CLICKHOUSE_COMPRESSION", &message))?
            .unwrap_or_default();
        let clickhouse = |url: String| {
            // `https://user:password@host` is accepted, its credentials moved out of the URL (which
            // is logged and shown by `sluice doctor`); SLUICE_CLICKHOUSE_USER/_PASSWORD win.
            let (url, in_url) = split_userinfo(&url);
            let (url_user, url_password) = in_url.map_or((None, None), |(u, p)| (Some(u), Some(p)));
            ClickHouseConnection {
                url,
                database: env.get("SLUICE_CLICKHOUSE_DATABASE").unwrap_or_else(|| "default".to_owned()),
                user: env.get("SLUICE_CLICKHOUSE_USER").or(url_user),
                password: clickhouse_password.clone().or(url_password),
                cluster: env.get("SLUICE_CLICKHOUSE_CLUSTER"),
                tls: clickhouse_tls.clone(),
                compression: clickhouse_compression,
            }
        };
        Ok(Self {
            kafka,
            registry,
            couchbase: CouchbaseConnection {
                connstr,
                username,
                password: Secret::new(password),
                bucket: env.get("SLUICE_COUCHBASE_BUCKET").unwrap_or_else(|| "default".to_owned()),
                tls: couchbase_tls,
            },
            clickhouse: clickhouse(clickhouse_url),
            clickhouse_compat: env.get("SLUICE_CLICKHOUSE_COMPAT_URL").map(clickhouse),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_vars(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    #[test]
    fn parses_the_dev_env_file() {
        let text = "# Written by dev/up\nexport SLUICE_KAFKA_BROKERS=127.0.0.1:19092\n\n\
                    SLUICE_X='a b'\nexport  SLUICE_Y=\"c=d\"\n";
        let vars = parse_env_file(Path::new("env"), text).expect("valid file");
        assert_eq!(vars["SLUICE_KAFKA_BROKERS"], "127.0.0.1:19092");
        assert_eq!(vars["SLUICE_X"], "a b");
        assert_eq!(vars["SLUICE_Y"], "c=d");
    }

    #[test]
    fn reports_the_bad_line() {
        let err = parse_env_file(Path::new(".dev/env"), "A=1\nnot a var\n").expect_err("bad line");
        assert_eq!(err.to_string(), ".dev/env:2: expected `export NAME=value`, got \"not a var\"");
        assert!(parse_env_file(Path::new("f"), "1A=x").is_err());
    }

    #[test]
    fn names_every_missing_variable() {
        let err = Connections::from_env(&env(&[("SLUICE_KAFKA_BROKERS", "k:1")])).expect_err("missing");
        let msg = err.to_string();
        for name in ["SLUICE_SCHEMA_REGISTRY_URL", "SLUICE_COUCHBASE_CONNSTR", "SLUICE_CLICKHOUSE_URL"] {
            assert!(msg.contains(name), "{msg}");
        }
        assert!(!msg.contains("SLUICE_KAFKA_BROKERS"), "{msg}");
        assert!(msg.contains("dev/up"), "{msg}");
    }

    #[test]
    fn requires_only_the_services_asked_for() {
        let kafka_and_registry = Services::KAFKA.and(Services::REGISTRY);
        let c = Connections::for_services(
            &env(&[("SLUICE_KAFKA_BROKERS", "k:1"), ("SLUICE_SCHEMA_REGISTRY_URL", "http://r")]),
            kafka_and_registry,
        )
        .expect("kafka and registry suffice");
        assert_eq!((c.kafka.brokers.as_str(), c.couchbase.connstr.as_str()), ("k:1", ""));
        let err = Connections::for_services(&env(&[("SLUICE_KAFKA_BROKERS", "k:1")]), Services::COUCHBASE)
            .expect_err("couchbase asked for")
            .to_string();
        assert!(err.contains("SLUICE_COUCHBASE_CONNSTR") && err.contains("SLUICE_COUCHBASE_PASSWORD"), "{err}");
        assert!(!err.contains("SLUICE_CLICKHOUSE_URL") && !err.contains("SLUICE_SCHEMA_REGISTRY_URL"), "{err}");
    }

    #[test]
    fn reads_everything_and_hides_the_password() {
        let c = Connections::from_env(&env(&[
            ("SLUICE_KAFKA_BROKERS", "k:1"),
            ("SLUICE_SCHEMA_REGISTRY_URL", "http://r"),
            ("SLUICE_COUCHBASE_CONNSTR", "couchbase://c"),
            ("SLUICE_COUCHBASE_USERNAME", "u"),
            ("SLUICE_COUCHBASE_PASSWORD", "hunter2"),
            ("SLUICE_CLICKHOUSE_URL", "http://ch"),
        ]))
        .expect("complete");
        assert_eq!(c.couchbase.bucket, "default");
        assert_eq!(c.clickhouse_compat, None);
        assert_eq!(c.couchbase.password.expose(), "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.clickhouse.database, "default");
    }

    #[test]
    fn defaults_are_the_lowest_layer() {
        let e = env(&[("SLUICE_TEST_FROM_FILE", "file"), ("SLUICE_TEST_EMPTY", "")]).with_defaults([
            ("SLUICE_TEST_FROM_FILE".to_owned(), "default".to_owned()),
            ("SLUICE_TEST_EMPTY".to_owned(), "default".to_owned()),
            ("SLUICE_TEST_ONLY_DEFAULT".to_owned(), "default".to_owned()),
        ]);
        assert_eq!(e.get("SLUICE_TEST_FROM_FILE").as_deref(), Some("file"));
        assert_eq!(e.get("SLUICE_TEST_EMPTY").as_deref(), Some("default"));
        assert_eq!(e.get("SLUICE_TEST_ONLY_DEFAULT").as_deref(), Some("default"));
        assert_eq!(e.get("SLUICE_TEST_UNSET"), None);
    }

    #[test]
    fn a_secret_may_come_from_a_file_but_not_from_both() {
        let dir = std::env::temp_dir().join(format!("sluice-secret-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("password");
        std::fs::write(&file, "from-a-file\n").expect("write");
        let path = file.display().to_string();
        let e = env(&[("SLUICE_CLICKHOUSE_PASSWORD_FILE", &path)]);
        assert_eq!(e.secret("SLUICE_CLICKHOUSE_PASSWORD").expect("read").expect("set").expose(), "from-a-file");
        let both = env(&[("SLUICE_CLICKHOUSE_PASSWORD_FILE", &path), ("SLUICE_CLICKHOUSE_PASSWORD", "inline")]);
        let err = both.secret("SLUICE_CLICKHOUSE_PASSWORD").expect_err("both").to_string();
        assert!(err.contains("not both") && !err.contains("inline") && !err.contains("from-a-file"), "{err}");
        let gone = env(&[("SLUICE_COUCHBASE_PASSWORD_FILE", "/no/such/secret")]);
        let err = Connections::from_env(&gone).expect_err("unreadable").to_string();
        assert!(err.starts_with("SLUICE_COUCHBASE_PASSWORD_FILE=/no/such/secret: cannot read the file"), "{err}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_client_certificate_replaces_the_couchbase_password() {
        let pem = std::env::current_exe().expect("exe").display().to_string();
        let c = Connections::for_services(
            &env(&[
                ("SLUICE_COUCHBASE_CONNSTR", "couchbases://c"),
                ("SLUICE_COUCHBASE_TLS_CERT_FILE", &pem),
                ("SLUICE_COUCHBASE_TLS_KEY_FILE", &pem),
            ]),
            Services::COUCHBASE,
        )
        .expect("certificate auth needs no password");
        assert!(c.couchbase.uses_tls());
        assert_eq!(c.couchbase.describe_auth(), "client certificate");
    }

    #[test]
    fn credentials_in_the_clickhouse_url_move_out_of_it() {
        let c = Connections::for_services(
            &env(&[("SLUICE_CLICKHOUSE_URL", "https://analyst:s3cr%40t@ch.example:8443")]),
            Services::CLICKHOUSE,
        )
        .expect("valid");
        assert_eq!(c.clickhouse.url, "https://ch.example:8443");
        assert_eq!(c.clickhouse.user.as_deref(), Some("analyst"));
        assert_eq!(c.clickhouse.password.as_ref().map(Secret::expose), Some("s3cr@t"));
        assert!(!format!("{c:?}").contains("s3cr"));
    }

    #[test]
    fn clickhouse_compression_is_lz4_unless_none_is_asked_for() {
        let with = |value: Option<&str>| {
            let mut pairs = vec![("SLUICE_CLICKHOUSE_URL", "http://ch")];
            pairs.extend(value.map(|v| ("SLUICE_CLICKHOUSE_COMPRESSION", v)));
            Connections::for_services(&env(&pairs), Services::CLICKHOUSE).map(|c| c.clickhouse.compression)
        };
        assert_eq!(with(None).expect("default"), ClickHouseCompression::Lz4);
        assert_eq!(with(Some("NONE")).expect("none"), ClickHouseCompression::None);
        assert_eq!(with(Some("lz4")).expect("lz4"), ClickHouseCompression::Lz4);
        let err = with(Some("zstd")).expect_err("not offered").to_string();
        assert_eq!(err, "SLUICE_CLICKHOUSE_COMPRESSION: expected lz4 or none, got \"zstd\"");
    }
}
