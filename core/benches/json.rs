//! The strict JSON parser against `serde_json::from_slice`, on what the gateway parses: one event
//! and a 1000-event batch. Run: `cargo bench -p sluice-core --bench json`.
//!
//! The strict parser is serde_json's deserializer with the duplicate check folded into the
//! insert (one `Map::entry` per key) and a path threaded through by reference; this shows what
//! that costs.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use sluice_core::json::from_slice_strict;

fn purchase(i: u64) -> Value {
    json!({
        "event_id": "7f0c1c9e-9a43-4c55-9d7b-2f8ad6c1e001", "event_type": "engagement.purchase_completed",
        "aggregate_id": format!("user-{}", i % 10_000), "aggregate_version": i,
        "occurred_at": "2026-11-26T04:28:21.123Z", "producer": "checkout", "correlation_id": "c-1",
        "causation_id": null, "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": null, "user_id": format!("user-{}", i % 10_000), "session_id": "s-1",
        "order_id": format!("o-{i}"), "amount_cents": 1999, "currency": "EUR", "items": [{"sku": "a", "qty": 2}]
    })
}

fn parse(c: &mut Criterion) {
    let one = serde_json::to_vec(&purchase(1)).unwrap_or_default();
    let batch = serde_json::to_vec(&Value::Array((0..1000).map(purchase).collect())).unwrap_or_default();
    for (name, bytes) in [("one event", &one), ("1000-event batch", &batch)] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("serde_json::from_slice", |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(bytes)).map(|v| v.is_object()))
        });
        group.bench_function("json::from_slice_strict", |b| {
            b.iter(|| from_slice_strict(black_box(bytes)).map(|v| v.is_object()))
        });
        group.finish();
    }
}

criterion_group!(benches, parse);
criterion_main!(benches);
