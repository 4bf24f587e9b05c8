//! `sluice topology init`: a starting `topology.toml` from what a schema registry and a Kafka
//! cluster already hold.
//!
//! Input: an [`Inventory`] the CLI reads (every subject's latest schema with its id and version,
//! the ids of its earlier versions, every topic with its partitions, replication factor,
//! `cleanup.policy` and `retention.ms`, and the schema ids found in the latest records of each
//! topic), and a [`Filter`] (which subjects and topics to consider). Output: [`Generated`], the
//! topology text and the schema files it names, which [`Generated::check`] validates exactly as
//! `sluice topology check` does. Pure code: no I/O, the same inventory always gives the same text.
//!
//! # From subjects to event types
//!
//! - **Which subjects are event types.** Only an Avro record whose first fields are sluice's
//!   envelope (event_id, event_type, aggregate_id, aggregate_version, occurred_at, producer,
//!   correlation_id, causation_id, traceparent, tracestate), checked by the code `topology check`
//!   runs (`topology/schema.rs`). Key subjects (`<topic>-key`), other records and other schema types
//!   are listed in a comment of the output with the reason, so nothing is dropped silently.
//! - **Which topic.** A `<topic>-value` subject (TopicNameStrategy) belongs to its topic. A subject
//!   named after its record (`namespace.Name`, RecordNameStrategy) belongs to the topic whose
//!   sampled records carry the schema id of one of its versions (ids compared with the versions
//!   read, no other registry call); a record found on several topics goes to the one with the
//!   most such records, and the others are named in a comment. A record subject found on no
//!   topic, and a subject named neither way (TopicRecordNameStrategy `<topic>-<record>`, which
//!   sluice does not use), are written as a commented-out event type with the reason. Records
//!   whose ids belong to the topic's own `<topic>-value` subject do not count for a record subject
//!   (registries such as Apicurio give one schema the same id under every subject).
//! - **Subject strategy.** A topic carrying a record-named subject gets
//!   `subject_strategy = "record"`; its `<topic>-value` event type, if any, stays (`sluice schemas
//!   register` then registers it under its record name, as a comment says) unless another subject
//!   of that topic has the same record.
//! - **Event type names.** The string `default` of the schema's `event_type` field when it has one
//!   that is a valid event type; otherwise a name derived from the record: the last segment of
//!   the namespace (the topic's name without a namespace) and the record name in snake case
//!   (`sluice.users.UserRegistered` → `users.user_registered`), with a comment saying it must equal
//!   what producers put in `event_type`. Two subjects with one declared name: the first (a subject
//!   named by its topic's strategy first, then by name) is kept and the second listed; a derived
//!   name that is taken takes the whole namespace, then a number.
//!
//! # What else is written
//!
//! `[connections]` with the two endpoints read (the others commented out), `[registry]` with the
//! compatibility level most of the event types' subjects have (their own, else the registry's
//! global one), `[topics.<name>]` for each topic carrying an event type
//! (real partitions, replication factor, cleanup policy and topic-level retention, so `sluice
//! topics apply` changes nothing), a ClickHouse projection `analytics` of every such topic with a
//! typed table per event type, and commented-out starting points: a Couchbase projection of the
//! first topic's entities, a ClickHouse current-state table and a rollup.

mod bind;
mod classify;
mod render;
mod skeleton;
mod tables;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use super::{DEFAULT_FILE, Report, Topology};

/// One registry subject, at its latest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySubject {
    /// The subject (`users-value`, `sluice.users.UserRegistered`).
    pub subject: String,
    /// The latest version's number.
    pub version: u32,
    /// The latest version's schema id (what the Confluent framing carries).
    pub id: u32,
    /// The latest version's schema text.
    pub schema: String,
    /// The schema ids of the earlier versions, when read (records written before the latest
    /// version carry them); may be empty.
    pub earlier_ids: Vec<u32>,
    /// The subject's own compatibility level, when it has one and it was read (the registry's
    /// global level applies otherwise).
    pub compatibility: Option<String>,
}

impl RegistrySubject {
    /// Every schema id of the subject read: the latest version's and the earlier ones'.
    fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.id).chain(self.earlier_ids.iter().copied())
    }
}

/// What the latest records of a topic showed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSample {
    /// Records read.
    pub records: u64,
    /// Of those, records not in the Confluent framing (or without a value).
    pub unframed: u64,
    /// Framed records per schema id.
    pub schema_ids: BTreeMap<u32, u64>,
    /// The reading stopped at its deadline before every partition's end.
    pub partial: bool,
}

/// One Kafka topic as the cluster has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTopic {
    /// The topic name.
    pub name: String,
    /// Partition count.
    pub partitions: u32,
    /// Replication factor.
    pub replication_factor: u16,
    /// `min.insync.replicas` as the cluster reports it (the topic's own or the broker's), if read.
    pub min_insync_replicas: Option<u16>,
    /// `cleanup.policy` as the cluster reports it (the topic's own or the broker's), if read.
    pub cleanup_policy: Option<String>,
    /// `retention.ms` when set on the topic itself (`-1`: forever); `None` for the broker's.
    pub retention_ms: Option<i64>,
    /// What its latest records showed; `None` when they were not read.
    pub sample: Option<TopicSample>,
}

/// Everything `topology init` reads before writing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The registry's URL, written to `[connections]`.
    pub registry_url: String,
    /// The Kafka bootstrap servers, written to `[connections]`.
    pub kafka_brokers: String,
    /// The registry's global compatibility level (`BACKWARD`, …), if it said.
    pub compatibility: Option<String>,
    /// The subjects read.
    pub subjects: Vec<RegistrySubject>,
    /// The topics read.
    pub topics: Vec<KafkaTopic>,
    /// How many of the latest records of each partition were read, when any were (for the
    /// notes of a record subject found on no topic).
    pub sampled_per_partition: Option<u64>,
}

/// Which subjects and topics are considered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Consider internal topics too (see [`is_internal_topic`]).
    pub include_internal: bool,
    /// Only subjects starting with one of these (all when empty).
    pub subject_prefixes: Vec<String>,
    /// Only topics starting with one of these (all when empty).
    pub topic_prefixes: Vec<String>,
}

impl Filter {
    /// Whether `subject` is considered.
    pub fn keeps_subject(&self, subject: &str) -> bool {
        self.subject_prefixes.is_empty() || self.subject_prefixes.iter().any(|p| subject.starts_with(p.as_str()))
    }

    /// Whether `topic` is considered.
    pub fn keeps_topic(&self, topic: &str) -> bool {
        self.left_out(topic).is_none()
    }

    /// Why `topic` is not considered, if it is not.
    fn left_out(&self, topic: &str) -> Option<&'static str> {
        if !self.topic_prefixes.is_empty() && !self.topic_prefixes.iter().any(|p| topic.starts_with(p.as_str())) {
            Some("not matching --topics")
        } else if !self.include_internal && is_internal_topic(topic) {
            Some("internal (see --include-internal)")
        } else {
            None
        }
    }
}

/// Topics that carry no domain events: Kafka's own and the registry's (`__consumer_offsets`,
/// `_schemas`, any `_*`), dead-letter topics (`*.dlq`), Kafka Connect's storage topics
/// (`connect-configs`, `connect-offsets`, `connect-status` and prefixed variants such as
/// `docker-connect-offsets`) and Kafka Streams' internal topics (`*-changelog`, `*-repartition`).
pub fn is_internal_topic(name: &str) -> bool {
    let connect = ["-configs", "-offsets", "-status"]
        .iter()
        .any(|suffix| name.strip_suffix(suffix).is_some_and(|rest| rest == "connect" || rest.ends_with("-connect")));
    name.starts_with('_')
        || name.ends_with(".dlq")
        || name.ends_with("-changelog")
        || name.ends_with("-repartition")
        || connect
}

/// Whether reading the topics' records can bind anything: some considered subject is a sluice
/// event schema named after its record. Without one, `topology init` reads no records.
pub fn needs_records(subjects: &[RegistrySubject], filter: &Filter) -> bool {
    subjects.iter().filter(|s| filter.keeps_subject(&s.subject)).any(is_record_named_event)
}

/// Whether `subject`'s latest schema is a sluice event schema (so its compatibility level matters).
pub fn is_event_schema(subject: &RegistrySubject) -> bool {
    classify::classify(subject).is_ok()
}

/// Whether `subject`'s latest schema is a sluice event schema and the subject is named after its
/// record: then its topic is found from the records, and the ids of its earlier versions count.
pub fn is_record_named_event(subject: &RegistrySubject) -> bool {
    classify::classify(subject).is_ok_and(|c| c.schema.record_name == subject.subject)
}

/// A schema file to write, relative to the topology file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFile {
    /// `schemas/<topic>/<event type>.avsc`, `/`-separated.
    pub path: String,
    /// The schema, pretty-printed JSON.
    pub text: String,
}

/// How an event type got its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// The string default of the schema's `event_type` field.
    SchemaDefault,
    /// Derived from the record name: producers must put exactly this in `event_type`.
    Derived,
}

/// An event type written to the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundEvent {
    /// The event type.
    pub event_type: String,
    /// Its topic.
    pub topic: String,
    /// The subject its schema came from.
    pub subject: String,
    /// Where its name came from.
    pub naming: Naming,
    /// The schema file.
    pub schema_path: String,
}

/// A subject that did not become an event type, and why (also written as a comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The subject.
    pub subject: String,
    /// Why.
    pub reason: String,
}

/// What `topology init` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The `topology.toml` text.
    pub topology: String,
    /// The schema files it names (and those of the commented-out event types).
    pub schemas: Vec<SchemaFile>,
    /// The event types written, by topic then name.
    pub events: Vec<BoundEvent>,
    /// The subjects considered that are not event types of the topology, with the reason.
    pub skipped: Vec<Skipped>,
    /// The topics considered that carry no event type, with the reason (also commented).
    pub unused_topics: Vec<(String, String)>,
}

impl Generated {
    /// Validates the topology as `sluice topology check` does, as if it and its schema files
    /// were written to `dir` (the schemas are read from memory).
    pub fn check(&self, dir: &Path) -> Result<Topology, Report> {
        let path = dir.join(DEFAULT_FILE);
        Topology::from_parts(&self.topology, &path, |wanted| {
            self.schemas
                .iter()
                .find(|s| dir.join(&s.path) == wanted)
                .map(|s| s.text.clone())
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not generated"))
        })
    }
}

/// Writes the starting topology for `inventory`, considering what `filter` keeps.
pub fn generate(inventory: &Inventory, filter: &Filter) -> Generated {
    let plan = bind::plan(inventory, filter);
    render::render(inventory, &plan)
}
