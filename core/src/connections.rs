//! Where the services are: Kafka, the schema registry, Couchbase and ClickHouse endpoints.
//!
//! Values come from `SLUICE_*` environment variables, layered over an env file (`dev/up` writes
//! `.dev/env`; a deployment may point `SLUICE_ENV_FILE` at its own). The process environment always
//! wins, so a user can override one endpoint without editing the file. Credentials come only from
//! here, never from `topology.toml`, and [`Secret`] keeps them out of logs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Errors reading the environment.
#[derive(Debug, Error)]
pub enum EnvError {
    /// The env file could not be read.
    #[error("cannot read env file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the env file is not `[export ]NAME=value`.
    #[error("{path}:{line}: expected `export NAME=value`, got {text:?}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// Required variables are not set anywhere.
    #[error(
        "missing {}: start the local services with `dev/up` (it writes .dev/env), \
         or set them to point at your clusters (see README, 'Environment')",
        .0.join(", ")
    )]
    Missing(Vec<&'static str>),
}

/// A string that never shows itself in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value itself, for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Parses an env file: `NAME=value` or `export NAME=value` lines; blank lines and `#` comments are
/// skipped; a value may be wrapped in single or double quotes. Pure, so it is tested without files.
pub fn parse_env_file(path: &Path, text: &str) -> Result<BTreeMap<String, String>, EnvError> {
    let mut vars = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let body = line.strip_prefix("export ").map_or(line, str::trim_start);
        let syntax = || EnvError::Syntax { path: path.to_owned(), line: i + 1, text: raw.to_owned() };
        let (name, value) = body.split_once('=').ok_or_else(syntax)?;
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(syntax());
        }
        let value = value.trim();
        let unquoted = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|(l, r)| value.strip_prefix(*l).and_then(|v| v.strip_suffix(*r)))
            .unwrap_or(value);
        vars.insert(name.to_owned(), unquoted.to_owned());
    }
    Ok(vars)
}

/// The process environment layered over an optional env file, over optional defaults (the
/// topology's `[connections]`).
#[derive(Debug, Clone, Default)]
pub struct Env {
    file: BTreeMap<String, String>,
    path: Option<PathBuf>,
    defaults: BTreeMap<String, String>,
}

impl Env {
    /// Only the process environment.
    pub fn process() -> Self {
        Self::default()
    }

    /// The process environment over the variables of `path`.
    pub fn with_file(path: &Path) -> Result<Self, EnvError> {
        let text = std::fs::read_to_string(path).map_err(|source| EnvError::Read { path: path.to_owned(), source })?;
        Ok(Self { file: parse_env_file(path, &text)?, path: Some(path.to_owned()), defaults: BTreeMap::new() })
    }

    /// From explicit variables (tests, or a caller that already parsed a file).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { file: vars.into_iter().collect(), path: None, defaults: BTreeMap::new() }
    }

    /// Adds a lowest layer: values used only when neither the process environment nor the file
    /// sets the variable (e.g. `Topology::connections().env_defaults()`).
    #[must_use]
    pub fn with_defaults(mut self, defaults: impl IntoIterator<Item = (String, String)>) -> Self {
        self.defaults.extend(defaults);
        self
    }

    /// The process environment over `$SLUICE_ENV_FILE`, or else over the nearest `.dev/env` in the
    /// current directory or one of its parents (so `cargo test` in any crate finds the rig's file).
    pub fn discover() -> Result<Self, EnvError> {
        if let Some(path) = std::env::var_os("SLUICE_ENV_FILE") {
            return Self::with_file(Path::new(&path));
        }
        let cwd = std::env::current_dir().unwrap_or_default();
        match cwd.ancestors().map(|dir| dir.join(".dev/env")).find(|p| p.is_file()) {
            Some(path) => Self::with_file(&path),
            None => Ok(Self::process()),
        }
    }

    /// The env file in use, if any.
    pub fn file(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A variable: the process environment first, then the file, then the defaults; empty counts
    /// as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        let non_empty = |v: &String| !v.is_empty();
        std::env::var(name)
            .ok()
            .filter(non_empty)
            .or_else(|| self.file.get(name).filter(|v| non_empty(v)).cloned())
            .or_else(|| self.defaults.get(name).filter(|v| non_empty(v)).cloned())
    }
}

/// How to reach a ClickHouse server over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseConnection {
    /// `http://host:8123`.
    pub url: String,
    /// Database of tables that name none (`SLUICE_CLICKHOUSE_DATABASE`, default `default`).
    pub database: String,
    /// User (`SLUICE_CLICKHOUSE_USER`); the server's default user when unset.
    pub user: Option<String>,
    /// Password (`SLUICE_CLICKHOUSE_PASSWORD`).
    pub password: Option<Secret>,
    /// The cluster the server belongs to (`SLUICE_CLICKHOUSE_CLUSTER`, a `<remote_servers>` entry):
    /// tables are then replicated and sharded across it, DDL runs `ON CLUSTER`. `None`: one server.
    pub cluster: Option<String>,
}

/// How to reach the Couchbase cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouchbaseConnection {
    /// `couchbase://host` connection string.
    pub connstr: String,
    /// RBAC user name.
    pub username: String,
    /// RBAC password.
    pub password: Secret,
    /// Default bucket for projections that do not name one.
    pub bucket: String,
}

/// Every endpoint sluice talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connections {
    /// Kafka bootstrap servers, `host:port[,host:port…]`.
    pub kafka_brokers: String,
    /// Confluent-API schema registry base URL.
    pub schema_registry_url: String,
    /// The Couchbase cluster.
    pub couchbase: CouchbaseConnection,
    /// The ClickHouse server projections write to.
    pub clickhouse: ClickHouseConnection,
    /// A second, older ClickHouse server (the compatibility target of the dev rig), if any.
    pub clickhouse_compat: Option<ClickHouseConnection>,
}

/// The variables [`Connections::from_env`] reads, with their meaning (for `--help` and the README).
pub const VARIABLES: &[(&str, &str)] = &[
    ("SLUICE_KAFKA_BROKERS", "Kafka bootstrap servers, host:port[,host:port…]"),
    ("SLUICE_SCHEMA_REGISTRY_URL", "Confluent-API schema registry base URL"),
    ("SLUICE_COUCHBASE_CONNSTR", "Couchbase connection string, couchbase://host"),
    ("SLUICE_COUCHBASE_USERNAME", "Couchbase user"),
    ("SLUICE_COUCHBASE_PASSWORD", "Couchbase password (secret)"),
    ("SLUICE_COUCHBASE_BUCKET", "Couchbase bucket (default: default)"),
    ("SLUICE_CLICKHOUSE_URL", "ClickHouse HTTP URL, http://host:8123"),
    ("SLUICE_CLICKHOUSE_USER", "ClickHouse user (optional)"),
    ("SLUICE_CLICKHOUSE_PASSWORD", "ClickHouse password (optional, secret)"),
    ("SLUICE_CLICKHOUSE_DATABASE", "ClickHouse database (default: default)"),
    ("SLUICE_CLICKHOUSE_CLUSTER", "ClickHouse cluster to place tables on (optional; one server when unset)"),
    ("SLUICE_CLICKHOUSE_COMPAT_URL", "a second, older ClickHouse (dev rig's compatibility target; optional)"),
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
    /// a client given it fails to connect, so a command asks for every service it talks to.
    pub fn for_services(env: &Env, services: Services) -> Result<Self, EnvError> {
        let mut missing = Vec::new();
        let mut need = |name: &'static str, required: bool| {
            env.get(name).unwrap_or_else(|| {
                if required {
                    missing.push(name);
                }
                String::new()
            })
        };
        let kafka_brokers = need("SLUICE_KAFKA_BROKERS", services.kafka);
        let schema_registry_url = need("SLUICE_SCHEMA_REGISTRY_URL", services.registry);
        let connstr = need("SLUICE_COUCHBASE_CONNSTR", services.couchbase);
        let username = need("SLUICE_COUCHBASE_USERNAME", services.couchbase);
        let password = Secret::new(need("SLUICE_COUCHBASE_PASSWORD", services.couchbase));
        let clickhouse_url = need("SLUICE_CLICKHOUSE_URL", services.clickhouse);
        if !missing.is_empty() {
            return Err(EnvError::Missing(missing));
        }
        let clickhouse = |url| ClickHouseConnection {
            url,
            database: env.get("SLUICE_CLICKHOUSE_DATABASE").unwrap_or_else(|| "default".to_owned()),
            user: env.get("SLUICE_CLICKHOUSE_USER"),
            password: env.get("SLUICE_CLICKHOUSE_PASSWORD").map(Secret::new),
            cluster: env.get("SLUICE_CLICKHOUSE_CLUSTER"),
        };
        Ok(Self {
            kafka_brokers,
            schema_registry_url,
            couchbase: CouchbaseConnection {
                connstr,
                username,
                password,
                bucket: env.get("SLUICE_COUCHBASE_BUCKET").unwrap_or_else(|| "default".to_owned()),
            },
            clickhouse: clickhouse(clickhouse_url),
            clickhouse_compat: env.get("SLUICE_CLICKHOUSE_COMPAT_URL").map(clickhouse),
        })
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!((c.kafka_brokers.as_str(), c.couchbase.connstr.as_str()), ("k:1", ""));
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
}
