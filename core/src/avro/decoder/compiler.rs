//! Schemas compiled into [`Node`]s, references inlined; what the plan does not cover (recursion,
//! depth past [`MAX_DEPTH`], big-decimal) does not compile and is read by apache-avro.

use apache_avro::Schema;
use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, Name, NamesRef, NamespaceRef, RecordSchema, UuidSchema,
};

use super::plan::Node;
use crate::calendar::Unit;

/// Records nested deeper than this are left to apache-avro.
pub(super) const MAX_DEPTH: usize = 32;

/// Turns schemas into [`Node`]s, inlining references; a recursive type does not compile.
pub(super) struct Compiler<'a, 's> {
    pub(super) names: &'a NamesRef<'s>,
    /// The records being compiled, innermost last.
    pub(super) stack: Vec<Name>,
}

impl Compiler<'_, '_> {
    pub(super) fn node(&mut self, schema: &Schema, ns: NamespaceRef<'_>) -> Option<Node> {
        let node = match schema {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int => Node::Int,
            Schema::Long => Node::Long,
            Schema::Date => Node::Date,
            Schema::TimeMillis => Node::Time(Unit::Millis),
            Schema::TimeMicros => Node::Time(Unit::Micros),
            Schema::TimestampMillis => Node::Timestamp { unit: Unit::Millis, zoned: true },
            Schema::TimestampMicros => Node::Timestamp { unit: Unit::Micros, zoned: true },
            Schema::TimestampNanos => Node::Timestamp { unit: Unit::Nanos, zoned: true },
            Schema::LocalTimestampMillis => Node::Timestamp { unit: Unit::Millis, zoned: false },
            Schema::LocalTimestampMicros => Node::Timestamp { unit: Unit::Micros, zoned: false },
            Schema::LocalTimestampNanos => Node::Timestamp { unit: Unit::Nanos, zoned: false },
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes => Node::Bytes,
            Schema::String => Node::String,
            Schema::Uuid(UuidSchema::String) => Node::Uuid,
            Schema::Uuid(UuidSchema::Bytes) => Node::UuidBytes,
            Schema::Uuid(UuidSchema::Fixed(FixedSchema { size: 16, .. })) => Node::UuidFixed,
            Schema::Fixed(fixed) => Node::Fixed(fixed.size),
            Schema::Enum(EnumSchema { symbols, .. }) => Node::Enum(symbols.clone().into_boxed_slice()),
            Schema::Decimal(DecimalSchema { inner, scale, .. }) => Node::Decimal {
                fixed: match inner {
                    InnerDecimalSchema::Bytes => None,
                    InnerDecimalSchema::Fixed(fixed) => Some(fixed.size),
                },
                scale: *scale,
            },
            Schema::Duration(FixedSchema { size: 12, .. }) => Node::Duration,
            Schema::Union(union) => match union.variants() {
                [Schema::Null, inner] => Node::Nullable { null_index: 0, inner: Box::new(self.node(inner, ns)?) },
                [inner, Schema::Null] => Node::Nullable { null_index: 1, inner: Box::new(self.node(inner, ns)?) },
                variants => Node::Union(variants.iter().map(|s| self.node(s, ns)).collect::<Option<_>>()?),
            },
            Schema::Array(array) => Node::Array(Box::new(self.node(&array.items, ns)?)),
            Schema::Map(map) => Node::Map(Box::new(self.node(&map.types, ns)?)),
            Schema::Record(record) => Node::Record(self.record_fields(record, ns)?.into_boxed_slice()),
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(ns);
                // A named type that contains itself has no finite plan.
                if self.stack.contains(&full) || self.stack.len() >= MAX_DEPTH {
                    return None;
                }
                let named = *self.names.get(&full)?;
                self.node(named, full.namespace())?
            }
            // Always errors in apache-avro (a uuid fixed not of 16 bytes, a duration not of 12),
            // or is rare enough to leave to it (big-decimal).
            Schema::Uuid(UuidSchema::Fixed(_)) | Schema::Duration(_) | Schema::BigDecimal => return None,
        };
        Some(node)
    }

    pub(super) fn record_fields(&mut self, record: &RecordSchema, ns: NamespaceRef<'_>) -> Option<Vec<(String, Node)>> {
        let full = record.name.fully_qualified_name(ns).into_owned();
        if self.stack.contains(&full) || self.stack.len() >= MAX_DEPTH {
            return None;
        }
        let inner = full.namespace().map(str::to_owned);
        self.stack.push(full);
        let fields = record
            .fields
            .iter()
            .map(|field| Some((field.name.clone(), self.node(&field.schema, inner.as_deref())?)))
            .collect();
        self.stack.pop();
        fields
    }
}
