//! Which subjects are sluice event schemas, how each is named in the registry, and what its event
//! type is called.
//!
//! A subject's latest schema goes through the same envelope check as `topology check`
//! ([`inspect`]); what passes becomes a [`Candidate`] with the `event_type` default it declares.
//! Names are derived here too (snake case, dotted, valid for the parser). Pure code.

use apache_avro::Schema;

use super::super::parse::valid_event_type;
use super::super::schema::{EventSchema, SchemaError, inspect};
use super::RegistrySubject;

/// A subject whose latest schema is a sluice event schema.
#[derive(Debug)]
pub(super) struct Candidate<'a> {
    /// The subject and its versions.
    pub(super) subject: &'a RegistrySubject,
    /// The checked schema.
    pub(super) schema: EventSchema,
    /// The string default of the `event_type` field, as written.
    pub(super) default_type: Option<String>,
}

/// How a subject is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SubjectName<'s> {
    /// `<topic>-value` (TopicNameStrategy).
    TopicValue(&'s str),
    /// The record's full name (RecordNameStrategy).
    Record,
    /// Neither.
    Other,
}

impl Candidate<'_> {
    /// How the subject is named.
    pub(super) fn naming(&self) -> SubjectName<'_> {
        let subject = self.subject.subject.as_str();
        if subject == self.schema.record_name {
            SubjectName::Record
        } else if let Some(topic) = subject.strip_suffix("-value").filter(|t| !t.is_empty()) {
            SubjectName::TopicValue(topic)
        } else {
            SubjectName::Other
        }
    }
}

/// Classifies one subject by its latest schema: a sluice event schema, or why it is none.
pub(super) fn classify(subject: &RegistrySubject) -> Result<Candidate<'_>, String> {
    if let Some(topic) = subject.subject.strip_suffix("-key") {
        return Err(format!("the schema of topic {topic}'s record keys (`<topic>-key`)"));
    }
    match inspect(&subject.schema) {
        Ok(schema) => {
            let default_type = match &schema.schema {
                Schema::Record(record) => record
                    .fields
                    .iter()
                    .find(|f| f.name == "event_type")
                    .and_then(|f| f.default.as_ref())
                    .and_then(|d| d.as_str())
                    .map(str::to_owned),
                _ => None,
            };
            Ok(Candidate { subject, schema, default_type })
        }
        Err(SchemaError::Envelope(problems)) if problems.iter().filter(|p| p.ends_with("is missing")).count() > 5 => {
            Err("a record without sluice's envelope fields".to_owned())
        }
        Err(e) => {
            let mut problems = e.messages();
            if problems.len() > 3 {
                let more = problems.len() - 2;
                problems.truncate(2);
                problems.push(format!("{more} more"));
            }
            Err(problems.join("; "))
        }
    }
}

/// `UserRegistered` → `user_registered`, `HTTPRequest` → `http_request`, `orders-v2` →
/// `orders_v2`: lower case ASCII letters, digits and single `_`, never at either end.
pub(super) fn snake_case(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).and_then(|p| chars.get(p));
            let next = chars.get(i + 1);
            let boundary = prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(char::is_ascii_uppercase) && next.is_some_and(char::is_ascii_lowercase));
            if boundary {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if !(c == '_' && (collapsed.is_empty() || collapsed.ends_with('_'))) {
            collapsed.push(c);
        }
    }
    collapsed.trim_end_matches('_').to_owned()
}

/// One segment of an event type made from `text`: snake case, starting with a letter.
fn segment(text: &str) -> Option<String> {
    let s = snake_case(text);
    match s.chars().next() {
        None => None,
        Some(c) if c.is_ascii_lowercase() => Some(s),
        Some(_) => Some(format!("e_{s}")),
    }
}

/// The names an event type of record `full_name` (on `topic`, if bound) may take, best first:
/// `<namespace's last segment>.<record>`, `<whole namespace>.<record>`, then numbered. Without a
/// namespace the topic stands in for it (and `events` without a topic).
pub(super) fn derived_names(full_name: &str, topic: Option<&str>) -> impl Iterator<Item = String> {
    let (namespace, name) = match full_name.rsplit_once('.') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, full_name),
    };
    let name = segment(name).unwrap_or_else(|| "event".to_owned());
    let prefixes: Vec<String> = match namespace {
        Some(ns) => {
            let parts: Vec<String> = ns.split('.').filter_map(segment).collect();
            let mut prefixes: Vec<String> = parts.last().cloned().into_iter().collect();
            if parts.len() > 1 {
                prefixes.push(parts.join("."));
            }
            prefixes
        }
        None => Vec::new(),
    };
    let mut prefixes = if prefixes.is_empty() {
        vec![topic.and_then(segment).unwrap_or_else(|| "events".to_owned())]
    } else {
        prefixes
    };
    if prefixes.is_empty() {
        prefixes.push("events".to_owned());
    }
    let first = format!("{}.{name}", prefixes[0]);
    let plain: Vec<String> = prefixes.iter().map(|p| format!("{p}.{name}")).collect();
    let numbered = (2u32..).map(move |n| format!("{first}_{n}"));
    plain.into_iter().chain(numbered).filter(|n| valid_event_type(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_cases() {
        assert_eq!(snake_case("UserRegistered"), "user_registered");
        assert_eq!(snake_case("HTTPRequestSent"), "http_request_sent");
        assert_eq!(snake_case("already_snake"), "already_snake");
        assert_eq!(snake_case("orders-v2"), "orders_v2");
        assert_eq!(snake_case("legacy.public.users"), "legacy_public_users");
        assert_eq!(snake_case("User2Fa"), "user2_fa");
        assert_eq!(snake_case("__x__"), "x");
        assert_eq!(snake_case("Ünïcode"), "n_code");
    }

    #[test]
    fn derived_names_are_valid_and_ordered() {
        let names: Vec<String> = derived_names("sluice.users.UserRegistered", None).take(4).collect();
        assert_eq!(
            names,
            [
                "users.user_registered",
                "sluice.users.user_registered",
                "users.user_registered_2",
                "users.user_registered_3"
            ]
        );
        let first = |full: &str, topic: Option<&str>| derived_names(full, topic).next().unwrap_or_default();
        assert_eq!(first("Ping", Some("pings-v2")), "pings_v2.ping");
        assert_eq!(first("Ping", None), "events.ping");
        assert_eq!(first("Ping", Some("2024")), "e_2024.ping");
        assert_eq!(first("com.Acme.Orders.OrderPlaced", None), "orders.order_placed");
        assert_eq!(first("a.b.C9", None), "b.c9");
        assert!(derived_names("x.Y", None).take(50).all(|n| valid_event_type(&n)));
    }
}
