//! Named types in a schema: whether a schema refers to one defined elsewhere, so that converting,
//! encoding or decoding it must first resolve the schema's names.

use apache_avro::Schema;

/// Whether `schema` refers to a named type defined elsewhere (then converting, encoding or
/// decoding it needs the schema's names).
pub(super) fn has_ref(schema: &Schema) -> bool {
    match schema {
        Schema::Ref { .. } => true,
        Schema::Array(array) => has_ref(&array.items),
        Schema::Map(map) => has_ref(&map.types),
        Schema::Union(union) => union.variants().iter().any(has_ref),
        Schema::Record(record) => record.fields.iter().any(|f| has_ref(&f.schema)),
        _ => false,
    }
}
