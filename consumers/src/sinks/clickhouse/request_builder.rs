//! Events → rows of the raw table in ClickHouse's `RowBinary` (pure): what the sink inserts for
//! every event it folds, and which events it refuses.
//!
//! One row per event, written straight from the decoded event into the insert's body (no row
//! struct, no copy of its strings): the envelope columns every table of events starts with
//! (`write_head`), `correlation_id`, `causation_id`, the payload (every non-envelope field) as
//! compact JSON text, and where the event was read (`topic`, `partition`, `offset`);
//! `ingested_at` is the server's default. Servers with `DateTime64` take the time in
//! milliseconds; older ones in seconds (`DateTime`) plus the exact milliseconds in
//! `occurred_at_ms`. An event no row can represent is refused: its `event_id` is not a UUID, or
//! its time is outside what the columns hold.

use sluice_core::event::Event;

use super::declared::write_head;
use super::row_binary;
use super::schema::{ColumnKind, Layout, events_columns, qualified, quote};

/// The earliest event time accepted: 1970-01-01 (a `DateTime` cannot hold earlier, and `Date`
/// columns such as the rollup's `day` cannot either).
pub const MIN_OCCURRED_AT_MS: i64 = 0;
/// The latest event time accepted: the last millisecond of a `DateTime` (2106-02-07T06:28:15.999Z).
/// The same range on every server, so a batch is refused alike wherever it is written.
pub const MAX_OCCURRED_AT_MS: i64 = u32::MAX as i64 * 1000 + 999;

/// Checks that an event time fits the columns, for the reason of a rejection.
pub fn check_time(ms: i64) -> Result<i64, String> {
    if (MIN_OCCURRED_AT_MS..=MAX_OCCURRED_AT_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(format!("occurred_at {ms} ms is outside what the ClickHouse columns hold (1970-01-01 to 2106-02-07)"))
    }
}

/// The raw table as the sink writes it.
#[derive(Debug, Clone)]
pub struct RawPlan {
    /// The table's name in this version (`events__v2` while being rebuilt).
    pub name: String,
    layout: Layout,
    /// The `INSERT`'s column list: the stored columns, in the table's order.
    insert_columns: String,
}

impl RawPlan {
    /// The raw table `name` on a server of `layout`.
    pub fn new(name: &str, layout: Layout) -> Self {
        let insert: Vec<String> = events_columns(layout)
            .into_iter()
            .filter(|c| c.kind == ColumnKind::Stored)
            .map(|c| quote(&c.name))
            .collect();
        Self { name: name.to_owned(), layout, insert_columns: insert.join(", ") }
    }

    /// `INSERT INTO … (columns) FORMAT RowBinary` into `database`.
    pub fn insert_sql(&self, database: &str) -> String {
        format!("INSERT INTO {} ({}) FORMAT RowBinary", qualified(database, &self.name), self.insert_columns)
    }

    /// Appends the row of `event` to `out`; on a refusal `out` may hold part of it (the caller
    /// cuts it back).
    pub fn row(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        write_head(event, self.layout, out)?;
        let e = &event.envelope;
        nullable_string(e.correlation_id.as_deref(), out);
        nullable_string(e.causation_id.as_deref(), out);
        json_string(event, out)?;
        let p = &event.position;
        row_binary::string(p.topic.as_bytes(), out);
        out.extend_from_slice(&p.partition.to_le_bytes());
        out.extend_from_slice(&p.offset.to_le_bytes());
        Ok(())
    }
}

/// A `Nullable(String)`: 1 for null, else 0 and the string.
fn nullable_string(value: Option<&str>, out: &mut Vec<u8>) {
    match value {
        None => out.push(1),
        Some(text) => {
            out.push(0);
            row_binary::string(text.as_bytes(), out);
        }
    }
}

/// The payload as compact JSON, written in place and then given its length prefix (moving the
/// text by the prefix's few bytes is cheaper than a buffer of its own per event).
fn json_string(event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    serde_json::to_writer(&mut *out, &event.payload)
        .map_err(|err| format!("the payload cannot be written as JSON: {err}"))?;
    let mut prefix = Vec::with_capacity(10);
    row_binary::varint((out.len() - start) as u64, &mut prefix);
    out.splice(start..start, prefix);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::clickhouse::schema::Types;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use sluice_core::event::Position;
    use uuid::Uuid;

    const ID: &str = "7f0c1c9e-9a43-4c55-9d7b-2f8ad6c1e001";

    fn event(event_type: &str, event_id: &str, occurred_at: i64, payload: Value) -> Event {
        let mut record = json!({
            "event_id": event_id, "event_type": event_type, "aggregate_id": "agg-1",
            "aggregate_version": 3, "occurred_at": occurred_at, "producer": "test",
            "correlation_id": "corr", "causation_id": null, "traceparent": null, "tracestate": null,
        });
        if let (Some(r), Value::Object(p)) = (record.as_object_mut(), payload) {
            r.extend(p);
        }
        let position = Position { topic: "t".into(), partition: 4, offset: 17 };
        Event::from_record(record, position, 1).expect("valid event")
    }

    const MODERN: Layout =
        Layout { datetime64: true, low_cardinality: true, insert_deduplication: true, types: Types::ALL };
    const OLD: Layout =
        Layout { datetime64: false, low_cardinality: false, insert_deduplication: false, types: Types::NONE };

    /// A raw row read back from `RowBinary`, as a server would.
    #[derive(Debug, PartialEq)]
    struct Read {
        event_id: Uuid,
        event_type: String,
        aggregate_id: String,
        aggregate_version: i64,
        /// Milliseconds (modern) or seconds (old).
        occurred_at: i64,
        /// Stored on old servers only.
        occurred_at_ms: Option<i64>,
        producer: String,
        correlation_id: Option<String>,
        causation_id: Option<String>,
        payload: String,
        topic: String,
        partition: i32,
        offset: i64,
    }

    struct Reader<'a>(&'a [u8]);

    impl Reader<'_> {
        fn take(&mut self, n: usize) -> &[u8] {
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            head
        }
        fn u64(&mut self) -> u64 {
            u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
        }
        fn i64(&mut self) -> i64 {
            i64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
        }
        fn varint(&mut self) -> usize {
            let (mut n, mut shift) = (0usize, 0);
            loop {
                let b = self.take(1)[0];
                n |= usize::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return n;
                }
                shift += 7;
            }
        }
        fn string(&mut self) -> String {
            let n = self.varint();
            String::from_utf8(self.take(n).to_vec()).expect("utf-8")
        }
        fn nullable(&mut self) -> Option<String> {
            (self.take(1)[0] == 0).then(|| self.string())
        }
    }

    fn read(bytes: &[u8], layout: Layout) -> (Read, usize) {
        let mut r = Reader(bytes);
        let (high, low) = (r.u64(), r.u64());
        let row = Read {
            event_id: Uuid::from_u64_pair(high, low),
            event_type: r.string(),
            aggregate_id: r.string(),
            aggregate_version: r.i64(),
            occurred_at: if layout.datetime64 {
                r.i64()
            } else {
                i64::from(u32::from_le_bytes(r.take(4).try_into().expect("4 bytes")))
            },
            occurred_at_ms: (!layout.datetime64).then(|| r.i64()),
            producer: r.string(),
            correlation_id: r.nullable(),
            causation_id: r.nullable(),
            payload: r.string(),
            topic: r.string(),
            partition: i32::from_le_bytes(r.take(4).try_into().expect("4 bytes")),
            offset: r.i64(),
        };
        (row, bytes.len() - r.0.len())
    }

    fn encoded(e: &Event, layout: Layout) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        RawPlan::new("events", layout).row(e, &mut out).map(|()| out)
    }

    #[test]
    fn a_modern_row_keeps_the_envelope_and_the_payload_as_json() {
        let e = event("thing.sold", ID, 1_700_000_000_123, json!({"buyer": "u-9", "amount": 1250}));
        let bytes = encoded(&e, MODERN).expect("written");
        let (row, used) = read(&bytes, MODERN);
        assert_eq!(used, bytes.len(), "one row, nothing after it");
        assert_eq!(row.event_id.to_string(), ID);
        assert_eq!(
            (row.event_type.as_str(), row.aggregate_id.as_str(), row.aggregate_version),
            ("thing.sold", "agg-1", 3)
        );
        assert_eq!((row.occurred_at, row.occurred_at_ms), (1_700_000_000_123, None));
        assert_eq!(row.producer, "test");
        assert_eq!((row.correlation_id.as_deref(), row.causation_id), (Some("corr"), None));
        assert_eq!((row.topic.as_str(), row.partition, row.offset), ("t", 4, 17));
        let payload: Value = serde_json::from_str(&row.payload).expect("json");
        assert_eq!(payload, json!({"buyer": "u-9", "amount": 1250}));
    }

    #[test]
    fn an_old_row_splits_seconds_and_milliseconds() {
        let e = event("thing.started", ID, 1_700_000_000_999, json!({"device": "ios"}));
        let (row, _) = read(&encoded(&e, OLD).expect("written"), OLD);
        assert_eq!((row.occurred_at, row.occurred_at_ms), (1_700_000_000, Some(1_700_000_000_999)));
        assert_eq!(row.payload, r#"{"device":"ios"}"#);
    }

    #[test]
    fn a_payload_past_127_bytes_gets_a_two_byte_length() {
        let long = "x".repeat(300);
        let e = event("thing.noted", ID, 5, json!({ "note": long }));
        let (row, _) = read(&encoded(&e, MODERN).expect("written"), MODERN);
        assert_eq!(row.payload, format!(r#"{{"note":"{long}"}}"#));
        assert_eq!(row.offset, 17, "the columns after the payload are where they belong");
    }

    #[test]
    fn the_insert_names_the_stored_columns_in_order() {
        let modern = RawPlan::new("events", MODERN).insert_sql("db");
        assert_eq!(
            modern,
            "INSERT INTO `db`.`events` (`event_id`, `event_type`, `aggregate_id`, `aggregate_version`, \
             `occurred_at`, `producer`, `correlation_id`, `causation_id`, `payload`, `topic`, `partition`, \
             `offset`) FORMAT RowBinary"
        );
        assert!(RawPlan::new("events", OLD).insert_sql("db").contains("`occurred_at`, `occurred_at_ms`, `producer`"));
    }

    #[test]
    fn refuses_what_no_row_can_hold() {
        let bad_id = event("thing.created", "not-a-uuid", 1, json!({}));
        let too_old = event("thing.created", ID, -1, json!({}));
        for layout in [MODERN, OLD] {
            let id = encoded(&bad_id, layout).expect_err("no UUID");
            assert!(id.starts_with("event_id \"not-a-uuid\" is not a UUID"), "{id}");
            let time = encoded(&too_old, layout).expect_err("before 1970");
            assert!(time.starts_with("occurred_at -1 ms is outside"), "{time}");
        }
    }

    proptest! {
        /// Every event time is either refused (outside the shared range) or stored exactly: as
        /// milliseconds on modern servers, as floor seconds plus exact milliseconds on old ones.
        #[test]
        fn times_are_exact_or_refused(ms in prop_oneof![
            any::<i64>(),
            MIN_OCCURRED_AT_MS..=MAX_OCCURRED_AT_MS,
            (MAX_OCCURRED_AT_MS - 2)..=(MAX_OCCURRED_AT_MS + 2),
            -2i64..=2,
        ]) {
            let e = event("thing.pinged", ID, ms, json!({}));
            let in_range = (MIN_OCCURRED_AT_MS..=MAX_OCCURRED_AT_MS).contains(&ms);
            let (modern, old) = (encoded(&e, MODERN), encoded(&e, OLD));
            prop_assert_eq!(modern.is_ok(), in_range);
            prop_assert_eq!(old.is_ok(), in_range);
            if let (Ok(modern), Ok(old)) = (modern, old) {
                prop_assert_eq!(read(&modern, MODERN).0.occurred_at, ms);
                let (old, _) = read(&old, OLD);
                prop_assert_eq!(old.occurred_at, ms / 1000);
                prop_assert_eq!(old.occurred_at_ms, Some(ms));
            }
        }

        /// Any strings and payload survive the round trip, whatever their lengths.
        #[test]
        fn strings_and_payloads_read_back_as_written(
            aggregate in ".{0,300}",
            correlation in proptest::option::of(".{0,200}"),
            text in ".{0,400}",
            offset in any::<i64>(),
        ) {
            let mut e = event("thing.changed", ID, 1_000, json!({ "text": text }));
            e.envelope.aggregate_id = aggregate.clone();
            e.envelope.correlation_id = correlation.clone();
            e.position.offset = offset;
            let bytes = encoded(&e, MODERN).expect("written");
            let (row, used) = read(&bytes, MODERN);
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(row.aggregate_id, aggregate);
            prop_assert_eq!(row.correlation_id, correlation);
            let payload: Value = serde_json::from_str(&row.payload).expect("json");
            prop_assert_eq!(payload, json!({ "text": text }));
            prop_assert_eq!(row.offset, offset);
        }
    }
}
