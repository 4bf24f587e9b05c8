//! The network side of the ClickHouse sink: building a client for one server, finding out what
//! that server supports, and telling what a failed request means for the worker ([`classify`]).

use std::time::Duration;

use clickhouse::{Client, Compression};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sluice_core::connections::{ClickHouseCompression, ClickHouseConnection};

use super::Error;
use super::capabilities::{Capabilities, Version};
use super::servers::Servers;
use crate::sink::SinkError;
use crate::worker::ready::StartupError;

/// A client tuned to the server it talks to.
#[derive(Clone)]
pub struct ClickHouse {
    /// The `clickhouse` crate's client, with row validation on only where the server supports it.
    pub client: Client,
    /// What the server can do.
    pub capabilities: Capabilities,
    /// The cluster the tables are placed on (see [`super::schema::cluster`]), if any.
    pub cluster: Option<String>,
    /// How many servers the cluster lists in `system.clusters` (asked once, at connect); 0
    /// without a cluster.
    pub cluster_servers: u64,
}

impl std::fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouse")
            .field("capabilities", &self.capabilities)
            .field("cluster", &self.cluster)
            .field("cluster_servers", &self.cluster_servers)
            .finish_non_exhaustive()
    }
}

/// How long an idle pooled connection is kept (the server closes its side after 3 s).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one connection attempt may take: a server that does not answer (stopped, or
/// unreachable) is given up on, and the next listed server tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A client for `conn` (no validation decided yet). Its transport is the crate's default one
/// plus `TCP_NODELAY`: an insert streams its body in chunks, and with Nagle's algorithm the last
/// small chunk waited for the server's delayed ACK — about 40 ms added to every insert, most of a
/// small batch's write time. A list of servers gets a resolver to all of them ([`Servers`]).
fn base_client(conn: &ClickHouseConnection) -> Result<Client, Error> {
    let servers = Servers::parse(&conn.url).map_err(Error::BadUrl)?;
    let builder = HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(POOL_IDLE_TIMEOUT).clone();
    let tls = sluice_producers::tls::client_config(&conn.tls, "ClickHouse").map_err(Error::Tls)?;
    // http:// and https:// alike: the scheme of the URL decides, per request.
    let https = |tls| HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1();
    let mut client = match servers {
        Some(servers) => Client::with_http_client(
            builder.build(https(tls).wrap_connector(tuned(HttpConnector::new_with_resolver(servers)))),
        )
        .with_url(Servers::url()),
        None => Client::with_http_client(builder.build(https(tls).wrap_connector(tuned(HttpConnector::new()))))
            .with_url(&conn.url),
    };
    client = client.with_compression(match conn.compression {
        ClickHouseCompression::Lz4 => Compression::Lz4,
        ClickHouseCompression::None => Compression::None,
    });
    if let Some(user) = &conn.user {
        client = client.with_user(user);
    }
    if let Some(password) = &conn.password {
        client = client.with_password(password.expose());
    }
    Ok(client)
}

/// `connector` tuned as [`base_client`] says.
fn tuned<R>(mut connector: HttpConnector<R>) -> HttpConnector<R> {
    connector.enforce_http(false);
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector
}

impl ClickHouse {
    /// Connects: asks the server's version (in a format every version speaks) and configures the
    /// client for it. Fails when the server does not answer.
    pub async fn connect(conn: &ClickHouseConnection) -> Result<Self, Error> {
        let probe = base_client(conn)?.with_validation(false);
        let text: String = probe
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(|source| Error::Unreachable { url: conn.url.clone(), source })?;
        let version = Version::parse(&text).ok_or_else(|| Error::BadVersion(text.clone()))?;
        let capabilities = Capabilities::of(version);
        let mut client = base_client(conn)?.with_validation(capabilities.row_binary_with_names_and_types);
        if !capabilities.exception_in_stream_header {
            // Old servers report an error that happens mid-stream by appending its text to a 200
            // body, which the crate would decode as rows. Buffering the whole result server-side
            // turns such errors into a proper error status.
            client = client.with_setting("wait_end_of_query", "1");
        }
        let mut cluster_servers = 0;
        if let Some(cluster) = &conn.cluster {
            cluster_servers = check_cluster(&probe, &conn.url, cluster).await?;
            // An insert into a `Distributed` table returns once every shard it touches has its
            // rows, rather than once they are queued on this server's disk: the worker commits
            // its offsets only after that.
            client = client.with_setting("insert_distributed_sync", "1");
        }
        tracing::info!(
            url = %conn.url, %version,
            cluster = conn.cluster.as_deref().unwrap_or("-"),
            validation = capabilities.row_binary_with_names_and_types,
            dedup_token = capabilities.insert_deduplication_token,
            "connected to ClickHouse; strategy chosen from its version"
        );
        Ok(Self { client, capabilities, cluster: conn.cluster.clone(), cluster_servers })
    }
}

/// How many servers `cluster` lists; fails unless the server knows it (an entry of its
/// `<remote_servers>`).
async fn check_cluster(probe: &Client, url: &str, cluster: &str) -> Result<u64, Error> {
    let servers: u64 = probe
        .query("SELECT count() FROM system.clusters WHERE cluster = ?")
        .bind(cluster)
        .fetch_one()
        .await
        .map_err(|source| Error::Unreachable { url: url.to_owned(), source })?;
    if servers == 0 {
        return Err(Error::UnknownCluster { url: url.to_owned(), cluster: cluster.to_owned() });
    }
    Ok(servers)
}

/// Server error codes that retrying cannot fix: the target or the statement is wrong (a missing
/// database, table or column, a type the table does not have, a setting the server lacks) or the
/// credentials are. Moving on would lose data, so the worker stops with the message.
const CONFIG_CODES: &[(u32, &str)] = &[
    (8, "THERE_IS_NO_COLUMN"),
    (10, "NOT_FOUND_COLUMN_IN_BLOCK"),
    (16, "NO_SUCH_COLUMN_IN_TABLE"),
    (43, "ILLEGAL_TYPE_OF_ARGUMENT"),
    (44, "ILLEGAL_COLUMN"),
    (47, "UNKNOWN_IDENTIFIER"),
    (48, "NOT_IMPLEMENTED"),
    (50, "UNKNOWN_TYPE"),
    (53, "TYPE_MISMATCH"),
    (60, "UNKNOWN_TABLE"),
    (62, "SYNTAX_ERROR"),
    (73, "UNKNOWN_FORMAT"),
    (81, "UNKNOWN_DATABASE"),
    (115, "UNKNOWN_SETTING"),
    (164, "READONLY"),
    (192, "UNKNOWN_USER"),
    (193, "WRONG_PASSWORD"),
    (194, "REQUIRED_PASSWORD"),
    (195, "IP_ADDRESS_NOT_ALLOWED"),
    (291, "DATABASE_ACCESS_DENIED"),
    (497, "ACCESS_DENIED"),
    (516, "AUTHENTICATION_FAILED"),
];

/// The `Code: N` of a ClickHouse exception text (`Code: 60. DB::Exception: …` on current
/// servers, `Code: 60, e.displayText() = …` on old ones).
pub fn exception_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// What a failed request (`what`: which one, for the message) means for the worker.
///
/// - Transient (retry the batch): network errors, timeouts, HTTP 5xx/408/429 without a server
///   exception, and server exceptions other than the configuration codes (`CONFIG_CODES`) — those
///   are overload and availability (memory limit, too many parts, a replica being away).
/// - Config (stop): the configuration codes; HTTP 4xx without an exception (401/403: the
///   credentials); and client-side refusals (the row type does not match the table) — retrying
///   the same rows against the same table fails the same way.
pub fn classify(what: &str, error: &clickhouse::error::Error) -> SinkError {
    use clickhouse::error::Error as E;
    let chain = sluice_producers::tls::error_chain(error);
    let message = format!("{what}: {chain}");
    match error {
        // The server's certificate is not trusted, or not for this name: the same next time.
        E::Network(_) if sluice_producers::tls::is_certificate_refusal(&chain) => SinkError::Config(format!(
            "{message} (check SLUICE_CLICKHOUSE_URL's host and SLUICE_CLICKHOUSE_TLS_CA_FILE)"
        )),
        E::BadResponse(text) => match exception_code(text) {
            Some(code) if CONFIG_CODES.iter().any(|(c, _)| *c == code) => SinkError::Config(message),
            Some(_) => SinkError::Transient(message),
            None => {
                let status: Option<u16> = text.split_whitespace().next().and_then(|s| s.parse().ok());
                match status {
                    Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => SinkError::Config(message),
                    _ => SinkError::Transient(message),
                }
            }
        },
        E::SchemaMismatch(_)
        | E::InvalidParams(_)
        | E::Unsupported(_)
        | E::Custom(_)
        | E::SequenceMustHaveLength
        | E::VariantDiscriminatorIsOutOfBound(_) => SinkError::Config(message),
        // Network, TimedOut, (de)compression and truncated responses: the transport failed.
        _ => SinkError::Transient(message),
    }
}

/// At start-up (connect, version probe, migration): a server that does not answer or is
/// overloaded is waited for; credentials, a database or tables it refuses, a plan it cannot
/// build stop the worker.
impl StartupError for Error {
    fn at_startup(&self) -> SinkError {
        match self {
            Error::Unreachable { source, .. } => classify("connecting", source),
            Error::Query { what, source } => classify(what, source),
            Error::BadVersion(_)
            | Error::Plan(_)
            | Error::Drift { .. }
            | Error::NotClickHouse(_)
            | Error::UnknownCluster { .. }
            | Error::Tls(_)
            | Error::BadUrl(_) => SinkError::Config(self.to_string()),
        }
    }
}

/// Whether the request failed because its table does not exist (`UNKNOWN_TABLE`).
pub fn is_missing_table(error: &clickhouse::error::Error) -> bool {
    matches!(error, clickhouse::error::Error::BadResponse(text) if exception_code(text) == Some(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::error::Error as E;

    fn is_config(e: &E) -> bool {
        matches!(classify("insert", e), SinkError::Config(_))
    }

    #[test]
    fn at_start_up_an_absent_server_is_waited_for_and_bad_credentials_stop() {
        let unreachable = |source| Error::Unreachable { url: "http://ch".into(), source };
        assert!(matches!(unreachable(E::Network("refused".into())).at_startup(), SinkError::Transient(_)));
        assert!(matches!(
            unreachable(E::BadResponse("503 Service Unavailable".into())).at_startup(),
            SinkError::Transient(_)
        ));
        let wrong_password = E::BadResponse("Code: 516. DB::Exception: default: Authentication failed".into());
        assert!(matches!(unreachable(wrong_password).at_startup(), SinkError::Config(_)));
        assert!(matches!(Error::BadVersion("x".into()).at_startup(), SinkError::Config(_)));
    }

    #[test]
    fn reads_exception_codes_of_old_and_new_servers() {
        assert_eq!(exception_code("Code: 60. DB::Exception: Table x.y does not exist. (UNKNOWN_TABLE)"), Some(60));
        assert_eq!(exception_code("Code: 115, e.displayText() = DB::Exception: Unknown setting"), Some(115));
        assert_eq!(exception_code("Code: 516"), Some(516));
        assert_eq!(exception_code("502 Bad Gateway"), None);
    }

    #[test]
    fn configuration_problems_stop_the_worker() {
        for text in [
            "Code: 60. DB::Exception: Table db.events does not exist. (UNKNOWN_TABLE)",
            "Code: 16. DB::Exception: No such column x in table db.events. (NO_SUCH_COLUMN_IN_TABLE)",
            "Code: 47, e.displayText() = DB::Exception: Unknown identifier: x",
            "Code: 516. DB::Exception: default: Authentication failed. (AUTHENTICATION_FAILED)",
            "Code: 81. DB::Exception: Database nope does not exist. (UNKNOWN_DATABASE)",
            "403 Forbidden",
        ] {
            assert!(is_config(&E::BadResponse(text.into())), "{text}");
        }
        assert!(is_config(&E::SchemaMismatch("no column named x".into())));
        let SinkError::Config(message) =
            classify("inserting into `db`.`events`", &E::BadResponse("Code: 60. x".into()))
        else {
            panic!("config")
        };
        assert_eq!(message, "inserting into `db`.`events`: bad response: Code: 60. x");
    }

    #[test]
    fn a_missing_table_is_recognised_on_every_server() {
        for text in [
            "Code: 60. DB::Exception: Table db.events does not exist. (UNKNOWN_TABLE)",
            "Code: 60, e.displayText() = DB::Exception: Table db.events doesn't exist., e.what() = DB::Exception",
        ] {
            assert!(is_missing_table(&E::BadResponse(text.into())), "{text}");
        }
        for e in [
            E::BadResponse("Code: 81. DB::Exception: Database nope does not exist. (UNKNOWN_DATABASE)".into()),
            E::BadResponse("Code: 600. x".into()),
            E::BadResponse("404 Not Found".into()),
            E::SchemaMismatch("no column named x".into()),
        ] {
            assert!(!is_missing_table(&e), "{e}");
        }
    }

    #[test]
    fn availability_problems_are_retried() {
        for text in [
            "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)",
            "Code: 252. DB::Exception: Too many parts. (TOO_MANY_PARTS)",
            "Code: 159. DB::Exception: Timeout exceeded. (TIMEOUT_EXCEEDED)",
            "503 Service Unavailable",
            "429 Too Many Requests",
        ] {
            assert!(!is_config(&E::BadResponse(text.into())), "{text}");
        }
        assert!(!is_config(&E::TimedOut));
        assert!(!is_config(&E::Network("connection refused".into())));
        assert!(!is_config(&E::NotEnoughData));
    }
}
