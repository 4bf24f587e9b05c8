//! Hostile records on a source topic, through the real binary and the real services: each class
//! must reach the dead-letter topic with its code and alter nothing in Couchbase or ClickHouse,
//! and the valid events around them must be projected, in both sinks.
//!
//! The classes (each one broke a promise before): a record too large to copy to the DLQ as it
//! is, a body whose `event_type` is not its schema's type, a valid body of an undeclared type, a
//! type on another type's topic, a body cut short before its last union fields, a Kafka key that
//! is not the aggregate id. And a DLQ that refuses writes: the worker pauses, says why, and
//! resumes when the DLQ accepts again.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use serde_json::{Value, json};
use sluice_consumers::sinks::couchbase::Couchbase;
use sluice_consumers::sinks::couchbase::service::deadline;
use sluice_core::avro::encode_json;
use sluice_core::framing::frame;
use sluice_producers::registry::Registry;
use sluice_tests::{connections, fresh_topology, unique, within};

mod common;
use common::*;

const OCCURRED: i64 = 1_764_000_000_000;

/// The test's topology, its topics registered and its schemas' ids at hand.
struct Rig {
    sfx: String,
    topology: std::path::PathBuf,
    users: String,
    registry: Registry,
    producer: FutureProducer,
}

impl Rig {
    async fn new(prefix: &str) -> Self {
        let sfx = unique(prefix);
        let topology = fresh_topology(&sfx);
        let dir = topology.parent().expect("dir").to_path_buf();
        // The analytics projection's rollups need a database of their own.
        let ch = connections().clickhouse;
        std::fs::write(
            dir.join("clickhouse.env"),
            format!("SLUICE_CLICKHOUSE_URL={}\nSLUICE_CLICKHOUSE_DATABASE=db_{sfx}\n", ch.url),
        )
        .expect("clickhouse.env");
        run_ok(sluice(&topology).args(["topics", "apply"]));
        run_ok(sluice(&topology).args(["schemas", "register"]));
        let registry = Registry::new(&connections().registry, Duration::from_secs(10)).expect("registry");
        let producer = ClientConfig::new()
            .set("bootstrap.servers", connections().kafka.brokers)
            // Records up to the broker's own limit, past librdkafka's default of 1,000,000 bytes.
            .set("message.max.bytes", "10000000")
            .create()
            .expect("producer");
        let users = format!("users_{sfx}");
        Self { sfx, topology, users, registry, producer }
    }

    fn projection(&self, name: &str) -> String {
        format!("{name}_{}", self.sfx)
    }

    /// The registry id of the latest schema of the record `name`.
    async fn id(&self, record: &str) -> u32 {
        self.registry.latest(record).await.expect("registry").unwrap_or_else(|| panic!("{record} registered")).id
    }

    /// The framed Avro body of `event` written with the schema file `schema` (id `id`).
    fn body(schema: &str, id: u32, event: &Value) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas").join(schema);
        let text = std::fs::read_to_string(path).expect("schema file");
        let schema = apache_avro::Schema::parse_str(&text).expect("schema");
        frame(id, &encode_json(event, &schema).expect("encodes"))
    }

    /// Sends one record to partition 0 of the users topic: everything here is one partition's
    /// sequence, so the valid events behind the hostile ones prove the partition moved on.
    async fn send(&self, key: Option<&str>, value: &[u8]) {
        let mut record = FutureRecord::<str, [u8]>::to(&self.users).payload(value).partition(0);
        if let Some(k) = key {
            record = record.key(k);
        }
        self.producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("send");
    }

    /// Runs `sluice work --exit-at-end` for `projection`; fails unless it exits 0 in time.
    fn drain(&self, projection: &str, secs: u64) -> String {
        let mut child = sluice(&self.topology)
            .args(["work", "--projection", projection, "--exit-at-end"])
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn worker");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "sluice work --exit-at-end of {projection} did not return within {secs}s (a stalled partition?)\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let out = child.wait_with_output().expect("output");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(status.success(), "worker of {projection} failed: {status}\n{stderr}");
        format!("{stdout}\n{stderr}")
    }
}

fn envelope(event_type: &str, aggregate_id: &str, version: i64) -> serde_json::Map<String, Value> {
    let Value::Object(map) = json!({
        "event_id": uuid::Uuid::new_v4().to_string(), "event_type": event_type, "aggregate_id": aggregate_id,
        "aggregate_version": version, "occurred_at": OCCURRED + version, "producer": "hostile-tests",
    }) else {
        unreachable!()
    };
    map
}

fn event(event_type: &str, aggregate_id: &str, version: i64, payload: Value) -> Value {
    let mut e = envelope(event_type, aggregate_id, version);
    if let Value::Object(p) = payload {
        e.extend(p);
    }
    Value::Object(e)
}

/// The DLQ records of `topic`, by their original key, with their headers.
async fn dead_letters(topic: &str, n: usize) -> Vec<(String, OwnedMessage)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", connections().kafka.brokers)
        .set("group.id", unique("dlq_reader"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "20000000")
        .set("max.partition.fetch.bytes", "20000000")
        .create()
        .expect("dlq consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    while out.len() < n {
        let m = within("dlq record", 60, consumer.recv()).await.expect("dlq message").detach();
        out.push((String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(), m));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    let headers = m.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Sets topic-level configs of `topic` (a non-incremental AlterConfigs: others go back to the
/// broker's defaults, which these test topics use anyway).
async fn alter_topic(topic: &str, entries: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", connections().kafka.brokers).create().expect("admin");
    let alter = entries.iter().fold(AlterConfig::new(ResourceSpecifier::Topic(topic)), |a, (k, v)| a.set(k, v));
    let results = admin.alter_configs([&alter], &AdminOptions::new()).await.expect("alter configs");
    for r in results {
        r.unwrap_or_else(|(e, code)| panic!("alter {topic}: {e:?} {code}"));
    }
    // The brokers apply topic configs shortly after the controller accepted them: wait until
    // they report every new value.
    let start = Instant::now();
    loop {
        let described = admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()).await;
        let config = described.expect("describe configs").into_iter().next().expect("one resource");
        let config = config.unwrap_or_else(|e| panic!("describe {topic}: {e:?}"));
        let applied = entries.iter().all(|(k, v)| config.get(k).and_then(|e| e.value.as_deref()) == Some(*v));
        if applied {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{topic}: {entries:?} not applied within 30s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn user_doc(cb: &Couchbase, user: &str) -> Option<Value> {
    let coll = cb.collection(None, None);
    let got = deadline("get", Duration::from_secs(10), coll.get(format!("user::{user}"), None)).await.ok()?;
    got.content_as::<Value>().ok()
}

/// A client of the test's own ClickHouse database.
async fn clickhouse(sfx: &str) -> clickhouse::Client {
    let mut conn = connections().clickhouse;
    conn.database = format!("db_{sfx}");
    common::analytics::client(&conn).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_reach_the_dlq_and_alter_nothing() {
    let rig = Rig::new("hostile").await;
    let victim = format!("{}-victim", rig.sfx);
    let registered = rig.id("sluice.users.UserRegistered").await;
    let profile = rig.id("sluice.users.UserProfileUpdated").await;
    let session = rig.id("sluice.sessions.SessionStarted").await;
    // A schema someone registered that no topology declares, with a valid envelope.
    let foreign_text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/users/registered.avsc"))
            .expect("schema")
            .replace("\"UserRegistered\"", "\"UserPromoted\"");
    let foreign = rig
        .registry
        .register("sluice.users.UserPromoted", &foreign_text, "sluice.users.UserPromoted")
        .await
        .expect("register a foreign schema");
    // The source topic takes records up to 3 MB, more than the DLQ topic's 1 MiB.
    alter_topic(&rig.users, &[("max.message.bytes", "3000000")]).await;

    let v1 = event(
        "user.registered",
        &victim,
        1,
        json!({"email": "victim@example.com", "display_name": "Victim", "country": "NL", "referrer": null}),
    );
    rig.send(Some(&victim), &Rig::body("users/registered.avsc", registered, &v1)).await;

    // 1. Undecodable and large: 1,040,000 bytes (fits the DLQ whole), 2,000,000 bytes (does not).
    let mut big = vec![0u8; 1_040_000];
    big[1..5].copy_from_slice(&registered.to_be_bytes());
    big[5..].fill(0xff);
    rig.send(Some("a-big"), &big).await;
    let mut huge = big.clone();
    huge.resize(2_000_000, 0xff);
    rig.send(Some("a-huge"), &huge).await;
    // 2. A user.registered body that says it is a user.deleted: it must not erase the victim.
    let disguised = event(
        "user.deleted",
        &victim,
        5,
        json!({"email": "x@example.com", "display_name": "X", "country": "NL", "referrer": null}),
    );
    rig.send(Some(&victim), &Rig::body("users/registered.avsc", registered, &disguised)).await;
    // 3. A valid body of an undeclared type at version 91: it must not overwrite the document
    //    (the real update below, version 4, would then be lost).
    let undeclared = event(
        "user.promoted",
        &victim,
        91,
        json!({"email": "hijack@example.com", "display_name": "Hijacked", "country": "XX", "referrer": null}),
    );
    rig.send(
        Some(&victim),
        &frame(
            foreign,
            &encode_json(&undeclared, &apache_avro::Schema::parse_str(&foreign_text).expect("schema"))
                .expect("encodes"),
        ),
    )
    .await;
    //    A declared type on another type's topic.
    let stray = event(
        "session.started",
        &victim,
        92,
        json!({"user_id": victim, "device": "web", "ip_country": null, "user_agent": null}),
    );
    rig.send(Some(&victim), &Rig::body("sessions/started.avsc", session, &stray)).await;
    // 4. A profile update cut before its last union fields (apache-avro alone reads them as null).
    let update = event(
        "user.profile_updated",
        &victim,
        3,
        json!({"display_name": "Truncated", "country": null, "locale": null, "avatar_url": null}),
    );
    let mut cut = Rig::body("users/profile_updated.avsc", profile, &update);
    assert_eq!(cut[cut.len() - 3..], [0, 0, 0], "the last three union fields are null");
    cut.truncate(cut.len() - 3);
    rig.send(Some(&victim), &cut).await;
    // 10. A valid update keyed by another id.
    let rekeyed = event(
        "user.profile_updated",
        &victim,
        93,
        json!({"display_name": "Wrong key", "country": null, "locale": null, "avatar_url": null}),
    );
    rig.send(Some("someone-else"), &Rig::body("users/profile_updated.avsc", profile, &rekeyed)).await;
    rig.send(None, &Rig::body("users/profile_updated.avsc", profile, &rekeyed)).await;
    // The real update, behind all of them on the same partition.
    let v4 = event(
        "user.profile_updated",
        &victim,
        4,
        json!({"display_name": "Renamed", "country": null, "locale": null, "avatar_url": null}),
    );
    rig.send(Some(&victim), &Rig::body("users/profile_updated.avsc", profile, &v4)).await;

    let expected_codes = [
        ("", "key_mismatch"),
        ("a-big", "undecodable_body"),
        ("a-huge", "undecodable_body"),
        ("someone-else", "key_mismatch"),
        (victim.as_str(), "type_schema_mismatch"),
        (victim.as_str(), "undeclared_event_type"),
        (victim.as_str(), "wrong_topic"),
        (victim.as_str(), "undecodable_body"),
    ];
    let cb = within("couchbase", 30, Couchbase::connect(&connections().couchbase)).await.expect("couchbase");
    for name in ["user_state", "analytics"] {
        let projection = rig.projection(name);
        let log = rig.drain(&projection, 240);
        assert!(log.contains(&format!("dead-lettered {}", expected_codes.len())), "{log}");

        let letters = dead_letters(&format!("{projection}.dlq"), expected_codes.len()).await;
        let mut codes: Vec<(String, String)> =
            letters.iter().map(|(k, m)| (k.clone(), header(m, "sluice.dlq.code").unwrap_or_default())).collect();
        codes.sort();
        let mut expected: Vec<(String, String)> =
            expected_codes.iter().map(|(k, c)| ((*k).to_owned(), (*c).to_owned())).collect();
        expected.sort();
        assert_eq!(codes, expected, "{projection}: every hostile record on the DLQ with its code");
        for (key, m) in &letters {
            assert_eq!(header(m, "sluice.source.topic").as_deref(), Some(rig.users.as_str()));
            assert!(header(m, "sluice.dlq.reason").is_some_and(|r| !r.is_empty()), "{key}: a reason");
        }
        let big_letter = &letters.iter().find(|(k, _)| k == "a-big").expect("a-big").1;
        assert_eq!(big_letter.payload().map(<[u8]>::len), Some(1_040_000), "kept whole where the DLQ takes it");
        assert_eq!(header(big_letter, "sluice.dlq.truncated"), None);
        let huge_letter = &letters.iter().find(|(k, _)| k == "a-huge").expect("a-huge").1;
        assert_eq!(huge_letter.payload().map(<[u8]>::len), Some(16 * 1024), "a truncated copy");
        assert_eq!(huge_letter.payload().map(|p| &p[..5]), Some(&huge[..5]), "the copy starts like the record");
        let truncated = header(huge_letter, "sluice.dlq.truncated").expect("truncated header");
        assert!(truncated.contains("value 2000000 bytes"), "{truncated}");
    }

    let doc = user_doc(&cb, &victim).await.expect("the victim's document exists: nothing erased it");
    assert_eq!(
        (&doc["email"], &doc["display_name"], &doc["country"]),
        (&json!("victim@example.com"), &json!("Renamed"), &json!("NL")),
        "only the valid events were applied: {doc}"
    );
    let sfx = &rig.sfx;
    let ch = clickhouse(sfx).await;
    let versions: Vec<i64> = ch
        .query(&format!("SELECT aggregate_version FROM events_{sfx} FINAL ORDER BY aggregate_version"))
        .fetch_all()
        .await
        .expect("events");
    assert_eq!(versions, [1, 4], "ClickHouse has the two valid events and nothing else");
    let state: Vec<(String, String, u8)> = ch
        .query(&format!("SELECT email, display_name, toUInt8(is_deleted) FROM users_current_{sfx} WHERE user_id = ?"))
        .bind(&victim)
        .fetch_all()
        .await
        .expect("users_current");
    assert_eq!(
        state,
        [("victim@example.com".to_owned(), "Renamed".to_owned(), 0)],
        "the victim is not erased in users_current, and has the valid update"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlq_that_refuses_writes_pauses_the_partitions_until_it_accepts_again() {
    let rig = Rig::new("dlqdown").await;
    let projection = rig.projection("user_state");
    let dlq = format!("{projection}.dlq");
    // The DLQ refuses anything over 1 KB, even the truncated copy of a 20 KB poison record.
    alter_topic(&dlq, &[("max.message.bytes", "1024")]).await;
    let registered = rig.id("sluice.users.UserRegistered").await;
    rig.send(Some("poison"), &vec![0x7b; 20_000]).await;
    let after = format!("{}-after", rig.sfx);
    let e = event(
        "user.registered",
        &after,
        1,
        json!({"email": "a@example.com", "display_name": "After", "country": "NL", "referrer": null}),
    );
    rig.send(Some(&after), &Rig::body("users/registered.avsc", registered, &e)).await;

    let port = PrivateClickHouse::free_port();
    let addr = format!("127.0.0.1:{port}");
    let log_path = rig.topology.with_file_name(format!("{projection}.log"));
    let log = std::fs::File::create(&log_path).expect("log");
    let mut worker = WorkerProcess(
        sluice(&rig.topology)
            .args(["work", "--projection", &projection, "--metrics-addr", &addr])
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn worker"),
    );
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let start = Instant::now();
    while !read_log().contains("the dead-letter topic refuses writes: pausing the partitions") {
        assert!(start.elapsed() < Duration::from_secs(90), "no pause within 90 s:\n{}", read_log());
        assert!(worker.0.try_wait().expect("try_wait").is_none(), "the worker died:\n{}", read_log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The loop pauses at its next turn (within a second) and counts the pause with its reason.
    let scrape = || {
        let body = Command::new("curl").args(["-s", &format!("http://{addr}/metrics")]).output().expect("curl").stdout;
        String::from_utf8_lossy(&body).into_owned()
    };
    let start = Instant::now();
    while !scrape()
        .lines()
        .any(|l| l.starts_with("sluice_worker_pauses_total") && l.contains("reason=\"dlq_unavailable\""))
    {
        assert!(start.elapsed() < Duration::from_secs(10), "the pause is counted with its reason:\n{}", scrape());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cb = within("couchbase", 30, Couchbase::connect(&connections().couchbase)).await.expect("couchbase");
    assert!(user_doc(&cb, &after).await.is_none(), "nothing behind the poison record is applied while it cannot leave");

    // The DLQ accepts again: the poison record leaves whole, the partitions resume, and the
    // event behind it is projected.
    alter_topic(&dlq, &[("max.message.bytes", "1048588")]).await;
    let start = Instant::now();
    while user_doc(&cb, &after).await.is_none() {
        assert!(start.elapsed() < Duration::from_secs(90), "not resumed within 90 s:\n{}", read_log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let log = read_log();
    assert!(log.contains("the dead-letter topic accepts again"), "{log}");
    assert!(log.contains("partitions resumed"), "{log}");
    let letters = dead_letters(&dlq, 1).await;
    // Whole, unless the attempt the new limit let through was the truncated copy: each send tries
    // the whole record first and, refused as too large, the copy at once — the limit can change
    // between the two. Either is a complete dead letter; the copy says what it cut.
    match header(&letters[0].1, "sluice.dlq.truncated") {
        None => assert_eq!(letters[0].1.payload().map(<[u8]>::len), Some(20_000)),
        Some(sizes) => {
            assert_eq!(letters[0].1.payload().map(<[u8]>::len), Some(16 * 1024));
            assert!(sizes.contains("value 20000 bytes"), "{sizes}");
        }
    }
    assert_eq!(header(&letters[0].1, "sluice.dlq.code").as_deref(), Some("bad_framing"));
    let (status, _) = worker.terminate();
    assert!(status.success(), "clean shutdown: {status}");
}
