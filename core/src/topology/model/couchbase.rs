//! The model of `[projections.<name>.couchbase]`: the collection a projection writes one
//! document per entity to, the document's key template and fields, and the durability of its
//! writes.
//!
//! Values come from [`crate::topology::parse`]; the Couchbase sink
//! (`sluice_consumers::sinks::couchbase`) writes with them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::super::columns::FieldPath;
use super::super::duration::HumanDuration;

spelled_enum! {
    /// How many Couchbase nodes hold a projection's write before the server acknowledges it (the
    /// SDK's `DurabilityLevel`, applied to every write the sink makes). Until a write is
    /// acknowledged the worker does not commit the events past it.
    #[derive(Default)]
    CouchbaseDurability {
        /// Acknowledged once the active node has it in memory: the fastest, on any bucket. A
        /// failover in the moment before replication loses the write; `sluice rebuild` (or
        /// `rebuild --key`) projects it again from Kafka. Couchbase's own default.
        #[default]
        None = "none",
        /// Held in memory by a majority of the bucket's copies (active + replicas).
        Majority = "majority",
        /// A majority in memory, and on disk on the active node (not on ephemeral buckets).
        MajorityAndPersistActive = "majority_and_persist_active",
        /// On disk on a majority of the copies: the safest and slowest (not on ephemeral buckets).
        PersistToMajority = "persist_to_majority",
    }
}

spelled_enum! {
    /// What an erase (an event of an `erase_on` type) leaves under the document's key. Either way
    /// the entity's fields are gone and a tombstone of bookkeeping only (`_sluice`: versions, the
    /// erase's version, the source position; no personal data) keeps a late re-delivery of an
    /// older event from bringing the entity back.
    #[derive(Default)]
    OnErase {
        /// The document is removed (readers get "not found"), its tombstone kept in a side
        /// document `<key>::erased`. A new document then costs three operations (its tombstone
        /// read, insert, the tombstone read again against a concurrent eraser), four when the
        /// document is read first (while most documents the worker meets turn out to exist).
        #[default]
        Remove = "remove",
        /// The document is replaced by its tombstone: a document with no fields but `_sluice`,
        /// whose `erased_at` is set. Every write is then one document, so a new document costs one
        /// operation (insert it; read only when it turns out to exist). Readers tell an erased
        /// entity by its empty document (the gateway and `sluice couchbase get` answer "gone").
        Tombstone = "tombstone",
    }
}

/// `[projections.<name>.couchbase]`: one document per entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CouchbaseSink {
    /// Bucket; the connection's bucket when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Scope (default `_default`).
    pub scope: String,
    /// Collection (default `_default`).
    pub collection: String,
    /// Document key template, e.g. `user::{aggregate_id}`.
    pub document_id: DocumentId,
    /// Expiry, renewed by every write; documents never expire when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<HumanDuration>,
    /// Event types that delete the document.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub erase_on: Vec<String>,
    /// What an erase leaves under the key (default `remove`; see [`OnErase`]).
    pub on_erase: OnErase,
    /// Document field → where its value comes from. When absent, every non-envelope field of an
    /// event is merged into the document under its own name, a null meaning "unchanged".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, DocumentField>>,
    /// Durability of every write (default `none`; see [`CouchbaseDurability`]).
    pub durability: CouchbaseDurability,
}

/// Where a Couchbase document field takes its value (a `fields` entry of
/// `[projections.<name>.couchbase]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentField {
    /// `"customer.id"`, or a list of candidates `["email", "new_email"]`: the first the event
    /// carries with a non-null value ([`crate::state::first_set`], the rule of a ClickHouse state
    /// table's columns); when none does, the document field is left unchanged. A candidate is an
    /// envelope field (`occurred_at`) or a path into the payload: a field (`total`), a nested one
    /// (`customer.id`), an array element (`items[0].sku`), every element (`items[].sku`).
    First(Vec<FieldPath>),
    /// `{ set_by = ["order.shipped"], cleared_by = ["order.returned"] }`: `true` when an event of
    /// a `set_by` type is applied, `false` for a `cleared_by` one, unchanged by any other.
    Flag {
        /// Event types that set the flag.
        set_by: Vec<String>,
        /// Event types that clear it.
        cleared_by: Vec<String>,
    },
}

impl Serialize for DocumentField {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        match self {
            Self::First(paths) => match paths.as_slice() {
                [one] => s.serialize_str(&one.to_string()),
                many => s.collect_seq(many.iter().map(ToString::to_string)),
            },
            Self::Flag { set_by, cleared_by } => {
                let mut map = s.serialize_map(None)?;
                if !set_by.is_empty() {
                    map.serialize_entry("set_by", set_by)?;
                }
                if !cleared_by.is_empty() {
                    map.serialize_entry("cleared_by", cleared_by)?;
                }
                map.end()
            }
        }
    }
}

/// Where a document field takes its value: the first of these event fields that the event
/// carries with a non-null value; when none does, the document field is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSource(pub Vec<String>);

impl Serialize for FieldSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

/// One piece of a document id template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdPart {
    /// Text copied as is.
    Literal(String),
    /// `{field}`: the value of an event field.
    Field(String),
}

/// A document key template: text with `{field}` placeholders; `{{` and `}}` are literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentId {
    text: String,
    parts: Vec<IdPart>,
    placeholders: Vec<(usize, String)>,
}

/// Why a document id template does not parse: a message and the byte offset in the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset of the problem in the template.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl DocumentId {
    /// Parses a template.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut placeholders = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|(_, n)| *n == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(TemplateError {
                        offset: i,
                        message: "unmatched `}` (write `}}` for a literal brace)".into(),
                    });
                }
                '{' => {
                    let start = i + 1;
                    let end = text[start..].find('}').map(|n| start + n).ok_or_else(|| TemplateError {
                        offset: i,
                        message: "unclosed `{` (write `{{` for a literal brace)".into(),
                    })?;
                    let name = &text[start..end];
                    let valid = !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !name.starts_with(|c: char| c.is_ascii_digit());
                    if !valid {
                        return Err(TemplateError {
                            offset: i,
                            message: format!("`{{{name}}}` is not a field placeholder: write `{{field_name}}`"),
                        });
                    }
                    while chars.peek().is_some_and(|(j, _)| *j <= end) {
                        chars.next();
                    }
                    if !literal.is_empty() {
                        parts.push(IdPart::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(IdPart::Field(name.to_owned()));
                    placeholders.push((i, name.to_owned()));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(IdPart::Literal(literal));
        }
        if placeholders.is_empty() {
            return Err(TemplateError {
                offset: 0,
                message: "no `{field}` placeholder: every event would write the same document".into(),
            });
        }
        Ok(Self { text: text.to_owned(), parts, placeholders })
    }

    /// Stands in for a template that is missing or wrong (an issue was filed, so it never
    /// leaves validation).
    pub(crate) fn missing() -> Self {
        Self { text: String::new(), parts: Vec::new(), placeholders: Vec::new() }
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[IdPart] {
        &self.parts
    }

    /// The placeholders with the byte offset of their `{` in the template.
    pub fn fields(&self) -> impl Iterator<Item = (usize, &str)> {
        self.placeholders.iter().map(|(at, name)| (*at, name.as_str()))
    }

    /// The key of one event: `value` gives the text of a field, `None` when the event lacks it
    /// (then there is no key, and the event cannot be applied).
    pub fn render(&self, mut value: impl FnMut(&str) -> Option<String>) -> Result<String, &str> {
        let mut key = String::new();
        for part in &self.parts {
            match part {
                IdPart::Literal(text) => key.push_str(text),
                IdPart::Field(name) => key.push_str(&value(name).ok_or(name.as_str())?),
            }
        }
        Ok(key)
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for DocumentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_id_templates() {
        let id = DocumentId::parse("user::{aggregate_id}").expect("valid");
        assert_eq!(id.parts(), [IdPart::Literal("user::".into()), IdPart::Field("aggregate_id".into())]);
        assert_eq!(id.fields().collect::<Vec<_>>(), vec![(6, "aggregate_id")]);
        assert_eq!(id.render(|f| (f == "aggregate_id").then(|| "42".to_owned())), Ok("user::42".into()));
        assert_eq!(id.render(|_| None), Err("aggregate_id"));

        let braces = DocumentId::parse("{{x}}:{a}-{b}").expect("valid");
        assert_eq!(braces.fields().collect::<Vec<_>>(), vec![(6, "a"), (10, "b")]);
        assert_eq!(braces.render(|f| Some(f.to_uppercase())), Ok("{x}:A-B".into()));

        let err = |t: &str| DocumentId::parse(t).map(|_| ()).map_err(|e| e.offset);
        assert_eq!(err("user::"), Err(0));
        assert_eq!(err("user::{aggregate_id"), Err(6));
        assert_eq!(err("a}"), Err(1));
        assert_eq!(err("a{}"), Err(1));
        assert_eq!(err("a{b c}"), Err(1));
    }

    #[test]
    fn durability_spellings() {
        assert_eq!(OnErase::default(), OnErase::Remove);
        assert_eq!("tombstone".parse::<OnErase>(), Ok(OnErase::Tombstone));
        assert_eq!(CouchbaseDurability::default(), CouchbaseDurability::None);
        for name in CouchbaseDurability::NAMES {
            assert_eq!(name.parse::<CouchbaseDurability>().map(CouchbaseDurability::as_str), Ok(*name));
        }
    }
}
