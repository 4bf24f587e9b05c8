//! A CDC record (Kafka's JsonConverter: key and value as JSON, with or without `schemas.enable`)
//! through the mappers of the repository topology's `[cdc.*]` sources.
//!
//! The input is one JSON object: `{"source": "<cdc source>", "key": …, "value": …, "headers":
//! {"<name>": "<text>", …}, "timestamp": <ms>}`; a missing key or value is a null one (a
//! tombstone), an unknown source picks one by the input's length. Checked: the mapper answers an
//! outcome or an error, never a panic; the same record maps to the same outcome again (event ids
//! are derived, not drawn); an event is of one of the source's event types, carries the record's
//! position and schema id, and converts back to an Avro record of its type (a field left out
//! because its column was unavailable may only be missing, never wrong).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value as Json};
use sluice_core::avro::{ConvertErrorKind, json_to_avro};
use sluice_core::cdc::{CdcMapper, CdcOutcome, CdcRecord};
use sluice_core::event::Position;
use sluice_fuzz::TOPOLOGY;
use std::sync::LazyLock;

static MAPPERS: LazyLock<Vec<CdcMapper>> =
    LazyLock::new(|| TOPOLOGY.cdc_sources().filter_map(|(name, _)| CdcMapper::new(&TOPOLOGY, name)).collect());

fuzz_target!(|data: &[u8]| {
    let Ok(Json::Object(mut input)) = serde_json::from_slice::<Json>(data) else { return };
    let source = input.get("source").and_then(Json::as_str);
    let mapper = source
        .and_then(|s| MAPPERS.iter().find(|m| m.name() == s))
        .unwrap_or_else(|| &MAPPERS[data.len() % MAPPERS.len()]);
    let key = input.remove("key").filter(|k| !k.is_null());
    let value = input.remove("value").filter(|v| !v.is_null());
    let headers: Vec<(String, Vec<u8>)> = match input.get("headers") {
        Some(Json::Object(h)) => h
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string().into_bytes(), |s| s.as_bytes().to_vec())))
            .collect(),
        _ => Vec::new(),
    };
    let timestamp = input.get("timestamp").and_then(Json::as_i64);
    let schema_id = u32::try_from(input.get("schema_id").and_then(Json::as_u64).unwrap_or(0)).unwrap_or(0);
    let position = Position { topic: mapper.source().topic.clone(), partition: 1, offset: 99 };

    let record = CdcRecord::from_json(key, value);
    let outcome = mapper.map(&record, &headers, position.clone(), timestamp, schema_id);
    let again = mapper.map(&record, &headers, position.clone(), timestamp, schema_id);
    assert_eq!(outcome, again, "the same record mapped twice differently");

    let Ok(CdcOutcome::Event { event, .. }) = outcome else { return };
    let types = mapper.source().event_types();
    assert!(
        types.contains(&event.envelope.event_type.as_str()),
        "{} is not an event type of the source",
        event.envelope.event_type
    );
    assert_eq!((&event.position, event.schema_id), (&position, schema_id));
    let info = TOPOLOGY.event(&event.envelope.event_type).expect("a declared event type");

    let e = &event.envelope;
    let mut record = Map::new();
    record.insert("event_id".into(), Json::String(e.event_id.clone()));
    record.insert("event_type".into(), Json::String(e.event_type.clone()));
    record.insert("aggregate_id".into(), Json::String(e.aggregate_id.clone()));
    record.insert("aggregate_version".into(), Json::from(e.aggregate_version));
    record.insert("occurred_at".into(), Json::from(e.occurred_at));
    record.insert("producer".into(), Json::String(e.producer.clone()));
    for (name, value) in [
        ("correlation_id", &e.correlation_id),
        ("causation_id", &e.causation_id),
        ("traceparent", &e.traceparent),
        ("tracestate", &e.tracestate),
    ] {
        record.insert(name.into(), value.clone().map_or(Json::Null, Json::String));
    }
    record.extend(event.payload.clone());
    if let Err(err) = json_to_avro(&Json::Object(record), &info.schema) {
        assert!(
            matches!(err.kind, ConvertErrorKind::MissingField { .. }),
            "a mapped event does not fit its schema: {err}"
        );
    }
});
