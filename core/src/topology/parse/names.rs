//! The names and paths the walk checks and prints: TOML paths as written in a header, and which
//! topic, projection, event type, ClickHouse and Couchbase names are valid.

use super::super::model::COUCHBASE_DEFAULT_COLLECTION;

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
pub(super) fn article(type_str: &str) -> String {
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
pub(super) fn valid_couchbase_collection(name: &str) -> bool {
    name == COUCHBASE_DEFAULT_COLLECTION
        || (!name.is_empty()
            && name.len() <= 251
            && !name.starts_with(['_', '%'])
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '%')))
}

/// Couchbase bucket names.
pub(super) fn valid_couchbase_bucket(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '%'))
}
