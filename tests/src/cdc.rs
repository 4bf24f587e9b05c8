//! Support for the change-data-capture tests: the legacy PostgreSQL and Kafka Connect of the rig
//! (`dev/up postgres connect`), the example connector configs of `dev/connect/`, and reading what
//! Debezium wrote to Kafka.
//!
//! Each test works in a schema of its own (the sample legacy schema, `dev/postgres/legacy.sql`,
//! applied to it) captured by a connector, replication slot, publication and topic prefix of its
//! own, and [`CdcRun::cleanup`] removes all of them: a slot left behind makes PostgreSQL keep WAL.

use std::str::FromStr;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value as Json;
use sluice_core::Env;
use tokio_postgres::config::Host;

use crate::within;

/// The sample legacy schema, applied to each test's own schema.
pub const LEGACY_SQL: &str = include_str!("../../dev/postgres/legacy.sql");

/// Where the change-data-capture services are.
#[derive(Debug, Clone)]
pub struct CdcEndpoints {
    /// `postgres://user:password@host:port/legacy` (`SLUICE_POSTGRES_URL`).
    pub postgres_url: String,
    /// Kafka Connect's REST API (`SLUICE_CONNECT_URL`).
    pub connect_url: String,
    /// The registry's API that Apicurio's converter speaks, as the Connect worker reaches it
    /// (`SLUICE_CONNECT_REGISTRY_URL`).
    pub connect_registry_url: String,
}

/// The endpoints from `.dev/env` (or `SLUICE_ENV_FILE`, or the process environment); panics
/// (failing the test) with instructions when one is unknown.
pub fn endpoints() -> CdcEndpoints {
    let env = Env::discover().unwrap_or_else(|e| panic!("{e}"));
    let need = |name: &str| {
        env.get(name).unwrap_or_else(|| {
            panic!("{name} is not set: start PostgreSQL and Kafka Connect with `dev/up` (dev/up postgres connect)")
        })
    };
    CdcEndpoints {
        postgres_url: need("SLUICE_POSTGRES_URL"),
        connect_url: need("SLUICE_CONNECT_URL"),
        connect_registry_url: need("SLUICE_CONNECT_REGISTRY_URL"),
    }
}

/// One test's slice of the rig: a schema, and the connector that captures it. `id` names the
/// schema, the connector, its replication slot and its topic prefix alike.
#[derive(Debug)]
pub struct CdcRun {
    /// Schema, connector, slot and topic prefix.
    pub id: String,
    /// A session whose `search_path` is the test's schema.
    pub pg: tokio_postgres::Client,
    /// The endpoints.
    pub endpoints: CdcEndpoints,
    http: reqwest::Client,
}

impl CdcRun {
    /// Connects to PostgreSQL and creates schema `id` with the legacy tables and their
    /// publication (`cdc_<id>`) in it.
    pub async fn new(id: &str) -> Self {
        let endpoints = endpoints();
        let (pg, connection) =
            within("connect to postgres", 30, tokio_postgres::connect(&endpoints.postgres_url, tokio_postgres::NoTls))
                .await
                .unwrap_or_else(|e| panic!("connect to {}: {e} (dev/up postgres)", endpoints.postgres_url));
        tokio::spawn(connection);
        let setup = format!("CREATE SCHEMA {id}; SET search_path TO {id};\n{LEGACY_SQL}");
        within("create the legacy schema", 30, pg.batch_execute(&setup))
            .await
            .unwrap_or_else(|e| panic!("create schema {id}: {e}"));
        Self { id: id.to_owned(), pg, endpoints, http: reqwest::Client::new() }
    }

    /// The example config `dev/connect/<file>` for this run: its placeholders filled with the
    /// rig's PostgreSQL, the run's schema, slot and topic prefix, and the registry.
    pub fn connector_config(&self, file: &str) -> Json {
        let pg = tokio_postgres::Config::from_str(&self.endpoints.postgres_url).expect("SLUICE_POSTGRES_URL parses");
        let host = match pg.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            other => panic!("SLUICE_POSTGRES_URL: expected a TCP host, got {other:?}"),
        };
        let port = pg.get_ports().first().copied().unwrap_or(5432).to_string();
        let password = String::from_utf8_lossy(pg.get_password().unwrap_or_default()).into_owned();
        let values = [
            ("pg_host", host.as_str()),
            ("pg_port", port.as_str()),
            ("pg_user", pg.get_user().unwrap_or_default()),
            ("pg_password", password.as_str()),
            ("pg_database", pg.get_dbname().unwrap_or_default()),
            ("registry_url", self.endpoints.connect_registry_url.as_str()),
            ("topic_prefix", self.id.as_str()),
            ("schema", self.id.as_str()),
            ("slot", self.id.as_str()),
        ];
        render_config(file, &values)
    }

    /// Creates the connector from `config` and waits until its task runs and its replication slot
    /// exists: changes committed from then on are captured.
    pub async fn start_connector(&self, config: &Json) {
        let url = format!("{}/connectors/{}/config", self.endpoints.connect_url, self.id);
        let response = within("create the connector", 60, self.http.put(&url).json(config).send())
            .await
            .unwrap_or_else(|e| panic!("PUT {url}: {e} (dev/up connect)"));
        let status = response.status();
        assert!(status.is_success(), "PUT {url}: {status} {}", response.text().await.unwrap_or_default());
        within("the connector's task to run", 90, self.running()).await;
        within("the replication slot", 60, async {
            while self.slot_active().await.is_none() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
    }

    /// Restarts the connector from scratch: stopped, its source offsets deleted (Kafka Connect's
    /// offsets API), resumed — so it snapshots every table again (`op = r` for every row).
    pub async fn resnapshot(&self) {
        let base = format!("{}/connectors/{}", self.endpoints.connect_url, self.id);
        let ok = |what: &str, r: Result<reqwest::Response, reqwest::Error>| match r {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => panic!("{what}: {}", r.status()),
            Err(e) => panic!("{what}: {e}"),
        };
        ok("stop the connector", within("stop", 60, self.http.put(format!("{base}/stop")).send()).await);
        within("the connector to stop", 60, async {
            loop {
                let status: Json =
                    self.http.get(format!("{base}/status")).send().await.expect("status").json().await.expect("json");
                if status["connector"]["state"] == "STOPPED" {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        ok("delete its offsets", within("offsets", 60, self.http.delete(format!("{base}/offsets")).send()).await);
        ok("resume it", within("resume", 60, self.http.put(format!("{base}/resume")).send()).await);
        within("the connector's task to run again", 90, self.running()).await;
    }

    /// Polls the connector's status until it and its task are RUNNING; a FAILED one fails the test
    /// with Connect's stack trace.
    async fn running(&self) {
        let url = format!("{}/connectors/{}/status", self.endpoints.connect_url, self.id);
        loop {
            if let Ok(response) = self.http.get(&url).send().await
                && let Ok(status) = response.json::<Json>().await
            {
                let tasks = status["tasks"].as_array().cloned().unwrap_or_default();
                if let Some(failed) = tasks.iter().find(|t| t["state"] == "FAILED") {
                    panic!("connector {} failed: {}", self.id, failed["trace"].as_str().unwrap_or("?"));
                }
                if status["connector"]["state"] == "RUNNING"
                    && !tasks.is_empty()
                    && tasks.iter().all(|t| t["state"] == "RUNNING")
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `Some(active)` when the run's replication slot exists.
    async fn slot_active(&self) -> Option<bool> {
        let row = self
            .pg
            .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&self.id])
            .await
            .expect("query pg_replication_slots");
        row.map(|r| r.get(0))
    }

    /// Deletes the connector, then its replication slot (once the task let go of it), the
    /// publication, the schema and the run's topics. Call it also when the test failed.
    pub async fn cleanup(&self, brokers: &str) {
        let url = format!("{}/connectors/{}", self.endpoints.connect_url, self.id);
        match within("delete the connector", 60, self.http.delete(&url).send()).await {
            Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND => {}
            Ok(r) => panic!("DELETE {url}: {}", r.status()),
            Err(e) => panic!("DELETE {url}: {e}"),
        }
        within("drop the replication slot", 60, async {
            while let Some(active) = self.slot_active().await {
                if !active {
                    // Fails only when the slot became active again in between: then retry.
                    let _ = self.pg.execute("SELECT pg_drop_replication_slot($1)", &[&self.id]).await;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        let drop = format!("DROP PUBLICATION IF EXISTS cdc_{id}; DROP SCHEMA IF EXISTS {id} CASCADE;", id = self.id);
        within("drop the schema", 30, self.pg.batch_execute(&drop)).await.expect("drop schema and publication");
        delete_topics_with_prefix(brokers, &format!("{}.", self.id)).await;
    }
}

/// `dev/connect/<file>` with each `{{name}}` in its values replaced; panics on a placeholder
/// without a value. `${...}` is Connect's own syntax and stays.
pub fn render_config(file: &str, values: &[(&str, &str)]) -> Json {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dev/connect").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut config: serde_json::Map<String, Json> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for value in config.values_mut() {
        let Json::String(s) = value else { panic!("{}: every value must be a string", path.display()) };
        for (name, v) in values {
            *s = s.replace(&format!("{{{{{name}}}}}"), v);
        }
        assert!(!s.contains("{{"), "{}: no value for a placeholder in {s:?}", path.display());
    }
    Json::Object(config)
}

/// The first `n` records of `topic`, read from the beginning of every partition (records of one key
/// share a partition, so they come in their order). Waits for Connect to create the topic.
pub async fn read_records(brokers: &str, topic: &str, n: usize, secs: u64) -> Vec<OwnedMessage> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    // librdkafka's BaseConsumer blocks: poll it off the async runtime.
    let read = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "unused-offsets-are-never-committed")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let partitions = loop {
            let found = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| m.topics().first().filter(|t| t.error().is_none()).map(|t| t.partitions().len()))
                .unwrap_or(0);
            if found > 0 {
                break found;
            }
            assert!(Instant::now() < deadline, "topic {topic} did not appear within {secs}s");
            std::thread::sleep(Duration::from_millis(250));
        };
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p as i32, Offset::Beginning).expect("partition offset");
        }
        consumer.assign(&tpl).expect("assign");
        let mut records = Vec::new();
        while records.len() < n {
            assert!(Instant::now() < deadline, "{topic}: {} of {n} records within {secs}s", records.len());
            if let Some(msg) = consumer.poll(Duration::from_millis(250)) {
                records.push(msg.unwrap_or_else(|e| panic!("consume {topic}: {e}")).detach());
            }
        }
        records
    });
    read.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// A record's value as JSON (`None` for a tombstone).
pub fn json_value(record: &OwnedMessage) -> Option<Json> {
    record.payload().map(|p| serde_json::from_slice(p).unwrap_or_else(|e| panic!("value is not JSON: {e}")))
}

/// Deletes every topic whose name starts with `prefix`.
async fn delete_topics_with_prefix(brokers: &str, prefix: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let metadata = admin.inner().fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
    let topics: Vec<&str> = metadata.topics().iter().map(|t| t.name()).filter(|t| t.starts_with(prefix)).collect();
    if !topics.is_empty() {
        within("delete topics", 30, admin.delete_topics(&topics, &AdminOptions::new())).await.expect("delete topics");
    }
}
