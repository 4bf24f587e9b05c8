//! The rollups of a ClickHouse projection (pure): what each is on the server. The sink writes no
//! rows for them; a materialized view fills them from the inserts into the declared table they
//! read.
//!
//! Input: a `[projections.<name>.clickhouse.rollups.<r>]` declaration (checked by topology
//! validation) and the object of the declared table it reads (for its columns' server types).
//! Output: three objects.
//!
//! - `<r>_by_event` (`ReplacingMergeTree`, key `(<bucket>, event_id)`): one row per event the
//!   rollup counts: its time bucket, its dimensions, the columns the measures read (and
//!   `event_type` when a measure counts by type).
//! - `<r>_mv`: the materialized view writing those rows on every insert into the declared table,
//!   for the event types and `where` values the rollup keeps.
//! - `<r>`: the view analysts read: the measures per bucket and dimensions, over `<r>_by_event`
//!   read `FINAL`.
//!
//! **Each event counts once.** A materialized view sees every *insert*, so a re-delivered event
//! reaches it again; a `SummingMergeTree` or `-State` counters keyed by the dimensions would count
//! it twice, forever. Here the per-event rows are keyed by the event id: a duplicate collapses as
//! parts merge, and the view reads `FINAL`, which collapses it before that. So on every server
//! (18.16 included) the numbers count each event once; servers with `insert_deduplication_token`
//! also drop a re-sent batch's rows at insert time. The price: the view aggregates per-event rows
//! at query time, as many as the events in the range asked for.

use sluice_core::topology::{Aggregate, FilterValue, Measure, Rollup, TimeBucket};

use super::schema::{Column, Layout, Names, Object, literal, qualified, quote};

/// The bucket's column type and the expression computing it from `time`.
fn bucket(bucket: TimeBucket, time: &str) -> (&'static str, String) {
    let t = quote(time);
    match bucket {
        TimeBucket::Minute => ("DateTime('UTC')", format!("toStartOfMinute({t})")),
        TimeBucket::Hour => ("DateTime('UTC')", format!("toStartOfHour({t})")),
        TimeBucket::Day => ("Date", format!("toDate({t})")),
        TimeBucket::Month => ("Date", format!("toStartOfMonth({t})")),
    }
}

fn value(v: &FilterValue) -> String {
    match v {
        FilterValue::Text(s) => literal(s),
        FilterValue::Integer(i) => i.to_string(),
        FilterValue::Bool(b) => u8::from(*b).to_string(),
    }
}

/// The measure as the view computes it from the per-event rows (`nullable`: whether its column
/// may be null).
fn aggregate(measure: &Measure, nullable: impl Fn(&str) -> bool) -> String {
    match measure {
        Measure::Count => "count()".to_owned(),
        Measure::CountIf(types) => {
            let types: Vec<String> = types.iter().map(|t| literal(t)).collect();
            format!("countIf(event_type IN ({}))", types.join(", "))
        }
        // A sum over a column some events lack sums what they have: 0, not NULL, when none has it.
        Measure::Of(Aggregate::Sum, c) if nullable(c) => format!("sum(assumeNotNull({}))", quote(c)),
        Measure::Of(a, c) => format!("{a}({})", quote(c)),
    }
}

/// The three objects of rollup `name` in `database`, reading the declared table `source` (its
/// object in this version), named for the version `names` names.
pub fn objects(database: &str, name: &str, r: &Rollup, source: &Object, names: &Names, l: Layout) -> [Object; 3] {
    let by_event = names.name(&format!("{name}_by_event"));
    let mv = names.name(&format!("{name}_mv"));
    let view = names.name(name);
    let type_of = |column: &str| {
        source.columns.iter().find(|c| c.name == column).map_or_else(|| "String".to_owned(), |c| c.ty.clone())
    };
    let nullable = |column: &str| type_of(column).contains("Nullable(");
    let (bucket_type, bucket_expr) = bucket(r.bucket, &r.time);
    let bucket_name = r.bucket.as_str();

    // The per-event rows: bucket, dimensions, the event id, what the measures read.
    let mut carried: Vec<&str> = r.dimensions.iter().map(String::as_str).collect();
    if r.counts_by_type() && !carried.contains(&"event_type") {
        carried.push("event_type");
    }
    for m in r.measures.values() {
        if let Measure::Of(_, c) = m
            && !carried.contains(&c.as_str())
        {
            carried.push(c);
        }
    }
    let mut columns = vec![Column::stored(bucket_name, bucket_type), Column::stored("event_id", "UUID")];
    columns.extend(carried.iter().map(|c| Column::stored(*c, type_of(c))));
    let engine =
        format!("\nPARTITION BY toYYYYMM({b})\nORDER BY ({b}, event_id){}", l.settings(), b = quote(bucket_name));
    let table = Object::table(database, &by_event, columns, "ReplacingMergeTree", &engine);

    let mut select = vec![format!("{bucket_expr} AS {}", quote(bucket_name)), "event_id".to_owned()];
    select.extend(carried.iter().map(|c| quote(c)));
    let mut conditions = Vec::new();
    if let Some(types) = &r.events {
        let types: Vec<String> = types.iter().map(|t| literal(t)).collect();
        conditions.push(format!("event_type IN ({})", types.join(", ")));
    }
    for (column, values) in &r.filter {
        let values: Vec<String> = values.iter().map(value).collect();
        conditions.push(format!("{} IN ({})", quote(column), values.join(", ")));
    }
    let filter = if conditions.is_empty() { String::new() } else { format!("\nWHERE {}", conditions.join(" AND ")) };
    let select = format!("SELECT {}", select.join(", "));
    let materialized = Object::materialized_view(database, &mv, &by_event, &select, &source.name, &filter);

    let mut groups = vec![quote(bucket_name)];
    groups.extend(r.dimensions.iter().map(|d| quote(d)));
    let mut outputs = groups.clone();
    outputs.extend(r.measures.iter().map(|(m, measure)| format!("{} AS {}", aggregate(measure, nullable), quote(m))));
    // The view's columns: the groups (their types are the table's); a measure's type is what
    // its aggregate gives on the server, not checked.
    let mut view_columns = vec![Column::stored(bucket_name, bucket_type)];
    view_columns.extend(r.dimensions.iter().map(|d| Column::stored(d, type_of(d))));
    let query = format!(
        "SELECT {}\nFROM {} FINAL\nGROUP BY {}",
        outputs.join(", "),
        qualified(database, &by_event),
        groups.join(", ")
    );
    let view_object = Object::view(database, &view, &query, view_columns);
    [table, materialized, view_object]
}
