//! A request body of the HTTP ingest gateway, through the work the gateway does before Kafka.
//!
//! The body is parsed as the gateway parses it (`json::from_slice_strict`, held to
//! `serde_json::from_slice`); then, by its shape, it is a mixed batch (an
//! array of events, or `{"events": [...]}`, each naming its `event_type`) or a single event (the
//! route's type: the event's own `event_type` when it is a declared one). Each event goes through
//! what `producers/src/gateway/handlers.rs` does (type detection, envelope completion) and what
//! the publisher does (`record::build`: JSON → Avro for the declared type of the repository's
//! `topology.toml`, the type check, the key). The producers crate is not a dependency (it builds
//! rdkafka), so those few steps are restated here, against the same core functions.
//!
//! Checked: the strict parser accepts what serde_json accepts less repeated keys, with the same
//! value and the same syntax errors, and reads back what serde_json writes; a completed event has its
//! envelope defaults and its route's type; the encoder and the reference agree; an event that
//! encodes decodes back to an event of the declared type with the id and key the producer read.

#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value as Json};
use sluice_core::avro::{EventDecoder, avro_to_json, encode, encode_json_into, field_json, json_to_avro};
use sluice_core::event::Position;
use sluice_core::framing;
use sluice_core::json::{StrictJsonError, from_slice_strict};
use sluice_fuzz::{TOPOLOGY, same_body};

/// What the gateway sets for an absent `event_id` (a fresh UUID there; fixed here so a crash
/// reproduces).
const EVENT_ID: &str = "00000000-0000-4000-8000-00000000f022";
const OCCURRED_AT: i64 = 1_793_491_200_000;
const PRODUCER: &str = "fuzz-token";
const SCHEMA_ID: u32 = 7;

/// The compiled decoder of each declared event type, built once.
static DECODERS: LazyLock<BTreeMap<String, EventDecoder>> = LazyLock::new(|| {
    TOPOLOGY.events().map(|i| (i.event_type.clone(), EventDecoder::new(Arc::new(i.schema.clone()), None))).collect()
});

/// The gateway's body parser, checked against serde_json's: it accepts exactly the documents
/// serde_json accepts that repeat no key in an object, and reads them the same.
fn parse(body: &[u8]) -> Option<Json> {
    let strict = from_slice_strict(body);
    let lenient = serde_json::from_slice::<Json>(body);
    match (&strict, &lenient) {
        (Ok(s), Ok(l)) => assert_eq!(s.to_string(), l.to_string(), "strict and serde_json read different values"),
        (Err(StrictJsonError::Syntax(s)), Err(l)) => assert_eq!(s.to_string(), l.to_string()),
        (Err(StrictJsonError::Syntax(s)), Ok(_)) => panic!("strict refuses what serde_json accepts: {s}"),
        (Err(StrictJsonError::DuplicateKey { path, .. }), _) => assert!(path.starts_with('$'), "path {path:?}"),
        (Ok(_), Err(l)) => panic!("strict accepts what serde_json refuses: {l}"),
    }
    if let Ok(value) = &lenient {
        // serde_json's value has no repeated key left: written out, the strict parser reads it.
        let text = serde_json::to_vec(value).expect("a JSON value serialises");
        let again = from_slice_strict(&text).unwrap_or_else(|e| panic!("a written value is refused: {e}"));
        assert_eq!(&again, value, "a written value reads back differently");
    }
    strict.ok()
}

fuzz_target!(|body: &[u8]| {
    let Some(json) = parse(body) else { return };

    match json {
        Json::Array(items) => items.into_iter().for_each(|item| mixed(item)),
        Json::Object(mut object) if object.get("events").is_some_and(Json::is_array) => {
            if let Some(Json::Array(items)) = object.remove("events") {
                items.into_iter().for_each(|item| mixed(item));
            }
        }
        single => {
            let route = single
                .get("event_type")
                .and_then(Json::as_str)
                .filter(|t| TOPOLOGY.event(t).is_some())
                .unwrap_or("engagement.page_viewed")
                .to_owned();
            publish(single, &route);
        }
    }
});

/// An event of `/v1/batch`: its type is its own `event_type`.
fn mixed(item: Json) {
    let event_type = match &item {
        Json::Object(map) => match map.get("event_type") {
            Some(Json::String(t)) => t.clone(),
            _ => return,
        },
        _ => return,
    };
    publish(item, &event_type);
}

/// `complete` (handlers.rs), then `record::build` (the publisher).
fn publish(item: Json, event_type: &str) {
    let Json::Object(mut event) = item else { return };
    match event.get("event_type") {
        None | Some(Json::Null) => {
            event.insert("event_type".to_owned(), Json::String(event_type.to_owned()));
        }
        Some(Json::String(found)) if found != event_type => return,
        Some(_) => {}
    }
    fill(&mut event, "event_id", Json::String(EVENT_ID.to_owned()));
    fill(&mut event, "occurred_at", Json::from(OCCURRED_AT));
    fill(&mut event, "producer", Json::String(PRODUCER.to_owned()));
    for field in ["event_id", "event_type", "occurred_at", "producer"] {
        assert!(event.get(field).is_some_and(|v| !v.is_null()), "completion left {field} out");
    }
    let event = Json::Object(event);

    // The publisher: an unknown type is refused before any encoding.
    let Some(info) = TOPOLOGY.event(event_type) else { return };
    let key_field = TOPOLOGY.topic(&info.topic).map_or("aggregate_id", |t| t.key.as_str());
    let mut value = framing::frame(SCHEMA_ID, &[]);
    let fast = encode_json_into(&event, &info.schema, &mut value);
    let reference = json_to_avro(&event, &info.schema)
        .map_err(|e| e.to_string())
        .and_then(|v| encode(&v, &info.schema).map_err(|e| e.to_string()));
    match (&fast, &reference) {
        (Ok(()), Ok(body)) => {
            assert!(same_body(&value[framing::HEADER_LEN..], body, &info.schema), "different bodies")
        }
        (Err(f), Err(r)) => assert_eq!(&f.to_string(), r, "different errors"),
        (f, r) => panic!("encode_json_into and the reference disagree: {f:?} vs {r:?}"),
    }
    if fast.is_err() {
        return;
    }
    let text = |name: &str| field_json(&event, &info.schema, name).map(scalar_text);
    let found_type = text("event_type").unwrap_or_default();
    if found_type != event_type {
        return; // EventTypeMismatch, as the publisher answers.
    }
    let key = text(key_field).unwrap_or_default();
    let event_id = text("event_id").unwrap_or_default();

    // What a worker will read of the record.
    let framed = framing::unframe(&value).expect("a framed record unframes");
    assert_eq!(framed.schema_id, SCHEMA_ID);
    let decoder = &DECODERS[event_type];
    let position = Position { topic: info.topic.clone(), partition: 0, offset: 0 };
    let read = decoder
        .decode_event(framed.body, position, SCHEMA_ID)
        .unwrap_or_else(|e| panic!("a published event does not read back: {e}"));
    assert_eq!(read.envelope.event_type, event_type);
    assert_eq!(read.envelope.event_id, event_id);
    let read_key = read.field(key_field).map(scalar_text).unwrap_or_default();
    assert_eq!(read_key, key, "the key the producer used is not the event's");
    let record = json_to_avro(&event, &info.schema).expect("it encoded, so it converts");
    assert_eq!(avro_to_json(&record, &info.schema).get("event_id").and_then(Json::as_str), Some(event_id.as_str()));
}

fn fill(event: &mut Map<String, Json>, name: &str, value: Json) {
    let slot = event.entry(name).or_insert(Json::Null);
    if slot.is_null() {
        *slot = value;
    }
}

/// The text of a scalar field value: strings as themselves, anything else as JSON (as
/// `record::scalar_text`).
fn scalar_text(json: Json) -> String {
    match json {
        Json::String(s) => s,
        json => json.to_string(),
    }
}
