//! A user's JSON event written as an Avro body, as producers and the gateway do: the one-walk
//! encoder (`encode_json_into`) against the reference (`json_to_avro` then `encode`).
//!
//! The input is the JSON event. Its `event_type`, when it names an event type of the repository
//! topology or the orders domain, picks the schema (so the seeds are real events of their type);
//! any other input picks one by its length. Checked: both paths write the same bytes (or, where a
//! map is written in another order, the same value) or fail with the same error; a failed
//! `encode_json_into` leaves the buffer as it was; what was written decodes back (through
//! apache-avro and the compiled decoder) to the JSON of the converted value; `field_json` of
//! every top-level field is that field of the converted value.

#![no_main]

use apache_avro::Schema;
use libfuzzer_sys::fuzz_target;
use serde_json::Value as Json;
use sluice_core::avro::{EventDecoder, avro_to_json, decode, encode, encode_json_into, field_json, json_to_avro};
use sluice_fuzz::{CASES, same_body};
use std::sync::LazyLock;

/// The compiled decoder of each case, built once as a worker does per schema id.
static DECODERS: LazyLock<Vec<EventDecoder>> =
    LazyLock::new(|| CASES.iter().map(|c| EventDecoder::new(c.writer.clone(), None)).collect());

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<Json>(data) else { return };
    let declared = json.get("event_type").and_then(Json::as_str);
    let index = declared.and_then(|t| CASES.iter().position(|c| c.event_type == t)).unwrap_or(data.len() % CASES.len());
    let case = &CASES[index];
    let schema: &Schema = &case.writer;

    // After a header, as a producer calls it.
    let header = [0u8, 0, 0, 0, 7];
    let mut out = header.to_vec();
    let fast = encode_json_into(&json, schema, &mut out).map(|()| out[header.len()..].to_vec());
    if fast.is_err() {
        assert_eq!(out, header, "a failed encode_json_into changed the buffer");
    }
    let converted = json_to_avro(&json, schema);
    let reference = converted
        .as_ref()
        .map_err(ToString::to_string)
        .and_then(|value| encode(value, schema).map_err(|e| e.to_string()));
    match (&fast, &reference) {
        (Ok(fast), Ok(reference)) => {
            assert!(same_body(fast, reference, schema), "the walk and apache-avro wrote {fast:?} and {reference:?}")
        }
        (Err(f), Err(r)) => assert_eq!(&f.to_string(), r, "the walk and the reference fail differently"),
        (f, r) => panic!("encode_json_into and json_to_avro + encode disagree: {f:?} vs {r:?}"),
    }

    let Ok(value) = converted else { return };
    let expected = avro_to_json(&value, schema);
    if let Ok(body) = &fast {
        let back = decode(body, schema, None).unwrap_or_else(|e| panic!("an encoded event does not decode: {e}"));
        assert_eq!(avro_to_json(&back, schema).to_string(), expected.to_string(), "the body reads back differently");
        let json =
            DECODERS[index].decode_json(body).unwrap_or_else(|e| panic!("the plan cannot read an encoded event: {e}"));
        assert_eq!(json.to_string(), expected.to_string(), "the plan reads the body differently");
    }
    if let Schema::Record(record) = schema {
        for field in &record.fields {
            let got = field_json(&json, schema, &field.name);
            assert_eq!(got.as_ref(), expected.get(&field.name), "field_json of {:?}", field.name);
        }
    }
});
