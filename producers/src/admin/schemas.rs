//! `sluice schemas register` and `sluice schemas check`: the topology's schemas against the registry.
//!
//! The schemas come from the topology (each event type's `.avsc` and subject); what the registry
//! holds comes from its Confluent API ([`Registry`]). [`register`] sets each subject's
//! compatibility level from the topology, then registers the schema (or finds it already there).
//! [`check`] compares without changing anything: the registry says only whether a schema is
//! compatible, so the same rules run locally ([`compare`], with apache-avro's schema resolution
//! checker) to say which field breaks them.

use apache_avro::Schema;
use apache_avro::error::CompatibilityError;
use apache_avro::schema::RecordSchema;
use apache_avro::schema_compatibility::{Compatibility as Resolution, SchemaCompatibility};
use sluice_core::topology::{Compatibility, EventInfo, Topology};

use crate::RegistryError;
use crate::registry::{Registry, SubjectVersion};

/// Whether `sluice schemas register` changed the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationStatus {
    /// A new version was registered (or the subject was created).
    New,
    /// The schema was already the subject's, at the version shown.
    Unchanged,
}

/// An event type's schema as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The registry-wide schema id producers frame events with.
    pub id: u32,
    /// Its version within the subject.
    pub version: u32,
    /// New or unchanged.
    pub status: RegistrationStatus,
}

/// Why an event type's schema could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The registry refused the schema as incompatible with the subject's earlier versions.
    #[error("INCOMPATIBLE: {reason} (registry: {registry})")]
    Incompatible {
        /// The local checker's reason, naming the field (or the registry's message when the
        /// local check finds nothing).
        reason: String,
        /// The registry's own message.
        registry: String,
    },
    /// Any other registry failure.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// The result for one event type.
#[derive(Debug, Clone)]
pub struct Outcome<T, E> {
    /// The event type.
    pub event_type: String,
    /// Its registry subject.
    pub subject: String,
    /// What happened.
    pub result: Result<T, E>,
}

/// Registers every event type's schema under its subject, each subject's compatibility level set
/// to the topology's first. Idempotent: a second run finds every schema `Unchanged`, with the
/// same ids.
pub async fn register(registry: &Registry, topology: &Topology) -> Vec<Outcome<Registration, RegisterError>> {
    let mut outcomes = Vec::new();
    for info in topology.events() {
        let result = register_one(registry, topology.compatibility(), info).await;
        outcomes.push(Outcome { event_type: info.event_type.clone(), subject: info.subject.clone(), result });
    }
    outcomes
}

async fn register_one(
    registry: &Registry,
    level: Compatibility,
    info: &EventInfo,
) -> Result<Registration, RegisterError> {
    let subject = &info.subject;
    registry.set_compatibility(subject, level).await?;
    if let Some(found) = registry.lookup(subject, &info.schema_text).await? {
        return Ok(Registration { id: found.id, version: found.version, status: RegistrationStatus::Unchanged });
    }
    match registry.register(subject, &info.schema_text, &info.record_name).await {
        Ok(id) => {
            let version = registry.lookup(subject, &info.schema_text).await?.map_or(0, |v| v.version);
            Ok(Registration { id, version, status: RegistrationStatus::New })
        }
        Err(RegistryError::Incompatible { message, .. }) => {
            // The registry's message names a JSON pointer at best; say which field and why.
            let registered = registered_versions(registry, subject, level).await?;
            let reason = match compare(level, &info.schema, &registered) {
                Err(incompatible) => incompatible.to_string(),
                Ok(_) => "the registry gives no more detail".to_owned(),
            };
            Err(RegisterError::Incompatible { reason, registry: message })
        }
        Err(e) => Err(e.into()),
    }
}

/// How the local schema of an event type relates to what its subject holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The subject has no versions yet: registering creates it.
    NewSubject,
    /// The local schema is the subject's latest version.
    Identical {
        /// The latest version.
        version: u32,
        /// Its schema id.
        id: u32,
    },
    /// A different schema that the subject's level admits as its next version.
    Compatible {
        /// The latest version it was compared with.
        latest: u32,
    },
    /// A schema the subject's level refuses.
    Incompatible(Incompatibility),
}

/// Why a schema cannot be the next version of a subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", .direction.describe(*.version))]
pub struct Incompatibility {
    /// The registered version it conflicts with.
    pub version: u32,
    /// Who cannot read whom.
    pub direction: Direction,
    /// What breaks, naming the field (`field "currency" is new and has no default`).
    pub detail: String,
}

/// Which side of a schema change cannot read the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Backward: the new schema cannot read events written with the registered one.
    NewCannotReadOld,
    /// Forward: readers of the registered schema cannot read events written with the new one.
    OldCannotReadNew,
    /// The registry refuses the change without saying why, and the local check finds nothing.
    RegistryRefuses,
}

impl Direction {
    fn describe(self, version: u32) -> String {
        match self {
            Self::NewCannotReadOld => format!("the new schema cannot read events written with version {version}"),
            Self::OldCannotReadNew => {
                format!("readers of version {version} cannot read events written with the new schema")
            }
            Self::RegistryRefuses => format!("the registry refuses it as the successor of version {version}"),
        }
    }
}

/// The check of one event type's schema.
#[derive(Debug, Clone)]
pub struct SubjectCheck {
    /// The verdict under the topology's level.
    pub verdict: Verdict,
    /// The level set on the subject in the registry, when it differs from the topology's
    /// (`None` when they agree); `schemas register` sets it.
    pub registry_level: Option<String>,
}

/// Compares every event type's schema with what its subject holds, changing nothing.
pub async fn check(registry: &Registry, topology: &Topology) -> Vec<Outcome<SubjectCheck, RegistryError>> {
    let mut outcomes = Vec::new();
    for info in topology.events() {
        let result = check_one(registry, topology.compatibility(), info).await;
        outcomes.push(Outcome { event_type: info.event_type.clone(), subject: info.subject.clone(), result });
    }
    outcomes
}

async fn check_one(registry: &Registry, level: Compatibility, info: &EventInfo) -> Result<SubjectCheck, RegistryError> {
    let subject = &info.subject;
    let registry_level = registry.compatibility(subject).await?.filter(|l| l != level.as_str());
    let Some(latest) = registry.latest(subject).await? else {
        return Ok(SubjectCheck { verdict: Verdict::NewSubject, registry_level });
    };
    if same_schema(&latest.schema, &info.schema_text) {
        let verdict = Verdict::Identical { version: latest.version, id: latest.id };
        return Ok(SubjectCheck { verdict, registry_level });
    }
    let registered = registered_versions(registry, subject, level).await?;
    let local = compare(level, &info.schema, &registered);
    // The registry judges by its own level for the subject; ask it too, so a subject whose
    // level was changed by hand is not reported compatible on the topology's word alone.
    let registry_accepts = registry.is_compatible(subject, &info.schema_text).await?.unwrap_or(true);
    let verdict = match local {
        Err(incompatible) => Verdict::Incompatible(incompatible),
        Ok(_) if !registry_accepts => Verdict::Incompatible(Incompatibility {
            version: latest.version,
            direction: Direction::RegistryRefuses,
            detail: format!(
                "it gives no reason, and the local {level} check finds none (the subject's level in the registry: {})",
                registry_level.as_deref().unwrap_or(level.as_str())
            ),
        }),
        Ok(_) => Verdict::Compatible { latest: latest.version },
    };
    Ok(SubjectCheck { verdict, registry_level })
}

/// The registered versions `level` compares a new schema with: the latest one, or all of them
/// for the transitive levels; each parsed. Unparseable versions are skipped with a warning (the
/// registry accepted them, so this would be a parser difference).
async fn registered_versions(
    registry: &Registry,
    subject: &str,
    level: Compatibility,
) -> Result<Vec<(u32, Schema)>, RegistryError> {
    let transitive = matches!(
        level,
        Compatibility::BackwardTransitive | Compatibility::ForwardTransitive | Compatibility::FullTransitive
    );
    let mut found: Vec<SubjectVersion> = Vec::new();
    if transitive {
        for version in registry.versions(subject).await? {
            found.extend(registry.version(subject, Some(version)).await?);
        }
    } else {
        found.extend(registry.latest(subject).await?);
    }
    Ok(found
        .into_iter()
        .filter_map(|v| match Schema::parse_str(&v.schema) {
            Ok(schema) => Some((v.version, schema)),
            Err(e) => {
                tracing::warn!(subject, version = v.version, error = %e, "cannot parse a registered schema");
                None
            }
        })
        .collect())
}

/// The same schema text up to formatting (the registry may keep it reformatted).
fn same_schema(registered: &str, local: &str) -> bool {
    match (serde_json::from_str::<serde_json::Value>(registered), serde_json::from_str::<serde_json::Value>(local)) {
        (Ok(a), Ok(b)) => a == b,
        _ => registered == local,
    }
}

/// Checks `new` as the next version after `registered` (oldest first) under `level` (pure): the
/// latest version only, or every one for the transitive levels. `Ok` with how well they resolve
/// (`Partial`: some values, such as enum symbols or union branches the other side lacks, would
/// not), or the first incompatibility, naming the field.
pub fn compare(
    level: Compatibility,
    new: &Schema,
    registered: &[(u32, Schema)],
) -> Result<Resolution, Incompatibility> {
    let (backward, forward, transitive) = match level {
        Compatibility::Backward => (true, false, false),
        Compatibility::BackwardTransitive => (true, false, true),
        Compatibility::Forward => (false, true, false),
        Compatibility::ForwardTransitive => (false, true, true),
        Compatibility::Full => (true, true, false),
        Compatibility::FullTransitive => (true, true, true),
        Compatibility::None => (false, false, false),
    };
    let against = if transitive { registered } else { &registered[registered.len().saturating_sub(1)..] };
    let mut resolution = Resolution::Full;
    // Newest first: the latest version is the most useful one to name.
    for (version, old) in against.iter().rev() {
        if backward {
            resolution &= SchemaCompatibility::can_read(old, new).map_err(|e| Incompatibility {
                version: *version,
                direction: Direction::NewCannotReadOld,
                detail: explain(&e, old, new, true),
            })?;
        }
        if forward {
            resolution &= SchemaCompatibility::can_read(new, old).map_err(|e| Incompatibility {
                version: *version,
                direction: Direction::OldCannotReadNew,
                detail: explain(&e, new, old, false),
            })?;
        }
    }
    Ok(resolution)
}

/// A compatibility error in words, with the dotted path of the field (`address.zip`) and the two
/// types when they differ. `writer` and `reader` are the schemas the check was run with;
/// `reader_is_new` says which of them is the local schema.
fn explain(error: &CompatibilityError, writer: &Schema, reader: &Schema, reader_is_new: bool) -> String {
    let mut path: Vec<&str> = Vec::new();
    let mut current = error;
    while let CompatibilityError::FieldTypeMismatch(field, inner) = current {
        path.push(field);
        current = inner;
    }
    let at = |path: &[&str]| path.join(".");
    match current {
        CompatibilityError::MissingDefaultValue(field) => {
            let mut full = path.clone();
            full.push(field);
            if reader_is_new {
                format!("field \"{}\" is new and has no default", at(&full))
            } else {
                format!("field \"{}\" is removed, and the registered schema gives it no default", at(&full))
            }
        }
        _ if !path.is_empty() => {
            let types = match (field_schema(writer, &path), field_schema(reader, &path)) {
                (Some(w), Some(r)) => format!(" (written as {}, read as {})", describe(w), describe(r)),
                _ => String::new(),
            };
            format!("field \"{}\" changed type incompatibly{types}: {}", at(&path), short(current))
        }
        _ => short(current),
    }
}

/// The error's own text without apache-avro's `Incompatible schemata! ` prefix and with the
/// schemas' debug dumps left out.
fn short(error: &CompatibilityError) -> String {
    match error {
        CompatibilityError::WrongType { .. } => "the types cannot be resolved".to_owned(),
        other => {
            let text = other.to_string();
            ["Incompatible schemata! ", "Incompatible schema types! "]
                .iter()
                .find_map(|p| text.strip_prefix(p))
                .map_or(text.clone(), str::to_owned)
        }
    }
}

/// The schema of the field at `path` (record fields, through `[null, record]` unions).
fn field_schema<'a>(schema: &'a Schema, path: &[&str]) -> Option<&'a Schema> {
    let Some((first, rest)) = path.split_first() else { return Some(schema) };
    let record = match schema {
        Schema::Record(r) => Some(r),
        Schema::Union(u) => u.variants().iter().find_map(|v| match v {
            Schema::Record(r) => Some(r),
            _ => None,
        }),
        _ => None,
    }?;
    let RecordSchema { fields, .. } = record;
    let field = fields.iter().find(|f| f.name == *first)?;
    field_schema(&field.schema, rest)
}

/// A short name of a schema: `long`, `string`, `["null", "string"]`, `record Item`.
fn describe(schema: &Schema) -> String {
    match schema {
        Schema::Union(u) => {
            let parts: Vec<String> = u.variants().iter().map(describe).collect();
            format!("[{}]", parts.join(", "))
        }
        Schema::Record(r) => format!("record {}", r.name.name()),
        Schema::Enum(e) => format!("enum {}", e.name.name()),
        Schema::Fixed(f) => format!("fixed {}", f.name.name()),
        Schema::Array(a) => format!("array of {}", describe(&a.items)),
        Schema::Map(m) => format!("map of {}", describe(&m.types)),
        Schema::Ref { name } => name.name().to_owned(),
        other => {
            let kind = format!("{:?}", apache_avro::schema::SchemaKind::from(other));
            let mut snake = String::new();
            for (i, c) in kind.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    snake.push('-');
                }
                snake.extend(c.to_lowercase());
            }
            snake
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type": "record", "name": "Order", "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": null}
    ]}"#;

    fn with_fields(extra: &str) -> Schema {
        let text = V1.replacen(
            r#"{"name": "note", "type": ["null", "string"], "default": null}"#,
            &format!(r#"{{"name": "note", "type": ["null", "string"], "default": null}}{extra}"#),
            1,
        );
        Schema::parse_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn v1() -> Vec<(u32, Schema)> {
        vec![(1, Schema::parse_str(V1).expect("v1"))]
    }

    #[test]
    fn a_new_field_without_default_breaks_backward_naming_the_field() {
        let new = with_fields(r#", {"name": "currency", "type": "string"}"#);
        let err = compare(Compatibility::Backward, &new, &v1()).expect_err("incompatible");
        assert_eq!(
            err.to_string(),
            "the new schema cannot read events written with version 1: field \"currency\" is new and has no default"
        );
        assert!(compare(Compatibility::Forward, &new, &v1()).is_ok(), "old readers ignore the new field");
        assert!(compare(Compatibility::None, &new, &v1()).is_ok());
        let with_default = with_fields(r#", {"name": "currency", "type": "string", "default": "EUR"}"#);
        assert_eq!(compare(Compatibility::Full, &with_default, &v1()), Ok(Resolution::Full));
    }

    #[test]
    fn a_changed_type_names_both_types() {
        let new = Schema::parse_str(&V1.replacen(r#""type": "long""#, r#""type": "int""#, 1)).expect("schema");
        let err = compare(Compatibility::Backward, &new, &v1()).expect_err("long does not fit int");
        assert_eq!(err.version, 1);
        assert!(
            err.detail.starts_with("field \"amount\" changed type incompatibly (written as long, read as int)"),
            "{}",
            err.detail
        );
        assert!(compare(Compatibility::Forward, &new, &v1()).is_ok(), "int widens to long");
    }

    #[test]
    fn removing_a_field_without_default_breaks_forward() {
        let new = Schema::parse_str(
            r#"{"type": "record", "name": "Order", "fields": [
                {"name": "id", "type": "string"}, {"name": "note", "type": ["null", "string"], "default": null}]}"#,
        )
        .expect("schema");
        assert!(compare(Compatibility::Backward, &new, &v1()).is_ok());
        let err = compare(Compatibility::FullTransitive, &new, &v1()).expect_err("forward part");
        assert_eq!(err.detail, "field \"amount\" is removed, and the registered schema gives it no default");
    }

    #[test]
    fn transitive_levels_name_the_oldest_conflicting_version() {
        let v2 = with_fields(r#", {"name": "currency", "type": "string", "default": "EUR"}"#);
        let mut registered = v1();
        registered.push((2, v2));
        let new = with_fields(r#", {"name": "currency", "type": "string"}"#);
        let err = compare(Compatibility::BackwardTransitive, &new, &registered).expect_err("v1 lacks currency");
        assert_eq!(err.version, 1, "v2 has the field, v1 does not");
        assert!(compare(Compatibility::Backward, &new, &registered).is_ok(), "only v2, the latest, counts");
    }

    #[test]
    fn nested_fields_get_a_dotted_path() {
        let nested = |zip: &str| {
            Schema::parse_str(&format!(
                r#"{{"type": "record", "name": "R", "fields": [{{"name": "address", "type": {{"type": "record",
                "name": "Address", "fields": [{{"name": "city", "type": "string"}}{zip}]}}}}]}}"#
            ))
            .expect("schema")
        };
        let err =
            compare(Compatibility::Backward, &nested(r#", {"name": "zip", "type": "string"}"#), &[(3, nested(""))])
                .expect_err("zip has no default");
        assert_eq!(err.detail, "field \"address.zip\" is new and has no default");
    }

    #[test]
    fn same_schema_ignores_formatting() {
        assert!(same_schema(r#"{"type":"string"}"#, "{ \"type\": \"string\" }\n"));
        assert!(!same_schema(r#"{"type":"string","doc":"a"}"#, r#"{"type":"string"}"#));
    }
}
