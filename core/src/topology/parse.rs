//! Reading `topology.toml` into the model, reporting every problem of structure at once.
//!
//! The text comes from the caller. It is parsed into `toml`'s spanned tree
//! ([`toml::de::DeTable::parse_recoverable`]), which keeps the byte range of every key and value;
//! this module walks that tree table by table. Unknown keys, wrong types, bad values and missing
//! keys all become [`Issue`]s with their position, and the walk goes on, so one run shows every
//! problem (a derived `Deserialize` stops at the first). Defaults are filled in here; checks that
//! need other sections or the schema files are in [`super::validate`]. Pure code.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::str::FromStr;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::columns::FieldPath;
use super::diagnostics::{Issue, closest, suggest};
use super::duration::{DurationError, HumanDuration, Retention};
use super::model::{
    BackpressureConfig, COUCHBASE_DEFAULT_COLLECTION, CleanupPolicy, ClickHouseSink, Compatibility, ConnectionDefaults,
    CouchbaseSink, DEFAULT_BATCH_SIZE, DEFAULT_KEY, DEFAULT_LINGER, DEFAULT_MAX_IN_FLIGHT, DocumentField, DocumentId,
    EventConfig, FieldSource, KeyMismatchPolicy, MAX_IN_FLIGHT_LIMIT, ProjectionConfig, RegistryConfig, SinkConfig,
    SinkKind, SubjectStrategy, TopicConfig, TopologyConfig,
};
use super::schema::KEY_FIELDS;

mod cdc;
mod clickhouse;

/// Byte ranges of the values read, by path (`["projections", "user_state", "sources", "0"]`).
/// Tables are recorded at their own path (the range of their `[header]` or `{ … }`). A path is
/// present only when its value was read without error, so a cross-check that finds no range
/// knows the problem was already reported.
#[derive(Debug, Default)]
pub(crate) struct Spans(HashMap<String, Range<usize>>, HashSet<String>);

impl Spans {
    fn key<S: AsRef<str>>(path: &[S]) -> String {
        path.iter().map(AsRef::as_ref).collect::<Vec<_>>().join("\u{1f}")
    }

    pub(crate) fn get(&self, path: &[&str]) -> Option<Range<usize>> {
        self.0.get(&Self::key(path)).cloned()
    }

    fn insert(&mut self, path: &[String], span: Range<usize>) {
        self.0.insert(Self::key(path), span);
    }

    /// Marks a value that is present but was wrong (and reported).
    fn mark_broken(&mut self, path: &[String]) {
        self.1.insert(Self::key(path));
    }

    /// Forgets the position of a value found wrong after it was read, and marks it broken.
    fn forget(&mut self, path: &[String]) {
        self.0.remove(&Self::key(path));
        self.mark_broken(path);
    }

    /// True for a value that is present but was wrong, so that a default stands in for it.
    pub(crate) fn is_broken(&self, path: &[&str]) -> bool {
        self.1.contains(&Self::key(path))
    }
}

/// The result of the walk: the model (with placeholders where a value was wrong, which never
/// matters because any issue makes the topology unusable), where each value came from, and the
/// problems found.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) config: TopologyConfig,
    pub(crate) spans: Spans,
    pub(crate) issues: Vec<Issue>,
}

/// Parses topology text. Syntax errors stop the walk: a tree recovered from broken TOML would
/// only add noise.
pub(crate) fn parse(src: &str) -> Parsed {
    let (root, errors) = DeTable::parse_recoverable(src);
    let mut w = Walker { src, spans: Spans::default(), issues: Vec::new() };
    if !errors.is_empty() {
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            w.issues.push(Issue::error(span, format!("invalid TOML: {}", e.message().trim_end())));
        }
        return Parsed { config: TopologyConfig::default(), spans: w.spans, issues: w.issues };
    }
    let mut top = Table::new(Vec::new(), root.get_ref(), 0..0, Secrets::Other);
    let config = w.document(&mut top);
    top.finish(&mut w);
    Parsed { config, spans: w.spans, issues: w.issues }
}

/// Which credentials a key in a table would be, for the hint of a refused credential key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secrets {
    Connections,
    Couchbase,
    ClickHouse,
    Other,
}

/// If `key` names a credential, the hint saying which variable to use instead.
fn credential_hint(secrets: Secrets, key: &str) -> Option<String> {
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

/// A TOML path as written in a header: `projections.user_state`, `events."user.registered"`.
pub(crate) fn display_path<S: AsRef<str>>(path: &[S]) -> String {
    path.iter()
        .map(|s| {
            let s = s.as_ref();
            let bare = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if bare { s.to_owned() } else { format!("{s:?}") }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// "an integer", "a string", … for type errors.
fn article(type_str: &str) -> String {
    match type_str {
        "integer" => "an integer".into(),
        "array" => "a list".into(),
        other => format!("a {other}"),
    }
}

/// Kafka's legal topic names.
pub(crate) fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Projection names end up in group ids and topic names: letters, digits, `_` and `-`.
pub(crate) fn valid_projection_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 200 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// Dotted lower-case event types: `user.registered`, `engagement.page_viewed`.
pub(crate) fn valid_event_type(name: &str) -> bool {
    let mut segments = 0;
    for segment in name.split('.') {
        segments += 1;
        let ok = segment.starts_with(|c: char| c.is_ascii_lowercase())
            && segment.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return false;
        }
    }
    segments >= 2
}

/// Kafka bootstrap servers: `host:port[,host:port…]`.
pub(crate) fn valid_kafka_brokers(brokers: &str) -> bool {
    !brokers.is_empty()
        && brokers
            .split(',')
            .all(|b| b.trim().rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()))
}

/// ClickHouse identifiers we put in DDL unquoted.
pub(crate) fn valid_clickhouse_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Couchbase scope and collection names.
fn valid_couchbase_collection(name: &str) -> bool {
    name == COUCHBASE_DEFAULT_COLLECTION
        || (!name.is_empty()
            && name.len() <= 251
            && !name.starts_with(['_', '%'])
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '%')))
}

/// Couchbase bucket names.
fn valid_couchbase_bucket(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '%'))
}

/// A table being read: remembers which keys were asked for, so that [`Table::finish`] can call
/// every other key unknown and suggest the closest known one.
struct Table<'t, 'i> {
    path: Vec<String>,
    entries: &'t DeTable<'i>,
    span: Range<usize>,
    known: Vec<&'static str>,
    secrets: Secrets,
}

impl<'t, 'i> Table<'t, 'i> {
    fn new(path: Vec<String>, entries: &'t DeTable<'i>, span: Range<usize>, secrets: Secrets) -> Self {
        Self { path, entries, span, known: Vec::new(), secrets }
    }

    fn name(&self) -> String {
        if self.path.is_empty() { "the top level".into() } else { format!("[{}]", display_path(&self.path)) }
    }

    fn child(&self, key: &str) -> Vec<String> {
        let mut path = self.path.clone();
        path.push(key.to_owned());
        path
    }

    fn value(&mut self, key: &'static str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.known.push(key);
        self.entries.get(key)
    }

    fn has(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Where the value of `key` is, or else the table itself.
    fn span_of(&self, key: &str) -> Range<usize> {
        self.entries.get(key).map_or_else(|| self.span.clone(), Spanned::span)
    }

    /// Reports that `key` is required and absent (not when it is present but wrong: that was
    /// reported when reading it).
    /// Quiet too when a misspelling of `key` is present: its "did you mean" says it all.
    fn require<T>(&self, w: &mut Walker<'_>, key: &str, value: Option<T>, example: &str) -> Option<T> {
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
    fn finish(self, w: &mut Walker<'_>) {
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

struct Walker<'s> {
    src: &'s str,
    spans: Spans,
    issues: Vec<Issue>,
}

impl Walker<'_> {
    fn type_error(&mut self, path: &[String], value: &Spanned<DeValue<'_>>, expected: &str) {
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

    fn string(&mut self, t: &mut Table<'_, '_>, key: &'static str) -> Option<String> {
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
    fn checked_string(
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

    fn uint(&mut self, t: &mut Table<'_, '_>, key: &'static str, min: u64, max: u64) -> Option<u64> {
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
    fn choice<T: FromStr>(&mut self, t: &mut Table<'_, '_>, key: &'static str, names: &[&str]) -> Option<T> {
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

    fn parsed_duration<T: FromStr<Err = DurationError>>(
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

    fn duration(&mut self, t: &mut Table<'_, '_>, key: &'static str, allow_zero: bool) -> Option<HumanDuration> {
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
    fn strings(&mut self, t: &mut Table<'_, '_>, key: &'static str) -> Option<Vec<String>> {
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

    fn table<'t, 'i>(&mut self, t: &mut Table<'t, 'i>, key: &'static str, secrets: Secrets) -> Option<Table<'t, 'i>> {
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
    fn entities<'t, 'i>(
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

    fn document(&mut self, top: &mut Table<'_, '_>) -> TopologyConfig {
        let mut config = TopologyConfig::default();
        if let Some(mut t) = self.table(top, "connections", Secrets::Connections) {
            config.connections = self.connections(&mut t);
            t.finish(self);
        }
        if let Some(mut t) = self.table(top, "registry", Secrets::Other) {
            let compatibility = self.choice(&mut t, "compatibility", Compatibility::NAMES);
            config.registry = RegistryConfig { compatibility: compatibility.unwrap_or_default() };
            t.finish(self);
        }
        // Every key of a map-of-tables section is a name, so there is no unknown key to look for.
        if let Some(section) = self.table(top, "topics", Secrets::Other) {
            let rule = "use letters, digits, `.`, `_` and `-` (Kafka's topic names)";
            for (name, mut t) in self.entities(&section, valid_topic_name, rule) {
                let topic = self.topic(&mut t);
                t.finish(self);
                config.topics.insert(name, topic);
            }
        }
        // Every key of a map-of-tables section is a name, so there is no unknown key to look for.
        if let Some(section) = self.table(top, "events", Secrets::Other) {
            let rule = "event types are dotted and lower case, e.g. \"invoice.paid\"";
            for (name, mut t) in self.entities(&section, valid_event_type, rule) {
                let topic = self.string(&mut t, "topic");
                let topic = t.require(self, "topic", topic, "\"<topic name>\"");
                let schema = self.string(&mut t, "schema");
                let schema = t.require(self, "schema", schema, "\"schemas/<file>.avsc\"");
                t.finish(self);
                config
                    .events
                    .insert(name, EventConfig { topic: topic.unwrap_or_default(), schema: schema.unwrap_or_default() });
            }
        }
        // Every key of a map-of-tables section is a name, so there is no unknown key to look for.
        if let Some(section) = self.table(top, "projections", Secrets::Other) {
            let rule = "use letters, digits, `_` and `-`";
            for (name, mut t) in self.entities(&section, valid_projection_name, rule) {
                let projection = self.projection(&name, &mut t);
                t.finish(self);
                config.projections.insert(name, projection);
            }
        }
        // Every key of a map-of-tables section is a name, so there is no unknown key to look for.
        if let Some(section) = self.table(top, "cdc", Secrets::Other) {
            let rule = "use letters, digits, `_` and `-`";
            for (name, mut t) in self.entities(&section, valid_projection_name, rule) {
                let source = self.cdc_source(&mut t);
                t.finish(self);
                config.cdc.insert(name, source);
            }
        }
        config
    }

    fn connections(&mut self, t: &mut Table<'_, '_>) -> ConnectionDefaults {
        let kafka_brokers = self.checked_string(t, "kafka_brokers", valid_kafka_brokers, "host:port[,host:port…]");
        let schema_registry_url = self.url(t, "schema_registry_url", &["http://", "https://"]);
        let couchbase_connstr = self.url(t, "couchbase_connstr", &["couchbase://", "couchbases://"]);
        let couchbase_bucket =
            self.checked_string(t, "couchbase_bucket", valid_couchbase_bucket, "a Couchbase bucket name");
        let clickhouse_url = self.url(t, "clickhouse_url", &["http://", "https://"]);
        let clickhouse_database = self.checked_string(
            t,
            "clickhouse_database",
            valid_clickhouse_identifier,
            "a ClickHouse identifier (letters, digits, `_`)",
        );
        ConnectionDefaults {
            kafka_brokers,
            schema_registry_url,
            couchbase_connstr,
            couchbase_bucket,
            clickhouse_url,
            clickhouse_database,
        }
    }

    /// A URL with one of `schemes`, and no credentials in it.
    fn url(&mut self, t: &mut Table<'_, '_>, key: &'static str, schemes: &[&str]) -> Option<String> {
        let url = self.string(t, key)?;
        let path = t.child(key);
        let span = t.span_of(key);
        let Some(rest) = schemes.iter().find_map(|s| url.strip_prefix(s)) else {
            self.spans.forget(&path);
            self.issues.push(Issue::error(
                span,
                format!("`{}` = {url:?} must start with {}", display_path(&path), schemes.join(" or ")),
            ));
            return None;
        };
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.contains('@') {
            self.spans.forget(&path);
            self.issues.push(
                Issue::error(
                    span,
                    format!("`{}` has credentials in it: they never go in the topology file", display_path(&path)),
                )
                .maybe_hint(credential_hint(Secrets::Connections, &format!("{key}_password"))),
            );
            return None;
        }
        Some(url)
    }

    fn topic(&mut self, t: &mut Table<'_, '_>) -> TopicConfig {
        let partitions = self.uint(t, "partitions", 1, 1_000_000);
        let partitions = t.require(self, "partitions", partitions, "3");
        // Kafka stores the replication factor as an int16.
        let replication_factor = self.uint(t, "replication_factor", 1, 32_767);
        let replication_factor = t.require(self, "replication_factor", replication_factor, "1");
        let cleanup_policy = self.choice(t, "cleanup_policy", CleanupPolicy::NAMES);
        let retention: Option<Retention> = self.parsed_duration(t, "retention");
        if let Some(Retention::For(d)) = retention
            && d.is_zero()
        {
            let span = t.span_of("retention");
            self.issues.push(
                Issue::error(span, format!("`{}` must be longer than zero", display_path(&t.child("retention"))))
                    .hint("write \"forever\" to keep records forever, or leave it out for the broker's default"),
            );
        }
        let key = self.string(t, "key");
        if let Some(k) = &key
            && !KEY_FIELDS.contains(&k.as_str())
        {
            let span = t.span_of("key");
            self.issues.push(
                Issue::error(
                    span,
                    format!("`{}` = {k:?} is not an envelope field that is never null", display_path(&t.child("key"))),
                )
                .maybe_hint(suggest(k, KEY_FIELDS, true)),
            );
        }
        let subject_strategy = self.choice(t, "subject_strategy", SubjectStrategy::NAMES);
        let key_mismatch = self.choice(t, "key_mismatch", KeyMismatchPolicy::NAMES);
        TopicConfig {
            partitions: partitions.and_then(|n| u32::try_from(n).ok()).unwrap_or(1),
            replication_factor: replication_factor.and_then(|n| u16::try_from(n).ok()).unwrap_or(1),
            cleanup_policy: cleanup_policy.unwrap_or_default(),
            retention,
            key: key.unwrap_or_else(|| DEFAULT_KEY.to_owned()),
            subject_strategy: subject_strategy.unwrap_or_default(),
            key_mismatch: key_mismatch.unwrap_or_default(),
        }
    }

    fn projection(&mut self, name: &str, t: &mut Table<'_, '_>) -> ProjectionConfig {
        let group = self.string(t, "group").unwrap_or_else(|| format!("sluice.{name}"));
        let sources = self.strings(t, "sources");
        let sources = t.require(self, "sources", sources, "[\"<topic>\"]");
        if sources.as_ref().is_some_and(Vec::is_empty) {
            self.issues.push(Issue::error(
                t.span_of("sources"),
                format!("`{}` is empty: a projection consumes at least one topic", display_path(&t.child("sources"))),
            ));
        }
        let events = self.strings(t, "events");
        if events.as_ref().is_some_and(Vec::is_empty) {
            self.issues.push(
                Issue::error(
                    t.span_of("events"),
                    format!("`{}` is empty: the projection would fold nothing", display_path(&t.child("events"))),
                )
                .hint("leave `events` out to fold every event type of the sources"),
            );
        }
        let kind: Option<SinkKind> = self.choice(t, "sink", SinkKind::NAMES);
        let kind = t.require(self, "sink", kind, "\"couchbase\" or \"clickhouse\"");
        let batch_size = self.uint(t, "batch_size", 1, u64::from(u32::MAX));
        let linger = self.duration(t, "linger", true);
        let max_in_flight = self.uint(t, "max_in_flight", 1, u64::from(MAX_IN_FLIGHT_LIMIT));
        let dlq_topic = self.checked_string(t, "dlq_topic", valid_topic_name, "a Kafka topic name");
        let backpressure = match self.table(t, "backpressure", Secrets::Other) {
            Some(mut b) => {
                let config = self.backpressure(&mut b);
                b.finish(self);
                config
            }
            None => BackpressureConfig::default(),
        };
        let couchbase = self.table(t, "couchbase", Secrets::Couchbase).map(|mut c| {
            let sink = self.couchbase(&mut c);
            c.finish(self);
            sink
        });
        let clickhouse = self.table(t, "clickhouse", Secrets::ClickHouse).map(|mut c| {
            let sink = self.clickhouse(&mut c);
            c.finish(self);
            sink
        });
        let sink = self.sink(t, kind, couchbase, clickhouse);
        ProjectionConfig {
            group,
            sources: sources.unwrap_or_default(),
            events: events.unwrap_or_default(),
            batch_size: batch_size.and_then(|n| u32::try_from(n).ok()).unwrap_or(DEFAULT_BATCH_SIZE),
            linger: linger.unwrap_or(DEFAULT_LINGER),
            max_in_flight: max_in_flight.and_then(|n| u32::try_from(n).ok()).unwrap_or(DEFAULT_MAX_IN_FLIGHT),
            dlq_topic: dlq_topic.unwrap_or_else(|| format!("{name}.dlq")),
            backpressure,
            sink,
        }
    }

    /// Matches `sink = "…"` with the sink blocks present.
    fn sink(
        &mut self,
        t: &Table<'_, '_>,
        kind: Option<SinkKind>,
        couchbase: Option<CouchbaseSink>,
        clickhouse: Option<ClickHouseSink>,
    ) -> SinkConfig {
        let stray = |w: &mut Self, block: &str, kind: SinkKind| {
            w.issues.push(
                Issue::error(
                    t.span_of(block),
                    format!("[{}] given, but the projection's sink is \"{kind}\"", display_path(&t.child(block))),
                )
                .hint(format!("remove the block, or set `sink = \"{block}\"`")),
            );
        };
        let missing = |w: &mut Self, kind: SinkKind| {
            w.issues.push(
                Issue::error(
                    t.span_of("sink"),
                    format!("`sink = \"{kind}\"` needs a [{}] block", display_path(&t.child(kind.as_str()))),
                )
                .hint(match kind {
                    SinkKind::Couchbase => "add the block with at least `document_id = \"<entity>::{aggregate_id}\"`",
                    SinkKind::ClickHouse => "add the block with at least `table = \"events\"`",
                }),
            );
        };
        match kind {
            Some(SinkKind::Couchbase) => {
                if clickhouse.is_some() {
                    stray(self, "clickhouse", SinkKind::Couchbase);
                }
                match couchbase {
                    Some(couchbase) => SinkConfig::Couchbase { couchbase },
                    None => {
                        missing(self, SinkKind::Couchbase);
                        placeholder_sink()
                    }
                }
            }
            Some(SinkKind::ClickHouse) => {
                if couchbase.is_some() {
                    stray(self, "couchbase", SinkKind::ClickHouse);
                }
                match clickhouse {
                    Some(clickhouse) => SinkConfig::ClickHouse { clickhouse },
                    None => {
                        missing(self, SinkKind::ClickHouse);
                        placeholder_sink()
                    }
                }
            }
            // `sink` is wrong or missing (reported): keep a block, if any, for the cross-checks.
            None => match (couchbase, clickhouse) {
                (Some(couchbase), _) => SinkConfig::Couchbase { couchbase },
                (None, Some(clickhouse)) => SinkConfig::ClickHouse { clickhouse },
                (None, None) => placeholder_sink(),
            },
        }
    }

    fn backpressure(&mut self, t: &mut Table<'_, '_>) -> BackpressureConfig {
        let soft_lag = self.uint(t, "soft_lag", 1, u64::MAX);
        let hard_lag = self.uint(t, "hard_lag", 1, u64::MAX);
        let soft_lag_age = self.duration(t, "soft_lag_age", false);
        let hard_lag_age = self.duration(t, "hard_lag_age", false);
        let critical_events = self.strings(t, "critical_events").unwrap_or_default();
        let mut ordered = |soft: &'static str, hard: &'static str, pair: Option<(String, String)>| {
            if let Some((s, h)) = pair {
                self.issues.push(
                    Issue::error(t.span_of(hard), format!("`{hard}` ({h}) must be above `{soft}` ({s})"))
                        .hint("past the soft threshold intake slows down; past the hard one it refuses events"),
                );
            }
        };
        ordered(
            "soft_lag",
            "hard_lag",
            soft_lag.zip(hard_lag).filter(|(s, h)| s >= h).map(|(s, h)| (s.to_string(), h.to_string())),
        );
        ordered(
            "soft_lag_age",
            "hard_lag_age",
            soft_lag_age.zip(hard_lag_age).filter(|(s, h)| s >= h).map(|(s, h)| (s.to_string(), h.to_string())),
        );
        BackpressureConfig { soft_lag, hard_lag, soft_lag_age, hard_lag_age, critical_events }
    }

    fn couchbase(&mut self, t: &mut Table<'_, '_>) -> CouchbaseSink {
        let collection_rule = "a Couchbase scope or collection name (letters, digits, `_`, `-`, `%`; not starting with `_` or `%` unless `_default`)";
        let bucket = self.checked_string(t, "bucket", valid_couchbase_bucket, "a Couchbase bucket name");
        let scope = self.checked_string(t, "scope", valid_couchbase_collection, collection_rule);
        let collection = self.checked_string(t, "collection", valid_couchbase_collection, collection_rule);
        let document_id = self.string(t, "document_id").and_then(|text| match DocumentId::parse(&text) {
            Ok(id) => Some(id),
            Err(e) => {
                let span = t.span_of("document_id");
                let at = string_offset(self.src, span, &text, e.offset, 1);
                self.issues.push(Issue::error(at, format!("`document_id`: {}", e.message)));
                None
            }
        });
        let document_id = t.require(self, "document_id", document_id, "\"<entity>::{aggregate_id}\"");
        let ttl = self.duration(t, "ttl", false);
        let erase_on = self.strings(t, "erase_on").unwrap_or_default();
        let fields = self.fields(t);
        CouchbaseSink {
            bucket,
            scope: scope.unwrap_or_else(|| COUCHBASE_DEFAULT_COLLECTION.to_owned()),
            collection: collection.unwrap_or_else(|| COUCHBASE_DEFAULT_COLLECTION.to_owned()),
            document_id: document_id.unwrap_or_else(DocumentId::missing),
            ttl,
            erase_on,
            fields,
        }
    }

    /// `fields = { doc_field = "path" | ["path", …] | { set_by = […], cleared_by = […] } }`: each
    /// path's range is recorded at `fields/<doc_field>/<index>` (a single one as index 0).
    fn fields(&mut self, t: &mut Table<'_, '_>) -> Option<BTreeMap<String, DocumentField>> {
        let value = t.value("fields")?;
        let path = t.child("fields");
        let Some(entries) = value.get_ref().as_table() else {
            self.type_error(&path, value, "table");
            return None;
        };
        self.spans.insert(&path, value.span());
        if entries.is_empty() {
            self.issues.push(
                Issue::error(
                    value.span(),
                    format!("`{}` is empty: documents would get no fields", display_path(&path)),
                )
                .hint("leave `fields` out to merge every payload field of each event into the document"),
            );
        }
        let mut out = BTreeMap::new();
        for (key, source) in entries.iter() {
            let doc_field = key.get_ref().to_string();
            let mut source_path = path.clone();
            source_path.push(doc_field.clone());
            let items: Vec<(usize, &Spanned<DeValue<'_>>)> = match source.get_ref() {
                DeValue::String(_) => vec![(0, source)],
                DeValue::Array(items) if !items.is_empty() => items.iter().enumerate().collect(),
                DeValue::Table(entries) => {
                    self.spans.insert(&source_path, source.span());
                    let mut flag = Table::new(source_path.clone(), entries, source.span(), Secrets::Other);
                    let set_by = self.strings(&mut flag, "set_by").unwrap_or_default();
                    let cleared_by = self.strings(&mut flag, "cleared_by").unwrap_or_default();
                    flag.finish(self);
                    // Any other key was reported as unknown, with what it likely meant.
                    if entries.is_empty() {
                        self.issues.push(
                            Issue::error(
                                source.span(),
                                format!("flag `{}` needs `set_by` or `cleared_by`", display_path(&source_path)),
                            )
                            .hint(format!(
                                "e.g. `{doc_field} = {{ set_by = [\"order.shipped\"], cleared_by = [\"order.returned\"] }}`"
                            )),
                        );
                    }
                    out.insert(doc_field, DocumentField::Flag { set_by, cleared_by });
                    continue;
                }
                _ => {
                    self.issues.push(
                        Issue::error(
                            source.span(),
                            format!(
                                "`{}` must name an event field, a list of them, or be a flag `{{ set_by = […], cleared_by = […] }}`",
                                display_path(&source_path)
                            ),
                        )
                        .hint(format!("e.g. `{doc_field} = \"{doc_field}\"`")),
                    );
                    continue;
                }
            };
            let mut paths = Vec::new();
            for (i, item) in items {
                let mut item_path = source_path.clone();
                item_path.push(i.to_string());
                match item.get_ref().as_str() {
                    Some(text) => match FieldPath::parse(text) {
                        Some(field) => {
                            self.spans.insert(&item_path, item.span());
                            paths.push(field);
                        }
                        None => {
                            self.spans.mark_broken(&item_path);
                            self.issues.push(
                                Issue::error(
                                    item.span(),
                                    format!("{text:?} in `{}` is not a field path", display_path(&source_path)),
                                )
                                .hint(
                                    "write a field (\"total\"), a nested one (\"customer.id\"), an array \
                                     element (\"items[0].sku\") or every element (\"items[].sku\")",
                                ),
                            );
                        }
                    },
                    None => self.type_error(&item_path, item, "string"),
                }
            }
            out.insert(doc_field, DocumentField::First(paths));
        }
        Some(out)
    }

    /// The entries of the table under `key` and its path; an empty one is reported (`empty` says
    /// why it is wrong, `empty_hint` what to do), a value that is no table too (then `None`).
    fn named_entries<'t>(
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
    fn field_sources(
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

/// A sink standing in for a missing one; never leaves the module's callers (an issue is filed).
fn placeholder_sink() -> SinkConfig {
    SinkConfig::ClickHouse { clickhouse: ClickHouseSink::new(String::new()) }
}

/// The range of `text[offset..offset + len]` inside the TOML string literal at `span`, when the
/// literal is written without escapes (then its bytes are the text's); else the whole literal.
pub(crate) fn string_offset(src: &str, span: Range<usize>, text: &str, offset: usize, len: usize) -> Range<usize> {
    let inner = src.get(span.start + 1..span.end.saturating_sub(1));
    if inner == Some(text) && offset + len <= text.len() {
        let at = span.start + 1 + offset;
        at..at + len
    } else {
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_topic_name("user_state.dlq"));
        assert!(!valid_topic_name("a b"));
        assert!(!valid_topic_name(".."));
        assert!(valid_event_type("engagement.page_viewed"));
        assert!(!valid_event_type("registered"));
        assert!(!valid_event_type("User.Registered"));
        assert!(!valid_event_type("user..registered"));
        assert!(valid_couchbase_collection("_default"));
        assert!(!valid_couchbase_collection("_system"));
        assert!(valid_clickhouse_identifier("users_current"));
        assert!(!valid_clickhouse_identifier("events; DROP TABLE x"));
    }

    #[test]
    fn paths_print_like_headers() {
        assert_eq!(display_path(&["events", "user.registered", "topic"]), "events.\"user.registered\".topic");
        assert_eq!(display_path(&["projections", "user_state"]), "projections.user_state");
    }

    #[test]
    fn credentials_are_recognised() {
        let hint = |s, k| credential_hint(s, k).unwrap_or_default();
        assert!(hint(Secrets::Connections, "couchbase_password").contains("SLUICE_COUCHBASE_PASSWORD"));
        assert!(hint(Secrets::Connections, "clickhouse_user").contains("SLUICE_CLICKHOUSE_USER"));
        assert!(hint(Secrets::Couchbase, "username").contains("SLUICE_COUCHBASE_USERNAME"));
        assert!(hint(Secrets::ClickHouse, "password").contains("SLUICE_CLICKHOUSE_PASSWORD"));
        assert!(hint(Secrets::Other, "api_token").contains("SLUICE_COUCHBASE_PASSWORD"));
        assert_eq!(credential_hint(Secrets::Other, "users"), None);
        assert_eq!(credential_hint(Secrets::Couchbase, "collection"), None);
    }

    #[test]
    fn offsets_inside_string_literals() {
        let src = r#"id = "user::{x}""#;
        assert_eq!(string_offset(src, 5..16, "user::{x}", 6, 3), 12..15);
        let escaped = r#"id = "user\u003a:{x}""#;
        assert_eq!(string_offset(escaped, 5..21, "user::{x}", 6, 3), 5..21);
    }
}
