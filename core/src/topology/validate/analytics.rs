//! The cross-checks of a ClickHouse projection's state tables and rollups
//! (`[projections.<name>.clickhouse.state.<t>]`, `[projections.<name>.clickhouse.rollups.<r>]`):
//! their event types are the projection's, their columns come from fields the events have with
//! one scalar type each, a rollup's dimensions and measures are columns of the declared table it
//! reads with types the aggregate takes (no sum over a string), and no two objects of the
//! projection share a name. The state tables' typed columns are derived here and kept in the
//! model.

use std::collections::BTreeMap;

use super::super::columns::{ColumnType, ENVELOPE_COLUMNS, FieldPath, TableColumn, envelope_type, path_column};
use super::super::diagnostics::{Issue, Severity, did_you_mean};
use super::super::model::{
    Aggregate, ClickHouseSink, FilterValue, Measure, Rollup, STATE_RESERVED_COLUMNS, StateColumn, StateTable,
};
use super::super::parse::display_path;
use super::super::schema::is_envelope_field;
use super::{Checker, Schemas};

/// The objects each declaration makes, by name, with the path of the declaration.
fn objects(sink: &ClickHouseSink) -> Vec<(String, Vec<String>)> {
    let at = |kind: &str, name: &str| vec![kind.to_owned(), name.to_owned()];
    let mut out = vec![(sink.table.clone(), vec!["table".to_owned()])];
    out.extend(sink.tables.keys().map(|t| (t.clone(), at("tables", t))));
    for s in sink.state.keys() {
        out.extend(["", "_updates", "_state", "_mv"].map(|x| (format!("{s}{x}"), at("state", s))));
    }
    for r in sink.rollups.keys() {
        out.extend(["", "_by_event", "_mv"].map(|x| (format!("{r}{x}"), at("rollups", r))));
    }
    out
}

impl Checker<'_> {
    /// Checks the state tables and rollups of projection `name` (event types `known`, declared
    /// tables' columns `tables`); returns the state tables' columns, by table.
    pub(super) fn derived_tables(
        &mut self,
        name: &str,
        sink: &ClickHouseSink,
        known: &[&str],
        schemas: &Schemas,
        tables: &BTreeMap<String, Vec<TableColumn>>,
    ) -> BTreeMap<String, Vec<StateColumn>> {
        self.object_names(name, sink);
        let mut out = BTreeMap::new();
        for (table, state) in &sink.state {
            if let Some(columns) = self.state_table(name, table, state, known, schemas) {
                out.insert(table.clone(), columns);
            }
        }
        for (rollup_name, rollup) in &sink.rollups {
            self.rollup(name, rollup_name, rollup, sink, tables);
        }
        out
    }

    /// No two objects of the projection share a name (a state table `x` makes `x_updates`, …).
    fn object_names(&mut self, name: &str, sink: &ClickHouseSink) {
        let objects = objects(sink);
        for (i, (object, path)) in objects.iter().enumerate() {
            let Some((_, first)) = objects[..i].iter().find(|(o, p)| o == object && p != path) else { continue };
            let full: Vec<&str> =
                ["projections", name, "clickhouse"].into_iter().chain(path.iter().map(String::as_str)).collect();
            if let Some(span) = self.spans.get(&full) {
                self.push(
                    Issue::error(
                        span,
                        format!("`{object}` is already a table of this projection (from `{}`)", display_path(first)),
                    )
                    .hint("choose another name: a state table `s` also makes `s_updates`, `s_state` and `s_mv`, a rollup `r` makes `r_by_event` and `r_mv`"),
                );
            }
        }
    }

    fn state_table(
        &mut self,
        name: &str,
        table: &str,
        state: &StateTable,
        known: &[&str],
        schemas: &Schemas,
    ) -> Option<Vec<StateColumn>> {
        let base = ["projections", name, "clickhouse", "state", table];
        let before = self.issues.len();
        self.state_events(name, table, state, known);
        let events: Vec<&str> = state.events.iter().map(String::as_str).collect();
        for key in ["creates", "deletes"] {
            let list = if key == "creates" { &state.creates } else { &state.deletes };
            for (i, event_type) in list.iter().enumerate() {
                let index = i.to_string();
                let Some(span) = self.spans.get(&[&base[..], &[key, &index]].concat()) else { continue };
                if !events.contains(&event_type.as_str()) {
                    self.push(
                        Issue::error(
                            span,
                            format!("\"{event_type}\" in `{key}` is not one of the state table's `events`"),
                        )
                        .hint(format!("add \"{event_type}\" to `events`")),
                    );
                } else if key == "deletes" && state.creates.contains(event_type) {
                    self.push(
                        Issue::error(span, format!("\"{event_type}\" is in both `creates` and `deletes`"))
                            .hint("an event either deletes the entity or makes it live: keep it in one list"),
                    );
                }
            }
        }
        if let Some(span) = self.spans.get(&[&base[..], &["key_column"]].concat())
            && STATE_RESERVED_COLUMNS.contains(&state.key_column.as_str())
        {
            self.push(Issue::error(
                span,
                format!("`key_column` = {:?} is a column every state table has", state.key_column),
            ));
        }
        if self.errors_since(before) {
            return None;
        }
        let typed: Vec<(&str, &apache_avro::Schema)> = state
            .events
            .iter()
            .map(|t| schemas.get(t).map(|(_, _, s)| (t.as_str(), &s.schema)))
            .collect::<Option<_>>()?;
        let mut out = Vec::new();
        for (column, sources) in &state.columns {
            let column_base = [&base[..], &["columns", column]].concat();
            let Some(span) = self.spans.get(&[&column_base[..], &["0"]].concat()) else { continue };
            if column == &state.key_column
                || column == "aggregate_id"
                || STATE_RESERVED_COLUMNS.contains(&column.as_str())
            {
                self.push(
                    Issue::error(span, format!("column `{column}` is a column every state table has"))
                        .hint(format!("those are: the key, aggregate_id, {}", STATE_RESERVED_COLUMNS.join(", "))),
                );
                continue;
            }
            if let Some(c) = self.state_column(column, &sources.0, &column_base, &typed) {
                out.push(c);
            }
        }
        (!self.errors_since(before)).then_some(out)
    }

    /// Whether an error (not a warning) was reported since `before` issues.
    fn errors_since(&self, before: usize) -> bool {
        self.issues[before..].iter().any(|i| i.severity == Severity::Error)
    }

    /// A state table's `events` are declared event types. One the projection does not consume
    /// (it is on none of its sources) is accepted with a warning: it writes the state once the
    /// projection reads its topic.
    fn state_events(&mut self, name: &str, table: &str, state: &StateTable, known: &[&str]) {
        let declared: Vec<&str> = self.config.events.keys().map(String::as_str).collect();
        for (i, event_type) in state.events.iter().enumerate() {
            let index = i.to_string();
            let path = ["projections", name, "clickhouse", "state", table, "events", &index];
            let Some(span) = self.spans.get(&path) else { continue };
            if !declared.contains(&event_type.as_str()) {
                self.push(
                    Issue::error(
                        span,
                        format!("unknown event type \"{event_type}\" in `{}`", display_path(&path[..6])),
                    )
                    .maybe_hint(did_you_mean(event_type, &declared, true)),
                );
            } else if !known.contains(&event_type.as_str()) {
                self.push(
                    Issue::warning(
                        span,
                        format!(
                            "\"{event_type}\" is not consumed by projection \"{name}\": it is on none of its sources"
                        ),
                    )
                    .hint("it writes the state once the projection reads its topic; add the topic to `sources`"),
                );
            }
        }
    }

    /// One column of a state table: each candidate field exists in some event type, and all have
    /// one scalar type.
    fn state_column(
        &mut self,
        column: &str,
        sources: &[String],
        column_base: &[&str],
        events: &[(&str, &apache_avro::Schema)],
    ) -> Option<StateColumn> {
        let mut first: Option<(ColumnType, String)> = None;
        let mut paths = Vec::new();
        let mut ok = true;
        for (i, text) in sources.iter().enumerate() {
            let index = i.to_string();
            let span = self.spans.get(&[column_base, &[&index]].concat()).unwrap_or(0..0);
            let Some(path) = FieldPath::parse(text) else {
                self.push(
                    Issue::error(span, format!("{text:?} is not a field path"))
                        .hint("write a field, or a nested one with `.`: \"customer.id\""),
                );
                ok = false;
                continue;
            };
            let found: Vec<(ColumnType, &str)> = if is_envelope_field(text) {
                envelope_type(text).map(|t| (t, "the envelope")).into_iter().collect()
            } else {
                events.iter().filter_map(|(t, s)| path_column(s, column, &path).map(|c| (c.ty, *t))).collect()
            };
            if found.is_empty() {
                let fields: Vec<String> = events
                    .iter()
                    .flat_map(|(_, s)| super::super::columns::payload_columns(s))
                    .map(|c| c.path.to_string())
                    .collect();
                let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
                self.push(
                    Issue::error(
                        span,
                        format!("no event type of the state table has a field {text} (for column `{column}`)"),
                    )
                    .maybe_hint(did_you_mean(text, &fields, true)),
                );
                ok = false;
                continue;
            }
            for (ty, event_type) in found {
                if !ty.is_scalar() {
                    self.push(
                        Issue::error(
                            span.clone(),
                            format!(
                                "column `{column}`: {text} is {ty} in {event_type}; a state column holds one value"
                            ),
                        )
                        .hint("name one field inside it (\"customer.id\"), or keep it in a declared table"),
                    );
                    return None;
                }
                match &first {
                    None => first = Some((ty.non_null().clone(), event_type.to_owned())),
                    Some((t, other)) if t != ty.non_null() => {
                        self.push(Issue::error(
                            span.clone(),
                            format!(
                                "column `{column}` is {t} in {other} but {} in {event_type} ({text})",
                                ty.non_null()
                            ),
                        ));
                        return None;
                    }
                    Some(_) => {}
                }
            }
            paths.push(path);
        }
        let (ty, _) = first.filter(|_| ok)?;
        Some(StateColumn { name: column.to_owned(), sources: paths, ty })
    }

    fn rollup(
        &mut self,
        name: &str,
        rollup_name: &str,
        r: &Rollup,
        sink: &ClickHouseSink,
        tables: &BTreeMap<String, Vec<TableColumn>>,
    ) {
        let base = ["projections", name, "clickhouse", "rollups", rollup_name];
        fn at<'a>(base: &[&'a str], key: &[&'a str]) -> Vec<&'a str> {
            [base, key].concat()
        }
        let Some(declared) = sink.tables.get(&r.from) else {
            if let Some(span) = self.spans.get(&at(&base, &["from"])) {
                let names: Vec<&str> = sink.tables.keys().map(String::as_str).collect();
                let hint = did_you_mean(&r.from, &names, true).unwrap_or_else(|| {
                    "a rollup reads a typed table declared under `[projections.<name>.clickhouse.tables.<table>]`"
                        .into()
                });
                self.push(
                    Issue::error(
                        span,
                        format!("`from` = {:?} is not a declared table of projection \"{name}\"", r.from),
                    )
                    .hint(hint),
                );
            }
            return;
        };
        // A table whose columns could not be derived was reported already.
        let Some(columns) = tables.get(&r.from) else { return };
        let type_of = |column: &str| -> Option<ColumnType> {
            columns
                .iter()
                .find(|c| c.name == column)
                .map(|c| c.ty.clone())
                .or_else(|| ENVELOPE_COLUMNS.contains(&column).then(|| envelope_type(column)).flatten())
        };
        let mut names: Vec<&str> = ENVELOPE_COLUMNS.to_vec();
        names.extend(columns.iter().map(|c| c.name.as_str()));
        let unknown = |column: &str| {
            Issue::error(0..0, String::new()).maybe_hint(did_you_mean(column, &names, true)).hint_if_none(format!(
                "the columns of table `{}` are: {}",
                r.from,
                names.join(", ")
            ))
        };
        let bucket = r.bucket.as_str();

        // The time column.
        if let Some(span) = self.spans.get(&at(&base, &["time"])).or_else(|| self.spans.get(&base)) {
            match type_of(&r.time) {
                None => self.push(Issue {
                    span,
                    message: format!("`time`: table `{}` has no column `{}`", r.from, r.time),
                    ..unknown(&r.time)
                }),
                Some(ty) if !ty.is_time() || matches!(ty, ColumnType::Nullable(_)) => self.push(
                    Issue::error(
                        span,
                        format!(
                            "`time`: column `{}` is {ty}; a rollup buckets a timestamp or date that every event has",
                            r.time
                        ),
                    )
                    .hint("leave `time` out for `occurred_at`"),
                ),
                Some(ColumnType::Date) if !r.bucket.is_calendar() => self.push(
                    Issue::error(span, format!("`time`: column `{}` is a date, which has no {bucket}s", r.time))
                        .hint("use bucket = \"day\" or \"month\""),
                ),
                Some(_) => {}
            }
        }

        // Dimensions and measured columns: scalar columns of the table.
        for (i, column) in r.dimensions.iter().enumerate() {
            let index = i.to_string();
            let Some(span) = self.spans.get(&at(&base, &["dimensions", &index])) else { continue };
            match type_of(column) {
                None => self.push(Issue {
                    span,
                    message: format!("`dimensions`: table `{}` has no column `{column}`", r.from),
                    ..unknown(column)
                }),
                Some(ty) if !ty.is_scalar() => self.push(Issue::error(
                    span,
                    format!("`dimensions`: column `{column}` is {ty}; a rollup groups by single values"),
                )),
                Some(_) if column == bucket => self
                    .push(Issue::error(span, format!("`dimensions`: `{column}` is the rollup's time bucket already"))),
                Some(_) => {}
            }
        }

        // Event types: the table's.
        let table_events: Vec<&str> = declared.events.iter().map(String::as_str).collect();
        let counted: Vec<&str> =
            r.events.as_ref().map_or(table_events.clone(), |e| e.iter().map(String::as_str).collect());
        for (i, event_type) in r.events.iter().flatten().enumerate() {
            let index = i.to_string();
            if let Some(span) = self.spans.get(&at(&base, &["events", &index]))
                && !table_events.contains(&event_type.as_str())
            {
                self.push(
                    Issue::error(
                        span,
                        format!("\"{event_type}\" in `events` is not an event type of table `{}`", r.from),
                    )
                    .maybe_hint(did_you_mean(event_type, &table_events, true)),
                );
            }
        }

        // Measures.
        let sources = r.source_columns();
        for (measure_name, measure) in &r.measures {
            let Some(span) = self.spans.get(&at(&base, &["measures", measure_name])) else { continue };
            if measure_name == bucket
                || sources.contains(&measure_name.as_str())
                || ENVELOPE_COLUMNS.contains(&measure_name.as_str())
            {
                self.push(
                    Issue::error(
                        span.clone(),
                        format!("measure `{measure_name}` has the name of a column the rollup reads or groups by"),
                    )
                    .hint(format!("name it after what it measures: `total_{measure_name}`, `{measure_name}_count`")),
                );
                continue;
            }
            match measure {
                Measure::Count => {}
                Measure::CountIf(types) => {
                    for t in types.iter().filter(|t| !counted.contains(&t.as_str())) {
                        self.push(
                            Issue::error(
                                span.clone(),
                                format!("`countIf({t})`: \"{t}\" is not an event type the rollup reads"),
                            )
                            .maybe_hint(did_you_mean(t, &counted, true))
                            .hint_if_none(format!("it reads: {}", counted.join(", "))),
                        );
                    }
                }
                Measure::Of(aggregate, column) => match type_of(column) {
                    None => self.push(Issue {
                        span,
                        message: format!("`{measure}`: table `{}` has no column `{column}`", r.from),
                        ..unknown(column)
                    }),
                    Some(ty) if !ty.is_scalar() => self
                        .push(Issue::error(span, format!("`{measure}`: column `{column}` is {ty}, not single values"))),
                    Some(ty) if aggregate.is_arithmetic() && !ty.is_numeric() => self.push(
                        Issue::error(
                            span,
                            format!("`{measure}`: column `{column}` is {ty}; {aggregate} needs numbers"),
                        )
                        .hint(if *aggregate == Aggregate::Sum {
                            "count it instead: `count()` or `countIf(<event type>)`"
                        } else {
                            "use min, max or uniq"
                        }),
                    ),
                    Some(_) => {}
                },
            }
        }

        // Filters.
        for (column, values) in &r.filter {
            let Some(span) = self.spans.get(&at(&base, &["where", column])) else { continue };
            let Some(ty) = type_of(column) else {
                self.push(Issue {
                    span,
                    message: format!("`where`: table `{}` has no column `{column}`", r.from),
                    ..unknown(column)
                });
                continue;
            };
            let fits = |v: &FilterValue| match (v, ty.non_null()) {
                (FilterValue::Bool(_), ColumnType::Bool) => true,
                (FilterValue::Integer(_), ColumnType::Int | ColumnType::Long) => true,
                (
                    FilterValue::Text(_),
                    ColumnType::String | ColumnType::Uuid | ColumnType::Fixed(_) | ColumnType::Bytes,
                ) => true,
                (FilterValue::Text(s), ColumnType::Enum(symbols)) => symbols.contains(s),
                _ => false,
            };
            if let Some(bad) = values.iter().find(|v| !fits(v)) {
                let shown = serde_json::to_string(bad).unwrap_or_default();
                self.push(Issue::error(
                    span,
                    format!("`where`: column `{column}` is {ty}, which never equals {shown}"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
