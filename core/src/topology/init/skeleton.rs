//! The commented-out starting points written after the projection: a Couchbase projection of the
//! first topic's entities, a ClickHouse current-state table and a rollup, filled in with that
//! topic's event types and columns where a guess is sensible and left as `<placeholders>`
//! elsewhere.
//!
//! Every line is a TOML comment: none of it is parsed, so none of it can make the file invalid.
//! The state table and rollup blocks follow the syntax of the ClickHouse sink's
//! `state.<table>` and `rollups.<name>` sections. Pure code.

use std::collections::BTreeSet;

use super::super::columns::{ColumnType, Step, TableColumn};
use super::bind::PlannedEvent;
use super::render::toml_str;
use super::tables::PlannedTable;

/// Last segments of event types that end an entity.
const DELETES: &[&str] = &["deleted", "removed", "erased", "closed", "cancelled", "canceled", "archived", "terminated"];
/// Last segments of event types that start one.
const CREATES: &[&str] = &["created", "registered", "opened", "placed", "signed_up", "started", "added"];
/// How many fields or columns a skeleton lists before "…".
const MAX_LISTED: usize = 10;
/// The width a line is padded to before its trailing `# …` comment, as in the documented syntax
/// (the `#` of the note is then in column 41).
const NOTE_AT: usize = 37;

/// `# <line>`, with its `# <note>` aligned when there is one.
fn line(out: &mut Vec<String>, text: &str, note: Option<&str>) {
    match note {
        Some(note) => out.push(format!("# {text:<NOTE_AT$} # {note}")),
        None if text.is_empty() => out.push("#".to_owned()),
        None => out.push(format!("# {text}")),
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn last_segment(event_type: &str) -> &str {
    event_type.rsplit('.').next().unwrap_or(event_type)
}

fn ends_with_any(event_type: &str, words: &[&str]) -> bool {
    let last = last_segment(event_type);
    words.iter().any(|w| last == *w || last.ends_with(&format!("_{w}")))
}

/// A top-level scalar column (a payload field of its own, not an array, map or JSON text).
fn scalar(column: &TableColumn) -> bool {
    matches!(column.path.0.as_slice(), [Step::Field(_)])
        && !matches!(column.ty.non_null(), ColumnType::Array(_) | ColumnType::Map(_) | ColumnType::Json)
}

/// What the starting points are filled in with: one topic's entities.
struct Entity<'a> {
    /// The topic.
    topic: &'a str,
    /// Its name in the projection, table and document id (the first segment of its first event
    /// type).
    name: String,
    /// The event types of the topic.
    types: Vec<String>,
    /// Of those, the ones that look like a creation.
    creates: Vec<String>,
    /// Of those, the ones that look like a deletion.
    deletes: Vec<String>,
    /// The payload fields of its event types, first seen first.
    fields: Vec<String>,
    /// The scalar columns of its typed tables, first seen first.
    columns: Vec<&'a TableColumn>,
}

impl<'a> Entity<'a> {
    fn new(topic: &'a str, events: &[&PlannedEvent<'_>], tables: &[&'a PlannedTable]) -> Self {
        let types: Vec<String> = events.iter().map(|e| e.event_type.clone()).collect();
        let name = types.first().and_then(|t| t.split('.').next()).unwrap_or("entity").to_owned();
        let deletes: Vec<String> = types.iter().filter(|t| ends_with_any(t, DELETES)).cloned().collect();
        let mut creates: Vec<String> = types.iter().filter(|t| ends_with_any(t, CREATES)).cloned().collect();
        if creates.is_empty() {
            creates.extend(types.iter().find(|t| !deletes.contains(t)).cloned());
        }
        let mut fields: Vec<String> = Vec::new();
        for e in events {
            if let apache_avro::Schema::Record(record) = &e.candidate.schema.schema {
                for f in &record.fields {
                    if !super::super::is_envelope_field(&f.name) && !fields.contains(&f.name) {
                        fields.push(f.name.clone());
                    }
                }
            }
        }
        let mut columns: Vec<&TableColumn> = Vec::new();
        let mut seen = BTreeSet::new();
        for c in tables.iter().flat_map(|t| t.resolved()).filter(|c| scalar(c)) {
            if seen.insert(c.name.as_str()) {
                columns.push(c);
            }
        }
        Self { topic, name, types, creates, deletes, fields, columns }
    }
}

/// The starting points for `topic`, whose event types are `events` and typed tables `tables`;
/// `projection` is the ClickHouse projection's name. Every returned line starts with `#`.
pub(super) fn skeletons(
    topic: &str,
    events: &[&PlannedEvent<'_>],
    tables: &[&PlannedTable],
    projection: &str,
) -> Vec<String> {
    let entity = Entity::new(topic, events, tables);
    let mut out = Vec::new();
    out.push(
        "# ---------------------------------------------------------------------------------------------".to_owned(),
    );
    line(
        &mut out,
        "Starting points, all commented out: uncomment and adapt one, then run `sluice topology check`.",
        None,
    );
    line(&mut out, &format!("They are filled in with the event types and fields of topic {topic}."), None);
    line(&mut out, "", None);
    couchbase(&mut out, &entity);
    line(&mut out, "", None);
    state(&mut out, &entity, projection);
    line(&mut out, "", None);
    rollup(&mut out, projection, &entity.name, tables.first().copied());
    out
}

fn couchbase(out: &mut Vec<String>, entity: &Entity<'_>) {
    let (topic, name) = (entity.topic, format!("{}_state", entity.name));
    line(out, &format!("The latest state of each entity of {topic}, one Couchbase document per aggregate_id"), None);
    line(out, &format!("(run it with `sluice work --projection {name}`, after `sluice couchbase setup`):"), None);
    line(out, &format!("[projections.{name}]"), None);
    line(out, &format!("sources = {}", list(&[topic.to_owned()])), None);
    line(out, "sink = \"couchbase\"", None);
    line(out, "", None);
    line(out, &format!("[projections.{name}.couchbase]"), None);
    line(out, &format!("document_id = {}", toml_str(&format!("{}::{{aggregate_id}}", entity.name))), None);
    let erase =
        if entity.deletes.is_empty() { "[\"<event type that deletes it>\"]".to_owned() } else { list(&entity.deletes) };
    line(out, &format!("erase_on = {erase}"), Some("event types that delete the document"));
    line(out, "on_erase = \"remove\"", Some("or \"tombstone\": left in the document's place, one write per new one"));
    line(out, "durability = \"majority\"", Some("left out: \"none\"; majority needs a bucket with replicas"));
    line(out, "", None);
    line(out, &format!("[projections.{name}.couchbase.fields]"), Some("left out: every payload field, as is"));
    if entity.fields.is_empty() {
        line(out, "<document field> = \"<event field>\"", None);
    }
    for (i, field) in entity.fields.iter().take(MAX_LISTED).enumerate() {
        let note = (i == 0).then_some("or [\"<field>\", \"<other field>\"]: the first set wins");
        line(out, &format!("{field} = {}", toml_str(field)), note);
    }
    if entity.fields.len() > MAX_LISTED {
        line(out, &format!("… and {} more payload fields", entity.fields.len() - MAX_LISTED), None);
    }
}

fn state(out: &mut Vec<String>, entity: &Entity<'_>, projection: &str) {
    let table = format!("projections.{projection}.clickhouse.state.{}_current", entity.name);
    let deletes = if entity.deletes.is_empty() { "[\"<type>\"]".to_owned() } else { list(&entity.deletes) };
    line(
        out,
        &format!("The current state of each entity of {} in ClickHouse, one row per aggregate_id:", entity.topic),
        None,
    );
    line(out, &format!("[{table}]"), None);
    line(
        out,
        &format!("key_column = {}", toml_str(&format!("{}_id", entity.name))),
        Some("the column holding the aggregate_id (default \"aggregate_id\")"),
    );
    line(out, &format!("events = {}", list(&entity.types)), Some("event types that set columns"));
    line(out, &format!("creates = {}", list(&entity.creates)), Some("make the entity live (is_deleted = 0)"));
    line(out, &format!("deletes = {deletes}"), Some("erase its columns (is_deleted = 1)"));
    line(out, &format!("[{table}.columns]"), None);
    let note = "or [\"<field>\", \"<other field>\"]: the first one set wins";
    if entity.columns.is_empty() {
        line(out, "<column> = \"<field>\"", Some(note));
    }
    for (i, c) in entity.columns.iter().take(MAX_LISTED).enumerate() {
        line(out, &format!("{} = {}", c.name, toml_str(&c.path.to_string())), (i == 0).then_some(note));
    }
}

fn rollup(out: &mut Vec<String>, projection: &str, entity: &str, table: Option<&PlannedTable>) {
    let name = format!("{entity}_daily");
    let section = format!("projections.{projection}.clickhouse.rollups.{name}");
    let from = table.map_or_else(|| "<declared table>".to_owned(), |t| t.name.clone());
    let columns: Vec<&TableColumn> =
        table.map(|t| t.resolved().iter().filter(|c| scalar(c)).collect()).unwrap_or_default();
    let dimension = columns
        .iter()
        .find(|c| matches!(c.ty.non_null(), ColumnType::Enum(_) | ColumnType::String | ColumnType::Bool))
        .map_or_else(|| "<column>".to_owned(), |c| c.name.clone());
    let numeric = columns.iter().find(|c| c.ty.is_numeric());
    line(out, &format!("A daily rollup of table {from}, kept up to date by ClickHouse as rows arrive:"), None);
    line(out, &format!("[{section}]"), None);
    line(out, &format!("from = {}", toml_str(&from)), None);
    line(out, "bucket = \"day\"", Some("minute | hour | day | month"));
    line(out, "time = \"occurred_at\"", Some("or a timestamp/date column of the table"));
    line(out, &format!("dimensions = [{}]", toml_str(&dimension)), None);
    line(out, &format!("[{section}.measures]"), None);
    line(out, "events = \"count()\"", None);
    match table {
        Some(t) => line(
            out,
            &format!("{} = {}", last_segment(&t.event_type), toml_str(&format!("countIf({})", t.event_type))),
            None,
        ),
        None => line(out, "<name> = \"countIf(<event type>)\"", None),
    }
    let also = Some("also min, max, avg, uniq, uniqExact");
    match numeric {
        Some(c) => line(out, &format!("{}_sum = {}", c.name, toml_str(&format!("sum({})", c.name))), also),
        None => line(out, "<name> = \"sum(<numeric column>)\"", also),
    }
}
