//! Writes the seed corpora under `fuzz/corpus/<target>/` from real material: the events of the
//! sample generator (the `sluice-sample` crate), the repository's `topology.toml`, and change
//! records shaped like those of `core/src/cdc/tests.rs`, mapped by the repository topology's CDC
//! sources into the legacy event types. Run by `dev/fuzz --seeds`; the output is committed, and small.

#![allow(dead_code, unreachable_pub, missing_debug_implementations)]

use sluice_sample as sample;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value as Json, json};
use sluice_core::avro::encode_json;
use sluice_core::cdc::{CdcMapper, CdcOutcome, CdcRecord};
use sluice_core::event::{Event, Position};
use sluice_core::framing;
use sluice_fuzz::{CASES, TOPOLOGY, TOPOLOGY_TEXT, repo};

const LSN: i64 = 23_876_368;
const TS: i64 = 1_709_288_130_123;

fn main() {
    let corpus = repo().join("fuzz/corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(name), bytes).expect("seed");
    };

    // CDC records: both formats, each operation, with and without schemas, tombstones.
    let records = cdc_records();
    let mut events: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    for (name, input) in &records {
        write("cdc_mapping", &format!("{name}.json"), input.to_string().as_bytes());
        if let Some(event) = map(input) {
            events.entry(event["event_type"].as_str().unwrap_or_default().to_owned()).or_default().push(event);
        }
    }
    // Sample events: a few users' worth, every type the generator makes.
    let (sample, _) = sample::generate(12, 1, "5eed0001", "fuzz-");
    for event in sample {
        events.entry(event["event_type"].as_str().unwrap_or_default().to_owned()).or_default().push(event);
    }

    // The orders domain, shaped like cli/tests/any_domain.rs's events.
    let order = |event_type: &str, version: i64, payload: Json| {
        let mut e = json!({"event_id": format!("5eed0002-0000-4000-8000-00000000000{version}"), "event_type": event_type,
                           "aggregate_id": "o-fuzz-1", "aggregate_version": version, "occurred_at": 1_793_491_200_000_i64 + version,
                           "producer": "orders-tests"});
        if let (Json::Object(e), Json::Object(p)) = (&mut e, payload) {
            e.extend(p);
        }
        e
    };
    let placed = json!({
        "total": "61.50", "currency": "EUR",
        "customer": {"id": "0b6f6a52-5a1e-4c3e-9d0f-6a5d2c1e7f01", "tier": "GOLD", "email": "c@example.com"},
        "items": [{"sku": "SKU-0", "quantity": 2, "unit_price": "12.50"}, {"sku": "SKU-1", "quantity": 1, "unit_price": "36.50"}],
        "attributes": {"channel": "web", "ab": "b"}, "placed_at": 1_793_491_200_000_123_i64, "delivery_date": 20_500,
        "coupon": "0b6f6a52-5a1e-4c3e-9d0f-6a5d2c1e7f02", "gift": true, "weight_kg": 1.25
    });
    for e in [
        order("order.placed", 1, placed),
        order("order.paid", 2, json!({"amount": "61.50", "method": "CARD", "paid_at": 1_793_491_200_002_i64})),
        order("order.shipped", 3, json!({"carrier": "DHL", "tracking": "T1", "parcels": 2})),
        order("order.cancelled", 4, json!({"reason": "damaged", "refund": "61.50"})),
    ] {
        events.entry(e["event_type"].as_str().unwrap_or_default().to_owned()).or_default().push(e);
    }

    for (index, case) in CASES.iter().enumerate() {
        let Some(list) = events.get(&case.event_type) else {
            eprintln!("no sample event of {}", case.event_type);
            continue;
        };
        for (n, event) in list.iter().take(2).enumerate() {
            let slug = case.event_type.replace('.', "_");
            write("json_to_avro", &format!("{slug}-{n}.json"), event.to_string().as_bytes());
            let body = encode_json(event, &case.writer).unwrap_or_else(|e| panic!("{}: {e}", case.event_type));
            if n == 0 {
                // The three readers of this type (see unframe_decode).
                for reader in 0..3u32 {
                    let id = u32::try_from(index).expect("few cases") * 3 + reader;
                    write("unframe_decode", &format!("{slug}-r{reader}.bin"), &framing::frame(id, &body));
                }
            }
        }
    }

    // Gateway bodies: a mixed batch, the `{"events": …}` form, a single event, events that rely
    // on the gateway's defaults, and one refused item among good ones.
    let first = |t: &str| events.get(t).and_then(|l| l.first()).cloned().unwrap_or(Json::Null);
    let mut bare = first("engagement.page_viewed");
    if let Json::Object(m) = &mut bare {
        for k in ["event_id", "occurred_at", "producer"] {
            m.remove(k);
        }
    }
    let batch = json!([first("user.registered"), first("session.heartbeat"), first("engagement.clicked"), bare]);
    write("gateway_body", "batch.json", batch.to_string().as_bytes());
    let wrapped = json!({"events": [first("engagement.purchase_completed"), {"event_type": "no.such"}, 42]});
    write("gateway_body", "events_object.json", wrapped.to_string().as_bytes());
    write("gateway_body", "single.json", first("user.profile_updated").to_string().as_bytes());
    write("gateway_body", "defaults.json", serde_json::to_string_pretty(&bare).expect("json").as_bytes());

    write("topology", "topology.toml", TOPOLOGY_TEXT.as_bytes());
    let _ = Path::new("");
}

/// A CDC input of the `cdc_mapping` target mapped as the target maps it; the event's record JSON.
fn map(input: &Json) -> Option<Json> {
    let name = input["source"].as_str()?;
    let mapper = CdcMapper::new(&TOPOLOGY, name)?;
    let headers: Vec<(String, Vec<u8>)> = input["headers"]
        .as_object()
        .map(|h| h.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().as_bytes().to_vec())).collect())
        .unwrap_or_default();
    let record = CdcRecord::from_json(
        Some(input["key"].clone()).filter(|k| !k.is_null()),
        Some(input["value"].clone()).filter(|v| !v.is_null()),
    );
    let position = Position { topic: mapper.source().topic.clone(), partition: 0, offset: 1 };
    match mapper.map(&record, &headers, position, input["timestamp"].as_i64(), 0) {
        Ok(CdcOutcome::Event { event, .. }) => Some(record_of(&event)),
        _ => None,
    }
}

fn record_of(event: &Event) -> Json {
    let e = &event.envelope;
    let mut m = Map::new();
    m.insert("event_id".into(), json!(e.event_id));
    m.insert("event_type".into(), json!(e.event_type));
    m.insert("aggregate_id".into(), json!(e.aggregate_id));
    m.insert("aggregate_version".into(), json!(e.aggregate_version));
    m.insert("occurred_at".into(), json!(e.occurred_at));
    m.insert("producer".into(), json!(e.producer));
    m.insert("correlation_id".into(), json!(e.correlation_id));
    m.insert("causation_id".into(), json!(e.causation_id));
    m.insert("traceparent".into(), json!(e.traceparent));
    m.insert("tracestate".into(), json!(e.tracestate));
    m.extend(event.payload.clone());
    Json::Object(m)
}

fn source(table: &str, lsn: i64, snapshot: &str) -> Json {
    json!({
        "version": "3.0.0.Final", "connector": "postgresql", "name": "legacy", "ts_ms": TS,
        "snapshot": snapshot, "db": "legacy", "sequence": format!("[null,\"{lsn}\"]"), "schema": "public",
        "table": table, "txId": 751, "lsn": lsn, "xmin": null
    })
}

fn change(table: &str, op: &str, before: Json, after: Json, lsn: i64) -> Json {
    let snapshot = if op == "r" { "true" } else { "false" };
    json!({"before": before, "after": after, "source": source(table, lsn, snapshot), "op": op, "ts_ms": TS + 333, "transaction": null})
}

fn cdc_records() -> Vec<(&'static str, Json)> {
    // balance 123.45 in precise mode: base64 of the big-endian unscaled value 12345.
    let user = json!({
        "id": 42, "email": "ada@example.com", "display_name": "Ada", "country": "NL", "balance": "MDk=",
        "preferences": "{\"theme\": \"dark\"}", "created_at": "2024-03-01T10:15:30.123456Z",
        "updated_at": 1_709_295_330_500_001_i64
    });
    let session = json!({
        "id": "0b6f6a52-5a1e-4c3e-9d0f-6a5d2c1e7f00", "user_id": 42, "started_at": 1_709_295_330_500_001_i64, "ended_at": null, "device": "ios"
    });
    let users = |op: &str, before: Json, after: Json| json!({"source": "legacy_users", "key": {"id": 42}, "value": change("users", op, before, after, LSN)});
    let connect = |ty: &str, field: &str, name: Option<&str>| {
        let mut c = json!({"type": ty, "optional": true, "field": field});
        if let Some(name) = name {
            c["name"] = json!(name);
        }
        c
    };
    let row_schema = json!({"type": "struct", "optional": true, "name": "legacy.public.users.Value", "fields": [
        connect("int64", "id", None), connect("string", "email", None), connect("string", "display_name", None),
        connect("string", "country", None),
        {"type": "bytes", "optional": true, "field": "balance", "name": "org.apache.kafka.connect.data.Decimal",
         "parameters": {"scale": "3", "connect.decimal.precision": "12"}},
        connect("string", "preferences", Some("io.debezium.data.Json")),
        connect("string", "created_at", Some("io.debezium.time.ZonedTimestamp")),
        connect("int64", "updated_at", Some("io.debezium.time.Timestamp")),
    ]});
    let mut before_schema = row_schema.clone();
    before_schema["field"] = json!("before");
    let mut after_schema = row_schema;
    after_schema["field"] = json!("after");
    let envelope_schema = json!({"type": "struct", "name": "legacy.public.users.Envelope", "optional": false, "fields": [
        before_schema, after_schema,
        {"type": "struct", "field": "source", "optional": false, "fields": []},
        {"type": "string", "field": "op", "optional": false},
        {"type": "int64", "field": "ts_ms", "optional": true}
    ]});
    let mut schema_row = user.clone();
    schema_row["updated_at"] = json!(TS);
    let outbox_headers = |t: &str| json!({"id": "6f9619ff-8b86-d011-b42d-00c04fc964ff", "eventType": t});
    vec![
        ("users_insert", users("c", Json::Null, user.clone())),
        ("users_update", users("u", user.clone(), user.clone())),
        ("users_snapshot", users("r", Json::Null, user.clone())),
        ("users_delete", users("d", json!({"id": 42}), Json::Null)),
        ("users_truncate", users("t", Json::Null, Json::Null)),
        ("users_tombstone", json!({"source": "legacy_users", "key": {"id": 42}})),
        (
            "users_with_schemas",
            json!({"source": "legacy_users",
                   "key": {"schema": {"type": "struct", "fields": [{"type": "int64", "field": "id"}]}, "payload": {"id": 42}},
                   "value": {"schema": envelope_schema, "payload": change("users", "r", Json::Null, schema_row, LSN)}}),
        ),
        (
            "sessions_insert",
            json!({"source": "legacy_sessions", "key": {"id": "0b6f6a52-5a1e-4c3e-9d0f-6a5d2c1e7f00"}, "value": change("sessions", "c", Json::Null, session.clone(), LSN + 8)}),
        ),
        (
            "sessions_delete",
            json!({"source": "legacy_sessions", "key": {"id": "0b6f6a52-5a1e-4c3e-9d0f-6a5d2c1e7f00"}, "value": change("sessions", "d", session, Json::Null, LSN + 16)}),
        ),
        (
            "outbox_signed_up",
            json!({"source": "legacy_user_outbox", "key": "42", "timestamp": TS, "headers": outbox_headers("UserSignedUp"),
                   "value": "{\"version\": 3, \"email\": \"ada@example.com\", \"display_name\": \"Ada\", \"country\": null, \"correlation_id\": \"flow-1\"}"}),
        ),
        (
            "outbox_email_verified",
            json!({"source": "legacy_user_outbox", "key": "42", "timestamp": TS,
                   "headers": {"id": "\"6f9619ff-8b86-d011-b42d-00c04fc964ff\"", "eventType": "\"UserEmailVerified\""},
                   "value": {"schema": {"type": "struct", "fields": []}, "payload": {"version": "4", "email": "a@x", "verified_at": "2024-03-01T10:15:30.123Z"}}}),
        ),
        ("outbox_tombstone", json!({"source": "legacy_user_outbox", "key": "42"})),
    ]
}
