//! The walk's primitives: a [`Table`] being read (which keys were asked for, so the rest are
//! unknown), and the [`Walker`] reading typed values out of it (strings, bounded integers, choices,
//! durations, lists, nested tables, named entries), each problem an [`Issue`] at its position.
//! The sections of `topology.toml` are read with these in the sibling modules.

use std::collections::BTreeMap;
use std::ops::Range;
use std::str::FromStr;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::super::diagnostics::{Issue, closest, suggest};
use super::super::duration::{DurationError, HumanDuration};
use super::super::model::FieldSource;
use super::Spans;
use super::names::{article, display_path};

/// Which credentials a key in a table would be, for the hint of a refused credential key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Secrets {
    Connections,
    Couchbase,
    ClickHouse,
    Other,
}

/// If `key` names a credential, the hint saying which variable to use instead.
pub(super) fn credential_hint(secrets: Secrets, key: &str) -> Option<String> {
    let lower = key.to_lowercase();
    let words: Vec<&str> = lower.split(['_', '-', '.']).collect();
    let is_user = words.iter().any(|w| matches!(*w, "user" | "username" | "login"));
    let is_secret = lower.contains("password")
        || words.iter().any(|w| {
            matches!(*w, "passwd" | "pwd" | "pass" | "secret" | "token" | "apikey" | "credential" | "credentials")
        })
        || lower.contains("api_key");
    if !is_user && !is_secret {
        return None;
    }
    let service = match secrets {
        Secrets::Couchbase => Some("COUCHBASE"),
        Secrets::ClickHouse => Some("CLICKHOUSE"),
        Secrets::Connections if words.contains(&"couchbase") => Some("COUCHBASE"),
        Secrets::Connections if words.contains(&"clickhouse") => Some("CLICKHOUSE"),
        _ => None,
    };
    Some(match (service, is_user && !is_secret) {
        (Some("COUCHBASE"), true) => "set SLUICE_COUCHBASE_USERNAME in the environment or the env file instead".into(),
        (Some("CLICKHOUSE"), true) => "set SLUICE_CLICKHOUSE_USER in the environment or the env file instead".into(),
        (Some(service), false) => format!("set SLUICE_{service}_PASSWORD in the environment or the env file instead"),
        _ => "credentials come only from the environment or the env file: SLUICE_COUCHBASE_USERNAME, \
              SLUICE_COUCHBASE_PASSWORD, SLUICE_CLICKHOUSE_USER, SLUICE_CLICKHOUSE_PASSWORD"
            .into(),
    })
}

/// A table being read: remembers which keys were asked for, so that [`Table::finish`] can call
/// every other key unknown and suggest the closest known one.
pub(super) struct Table<'t, 'i> {
    pub(super) path: Vec<String>,
    pub(super) entries: &'t DeTable<'i>,
    pub(super) span: Range<usize>,
    pub(super) known: Vec<&'static str>,
    pub(super) secrets: Secrets,
}

impl<'t, 'i> Table<'t, 'i> {
    pub(super) fn new(path: Vec<String>, entries: &'t DeTable<'i>, span: Range<usize>, secrets: Secrets) -> Self {
        Self { path, entries, span, known: Vec::new(), secrets }
    }

    pub(super) fn name(&self) -> String {
        if self.path.is_empty() { "the top level".into() } else { format!("[{}]", display_path(&self.path)) }
    }

    pub(super) fn child(&self, key: &str) -> Vec<String> {
        let mut path = self.path.clone();
        path.push(key.to_owned());
        path
    }

    pub(super) fn value(&mut self, key: &'static str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.known.push(key);
        self.entries.get(key)
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Where the value of `key` is, or else the table itself.
    pub(super) fn span_of(&self, key: &str) -> Range<usize> {
        self.entries.get(key).map_or_else(|| self.span.clone(), Spanned::span)
    }

    /// Reports that `key` is required and absent (not when it is present but wrong: that was
    /// reported when reading it).
    /// Quiet too when a misspelling of `key` is present: its "did you mean" says it all.
    pub(super) fn require<T>(&self, w: &mut Walker<'_>, key: &str, value: Option<T>, example: &str) -> Option<T> {
        let misspelt = || {
            let others = self.entries.keys().map(|k| k.get_ref().as_ref()).filter(|k| !self.known.contains(k));
            closest(key, others).is_some()
        };
        if value.is_none() && !self.has(key) && !misspelt() {
            w.issues.push(
                Issue::error(self.span.clone(), format!("missing key `{key}` in {}", self.name()))
                    .hint(format!("add `{key} = {example}`")),
            );
        }
        value
    }

    /// Every key not asked for is unknown (or a credential, which gets its own message).
    pub(super) fn finish(self, w: &mut Walker<'_>) {
        for (key, _) in self.entries.iter() {
            let name = key.get_ref().as_ref();
            if self.known.contains(&name) {
                continue;
            }
            let issue = match credential_hint(self.secrets, name) {
                Some(hint) => Issue::error(
                    key.span(),
                    format!("`{name}` is a credential: credentials never go in the topology file, which is committed and shared"),
                )
                .hint(hint),
                None => {
                    let what = if self.path.is_empty() { "section" } else { "key" };
                    Issue::error(key.span(), format!("unknown {what} `{name}` in {}", self.name()))
                        .maybe_hint(suggest(name, &self.known, false))
                }
            };
            w.issues.push(issue);
        }
    }
}

pub(super) struct Walker<'s> {
    pub(super) src: &'s str,
    pub(super) spans: Spans,
    pub(super) issues: Vec<Issue>,
}

impl Walker<'_> {
    pub(super) fn type_error(&mut self, path: &[String], value: &Spanned<DeValue<'_>>, expected: &str) {
        self.spans.mark_broken(path);
        let found = value.get_ref().type_str();
        let key = path.last().map_or("value", String::as_str);
        let raw = self.src.get(value.span()).unwrap_or_default();
        let hint = match (expected, value.get_ref()) {
            ("integer", DeValue::String(s)) if s.trim().parse::<u64>().is_ok() => {
                Some(format!("write `{key} = {}`, without quotes", s.trim()))
            }
            ("string", DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_)) => {
                Some(format!("quote it: `{key} = \"{raw}\"`"))
            }
            ("array", DeValue::String(_)) => Some(format!("write a list: `{key} = [{raw}]`")),
            ("table", _) => Some(format!("write it as a table: `[{}]`", display_path(path))),
            _ => None,
        };
        self.issues.push(
            Issue::error(
                value.span(),
                format!("`{}` must be {}, not {}", display_path(path), article(expected), article(found)),
            )
            .maybe_hint(hint),
        );
    }

    pub(super) fn string(&mut self, t: &mut Table<'_, '_>, key: &'static str) -> Option<String> {
        let value = t.value(key)?;
        let path = t.child(key);
        match value.get_ref() {
            DeValue::String(s) => {
                self.spans.insert(&path, value.span());
                Some(s.to_string())
            }
            _ => {
                self.type_error(&path, value, "string");
                None
            }
        }
    }

    /// A string that must pass `check`; `what` completes "must be …" when it does not.
    pub(super) fn checked_string(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
        check: fn(&str) -> bool,
        what: &str,
    ) -> Option<String> {
        let s = self.string(t, key)?;
        if check(&s) {
            return Some(s);
        }
        let path = t.child(key);
        let span = t.span_of(key);
        self.spans.forget(&path);
        self.issues
            .push(Issue::error(span, format!("`{}` = {s:?} is not valid: it must be {what}", display_path(&path))));
        None
    }

    pub(super) fn uint(&mut self, t: &mut Table<'_, '_>, key: &'static str, min: u64, max: u64) -> Option<u64> {
        let value = t.value(key)?;
        let path = t.child(key);
        let DeValue::Integer(i) = value.get_ref() else {
            self.type_error(&path, value, "integer");
            return None;
        };
        match i64::from_str_radix(i.as_str(), i.radix()).ok().and_then(|n| u64::try_from(n).ok()) {
            Some(n) if (min..=max).contains(&n) => {
                self.spans.insert(&path, value.span());
                Some(n)
            }
            _ => {
                let range =
                    if max == u64::MAX { format!("at least {min}") } else { format!("between {min} and {max}") };
                self.issues.push(Issue::error(
                    value.span(),
                    format!("`{}` = {i} is out of range: it must be {range}", display_path(&path)),
                ));
                None
            }
        }
    }

    /// A value spelled as one of `T::NAMES`.
    pub(super) fn choice<T: FromStr>(&mut self, t: &mut Table<'_, '_>, key: &'static str, names: &[&str]) -> Option<T> {
        let text = self.string(t, key)?;
        if let Ok(v) = text.parse() {
            return Some(v);
        }
        let path = t.child(key);
        let span = t.span_of(key);
        self.spans.forget(&path);
        self.issues.push(
            Issue::error(span, format!("`{}` = {text:?} is not one of the allowed values", display_path(&path)))
                .maybe_hint(suggest(&text, names, true)),
        );
        None
    }

    pub(super) fn parsed_duration<T: FromStr<Err = DurationError>>(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
    ) -> Option<T> {
        if let Some(value) = t.entries.get(key)
            && matches!(value.get_ref(), DeValue::Integer(_) | DeValue::Float(_))
        {
            t.known.push(key);
            let path = t.child(key);
            let raw = self.src.get(value.span()).unwrap_or_default();
            self.issues.push(
                Issue::error(
                    value.span(),
                    format!("`{}` must be a duration like \"30s\", not a number", display_path(&path)),
                )
                .hint(format!("durations carry their unit: `{key} = \"{raw}s\"`, \"{raw}m\", …")),
            );
            return None;
        }
        let text = self.string(t, key)?;
        match text.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                let path = t.child(key);
                let span = t.span_of(key);
                self.spans.forget(&path);
                self.issues.push(Issue::error(span, format!("`{}`: {e}", display_path(&path))));
                None
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
        allow_zero: bool,
    ) -> Option<HumanDuration> {
        let d: HumanDuration = self.parsed_duration(t, key)?;
        if d.is_zero() && !allow_zero {
            let path = t.child(key);
            let span = t.span_of(key);
            self.spans.forget(&path);
            self.issues.push(
                Issue::error(span, format!("`{}` must be longer than zero", display_path(&path)))
                    .hint("leave the key out for no limit"),
            );
            return None;
        }
        Some(d)
    }

    /// A list of strings; each element's range is recorded at `path/<index>`. Duplicates are
    /// errors (they always are a slip). `None` when absent, not a list, or with an element that
    /// is not a string (all reported).
    pub(super) fn strings(&mut self, t: &mut Table<'_, '_>, key: &'static str) -> Option<Vec<String>> {
        let value = t.value(key)?;
        let path = t.child(key);
        let Some(items) = value.get_ref().as_array() else {
            self.type_error(&path, value, "array");
            return None;
        };
        let mut out: Vec<String> = Vec::new();
        let mut well_typed = true;
        for (i, item) in items.iter().enumerate() {
            let mut item_path = path.clone();
            item_path.push(i.to_string());
            match item.get_ref() {
                DeValue::String(s) if out.iter().any(|o| o == s.as_ref()) => {
                    self.issues
                        .push(Issue::error(item.span(), format!("{s:?} appears twice in `{}`", display_path(&path))));
                }
                DeValue::String(s) => {
                    self.spans.insert(&item_path, item.span());
                    out.push(s.to_string());
                }
                _ => {
                    self.type_error(&item_path, item, "string");
                    well_typed = false;
                }
            }
        }
        if !well_typed {
            self.spans.mark_broken(&path);
            return None;
        }
        self.spans.insert(&path, value.span());
        Some(out)
    }

    pub(super) fn table<'t, 'i>(
        &mut self,
        t: &mut Table<'t, 'i>,
        key: &'static str,
        secrets: Secrets,
    ) -> Option<Table<'t, 'i>> {
        let value = t.value(key)?;
        let path = t.child(key);
        match value.get_ref() {
            DeValue::Table(entries) => {
                self.spans.insert(&path, value.span());
                Some(Table::new(path, entries, value.span(), secrets))
            }
            _ => {
                self.type_error(&path, value, "table");
                None
            }
        }
    }

    /// The entries of a map-of-tables section (`[topics.<name>]`), each name checked by
    /// `valid_name`.
    pub(super) fn entities<'t, 'i>(
        &mut self,
        section: &Table<'t, 'i>,
        valid_name: fn(&str) -> bool,
        name_rule: &str,
    ) -> Vec<(String, Table<'t, 'i>)> {
        let mut out = Vec::new();
        for (key, value) in section.entries.iter() {
            let name = key.get_ref().to_string();
            let path = section.child(&name);
            if !valid_name(&name) {
                self.issues.push(Issue::error(key.span(), format!("{name:?} is not a valid name: {name_rule}")));
            }
            match value.get_ref() {
                DeValue::Table(entries) => {
                    self.spans.insert(&path, value.span());
                    out.push((name, Table::new(path, entries, value.span(), Secrets::Other)));
                }
                _ => self.type_error(&path, value, "table"),
            }
        }
        out
    }

    /// The entries of the table under `key` and its path; an empty one is reported (`empty` says
    /// why it is wrong, `empty_hint` what to do), a value that is no table too (then `None`).
    pub(super) fn named_entries<'t>(
        &mut self,
        t: &mut Table<'t, '_>,
        key: &'static str,
        empty: &str,
        empty_hint: &str,
    ) -> Option<(Vec<String>, &'t DeTable<'t>)> {
        let value = t.value(key)?;
        let path = t.child(key);
        let Some(entries) = value.get_ref().as_table() else {
            self.type_error(&path, value, "table");
            return None;
        };
        self.spans.insert(&path, value.span());
        if entries.is_empty() {
            let why = if empty.is_empty() { String::new() } else { format!(": {empty}") };
            self.issues
                .push(Issue::error(value.span(), format!("`{}` is empty{why}", display_path(&path))).hint(empty_hint));
        }
        Some((path, entries))
    }

    /// `key = { name = "event_field" | ["event_field", …] }`: each name takes the first of its
    /// fields the event carries; `empty` and `empty_hint` say why an empty table is wrong.
    pub(super) fn field_sources(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
        empty: &str,
        empty_hint: &str,
    ) -> Option<BTreeMap<String, FieldSource>> {
        let (path, entries) = self.named_entries(t, key, empty, empty_hint)?;
        let mut out = BTreeMap::new();
        for (key, source) in entries.iter() {
            let doc_field = key.get_ref().to_string();
            let mut source_path = path.clone();
            source_path.push(doc_field.clone());
            let names = match source.get_ref() {
                DeValue::String(s) => {
                    // Recorded as element 0, like the first of a list, so the checks see one shape.
                    let mut item_path = source_path.clone();
                    item_path.push("0".to_owned());
                    self.spans.insert(&item_path, source.span());
                    vec![s.to_string()]
                }
                DeValue::Array(items) if !items.is_empty() => {
                    let mut names = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        let mut item_path = source_path.clone();
                        item_path.push(i.to_string());
                        match item.get_ref().as_str() {
                            Some(s) => {
                                self.spans.insert(&item_path, item.span());
                                names.push(s.to_owned());
                            }
                            None => self.type_error(&item_path, item, "string"),
                        }
                    }
                    names
                }
                _ => {
                    self.issues.push(
                        Issue::error(
                            source.span(),
                            format!("`{}` must name an event field, or a list of them", display_path(&source_path)),
                        )
                        .hint(format!("e.g. `{doc_field} = \"{doc_field}\"`")),
                    );
                    continue;
                }
            };
            out.insert(doc_field, FieldSource(names));
        }
        Some(out)
    }
}
