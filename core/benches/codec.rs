//! Throughput of the pure hot path, per core: what a worker spends on each record before the sink
//! (unframe → Avro decode → JSON → envelope split → fold), and what a producer spends before Kafka
//! (JSON → Avro → encode → frame). Run: `cargo bench -p sluice-core --bench codec`.
//!
//! `per event` is what the worker and the publisher run; `steps` the apache-avro reference paths
//! they replaced (and fall back to) and parts of the fast paths, for comparison.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sluice_core::event::{Envelope, Event, Position};
use sluice_core::fold::{self, Change, FoldEvent};
use sluice_core::topology::Topology;
use sluice_core::{avro, framing};

fn purchase(i: u64) -> serde_json::Value {
    json!({
        "event_id": "7f0c1c9e-9a43-4c55-9d7b-2f8ad6c1e001",
        "event_type": "engagement.purchase_completed",
        "aggregate_id": format!("user-{}", i % 10_000),
        "aggregate_version": i,
        "occurred_at": 1_764_000_000_000u64 + i,
        "producer": "checkout",
        "correlation_id": "c-1",
        "causation_id": null,
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": null,
        "user_id": format!("user-{}", i % 10_000),
        "session_id": "s-1",
        "order_id": format!("o-{i}"),
        "amount_cents": 1999,
        "currency": "EUR",
        "items": 2
    })
}

fn framed_body(record: &[u8]) -> &[u8] {
    framing::unframe(record).expect("framed").body
}

fn benches(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topology.toml");
    let topology = match Topology::load(&path) {
        Ok(t) => t,
        Err(e) => panic!("topology: {e}"),
    };
    let Some(info) = topology.event("engagement.purchase_completed") else { panic!("event type") };
    let schema = &info.schema;
    let json = purchase(42);
    let value = avro::json_to_avro(&json, schema).expect("valid");
    let record = framing::frame(7, &avro::encode(&value, schema).expect("encodes"));
    let position = Position { topic: "engagement".into(), partition: 3, offset: 1234 };

    let decoder = avro::EventDecoder::new(Arc::new(schema.clone()), None);
    assert!(decoder.is_compiled(), "the benchmark schema compiles");
    let event = decoder.decode_event(framed_body(&record), position.clone(), 7).expect("event");
    let fold_event = FoldEvent {
        version: event.envelope.aggregate_version,
        change: Change::Set(event.payload.clone()),
        position: position.clone(),
    };
    let state = fold::fold([&fold_event]);
    let newer = FoldEvent { version: fold_event.version + 1, ..fold_event.clone() };

    let mut g = c.benchmark_group("per event");
    g.throughput(Throughput::Elements(1));
    // What a publisher does per event (producers/src/record.rs).
    g.bench_function("produce: json → avro → frame", |b| {
        b.iter(|| {
            let json = black_box(&json);
            let mut record = Vec::with_capacity(framing::HEADER_LEN + 256);
            framing::frame_into(7, &[], &mut record);
            avro::encode_json_into(json, schema, &mut record).expect("valid");
            let fields = ["event_type", "aggregate_id", "event_id"].map(|f| avro::field_json(json, schema, f));
            (record, fields)
        })
    });
    // What a worker does per record (consumers/src/decode.rs), the decoder built once per schema id.
    g.bench_function("consume: unframe → decode → event", |b| {
        b.iter(|| {
            let framed = framing::unframe(black_box(&record)).expect("framed");
            decoder.decode_event(framed.body, position.clone(), framed.schema_id).expect("event")
        })
    });
    g.bench_function("fold: apply newer event", |b| b.iter(|| fold::apply(black_box(state.as_ref()), &newer)));
    g.bench_function("fold: skip duplicate", |b| b.iter(|| fold::apply(black_box(state.as_ref()), &fold_event)));
    g.finish();

    // The apache-avro reference paths the fast ones replaced (and fall back to), and parts.
    let mut g = c.benchmark_group("steps");
    g.throughput(Throughput::Elements(1));
    g.bench_function("produce, reference: json_to_avro → encode → frame", |b| {
        b.iter(|| {
            let v = avro::json_to_avro(black_box(&json), schema).expect("valid");
            framing::frame(7, &avro::encode(&v, schema).expect("encodes"))
        })
    });
    g.bench_function("produce: encode_json", |b| {
        b.iter(|| avro::encode_json(black_box(&json), schema).expect("valid"))
    });
    g.bench_function("consume, reference: decode → avro_to_json → from_record", |b| {
        b.iter(|| {
            let framed = framing::unframe(black_box(&record)).expect("framed");
            let v = avro::decode(framed.body, schema, None).expect("decodes");
            Event::from_record(avro::avro_to_json(&v, schema), position.clone(), framed.schema_id).expect("event")
        })
    });
    g.bench_function("consume: decode_json", |b| {
        b.iter(|| decoder.decode_json(black_box(framed_body(&record))).expect("decodes"))
    });
    // An event written before the reader schema gained a field.
    let mut evolved = serde_json::to_value(schema).expect("schema as JSON");
    if let Some(fields) = evolved["fields"].as_array_mut() {
        fields.push(json!({"name": "coupon", "type": ["null", "string"], "default": null}));
    }
    let reader = apache_avro::Schema::parse(&evolved).expect("evolved schema");
    let resolving = avro::EventDecoder::new(Arc::new(schema.clone()), Some(Arc::new(reader)));
    assert!(resolving.is_compiled(), "adding a field with a default compiles");
    g.bench_function("consume, resolving to a reader with one more field", |b| {
        b.iter(|| resolving.decode_event(black_box(framed_body(&record)), position.clone(), 7).expect("event"))
    });
    // What any decoder making this `Event` pays: its strings, its payload map, no decoding.
    g.bench_function("consume, floor: allocate the event alone", |b| b.iter(|| allocate_like(black_box(&event))));
    g.finish();
}

/// A new event with the same content as `event`, built the way a decoder builds one: each
/// string allocated, each payload field inserted.
fn allocate_like(event: &Event) -> Event {
    let e = &event.envelope;
    let s = |v: &String| v.as_str().to_owned();
    let o = |v: &Option<String>| v.as_deref().map(str::to_owned);
    let mut payload = serde_json::Map::with_capacity(event.payload.len());
    for (k, v) in &event.payload {
        let v = match v {
            serde_json::Value::String(text) => serde_json::Value::String(text.as_str().to_owned()),
            other => other.clone(),
        };
        payload.insert(k.as_str().to_owned(), v);
    }
    Event {
        envelope: Envelope {
            event_id: s(&e.event_id),
            event_type: s(&e.event_type),
            aggregate_id: s(&e.aggregate_id),
            aggregate_version: e.aggregate_version,
            occurred_at: e.occurred_at,
            producer: s(&e.producer),
            correlation_id: o(&e.correlation_id),
            causation_id: o(&e.causation_id),
            traceparent: o(&e.traceparent),
            tracestate: o(&e.tracestate),
        },
        payload,
        position: event.position.clone(),
        schema_id: event.schema_id,
    }
}

criterion_group!(codec, benches);
criterion_main!(codec);
