//! Reading `[projections.<name>.clickhouse]` (see [`crate::topology::ClickHouseSink`]): the raw
//! table, the declared typed tables, state tables and rollups, with the same located issues as
//! the rest of [`super`].

use std::collections::BTreeMap;

use toml::de::DeValue;

use super::super::diagnostics::Issue;
use super::super::model::{
    ClickHouseSink, DEFAULT_KEY_COLUMN, DEFAULT_PARTITION_BY, DEFAULT_ROLLUP_TIME, DeclaredTable, FilterValue, Measure,
    Rollup, StateTable, TableEngine, TimeBucket,
};
use super::names::{display_path, valid_clickhouse_identifier};
use super::walker::{Secrets, Table, Walker};

const IDENTIFIER: &str = "a ClickHouse identifier (letters, digits, `_`)";

/// Keys of earlier versions, with what replaced them.
const REPLACED: &[(&str, &str)] = &[
    ("state_table", "declare the state table as `[projections.<name>.clickhouse.state.<table>]`"),
    ("state_events", "list them as `events` of `[projections.<name>.clickhouse.state.<table>]`"),
    ("state_deletes", "list them as `deletes` of `[projections.<name>.clickhouse.state.<table>]`"),
    ("state_creates", "list them as `creates` of `[projections.<name>.clickhouse.state.<table>]`"),
];

impl Walker<'_> {
    pub(super) fn clickhouse(&mut self, t: &mut Table<'_, '_>) -> ClickHouseSink {
        let database = self.checked_string(t, "database", valid_clickhouse_identifier, IDENTIFIER);
        let table = self.checked_string(t, "table", valid_clickhouse_identifier, IDENTIFIER);
        let table = t.require(self, "table", table, "\"events\"");
        for (key, hint) in REPLACED {
            if t.value(key).is_some() {
                self.issues.push(
                    Issue::error(t.span_of(key), format!("`{key}` is no longer read: state tables are declared"))
                        .hint(*hint),
                );
            }
        }
        let tables = self.named_tables(t, "tables", Self::declared_table);
        let state = self.named_tables(t, "state", Self::state_table);
        let rollups = if t.entries.get("rollups").is_some_and(|v| v.get_ref().as_array().is_some()) {
            t.value("rollups");
            self.issues.push(
                Issue::error(t.span_of("rollups"), "`rollups` is no longer a list of built-in rollups")
                    .hint("declare each as `[projections.<name>.clickhouse.rollups.<rollup>]` over a declared table"),
            );
            BTreeMap::new()
        } else {
            self.named_tables(t, "rollups", Self::rollup)
        };
        ClickHouseSink { database, table: table.unwrap_or_default(), tables, state, rollups }
    }

    /// A map of named tables under `key`, each read by `read`.
    fn named_tables<T>(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
        read: fn(&mut Self, &mut Table<'_, '_>) -> T,
    ) -> BTreeMap<String, T> {
        let mut out = BTreeMap::new();
        if let Some(section) = self.table(t, key, Secrets::ClickHouse) {
            for (name, mut entry) in self.entities(&section, valid_clickhouse_identifier, IDENTIFIER) {
                let value = read(self, &mut entry);
                entry.finish(self);
                out.insert(name, value);
            }
        }
        out
    }

    /// A list under `key` that must hold something when present.
    fn non_empty_strings(&mut self, t: &mut Table<'_, '_>, key: &'static str, why: &str) -> Option<Vec<String>> {
        let list = self.strings(t, key);
        if list.as_ref().is_some_and(Vec::is_empty) {
            self.issues
                .push(Issue::error(t.span_of(key), format!("`{}` is empty: {why}", display_path(&t.child(key)))));
        }
        list
    }

    /// `[projections.<name>.clickhouse.tables.<table>]`.
    fn declared_table(&mut self, t: &mut Table<'_, '_>) -> DeclaredTable {
        let events = self.non_empty_strings(t, "events", "the table would stay empty");
        let events = t.require(self, "events", events, "[\"<event type>\", …]");
        let columns = self.string_map(t, "columns");
        let engine = self.choice(t, "engine", TableEngine::NAMES);
        let order_by = self.strings(t, "order_by");
        if order_by.as_ref().is_some_and(Vec::is_empty) {
            self.issues.push(
                Issue::error(t.span_of("order_by"), "`order_by` is empty")
                    .hint("leave it out for `event_type, toDate(occurred_at), aggregate_id`"),
            );
        }
        let partition_by = self.string(t, "partition_by");
        let ttl = self.duration(t, "ttl", false);
        DeclaredTable {
            events: events.unwrap_or_default(),
            columns,
            engine: engine.unwrap_or_default(),
            order_by,
            partition_by: partition_by.unwrap_or_else(|| DEFAULT_PARTITION_BY.to_owned()),
            ttl,
            resolved: Vec::new(),
        }
    }

    /// `[projections.<name>.clickhouse.state.<table>]`.
    fn state_table(&mut self, t: &mut Table<'_, '_>) -> StateTable {
        let key_column = self.checked_string(t, "key_column", valid_clickhouse_identifier, IDENTIFIER);
        let events = self.non_empty_strings(t, "events", "the state table would stay empty");
        let events = t.require(self, "events", events, "[\"<event type>\", …]");
        let creates = self.strings(t, "creates").unwrap_or_default();
        let deletes = self.strings(t, "deletes").unwrap_or_default();
        let columns = self.field_sources(
            t,
            "columns",
            "the state table would hold only its key",
            "map each column to the event field that sets it: `status = \"status\"`",
        );
        let columns = t.require(self, "columns", columns, "{ <column> = \"<event field>\" }");
        StateTable {
            key_column: key_column.unwrap_or_else(|| DEFAULT_KEY_COLUMN.to_owned()),
            events: events.unwrap_or_default(),
            creates,
            deletes,
            columns: columns.unwrap_or_default(),
            resolved: Vec::new(),
        }
    }

    /// `[projections.<name>.clickhouse.rollups.<rollup>]`.
    fn rollup(&mut self, t: &mut Table<'_, '_>) -> Rollup {
        let from = self.checked_string(t, "from", valid_clickhouse_identifier, IDENTIFIER);
        let from = t.require(self, "from", from, "\"<declared table>\"");
        let bucket = self.choice(t, "bucket", TimeBucket::NAMES);
        let time = self.string(t, "time");
        let dimensions = self.strings(t, "dimensions").unwrap_or_default();
        let events = self.non_empty_strings(t, "events", "the rollup would stay empty");
        let filter = self.filter(t);
        let measures = self.measures(t);
        let measures = t.require(self, "measures", measures, "{ events = \"count()\" }");
        Rollup {
            from: from.unwrap_or_default(),
            bucket: bucket.unwrap_or_default(),
            time: time.unwrap_or_else(|| DEFAULT_ROLLUP_TIME.to_owned()),
            dimensions,
            events,
            filter,
            measures: measures.unwrap_or_default(),
        }
    }

    /// `measures = { name = "sum(total)", … }`, each measure's span recorded.
    fn measures(&mut self, t: &mut Table<'_, '_>) -> Option<BTreeMap<String, Measure>> {
        let texts =
            self.string_map_of(t, "measures", "the rollup would have no numbers", "add `events = \"count()\"`")?;
        let mut out = BTreeMap::new();
        for (name, text) in texts {
            let path = [t.child("measures"), vec![name.clone()]].concat();
            if !valid_clickhouse_identifier(&name) {
                let span = self.spans.get(&path.iter().map(String::as_str).collect::<Vec<_>>()).unwrap_or(0..0);
                self.issues.push(Issue::error(span, format!("{name:?} is not a valid name: {IDENTIFIER}")));
                continue;
            }
            match text.parse::<Measure>() {
                Ok(m) => {
                    out.insert(name, m);
                }
                Err(e) => {
                    let key: Vec<&str> = path.iter().map(String::as_str).collect();
                    let span = self.spans.get(&key).unwrap_or(0..0);
                    self.spans.forget(&path);
                    self.issues.push(
                        Issue::error(span, format!("`{}`: {e}", display_path(&path)))
                            .hint("count(), countIf(<event type>, …), sum|min|max|avg|uniq|uniqExact(<column>)"),
                    );
                }
            }
        }
        Some(out)
    }

    /// `where = { column = value | [values] }`: strings, integers or booleans.
    fn filter(&mut self, t: &mut Table<'_, '_>) -> BTreeMap<String, Vec<FilterValue>> {
        let mut out = BTreeMap::new();
        let Some(value) = t.value("where") else { return out };
        let path = t.child("where");
        let Some(entries) = value.get_ref().as_table() else {
            self.type_error(&path, value, "table");
            return out;
        };
        self.spans.insert(&path, value.span());
        for (column, item) in entries.iter() {
            let column = column.get_ref().to_string();
            let item_path = [path.clone(), vec![column.clone()]].concat();
            let one = |v: &DeValue<'_>| match v {
                DeValue::String(s) => Some(FilterValue::Text(s.to_string())),
                DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok().map(FilterValue::Integer),
                DeValue::Boolean(b) => Some(FilterValue::Bool(*b)),
                _ => None,
            };
            let values: Option<Vec<FilterValue>> = match item.get_ref() {
                DeValue::Array(items) if !items.is_empty() => items.iter().map(|i| one(i.get_ref())).collect(),
                other => one(other).map(|v| vec![v]),
            };
            match values {
                Some(values) => {
                    self.spans.insert(&item_path, item.span());
                    out.insert(column, values);
                }
                None => self.type_error(&item_path, item, "string, integer or boolean (or a list of them)"),
            }
        }
        out
    }

    /// `columns = { name = "field.path", … }`.
    fn string_map(&mut self, t: &mut Table<'_, '_>, key: &'static str) -> Option<BTreeMap<String, String>> {
        self.string_map_of(t, key, "", "leave it out for every payload field of the events")
    }

    /// A table of strings under `key`, each value's span recorded; `empty` says why an empty one
    /// is wrong.
    fn string_map_of(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
        empty: &str,
        empty_hint: &str,
    ) -> Option<BTreeMap<String, String>> {
        let (path, entries) = self.named_entries(t, key, empty, empty_hint)?;
        let mut out = BTreeMap::new();
        for (name, item) in entries.iter() {
            let mut item_path = path.clone();
            item_path.push(name.get_ref().to_string());
            match item.get_ref().as_str() {
                Some(text) => {
                    self.spans.insert(&item_path, item.span());
                    out.insert(name.get_ref().to_string(), text.to_owned());
                }
                None => self.type_error(&item_path, item, "string"),
            }
        }
        Some(out)
    }
}
