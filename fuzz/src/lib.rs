//! What the fuzz targets share: the repository's topology and schemas, read once per process.
//!
//! Targets run from anywhere (`cargo fuzz run`, `dev/fuzz`, a reproducer by hand), so every path
//! is taken from this crate's manifest directory: the repository is its parent. Everything here is
//! built lazily on the first input and kept, so an execution pays only for the code under test.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use apache_avro::Schema;
use serde_json::{Value as Json, json};
use sluice_core::topology::Topology;

/// The repository root (the parent of `fuzz/`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The repository's own `topology.toml`, validated with its schema files.
pub static TOPOLOGY: LazyLock<Topology> = LazyLock::new(|| {
    Topology::load(&repo().join("topology.toml")).unwrap_or_else(|e| panic!("the repository topology: {e}"))
});

/// The second domain of the repository's tests (`tests/domains/orders`): a shop's orders, whose
/// schemas have what the sample domain's lack (decimals, arrays of records, enums, maps, uuids,
/// microsecond timestamps, dates, doubles).
pub static ORDERS: LazyLock<Topology> = LazyLock::new(|| {
    let path = repo().join("tests/domains/orders/topology.toml");
    Topology::load(&path).unwrap_or_else(|e| panic!("the orders domain's topology: {e}"))
});

/// The repository topology's text (the seed of the `topology` target, and what it validates
/// against when it reads schema files).
pub static TOPOLOGY_TEXT: LazyLock<String> = LazyLock::new(|| {
    std::fs::read_to_string(repo().join("topology.toml")).unwrap_or_else(|e| panic!("topology.toml: {e}"))
});

/// One schema the Avro targets check, with the reader schemas a worker may resolve it to.
#[derive(Debug)]
pub struct Case {
    /// The event type (`user.registered`).
    pub event_type: String,
    /// The writer schema: the repository's `.avsc` file.
    pub writer: Arc<Schema>,
    /// Readers: the writer plus one field with a default (a newer schema reading older events),
    /// and the writer less its last payload field (an older reader of newer events).
    pub readers: [Arc<Schema>; 2],
}

/// Every event type of the repository topology, in the topology's (alphabetical) order, then
/// those of the orders domain. An index taken from the input selects one, so the corpus stays
/// valid as long as the list does (after adding event types, rewrite it: `dev/fuzz --seeds`).
pub static CASES: LazyLock<Vec<Case>> = LazyLock::new(|| {
    TOPOLOGY
        .events()
        .chain(ORDERS.events())
        .map(|info| {
            let text: Json =
                serde_json::from_str(&info.schema_text).unwrap_or_else(|e| panic!("{}: {e}", info.event_type));
            let added = with_fields(&text, |fields| {
                fields.push(json!({"name": "fuzz_added", "type": ["null", "string"], "default": null}));
            });
            let dropped = with_fields(&text, |fields| {
                let last_is_payload = fields
                    .last()
                    .and_then(|f| f["name"].as_str())
                    .is_some_and(|name| !sluice_core::topology::is_envelope_field(name));
                if last_is_payload {
                    fields.pop();
                }
            });
            Case {
                event_type: info.event_type.clone(),
                writer: Arc::new(info.schema.clone()),
                readers: [added, dropped],
            }
        })
        .collect()
});

/// Open findings, reported to the owner of the code and skipped by the targets until fixed, so
/// the short pass of `dev/test` stays green meanwhile. Each has its reproducer in
/// `fuzz/regressions/<target>/` (not run by `dev/fuzz`); the fix moves it into
/// `fuzz/corpus/<target>/` and removes its line here.
pub fn known_issue(_message: &str) -> bool {
    // None open. (The last, a `decimal` of 0 bytes read as a number, is refused since: its
    // inputs are regression seeds in fuzz/corpus/unframe_decode/.)
    false
}

/// Whether two Avro bodies of `schema` are the same: byte for byte, or, where the schema has a
/// map (apache-avro writes a map in its `HashMap`'s order, the fast encoder in the JSON's), the
/// same value read back. The rule of core's own encoder property tests.
pub fn same_body(a: &[u8], b: &[u8], schema: &Schema) -> bool {
    if has_map(schema) {
        let read = |body| sluice_core::avro::decode(body, schema, None).ok();
        read(a).is_some() && read(a) == read(b)
    } else {
        a == b
    }
}

fn has_map(schema: &Schema) -> bool {
    match schema {
        Schema::Map(_) => true,
        Schema::Array(array) => has_map(&array.items),
        Schema::Union(union) => union.variants().iter().any(has_map),
        Schema::Record(record) => record.fields.iter().any(|f| has_map(&f.schema)),
        _ => false,
    }
}

/// The record schema `schema` with its field list changed by `edit`.
fn with_fields(schema: &Json, edit: impl FnOnce(&mut Vec<Json>)) -> Arc<Schema> {
    let mut schema = schema.clone();
    if let Some(fields) = schema.get_mut("fields").and_then(Json::as_array_mut) {
        edit(fields);
    }
    Arc::new(Schema::parse(&schema).unwrap_or_else(|e| panic!("a reader schema made for fuzzing: {e}")))
}
