//! Events → rows of the raw table (pure): what the sink inserts for a batch, and which events it
//! refuses.
//!
//! Input: the decoded [`Event`]s of one batch. Output: one row per event, and a [`Rejected`] for
//! each event no row can represent — its `event_id` is not a UUID, or its time is outside what
//! the columns hold. The raw table has one row type per [`Layout`] variant: servers with
//! `DateTime64` take milliseconds (`i64`); older ones take seconds (`u32`, a `DateTime`) plus the
//! exact milliseconds in `occurred_at_ms`. The payload is every non-envelope field as compact
//! JSON; the typed columns of declared tables are [`super::declared`]'s.

use serde::Serialize;
use sluice_core::event::Event;
use uuid::Uuid;

use super::schema::Layout;
use crate::sink::Rejected;

/// The earliest event time accepted: 1970-01-01 (a `DateTime` cannot hold earlier, and `Date`
/// columns such as the rollup's `day` cannot either).
pub const MIN_OCCURRED_AT_MS: i64 = 0;
/// The latest event time accepted: the last millisecond of a `DateTime` (2106-02-07T06:28:15.999Z).
/// The same range on every server, so a batch is refused alike wherever it is written.
pub const MAX_OCCURRED_AT_MS: i64 = u32::MAX as i64 * 1000 + 999;

/// A raw-table row for servers with `DateTime64` (20.1+).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize)]
pub struct EventRow {
    /// The idempotency key.
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    /// Dotted type.
    pub event_type: String,
    /// The entity.
    pub aggregate_id: String,
    /// Its version.
    pub aggregate_version: i64,
    /// `DateTime64(3, 'UTC')`: milliseconds since the epoch.
    pub occurred_at: i64,
    /// Publishing service.
    pub producer: String,
    /// Business flow.
    pub correlation_id: Option<String>,
    /// Cause.
    pub causation_id: Option<String>,
    /// Payload as JSON.
    pub payload: String,
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
}

/// A raw-table row for servers without `DateTime64` (before 20.1).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize)]
pub struct EventRowCompat {
    /// The idempotency key.
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    /// Dotted type.
    pub event_type: String,
    /// The entity.
    pub aggregate_id: String,
    /// Its version.
    pub aggregate_version: i64,
    /// `DateTime('UTC')`: whole seconds since the epoch.
    pub occurred_at: u32,
    /// The exact time, milliseconds since the epoch.
    pub occurred_at_ms: i64,
    /// Publishing service.
    pub producer: String,
    /// Business flow.
    pub correlation_id: Option<String>,
    /// Cause.
    pub causation_id: Option<String>,
    /// Payload as JSON.
    pub payload: String,
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
}

/// The rows of one batch and the events refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded<E> {
    /// Raw-table rows, in batch order.
    pub events: Vec<E>,
    /// Events that cannot be written, with the reason.
    pub rejected: Vec<Rejected>,
}

impl<E> Default for Encoded<E> {
    fn default() -> Self {
        Self { events: Vec::new(), rejected: Vec::new() }
    }
}

impl<E> Encoded<E> {
    /// Moves `other`'s rows behind these and hands back its refusals (which stay per batch).
    pub fn append(&mut self, other: Self) -> Vec<Rejected> {
        self.events.extend(other.events);
        other.rejected
    }
}

/// The rows of a batch in the layout of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rows {
    /// For servers with `DateTime64`.
    Modern(Encoded<EventRow>),
    /// For older servers.
    Compat(Encoded<EventRowCompat>),
}

impl Rows {
    /// Encodes `events` for `layout`.
    pub fn encode<'a>(events: impl IntoIterator<Item = &'a Event>, layout: Layout) -> Self {
        if layout.datetime64 { Self::Modern(encode::<Modern>(events)) } else { Self::Compat(encode::<Compat>(events)) }
    }

    /// The events refused.
    pub fn rejected(&self) -> &[Rejected] {
        match self {
            Self::Modern(e) => &e.rejected,
            Self::Compat(e) => &e.rejected,
        }
    }
}

/// Checks that an event time fits the columns, for the reason of a rejection.
pub fn check_time(ms: i64) -> Result<i64, String> {
    if (MIN_OCCURRED_AT_MS..=MAX_OCCURRED_AT_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(format!("occurred_at {ms} ms is outside what the ClickHouse columns hold (1970-01-01 to 2106-02-07)"))
    }
}

/// The layout-independent parts of an event's row.
struct Common<'a> {
    event: &'a Event,
    event_id: Uuid,
    occurred_at_ms: i64,
    payload: String,
}

fn common(event: &Event) -> Result<Common<'_>, String> {
    let e = &event.envelope;
    let event_id =
        Uuid::parse_str(&e.event_id).map_err(|err| format!("event_id {:?} is not a UUID: {err}", e.event_id))?;
    let occurred_at_ms = check_time(e.occurred_at)?;
    let payload =
        serde_json::to_string(&event.payload).map_err(|err| format!("the payload cannot be written as JSON: {err}"))?;
    Ok(Common { event, event_id, occurred_at_ms, payload })
}

/// One row type per server layout.
trait Variant {
    type Event;
    fn event(c: Common<'_>) -> Self::Event;
}

struct Modern;
struct Compat;

/// Whole seconds; in range by [`check_time`], so the conversion cannot fail in practice.
fn seconds(ms: i64) -> u32 {
    u32::try_from(ms.div_euclid(1000)).unwrap_or(u32::MAX)
}

impl Variant for Modern {
    type Event = EventRow;

    fn event(c: Common<'_>) -> EventRow {
        let (e, p) = (&c.event.envelope, &c.event.position);
        EventRow {
            event_id: c.event_id,
            event_type: e.event_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            aggregate_version: e.aggregate_version,
            occurred_at: c.occurred_at_ms,
            producer: e.producer.clone(),
            correlation_id: e.correlation_id.clone(),
            causation_id: e.causation_id.clone(),
            payload: c.payload,
            topic: p.topic.clone(),
            partition: p.partition,
            offset: p.offset,
        }
    }
}

impl Variant for Compat {
    type Event = EventRowCompat;

    fn event(c: Common<'_>) -> EventRowCompat {
        let (e, p) = (&c.event.envelope, &c.event.position);
        EventRowCompat {
            event_id: c.event_id,
            event_type: e.event_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            aggregate_version: e.aggregate_version,
            occurred_at: seconds(c.occurred_at_ms),
            occurred_at_ms: c.occurred_at_ms,
            producer: e.producer.clone(),
            correlation_id: e.correlation_id.clone(),
            causation_id: e.causation_id.clone(),
            payload: c.payload,
            topic: p.topic.clone(),
            partition: p.partition,
            offset: p.offset,
        }
    }
}

fn encode<'a, V: Variant>(events: impl IntoIterator<Item = &'a Event>) -> Encoded<V::Event> {
    let mut out = Encoded::default();
    for event in events {
        match common(event) {
            Ok(c) => out.events.push(V::event(c)),
            Err(reason) => out.rejected.push(Rejected { offset: event.position.offset, reason }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::clickhouse::schema::Types;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use sluice_core::event::Position;

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

    #[test]
    fn modern_row_keeps_the_envelope_and_the_payload_as_json() {
        let e = event("thing.sold", ID, 1_700_000_000_123, json!({"buyer": "u-9", "amount": 1250}));
        let Rows::Modern(rows) = Rows::encode([&e], MODERN) else { panic!("modern layout") };
        assert!(rows.rejected.is_empty());
        let row = &rows.events[0];
        assert_eq!(row.event_id.to_string(), ID);
        assert_eq!(row.occurred_at, 1_700_000_000_123);
        assert_eq!(row.correlation_id.as_deref(), Some("corr"));
        assert_eq!(row.causation_id, None);
        assert_eq!((row.topic.as_str(), row.partition, row.offset), ("t", 4, 17));
        let payload: Value = serde_json::from_str(&row.payload).expect("json");
        assert_eq!(payload, json!({"buyer": "u-9", "amount": 1250}));
    }

    #[test]
    fn compat_row_splits_seconds_and_milliseconds() {
        let e = event("thing.started", ID, 1_700_000_000_999, json!({"device": "ios"}));
        let Rows::Compat(rows) = Rows::encode([&e], OLD) else { panic!("compat layout") };
        assert_eq!(rows.events[0].occurred_at, 1_700_000_000);
        assert_eq!(rows.events[0].occurred_at_ms, 1_700_000_000_999);
    }

    #[test]
    fn refuses_what_no_row_can_hold() {
        let bad_id = event("thing.created", "not-a-uuid", 1, json!({}));
        let too_old = event("thing.created", ID, -1, json!({}));
        let good = event("thing.created", ID, 5, json!({}));
        for layout in [MODERN, OLD] {
            let rows = Rows::encode([&bad_id, &too_old, &good], layout);
            let reasons: Vec<&str> = rows.rejected().iter().map(|r| r.reason.as_str()).collect();
            assert_eq!(reasons.len(), 2, "{reasons:?}");
            assert!(reasons[0].starts_with("event_id \"not-a-uuid\" is not a UUID"), "{reasons:?}");
            assert!(reasons[1].starts_with("occurred_at -1 ms is outside"), "{reasons:?}");
            assert!(rows.rejected().iter().all(|r| r.offset == 17));
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
            let Rows::Modern(modern) = Rows::encode([&e], MODERN) else { panic!("modern") };
            let Rows::Compat(old) = Rows::encode([&e], OLD) else { panic!("compat") };
            prop_assert_eq!(modern.rejected.len(), usize::from(!in_range));
            prop_assert_eq!(old.rejected.len(), usize::from(!in_range));
            if in_range {
                prop_assert_eq!(modern.events[0].occurred_at, ms);
                prop_assert_eq!(i64::from(old.events[0].occurred_at), ms / 1000);
                prop_assert_eq!(old.events[0].occurred_at_ms, ms);
            }
        }

        /// Every event ends up either as exactly one raw row or as one rejection, in batch order.
        #[test]
        fn every_event_is_written_or_refused(valid in prop::collection::vec(any::<bool>(), 0..40)) {
            let events: Vec<Event> = valid.iter().enumerate().map(|(i, ok)| {
                let id = if *ok { Uuid::from_u128(i as u128 + 1).to_string() } else { format!("bad-{i}") };
                let mut e = event("thing.changed", &id, 1_000, json!({}));
                e.position.offset = i as i64;
                e
            }).collect();
            let Rows::Modern(rows) = Rows::encode(&events, MODERN) else { panic!("modern") };
            let offsets = |want: bool| -> Vec<i64> {
                valid.iter().enumerate().filter(|(_, v)| **v == want).map(|(i, _)| i as i64).collect()
            };
            let written: Vec<i64> = rows.events.iter().map(|r| r.offset).collect();
            prop_assert_eq!(written, offsets(true));
            let refused: Vec<i64> = rows.rejected.iter().map(|r| r.offset).collect();
            prop_assert_eq!(refused, offsets(false));
        }
    }
}
