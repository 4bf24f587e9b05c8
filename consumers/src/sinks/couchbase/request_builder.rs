//! From a decoded event to what the Couchbase sink does with it: which document, and what change.
//!
//! Input is one [`Event`] (from the worker's decoder) and the projection's
//! `[projections.<name>.couchbase]` block; output is a [`DocumentChange`]: the document key
//! rendered from the `document_id` template, and the [`FoldEvent`] that [`sluice_core::fold`]
//! applies to that document's stored state in [`super::sink`]. An event that yields no usable key
//! is a [`RequestError`], which the sink reports as a per-event rejection (to the DLQ). Pure code:
//! no I/O, unit-tested here.

use serde_json::{Map, Value};
use sluice_core::calendar::{Unit, format_date_time};
use sluice_core::event::Event;
use sluice_core::fold::{Change, FoldEvent, META_KEY};
use sluice_core::state::first_set_at;
use sluice_core::topology::columns::{FieldPath, Step};
use sluice_core::topology::{CouchbaseSink, DocumentField};

/// Suffix of the side document that keeps an erased entity's tombstone: `<document id>::erased`.
pub const TOMBSTONE_SUFFIX: &str = "::erased";

/// The longest key Couchbase takes in a named collection (250 bytes, less the collection-id
/// prefix the SDK reserves; in `_default` it would be 250, we hold every collection to 246).
pub const MAX_KEY_BYTES: usize = 246;

/// What one event does: the document it changes and the change, ready for the fold.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentChange {
    /// The document key.
    pub document_id: String,
    /// The change, versioned by the event's `aggregate_version`.
    pub fold: FoldEvent,
}

/// Why an event cannot be applied: permanent, the event goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A placeholder of the key template names a field the event does not carry.
    #[error("document id `{template}` needs field `{field}`, which the event does not carry")]
    MissingIdField {
        /// The template.
        template: String,
        /// The placeholder.
        field: String,
    },
    /// A placeholder's field is null in this event.
    #[error("document id `{template}` needs field `{field}`, which is null in this event")]
    NullIdField {
        /// The template.
        template: String,
        /// The placeholder.
        field: String,
    },
    /// A placeholder's field is neither a string nor a number.
    #[error("document id `{template}` needs field `{field}` as a string or number, but it is {kind}")]
    IdFieldType {
        /// The template.
        template: String,
        /// The placeholder.
        field: String,
        /// What it is instead (`a boolean`, `an array`, `an object`).
        kind: &'static str,
    },
    /// The rendered key is empty.
    #[error("document id `{template}` renders to an empty key for this event")]
    EmptyId {
        /// The template.
        template: String,
    },
    /// The rendered key (with room for the tombstone suffix) is longer than Couchbase allows.
    #[error(
        "document id {id:?} is {len} bytes; Couchbase keys are at most {MAX_KEY_BYTES} bytes and \
         sluice needs {} of them for the `{TOMBSTONE_SUFFIX}` tombstone",
        TOMBSTONE_SUFFIX.len()
    )]
    IdTooLong {
        /// The key, cut to its first 64 characters.
        id: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The rendered key ends like a tombstone's key, so it could collide with one.
    #[error("document id {id:?} ends with `{TOMBSTONE_SUFFIX}`, which sluice reserves for erase tombstones")]
    ReservedId {
        /// The key.
        id: String,
    },
}

/// Builds the change `event` makes under the projection's Couchbase settings.
pub fn build(sink: &CouchbaseSink, event: &Event) -> Result<DocumentChange, RequestError> {
    Ok(DocumentChange { document_id: document_id(sink, event)?, fold: fold_event(sink, event) })
}

/// The key of the tombstone document kept for an erased `document_id`.
pub fn tombstone_id(document_id: &str) -> String {
    format!("{document_id}{TOMBSTONE_SUFFIX}")
}

/// Renders the `document_id` template from the event's fields: strings as they are, numbers in
/// their JSON spelling; anything else (missing, null, boolean, array, object) has no key.
pub fn document_id(sink: &CouchbaseSink, event: &Event) -> Result<String, RequestError> {
    let template = &sink.document_id;
    let mut problem = None;
    let rendered = template.render(|field| match event.field(field) {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        other => {
            problem = Some((field.to_owned(), other));
            None
        }
    });
    let id = match (rendered, problem) {
        (Ok(id), _) => id,
        (Err(field), None) => {
            // `render` reports a field only after our closure refused it; keep a sane message anyway.
            return Err(RequestError::MissingIdField { template: template.to_string(), field: field.to_owned() });
        }
        (Err(_), Some((field, value))) => {
            let template = template.to_string();
            return Err(match value {
                None => RequestError::MissingIdField { template, field },
                Some(Value::Null) => RequestError::NullIdField { template, field },
                Some(Value::Bool(_)) => RequestError::IdFieldType { template, field, kind: "a boolean" },
                Some(Value::Array(_)) => RequestError::IdFieldType { template, field, kind: "an array" },
                Some(_) => RequestError::IdFieldType { template, field, kind: "an object" },
            });
        }
    };
    if id.is_empty() {
        return Err(RequestError::EmptyId { template: template.to_string() });
    }
    // Every key leaves room for its tombstone's suffix, so an erase can never fail on length.
    if id.len() + TOMBSTONE_SUFFIX.len() > MAX_KEY_BYTES {
        return Err(RequestError::IdTooLong { id: id.chars().take(64).collect(), len: id.len() });
    }
    if id.ends_with(TOMBSTONE_SUFFIX) {
        return Err(RequestError::ReservedId { id });
    }
    Ok(id)
}

/// The fold event: an erase when the event type is in `erase_on`, otherwise the mapped fields.
pub fn fold_event(sink: &CouchbaseSink, event: &Event) -> FoldEvent {
    let change = if sink.erase_on.contains(&event.envelope.event_type) {
        Change::Erase
    } else {
        Change::Set(mapped_fields(sink, event))
    };
    FoldEvent { version: event.envelope.aggregate_version, change, position: event.position.clone() }
}

/// The document fields this event sets. With a `fields` mapping: each document field takes the
/// first of its candidates (an envelope field, or a path into the payload: `customer.id`,
/// `items[0].sku`) the event carries with a non-null value — [`sluice_core::state::first_set`],
/// the rule of the ClickHouse state tables — and is left out when there is none; a flag is `true`
/// for an event of a `set_by` type, `false` for a `cleared_by` one, left out for any other.
/// Without a mapping: every non-null payload field under its own name. Null always means
/// "unchanged", never "clear".
///
/// A document shows every timestamp alike: the envelope's `occurred_at` (integer milliseconds in
/// the event) as the RFC 3339 text payload timestamps read as, so `updated_at = ["updated_at",
/// "occurred_at"]` has one form whichever candidate set it.
pub fn mapped_fields(sink: &CouchbaseSink, event: &Event) -> Map<String, Value> {
    match &sink.fields {
        Some(mapping) => mapping
            .iter()
            .filter(|(doc_field, _)| doc_field.as_str() != META_KEY)
            .filter_map(|(doc_field, source)| {
                let value = match source {
                    DocumentField::First(paths) => match first_set_at(event, paths)? {
                        (path, _) if is_occurred_at(path) => {
                            Value::String(format_date_time(event.envelope.occurred_at, Unit::Millis, true))
                        }
                        (_, value) => value.into_owned(),
                    },
                    DocumentField::Flag { set_by, cleared_by } => {
                        let event_type = &event.envelope.event_type;
                        if set_by.contains(event_type) {
                            Value::Bool(true)
                        } else if cleared_by.contains(event_type) {
                            Value::Bool(false)
                        } else {
                            return None;
                        }
                    }
                };
                Some((doc_field.clone(), value))
            })
            .collect(),
        None => event
            .payload
            .iter()
            .filter(|(name, value)| !value.is_null() && name.as_str() != META_KEY)
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
    }
}

/// Whether `path` is the envelope's `occurred_at`.
fn is_occurred_at(path: &FieldPath) -> bool {
    matches!(path.0.as_slice(), [Step::Field(name)] if name == "occurred_at")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::json;
    use sluice_core::event::{Envelope, Position};
    use sluice_core::topology::columns::FieldPath;
    use sluice_core::topology::{CouchbaseDurability, DocumentId, HumanDuration, OnErase};

    use super::*;

    fn first(paths: &[&str]) -> DocumentField {
        DocumentField::First(paths.iter().map(|p| FieldPath::parse(p).expect("path")).collect())
    }

    fn user_sink() -> CouchbaseSink {
        let fields: BTreeMap<String, DocumentField> = [
            ("email", first(&["email", "new_email"])),
            ("display_name", first(&["display_name"])),
            ("country", first(&["country"])),
            ("updated_at", first(&["occurred_at"])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        CouchbaseSink {
            bucket: None,
            scope: "_default".into(),
            collection: "_default".into(),
            document_id: DocumentId::parse("user::{aggregate_id}").expect("valid template"),
            ttl: None,
            erase_on: vec!["user.deleted".into()],
            on_erase: OnErase::Remove,
            fields: Some(fields),
            durability: CouchbaseDurability::None,
        }
    }

    fn event(event_type: &str, aggregate_id: &str, version: i64, payload: Value) -> Event {
        let Value::Object(payload) = payload else { panic!("payload must be an object") };
        Event {
            envelope: Envelope {
                event_id: format!("e-{version}"),
                event_type: event_type.into(),
                aggregate_id: aggregate_id.into(),
                aggregate_version: version,
                occurred_at: 1_700_000_000_000 + version,
                producer: "accounts".into(),
                correlation_id: None,
                causation_id: None,
                traceparent: None,
                tracestate: None,
            },
            payload,
            position: Position { topic: "users".into(), partition: 3, offset: 100 + version },
            schema_id: 1,
        }
    }

    fn set(change: &Change) -> &Map<String, Value> {
        match change {
            Change::Set(m) => m,
            Change::Erase => panic!("expected a set, got an erase"),
        }
    }

    #[test]
    fn maps_fields_with_fallbacks_and_envelope_sources() {
        let e = event(
            "user.email_changed",
            "u-1",
            4,
            json!({"old_email": "a@x", "new_email": "b@x", "country": null, "extra": 1}),
        );
        let change = build(&user_sink(), &e).expect("buildable");
        assert_eq!(change.document_id, "user::u-1");
        assert_eq!(change.fold.version, 4);
        assert_eq!(change.fold.position, e.position);
        // `email` falls back to `new_email`; null `country` and unmapped `extra` are left out.
        assert_eq!(
            set(&change.fold.change),
            json!({"email": "b@x", "updated_at": "2023-11-14T22:13:20.004Z"}).as_object().expect("object"),
            "occurred_at as every timestamp of a document reads: RFC 3339 text"
        );
    }

    #[test]
    fn first_non_null_source_wins() {
        let e = event("user.registered", "u-1", 1, json!({"email": null, "new_email": "n@x"}));
        assert_eq!(set(&fold_event(&user_sink(), &e).change)["email"], "n@x");
        let e = event("user.registered", "u-1", 1, json!({"email": "e@x", "new_email": "n@x"}));
        assert_eq!(set(&fold_event(&user_sink(), &e).change)["email"], "e@x");
    }

    #[test]
    fn nested_fields_array_elements_and_flags() {
        let fields: BTreeMap<String, DocumentField> = [
            ("customer_id", first(&["customer.id", "buyer.id"])),
            ("first_sku", first(&["items[0].sku"])),
            ("skus", first(&["items[].sku"])),
            (
                "is_shipped",
                DocumentField::Flag { set_by: vec!["order.shipped".into()], cleared_by: vec!["order.returned".into()] },
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let sink = CouchbaseSink { fields: Some(fields), ..user_sink() };
        let placed =
            event("order.placed", "o-1", 1, json!({"customer": {"id": "c-7"}, "items": [{"sku": "A"}, {"sku": "B"}]}));
        assert_eq!(
            set(&fold_event(&sink, &placed).change),
            json!({"customer_id": "c-7", "first_sku": "A", "skus": ["A", "B"]}).as_object().expect("object"),
            "no flag: neither sets nor clears it"
        );
        let shipped = event("order.shipped", "o-1", 2, json!({"customer": null, "buyer": {"id": "c-8"}, "items": []}));
        assert_eq!(
            set(&fold_event(&sink, &shipped).change),
            json!({"customer_id": "c-8", "skus": [], "is_shipped": true}).as_object().expect("object"),
            "a null record falls back to the next candidate; an empty array has no first element"
        );
        let returned = event("order.returned", "o-1", 3, json!({}));
        assert_eq!(
            set(&fold_event(&sink, &returned).change),
            json!({"is_shipped": false}).as_object().expect("object")
        );
    }

    #[test]
    fn erase_on_gives_an_erase() {
        let e = event("user.deleted", "u-1", 9, json!({"reason": "GDPR_ERASURE"}));
        let change = build(&user_sink(), &e).expect("buildable");
        assert_eq!(change.fold.change, Change::Erase);
        assert_eq!(change.fold.version, 9);
    }

    #[test]
    fn without_a_mapping_every_non_null_payload_field_is_copied() {
        let sink = CouchbaseSink { fields: None, ttl: Some(HumanDuration::from_millis(1000)), ..user_sink() };
        let e = event("session.started", "s-1", 1, json!({"device": "ios", "ip_country": null, "_sluice": 1}));
        assert_eq!(set(&fold_event(&sink, &e).change), json!({"device": "ios"}).as_object().expect("object"));
    }

    #[test]
    fn ids_from_numbers_and_several_placeholders() {
        let sink = CouchbaseSink {
            document_id: DocumentId::parse("{producer}/{aggregate_version}/{n}").expect("valid"),
            ..user_sink()
        };
        let e = event("user.registered", "u", 7, json!({"n": 2.5}));
        assert_eq!(document_id(&sink, &e), Ok("accounts/7/2.5".into()));
    }

    #[test]
    fn events_without_a_usable_key_are_refused_with_a_reason() {
        let sink = CouchbaseSink { document_id: DocumentId::parse("x::{k}").expect("valid"), ..user_sink() };
        let with = |k: Value| event("user.registered", "u", 1, json!({ "k": k }));
        let missing = event("user.registered", "u", 1, json!({}));
        assert_eq!(
            document_id(&sink, &missing),
            Err(RequestError::MissingIdField { template: "x::{k}".into(), field: "k".into() })
        );
        assert_eq!(
            document_id(&sink, &with(Value::Null)).map_err(|e| e.to_string()),
            Err("document id `x::{k}` needs field `k`, which is null in this event".into())
        );
        assert!(matches!(
            document_id(&sink, &with(json!(true))),
            Err(RequestError::IdFieldType { kind: "a boolean", .. })
        ));
        assert!(matches!(
            document_id(&sink, &with(json!([1]))),
            Err(RequestError::IdFieldType { kind: "an array", .. })
        ));
        assert!(matches!(
            document_id(&sink, &with(json!({}))),
            Err(RequestError::IdFieldType { kind: "an object", .. })
        ));

        let bare = CouchbaseSink { document_id: DocumentId::parse("{k}").expect("valid"), ..user_sink() };
        assert!(matches!(document_id(&bare, &with(json!(""))), Err(RequestError::EmptyId { .. })));
        assert!(matches!(document_id(&bare, &with(json!("a::erased"))), Err(RequestError::ReservedId { .. })));
        let longest = "k".repeat(MAX_KEY_BYTES - TOMBSTONE_SUFFIX.len());
        assert_eq!(document_id(&bare, &with(json!(longest))), Ok(longest.clone()));
        assert!(matches!(
            document_id(&bare, &with(json!(format!("{longest}k")))),
            Err(RequestError::IdTooLong { len, .. }) if len == MAX_KEY_BYTES - TOMBSTONE_SUFFIX.len() + 1
        ));
    }

    #[test]
    fn tombstone_ids() {
        assert_eq!(tombstone_id("user::1"), "user::1::erased");
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z@.]{0,8}".prop_map(Value::from),
        ]
    }

    proptest! {
        /// The key is the template with the aggregate id in place, or a rejection exactly when
        /// the key would be empty, too long or shaped like a tombstone's.
        #[test]
        fn keys_render_or_are_refused(aggregate_id in "\\PC{0,300}") {
            let e = event("user.registered", &aggregate_id, 1, json!({}));
            let expected = format!("user::{aggregate_id}");
            match document_id(&user_sink(), &e) {
                Ok(id) => {
                    prop_assert_eq!(&id, &expected);
                    prop_assert!(id.len() + TOMBSTONE_SUFFIX.len() <= MAX_KEY_BYTES);
                    prop_assert!(!id.ends_with(TOMBSTONE_SUFFIX));
                }
                Err(RequestError::IdTooLong { len, .. }) => {
                    prop_assert_eq!(len, expected.len());
                    prop_assert!(len + TOMBSTONE_SUFFIX.len() > MAX_KEY_BYTES);
                }
                Err(RequestError::ReservedId { .. }) => prop_assert!(expected.ends_with(TOMBSTONE_SUFFIX)),
                Err(other) => prop_assert!(false, "unexpected {other}"),
            }
        }

        /// A set never carries a null and only names mapped document fields; each value is the
        /// first non-null source. Without a mapping it is the payload minus its nulls.
        #[test]
        fn sets_never_carry_nulls(
            payload in proptest::collection::btree_map(
                prop_oneof!["email", "new_email", "country", "display_name", "other", "_sluice"],
                json_leaf(),
                0..6,
            ),
            event_type in prop_oneof!["user.registered", "user.deleted", "user.email_changed"],
        ) {
            let payload: Map<String, Value> = payload.into_iter().collect();
            let e = event(&event_type, "u", 3, Value::Object(payload.clone()));
            let mapped = user_sink();
            let f = fold_event(&mapped, &e);
            if event_type == "user.deleted" {
                prop_assert_eq!(f.change, Change::Erase);
                return Ok(());
            }
            let Change::Set(fields) = f.change else { unreachable!("not in erase_on") };
            prop_assert!(fields.values().all(|v| !v.is_null()));
            let mapping = mapped.fields.clone().unwrap_or_default();
            for (doc_field, value) in &fields {
                let Some(DocumentField::First(sources)) = mapping.get(doc_field) else { unreachable!("only mapped fields") };
                let first = sources.iter().find_map(|s| e.field(&s.to_string()).filter(|v| !v.is_null()));
                let first = match first {
                    Some(Value::Number(_)) if doc_field == "updated_at" => Some(json!(format_date_time(e.envelope.occurred_at, Unit::Millis, true))),
                    other => other,
                };
                prop_assert_eq!(Some(value), first.as_ref());
            }
            prop_assert_eq!(fields.contains_key("email"), ["email", "new_email"].iter().any(|s| payload.get(*s).is_some_and(|v| !v.is_null())));

            let unmapped = CouchbaseSink { fields: None, ..user_sink() };
            let Change::Set(all) = fold_event(&unmapped, &e).change else { unreachable!("not in erase_on") };
            let expected: Map<String, Value> =
                payload.into_iter().filter(|(k, v)| !v.is_null() && k != META_KEY).collect();
            prop_assert_eq!(all, expected);
        }
    }
}
