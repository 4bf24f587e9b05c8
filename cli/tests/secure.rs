//! Secured clusters (issue #15), through the real binary against the rig's secured endpoints:
//! Kafka over SASL_SSL with SCRAM and TLS verification, the registry behind TLS and basic auth,
//! Couchbase over `couchbases://`, ClickHouse over HTTPS with a password — each trusting the
//! rig's private CA.
//!
//! - the sample domain is published and projected into both sinks, every hop secured;
//! - a wrong password, an unknown CA and a name the certificate does not carry each fail within
//!   seconds, with the service named (no hang, no retry loop);
//! - with real secret values set, nothing any command prints (output, logs at debug level, `--help`,
//!   the gateway's `/metrics`) contains one of them.
//!
//! The secured endpoints and their credentials come from the rig's `SLUICE_DEV_*` variables.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{await_user_docs, expected_user_docs, run_ok, setup, sluice, text, uuid_hex8, write_jsonl};
use serde_json::Value;
use sluice_consumers::sinks::clickhouse::ClickHouse;
use sluice_consumers::sinks::couchbase::Couchbase;
use sluice_core::connections::{ClickHouseConnection, CouchbaseConnection, Secret, TlsFiles};
use sluice_tests::domain::generate;
use sluice_tests::{fresh_topology, unique};

/// A rig variable (the secured endpoints are `SLUICE_DEV_*`).
fn rig(name: &str) -> String {
    let env = sluice_core::Env::discover().expect("the rig's env file");
    env.get(name).unwrap_or_else(|| panic!("{name} is not set: start the rig with dev/up"))
}

/// Every variable a command needs to reach the secured endpoints, ClickHouse database `database`.
fn secure_vars(database: &str) -> Vec<(String, String)> {
    let ca = rig("SLUICE_DEV_TLS_CA_FILE");
    [
        ("SLUICE_KAFKA_BROKERS", rig("SLUICE_DEV_KAFKA_SASL_SSL_BROKERS")),
        ("SLUICE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
        ("SLUICE_KAFKA_SASL_USERNAME", rig("SLUICE_DEV_KAFKA_SASL_USERNAME")),
        ("SLUICE_KAFKA_SASL_PASSWORD", rig("SLUICE_DEV_KAFKA_SASL_PASSWORD")),
        ("SLUICE_KAFKA_TLS_CA_FILE", ca.clone()),
        ("SLUICE_SCHEMA_REGISTRY_URL", rig("SLUICE_DEV_REGISTRY_HTTPS_URL")),
        ("SLUICE_SCHEMA_REGISTRY_USERNAME", rig("SLUICE_DEV_REGISTRY_USERNAME")),
        ("SLUICE_SCHEMA_REGISTRY_PASSWORD", rig("SLUICE_DEV_REGISTRY_PASSWORD")),
        ("SLUICE_SCHEMA_REGISTRY_TLS_CA_FILE", ca.clone()),
        ("SLUICE_COUCHBASE_CONNSTR", rig("SLUICE_DEV_COUCHBASE_TLS_CONNSTR")),
        ("SLUICE_COUCHBASE_TLS_CA_FILE", ca.clone()),
        ("SLUICE_CLICKHOUSE_URL", rig("SLUICE_DEV_CLICKHOUSE_HTTPS_URL")),
        ("SLUICE_CLICKHOUSE_USER", rig("SLUICE_DEV_CLICKHOUSE_HTTPS_USER")),
        ("SLUICE_CLICKHOUSE_PASSWORD", rig("SLUICE_DEV_CLICKHOUSE_HTTPS_PASSWORD")),
        ("SLUICE_CLICKHOUSE_TLS_CA_FILE", ca),
        ("SLUICE_CLICKHOUSE_DATABASE", database.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The secrets a test must never see printed.
fn secrets() -> Vec<String> {
    [
        "SLUICE_DEV_KAFKA_SASL_PASSWORD",
        "SLUICE_DEV_REGISTRY_PASSWORD",
        "SLUICE_DEV_REGISTRY_TOKEN",
        "SLUICE_DEV_CLICKHOUSE_HTTPS_PASSWORD",
    ]
    .iter()
    .map(|name| rig(name))
    .collect()
}

/// A fresh sample-domain topology whose every command reaches the secured endpoints: the
/// variables go to `clickhouse.env` beside it, which [`sluice`] applies.
fn secure_topology(sfx: &str) -> (PathBuf, String) {
    let topology = fresh_topology(sfx);
    let database = format!("db_{sfx}");
    let lines: String = secure_vars(&database).iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(topology.with_file_name("clickhouse.env"), lines).expect("clickhouse.env");
    (topology, database)
}

fn secure_clickhouse(database: &str) -> ClickHouseConnection {
    ClickHouseConnection {
        user: Some(rig("SLUICE_DEV_CLICKHOUSE_HTTPS_USER")),
        password: Some(Secret::new(rig("SLUICE_DEV_CLICKHOUSE_HTTPS_PASSWORD"))),
        database: database.to_owned(),
        tls: TlsFiles { ca_file: Some(rig("SLUICE_DEV_TLS_CA_FILE").into()), ..TlsFiles::default() },
        ..ClickHouseConnection::plain(rig("SLUICE_DEV_CLICKHOUSE_HTTPS_URL"))
    }
}

fn secure_couchbase() -> CouchbaseConnection {
    let plain = sluice_tests::connections().couchbase;
    CouchbaseConnection {
        connstr: rig("SLUICE_DEV_COUCHBASE_TLS_CONNSTR"),
        tls: TlsFiles { ca_file: Some(rig("SLUICE_DEV_TLS_CA_FILE").into()), ..TlsFiles::default() },
        ..plain
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_domain_flows_end_to_end_over_secured_connections_only() {
    let sfx = unique("sec");
    let (topology, database) = secure_topology(&sfx);
    setup(&topology);
    run_ok(sluice(&topology).args(["clickhouse", "migrate"]));
    run_ok(sluice(&topology).args(["couchbase", "setup"]));
    let (events, model) = generate(30, 3, &uuid_hex8(), &format!("{sfx}-"));
    let all: Vec<&Value> = events.iter().collect();
    let file = write_jsonl(topology.parent().expect("dir"), "events.jsonl", &all);
    run_ok(sluice(&topology).args(["publish", "--file"]).arg(&file));
    for projection in [format!("analytics_{sfx}"), format!("user_state_{sfx}")] {
        let out = run_ok(sluice(&topology).args(["work", "--projection", &projection, "--exit-at-end"]));
        assert!(String::from_utf8_lossy(&out.stdout).contains("consumed"), "{}", text(&out));
    }

    let ch = ClickHouse::connect(&secure_clickhouse(&database)).await.expect("ClickHouse over HTTPS");
    common::analytics::assert_every_event_once(&ch.client.clone().with_database(&database), &sfx, &model).await;

    let cb = Couchbase::connect(&secure_couchbase()).await.expect("Couchbase over TLS");
    await_user_docs(&cb, &model, 60).await;
    assert!(!expected_user_docs(&model).is_empty());
}

/// Runs `cmd` with `var=value` over the secure variables; it must fail within `secs` with every
/// one of `says` in its output, and no secret.
fn fails_fast(topology: &Path, args: &[&str], var: &str, value: &str, says: &[&str], secs: u64) {
    let start = Instant::now();
    let out = sluice(topology).args(args).env(var, value).env("SLUICE_LOG", "warn").output().expect("run sluice");
    let took = start.elapsed();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{args:?} with {var}={value} succeeded: {}", text(&out));
    assert!(took < Duration::from_secs(secs), "{args:?} with {var}={value} took {took:?}");
    for s in says {
        assert!(all.contains(s), "{args:?} with {var}={value}: {s:?} not in\n{all}");
    }
    no_secret_in(&all, &format!("{args:?} with {var}"));
}

fn no_secret_in(output: &str, what: &str) {
    for secret in secrets() {
        assert!(!output.contains(&secret), "{what} printed a secret");
    }
}

#[test]
fn wrong_credentials_untrusted_certificates_and_wrong_names_fail_fast_naming_the_service() {
    let sfx = unique("secf");
    let (topology, _) = secure_topology(&sfx);
    let other_ca = rig("SLUICE_DEV_TLS_OTHER_CA_FILE");
    let kafka_brokers = rig("SLUICE_DEV_KAFKA_SASL_SSL_BROKERS");
    let kafka_by_name = kafka_brokers.replace("127.0.0.1", "localhost");
    let registry_by_name = rig("SLUICE_DEV_REGISTRY_HTTPS_URL").replace("127.0.0.1", "localhost");
    let clickhouse_by_name = rig("SLUICE_DEV_CLICKHOUSE_HTTPS_URL").replace("127.0.0.1", "localhost");
    let topics = ["topics", "apply", "--dry-run"];
    let kafka = ["Kafka (", "SASL SCRAM-SHA-512 as"];
    fails_fast(
        &topology,
        &topics,
        "SLUICE_KAFKA_SASL_PASSWORD",
        "wrong",
        &[kafka[0], kafka[1], "Authentication failed"],
        15,
    );
    fails_fast(&topology, &topics, "SLUICE_KAFKA_TLS_CA_FILE", &other_ca, &[kafka[0], "certificate verify failed"], 15);
    fails_fast(
        &topology,
        &topics,
        "SLUICE_KAFKA_BROKERS",
        &kafka_by_name,
        &[kafka[0], "certificate verify failed"],
        15,
    );

    let schemas = ["schemas", "check"];
    let refused = "the schema registry refused sluice";
    fails_fast(&topology, &schemas, "SLUICE_SCHEMA_REGISTRY_PASSWORD", "wrong", &[refused, "401"], 10);
    fails_fast(&topology, &schemas, "SLUICE_SCHEMA_REGISTRY_TLS_CA_FILE", &other_ca, &[refused, "UnknownIssuer"], 10);
    fails_fast(
        &topology,
        &schemas,
        "SLUICE_SCHEMA_REGISTRY_URL",
        &registry_by_name,
        &[refused, "not valid for name"],
        10,
    );

    let migrate = ["clickhouse", "migrate"];
    fails_fast(&topology, &migrate, "SLUICE_CLICKHOUSE_PASSWORD", "wrong", &["ClickHouse at", "Wrong password"], 10);
    fails_fast(
        &topology,
        &migrate,
        "SLUICE_CLICKHOUSE_TLS_CA_FILE",
        &other_ca,
        &["ClickHouse at", "UnknownIssuer"],
        10,
    );
    fails_fast(
        &topology,
        &migrate,
        "SLUICE_CLICKHOUSE_URL",
        &clickhouse_by_name,
        &["ClickHouse at", "not valid for name"],
        10,
    );

    let couchbase = ["couchbase", "setup"];
    fails_fast(
        &topology,
        &couchbase,
        "SLUICE_COUCHBASE_TLS_CA_FILE",
        &other_ca,
        &["Couchbase at", "UnknownIssuer"],
        10,
    );

    // A worker, too, stops instead of waiting for a sink that will never let it in.
    let work = ["work", "--projection", &format!("analytics_{sfx}"), "--exit-at-end"];
    fails_fast(&topology, &work, "SLUICE_CLICKHOUSE_PASSWORD", "wrong", &["clickhouse refuses", "Wrong password"], 30);
}

/// Output, stdout and stderr together, at debug level.
fn output_of(topology: &Path, args: &[&str]) -> (bool, String) {
    let out: Output = sluice(topology).args(args).env("SLUICE_LOG", "debug").output().expect("run sluice");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_prints_a_secret() {
    let sfx = unique("secs");
    let (topology, _) = secure_topology(&sfx);
    let dir = topology.parent().expect("dir").to_path_buf();
    setup(&topology);
    let (events, _) = generate(5, 1, &uuid_hex8(), &format!("{sfx}-"));
    let all: Vec<&Value> = events.iter().collect();
    let file = write_jsonl(&dir, "events.jsonl", &all).display().to_string();
    let analytics = format!("analytics_{sfx}");
    let commands: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["doctor", "--help"],
        vec!["gateway", "--help"],
        vec!["doctor"],
        vec!["topics", "apply", "--dry-run"],
        vec!["schemas", "check"],
        vec!["clickhouse", "migrate"],
        vec!["publish", "--file", &file],
        vec!["work", "--projection", &analytics, "--exit-at-end"],
        vec!["lag"],
    ];
    for args in &commands {
        let (ok, output) = output_of(&topology, args);
        assert!(ok || args == &vec!["doctor"], "{args:?} failed:\n{output}");
        no_secret_in(&output, &format!("{args:?}"));
    }
    // The doctor over a bearer token instead of basic auth: the token is not shown either.
    let mut doctor = sluice(&topology);
    doctor
        .arg("doctor")
        .env("SLUICE_SCHEMA_REGISTRY_USERNAME", "")
        .env("SLUICE_SCHEMA_REGISTRY_PASSWORD", "")
        .env("SLUICE_SCHEMA_REGISTRY_TOKEN", rig("SLUICE_DEV_REGISTRY_TOKEN"));
    let out = doctor.output().expect("doctor");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains("bearer token"), "{printed}");
    no_secret_in(&printed, "doctor with a token");

    // The gateway's metrics, after it published over SASL_SSL.
    let gateway = common::gateway::Gateway::start(&topology).await;
    let statuses = gateway.batch(&all).await;
    assert!(statuses.iter().all(|s| *s < 300), "{statuses:?}");
    let metrics = reqwest::get(format!("{}/metrics", gateway.base)).await.expect("metrics").text().await.expect("body");
    assert!(metrics.contains("sluice_"), "{metrics}");
    no_secret_in(&metrics, "/metrics");
    drop(gateway);
    no_secret_in(&std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default(), "the gateway's log");
}

#[test]
fn every_kafka_login_the_rig_offers_works_and_mutual_tls_needs_the_client_certificate() {
    let sfx = unique("seck");
    let (topology, _) = secure_topology(&sfx);
    let topics = ["topics", "apply", "--dry-run"];
    let ok = |vars: &[(&str, String)]| {
        let mut cmd = sluice(&topology);
        cmd.args(topics).env("SLUICE_LOG", "warn");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run sluice");
        assert!(out.status.success(), "{vars:?}: {}", text(&out));
        no_secret_in(
            &format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            "topics",
        );
    };
    ok(&[("SLUICE_KAFKA_SASL_MECHANISM", "PLAIN".to_owned())]);
    ok(&[("SLUICE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256".to_owned())]);
    // Mutual TLS: no SASL user, a client certificate instead.
    let mtls = [
        ("SLUICE_KAFKA_BROKERS", rig("SLUICE_DEV_KAFKA_MTLS_BROKERS")),
        ("SLUICE_KAFKA_SECURITY_PROTOCOL", "ssl".to_owned()),
        ("SLUICE_KAFKA_SASL_MECHANISM", String::new()),
        ("SLUICE_KAFKA_SASL_USERNAME", String::new()),
        ("SLUICE_KAFKA_SASL_PASSWORD", String::new()),
        ("SLUICE_KAFKA_TLS_CERT_FILE", rig("SLUICE_DEV_TLS_CLIENT_CERT_FILE")),
        ("SLUICE_KAFKA_TLS_KEY_FILE", rig("SLUICE_DEV_TLS_CLIENT_KEY_FILE")),
    ];
    ok(&mtls);
    // Without the certificate the broker refuses the handshake: fast, and named.
    let start = Instant::now();
    let out = sluice(&topology)
        .args(topics)
        .envs(mtls[..5].iter().map(|(k, v)| (*k, v.as_str())))
        .env("SLUICE_LOG", "warn")
        .output()
        .expect("run sluice");
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("Kafka (") && all.contains("SSL"), "{all}");
    assert!(start.elapsed() < Duration::from_secs(15), "{:?}", start.elapsed());
}
