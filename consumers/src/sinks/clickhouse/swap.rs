//! The statements of a blue/green swap of a ClickHouse projection, and of removing a version
//! (pure, so every server's variant is unit-tested).
//!
//! Input: the [`Plan`] of the live names and of a suffixed version (from
//! [`super::schema::plan_named`]), and the [`SwapStrategy`] the server allows. Output: SQL that
//! `sluice_consumers::rebuild` runs in order.
//!
//! # How readers and writers follow the swap
//!
//! Only the *tables* move. Analysts read the tables (`events`, declared tables) and the views of
//! rollups and state tables; the worker inserts into the tables and `<state>_updates`; all of them
//! name the tables, so once the new version's tables carry the live names, every reader and the running
//! live worker use them — nothing restarts. The tables move in **one statement**: `EXCHANGE
//! TABLES a AND a__v2, …` where the database is `Atomic` (each pair is swapped atomically; no
//! moment without an `events` table), else `RENAME TABLE a TO a__v1, a__v2 TO a, …` (18.16: the
//! server renames them one after the other under its DDL lock).
//!
//! Plain views resolve their tables by name at query time, so the live views need nothing. The
//! materialized views do: servers bind them to their source and target differently (18.16 by
//! name, Atomic databases partly by UUID — a renamed source keeps feeding its old view), so the
//! swap drops the materialized views of both versions and creates the live ones again from the
//! plan. An insert into the live tables between the exchange and the re-creation may miss a
//! rollup row: the rebuild's catch-up pass after the swap re-inserts every record up to the high
//! watermarks read *after* the re-creation, so nothing stays missing (duplicates collapse, see
//! [`super::schema`]).
//!
//! # On a cluster
//!
//! What moves are the replicated local tables, on every server (`… ON CLUSTER`). The
//! `Distributed` tables stay where they are: they name their local tables, so the live ones read
//! the new version's data as soon as it carries the live local names. The new version's
//! `Distributed` tables would now name local tables that are gone: they are dropped, and the old
//! version gets its own over its renamed local tables.

use super::schema::{Object, ObjectKind, Plan, qualified};

/// How tables change names on this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapStrategy {
    /// `EXCHANGE TABLES … AND …` (Atomic databases, 20.x+): atomic per pair.
    Exchange,
    /// One `RENAME TABLE` statement of every move (Ordinary databases, older servers).
    Rename,
}

impl SwapStrategy {
    /// The strategy for a database of engine `engine` (`system.databases.engine`) on a server that
    /// does (`exchange`) or does not support `EXCHANGE TABLES`.
    pub fn of(exchange: bool, engine: &str) -> Self {
        if exchange && engine == "Atomic" { Self::Exchange } else { Self::Rename }
    }
}

/// The objects of a plan of one kind, in plan order.
fn of_kind(plan: &Plan, kind: ObjectKind) -> impl Iterator<Item = &Object> {
    plan.objects.iter().filter(move |o| o.kind == kind)
}

/// The tables of a plan (on a cluster: the local tables), in plan order.
fn tables(plan: &Plan) -> impl Iterator<Item = &str> {
    of_kind(plan, ObjectKind::Table).map(|o| o.name.as_str())
}

/// `DROP TABLE IF EXISTS` of `object` of `plan` (on every server of its cluster).
fn drop(plan: &Plan, object: &Object) -> String {
    format!("DROP TABLE IF EXISTS {}{}", qualified(&plan.database, &object.name), plan.on_cluster())
}

/// The swap: `live` holds the live names, `new` the version to swap in, `old` the names the live
/// version gets (its generation's suffix). All three are plans of the same config.
pub fn swap(live: &Plan, new: &Plan, old: &Plan, strategy: SwapStrategy) -> Vec<String> {
    let db = &live.database;
    let on = live.on_cluster();
    let moves: Vec<(&str, &str, &str)> =
        tables(live).zip(tables(new)).zip(tables(old)).map(|((l, n), o)| (l, n, o)).collect();
    let mut sql = Vec::new();
    match strategy {
        SwapStrategy::Exchange => {
            let pairs: Vec<String> =
                moves.iter().map(|(l, n, _)| format!("{} AND {}", qualified(db, l), qualified(db, n))).collect();
            sql.push(format!("EXCHANGE TABLES {}{on}", pairs.join(", ")));
            // The old version's data now sits under the new version's names: give it its own.
            let renames: Vec<String> =
                moves.iter().map(|(_, n, o)| format!("{} TO {}", qualified(db, n), qualified(db, o))).collect();
            sql.push(format!("RENAME TABLE {}{on}", renames.join(", ")));
        }
        SwapStrategy::Rename => {
            let renames: Vec<String> = moves
                .iter()
                .flat_map(|(l, n, o)| {
                    [
                        format!("{} TO {}", qualified(db, l), qualified(db, o)),
                        format!("{} TO {}", qualified(db, n), qualified(db, l)),
                    ]
                })
                .collect();
            sql.push(format!("RENAME TABLE {}{on}", renames.join(", ")));
        }
    }
    // On a cluster: the new version's distributed tables name local tables that moved away; the
    // old version's data gets distributed tables of its own.
    sql.extend(of_kind(new, ObjectKind::Distributed).map(|o| drop(new, o)));
    sql.extend(of_kind(old, ObjectKind::Distributed).map(|o| o.create.clone()));
    // Materialized views of both versions go; the live ones are made again over the live names.
    for plan in [live, new] {
        sql.extend(of_kind(plan, ObjectKind::MaterializedView).map(|o| drop(plan, o)));
    }
    sql.extend(of_kind(live, ObjectKind::MaterializedView).map(|o| o.create.clone()));
    // The new version's own views would now read the old data: they go too (the live views read
    // the live names).
    sql.extend(of_kind(new, ObjectKind::View).map(|o| drop(new, o)));
    sql
}

/// Drops every object of `version` (a suffixed plan), dependents first: `--abort` (the partial
/// new version) and `--drop-old` (the old one after a swap). `IF EXISTS` throughout, so running it
/// again after an interruption finishes the job.
pub fn drop_version(version: &Plan) -> Vec<String> {
    version.objects.iter().rev().map(|o| drop(version, o)).collect()
}

#[cfg(test)]
mod tests {
    use super::super::capabilities::{Capabilities, Version};
    use super::super::schema::{Layout, Names, plan_named};
    use super::*;

    fn plans(major: u32) -> (Plan, Plan, Plan) {
        let sink = super::super::declared::tests::repository_sink();
        let layout = Layout::of(&Capabilities::of(Version { major, minor: 1, patch: 0 }));
        let plan = |suffix| plan_named("db", &sink, layout, &Names::versioned(&sink, suffix)).expect("plan");
        (plan(""), plan("__v2"), plan("__v1"))
    }

    #[test]
    fn strategy_follows_the_database_engine() {
        assert_eq!(SwapStrategy::of(true, "Atomic"), SwapStrategy::Exchange);
        assert_eq!(SwapStrategy::of(true, "Ordinary"), SwapStrategy::Rename);
        assert_eq!(SwapStrategy::of(false, "Atomic"), SwapStrategy::Rename);
    }

    #[test]
    fn exchange_moves_the_tables_in_one_statement_then_remakes_the_materialized_views() {
        let (live, new, old) = plans(26);
        let sql = swap(&live, &new, &old, SwapStrategy::Exchange);
        assert_eq!(
            sql[0],
            "EXCHANGE TABLES `db`.`events` AND `db`.`events__v2`, \
             `db`.`engagement` AND `db`.`engagement__v2`, \
             `db`.`daily_engagement_by_event` AND `db`.`daily_engagement_by_event__v2`, \
             `db`.`users_current_updates` AND `db`.`users_current_updates__v2`, \
             `db`.`users_current_state` AND `db`.`users_current_state__v2`"
        );
        assert_eq!(
            sql[1],
            "RENAME TABLE `db`.`events__v2` TO `db`.`events__v1`, \
             `db`.`engagement__v2` TO `db`.`engagement__v1`, \
             `db`.`daily_engagement_by_event__v2` TO `db`.`daily_engagement_by_event__v1`, \
             `db`.`users_current_updates__v2` TO `db`.`users_current_updates__v1`, \
             `db`.`users_current_state__v2` TO `db`.`users_current_state__v1`"
        );
        assert_eq!(
            sql[2..6],
            [
                "DROP TABLE IF EXISTS `db`.`daily_engagement_mv`",
                "DROP TABLE IF EXISTS `db`.`users_current_mv`",
                "DROP TABLE IF EXISTS `db`.`daily_engagement_mv__v2`",
                "DROP TABLE IF EXISTS `db`.`users_current_mv__v2`",
            ]
        );
        assert!(sql[6].starts_with(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS `db`.`daily_engagement_mv` TO `db`.`daily_engagement_by_event`"
        ));
        assert!(sql[6].contains("FROM `db`.`engagement`"), "{}", sql[6]);
        assert!(sql[7].starts_with("CREATE MATERIALIZED VIEW IF NOT EXISTS `db`.`users_current_mv`"));
        assert_eq!(
            sql[8..],
            ["DROP TABLE IF EXISTS `db`.`daily_engagement__v2`", "DROP TABLE IF EXISTS `db`.`users_current__v2`"]
        );
    }

    #[test]
    fn rename_moves_each_table_aside_then_the_new_one_in() {
        let (live, new, old) = plans(18);
        let sql = swap(&live, &new, &old, SwapStrategy::Rename);
        assert!(
            sql[0].starts_with(
                "RENAME TABLE `db`.`events` TO `db`.`events__v1`, `db`.`events__v2` TO `db`.`events`, \
             `db`.`engagement` TO `db`.`engagement__v1`, `db`.`engagement__v2` TO `db`.`engagement`, "
            ),
            "{}",
            sql[0]
        );
        assert_eq!(sql.iter().filter(|s| s.starts_with("RENAME") || s.starts_with("EXCHANGE")).count(), 1);
        assert_eq!(sql.len(), 1 + 4 + 2 + 2);
    }

    #[test]
    fn on_a_cluster_the_local_tables_move_on_every_server_and_each_version_keeps_distributed_tables() {
        let (live, new, old) = plans(18);
        let on = |p: Plan| super::super::schema::on_cluster(p, "c1");
        let (live, new, old) = (on(live), on(new), on(old));
        let sql = swap(&live, &new, &old, SwapStrategy::Rename);
        assert!(
            sql[0].starts_with(
                "RENAME TABLE `db`.`events_local` TO `db`.`events__v1_local`, \
                 `db`.`events__v2_local` TO `db`.`events_local`, "
            ),
            "{}",
            sql[0]
        );
        assert!(
            sql[0]
                .ends_with("`db`.`users_current_state__v2_local` TO `db`.`users_current_state_local` ON CLUSTER `c1`")
        );
        // The distributed tables are not renamed: the live ones name the live local tables.
        assert!(!sql[0].contains("`db`.`events` "), "{}", sql[0]);
        let distributed = 5;
        assert_eq!(sql[1], "DROP TABLE IF EXISTS `db`.`events__v2` ON CLUSTER `c1`");
        assert!(
            sql[1 + distributed].starts_with(
                "CREATE TABLE IF NOT EXISTS `db`.`events__v1` ON CLUSTER `c1` AS `db`.`events__v1_local`\n\
             ENGINE = Distributed('c1', 'db', 'events__v1_local', cityHash64(aggregate_id))"
            ),
            "{}",
            sql[1 + distributed]
        );
        let rest = &sql[1 + 2 * distributed..];
        assert_eq!(rest[0], "DROP TABLE IF EXISTS `db`.`daily_engagement_mv` ON CLUSTER `c1`");
        assert!(rest[4].contains("TO `db`.`daily_engagement_by_event_local`"), "{}", rest[4]);
        assert!(rest.iter().all(|s| s.contains(" ON CLUSTER `c1`")));
        assert_eq!(rest.len(), 4 + 2 + 2);
    }

    #[test]
    fn dropping_a_version_removes_dependents_first_and_never_the_live_names() {
        let (live, new, _) = plans(26);
        let sql = drop_version(&new);
        assert_eq!(sql.first().map(String::as_str), Some("DROP TABLE IF EXISTS `db`.`users_current__v2`"));
        assert_eq!(sql.last().map(String::as_str), Some("DROP TABLE IF EXISTS `db`.`events__v2`"));
        assert_eq!(sql.len(), new.objects.len());
        for o in &live.objects {
            let live_name = format!("`db`.`{}`", o.name);
            assert!(!sql.iter().any(|s| s.ends_with(&live_name)), "{live_name} must never be dropped");
        }
    }
}
