//! `sluice doctor`: one real request to each service, printed as a table, then how sluice
//! authenticates to each and what TLS it negotiated (protocol, cipher, peer verified). Never a
//! secret: users and mechanisms only.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use sluice_consumers::sinks::clickhouse::ClickHouse;
use sluice_consumers::sinks::couchbase::service::{deadline, first_tls_host};
use sluice_consumers::sinks::couchbase::{Couchbase, Error as CouchbaseError};
use sluice_core::Connections;
use sluice_core::connections::{ClickHouseConnection, KafkaConnection, RegistryConnection, TlsFiles, VARIABLES};
use sluice_producers::kafka::{Reached, preflight};
use sluice_producers::registry::Registry;
use sluice_producers::tls;

/// The variables table for `--help`.
pub(crate) static VARIABLES_HELP: LazyLock<String> = LazyLock::new(|| {
    let mut s = String::from("Environment:\n");
    for (name, what) in VARIABLES {
        s.push_str(&format!("  {name:<30} {what}\n"));
    }
    s
});

const TIMEOUT: Duration = Duration::from_secs(15);

/// One row of the table.
struct Check {
    service: &'static str,
    endpoint: String,
    outcome: Result<String, String>,
    took: Duration,
}

async fn timed(service: &'static str, endpoint: &str, fut: impl Future<Output = Result<String, String>>) -> Check {
    let start = Instant::now();
    let outcome = match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
    };
    Check { service, endpoint: endpoint.to_owned(), outcome, took: start.elapsed() }
}

async fn kafka(kafka: KafkaConnection) -> Result<String, String> {
    // librdkafka's metadata call blocks; keep it off the async workers.
    let reached = tokio::task::spawn_blocking(move || preflight(&kafka, TIMEOUT)).await.map_err(|e| e.to_string())?;
    match reached.map_err(|e| e.to_string())? {
        Reached::Brokers(n) => Ok(format!("{n} broker(s)")),
        Reached::NoAnswer(reason) => Err(reason),
    }
}

async fn registry(conn: &RegistryConnection) -> Result<String, String> {
    let subjects =
        Registry::new(conn, TIMEOUT).map_err(|e| e.to_string())?.subjects().await.map_err(|e| e.to_string())?;
    Ok(format!("{} subject(s)", subjects.len()))
}

async fn couchbase(conns: &Connections) -> Result<String, String> {
    let cb = Couchbase::connect(&conns.couchbase).await.map_err(|e| e.to_string())?;
    // A read of a key that cannot exist: "not found" proves the KV service answered.
    let probe = deadline("get", TIMEOUT, cb.collection(None, None).get("sluice-doctor-probe", None)).await;
    match probe {
        Ok(_) => Ok(format!("bucket {} readable", conns.couchbase.bucket)),
        Err(CouchbaseError::Couchbase { source, .. })
            if source.kind() == &couchbase::error::ErrorKind::DocumentNotFound =>
        {
            Ok(format!("bucket {} readable", conns.couchbase.bucket))
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn clickhouse(conn: &ClickHouseConnection) -> Result<String, String> {
    let ch = ClickHouse::connect(conn).await.map_err(|e| e.to_string())?;
    let caps = ch.capabilities;
    // The connect counted the cluster's servers (it fails on an unknown cluster).
    let cluster = match &ch.cluster {
        Some(name) => format!(", cluster {name} of {} server(s)", ch.cluster_servers),
        None => String::new(),
    };
    Ok(format!(
        "ClickHouse {}{}{cluster}",
        caps.version,
        if caps.insert_deduplication_token { "" } else { " (compat mode: no dedup tokens)" }
    ))
}

/// How sluice authenticates to one service and what its TLS handshake gives.
struct Security {
    service: &'static str,
    auth: String,
    tls: String,
}

/// A TLS handshake with `target` (host and port), described for the table; `plain` when the
/// service is not reached over TLS.
async fn handshake(target: Option<(String, u16)>, files: &TlsFiles, service: &'static str, plain: &str) -> String {
    let Some((host, port)) = target else { return format!("none ({plain})") };
    let trust = files.ca_file.as_ref().map_or_else(|| "system CAs".to_owned(), |ca| format!("CA {}", ca.display()));
    let client = if files.client_auth() { ", client certificate" } else { "" };
    match tls::probe(&host, port, files, service, TIMEOUT).await {
        Ok(h) => format!("{} {}, peer verified ({trust}, name {host}){client}", h.protocol, h.cipher),
        Err(e) => format!("FAILED: {e}"),
    }
}

async fn security(conns: &Connections) -> Vec<Security> {
    let kafka = &conns.kafka;
    let first_broker = kafka.brokers.split(',').next().and_then(|b| tls::host_port(b.trim(), 9092));
    let kafka_tls = if kafka.uses_tls() { first_broker } else { None };
    let registry = &conns.registry;
    let couchbase = &conns.couchbase;
    let clickhouse = &conns.clickhouse;
    let (kafka_files, kafka_protocol) = (kafka.tls_files(), kafka.protocol().to_ascii_uppercase());
    let (k, r, c, ch) = tokio::join!(
        handshake(kafka_tls, &kafka_files, "Kafka", &kafka_protocol),
        handshake(tls::https_host_port(&registry.url), &registry.tls, "schema registry", "http://"),
        handshake(first_tls_host(&couchbase.connstr), &couchbase.tls, "Couchbase", "couchbase://"),
        handshake(tls::https_host_port(&clickhouse.url), &clickhouse.tls, "ClickHouse", "http://"),
    );
    let kafka_auth = match (kafka.sasl(), kafka.client_certificate()) {
        (Some(sasl), _) => format!("SASL {sasl}"),
        (None, true) => "client certificate".to_owned(),
        (None, false) => "none".to_owned(),
    };
    vec![
        Security { service: "kafka", auth: kafka_auth, tls: k },
        Security { service: "schema registry", auth: registry.auth.describe(), tls: r },
        Security { service: "couchbase", auth: couchbase.describe_auth(), tls: c },
        Security { service: "clickhouse", auth: clickhouse.describe_auth(), tls: ch },
    ]
}

/// Checks every service concurrently and prints the tables; true when all answered.
pub(crate) async fn run(conns: &Connections) -> bool {
    let compat = async {
        match &conns.clickhouse_compat {
            Some(c) => Some(timed("clickhouse (compat)", &c.url, clickhouse(c)).await),
            None => None,
        }
    };
    let (k, r, c, ch, compat) = tokio::join!(
        timed("kafka", &conns.kafka.brokers, kafka(conns.kafka.clone())),
        timed("schema registry", &conns.registry.url, registry(&conns.registry)),
        timed("couchbase", &conns.couchbase.connstr, couchbase(conns)),
        timed("clickhouse", &conns.clickhouse.url, clickhouse(&conns.clickhouse)),
        compat,
    );
    let checks: Vec<Check> = [Some(k), Some(r), Some(c), Some(ch), compat].into_iter().flatten().collect();
    println!("{:<20} {:<6} {:>8}  {:<45} DETAIL", "SERVICE", "STATUS", "LATENCY", "ENDPOINT");
    for c in &checks {
        let (status, detail) = match &c.outcome {
            Ok(d) => ("ok", d.as_str()),
            Err(e) => ("DOWN", e.as_str()),
        };
        let endpoint: String = c.endpoint.chars().take(45).collect();
        println!("{:<20} {:<6} {:>6}ms  {:<45} {}", c.service, status, c.took.as_millis(), endpoint, detail);
    }
    println!();
    println!("{:<20} {:<40} TLS", "SERVICE", "AUTHENTICATION");
    for s in security(conns).await {
        println!("{:<20} {:<40} {}", s.service, s.auth, s.tls);
    }
    checks.iter().all(|c| c.outcome.is_ok())
}
