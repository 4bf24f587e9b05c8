//! Smoke test of the change-data-capture rig: PostgreSQL → Debezium (in Kafka Connect) → Kafka, with
//! each example connector config of `dev/connect/`: raw table changes as JSON, the same as Avro in
//! the Confluent wire format through the registry, and outbox events through the event router.
//! Every test writes in a PostgreSQL transaction and checks what lands on Kafka.

use std::panic::AssertUnwindSafe;

use apache_avro::Schema;
use futures::FutureExt;
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use serde_json::{Value as Json, json};
use sluice_core::avro::{self, avro_to_json};
use sluice_core::framing::unframe;
use sluice_tests::cdc::{CdcRun, json_value, read_records};
use sluice_tests::{connections, unique, within};

/// Runs `body` against a fresh schema and connector from `config_file`, then cleans up (connector,
/// slot, publication, schema, topics) whether it passed or not.
async fn with_connector(prefix: &str, config_file: &str, body: impl AsyncFnOnce(&CdcRun, String)) {
    let brokers = connections().kafka.brokers;
    let run = CdcRun::new(&unique(prefix)).await;
    let outcome = AssertUnwindSafe(async {
        run.start_connector(&run.connector_config(config_file)).await;
        body(&run, brokers.clone()).await;
    })
    .catch_unwind()
    .await;
    run.cleanup(&brokers).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// One user inserted, updated and deleted in a single transaction; returns its id.
async fn insert_update_delete(run: &CdcRun) -> i64 {
    let pg = &run.pg;
    within("write the transaction", 30, async {
        pg.batch_execute("BEGIN").await?;
        let id: i64 = pg
            .query_one(
                "INSERT INTO users (email, display_name, country, balance, preferences, created_at, updated_at)
                 VALUES ('ada@example.com', 'Ada', 'GB', 12.50, '{\"theme\": \"dark\"}',
                         '2026-01-02 03:04:05.123456+01', '2026-01-02 03:04:05.123456+01')
                 RETURNING id",
                &[],
            )
            .await?
            .get(0);
        pg.execute("UPDATE users SET balance = 13.75, updated_at = now() WHERE id = $1", &[&id]).await?;
        pg.execute("DELETE FROM users WHERE id = $1", &[&id]).await?;
        pg.batch_execute("COMMIT").await?;
        Ok::<_, tokio_postgres::Error>(id)
    })
    .await
    .expect("transaction")
}

#[tokio::test]
async fn raw_changes_as_json() {
    with_connector("cdc_json", "raw-json.json", async |run, brokers| {
        let (id, records) = capture_user_lifecycle(run, &brokers).await;
        let keys: Vec<Json> =
            records.iter().map(|r| serde_json::from_slice(r.key().expect("a key")).expect("JSON key")).collect();
        let values: Vec<Option<Json>> = records.iter().map(json_value).collect();
        let [c, u, d] = check_envelopes(run, id, &keys, &values);

        // numeric as a string (decimal.handling.mode=string), timestamptz as UTC ISO-8601, jsonb as text.
        assert_eq!(c["after"]["balance"], "12.50");
        assert_eq!(c["after"]["created_at"], "2026-01-02T02:04:05.123456Z");
        assert_eq!(
            serde_json::from_str::<Json>(c["after"]["preferences"].as_str().expect("jsonb text")).ok(),
            Some(json!({"theme": "dark"}))
        );
        // REPLICA IDENTITY FULL: the update's and the delete's `before` is the whole old row.
        assert_eq!((u["before"]["balance"].as_str(), u["after"]["balance"].as_str()), (Some("12.50"), Some("13.75")));
        assert_eq!(d["before"]["balance"], "13.75");
    })
    .await;
}

#[tokio::test]
async fn raw_changes_as_avro_in_the_confluent_wire_format() {
    with_connector("cdc_avro", "raw-avro.json", async |run, brokers| {
        let (id, records) = capture_user_lifecycle(run, &brokers).await;
        let registry = reqwest::Client::new();
        let registry_url = connections().registry.url;
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for r in &records {
            keys.push(decode(&registry, &registry_url, r.key().expect("a key")).await);
            values.push(match r.payload() {
                Some(bytes) => Some(decode(&registry, &registry_url, bytes).await),
                None => None,
            });
        }
        let [_, u, _] = check_envelopes(run, id, &keys, &values);
        assert_eq!(u["after"]["created_at"], "2026-01-02T02:04:05.123456Z");
    })
    .await;
}

/// Inserts, updates and deletes one user in a single transaction, then reads the four records
/// Debezium writes for it; returns the user's id and the records.
async fn capture_user_lifecycle(run: &CdcRun, brokers: &str) -> (i64, Vec<OwnedMessage>) {
    let id = insert_update_delete(run).await;
    (id, read_records(brokers, &format!("{0}.{0}.users", run.id), 4, 60).await)
}

/// What every converter must show of [`capture_user_lifecycle`], decoded to JSON: each record keyed
/// by the primary key; create, update, delete, then a tombstone; `before`/`after` as each op
/// implies; `source` naming the table, one transaction and increasing LSNs. Returns c, u and d.
fn check_envelopes(run: &CdcRun, id: i64, keys: &[Json], values: &[Option<Json>]) -> [Json; 3] {
    for key in keys {
        assert_eq!(key, &json!({ "id": id }), "every record is keyed by the primary key");
    }
    let [Some(c), Some(u), Some(d), None] = values else {
        panic!("expected create, update, delete, tombstone; got {values:?}")
    };
    assert_eq!((c["op"].as_str(), u["op"].as_str(), d["op"].as_str()), (Some("c"), Some("u"), Some("d")));
    assert_eq!((&c["before"], &c["after"]["email"]), (&Json::Null, &json!("ada@example.com")));
    assert_eq!((&u["before"]["email"], &u["after"]["email"]), (&json!("ada@example.com"), &json!("ada@example.com")));
    assert_eq!((&d["before"]["email"], &d["after"]), (&json!("ada@example.com"), &Json::Null));
    let lsns: Vec<u64> = [c, u, d].iter().map(|e| e["source"]["lsn"].as_u64().expect("source.lsn")).collect();
    assert!(lsns.windows(2).all(|w| w[0] < w[1]), "LSNs increase: {lsns:?}");
    for e in [c, u, d] {
        assert_eq!(
            (e["source"]["schema"].as_str(), e["source"]["table"].as_str()),
            (Some(run.id.as_str()), Some("users"))
        );
        assert_eq!(e["source"]["txId"], c["source"]["txId"], "one transaction");
        assert!(e["source"]["ts_ms"].is_u64(), "source.ts_ms: {e}");
    }
    [c.clone(), u.clone(), d.clone()]
}

/// A Confluent-framed Avro datum as JSON: magic byte 0 and a schema id that the registry's
/// Confluent API resolves (`GET /schemas/ids/{id}`), then the body decoded with that schema.
async fn decode(registry: &reqwest::Client, registry_url: &str, bytes: &[u8]) -> Json {
    let framed = unframe(bytes).unwrap_or_else(|e| panic!("not in the Confluent wire format: {e}"));
    let url = format!("{registry_url}/schemas/ids/{}", framed.schema_id);
    let response = within("schema by id", 30, registry.get(&url).send()).await.expect("registry request");
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    let body: Json = response.json().await.expect("registry JSON");
    let schema = Schema::parse_str(body["schema"].as_str().expect("schema text")).expect("an Avro schema");
    avro_to_json(&avro::decode(framed.body, &schema, None).expect("an Avro body of that schema"), &schema)
}

#[tokio::test]
async fn outbox_events_keyed_by_aggregate_with_the_type_in_a_header() {
    with_connector("cdc_outbox", "outbox-json.json", async |run, brokers| {
        let event_id = uuid::Uuid::new_v4();
        let sql = format!(
            "BEGIN;
             INSERT INTO users (email, display_name) VALUES ('grace@example.com', 'Grace');
             INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload)
               VALUES ('{event_id}', 'user', 'user-42', 'UserRegistered',
                       '{{\"email\": \"grace@example.com\", \"plan\": {{\"tier\": 2}}}}');
             DELETE FROM outbox WHERE id = '{event_id}';
             COMMIT;"
        );
        within("write the transaction", 30, run.pg.batch_execute(&sql)).await.expect("transaction");
        // A second event after it: the record that follows the first on the topic, so the outbox
        // row's delete published nothing.
        let renamed = "INSERT INTO outbox (aggregatetype, aggregateid, type, payload)
                       VALUES ('user', 'user-42', 'UserRenamed', '{\"display_name\": \"G\"}')";
        within("write the second event", 30, run.pg.batch_execute(renamed)).await.expect("insert");

        // Routed by aggregatetype.
        let records = read_records(&brokers, &format!("{}.outbox.user", run.id), 2, 60).await;
        let r = &records[0];
        assert_eq!(r.key(), Some(&b"user-42"[..]), "the key is the aggregate id");
        assert_eq!(header(r, "eventType"), "UserRegistered");
        assert_eq!(header(r, "aggregateType"), "user");
        assert_eq!(header(r, "id"), event_id.to_string(), "the event id");
        assert_eq!(
            json_value(r),
            Some(json!({"email": "grace@example.com", "plan": {"tier": 2}})),
            "the payload, expanded"
        );
        let next = &records[1];
        assert_eq!((next.key(), header(next, "eventType").as_str()), (Some(&b"user-42"[..]), "UserRenamed"));
        assert_eq!(json_value(next), Some(json!({"display_name": "G"})), "the next record is the next event");
    })
    .await;
}

/// The value of header `name` as text; panics when the record has none.
fn header(record: &OwnedMessage, name: &str) -> String {
    let headers = record.headers().expect("headers");
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| panic!("no header {name}"))
}
