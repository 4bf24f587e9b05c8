//! Which decoded records a projection applies: the topology's rules, checked between the decoder
//! and the sink, so no sink ever sees a record that breaks them.
//!
//! A record's body decoding is not enough to trust it. Its `event_type` field is a claim the body
//! makes about itself, its topic and key are chosen by whoever produced it, and the registry
//! holds whatever schemas anyone registered. A projection applies an event only when:
//!
//! 1. its type is declared in the topology ([`Refusal::UndeclaredType`] otherwise: no projection
//!    knows what it means, so it goes to the dead-letter topic rather than being folded by
//!    whatever its fields happen to match);
//! 2. it was written with its type's schema — the writer schema's record is the record the
//!    topology declares for that type ([`Refusal::TypeSchemaMismatch`]: a `user.registered` body
//!    whose `event_type` says `user.deleted` must not erase anyone);
//! 3. it is on its type's topic ([`Refusal::WrongTopic`]: the topic decides the partitioning and
//!    so the order of an entity's events);
//! 4. its Kafka key is its topic's key field (`aggregate_id` unless the topic says otherwise),
//!    as sluice's producers write it ([`Refusal::KeyMismatch`]: a record keyed otherwise may sit
//!    in another partition than its entity's other events, so their order is lost). A topic may
//!    accept such records instead (`key_mismatch = "accept"`): they are applied and counted;
//! 5. the projection folds its type ([`Verdict::Skip`]: a declared type the projection does not
//!    take is acknowledged and counted, not an error — a topic may carry types for several
//!    projections).
//!
//! Events mapped from a change-data-capture record get rules 1, 3 and 5: their type, key and
//! schema come from the mapping of their source, not from the record.

use std::collections::{HashMap, HashSet};

use crate::event::Event;
use crate::topology::{KeyMismatchPolicy, Topology};

/// Where a decoded event came from, for the rules that depend on it.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A sluice event: its writer schema's record full name, and the record's Kafka key.
    Native {
        /// The full name of the writer schema's record (`None`: the schema is not a record).
        writer_record: Option<&'a str>,
        /// The Kafka key as read.
        key: Option<&'a [u8]>,
    },
    /// An event mapped from a change-data-capture record.
    Cdc,
}

/// What a projection does with a decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the sink.
    Apply,
    /// Hand it to the sink although its key is not its key field: the topic accepts that
    /// (`key_mismatch = "accept"`); count it.
    ApplyDespite(Refusal),
    /// A declared type this projection does not fold: acknowledge it, write nothing.
    Skip,
    /// Never apply it: to the dead-letter topic with this reason.
    Refuse(Refusal),
}

/// Why a record is refused; its [`code`](Refusal::code) goes with it to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The type is not declared in the topology.
    #[error("event type {event_type:?} is not declared in the topology")]
    UndeclaredType {
        /// The type the record claims.
        event_type: String,
    },
    /// The body was written with another schema than its type's.
    #[error(
        "the body was written with schema {writer} (id {schema_id}) but says event_type {event_type:?}, whose schema is {expected}"
    )]
    TypeSchemaMismatch {
        /// The type the record claims.
        event_type: String,
        /// The record of the schema the topology declares for it.
        expected: String,
        /// The record of the schema the body was written with.
        writer: String,
        /// The writer schema's registry id.
        schema_id: u32,
    },
    /// The type is declared on another topic.
    #[error("event type {event_type:?} belongs on topic {expected:?}, not {topic:?}")]
    WrongTopic {
        /// The type the record claims.
        event_type: String,
        /// Its declared topic.
        expected: String,
        /// Where it was read.
        topic: String,
    },
    /// The Kafka key is not the event's key field.
    #[error("the Kafka key is {found}, but the topic is keyed by {field} = {expected:?}")]
    KeyMismatch {
        /// The topic's key field.
        field: String,
        /// The event's value of it.
        expected: String,
        /// The key as read, quoted and shortened (or `no key`).
        found: String,
    },
}

impl Refusal {
    /// A stable machine-readable name, the `sluice.dlq.code` header of the dead letter.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UndeclaredType { .. } => "undeclared_event_type",
            Self::TypeSchemaMismatch { .. } => "type_schema_mismatch",
            Self::WrongTopic { .. } => "wrong_topic",
            Self::KeyMismatch { .. } => "key_mismatch",
        }
    }
}

/// What the topology declares about one event type.
#[derive(Debug, Clone)]
struct Declared {
    topic: String,
    record: String,
    key_field: String,
    key_mismatch: KeyMismatchPolicy,
}

/// The rules of one projection, built once from the topology.
#[derive(Debug, Clone)]
pub struct Admission {
    declared: HashMap<String, Declared>,
    folded: HashSet<String>,
}

/// Longest key quoted in a refusal.
const QUOTED_KEY_CHARS: usize = 64;

impl Admission {
    /// The rules of `projection`; `None` when the topology has no such projection.
    pub fn new(topology: &Topology, projection: &str) -> Option<Self> {
        let folded = topology.projection(projection)?.events.iter().cloned().collect();
        let declared = topology
            .events()
            .filter_map(|e| {
                let topic = topology.topic(&e.topic)?;
                let declared = Declared {
                    topic: e.topic.clone(),
                    record: e.record_name.clone(),
                    key_field: topic.key.clone(),
                    key_mismatch: topic.key_mismatch,
                };
                Some((e.event_type.clone(), declared))
            })
            .collect();
        Some(Self { declared, folded })
    }

    /// Judges `event` (read from `event.position.topic`), which came from `origin`.
    pub fn judge(&self, event: &Event, origin: Origin<'_>) -> Verdict {
        let event_type = &event.envelope.event_type;
        let Some(declared) = self.declared.get(event_type) else {
            return Verdict::Refuse(Refusal::UndeclaredType { event_type: event_type.clone() });
        };
        if let Origin::Native { writer_record, .. } = origin
            && writer_record != Some(declared.record.as_str())
        {
            return Verdict::Refuse(Refusal::TypeSchemaMismatch {
                event_type: event_type.clone(),
                expected: declared.record.clone(),
                writer: writer_record.unwrap_or("(not a record)").to_owned(),
                schema_id: event.schema_id,
            });
        }
        if declared.topic != event.position.topic {
            return Verdict::Refuse(Refusal::WrongTopic {
                event_type: event_type.clone(),
                expected: declared.topic.clone(),
                topic: event.position.topic.clone(),
            });
        }
        if !self.folded.contains(event_type) {
            return Verdict::Skip;
        }
        let key_refusal = match origin {
            Origin::Native { key, .. } => key_mismatch(event, &declared.key_field, key),
            Origin::Cdc => None,
        };
        match (key_refusal, declared.key_mismatch) {
            (None, _) => Verdict::Apply,
            (Some(refusal), KeyMismatchPolicy::Refuse) => Verdict::Refuse(refusal),
            (Some(refusal), KeyMismatchPolicy::Accept) => Verdict::ApplyDespite(refusal),
        }
    }
}

/// The refusal of a key that is not the event's `field`, as sluice's producers key it.
fn key_mismatch(event: &Event, field: &str, key: Option<&[u8]>) -> Option<Refusal> {
    let expected = event.envelope.key_text(field)?;
    if key == Some(expected.as_bytes()) {
        return None;
    }
    let found = match key {
        None => "no key".to_owned(),
        Some(k) => {
            let text = String::from_utf8_lossy(k);
            let short: String = text.chars().take(QUOTED_KEY_CHARS).collect();
            let more = if short.len() < text.len() { "…" } else { "" };
            format!("{short:?}{more}")
        }
    };
    Some(Refusal::KeyMismatch { field: field.to_owned(), expected: expected.to_owned(), found })
}

#[cfg(test)]
mod tests;
