//! What analysts read from the sample domain's ClickHouse projection, compared with the model of
//! the events published: shared by the single-server and the cluster tests.

use clickhouse::Client;
use sluice_consumers::sinks::clickhouse::ClickHouse;
use sluice_core::connections::ClickHouseConnection;
use sluice_tests::domain::Model;

/// A client of `conn`'s database, set up for its server as the sink's is (version, cluster).
pub async fn client(conn: &ClickHouseConnection) -> Client {
    let ch = ClickHouse::connect(conn).await.unwrap_or_else(|e| panic!("ClickHouse at {}: {e}", conn.url));
    ch.client.clone().with_database(&conn.database)
}

fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// The raw table (read `FINAL`), the `daily_engagement` rollup and the `users_current` state of
/// the projection of suffix `sfx` equal `model`: every event once, whatever was re-delivered.
/// The events table of the sample domain holds each event of the model once, whatever was
/// re-delivered.
pub async fn assert_every_event_once(client: &Client, sfx: &str, model: &Model) {
    let by_type: Vec<(String, u64)> = client
        .query(&format!(
            "SELECT event_type, toUInt64(count()) FROM events_{sfx} FINAL GROUP BY event_type ORDER BY event_type"
        ))
        .fetch_all()
        .await
        .expect("events by type");
    let expected: Vec<(String, u64)> = model.by_type.iter().map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(by_type, expected, "every event once, whatever was re-delivered");
}

pub async fn assert_analysts_see_the_model(client: &Client, sfx: &str, model: &Model) {
    assert_every_event_once(client, sfx, model).await;

    let daily: Vec<(i64, String, u64, u64, u64, i64)> = client
        .query(
            "SELECT toInt64(toUInt32(day)), user_id, toUInt64(page_views), toUInt64(clicks), toUInt64(purchases), \
             toInt64(revenue_cents) FROM daily_engagement ORDER BY day, user_id",
        )
        .fetch_all()
        .await
        .expect("daily engagement");
    let expected: Vec<(i64, String, u64, u64, u64, i64)> =
        model.daily.iter().map(|((d, u), (pv, c, p, r))| (day_of(*d), u.clone(), *pv, *c, *p, *r)).collect();
    assert_eq!(daily, expected, "the rollup counts each event once");

    let users: Vec<(String, String, u8)> = client
        .query(&format!("SELECT user_id, email, toUInt8(is_deleted) FROM users_current_{sfx} ORDER BY user_id"))
        .fetch_all()
        .await
        .expect("users_current");
    let mut expected: Vec<(String, String, u8)> = model
        .users
        .iter()
        .map(|(u, d)| (u.clone(), d["email"].as_str().unwrap_or_default().to_owned(), 0))
        .chain(model.erased.iter().map(|u| (u.clone(), String::new(), 1)))
        .collect();
    expected.sort();
    assert_eq!(users, expected, "the latest e-mail of each user; erased users flagged and blanked");
}
