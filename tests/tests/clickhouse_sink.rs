//! The ClickHouse sink against both targets (chDB 26.9 and ClickHouse 18.16), each test in a fresh
//! database it drops at the end.
//!
//! Events are built directly (no Kafka): users registering, updating and deleting themselves,
//! sessions, and engagement, in many batches. What analysts would query — the raw table `FINAL`,
//! `daily_engagement`, `users_current` — must equal a model computed here, before and after
//! batches are re-sent (same tokens) and shuffled duplicates arrive in new batches. Merges are
//! stopped during the redelivery, so the duplicates are really stored and the analyst queries
//! must see through them; a final `OPTIMIZE … FINAL` shows they collapse for good.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use futures::FutureExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sluice_consumers::sinks::clickhouse::{ClickHouse, ClickHouseProjection, Error, MigrationAction};
use sluice_consumers::{Batch, Sink, SinkError};
use sluice_core::connections::{ClickHouseCompression, ClickHouseConnection};
use sluice_core::event::{Envelope, Event, Position};
use sluice_core::topology::{ProjectionConfig, SinkConfig, Topology};
use sluice_tests::{connections, unique, within};

const DAY_MS: i64 = 86_400_000;
/// 2026-11-01T00:00:00Z.
const START_MS: i64 = 1_793_491_200_000;

/// splitmix64: deterministic data without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// The analytics projection of the repository's own topology, writing into `database`.
fn projection(database: &str) -> ProjectionConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topology.toml");
    let topology = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut projection = topology.projection("analytics").expect("the analytics projection").clone();
    let SinkConfig::ClickHouse { clickhouse } = &mut projection.sink else { panic!("analytics writes to ClickHouse") };
    clickhouse.database = Some(database.to_owned());
    projection
}

/// Events in generation order, each with its topic and Kafka key.
struct Generator {
    rng: Rng,
    events: Vec<Event>,
}

impl Generator {
    fn push(&mut self, topic: &str, event_type: &str, aggregate_id: &str, version: i64, at: i64, payload: Value) {
        let Value::Object(payload) = payload else { panic!("payload is an object") };
        let event_id = uuid::Uuid::from_u64_pair(self.rng.next(), self.rng.next()).to_string();
        self.events.push(Event {
            envelope: Envelope {
                event_id,
                event_type: event_type.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                aggregate_version: version,
                occurred_at: at,
                producer: format!("{topic}-service"),
                correlation_id: self.rng.chance(50).then(|| format!("corr-{}", self.rng.below(1000))),
                causation_id: None,
                traceparent: None,
                tracestate: None,
            },
            payload,
            // The partition is the key's, as Kafka would choose; offsets come in `batches`.
            position: Position { topic: topic.to_owned(), partition: key_partition(aggregate_id, topic), offset: 0 },
            schema_id: 1,
        });
    }

    fn time(&mut self) -> i64 {
        START_MS + self.rng.below(3 * DAY_MS as u64) as i64
    }
}

fn key_partition(key: &str, topic: &str) -> i32 {
    let partitions: u64 = match topic {
        "engagement" => 12,
        _ => 6,
    };
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (hash % partitions) as i32
}

/// Users, sessions and engagement: about 2,000 events.
fn generate(seed: u64) -> Vec<Event> {
    let mut g = Generator { rng: Rng(seed), events: Vec::new() };
    let countries = ["NL", "BE", "DE", "FR", "PT"];
    for u in 0..120 {
        let user = format!("u-{u:03}");
        let mut version = 1;
        let t = g.time();
        let country = g.rng.pick(&countries);
        g.push(
            "users",
            "user.registered",
            &user,
            version,
            t,
            json!({
                "email": format!("{user}@example.com"), "display_name": format!("User {u}"),
                "country": country, "referrer": null,
            }),
        );
        for _ in 0..g.rng.below(4) {
            version += 1;
            let t = g.time();
            if g.rng.chance(50) {
                let name = g.rng.chance(50).then(|| format!("Renamed {u}.{version}"));
                let country = g.rng.chance(60).then(|| g.rng.pick(&countries));
                g.push(
                    "users",
                    "user.profile_updated",
                    &user,
                    version,
                    t,
                    json!({
                        "display_name": name, "country": country, "locale": "en", "avatar_url": null,
                    }),
                );
            } else {
                g.push(
                    "users",
                    "user.email_changed",
                    &user,
                    version,
                    t,
                    json!({
                        "old_email": "whatever", "new_email": format!("{user}.v{version}@example.com"),
                    }),
                );
            }
        }
        for s in 0..g.rng.below(4) {
            let session = format!("s-{u:03}-{s}");
            let t = g.time();
            g.push(
                "sessions",
                "session.started",
                &session,
                1,
                t,
                json!({
                    "user_id": user, "device": "ios", "ip_country": null, "user_agent": null,
                }),
            );
            g.push("sessions", "session.heartbeat", &session, 2, t + 30_000, json!({"user_id": user}));
            g.push(
                "sessions",
                "session.ended",
                &session,
                3,
                t + 60_000,
                json!({"user_id": user, "duration_ms": 60_000}),
            );
            for n in 0..g.rng.below(8) {
                let t = g.time();
                match g.rng.below(10) {
                    0..=5 => g.push(
                        "engagement",
                        "engagement.page_viewed",
                        &session,
                        0,
                        t,
                        json!({
                            "user_id": user, "session_id": session, "url": format!("/p/{n}"), "referrer": null,
                        }),
                    ),
                    6..=8 => g.push(
                        "engagement",
                        "engagement.clicked",
                        &session,
                        0,
                        t,
                        json!({
                            "user_id": user, "session_id": session, "url": "/p", "element": "buy",
                        }),
                    ),
                    _ => {
                        let amount = 100 + g.rng.below(20_000) as i64;
                        g.push(
                            "engagement",
                            "engagement.purchase_completed",
                            &session,
                            0,
                            t,
                            json!({
                                "user_id": user, "session_id": null, "order_id": format!("o-{u}-{n}"),
                                "amount_cents": amount, "currency": "EUR", "items": 1,
                            }),
                        );
                    }
                }
            }
        }
        if g.rng.chance(15) {
            version += 1;
            let t = g.time();
            g.push("users", "user.deleted", &user, version, t, json!({"reason": "GDPR_ERASURE"}));
            // Now and then an account comes back under the same id: newer than the erasure.
            if g.rng.chance(30) {
                version += 1;
                let t = g.time();
                g.push(
                    "users",
                    "user.registered",
                    &user,
                    version,
                    t,
                    json!({
                        "email": format!("{user}.back@example.com"), "display_name": "Back",
                        "country": "IE", "referrer": "mail",
                    }),
                );
            }
        }
    }
    // Anonymous engagement: counted by the rollup, in no user's profile.
    for n in 0..30 {
        let t = g.time();
        g.push(
            "engagement",
            "engagement.page_viewed",
            &format!("anon-s-{n}"),
            0,
            t,
            json!({
                "user_id": format!("anon-{}", n % 7), "session_id": null, "url": "/", "referrer": null,
            }),
        );
    }
    g.events
}

/// Assigns offsets per partition (generation order) and cuts each partition into batches of
/// varying size, as a worker would hand them over.
fn batches(events: Vec<Event>, rng: &mut Rng) -> Vec<Batch> {
    let mut by_partition: BTreeMap<(String, i32), Vec<Event>> = BTreeMap::new();
    for mut e in events {
        let list = by_partition.entry((e.position.topic.clone(), e.position.partition)).or_default();
        e.position.offset = list.len() as i64;
        list.push(e);
    }
    let mut out = Vec::new();
    for ((topic, partition), events) in by_partition {
        let mut rest = events.as_slice();
        while !rest.is_empty() {
            let size = (5 + rng.below(40) as usize).min(rest.len());
            let (chunk, tail) = rest.split_at(size);
            out.push(Batch {
                topic: topic.clone(),
                partition,
                events: chunk.to_vec(),
                first_offset: chunk[0].position.offset,
                last_offset: chunk[size - 1].position.offset,
            });
            rest = tail;
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, clickhouse::Row, Deserialize)]
struct EngagementRow {
    day: u16,
    user_id: String,
    page_views: u64,
    clicks: u64,
    purchases: u64,
    revenue_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, clickhouse::Row, Deserialize)]
struct UserRow {
    user_id: String,
    aggregate_version: i64,
    email: String,
    display_name: String,
    country: String,
    is_deleted: u8,
    updated_s: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, clickhouse::Row, Deserialize)]
struct CountRow {
    key: String,
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
struct RawRow {
    id: String,
    kind: String,
    occurred_at_ms: i64,
    payload: String,
    source: String,
    partition: i32,
    offset: i64,
}

/// What the analyst queries must return, computed from the distinct events.
#[derive(Debug, PartialEq)]
struct Model {
    events: u64,
    by_type: Vec<CountRow>,
    occurred_at_ms_sum: i64,
    engagement: Vec<EngagementRow>,
    users: Vec<UserRow>,
    revenue_of_active_users_by_country: Vec<CountRow>,
}

fn text(e: &Event, field: &str) -> Option<String> {
    e.payload.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn model(events: &[Event]) -> Model {
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut engagement: BTreeMap<(u16, String), EngagementRow> = BTreeMap::new();
    let mut user_events: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for e in events {
        let t = e.envelope.event_type.as_str();
        *by_type.entry(t.to_owned()).or_default() += 1;
        if t.starts_with("engagement.") {
            let user = text(e, "user_id").unwrap_or_default();
            let day = u16::try_from(e.envelope.occurred_at / DAY_MS).expect("a 1970+ day");
            let row = engagement.entry((day, user.clone())).or_insert_with(|| EngagementRow {
                day,
                user_id: user,
                page_views: 0,
                clicks: 0,
                purchases: 0,
                revenue_cents: 0,
            });
            match t {
                "engagement.page_viewed" => row.page_views += 1,
                "engagement.clicked" => row.clicks += 1,
                _ => {
                    row.purchases += 1;
                    row.revenue_cents += e.payload.get("amount_cents").and_then(Value::as_i64).unwrap_or(0);
                }
            }
        }
        if t.starts_with("user.") {
            user_events.entry(e.envelope.aggregate_id.clone()).or_default().push(e);
        }
    }
    let mut users = Vec::new();
    for (user_id, mut list) in user_events {
        list.sort_by_key(|e| e.envelope.aggregate_version);
        let mut row = UserRow {
            user_id,
            aggregate_version: 0,
            email: String::new(),
            display_name: String::new(),
            country: String::new(),
            is_deleted: 0,
            updated_s: 0,
        };
        for e in list {
            row.aggregate_version = e.envelope.aggregate_version;
            row.updated_s = u32::try_from(e.envelope.occurred_at / 1000).expect("seconds");
            match e.envelope.event_type.as_str() {
                "user.registered" => {
                    row.email = text(e, "email").unwrap_or_default();
                    row.display_name = text(e, "display_name").unwrap_or_default();
                    row.country = text(e, "country").unwrap_or_default();
                    row.is_deleted = 0;
                }
                "user.profile_updated" => {
                    row.display_name = text(e, "display_name").unwrap_or(row.display_name);
                    row.country = text(e, "country").unwrap_or(row.country);
                }
                "user.email_changed" => row.email = text(e, "new_email").unwrap_or(row.email),
                "user.deleted" => {
                    row.email.clear();
                    row.display_name.clear();
                    row.country.clear();
                    row.is_deleted = 1;
                }
                other => panic!("unexpected {other}"),
            }
        }
        users.push(row);
    }
    let mut revenue: BTreeMap<String, u64> = BTreeMap::new();
    for row in engagement.values() {
        if let Some(u) = users.iter().find(|u| u.user_id == row.user_id && u.is_deleted == 0) {
            *revenue.entry(u.country.clone()).or_default() += u64::try_from(row.revenue_cents).expect("revenue");
        }
    }
    Model {
        events: events.len() as u64,
        by_type: by_type.into_iter().map(|(key, n)| CountRow { key, n }).collect(),
        occurred_at_ms_sum: events.iter().map(|e| e.envelope.occurred_at).sum(),
        engagement: engagement.into_values().collect(),
        users,
        revenue_of_active_users_by_country: revenue.into_iter().map(|(key, n)| CountRow { key, n }).collect(),
    }
}

/// Runs the analyst queries of docs/analytics.md.
async fn observe(ch: &ClickHouse, db: &str) -> Model {
    let c = &ch.client;
    let q = |sql: String| c.query(&sql);
    let events: u64 = q(format!("SELECT count() FROM `{db}`.events FINAL")).fetch_one().await.expect("count FINAL");
    let by_type = q(format!(
        "SELECT toString(event_type) AS key, count() AS n FROM `{db}`.events FINAL GROUP BY key ORDER BY key"
    ))
    .fetch_all::<CountRow>()
    .await
    .expect("count by type");
    let occurred_at_ms_sum: i64 =
        q(format!("SELECT sum(occurred_at_ms) FROM `{db}`.events FINAL")).fetch_one().await.expect("sum of ms");
    let engagement = q(format!(
        "SELECT day, user_id, page_views, clicks, purchases, revenue_cents FROM `{db}`.daily_engagement \
         ORDER BY day, user_id"
    ))
    .fetch_all::<EngagementRow>()
    .await
    .expect("daily_engagement");
    let users = q(format!(
        "SELECT user_id, aggregate_version, email, display_name, country, is_deleted, \
         toUInt32(toUnixTimestamp(updated_at)) AS updated_s FROM `{db}`.users_current ORDER BY user_id"
    ))
    .fetch_all::<UserRow>()
    .await
    .expect("users_current");
    let revenue_of_active_users_by_country = q(format!(
        "SELECT u.country AS key, toUInt64(sum(d.revenue_cents)) AS n \
         FROM `{db}`.daily_engagement AS d \
         ALL INNER JOIN (SELECT user_id, country FROM `{db}`.users_current WHERE is_deleted = 0) AS u USING user_id \
         GROUP BY key ORDER BY key"
    ))
    .fetch_all::<CountRow>()
    .await
    .expect("revenue by country");
    Model { events, by_type, occurred_at_ms_sum, engagement, users, revenue_of_active_users_by_country }
}

async fn stored_rows(ch: &ClickHouse, table: &str) -> u64 {
    ch.client.query(&format!("SELECT count() FROM {table}")).fetch_one().await.expect("count")
}

/// Runs `body` against a fresh database, dropping it afterwards even when `body` fails.
async fn with_database<F, Fut>(conn: &ClickHouseConnection, prefix: &str, body: F)
where
    F: FnOnce(ClickHouse, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let ch = within("connect", 30, ClickHouse::connect(conn)).await.unwrap_or_else(|e| panic!("{e}"));
    let db = unique(prefix);
    let outcome = AssertUnwindSafe(body(ch.clone(), db.clone())).catch_unwind().await;
    let drop = ch.client.query(&format!("DROP DATABASE IF EXISTS `{db}`")).execute().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    drop.expect("drop the test database");
}

async fn write_all(sink: &ClickHouseProjection, batches: &[Batch]) {
    for batch in batches {
        let rejected = within("write", 60, sink.write(batch)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rejected, [], "batch {}", batch.token());
    }
}

async fn exact_under_redelivery(conn: &ClickHouseConnection) {
    with_database(conn, "sluice_it", |ch, db| async move {
        let sink = ClickHouseProjection::new(ch.clone(), "default", &projection(&db)).expect("projection");
        assert_eq!(sink.batching().max_records, 20_000, "batching comes from topology.toml");
        let dedup = sink.layout().insert_deduplication;

        // Migrating creates everything once; a second run is a no-op.
        let first = within("migrate", 60, sink.migrate()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.len(), 10, "{first:?}");
        assert!(first.iter().all(|l| l.action == MigrationAction::Created), "{first:?}");
        let second = within("migrate again", 60, sink.migrate()).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(second.iter().all(|l| l.action == MigrationAction::UpToDate), "{second:?}");
        assert_eq!(
            second.iter().map(|l| l.name.clone()).collect::<Vec<_>>(),
            first.iter().map(|l| l.name.clone()).collect::<Vec<_>>()
        );

        let mut rng = Rng(7);
        let events = generate(42);
        let batches = batches(events, &mut rng);
        let distinct: Vec<Event> = batches.iter().flat_map(|b| b.events.clone()).collect();
        let expected = model(&distinct);
        let (n, b) = (expected.events, batches.len());
        assert!(n > 1500 && b > 60, "{n} events in {b} batches");
        assert!(expected.users.iter().any(|u| u.is_deleted == 1) && expected.users.iter().any(|u| u.is_deleted == 0));

        write_all(&sink, &batches).await;
        assert_eq!(observe(&ch, &db).await, expected);
        let events_table = format!("`{db}`.events");
        let by_event = format!("`{db}`.daily_engagement_by_event");
        assert_eq!(stored_rows(&ch, &events_table).await, expected.events, "no duplicate yet");

        // One raw row in full: the columns analysts read.
        let probe = &distinct[distinct.len() / 2];
        let raw: RawRow = ch
            .client
            .query(&format!(
                "SELECT toString(event_id) AS id, toString(event_type) AS kind, occurred_at_ms, \
                 payload, toString(topic) AS source, partition, offset \
                 FROM `{db}`.events FINAL WHERE event_id = toUUID(?)"
            ))
            .bind(probe.envelope.event_id.as_str())
            .fetch_one()
            .await
            .expect("one raw row");
        assert_eq!(raw.id, probe.envelope.event_id);
        assert_eq!(raw.kind, probe.envelope.event_type);
        assert_eq!(raw.occurred_at_ms, probe.envelope.occurred_at);
        assert_eq!(
            (raw.source.as_str(), raw.partition, raw.offset),
            (probe.position.topic.as_str(), probe.position.partition, probe.position.offset)
        );
        assert_eq!(serde_json::from_str::<Map<String, Value>>(&raw.payload).expect("payload JSON"), probe.payload);

        // Redelivery, with merges stopped so the duplicates are really there.
        for table in
            ["events", "engagement", "daily_engagement_by_event", "users_current_updates", "users_current_state"]
        {
            ch.client.query(&format!("SYSTEM STOP MERGES `{db}`.{table}")).execute().await.expect("stop merges");
        }
        // 1. A worker re-sends whole batches after a crash: same tokens.
        let resent: Vec<Batch> = batches.iter().step_by(3).cloned().collect();
        let resent_rows: u64 = resent.iter().map(|b| b.events.len() as u64).sum();
        write_all(&sink, &resent).await;
        let stored = stored_rows(&ch, &events_table).await;
        if dedup {
            assert_eq!(stored, expected.events, "insert_deduplication_token drops re-sent batches");
        } else {
            assert_eq!(stored, expected.events + resent_rows, "18.16 stores them until merged");
        }
        // 2. Duplicates shuffled into new batches (new tokens), e.g. after a rebalance.
        let mut again: Vec<Event> = distinct.iter().filter(|_| rng.chance(30)).cloned().collect();
        rng.shuffle(&mut again);
        let replays: Vec<Batch> = again
            .chunks(50)
            .enumerate()
            .map(|(i, chunk)| Batch {
                topic: "engagement".into(),
                partition: 0,
                events: chunk.to_vec(),
                first_offset: 1_000_000 + i as i64 * 100,
                last_offset: 1_000_000 + i as i64 * 100 + chunk.len() as i64 - 1,
            })
            .collect();
        write_all(&sink, &replays).await;
        let stored_after = stored_rows(&ch, &events_table).await;
        assert_eq!(stored_after, stored + again.len() as u64, "duplicates stored, not yet merged");
        // A naive sum over the rollup's rows counts the duplicates: they did reach it …
        let naive_sql = format!("SELECT countIf(event_type = 'engagement.page_viewed') FROM {by_event}");
        let naive: u64 = ch.client.query(&naive_sql).fetch_one().await.expect("naive sum");
        let page_views: u64 = expected.engagement.iter().map(|r| r.page_views).sum();
        assert!(naive > page_views, "{naive} rows vs {page_views} page views: the duplicates must be stored");
        // … and the analyst queries see through them.
        assert_eq!(observe(&ch, &db).await, expected, "after redelivery");
        println!(
            "{}: {} events in {} batches; re-sent {} batches ({resent_rows} events), {} duplicates in {} new \
             batches; {stored_after} raw rows stored before merging; rollup rows summed naively: {naive} page \
             views for {page_views} real ones",
            ch.capabilities.version,
            expected.events,
            batches.len(),
            resent.len(),
            again.len(),
            replays.len()
        );

        // Merged for good: every duplicate collapses.
        for table in
            ["events", "engagement", "daily_engagement_by_event", "users_current_updates", "users_current_state"]
        {
            ch.client.query(&format!("SYSTEM START MERGES `{db}`.{table}")).execute().await.expect("start merges");
            within("optimize", 120, ch.client.query(&format!("OPTIMIZE TABLE `{db}`.{table} FINAL")).execute())
                .await
                .expect("optimize");
        }
        assert_eq!(stored_rows(&ch, &events_table).await, expected.events);
        assert_eq!(
            stored_rows(&ch, &by_event).await,
            page_views + expected.engagement.iter().map(|r| r.clicks + r.purchases).sum::<u64>()
        );
        let users = expected.users.len() as u64;
        assert_eq!(stored_rows(&ch, &format!("`{db}`.users_current_state")).await, users, "one state row per user");
        assert_eq!(observe(&ch, &db).await, expected, "after merges");

        // Migrating a populated database is still a no-op.
        let third = within("migrate a third time", 60, sink.migrate()).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(third.iter().all(|l| l.action == MigrationAction::UpToDate), "{third:?}");
    })
    .await;
}

async fn drift_is_reported(conn: &ClickHouseConnection) {
    with_database(conn, "sluice_drift", |ch, db| async move {
        let sink = ClickHouseProjection::new(ch.clone(), "default", &projection(&db)).expect("projection");
        within("migrate", 60, sink.migrate()).await.unwrap_or_else(|e| panic!("{e}"));
        for alter in [
            format!("ALTER TABLE `{db}`.events MODIFY COLUMN aggregate_version Int32"),
            format!("ALTER TABLE `{db}`.events DROP COLUMN producer"),
            format!("DROP TABLE `{db}`.daily_engagement"),
            format!("CREATE TABLE `{db}`.daily_engagement (day Date) ENGINE = MergeTree ORDER BY day"),
        ] {
            within("alter", 60, ch.client.query(&alter).execute()).await.unwrap_or_else(|e| panic!("{alter}: {e}"));
        }
        let err = within("migrate", 60, sink.migrate()).await.expect_err("drift");
        let Error::Drift { database, drift } = &err else { panic!("expected drift, got {err}") };
        assert_eq!(database, &db);
        let found: Vec<String> = drift.iter().map(ToString::to_string).collect();
        let producer_type = if sink.layout().low_cardinality { "LowCardinality(String)" } else { "String" };
        assert_eq!(
            found,
            [
                format!("`{db}`.`events`: column `aggregate_version` is Int32, expected Int64"),
                format!("`{db}`.`events` has no column `producer` (expected {producer_type})"),
                format!("`{db}`.`daily_engagement` has engine MergeTree, expected View"),
            ]
        );
        let message = err.to_string();
        assert!(message.contains("aggregate_version") && message.contains("producer"), "{message}");

        // Writing into the drifted table stops the worker with the server's or the client's reason.
        let events = generate(3);
        let batch = batches(events, &mut Rng(1)).remove(0);
        match within("write", 60, sink.write(&batch)).await {
            Err(SinkError::Config(message)) => assert!(message.contains("producer"), "{message}"),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    })
    .await;
}

async fn errors_are_classified(conn: &ClickHouseConnection) {
    with_database(conn, "sluice_err", |ch, db| async move {
        let events = generate(5);
        let mut all = batches(events, &mut Rng(2));
        let mut batch = all.remove(0);
        let next = all.remove(0);

        // Nothing migrated: the table is missing (for longer than the sink waits for a table
        // being swapped), a configuration error.
        let sink = ClickHouseProjection::new(ch.clone(), "default", &projection(&db)).expect("projection");
        match within("write", 60, sink.write(&batch)).await {
            Err(SinkError::Config(message)) => assert!(message.contains(&db), "{message}"),
            other => panic!("expected a configuration error, got {other:?}"),
        }
        // No server at all: transient, the worker retries.
        let gone = ClickHouse {
            client: ch.client.clone().with_url("http://127.0.0.1:9"),
            capabilities: ch.capabilities,
            cluster: None,
            cluster_servers: 0,
        };
        let unreachable = ClickHouseProjection::new(gone, "default", &projection(&db)).expect("projection");
        match within("write", 60, unreachable.write(&batch)).await {
            Err(SinkError::Transient(_)) => {}
            other => panic!("expected a transient error, got {other:?}"),
        }

        // Events no row can hold are refused one by one; the rest of the batch is written.
        within("migrate", 60, sink.migrate()).await.unwrap_or_else(|e| panic!("{e}"));
        batch.events[0].envelope.event_id = "not-a-uuid".into();
        let last = batch.events.len() - 1;
        batch.events[last].envelope.occurred_at = -5;
        let refused = vec![batch.events[0].position.offset, batch.events[last].position.offset];
        let rejected = within("write", 60, sink.write(&batch)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rejected.iter().map(|r| r.offset).collect::<Vec<_>>(), refused);
        assert!(rejected[0].reason.contains("not a UUID"), "{rejected:?}");
        let stored = stored_rows(&ch, &format!("`{db}`.events")).await;
        assert_eq!(stored, batch.events.len() as u64 - 2);

        // A table gone for a moment is waited for, not a configuration error: a rebuild's swap
        // on 18.16 renames the live tables one after the other, and the live worker must not
        // stop when an insert falls between two renames.
        let (live, away) = (format!("`{db}`.events"), format!("`{db}`.events_away"));
        ch.client.query(&format!("RENAME TABLE {live} TO {away}")).execute().await.expect("rename away");
        let back = {
            let (client, sql) = (ch.client.clone(), format!("RENAME TABLE {away} TO {live}"));
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(800)).await;
                client.query(&sql).execute().await.expect("rename back");
            })
        };
        let rejected = within("write", 60, sink.write(&next)).await.unwrap_or_else(|e| panic!("{e}"));
        back.await.expect("rename back");
        assert_eq!(rejected, []);
        assert_eq!(stored_rows(&ch, &live).await, stored + next.events.len() as u64);
    })
    .await;
}

fn modern() -> ClickHouseConnection {
    connections().clickhouse
}

fn compat() -> ClickHouseConnection {
    connections().clickhouse_compat.expect("SLUICE_CLICKHOUSE_COMPAT_URL is not set: start the rig with dev/up")
}

#[tokio::test]
async fn modern_exact_under_redelivery() {
    exact_under_redelivery(&modern()).await;
}

#[tokio::test]
async fn compat_exact_under_redelivery() {
    exact_under_redelivery(&compat()).await;
}

/// Uncompressed insert bodies (`SLUICE_CLICKHOUSE_COMPRESSION=none`) hold the same rows.
#[tokio::test]
async fn modern_exact_under_redelivery_uncompressed() {
    exact_under_redelivery(&ClickHouseConnection { compression: ClickHouseCompression::None, ..modern() }).await;
}

#[tokio::test]
async fn compat_exact_under_redelivery_uncompressed() {
    exact_under_redelivery(&ClickHouseConnection { compression: ClickHouseCompression::None, ..compat() }).await;
}

#[tokio::test]
async fn modern_drift_is_reported() {
    drift_is_reported(&modern()).await;
}

#[tokio::test]
async fn compat_drift_is_reported() {
    drift_is_reported(&compat()).await;
}

#[tokio::test]
async fn modern_errors_are_classified() {
    errors_are_classified(&modern()).await;
}

#[tokio::test]
async fn compat_errors_are_classified() {
    errors_are_classified(&compat()).await;
}
