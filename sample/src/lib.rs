//! The repository's sample domain: realistic sample events of it (`sluice sample`, the demo, the tests), and the
//! model of what the projections must show for them — computed here, independently of the sinks.
//!
//! Deterministic: the same arguments give the same events, so a test can compare the stores with
//! the model and a demo can be re-run. (Generator: xorshift, no extra crates.)

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sluice_core::calendar::{Unit, format_date_time};

/// Start of the generated timeline: 2026-11-01T00:00:00Z.
pub const T0: i64 = 1_793_491_200_000;
const DAY: i64 = 86_400_000;

/// A small, fast, seedable generator (xorshift), so runs are reproducible without extra crates.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    /// Next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The expected Couchbase document of a user (the `fields` of `user_state` in topology.toml).
pub type Doc = Map<String, Value>;

/// What the projections must show.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// user id → document fields; absent when the user was erased.
    pub users: BTreeMap<String, Doc>,
    /// user ids that were erased.
    pub erased: Vec<String>,
    /// session id → document fields.
    pub sessions: BTreeMap<String, Doc>,
    /// (day, user id) → (page views, clicks, purchases, revenue cents).
    pub daily: BTreeMap<(i64, String), (u64, u64, u64, i64)>,
    /// event type → number of distinct events.
    pub by_type: BTreeMap<String, u64>,
}

fn envelope(event_type: &str, aggregate: &str, version: i64, at: i64, n: u64, run: &str) -> Map<String, Value> {
    let mut m = Map::new();
    // Deterministic UUIDs: the run id's digits and the event number.
    m.insert("event_id".into(), json!(format!("{run}-0000-4000-8000-{n:012x}")));
    m.insert("event_type".into(), json!(event_type));
    m.insert("aggregate_id".into(), json!(aggregate));
    m.insert("aggregate_version".into(), json!(version));
    m.insert("occurred_at".into(), json!(at));
    m.insert("producer".into(), json!("sluice-sample"));
    m.insert("correlation_id".into(), json!(format!("flow-{}", n / 7)));
    m.insert("causation_id".into(), Value::Null);
    m.insert("traceparent".into(), Value::Null);
    m.insert("tracestate".into(), Value::Null);
    m
}

fn set(doc: &mut Doc, k: &str, v: &Value) {
    if !v.is_null() {
        doc.insert(k.into(), v.clone());
    }
}

/// Generates about `users × 12` events: every user registers, updates, maybe changes e-mail,
/// opens sessions with heartbeats, views pages, clicks, buys; one user in ten is erased at the
/// end. `run` must be 8 hex digits (it prefixes every event id, so runs never share ids) and
/// `prefix` prefixes every aggregate id. Events are returned in a valid publishing order (each
/// aggregate's versions increase), together with the model.
pub fn generate(users: usize, seed: u64, run: &str, prefix: &str) -> (Vec<Value>, Model) {
    assert!(run.len() == 8 && run.chars().all(|c| c.is_ascii_hexdigit()), "run must be 8 hex digits");
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut model = Model::default();
    let mut n = 0u64;
    let countries = ["NL", "DE", "FR", "US", "BR", "JP"];
    for u in 0..users {
        let uid = format!("{prefix}u{u}");
        let mut v = 0;
        let mut at = T0 + rng.below(3 * DAY as u64) as i64;
        let mut doc = Doc::new();
        let push = |out: &mut Vec<Value>, model: &mut Model, e: Map<String, Value>| {
            *model.by_type.entry(e["event_type"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
            out.push(Value::Object(e));
        };
        // Registered.
        v += 1;
        n += 1;
        let mut e = envelope("user.registered", &uid, v, at, n, run);
        let email = format!("{uid}@example.com");
        let country = countries[rng.below(6) as usize];
        e.insert("email".into(), json!(email));
        e.insert("display_name".into(), json!(format!("User {u}")));
        e.insert("country".into(), json!(country));
        e.insert("referrer".into(), if u % 3 == 0 { json!("ads") } else { Value::Null });
        for k in ["email", "display_name", "country", "referrer"] {
            set(&mut doc, k, &e[k]);
        }
        doc.insert("updated_at".into(), json!(format_date_time(at, Unit::Millis, true)));
        push(&mut out, &mut model, e);
        // Profile updates: partial (absent fields unchanged).
        for _ in 0..rng.below(3) {
            v += 1;
            n += 1;
            at += 1000 + rng.below(60_000) as i64;
            let mut e = envelope("user.profile_updated", &uid, v, at, n, run);
            e.insert("display_name".into(), if rng.below(2) == 0 { json!(format!("U{u}v{v}")) } else { Value::Null });
            e.insert("country".into(), Value::Null);
            e.insert("locale".into(), json!(["nl-NL", "en-US", "de-DE"][rng.below(3) as usize]));
            e.insert("avatar_url".into(), Value::Null);
            for k in ["display_name", "country", "locale", "avatar_url"] {
                set(&mut doc, k, &e[k]);
            }
            doc.insert("updated_at".into(), json!(format_date_time(at, Unit::Millis, true)));
            push(&mut out, &mut model, e);
        }
        if rng.below(2) == 0 {
            v += 1;
            n += 1;
            at += 1000;
            let mut e = envelope("user.email_changed", &uid, v, at, n, run);
            let new = format!("{uid}.v{v}@example.org");
            e.insert("old_email".into(), doc.get("email").cloned().unwrap_or(Value::Null));
            e.insert("new_email".into(), json!(new));
            doc.insert("email".into(), json!(new));
            doc.insert("updated_at".into(), json!(format_date_time(at, Unit::Millis, true)));
            push(&mut out, &mut model, e);
        }
        // Sessions and engagement.
        for s in 0..1 + rng.below(2) {
            let sid = format!("{uid}s{s}");
            let mut sv = 1;
            let mut st = at + 5_000;
            n += 1;
            let mut e = envelope("session.started", &sid, sv, st, n, run);
            e.insert("user_id".into(), json!(uid));
            e.insert("device".into(), json!(["ios", "android", "web"][rng.below(3) as usize]));
            e.insert("ip_country".into(), json!(country));
            e.insert("user_agent".into(), Value::Null);
            let mut sdoc = Doc::new();
            for k in ["user_id", "device", "ip_country"] {
                set(&mut sdoc, k, &e[k]);
            }
            sdoc.insert("last_event".into(), json!("session.started"));
            sdoc.insert("last_seen_at".into(), json!(st));
            push(&mut out, &mut model, e);
            for _ in 0..rng.below(3) {
                sv += 1;
                n += 1;
                st += 30_000;
                let mut e = envelope("session.heartbeat", &sid, sv, st, n, run);
                e.insert("user_id".into(), json!(uid));
                sdoc.insert("last_event".into(), json!("session.heartbeat"));
                sdoc.insert("last_seen_at".into(), json!(st));
                push(&mut out, &mut model, e);
            }
            for _ in 0..2 + rng.below(4) {
                n += 1;
                st += 10_000;
                let day = st.div_euclid(DAY) * DAY;
                let kind = rng.below(10);
                let (event_type, eid) = match kind {
                    0..=5 => ("engagement.page_viewed", format!("{uid}pv{n}")),
                    6..=8 => ("engagement.clicked", format!("{uid}c{n}")),
                    _ => ("engagement.purchase_completed", format!("{uid}p{n}")),
                };
                let mut e = envelope(event_type, &eid, 1, st, n, run);
                e.insert("user_id".into(), json!(uid));
                e.insert("session_id".into(), json!(sid));
                let slot = model.daily.entry((day, uid.clone())).or_default();
                match kind {
                    0..=5 => {
                        e.insert("url".into(), json!(format!("/p/{}", rng.below(50))));
                        e.insert("referrer".into(), Value::Null);
                        slot.0 += 1;
                    }
                    6..=8 => {
                        e.insert("url".into(), json!("/cart"));
                        e.insert("element".into(), json!("buy-button"));
                        slot.1 += 1;
                    }
                    _ => {
                        let cents = 100 + rng.below(10_000) as i64;
                        e.insert("order_id".into(), json!(format!("o{n}")));
                        e.insert("amount_cents".into(), json!(cents));
                        e.insert("currency".into(), json!("EUR"));
                        e.insert("items".into(), json!(1 + rng.below(3)));
                        slot.2 += 1;
                        slot.3 += cents;
                    }
                }
                push(&mut out, &mut model, e);
            }
            sv += 1;
            n += 1;
            st += 1_000;
            let mut e = envelope("session.ended", &sid, sv, st, n, run);
            e.insert("user_id".into(), json!(uid));
            e.insert("duration_ms".into(), json!(st - at - 5_000));
            sdoc.insert("last_event".into(), json!("session.ended"));
            sdoc.insert("duration_ms".into(), e["duration_ms"].clone());
            sdoc.insert("last_seen_at".into(), json!(st));
            push(&mut out, &mut model, e);
            model.sessions.insert(sid, sdoc);
        }
        if u % 10 == 9 {
            v += 1;
            n += 1;
            let e = {
                let mut e = envelope("user.deleted", &uid, v, at + 3_600_000, n, run);
                e.insert("reason".into(), json!("GDPR_ERASURE"));
                e
            };
            push(&mut out, &mut model, e);
            model.erased.push(uid.clone());
        } else {
            model.users.insert(uid.clone(), doc);
        }
    }
    (out, model)
}

/// The default topology with every topic, projection (so consumer group and DLQ topic) and
/// ClickHouse table suffixed with `_<suffix>`, and schema paths made absolute under `schemas_dir`:
/// a pipeline that shares nothing with other runs (tests, `sluice bench`) — except the ClickHouse
/// rollups, whose objects keep their names (`daily_engagement…`): give the copy a ClickHouse
/// database of its own, as the tests and `sluice bench` do. Text-based, so
/// it applies to the default domain's names only.
pub fn isolated_topology(text: &str, schemas_dir: &std::path::Path, suffix: &str) -> String {
    let mut text = text.replace("schema = \"schemas/", &format!("schema = \"{}/", schemas_dir.display()));
    for topic in ["users", "sessions", "engagement"] {
        text = text
            .replace(&format!("[topics.{topic}]"), &format!("[topics.{topic}_{suffix}]"))
            .replace(&format!("\"{topic}\""), &format!("\"{topic}_{suffix}\""));
    }
    // The legacy app's CDC topics (`[cdc.*]`), named as Debezium names them (`<prefix>.<schema>.<table>`,
    // `outbox.event.<aggregate type>`).
    for (topic, renamed) in [
        ("legacy.public.users", format!("legacy_{suffix}.public.users")),
        ("legacy.public.sessions", format!("legacy_{suffix}.public.sessions")),
        ("outbox.event.user", format!("outbox_{suffix}.event.user")),
    ] {
        text = text.replace(&format!("\"{topic}\""), &format!("\"{renamed}\""));
    }
    for projection in ["user_state", "session_state", "analytics"] {
        text = text.replace(&format!("[projections.{projection}"), &format!("[projections.{projection}_{suffix}"));
    }
    text = text.replace("table = \"events\"", &format!("table = \"events_{suffix}\""));
    // Declared tables (the topic rename above already renamed their names where quoted).
    for (kind, table) in [("tables", "engagement"), ("state", "users_current")] {
        text = text.replace(&format!(".{kind}.{table}]"), &format!(".{kind}.{table}_{suffix}]"));
        text = text.replace(&format!(".{kind}.{table}."), &format!(".{kind}.{table}_{suffix}."));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_per_aggregate_and_ids_are_unique() {
        let (events, model) = generate(30, 7, "0badc0de", "t");
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        let mut ids = std::collections::BTreeSet::new();
        for e in &events {
            let agg = e["aggregate_id"].as_str().expect("id").to_owned();
            let v = e["aggregate_version"].as_i64().expect("version");
            assert!(last.insert(agg, v).is_none_or(|prev| prev < v), "{e}");
            assert!(ids.insert(e["event_id"].as_str().expect("event id").to_owned()));
        }
        assert_eq!(model.users.len() + model.erased.len(), 30);
        assert_eq!(model.by_type.values().sum::<u64>(), events.len() as u64);
    }
}
