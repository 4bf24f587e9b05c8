//! Reading `[cdc.<name>]` sections (see [`crate::topology::CdcSourceConfig`]): the same walk and
//! the same located issues as the rest of [`super`].

use std::collections::BTreeMap;

use toml::de::DeValue;

use super::super::diagnostics::{Issue, suggest};
use super::super::model::{
    CdcEncoding, CdcFormat, CdcSourceConfig, ColumnKind, ColumnMapping, DEBEZIUM_UNAVAILABLE_VALUE, DebeziumConfig,
    DecimalHandling, FieldRef, OutboxConfig, TimeUnit,
};
use super::names::{display_path, valid_event_type};
use super::walker::{Secrets, Table, Walker};

/// The keys only one format has, to tell which format a stray key belongs to.
const DEBEZIUM_KEYS: &[&str] =
    &["key", "upsert_event", "delete_event", "decimal_handling", "unavailable_value", "columns"];
const OUTBOX_KEYS: &[&str] = &["event_type", "version", "event_id", "occurred_at", "events"];
const FORMATS: &[&str] = &["debezium", "outbox"];

/// Highest decimal scale: an unscaled value has at most 38 digits (128 bits).
pub(crate) const MAX_SCALE: u64 = 38;

impl Walker<'_> {
    pub(super) fn cdc_source(&mut self, t: &mut Table<'_, '_>) -> CdcSourceConfig {
        let topic = self.string(t, "topic");
        let topic = t.require(self, "topic", topic, "\"<prefix>.<schema>.<table>\"");
        let format = self.string(t, "format");
        let format = match format.as_deref() {
            Some(f) if FORMATS.contains(&f) => Some(f == "outbox"),
            Some(other) => {
                let path = t.child("format");
                self.spans.forget(&path);
                self.issues.push(
                    Issue::error(
                        t.span_of("format"),
                        format!("`{}` = {other:?} is not one of the allowed values", display_path(&path)),
                    )
                    .maybe_hint(suggest(other, FORMATS, true)),
                );
                None
            }
            None => None,
        };
        let outbox = t.require(self, "format", format, "\"debezium\" or \"outbox\"");
        let encoding: Option<CdcEncoding> = self.choice(t, "encoding", CdcEncoding::NAMES);
        let encoding = t.require(self, "encoding", encoding, "\"avro\" or \"json\"").unwrap_or(CdcEncoding::Json);
        let producer = self.string(t, "producer");
        let topic = topic.unwrap_or_default();
        let Some(outbox) = outbox else {
            // The format is wrong or missing (reported): its keys are not unknown on top of that.
            t.known.extend(DEBEZIUM_KEYS.iter().chain(OUTBOX_KEYS));
            return CdcSourceConfig { topic, encoding, producer, format: CdcFormat::Outbox(placeholder_outbox()) };
        };
        let (theirs, their_format) = if outbox { (DEBEZIUM_KEYS, "debezium") } else { (OUTBOX_KEYS, "outbox") };
        for key in theirs {
            if t.has(key) {
                t.known.push(key);
                self.issues.push(
                    Issue::error(t.span_of(key), format!("`{key}` is a key of format = \"{their_format}\""))
                        .hint(format!("remove it, or set `format = \"{their_format}\"`")),
                );
            }
        }
        let format = if outbox { CdcFormat::Outbox(self.outbox(t)) } else { CdcFormat::Debezium(self.debezium(t)) };
        CdcSourceConfig { topic, encoding, producer, format }
    }

    fn debezium(&mut self, t: &mut Table<'_, '_>) -> DebeziumConfig {
        let key = self.strings(t, "key");
        let key = t.require(self, "key", key, "[\"id\"]");
        if key.as_ref().is_some_and(Vec::is_empty) {
            self.issues.push(
                Issue::error(
                    t.span_of("key"),
                    format!("`{}` is empty: the key columns make the aggregate id", display_path(&t.child("key"))),
                )
                .hint("list the table's primary key column(s), e.g. `key = [\"id\"]`"),
            );
        }
        let rule = "a dotted lower-case event type, e.g. \"invoice.changed\"";
        let upsert_event = self.checked_string(t, "upsert_event", valid_event_type, rule);
        let upsert_event = t.require(self, "upsert_event", upsert_event, "\"<declared event type>\"");
        let delete_event = self.checked_string(t, "delete_event", valid_event_type, rule);
        let delete_event = t.require(self, "delete_event", delete_event, "\"<declared event type>\"");
        let decimal_handling = self.choice(t, "decimal_handling", DecimalHandling::NAMES);
        let unavailable_value = self.string(t, "unavailable_value");
        let columns = self.columns(t);
        let columns = t.require(self, "columns", columns, "{ <event field> = \"<column>\", … }");
        DebeziumConfig {
            key: key.unwrap_or_default(),
            upsert_event: upsert_event.unwrap_or_default(),
            delete_event: delete_event.unwrap_or_default(),
            decimal_handling: decimal_handling.unwrap_or_default(),
            unavailable_value: unavailable_value.unwrap_or_else(|| DEBEZIUM_UNAVAILABLE_VALUE.to_owned()),
            columns: columns.unwrap_or_default(),
        }
    }

    /// `[cdc.<name>.columns]`: `field = "column"` or `field = { column = "…", type = "…", … }`.
    /// Every key is an event field, so none is unknown here (validation checks them against the
    /// event schema).
    fn columns(&mut self, t: &mut Table<'_, '_>) -> Option<BTreeMap<String, ColumnMapping>> {
        let section = self.table(t, "columns", Secrets::Other)?;
        if section.entries.is_empty() {
            self.issues.push(Issue::error(
                section.span.clone(),
                format!("`{}` is empty: events would carry no field", display_path(&section.path)),
            ));
        }
        let mut out = BTreeMap::new();
        for (key, value) in section.entries.iter() {
            let field = key.get_ref().to_string();
            let path = section.child(&field);
            match value.get_ref() {
                DeValue::String(column) => {
                    self.spans.insert(&path, value.span());
                    out.insert(field, ColumnMapping::plain(column.to_string()));
                }
                DeValue::Table(entries) => {
                    self.spans.insert(&path, value.span());
                    let mut m = Table::new(path, entries, value.span(), Secrets::Other);
                    let mapping = self.column_mapping(&mut m);
                    m.finish(self);
                    if let Some(mapping) = mapping {
                        out.insert(field, mapping);
                    }
                }
                _ => {
                    self.spans.mark_broken(&path);
                    self.issues.push(
                        Issue::error(
                            value.span(),
                            format!(
                                "`{}` must name a column, or be a table with `column` and `type`",
                                display_path(&path)
                            ),
                        )
                        .hint(format!(
                            "e.g. `{field} = \"{field}\"` or `{field} = {{ column = \"{field}\", type = \"decimal\", scale = 2 }}`"
                        )),
                    );
                }
            }
        }
        Some(out)
    }

    fn column_mapping(&mut self, m: &mut Table<'_, '_>) -> Option<ColumnMapping> {
        let column = self.string(m, "column");
        let column = m.require(self, "column", column, "\"<column>\"");
        let kind: Option<ColumnKind> = self.choice(m, "type", ColumnKind::NAMES);
        let scale = self.uint(m, "scale", 0, MAX_SCALE).and_then(|n| u32::try_from(n).ok());
        let unit: Option<TimeUnit> = self.choice(m, "unit", TimeUnit::NAMES);
        let type_path = m.child("type");
        let type_broken = self.spans.is_broken(&type_path.iter().map(String::as_str).collect::<Vec<_>>());
        if kind == Some(ColumnKind::Decimal) && !m.has("scale") {
            self.issues.push(
                Issue::error(m.span_of("type"), "a decimal column needs its `scale`")
                    .hint("add the column's scale, e.g. `scale = 2` for numeric(12,2)"),
            );
        }
        for (key, applies_to) in [("scale", ColumnKind::Decimal), ("unit", ColumnKind::Timestamp)] {
            if m.has(key) && kind != Some(applies_to) && !type_broken {
                self.issues.push(
                    Issue::error(m.span_of(key), format!("`{key}` applies to `type = \"{applies_to}\"` only"))
                        .hint(format!("remove it, or set `type = \"{applies_to}\"`")),
                );
            }
        }
        Some(ColumnMapping { column: column?, kind, scale, unit })
    }

    fn outbox(&mut self, t: &mut Table<'_, '_>) -> OutboxConfig {
        let event_type = self.field_ref(t, "event_type");
        let event_type = t.require(self, "event_type", event_type, "\"header:eventType\"");
        let version = self.field_ref(t, "version");
        let version = t.require(self, "version", version, "\"field:version\"");
        let event_id = self.field_ref(t, "event_id");
        let occurred_at = self.field_ref(t, "occurred_at");
        let events = self.table(t, "events", Secrets::Other).map(|section| {
            if section.entries.is_empty() {
                self.issues.push(Issue::error(
                    section.span.clone(),
                    format!("`{}` is empty: every outbox event would be refused", display_path(&section.path)),
                ));
            }
            let mut out = BTreeMap::new();
            for (key, value) in section.entries.iter() {
                let outbox_type = key.get_ref().to_string();
                let path = section.child(&outbox_type);
                match value.get_ref() {
                    DeValue::String(s) if valid_event_type(s) => {
                        self.spans.insert(&path, value.span());
                        out.insert(outbox_type, s.to_string());
                    }
                    _ => {
                        self.spans.mark_broken(&path);
                        self.issues.push(Issue::error(
                            value.span(),
                            format!("`{}` must be a sluice event type, e.g. \"invoice.issued\"", display_path(&path)),
                        ));
                    }
                }
            }
            out
        });
        let events = t.require(self, "events", events, "{ <outbox type> = \"<event type>\" }");
        let placeholder = placeholder_outbox();
        OutboxConfig {
            event_type: event_type.unwrap_or(placeholder.event_type),
            version: version.unwrap_or(placeholder.version),
            event_id: event_id.unwrap_or_else(|| FieldRef::Header("id".to_owned())),
            occurred_at: occurred_at.unwrap_or(FieldRef::Timestamp),
            events: events.unwrap_or_default(),
        }
    }

    fn field_ref(&mut self, t: &mut Table<'_, '_>, key: &'static str) -> Option<FieldRef> {
        let text = self.string(t, key)?;
        match text.parse() {
            Ok(r) => Some(r),
            Err(message) => {
                let path = t.child(key);
                self.spans.forget(&path);
                self.issues.push(Issue::error(t.span_of(key), format!("`{}`: {message}", display_path(&path))));
                None
            }
        }
    }
}

/// Outbox settings standing in for wrong ones; never leave validation (an issue was filed).
fn placeholder_outbox() -> OutboxConfig {
    OutboxConfig {
        event_type: FieldRef::Key,
        version: FieldRef::Key,
        event_id: FieldRef::Key,
        occurred_at: FieldRef::Timestamp,
        events: BTreeMap::new(),
    }
}
