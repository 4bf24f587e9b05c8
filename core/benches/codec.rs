//! Throughput of the pure hot path, per core: what a worker spends on each record before the sink
//! (unframe → Avro decode → JSON → envelope split → fold), and what a producer spends before Kafka
//! (JSON → Avro → encode → frame). Run: `cargo bench -p sluice-core --bench codec`.
//!
//! Every figure is over a varied set of records (the sample domain's events, every event type of
//! the repository's topology); criterion's throughput is per record. `per event` is what the
//! worker and the publisher run; `fold` one fold step; `steps` the apache-avro reference paths
//! they replaced (and fall back to) and parts of the fast paths, for comparison.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sluice_core::event::{Envelope, Event, Position};
use sluice_core::fold::{self, Change, FoldEvent};
use sluice_core::topology::{EventInfo, Topology};
use sluice_core::{avro, framing};

/// One record of the set: its JSON, its event type's schema id, and the framed Avro record.
struct Record<'a> {
    json: serde_json::Value,
    info: &'a EventInfo,
    schema_id: u32,
    framed: Vec<u8>,
}

fn body(record: &[u8]) -> &[u8] {
    framing::unframe(record).expect("framed").body
}

fn benches(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topology.toml");
    let topology = match Topology::load(&path) {
        Ok(t) => t,
        Err(e) => panic!("topology: {e}"),
    };
    // A varied set, as a worker reads it: the sample domain's events of 50 users (every event
    // type of the repository's topology, optional fields set and not, strings of many lengths)
    // rather than one record again and again, which the branch predictor and caches learn.
    let (events, _) = sluice_sample::generate(50, 7, "0000beef", "bench-");
    let ids: HashMap<&str, u32> = topology.events().zip(1..).map(|(e, id)| (e.event_type.as_str(), id)).collect();
    let records: Vec<Record<'_>> = events
        .into_iter()
        .map(|json| {
            let event_type = json["event_type"].as_str().expect("event_type").to_owned();
            let info = topology.event(&event_type).expect("a sample event type is in the topology");
            let schema_id = ids[event_type.as_str()];
            let value = avro::json_to_avro(&json, &info.schema).expect("valid");
            let framed = framing::frame(schema_id, &avro::encode(&value, &info.schema).expect("encodes"));
            Record { json, info, schema_id, framed }
        })
        .collect();
    let types = records.iter().map(|r| r.schema_id).collect::<std::collections::BTreeSet<_>>().len();
    println!(
        "{} records of {types} event types, {} bytes on average",
        records.len(),
        records.iter().map(|r| r.framed.len()).sum::<usize>() / records.len()
    );
    let n = records.len() as u64;
    let position = Position { topic: "bench".into(), partition: 3, offset: 1234 };
    // One decoder per schema id, built once, as the worker's decoder cache holds them.
    let decoders: HashMap<u32, avro::EventDecoder> = topology
        .events()
        .map(|e| (ids[e.event_type.as_str()], avro::EventDecoder::new(Arc::new(e.schema.clone()), None)))
        .collect();
    assert!(decoders.values().all(avro::EventDecoder::is_compiled), "every sample schema compiles");
    let decoded: Vec<Event> = records
        .iter()
        .map(|r| decoders[&r.schema_id].decode_event(body(&r.framed), position.clone(), r.schema_id).expect("event"))
        .collect();
    let event = &decoded[0];
    let fold_event = FoldEvent {
        version: event.envelope.aggregate_version,
        change: Change::Set(event.payload.clone()),
        position: position.clone(),
    };
    let state = fold::fold([&fold_event]);
    let newer = FoldEvent { version: fold_event.version + 1, ..fold_event.clone() };

    let mut g = c.benchmark_group("per event");
    g.throughput(Throughput::Elements(n));
    // What a publisher does per event (producers/src/record.rs).
    g.bench_function("produce: json → avro → frame", |b| {
        b.iter(|| {
            for r in &records {
                let json = black_box(&r.json);
                let mut record = Vec::with_capacity(framing::HEADER_LEN + 256);
                framing::frame_into(r.schema_id, &[], &mut record);
                avro::encode_json_into(json, &r.info.schema, &mut record).expect("valid");
                let fields =
                    ["event_type", "aggregate_id", "event_id"].map(|f| avro::field_json(json, &r.info.schema, f));
                black_box((record, fields));
            }
        })
    });
    // What a worker does per record (consumers/src/decode.rs), the decoder built once per schema id.
    g.bench_function("consume: unframe → decode → event", |b| {
        b.iter(|| {
            for r in &records {
                let framed = framing::unframe(black_box(&r.framed)).expect("framed");
                let decoder = &decoders[&framed.schema_id];
                black_box(decoder.decode_event(framed.body, position.clone(), framed.schema_id).expect("event"));
            }
        })
    });
    g.finish();
    let mut g = c.benchmark_group("fold");
    g.throughput(Throughput::Elements(1));
    g.bench_function("apply newer event", |b| b.iter(|| fold::apply(black_box(state.as_ref()), &newer)));
    g.bench_function("skip duplicate", |b| b.iter(|| fold::apply(black_box(state.as_ref()), &fold_event)));
    g.finish();

    // The apache-avro reference paths the fast ones replaced (and fall back to), and parts.
    let mut g = c.benchmark_group("steps");
    g.throughput(Throughput::Elements(n));
    g.bench_function("produce, reference: json_to_avro → encode → frame", |b| {
        b.iter(|| {
            for r in &records {
                let v = avro::json_to_avro(black_box(&r.json), &r.info.schema).expect("valid");
                black_box(framing::frame(r.schema_id, &avro::encode(&v, &r.info.schema).expect("encodes")));
            }
        })
    });
    g.bench_function("produce: encode_json", |b| {
        b.iter(|| {
            for r in &records {
                black_box(avro::encode_json(black_box(&r.json), &r.info.schema).expect("valid"));
            }
        })
    });
    g.bench_function("consume, reference: decode → avro_to_json → from_record", |b| {
        b.iter(|| {
            for r in &records {
                let framed = framing::unframe(black_box(&r.framed)).expect("framed");
                let v = avro::decode(framed.body, &r.info.schema, None).expect("decodes");
                let json = avro::avro_to_json(&v, &r.info.schema);
                black_box(Event::from_record(json, position.clone(), framed.schema_id).expect("event"));
            }
        })
    });
    g.bench_function("consume: decode_json", |b| {
        b.iter(|| {
            for r in &records {
                black_box(decoders[&r.schema_id].decode_json(black_box(body(&r.framed))).expect("decodes"));
            }
        })
    });
    // Events written before each reader schema gained a field.
    let resolving: HashMap<u32, avro::EventDecoder> = topology
        .events()
        .map(|e| {
            let mut evolved = serde_json::to_value(&e.schema).expect("schema as JSON");
            if let Some(fields) = evolved["fields"].as_array_mut() {
                fields.push(json!({"name": "bench_added", "type": ["null", "string"], "default": null}));
            }
            let reader = apache_avro::Schema::parse(&evolved).expect("evolved schema");
            (ids[e.event_type.as_str()], avro::EventDecoder::new(Arc::new(e.schema.clone()), Some(Arc::new(reader))))
        })
        .collect();
    assert!(resolving.values().all(avro::EventDecoder::is_compiled), "adding a field with a default compiles");
    g.bench_function("consume, resolving to a reader with one more field", |b| {
        b.iter(|| {
            for r in &records {
                let decoder = &resolving[&r.schema_id];
                black_box(
                    decoder.decode_event(black_box(body(&r.framed)), position.clone(), r.schema_id).expect("event"),
                );
            }
        })
    });
    // What any decoder making these `Event`s pays: their strings, their payload maps, no decoding.
    g.bench_function("consume, floor: allocate the events alone", |b| {
        b.iter(|| {
            for e in &decoded {
                black_box(allocate_like(black_box(e)));
            }
        })
    });
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
