//! From the inventory to a plan: which subjects become event types on which topic, under which
//! name, and which are left out with which reason.
//!
//! The rules are those of the module doc of [`super`]; [`plan`] applies them in a fixed order
//! (subjects by name, topics by name) so the same inventory always gives the same plan. Pure code.

use std::collections::{BTreeMap, BTreeSet};

use super::super::model::SubjectStrategy;
use super::super::parse::valid_event_type;
use super::classify::{Candidate, SubjectName, classify, derived_names};
use super::{Filter, Inventory, KafkaTopic, Naming, RegistrySubject, Skipped};

/// How many of the other topics a record was found on are named.
const ALSO_NAMED: usize = 5;

/// A topic that carries event types.
#[derive(Debug)]
pub(super) struct PlannedTopic<'a> {
    /// The topic as the cluster has it.
    pub(super) topic: &'a KafkaTopic,
    /// How its subjects are named.
    pub(super) strategy: SubjectStrategy,
}

/// An event type to write: bound to `topic`, or commented out with `reason` when `topic` is
/// `None`.
#[derive(Debug)]
pub(super) struct PlannedEvent<'a> {
    /// The event type.
    pub(super) event_type: String,
    /// Where its name comes from.
    pub(super) naming: Naming,
    /// Its topic; `None` for an event schema bound to none.
    pub(super) topic: Option<String>,
    /// Why it is bound to no topic.
    pub(super) reason: Option<String>,
    /// The subject and its schema.
    pub(super) candidate: Candidate<'a>,
    /// Comment lines written above it.
    pub(super) notes: Vec<String>,
    /// Its schema file.
    pub(super) schema_path: String,
}

/// Everything the text is written from.
#[derive(Debug)]
pub(super) struct Plan<'a> {
    /// Topics carrying event types, by name.
    pub(super) topics: Vec<PlannedTopic<'a>>,
    /// Event types bound to a topic, by topic then name.
    pub(super) events: Vec<PlannedEvent<'a>>,
    /// Event schemas bound to no topic, by name.
    pub(super) unbound: Vec<PlannedEvent<'a>>,
    /// Subjects that are not sluice event schemas, by subject.
    pub(super) not_events: Vec<Skipped>,
    /// Event schemas that another subject already stands for, by subject.
    pub(super) duplicates: Vec<Skipped>,
    /// Topics considered that carry no event type, with the reason, by name.
    pub(super) unused_topics: Vec<(String, String)>,
    /// Topics not considered: how many, by reason.
    pub(super) left_out_topics: BTreeMap<&'static str, usize>,
    /// How many subjects were considered.
    pub(super) subjects_considered: usize,
}

/// Where a candidate goes.
enum Binding<'t> {
    /// To `topic`; its records were also found on `also`.
    Bound { topic: &'t str, also: Vec<&'t str> },
    /// Nowhere, for this reason.
    Unbound(String),
}

/// The topics considered and what is known of them.
struct Topics<'a> {
    kept: BTreeMap<&'a str, &'a KafkaTopic>,
    left_out: BTreeMap<&'a str, &'static str>,
    /// The schema ids of each kept topic's `<topic>-value` subject.
    value_ids: BTreeMap<&'a str, BTreeSet<u32>>,
    sampled_per_partition: Option<u64>,
}

impl<'a> Topics<'a> {
    fn bind(&self, c: &Candidate<'a>) -> Binding<'a> {
        match c.naming() {
            SubjectName::TopicValue(topic) => match self.kept.get_key_value(topic) {
                Some((name, _)) => Binding::Bound { topic: name, also: Vec::new() },
                None => match self.left_out.get(topic) {
                    Some(why) => Binding::Unbound(format!("its topic {topic} was left out: {why}")),
                    None => Binding::Unbound(format!("there is no topic {topic} on the cluster")),
                },
            },
            SubjectName::Record => self.bind_record(c),
            SubjectName::Other => Binding::Unbound(format!(
                "the subject is named neither `<topic>-value` nor after its record ({}), the two ways sluice names \
                 subjects",
                c.schema.record_name
            )),
        }
    }

    /// The topic whose latest records carry most of the record subject's ids.
    fn bind_record(&self, c: &Candidate<'a>) -> Binding<'a> {
        let ids: BTreeSet<u32> = c.subject.ids().collect();
        let mut found: Vec<(&'a str, u64)> = Vec::new();
        let mut shadowed: Vec<&'a str> = Vec::new();
        for (name, topic) in &self.kept {
            let Some(sample) = &topic.sample else { continue };
            let own = self.value_ids.get(name);
            let (mut records, mut shadow) = (0, false);
            for (id, count) in sample.schema_ids.iter().filter(|(id, _)| ids.contains(id)) {
                if own.is_some_and(|own| own.contains(id)) {
                    shadow = true;
                } else {
                    records += count;
                }
            }
            if records > 0 {
                found.push((name, records));
            } else if shadow {
                shadowed.push(name);
            }
        }
        found.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        if let Some(((topic, _), rest)) = found.split_first() {
            return Binding::Bound { topic, also: rest.iter().map(|(t, _)| *t).collect() };
        }
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        let partial: Vec<&str> =
            self.kept.iter().filter(|(_, t)| t.sample.as_ref().is_some_and(|s| s.partial)).map(|(n, _)| *n).collect();
        let stopped = if partial.is_empty() {
            String::new()
        } else {
            format!(" (reading stopped at the deadline on {}: see --sample-timeout)", partial.join(", "))
        };
        Binding::Unbound(match (shadowed.as_slice(), self.sampled_per_partition) {
            ([], Some(n)) => format!(
                "found on no topic: none of the latest {n} records of each partition of the {} topics read carries \
                 its schema ids ({}){stopped}",
                self.kept.len(),
                ids.join(", ")
            ),
            ([], None) => "no records were read (--sample 0), so its topic is unknown".to_owned(),
            (topics, _) => format!(
                "its schema is found on {} only as the topic's own `<topic>-value` subject (the same schema id), \
                 which is written instead",
                topics.join(", ")
            ),
        })
    }
}

/// The names taken so far: event types, and record names on record-named topics.
#[derive(Default)]
struct Taken {
    event_types: BTreeMap<String, String>,
    records: BTreeMap<String, String>,
}

impl Taken {
    /// The declared name when it is valid and free, else the first free derived one; with a
    /// note when a declared name was passed over. `Err` when the declared name is taken.
    fn name(&self, c: &Candidate<'_>, topic: Option<&str>) -> Result<(String, Naming, Option<String>), String> {
        let mut note = None;
        if let Some(declared) = &c.default_type {
            if valid_event_type(declared) {
                return match self.event_types.get(declared) {
                    Some(other) => Err(format!(
                        "event type {declared} (the default of its `event_type` field) is already written from \
                         subject {other}"
                    )),
                    None => Ok((declared.clone(), Naming::SchemaDefault, None)),
                };
            }
            note = Some(format!(
                "the default of its `event_type` field, {declared:?}, is not a valid event type (dotted, lower \
                 case: \"invoice.paid\"), so the name is derived from the record"
            ));
        }
        let name = derived_names(&c.schema.record_name, topic)
            .find(|n| !self.event_types.contains_key(n))
            .unwrap_or_else(|| "events.unnamed".to_owned());
        Ok((name, Naming::Derived, note))
    }
}

/// A candidate bound to a topic, with the other topics its records were found on.
type Bound<'a> = (Candidate<'a>, &'a str, Vec<&'a str>);

impl<'a> Topics<'a> {
    /// The topics `filter` keeps and leaves out (counted by reason), and the ids of the kept
    /// topics' `<topic>-value` subjects among `subjects`.
    fn new(
        inventory: &'a Inventory,
        filter: &Filter,
        subjects: &[&'a RegistrySubject],
    ) -> (Self, BTreeMap<&'static str, usize>) {
        let mut topics = Self {
            kept: BTreeMap::new(),
            left_out: BTreeMap::new(),
            value_ids: BTreeMap::new(),
            sampled_per_partition: inventory.sampled_per_partition,
        };
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        for t in &inventory.topics {
            match filter.left_out(&t.name) {
                None => {
                    topics.kept.insert(t.name.as_str(), t);
                }
                Some(why) => {
                    topics.left_out.insert(t.name.as_str(), why);
                    *counts.entry(why).or_default() += 1;
                }
            }
        }
        for s in subjects {
            if let Some((topic, _)) = s.subject.strip_suffix("-value").and_then(|t| topics.kept.get_key_value(t)) {
                topics.value_ids.insert(topic, s.ids().collect());
            }
        }
        (topics, counts)
    }
}

impl Taken {
    /// Names the bound candidates in order, each on its topic. One that another subject already
    /// stands for (its declared event type, or its record on a record-named topic) goes to
    /// `duplicates` instead.
    fn bound<'a>(
        &mut self,
        bound: Vec<Bound<'a>>,
        strategy: impl Fn(&str) -> SubjectStrategy,
        duplicates: &mut Vec<Skipped>,
    ) -> Vec<PlannedEvent<'a>> {
        let mut events = Vec::new();
        for (c, topic, also) in bound {
            let by_record = strategy(topic) == SubjectStrategy::Record;
            if by_record && let Some(other) = self.records.get(&c.schema.record_name) {
                let reason = format!(
                    "the same record ({}) as subject {other}, on topic {topic} whose subjects are named by record",
                    c.schema.record_name
                );
                duplicates.push(Skipped { subject: c.subject.subject.clone(), reason });
                continue;
            }
            let (event_type, naming, note) = match self.name(&c, Some(topic)) {
                Ok(named) => named,
                Err(reason) => {
                    duplicates.push(Skipped { subject: c.subject.subject.clone(), reason });
                    continue;
                }
            };
            self.event_types.insert(event_type.clone(), c.subject.subject.clone());
            if by_record {
                self.records.insert(c.schema.record_name.clone(), c.subject.subject.clone());
            }
            let mut notes = notes(&c, &event_type, naming, note);
            if !also.is_empty() {
                let mut named: Vec<&str> = also.iter().copied().take(ALSO_NAMED).collect();
                named.sort_unstable();
                let more = also.len().saturating_sub(ALSO_NAMED);
                let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                notes.push(format!(
                    "its records were also found on {}{more}; an event type has one topic: this one carries the most",
                    named.join(", ")
                ));
            }
            if by_record && c.naming() != SubjectName::Record {
                notes.push(format!(
                    "registered as {}; the subjects of {topic} are named by record, so `sluice schemas register` \
                     registers it as {}",
                    c.subject.subject, c.schema.record_name
                ));
            }
            events.push(PlannedEvent {
                schema_path: format!("schemas/{topic}/{event_type}.avsc"),
                event_type,
                naming,
                topic: Some(topic.to_owned()),
                reason: None,
                candidate: c,
                notes,
            });
        }
        events.sort_by(|a, b| (&a.topic, &a.event_type).cmp(&(&b.topic, &b.event_type)));
        events
    }

    /// Names the candidates bound to no topic (written commented out), after the bound ones.
    fn unbound<'a>(&mut self, unbound: Vec<(Candidate<'a>, String)>) -> Vec<PlannedEvent<'a>> {
        let mut events = Vec::new();
        for (c, reason) in unbound {
            let (event_type, naming, note) = match self.name(&c, None) {
                Ok(named) => named,
                // Commented out anyway: a free derived name keeps the block usable once uncommented.
                Err(_) => {
                    let name = derived_names(&c.schema.record_name, None)
                        .find(|n| !self.event_types.contains_key(n))
                        .unwrap_or_else(|| "events.unnamed".to_owned());
                    (name, Naming::Derived, None)
                }
            };
            self.event_types.insert(event_type.clone(), c.subject.subject.clone());
            events.push(PlannedEvent {
                schema_path: format!("schemas/unbound/{event_type}.avsc"),
                notes: notes(&c, &event_type, naming, note),
                event_type,
                naming,
                topic: None,
                reason: Some(reason),
                candidate: c,
            });
        }
        events.sort_by(|a, b| a.event_type.cmp(&b.event_type));
        events
    }
}

/// Applies the rules to `inventory`: subjects classified, bound, then named; topics kept or
/// left out.
pub(super) fn plan<'a>(inventory: &'a Inventory, filter: &Filter) -> Plan<'a> {
    let mut subjects: Vec<_> = inventory.subjects.iter().filter(|s| filter.keeps_subject(&s.subject)).collect();
    subjects.sort_by(|a, b| a.subject.cmp(&b.subject));
    subjects.dedup_by(|a, b| a.subject == b.subject);
    let (topics, left_out_topics) = Topics::new(inventory, filter, &subjects);

    let mut not_events = Vec::new();
    let mut bound: Vec<Bound<'a>> = Vec::new();
    let mut unbound = Vec::new();
    for s in &subjects {
        match classify(s) {
            Err(reason) => not_events.push(Skipped { subject: s.subject.clone(), reason }),
            Ok(c) => match topics.bind(&c) {
                Binding::Bound { topic, also } => bound.push((c, topic, also)),
                Binding::Unbound(reason) => unbound.push((c, reason)),
            },
        }
    }

    let record_topics: BTreeSet<&str> =
        bound.iter().filter(|(c, _, _)| c.naming() == SubjectName::Record).map(|(_, t, _)| *t).collect();
    let strategy = |topic: &str| {
        if record_topics.contains(topic) { SubjectStrategy::Record } else { SubjectStrategy::Topic }
    };
    // Subjects named the way their topic names them go first: they are what producers use now.
    bound.sort_by_key(|(c, topic, _)| {
        (c.naming() != SubjectName::Record && strategy(topic) == SubjectStrategy::Record, c.subject.subject.clone())
    });
    let mut taken = Taken::default();
    let mut duplicates = Vec::new();
    let events = taken.bound(bound, strategy, &mut duplicates);
    let unbound = taken.unbound(unbound);

    let carried: BTreeSet<&str> = events.iter().filter_map(|e| e.topic.as_deref()).collect();
    let unused_topics = topics
        .kept
        .iter()
        .filter(|(name, _)| !carried.contains(*name))
        .map(|(name, topic)| ((*name).to_owned(), unused_reason(topic, &subjects, &not_events, &duplicates)))
        .collect();
    let planned_topics = topics
        .kept
        .iter()
        .filter(|(name, _)| carried.contains(*name))
        .map(|(name, topic)| PlannedTopic { topic, strategy: strategy(name) })
        .collect();
    Plan {
        topics: planned_topics,
        events,
        unbound,
        not_events,
        duplicates,
        unused_topics,
        left_out_topics,
        subjects_considered: subjects.len(),
    }
}

/// The comments of an event type: where it comes from, and how it is named.
fn notes(c: &Candidate<'_>, event_type: &str, naming: Naming, note: Option<String>) -> Vec<String> {
    let mut notes = vec![origin(c)];
    notes.extend(note);
    if naming == Naming::Derived {
        notes.push(derived_note(c, event_type));
    }
    notes
}

/// "subject …, version …, schema id …".
fn origin(c: &Candidate<'_>) -> String {
    let s = c.subject;
    format!("from subject {}, version {}, schema id {}", s.subject, s.version, s.id)
}

fn derived_note(c: &Candidate<'_>, event_type: &str) -> String {
    format!(
        "named after its record {} (its `event_type` field has no default): producers must put exactly \
         \"{event_type}\" in `event_type`",
        c.schema.record_name
    )
}

/// Why a topic considered carries no event type.
fn unused_reason(
    topic: &KafkaTopic,
    subjects: &[&RegistrySubject],
    not_events: &[Skipped],
    duplicates: &[Skipped],
) -> String {
    let value = format!("{}-value", topic.name);
    let mut parts = Vec::new();
    if let Some(s) = not_events.iter().find(|s| s.subject == value) {
        parts.push(format!("its subject {value} is not a sluice event schema ({})", s.reason));
    } else if duplicates.iter().any(|s| s.subject == value) {
        parts.push(format!("its subject {value} stands for an event type written from another subject"));
    } else if !subjects.iter().any(|s| s.subject == value) {
        parts.push(format!("no subject {value}"));
    }
    match &topic.sample {
        None => {}
        Some(s) if s.records == 0 => parts.push("no records".to_owned()),
        Some(s) => {
            let (mut events, mut others): (BTreeSet<&str>, BTreeSet<&str>) = Default::default();
            let mut unknown: Vec<String> = Vec::new();
            for id in s.schema_ids.keys() {
                let of: Vec<&str> =
                    subjects.iter().filter(|x| x.ids().any(|i| i == *id)).map(|x| x.subject.as_str()).collect();
                if of.is_empty() {
                    unknown.push(id.to_string());
                }
                for subject in of.into_iter().filter(|s| *s != value) {
                    if not_events.iter().any(|n| n.subject == subject) {
                        others.insert(subject);
                    } else {
                        events.insert(subject);
                    }
                }
            }
            if !events.is_empty() {
                let events: Vec<&str> = events.into_iter().collect();
                parts.push(format!(
                    "its latest records carry the schemas of {}, written with the topic carrying most of their \
                     records (an event type has one topic)",
                    events.join(", ")
                ));
            }
            if !others.is_empty() {
                let others: Vec<&str> = others.into_iter().collect();
                parts.push(format!("its latest records carry the schemas of {}, no sluice events", others.join(", ")));
            }
            if !unknown.is_empty() {
                parts.push(format!(
                    "its latest records carry schema ids of no subject read ({}; see --subjects)",
                    unknown.join(", ")
                ));
            }
            if s.unframed > 0 {
                parts.push(format!(
                    "{} of its {} latest records are not in the Confluent framing",
                    s.unframed, s.records
                ));
            }
        }
    }
    if parts.is_empty() { "no sluice event schema is bound to it".to_owned() } else { parts.join("; ") }
}
