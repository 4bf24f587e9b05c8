//! Tests of the plan: the objects and DDL per server version, and drift found and explained.

use std::collections::BTreeMap;

use sluice_core::topology::ClickHouseSink;

use super::drift::normalized;
use super::*;
use crate::sinks::clickhouse::capabilities::Capabilities;
use crate::sinks::clickhouse::capabilities::Version;
use proptest::prelude::*;

/// The analytics projection of the repository's topology: a raw table, a declared table, a
/// rollup of it and a state table.
pub(super) fn sink() -> ClickHouseSink {
    crate::sinks::clickhouse::declared::tests::repository_sink()
}

pub(super) fn layout(major: u32) -> Layout {
    Layout::of(&Capabilities::of(Version { major, minor: 9, patch: 1 }))
}

/// What a server that ran the plan would report.
pub(super) fn described(plan: &Plan) -> (BTreeMap<String, String>, Vec<DescribedColumn>) {
    let engines = plan.objects.iter().map(|o| (o.name.clone(), o.engine.to_owned())).collect();
    let columns = plan
        .objects
        .iter()
        .flat_map(|o| {
            o.columns.iter().map(move |c| DescribedColumn {
                table: o.name.clone(),
                name: c.name.clone(),
                ty: c.ty.clone(),
                default_kind: match c.kind {
                    ColumnKind::Stored => String::new(),
                    ColumnKind::Default => "DEFAULT".into(),
                    ColumnKind::Alias => "ALIAS".into(),
                },
            })
        })
        .collect();
    (engines, columns)
}

#[test]
fn plans_every_object_in_dependency_order() {
    let plan = plan("analytics", &sink(), layout(26)).expect("plan");
    let names: Vec<&str> = plan.objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "events",
            "engagement",
            "daily_engagement_by_event",
            "daily_engagement_mv",
            "daily_engagement",
            "users_current_updates",
            "users_current_state",
            "users_current_mv",
            "users_current"
        ]
    );
    assert!(plan.objects.iter().all(|o| o.create.contains("IF NOT EXISTS")));
    let minimal = ClickHouseSink::new("events");
    assert_eq!(super::plan("db", &minimal, layout(26)).expect("plan").objects.len(), 1);
    let mut unknown = sink();
    if let Some(r) = unknown.rollups.get_mut("daily_engagement") {
        r.from = "nowhere".into();
    }
    assert_eq!(
        super::plan("db", &unknown, layout(26)),
        Err(PlanError::UnknownTable { rollup: "daily_engagement".into(), table: "nowhere".into() })
    );
}

#[test]
fn a_version_suffixes_every_object_and_its_references() {
    let names = Names::versioned(&sink(), "__v2");
    let plan = plan_named("a", &sink(), layout(26), &names).expect("plan");
    let got: Vec<&str> = plan.objects.iter().map(|o| o.name.as_str()).collect();
    assert!(got.iter().all(|n| n.ends_with("__v2")), "{got:?}");
    let mv = &plan.objects[3].create;
    assert!(mv.contains("TO `a`.`daily_engagement_by_event__v2`") && mv.contains("FROM `a`.`engagement__v2`"), "{mv}");
    let state_mv = &plan.objects[7].create;
    assert!(state_mv.contains("FROM `a`.`users_current_updates__v2`"), "{state_mv}");
    // The live version's plan is the plain one.
    assert_eq!(plan_named("a", &sink(), layout(26), &Names::of(&sink())), super::plan("a", &sink(), layout(26)));
}

#[test]
fn a_rollup_counts_each_event_once_on_every_server() {
    for major in [18, 26] {
        let plan = plan("a", &sink(), layout(major)).expect("plan");
        let by_event = &plan.objects[2];
        assert!(by_event.create.contains("ORDER BY (`day`, event_id)"), "{}", by_event.create);
        let mv = &plan.objects[3].create;
        assert!(
            mv.starts_with(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS `a`.`daily_engagement_mv` TO `a`.`daily_engagement_by_event`"
            ),
            "{mv}"
        );
        assert!(
            mv.contains("SELECT toDate(`occurred_at`) AS `day`, event_id, `user_id`, `event_type`, `amount_cents`"),
            "{mv}"
        );
        let view = &plan.objects[4].create;
        assert!(view.contains("FROM `a`.`daily_engagement_by_event` FINAL"), "{view}");
        assert!(view.contains("countIf(event_type IN ('engagement.clicked')) AS `clicks`"), "{view}");
        // `amount_cents` is NULL in page views and clicks: their revenue is 0, not NULL.
        assert!(view.contains("sum(assumeNotNull(`amount_cents`)) AS `revenue_cents`"), "{view}");
    }
}

#[test]
fn a_state_table_folds_the_newest_value_of_each_column() {
    let plan = plan("a", &sink(), layout(26)).expect("plan");
    let updates = &plan.objects[5];
    let columns: Vec<(&str, &str)> = updates.columns.iter().map(|c| (c.name.as_str(), c.ty.as_str())).collect();
    assert!(
        columns.ends_with(&[
            ("erases", "UInt8"),
            ("is_deleted", "Nullable(UInt8)"),
            ("country", "Nullable(String)"),
            ("display_name", "Nullable(String)"),
            ("email", "Nullable(String)"),
        ]),
        "{columns:?}"
    );
    let mv = &plan.objects[7].create;
    assert!(mv.contains("aggregate_id AS `user_id`"), "{mv}");
    assert!(
        mv.contains(
            "argMaxIfState(assumeNotNull(`email`), aggregate_version, isNotNull(`email`) OR erases = 1) AS `email`"
        ),
        "{mv}"
    );
    let view = &plan.objects[8];
    let columns: Vec<(&str, &str)> = view.columns.iter().map(|c| (c.name.as_str(), c.ty.as_str())).collect();
    assert_eq!(
        columns,
        [
            ("user_id", "String"),
            ("aggregate_version", "Int64"),
            ("country", "String"),
            ("display_name", "String"),
            ("email", "String"),
            ("is_deleted", "UInt8"),
            ("updated_at", "DateTime64(3, 'UTC')")
        ]
    );
}

#[test]
fn modern_and_old_layouts() {
    let modern = plan("a", &sink(), layout(26)).expect("plan");
    let events = &modern.objects[0].create;
    assert!(events.contains("`occurred_at` DateTime64(3, 'UTC')"), "{events}");
    assert!(events.contains("`occurred_at_ms` Int64 ALIAS toUnixTimestamp64Milli(occurred_at)"), "{events}");
    assert!(events.contains("`event_type` LowCardinality(String)"), "{events}");
    assert!(events.contains("SETTINGS non_replicated_deduplication_window = 1000"), "{events}");
    assert!(events.contains("ORDER BY (event_type, toDate(occurred_at), aggregate_id, event_id)"), "{events}");

    let old = plan("a", &sink(), layout(18)).expect("plan");
    let events = &old.objects[0].create;
    assert!(events.contains("`occurred_at` DateTime('UTC')"), "{events}");
    assert!(events.contains("`occurred_at_ms` Int64,"), "{events}");
    assert!(events.contains("`event_type` String"), "{events}");
    assert!(!old.objects.iter().any(|o| o.create.contains("SETTINGS")), "18.16 has no deduplication window");
    assert!(!old.objects.iter().any(|o| o.create.contains("DateTime64")), "no DateTime64 on 18.16");
}

#[test]
fn a_faithful_server_has_no_drift() {
    for major in [18, 26] {
        let plan = plan("a", &sink(), layout(major)).expect("plan");
        let (engines, columns) = described(&plan);
        assert_eq!(check(&plan, &engines, &columns), []);
        // Nothing exists yet: nothing to compare.
        assert_eq!(check(&plan, &BTreeMap::new(), &[]), []);
    }
}

#[test]
fn names_the_drifted_table_and_column() {
    let plan = plan("a", &sink(), layout(26)).expect("plan");
    let (mut engines, mut columns) = described(&plan);
    let at = |columns: &[DescribedColumn], t: &str, c: &str| {
        columns.iter().position(|d| d.table == t && d.name == c).expect("column")
    };
    let i = at(&columns, "events", "aggregate_version");
    columns[i].ty = "Int32".into();
    let i = at(&columns, "users_current_updates", "country");
    columns.remove(i);
    let i = at(&columns, "events", "occurred_at_ms");
    columns[i].default_kind = String::new();
    engines.insert("daily_engagement".into(), "MergeTree".into());
    let messages: Vec<String> = check(&plan, &engines, &columns).iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "`a`.`events`: column `aggregate_version` is Int32, expected Int64",
            "`a`.`events`: column `occurred_at_ms` is stored, expected ALIAS",
            "`a`.`daily_engagement` has engine MergeTree, expected View",
            "`a`.`users_current_updates` has no column `country` (expected Nullable(String))",
        ]
    );
}

#[test]
fn types_compare_modulo_spacing_and_escapes() {
    assert_eq!(normalized("DateTime64(3,\\'UTC\\')"), normalized("DateTime64(3, 'UTC')"));
    assert_ne!(normalized("DateTime('UTC')"), normalized("DateTime64(3, 'UTC')"));
}

#[test]
fn quoting() {
    assert_eq!(quote("events"), "`events`");
    assert_eq!(quote("we`ird\\"), "`we\\`ird\\\\`");
    assert_eq!(qualified("db", "t"), "`db`.`t`");
    assert_eq!(literal("it's"), "'it\\'s'");
}

proptest! {
    /// Any one changed column type is reported, once, naming that table and column.
    #[test]
    fn any_changed_type_is_reported(pick in any::<prop::sample::Index>(), modern in any::<bool>()) {
        let plan = plan("db", &sink(), layout(if modern { 26 } else { 18 })).expect("plan");
        let (engines, mut columns) = described(&plan);
        let i = pick.index(columns.len());
        columns[i].ty = format!("Array({})", columns[i].ty);
        let drift = check(&plan, &engines, &columns);
        prop_assert_eq!(drift.len(), 1);
        prop_assert_eq!(&drift[0].object, &qualified("db", &columns[i].table));
        let is_column_type =
            matches!(&drift[0].problem, DriftProblem::ColumnType { column, .. } if *column == columns[i].name);
        prop_assert!(is_column_type);
    }
}
