//! `sluice doctor`: one real request to each service, printed as a table.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_all_subjects};
use sluice_consumers::sinks::clickhouse::ClickHouse;
use sluice_consumers::sinks::couchbase::service::deadline;
use sluice_consumers::sinks::couchbase::{Couchbase, Error as CouchbaseError};
use sluice_core::Connections;
use sluice_core::connections::{ClickHouseConnection, VARIABLES};

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

async fn kafka(brokers: String) -> Result<String, String> {
    // librdkafka's metadata call blocks; keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &brokers).create().map_err(|e| e.to_string())?;
        let md = consumer.fetch_metadata(None, TIMEOUT).map_err(|e| e.to_string())?;
        Ok(format!("{} broker(s), {} topic(s)", md.brokers().len(), md.topics().len()))
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn registry(url: String) -> Result<String, String> {
    let sr = SrSettings::new(url);
    let subjects = get_all_subjects(&sr).await.map_err(|e| e.to_string())?;
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
    let cluster = match &ch.cluster {
        Some(name) => {
            let servers: u64 = ch
                .client
                .query("SELECT count() FROM system.clusters WHERE cluster = ?")
                .bind(name.as_str())
                .fetch_one()
                .await
                .map_err(|e| e.to_string())?;
            format!(", cluster {name} of {servers} server(s)")
        }
        None => String::new(),
    };
    Ok(format!(
        "ClickHouse {}{}{cluster}",
        caps.version,
        if caps.insert_deduplication_token { "" } else { " (compat mode: no dedup tokens)" }
    ))
}

/// Checks every service concurrently and prints the table; true when all answered.
pub(crate) async fn run(conns: &Connections) -> bool {
    let compat = async {
        match &conns.clickhouse_compat {
            Some(c) => Some(timed("clickhouse (compat)", &c.url, clickhouse(c)).await),
            None => None,
        }
    };
    let (k, r, c, ch, compat) = tokio::join!(
        timed("kafka", &conns.kafka_brokers, kafka(conns.kafka_brokers.clone())),
        timed("schema registry", &conns.schema_registry_url, registry(conns.schema_registry_url.clone())),
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
    checks.iter().all(|c| c.outcome.is_ok())
}
