//! Throughput of the pure hot path, per core: what a worker spends on each record before the sink
//! (unframe → Avro decode → JSON → envelope split → fold), and what a producer spends before Kafka
//! (JSON → Avro → encode → frame). Run: `cargo bench -p sluice-core --bench codec`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sluice_core::event::{Event, Position};
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

    let mut g = c.benchmark_group("per event");
    g.throughput(Throughput::Elements(1));
    g.bench_function("produce: json → avro → frame", |b| {
        b.iter(|| {
            let v = avro::json_to_avro(black_box(&json), schema).expect("valid");
            framing::frame(7, &avro::encode(&v, schema).expect("encodes"))
        })
    });
    g.bench_function("consume: unframe → decode → event", |b| {
        b.iter(|| {
            let framed = framing::unframe(black_box(&record)).expect("framed");
            let v = avro::decode(framed.body, schema, None).expect("decodes");
            Event::from_record(avro::avro_to_json(&v), position.clone(), framed.schema_id).expect("event")
        })
    });
    let event = Event::from_record(avro::avro_to_json(&value), position.clone(), 7).expect("event");
    let fold_event = FoldEvent {
        version: event.envelope.aggregate_version,
        change: Change::Set(event.payload.clone()),
        position: position.clone(),
    };
    let state = fold::fold([&fold_event]);
    let newer = FoldEvent { version: fold_event.version + 1, ..fold_event.clone() };
    g.bench_function("fold: apply newer event", |b| b.iter(|| fold::apply(black_box(state.as_ref()), &newer)));
    g.bench_function("fold: skip duplicate", |b| b.iter(|| fold::apply(black_box(state.as_ref()), &fold_event)));
    g.finish();
}

criterion_group!(codec, benches);
criterion_main!(codec);
