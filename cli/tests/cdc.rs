//! Change data capture end to end: rows written in PostgreSQL transactions → Debezium (Kafka
//! Connect: raw table changes as Avro through the registry, outbox events as JSON) → Kafka →
//! `sluice work` → the same Couchbase and ClickHouse projections as sluice's own events, equal to
//! a model. A delete (and the tombstone after it) leaves no live document and marks the analysts'
//! current-state row deleted; restarting the connector with a fresh snapshot changes nothing.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use couchbase::error::ErrorKind;
use futures::FutureExt;
use serde_json::{Value, json};
use sluice_consumers::sinks::couchbase::service::deadline;
use sluice_consumers::sinks::couchbase::{Couchbase, Error as CbError};
use sluice_tests::cdc::CdcRun;
use sluice_tests::{connections, fresh_topology, high_watermarks, unique, within};

mod common;
use common::*;

/// What the test expects of one user document: email, display name, country; `None` = no
/// live document.
type Expected = BTreeMap<String, Option<(String, String, String)>>;

/// The user documents of `expected`'s keys, as the projection shows them.
async fn user_docs(cb: &Couchbase, expected: &Expected) -> Expected {
    let coll = cb.collection(None, None);
    let mut out = BTreeMap::new();
    for id in expected.keys() {
        let got = deadline("get", Duration::from_secs(10), coll.get(format!("user::{id}"), None)).await;
        let doc = match got {
            Ok(r) => {
                let v: Value = r.content_as().expect("json doc");
                let field = |f: &str| v[f].as_str().unwrap_or_default().to_owned();
                Some((field("email"), field("display_name"), field("country")))
            }
            Err(CbError::Couchbase { source, .. }) if source.kind() == &ErrorKind::DocumentNotFound => None,
            Err(e) => panic!("get user::{id}: {e}"),
        };
        out.insert(id.clone(), doc);
    }
    out
}

/// Polls until the documents equal `expected`.
async fn await_docs(cb: &Couchbase, expected: &Expected, secs: u64) {
    let start = Instant::now();
    loop {
        let got = user_docs(cb, expected).await;
        if &got == expected {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "documents did not converge: got {got:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn person(email: &str, name: &str, country: &str) -> Option<(String, String, String)> {
    Some((email.to_owned(), name.to_owned(), country.to_owned()))
}

/// Raw changes of the users table (Avro) and outbox events (JSON) into `user_state`.
async fn scenario(table: &CdcRun, outbox: &CdcRun) {
    let sfx = unique("cdc");
    // The repository's topology, isolated, with its CDC topics named as this test's connectors
    // name them (`<prefix>.<schema>.<table>`, `<prefix>.outbox.<aggregate type>`).
    let topology = fresh_topology(&sfx);
    let text = std::fs::read_to_string(&topology)
        .expect("topology")
        .replace(&format!("legacy_{sfx}.public.users"), &format!("{t}.{t}.users", t = table.id))
        .replace(&format!("legacy_{sfx}.public.sessions"), &format!("{t}.{t}.sessions", t = table.id))
        .replace(&format!("outbox_{sfx}.event.user"), &format!("{}.outbox.user", outbox.id));
    std::fs::write(&topology, text).expect("write topology");
    // The analytics projection's rollups need a database of their own: in the shared one their
    // materialized view would read this test's raw table for every later run (and `dev/demo`).
    let ch = connections().clickhouse;
    std::fs::write(
        topology.with_file_name("clickhouse.env"),
        format!("SLUICE_CLICKHOUSE_URL={}\nSLUICE_CLICKHOUSE_DATABASE=db_{sfx}\n", ch.url),
    )
    .expect("clickhouse.env");
    run_ok(sluice(&topology).args(["topics", "apply"]));
    let projection = format!("user_state_{sfx}");
    let group = format!("sluice.{projection}");
    let cdc_topics = [format!("{t}.{t}.users", t = table.id), format!("{}.outbox.user", outbox.id)];
    let worker = WorkerProcess::start(&topology, &projection, None);
    let analytics = format!("analytics_{sfx}");
    run_ok(sluice(&topology).args(["clickhouse", "migrate"]));
    let analytics_worker = WorkerProcess::start(&topology, &analytics, None);

    // Ids unique to this run: documents of other runs share the bucket.
    let base: i64 = 1_000_000 + i64::from(rand_u16()) * 1000;
    let id = |n: i64| (base + n).to_string();
    let pg = &table.pg;
    // Rows that exist before the connector: they arrive as snapshot reads.
    pg.batch_execute(&format!(
        "INSERT INTO users (id, email, display_name, country, balance, preferences, created_at, updated_at) VALUES
           ({a}, 'a@old.example', 'Ada', 'GB', 10.00, '{{}}', now(), '2026-01-01 00:00:00+00'),
           ({b}, 'b@old.example', 'Bob', 'NL', 0.50, '{{}}', now(), '2026-01-01 00:00:00+00'),
           ({c}, 'c@old.example', 'Cy', 'FR', 99.99, '{{\"theme\": \"dark\"}}', now(), '2026-01-01 00:00:00+00')",
        a = id(1),
        b = id(2),
        c = id(3)
    ))
    .await
    .expect("seed rows");
    table.start_connector(&table.connector_config("raw-avro.json")).await;
    outbox.start_connector(&outbox.connector_config("outbox-json.json")).await;

    // Changes in transactions: an update, a delete, an insert updated twice, a row inserted and
    // deleted in the same transaction.
    pg.batch_execute(&format!(
        "BEGIN;
         UPDATE users SET email = 'ada@new.example', balance = 11.25, updated_at = now() WHERE id = {a};
         DELETE FROM users WHERE id = {b};
         COMMIT;
         BEGIN;
         INSERT INTO users (id, email, display_name, country, balance, preferences, created_at, updated_at)
           VALUES ({d}, 'dee@example', 'Dee', 'DE', 1.00, '[1, 2]', now(), now());
         UPDATE users SET display_name = 'Dee D.' WHERE id = {d};
         UPDATE users SET country = 'AT', updated_at = now() WHERE id = {d};
         INSERT INTO users (id, email, display_name, country, balance, preferences, created_at, updated_at)
           VALUES ({e}, 'gone@example', 'Gone', 'BE', 0, '{{}}', now(), now());
         DELETE FROM users WHERE id = {e};
         COMMIT;",
        a = id(1),
        b = id(2),
        d = id(4),
        e = id(5)
    ))
    .await
    .expect("changes");
    // The outbox: the app writes its events in the same transaction as its state, and deletes the
    // outbox rows right away (Debezium reads the WAL, not the table).
    let ob = format!("ob-{sfx}");
    let signed_up = json!({"email": "olga@example", "display_name": "Olga", "country": "PL", "version": 1});
    let verified = json!({"email": "olga@verified.example", "verified_at": 1_795_000_000_000_i64, "version": 2});
    outbox
        .pg
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES
               (gen_random_uuid(), 'user', '{ob}', 'UserSignedUp', '{signed_up}'),
               (gen_random_uuid(), 'user', '{ob}', 'UserEmailVerified', '{verified}');
             DELETE FROM outbox;
             COMMIT;"
        ))
        .await
        .expect("outbox events");

    let mut expected: Expected = BTreeMap::new();
    expected.insert(id(1), person("ada@new.example", "Ada", "GB"));
    expected.insert(id(2), None);
    expected.insert(id(3), person("c@old.example", "Cy", "FR"));
    expected.insert(id(4), person("dee@example", "Dee D.", "AT"));
    expected.insert(id(5), None);
    expected.insert(ob.clone(), person("olga@verified.example", "Olga", "PL"));
    let cb = within("couchbase connect", 30, Couchbase::connect(&connections().couchbase)).await.expect("couchbase");
    await_docs(&cb, &expected, 90).await;
    await_caught_up(&group, &cdc_topics, 60).await;
    let before: Vec<Value> = raw_docs(&cb, &expected).await;
    let analytics_topics = [cdc_topics[0].clone(), format!("{t}.{t}.sessions", t = table.id), cdc_topics[1].clone()];
    await_caught_up(&format!("sluice.{analytics}"), &analytics_topics, 90).await;
    let ch_before = users_current(&sfx, &expected).await;
    assert_eq!(ch_before, expected, "ClickHouse users_current: deleted users marked deleted, live ones current");
    let raw_before = raw_event_ids(&sfx).await;

    // A connector restart with a fresh snapshot: every row read again. Nothing changes.
    let high = high_watermarks(&cdc_topics[0]);
    table.resnapshot().await;
    within("the re-snapshot on Kafka", 60, async {
        while high_watermarks(&cdc_topics[0]) < high + 3 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    await_caught_up(&group, &cdc_topics, 60).await;
    await_docs(&cb, &expected, 30).await;
    assert_eq!(raw_docs(&cb, &expected).await, before, "a re-snapshot changes no document's content");
    await_caught_up(&format!("sluice.{analytics}"), &analytics_topics, 90).await;
    assert_eq!(users_current(&sfx, &expected).await, ch_before, "a re-snapshot changes no current-state row");
    let raw_after = raw_event_ids(&sfx).await;
    assert!(raw_after.is_superset(&raw_before), "no event lost");
    // Snapshot reads of rows unchanged since the first snapshot keep their event ids (the id
    // comes from the row's content): only the rows changed since (a, d) add a read each.
    assert_eq!(raw_after.len() - raw_before.len(), 2, "new raw rows after the re-snapshot");

    for w in [worker, analytics_worker] {
        let (status, out) = w.terminate();
        assert!(status.success(), "{out}");
    }
}

/// A client of the test's own ClickHouse database.
async fn clickhouse(sfx: &str) -> clickhouse::Client {
    let mut conn = connections().clickhouse;
    conn.database = format!("db_{sfx}");
    common::analytics::client(&conn).await
}

/// The analysts' view of the users of `expected`: `None` for a row marked deleted (or missing).
async fn users_current(sfx: &str, expected: &Expected) -> Expected {
    let rows: Vec<(String, String, String, String, u8)> = clickhouse(sfx)
        .await
        .query(&format!(
            "SELECT user_id, email, display_name, country, toUInt8(is_deleted) FROM users_current_{sfx} ORDER BY user_id"
        ))
        .fetch_all()
        .await
        .expect("users_current");
    let live: BTreeMap<String, (String, String, String)> =
        rows.into_iter().filter(|r| r.4 == 0).map(|(u, e, n, c, _)| (u, (e, n, c))).collect();
    expected.keys().map(|k| (k.clone(), live.get(k).cloned())).collect()
}

/// The ids of the raw events of the CDC event types.
async fn raw_event_ids(sfx: &str) -> std::collections::BTreeSet<String> {
    clickhouse(sfx)
        .await
        .query(&format!("SELECT toString(event_id) FROM events_{sfx} FINAL WHERE event_type LIKE 'legacy.%'"))
        .fetch_all::<String>()
        .await
        .expect("raw events")
        .into_iter()
        .collect()
}

/// The live documents, without their `_sluice` bookkeeping (the versions a re-snapshot advances).
async fn raw_docs(cb: &Couchbase, expected: &Expected) -> Vec<Value> {
    let coll = cb.collection(None, None);
    let mut out = Vec::new();
    for id in expected.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| k) {
        let r = deadline("get", Duration::from_secs(10), coll.get(format!("user::{id}"), None)).await.expect("get");
        let mut v: Value = r.content_as().expect("json");
        if let Some(o) = v.as_object_mut() {
            o.remove("_sluice");
        }
        out.push(v);
    }
    out
}

fn rand_u16() -> u16 {
    u16::from_str_radix(&unique("r")[2..6], 16).expect("hex")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_changes_and_outbox_events_project_like_sluice_events_and_a_resnapshot_changes_nothing() {
    let brokers = connections().kafka.brokers;
    let table = CdcRun::new(&unique("cdct")).await;
    let outbox = CdcRun::new(&unique("cdco")).await;
    let outcome = AssertUnwindSafe(scenario(&table, &outbox)).catch_unwind().await;
    table.cleanup(&brokers).await;
    outbox.cleanup(&brokers).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
