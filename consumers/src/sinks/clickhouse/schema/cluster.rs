//! A plan on a cluster (pure): the objects of a single-server [`Plan`] placed on the shards and
//! replicas of a ClickHouse cluster, every statement run `ON CLUSTER`.
//!
//! Input: the plan and the cluster's name (`SLUICE_CLICKHOUSE_CLUSTER`: an entry of every
//! server's `<remote_servers>`, with `internal_replication` on). Output: the placed plan.
//!
//! - **Tables.** A table `t` becomes `t_local` on every server — `Replicated<Engine>` at
//!   `/clickhouse/tables/{shard}/<db>/t_local` with replica `{replica}` (the servers' macros), same
//!   columns, key and partitions — and `t`, a `Distributed` table over the `t_local` of every shard.
//!   Analysts and the worker keep the names they always used; the local tables are storage.
//! - **Where rows go.** A table with `aggregate_id` is sharded by `cityHash64(aggregate_id)`: all
//!   events of one aggregate land on one shard, and a re-delivery on the same one, so `FINAL`
//!   (which collapses duplicates within a shard) and the state tables (one entity's versions folded
//!   together) stay exact. Tables filled by a materialized view (a state's `_state`, a rollup's
//!   `_by_event`) get no sharding key: nothing inserts into them through the `Distributed` table,
//!   their rows stay on the shard of the rows they come from.
//! - **Materialized views** read and write the local tables. A view fires on the replica that
//!   received the insert; the other replicas fetch its output as parts, and fetching a part fires
//!   no view, so nothing is counted twice.
//! - **Views** read the `Distributed` tables, so each shows the whole cluster: a rollup's view
//!   aggregates the per-event rows of every shard (its `FINAL` runs on each shard, where all copies
//!   of an event are), a state view merges each entity's states (one shard holds them all).
//!
//! Writes (see `service`): the worker inserts into the `Distributed` tables with
//! `insert_distributed_sync = 1`, so an insert is acknowledged once a replica of every shard it
//! touches has its rows (not queued on the entry server's disk). A re-sent batch is split across
//! the shards the same way, so the replicated tables' block deduplication drops it; what it does
//! not drop (a batch cut differently after a restart) `FINAL` collapses.

use super::ddl::{create_table, literal, qualified};
use super::objects::{Object, ObjectKind, Plan, Spec, create_materialized_view, create_view};

/// The name of the replicated table on each server behind the `Distributed` table `name`.
pub fn local_name(name: &str) -> String {
    format!("{name}_local")
}

/// Where a local table's replicas meet in ZooKeeper: one path per shard (`{shard}` is each
/// server's macro), named after the database and the table at creation. A rename keeps the path,
/// and a generation's tables are created under their own names, so paths never collide.
fn zookeeper_path(database: &str, local: &str) -> String {
    format!("/clickhouse/tables/{{shard}}/{database}/{local}")
}

/// `plan` placed on cluster `cluster`.
pub fn on_cluster(mut plan: Plan, cluster: &str) -> Plan {
    let objects = std::mem::take(&mut plan.objects);
    let database = plan.database.clone();
    let tables: Vec<String> = objects.iter().filter(|o| o.kind == ObjectKind::Table).map(|o| o.name.clone()).collect();
    let local = |name: &str| if tables.iter().any(|t| t == name) { local_name(name) } else { name.to_owned() };
    let mut placed = Plan { objects: Vec::with_capacity(objects.len() * 2), cluster: Some(cluster.to_owned()), ..plan };
    let on = placed.on_cluster();
    let db = database.as_str();
    for object in objects {
        match object.spec.clone() {
            Spec::Table { clause } => {
                let local = local_name(&object.name);
                // The server-wide window of replicated tables (the non-replicated one does not
                // apply to them): the same number of recent blocks remembered.
                let clause = clause.replace("non_replicated_deduplication_window", "replicated_deduplication_window");
                let engine = format!("Replicated{}", object.engine);
                let engine_clause =
                    format!("ENGINE = {engine}({}, '{{replica}}'){clause}", literal(&zookeeper_path(db, &local)));
                let sharding = if object.columns.iter().any(|c| c.name == "aggregate_id") {
                    ", cityHash64(aggregate_id)"
                } else {
                    ""
                };
                let distributed = Object {
                    kind: ObjectKind::Distributed,
                    engine: "Distributed".to_owned(),
                    create: format!(
                        "CREATE TABLE IF NOT EXISTS {}{on} AS {}\nENGINE = Distributed({}, {}, {}{sharding})",
                        qualified(db, &object.name),
                        qualified(db, &local),
                        literal(cluster),
                        literal(db),
                        literal(&local)
                    ),
                    spec: Spec::Distributed { local: local.clone() },
                    ..object.clone()
                };
                placed.objects.push(Object {
                    create: create_table(db, &local, &on, &object.columns, &engine_clause),
                    name: local,
                    engine,
                    spec: Spec::Table { clause },
                    ..object
                });
                placed.objects.push(distributed);
            }
            Spec::MaterializedView { target, select, source, rest } => {
                let (target, source) = (local(&target), local(&source));
                let create = create_materialized_view(db, &object.name, &on, &target, &select, &source, &rest);
                placed.objects.push(Object {
                    create,
                    spec: Spec::MaterializedView { target, select, source, rest },
                    ..object
                });
            }
            Spec::View { query } => {
                placed.objects.push(Object { create: create_view(db, &object.name, &on, &query), ..object });
            }
            Spec::Distributed { .. } => placed.objects.push(object),
        }
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::super::tests::{described, layout, sink};
    use super::super::{ColumnKind, DescribedColumn, additions, check, plan};
    use super::*;

    fn placed(major: u32) -> Plan {
        on_cluster(plan("db", &sink(), layout(major)).expect("plan"), "c1")
    }

    fn object<'a>(plan: &'a Plan, name: &str) -> &'a Object {
        plan.objects.iter().find(|o| o.name == name).unwrap_or_else(|| panic!("no object {name}"))
    }

    #[test]
    fn every_table_becomes_replicated_local_tables_behind_a_distributed_one() {
        let single = plan("db", &sink(), layout(18)).expect("plan");
        let placed = placed(18);
        let tables: Vec<&Object> = single.objects.iter().filter(|o| o.kind == ObjectKind::Table).collect();
        assert_eq!(placed.objects.len(), single.objects.len() + tables.len());
        for table in tables {
            let local = object(&placed, &local_name(&table.name));
            assert_eq!(local.kind, ObjectKind::Table);
            assert_eq!(local.engine, format!("Replicated{}", table.engine));
            assert_eq!(local.columns, table.columns);
            let path = format!("'/clickhouse/tables/{{shard}}/db/{}_local', '{{replica}}')", table.name);
            assert!(local.create.contains(&path), "{}", local.create);
            assert!(
                local
                    .create
                    .starts_with(&format!("CREATE TABLE IF NOT EXISTS `db`.`{}_local` ON CLUSTER `c1` (", table.name))
            );
            // Same key, partitions and settings as on one server.
            let Spec::Table { clause } = &table.spec else { panic!("a table") };
            assert!(local.create.ends_with(clause.as_str()), "{}", local.create);

            let distributed = object(&placed, &table.name);
            assert_eq!((distributed.kind, distributed.engine.as_str()), (ObjectKind::Distributed, "Distributed"));
            assert_eq!(distributed.columns, table.columns);
            assert_eq!(distributed.evolves, table.evolves);
            let position = |name: &str| placed.objects.iter().position(|o| o.name == name);
            assert!(position(&local.name) < position(&distributed.name), "local table first");
        }
    }

    #[test]
    fn rows_of_one_aggregate_stay_on_one_shard() {
        let placed = placed(26);
        for name in ["events", "engagement", "users_current_updates"] {
            let create = &object(&placed, name).create;
            assert!(
                create
                    .ends_with(&format!("ENGINE = Distributed('c1', 'db', '{name}_local', cityHash64(aggregate_id))")),
                "{create}"
            );
        }
        // Filled by materialized views on the shard of their source rows: never inserted into.
        for name in ["users_current_state", "daily_engagement_by_event"] {
            let create = &object(&placed, name).create;
            assert!(create.ends_with(&format!("ENGINE = Distributed('c1', 'db', '{name}_local')")), "{create}");
        }
    }

    #[test]
    fn materialized_views_read_and_write_local_tables_and_views_read_the_whole_cluster() {
        let placed = placed(26);
        let mv = &object(&placed, "daily_engagement_mv").create;
        assert!(mv.starts_with(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS `db`.`daily_engagement_mv` ON CLUSTER `c1` TO `db`.`daily_engagement_by_event_local` AS"
        ), "{mv}");
        assert!(mv.contains("FROM `db`.`engagement_local`"), "{mv}");
        let mv = &object(&placed, "users_current_mv").create;
        assert!(
            mv.contains("TO `db`.`users_current_state_local`")
                && mv.contains("FROM `db`.`users_current_updates_local`"),
            "{mv}"
        );
        let view = &object(&placed, "daily_engagement").create;
        assert!(view.starts_with("CREATE VIEW IF NOT EXISTS `db`.`daily_engagement` ON CLUSTER `c1` AS"), "{view}");
        assert!(view.contains("FROM `db`.`daily_engagement_by_event` FINAL"), "{view}");
        assert!(object(&placed, "users_current").create.contains("FROM `db`.`users_current_state`\n"));
        assert!(placed.objects.iter().all(|o| o.create.contains(" ON CLUSTER `c1`")));
    }

    #[test]
    fn replicated_tables_remember_the_same_blocks_as_single_ones() {
        let placed = placed(26);
        let local = &object(&placed, "events_local").create;
        assert!(local.contains("SETTINGS replicated_deduplication_window = 1000"), "{local}");
        assert!(!local.contains("non_replicated"), "{local}");
    }

    #[test]
    fn a_faithful_cluster_has_no_drift_and_columns_are_added_on_every_server() {
        let placed = placed(26);
        let (engines, columns) = described(&placed);
        assert_eq!(check(&placed, &engines, &columns), []);
        let without: Vec<DescribedColumn> =
            columns.into_iter().filter(|c| !(c.table.starts_with("engagement") && c.name == "amount_cents")).collect();
        let sql: Vec<String> = additions(&placed, &without).into_iter().map(|(_, _, sql)| sql).collect();
        assert_eq!(
            sql,
            [
                "ALTER TABLE `db`.`engagement_local` ON CLUSTER `c1` ADD COLUMN `amount_cents` Nullable(Int64)",
                "ALTER TABLE `db`.`engagement` ON CLUSTER `c1` ADD COLUMN `amount_cents` Nullable(Int64)",
            ]
        );
        let kinds: Vec<ColumnKind> = object(&placed, "events").columns.iter().map(|c| c.kind).collect();
        assert!(kinds.contains(&ColumnKind::Alias), "the distributed table has the local table's aliases");
    }
}
