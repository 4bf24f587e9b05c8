//! Smoke test of both ClickHouse targets through the `clickhouse` crate: a ReplacingMergeTree
//! collapses duplicate rows, and `SELECT … FINAL` shows the deduplicated state.

use clickhouse::sql::Identifier;
use serde::{Deserialize, Serialize};
use sluice_consumers::sinks::clickhouse::ClickHouse;
use sluice_core::connections::ClickHouseConnection;
use sluice_tests::{connections, unique, within};

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
struct Row {
    id: u64,
    version: u64,
    name: String,
}

async fn replacing_merge_tree_collapses_duplicates(conn: &ClickHouseConnection) {
    let ch = within("connect", 30, ClickHouse::connect(conn)).await.unwrap_or_else(|e| panic!("{e}"));
    let client = &ch.client;
    let table = unique("smoke_rmt");
    within(
        "create table",
        30,
        client
            .query(
                "CREATE TABLE ? (id UInt64, version UInt64, name String) \
                 ENGINE = ReplacingMergeTree(version) ORDER BY id",
            )
            .bind(Identifier(&table))
            .execute(),
    )
    .await
    .expect("create table");

    // Two inserts (two parts), each with duplicates of ids, older and newer versions interleaved.
    let batches = [
        vec![(1, 1, "a1"), (2, 1, "b1"), (1, 3, "a3"), (3, 1, "c1")],
        vec![(1, 2, "a2"), (2, 2, "b2"), (2, 2, "b2"), (3, 1, "c1")],
    ];
    for batch in &batches {
        let mut insert = client.insert::<Row>(&table).await.expect("insert");
        for &(id, version, name) in batch {
            insert.write(&Row { id, version, name: name.into() }).await.expect("write row");
        }
        within("insert", 30, insert.end()).await.expect("end insert");
    }

    // Without FINAL the count depends on when parts merge (and on `optimize_on_insert`, which new
    // servers apply within one insert), so only its bounds are certain.
    let all: u64 = client.query("SELECT count() FROM ?").bind(Identifier(&table)).fetch_one().await.expect("count");
    assert!((3..=8).contains(&all), "stored rows: {all}");
    let latest = within(
        "select final",
        30,
        client.query("SELECT ?fields FROM ? FINAL ORDER BY id").bind(Identifier(&table)).fetch_all::<Row>(),
    )
    .await
    .expect("select final");
    let expected = vec![
        Row { id: 1, version: 3, name: "a3".into() },
        Row { id: 2, version: 2, name: "b2".into() },
        Row { id: 3, version: 1, name: "c1".into() },
    ];
    assert_eq!(latest, expected, "FINAL keeps the highest version of each id");

    client.query("DROP TABLE ?").bind(Identifier(&table)).execute().await.expect("drop table");
}

#[tokio::test]
async fn modern_engine() {
    let conn = connections().clickhouse;
    replacing_merge_tree_collapses_duplicates(&conn).await;
    let ch = ClickHouse::connect(&conn).await.expect("connect");
    assert!(ch.capabilities.row_binary_with_names_and_types, "{:?}", ch.capabilities);
    assert!(ch.capabilities.insert_deduplication_token, "{:?}", ch.capabilities);
}

#[tokio::test]
async fn compatibility_server() {
    let conn = connections()
        .clickhouse_compat
        .expect("SLUICE_CLICKHOUSE_COMPAT_URL is not set: start the rig with dev/up");
    replacing_merge_tree_collapses_duplicates(&conn).await;
    let ch = ClickHouse::connect(&conn).await.expect("connect");
    assert_eq!(ch.capabilities.version.major, 18, "the compatibility target is ClickHouse 18.16");
    assert!(!ch.capabilities.row_binary_with_names_and_types, "validation must be off for 18.16");
    assert!(!ch.capabilities.insert_deduplication_token);
}
