//! Events → rows (pure): what the sink inserts for a batch, and which events it refuses.
//!
//! Input: the decoded [`Event`]s of one batch and the projection's `clickhouse` block. Output: one
//! row per event for the raw table, one per state event (`state_events`: by default every `user.*`
//! type) for the users' update table (when the projection has a state table), and a
//! [`Rejected`] for each event no row can represent — its `event_id` is not a UUID, or its time is
//! outside what the columns hold. Each table has one row type per [`Layout`] variant: servers
//! with `DateTime64` take milliseconds (`i64`); older ones take seconds (`u32`, a `DateTime`) plus
//! the exact milliseconds in `occurred_at_ms`.
//!
//! The columns derived here, rather than in SQL, are the ones analysts filter by:
//! - `user_id`: the user the event is about — the `aggregate_id` of a state event, else the
//!   payload's `user_id` when it is a string (sessions, engagement), else `''`;
//! - `payload`: every non-envelope field as compact JSON;
//! - for state events, the profile fields the event sets (`NULL` for those it leaves alone, or
//!   sets to null); a `state_deletes` type (`user.deleted`, `legacy.user.deleted`) erases them to
//!   `''` and sets `is_deleted` to 1, a `state_creates` type (`user.registered`, and the CDC
//!   upsert `legacy.user.changed`, which is the whole current row) sets it to 0, so a change
//!   newer than a delete makes the user live again.

use serde::Serialize;
use serde_json::Value;
use sluice_core::event::Event;
use sluice_core::topology::{ClickHouseSink, StateChange};
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
    /// Derived user (see the module docs).
    pub user_id: String,
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
    /// Derived user (see the module docs).
    pub user_id: String,
    /// Payload as JSON.
    pub payload: String,
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
}

/// The profile fields one state event sets; `None` leaves the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFields {
    /// `email`, or `new_email` of `user.email_changed`.
    pub email: Option<String>,
    /// `display_name`.
    pub display_name: Option<String>,
    /// `country`.
    pub country: Option<String>,
    /// 1 after a delete (`user.deleted`), 0 after a create (`user.registered`).
    pub is_deleted: Option<u8>,
}

/// A users' update row for servers with `DateTime64`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize)]
pub struct UserUpdateRow {
    /// The user (`aggregate_id`).
    pub user_id: String,
    /// Orders the updates of one user.
    pub aggregate_version: i64,
    /// Collapses re-deliveries.
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    /// Which state event.
    pub event_type: String,
    /// Milliseconds since the epoch.
    pub occurred_at: i64,
    /// New email, if set.
    pub email: Option<String>,
    /// New display name, if set.
    pub display_name: Option<String>,
    /// New country, if set.
    pub country: Option<String>,
    /// New deletion flag, if set.
    pub is_deleted: Option<u8>,
}

/// A users' update row for servers without `DateTime64`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize)]
pub struct UserUpdateRowCompat {
    /// The user (`aggregate_id`).
    pub user_id: String,
    /// Orders the updates of one user.
    pub aggregate_version: i64,
    /// Collapses re-deliveries.
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    /// Which state event.
    pub event_type: String,
    /// Whole seconds since the epoch.
    pub occurred_at: u32,
    /// New email, if set.
    pub email: Option<String>,
    /// New display name, if set.
    pub display_name: Option<String>,
    /// New country, if set.
    pub country: Option<String>,
    /// New deletion flag, if set.
    pub is_deleted: Option<u8>,
}

/// The rows of one batch and the events refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded<E, U> {
    /// Raw-table rows, in batch order.
    pub events: Vec<E>,
    /// Users' update rows (empty unless asked for).
    pub user_updates: Vec<U>,
    /// Events that cannot be written, with the reason.
    pub rejected: Vec<Rejected>,
}

impl<E, U> Default for Encoded<E, U> {
    fn default() -> Self {
        Self { events: Vec::new(), user_updates: Vec::new(), rejected: Vec::new() }
    }
}

impl<E, U> Encoded<E, U> {
    /// Moves `other`'s rows behind these and hands back its refusals (which stay per batch).
    pub fn append(&mut self, other: Self) -> Vec<Rejected> {
        self.events.extend(other.events);
        self.user_updates.extend(other.user_updates);
        other.rejected
    }
}

/// The rows of a batch in the layout of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rows {
    /// For servers with `DateTime64`.
    Modern(Encoded<EventRow, UserUpdateRow>),
    /// For older servers.
    Compat(Encoded<EventRowCompat, UserUpdateRowCompat>),
}

impl Rows {
    /// Encodes `events` for `layout` and the projection's `config`, with the users' update rows
    /// when it has a state table.
    pub fn encode<'a>(events: impl IntoIterator<Item = &'a Event>, layout: Layout, config: &ClickHouseSink) -> Self {
        if layout.datetime64 {
            Self::Modern(encode::<Modern>(events, config))
        } else {
            Self::Compat(encode::<Compat>(events, config))
        }
    }

    /// The events refused.
    pub fn rejected(&self) -> &[Rejected] {
        match self {
            Self::Modern(e) => &e.rejected,
            Self::Compat(e) => &e.rejected,
        }
    }
}

/// `user_id` of an event: the aggregate of a state event, else the payload's `user_id`.
pub fn user_id(event: &Event, config: &ClickHouseSink) -> String {
    if config.is_state_event(&event.envelope.event_type) {
        return event.envelope.aggregate_id.clone();
    }
    match event.payload.get("user_id") {
        Some(Value::String(id)) => id.clone(),
        _ => String::new(),
    }
}

fn payload_string(event: &Event, field: &str) -> Option<String> {
    match event.payload.get(field) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The profile fields a state event sets (see `config`'s `state_*` keys); `None` for other events.
pub fn user_fields(event: &Event, config: &ClickHouseSink) -> Option<UserFields> {
    let change = config.state_change(&event.envelope.event_type)?;
    if change == StateChange::Delete {
        // The erasure: the personal fields become empty, and because this is the newest version
        // that sets them, no older value shows through any more.
        let erased = Some(String::new());
        return Some(UserFields {
            email: erased.clone(),
            display_name: erased.clone(),
            country: erased,
            is_deleted: Some(1),
        });
    }
    Some(UserFields {
        email: payload_string(event, "email").or_else(|| payload_string(event, "new_email")),
        display_name: payload_string(event, "display_name"),
        country: payload_string(event, "country"),
        is_deleted: (change == StateChange::Create).then_some(0),
    })
}

/// Checks that an event time fits the columns, for the reason of a rejection.
pub fn check_time(ms: i64) -> Result<i64, String> {
    if (MIN_OCCURRED_AT_MS..=MAX_OCCURRED_AT_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(format!("occurred_at {ms} ms is outside what the ClickHouse columns hold (1970-01-01 to 2106-02-07)"))
    }
}

/// The layout-independent parts of an event's rows.
struct Common<'a> {
    event: &'a Event,
    event_id: Uuid,
    occurred_at_ms: i64,
    user_id: String,
    payload: String,
}

fn common<'a>(event: &'a Event, config: &ClickHouseSink) -> Result<Common<'a>, String> {
    let e = &event.envelope;
    let event_id =
        Uuid::parse_str(&e.event_id).map_err(|err| format!("event_id {:?} is not a UUID: {err}", e.event_id))?;
    let occurred_at_ms = check_time(e.occurred_at)?;
    let payload =
        serde_json::to_string(&event.payload).map_err(|err| format!("the payload cannot be written as JSON: {err}"))?;
    Ok(Common { event, event_id, occurred_at_ms, user_id: user_id(event, config), payload })
}

/// One row type per table for a server layout.
trait Variant {
    type Event;
    type User;
    fn event(c: Common<'_>) -> Self::Event;
    fn user(c: &Common<'_>, fields: UserFields) -> Self::User;
}

struct Modern;
struct Compat;

/// Whole seconds; in range by [`check_time`], so the conversion cannot fail in practice.
fn seconds(ms: i64) -> u32 {
    u32::try_from(ms.div_euclid(1000)).unwrap_or(u32::MAX)
}

impl Variant for Modern {
    type Event = EventRow;
    type User = UserUpdateRow;

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
            user_id: c.user_id,
            payload: c.payload,
            topic: p.topic.clone(),
            partition: p.partition,
            offset: p.offset,
        }
    }

    fn user(c: &Common<'_>, f: UserFields) -> UserUpdateRow {
        let e = &c.event.envelope;
        UserUpdateRow {
            user_id: e.aggregate_id.clone(),
            aggregate_version: e.aggregate_version,
            event_id: c.event_id,
            event_type: e.event_type.clone(),
            occurred_at: c.occurred_at_ms,
            email: f.email,
            display_name: f.display_name,
            country: f.country,
            is_deleted: f.is_deleted,
        }
    }
}

impl Variant for Compat {
    type Event = EventRowCompat;
    type User = UserUpdateRowCompat;

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
            user_id: c.user_id,
            payload: c.payload,
            topic: p.topic.clone(),
            partition: p.partition,
            offset: p.offset,
        }
    }

    fn user(c: &Common<'_>, f: UserFields) -> UserUpdateRowCompat {
        let e = &c.event.envelope;
        UserUpdateRowCompat {
            user_id: e.aggregate_id.clone(),
            aggregate_version: e.aggregate_version,
            event_id: c.event_id,
            event_type: e.event_type.clone(),
            occurred_at: seconds(c.occurred_at_ms),
            email: f.email,
            display_name: f.display_name,
            country: f.country,
            is_deleted: f.is_deleted,
        }
    }
}

fn encode<'a, V: Variant>(
    events: impl IntoIterator<Item = &'a Event>,
    config: &ClickHouseSink,
) -> Encoded<V::Event, V::User> {
    let with_users = config.state_table.is_some();
    let mut out = Encoded { events: Vec::new(), user_updates: Vec::new(), rejected: Vec::new() };
    for event in events {
        match common(event, config) {
            Ok(c) => {
                if with_users && let Some(fields) = user_fields(event, config) {
                    out.user_updates.push(V::user(&c, fields));
                }
                out.events.push(V::event(c));
            }
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
    use serde_json::json;
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

    /// The repository's analytics block as it was before `state_*` existed: every default.
    fn defaults() -> ClickHouseSink {
        ClickHouseSink { state_table: Some("users_current".into()), ..ClickHouseSink::new("events") }
    }

    /// With the legacy database's users feeding the same state, as in `topology.toml`.
    fn with_cdc() -> ClickHouseSink {
        let list = |types: &[&str]| Some(types.iter().map(|t| (*t).to_owned()).collect());
        ClickHouseSink {
            state_events: list(&[
                "user.registered",
                "user.profile_updated",
                "user.email_changed",
                "user.deleted",
                "legacy.user.changed",
                "legacy.user.deleted",
            ]),
            state_deletes: list(&["user.deleted", "legacy.user.deleted"]),
            state_creates: list(&["user.registered", "legacy.user.changed"]),
            ..defaults()
        }
    }

    const MODERN: Layout =
        Layout { datetime64: true, low_cardinality: true, insert_deduplication: true, types: Types::ALL };
    const OLD: Layout =
        Layout { datetime64: false, low_cardinality: false, insert_deduplication: false, types: Types::NONE };

    #[test]
    fn modern_row_of_an_engagement_event() {
        let e = event(
            "engagement.purchase_completed",
            ID,
            1_700_000_000_123,
            json!({"user_id": "u-9", "amount_cents": 1250}),
        );
        let Rows::Modern(rows) = Rows::encode([&e], MODERN, &defaults()) else { panic!("modern layout") };
        assert!(rows.user_updates.is_empty() && rows.rejected.is_empty());
        let row = &rows.events[0];
        assert_eq!(row.event_id.to_string(), ID);
        assert_eq!(row.occurred_at, 1_700_000_000_123);
        assert_eq!(row.user_id, "u-9");
        assert_eq!(row.correlation_id.as_deref(), Some("corr"));
        assert_eq!(row.causation_id, None);
        assert_eq!((row.topic.as_str(), row.partition, row.offset), ("t", 4, 17));
        let payload: Value = serde_json::from_str(&row.payload).expect("json");
        assert_eq!(payload, json!({"user_id": "u-9", "amount_cents": 1250}));
    }

    #[test]
    fn compat_row_splits_seconds_and_milliseconds() {
        let e = event("session.started", ID, 1_700_000_000_999, json!({"user_id": "u-1", "device": "ios"}));
        let Rows::Compat(rows) = Rows::encode([&e], OLD, &defaults()) else { panic!("compat layout") };
        assert_eq!(rows.events[0].occurred_at, 1_700_000_000);
        assert_eq!(rows.events[0].occurred_at_ms, 1_700_000_000_999);
    }

    #[test]
    fn user_events_update_only_what_they_carry() {
        let registered = event(
            "user.registered",
            ID,
            1,
            json!({"email": "a@x", "display_name": "A", "country": "NL", "referrer": null}),
        );
        assert_eq!(
            user_fields(&registered, &defaults()),
            Some(UserFields {
                email: Some("a@x".into()),
                display_name: Some("A".into()),
                country: Some("NL".into()),
                is_deleted: Some(0)
            })
        );
        let partial =
            event("user.profile_updated", ID, 1, json!({"display_name": null, "country": "BE", "locale": "nl"}));
        assert_eq!(
            user_fields(&partial, &defaults()),
            Some(UserFields { country: Some("BE".into()), ..UserFields::default() })
        );
        let email = event("user.email_changed", ID, 1, json!({"old_email": "a@x", "new_email": "b@x"}));
        assert_eq!(
            user_fields(&email, &defaults()),
            Some(UserFields { email: Some("b@x".into()), ..UserFields::default() })
        );
        let deleted = event("user.deleted", ID, 1, json!({"reason": "GDPR_ERASURE"}));
        let erased = Some(String::new());
        assert_eq!(
            user_fields(&deleted, &defaults()),
            Some(UserFields {
                email: erased.clone(),
                display_name: erased.clone(),
                country: erased,
                is_deleted: Some(1)
            })
        );
        assert_eq!(user_fields(&event("session.started", ID, 1, json!({"user_id": "u"})), &defaults()), None);

        let Rows::Compat(rows) = Rows::encode([&registered, &partial], OLD, &defaults()) else { panic!("compat") };
        assert_eq!(rows.user_updates.len(), 2);
        assert_eq!(rows.user_updates[1].user_id, "agg-1");
        assert_eq!(rows.user_updates[1].country.as_deref(), Some("BE"));
        let Rows::Compat(rows) = Rows::encode([&registered], OLD, &ClickHouseSink::new("events")) else {
            panic!("compat")
        };
        assert!(rows.user_updates.is_empty(), "no state table, no update rows");
    }

    #[test]
    fn user_id_derivation() {
        assert_eq!(user_id(&event("user.email_changed", ID, 1, json!({"user_id": "other"})), &defaults()), "agg-1");
        assert_eq!(user_id(&event("engagement.clicked", ID, 1, json!({"user_id": "u-2"})), &defaults()), "u-2");
        assert_eq!(user_id(&event("engagement.clicked", ID, 1, json!({"user_id": 7})), &defaults()), "");
        assert_eq!(user_id(&event("thing.happened", ID, 1, json!({})), &defaults()), "");
    }

    fn versioned(event_type: &str, version: i64, payload: Value) -> Event {
        let mut e = event(event_type, &Uuid::from_u128(version as u128).to_string(), 1_000, payload);
        e.envelope.aggregate_version = version;
        e
    }

    /// What `users_current` shows for one user after these update rows: per column, the value of
    /// the newest row that set it (the `argMaxIf` of the state table).
    fn fold(rows: &[UserUpdateRow]) -> (Option<String>, Option<String>, Option<u8>) {
        let newest = |pick: &dyn Fn(&UserUpdateRow) -> bool| {
            rows.iter().filter(|r| pick(r)).max_by_key(|r| r.aggregate_version).cloned()
        };
        (
            newest(&|r| r.email.is_some()).and_then(|r| r.email),
            newest(&|r| r.country.is_some()).and_then(|r| r.country),
            newest(&|r| r.is_deleted.is_some()).and_then(|r| r.is_deleted),
        )
    }

    #[test]
    fn configured_state_events_write_the_state_row() {
        let config = with_cdc();
        let changed = event(
            "legacy.user.changed",
            ID,
            1,
            json!({"user_id": 42, "email": "l@x", "display_name": "L", "country": null, "balance_cents": 5}),
        );
        assert_eq!(
            user_fields(&changed, &config),
            Some(UserFields {
                email: Some("l@x".into()),
                display_name: Some("L".into()),
                country: None,
                is_deleted: Some(0)
            }),
            "a CDC upsert is the whole row: the user is live"
        );
        let deleted = event("legacy.user.deleted", ID, 1, json!({"user_id": 42}));
        let erased = Some(String::new());
        assert_eq!(
            user_fields(&deleted, &config),
            Some(UserFields {
                email: erased.clone(),
                display_name: erased.clone(),
                country: erased,
                is_deleted: Some(1)
            })
        );
        // The user.* types keep their meaning.
        for e in [
            event("user.registered", ID, 1, json!({"email": "a@x"})),
            event("user.profile_updated", ID, 1, json!({"country": "BE"})),
            event("user.deleted", ID, 1, json!({})),
        ] {
            assert_eq!(user_fields(&e, &config), user_fields(&e, &defaults()), "{}", e.envelope.event_type);
        }
        // The state key is the aggregate, also in the raw table (the legacy `user_id` is a number).
        assert_eq!(user_id(&changed, &config), "agg-1");
        assert_eq!(user_id(&changed, &defaults()), "", "not a state event by default");
        assert_eq!(user_fields(&changed, &defaults()), None);
        assert_eq!(user_fields(&event("legacy.user.signed_up", ID, 1, json!({})), &config), None);

        // Only the listed types: without `user.profile_updated`, it no longer writes the state.
        let narrow = ClickHouseSink { state_events: Some(vec!["user.registered".into()]), ..defaults() };
        assert_eq!(user_fields(&event("user.profile_updated", ID, 1, json!({"country": "BE"})), &narrow), None);
        assert_eq!(user_id(&event("user.profile_updated", ID, 1, json!({"user_id": "u"})), &narrow), "u");
        // A configured delete without `state_deletes` default.
        let no_deletes = ClickHouseSink { state_deletes: Some(Vec::new()), ..defaults() };
        let plain = user_fields(&event("user.deleted", ID, 1, json!({})), &no_deletes);
        assert_eq!(plain, Some(UserFields::default()), "an update that sets nothing");
    }

    #[test]
    fn a_cdc_change_newer_than_the_delete_revives_the_user() {
        let config = with_cdc();
        let row = |email: &str, country: &str| json!({"user_id": 42, "email": email, "country": country});
        let history = [
            versioned("legacy.user.changed", 10, row("a@x", "NL")),
            versioned("legacy.user.deleted", 20, json!({"user_id": 42})),
            versioned("legacy.user.changed", 30, row("b@x", "BE")),
        ];
        let encoded = |events: &[&Event]| {
            let Rows::Modern(rows) = Rows::encode(events.iter().copied(), MODERN, &config) else { panic!("modern") };
            assert!(rows.rejected.is_empty(), "{:?}", rows.rejected);
            rows.user_updates
        };
        let [created, deleted, revived] = [&history[0], &history[1], &history[2]];
        assert_eq!(fold(&encoded(&[created])), (Some("a@x".into()), Some("NL".into()), Some(0)));
        // Any order: the delete alone beats the older change, the newer change beats the delete.
        assert_eq!(fold(&encoded(&[deleted, created])), (Some(String::new()), Some(String::new()), Some(1)));
        assert_eq!(fold(&encoded(&[revived, deleted, created])), (Some("b@x".into()), Some("BE".into()), Some(0)));
        assert!(encoded(&[revived]).iter().all(|r| r.user_id == "agg-1"));
    }

    #[test]
    fn refuses_what_no_row_can_hold() {
        let bad_id = event("user.registered", "not-a-uuid", 1, json!({}));
        let too_old = event("user.registered", ID, -1, json!({}));
        let good = event("user.registered", ID, 5, json!({}));
        for layout in [MODERN, OLD] {
            let rows = Rows::encode([&bad_id, &too_old, &good], layout, &defaults());
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
            let e = event("session.heartbeat", ID, ms, json!({"user_id": "u"}));
            let in_range = (MIN_OCCURRED_AT_MS..=MAX_OCCURRED_AT_MS).contains(&ms);
            let Rows::Modern(modern) = Rows::encode([&e], MODERN, &defaults()) else { panic!("modern") };
            let Rows::Compat(old) = Rows::encode([&e], OLD, &defaults()) else { panic!("compat") };
            prop_assert_eq!(modern.rejected.len(), usize::from(!in_range));
            prop_assert_eq!(old.rejected.len(), usize::from(!in_range));
            if in_range {
                prop_assert_eq!(modern.events[0].occurred_at, ms);
                prop_assert_eq!(i64::from(old.events[0].occurred_at), ms / 1000);
                prop_assert_eq!(old.events[0].occurred_at_ms, ms);
            }
        }

        /// Every event ends up either as exactly one raw row or as one rejection, in batch order;
        /// only `user.*` events give update rows.
        #[test]
        fn every_event_is_written_or_refused(spec in prop::collection::vec((0..4u8, any::<bool>()), 0..40)) {
            let types = ["user.registered", "user.deleted", "engagement.clicked", "session.ended"];
            let events: Vec<Event> = spec.iter().enumerate().map(|(i, (t, valid))| {
                let id = if *valid { Uuid::from_u128(i as u128 + 1).to_string() } else { format!("bad-{i}") };
                let mut e = event(types[usize::from(*t)], &id, 1_000, json!({"user_id": "u"}));
                e.position.offset = i as i64;
                e
            }).collect();
            let Rows::Modern(rows) = Rows::encode(&events, MODERN, &defaults()) else { panic!("modern") };
            let valid: Vec<i64> = spec.iter().enumerate().filter(|(_, (_, v))| *v).map(|(i, _)| i as i64).collect();
            let written: Vec<i64> = rows.events.iter().map(|r| r.offset).collect();
            prop_assert_eq!(&written, &valid);
            let refused: Vec<i64> = rows.rejected.iter().map(|r| r.offset).collect();
            let invalid: Vec<i64> = spec.iter().enumerate().filter(|(_, (_, v))| !*v).map(|(i, _)| i as i64).collect();
            prop_assert_eq!(refused, invalid);
            let users = spec.iter().filter(|(t, v)| *v && *t < 2).count();
            prop_assert_eq!(rows.user_updates.len(), users);
        }
    }
}
