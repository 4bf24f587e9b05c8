//! The typed columns of a declared ClickHouse table, derived from the event types' Avro schemas.
//!
//! A table declared under `[projections.<name>.clickhouse.tables.<table>]` takes some event types;
//! its columns come from their payload fields (all of them, or a chosen and renamed subset). Here
//! each field becomes a [`TableColumn`]: where its value is in a decoded event's payload (a
//! [`Step`] path) and its [`ColumnType`], a sink-neutral description the ClickHouse sink turns
//! into a server type and a binary encoding. Pure code: the schemas in, columns or a
//! [`ColumnError`] out.
//!
//! # How Avro becomes columns
//!
//! - Scalars and logical types map one to one (`decimal(P, S)` exactly, never through a double).
//! - A nullable union (`["null", T]`) makes the column nullable; any other union, a `big-decimal`
//!   or a `duration` is kept as its JSON text ([`ColumnType::Json`]).
//! - A nested record is **flattened**: field `customer` with fields `id` and `tier` gives the
//!   columns `customer_id` and `customer_tier` (nullable when the record is). Flat columns are
//!   what analysts filter, sort and group by on every server generation; a Tuple or JSON column
//!   would not be on 18.16.
//! - An array of records becomes one array column per leaf, as ClickHouse's `Nested` does:
//!   `items: [{sku, qty}]` gives `items_sku Array(String)` and `items_qty Array(Int32)`, parallel
//!   and of equal length (`ARRAY JOIN items_sku, items_qty` reads them back as rows).
//! - Arrays of anything else, and maps, keep their shape ([`ColumnType::Array`], [`ColumnType::Map`]);
//!   a map of records is kept as JSON text.
//! - A column named in `columns` takes one path: `"total"`, `"customer.id"`, `"items[].sku"`
//!   (every element's), `"items[0].sku"` (the first element's, nullable: an array may be
//!   shorter). A record named whole there is kept as its JSON text.
//! - A table of several event types has the union of their columns; a column some of them lack
//!   is nullable (arrays and maps are empty instead), and a column must have one type in all.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordSchema, ResolvedSchema, UuidSchema};
use serde_json::{Map, Value};

use super::schema::is_envelope_field;

/// How deep records and arrays may nest before a field is kept as JSON text (and a recursive
/// type stops).
const MAX_DEPTH: usize = 16;

/// One step from the payload to a column's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    /// Into a record's field (a payload field at the first step).
    Field(String),
    /// Into every element of an array: the value is the array of what the rest of the path gives.
    Each,
    /// Into one element of an array, counted from 0 (`null` past its end).
    Index(usize),
}

/// A path from the payload to a value, as written in `columns` and Couchbase `fields`:
/// `customer.id`, `items[].sku`, `items[0].sku`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<Step>);

impl FieldPath {
    /// Parses `a.b`, `items[].sku`, `items[0].sku`; `None` for an empty step, stray brackets or
    /// an index that is not a number.
    pub fn parse(text: &str) -> Option<Self> {
        let mut steps = Vec::new();
        for part in text.split('.') {
            let (name, mut brackets) = part.split_at(part.find('[').unwrap_or(part.len()));
            if name.is_empty() || name.contains(']') {
                return None;
            }
            steps.push(Step::Field(name.to_owned()));
            while let Some(rest) = brackets.strip_prefix('[') {
                let (inside, after) = rest.split_once(']')?;
                steps.push(match inside {
                    "" => Step::Each,
                    digits if digits.bytes().all(|b| b.is_ascii_digit()) => Step::Index(digits.parse().ok()?),
                    _ => return None,
                });
                brackets = after;
            }
            if !brackets.is_empty() {
                return None;
            }
        }
        Some(Self(steps))
    }
}

impl FieldPath {
    /// The value at this path in `payload` (`null` where it leads nowhere; through arrays, the
    /// array of what each element gives). Borrowed unless the path goes through an array: no
    /// copy of a field's value per row.
    pub fn get<'a>(&self, payload: &'a Map<String, Value>) -> Cow<'a, Value> {
        match self.0.split_first() {
            Some((Step::Field(name), rest)) => payload.get(name).map_or(Cow::Owned(Value::Null), |v| at(v, rest)),
            _ => Cow::Owned(Value::Null),
        }
    }
}

fn at<'a>(value: &'a Value, steps: &[Step]) -> Cow<'a, Value> {
    match (steps.split_first(), value) {
        (None, v) => Cow::Borrowed(v),
        (Some((Step::Field(name), rest)), Value::Object(fields)) => {
            fields.get(name).map_or(Cow::Owned(Value::Null), |v| at(v, rest))
        }
        (Some((Step::Each, rest)), Value::Array(items)) => {
            Cow::Owned(Value::Array(items.iter().map(|i| at(i, rest).into_owned()).collect()))
        }
        (Some((Step::Index(i), rest)), Value::Array(items)) => {
            items.get(*i).map_or(Cow::Owned(Value::Null), |v| at(v, rest))
        }
        _ => Cow::Owned(Value::Null),
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for step in &self.0 {
            match step {
                Step::Field(name) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?;
                }
                Step::Each => f.write_str("[]")?,
                Step::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// What a column holds, whatever server stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// `boolean`.
    Bool,
    /// `int`.
    Int,
    /// `long`.
    Long,
    /// `float`.
    Float,
    /// `double`.
    Double,
    /// `string`.
    String,
    /// `bytes`.
    Bytes,
    /// `fixed` of this size.
    Fixed(usize),
    /// `enum` with these symbols.
    Enum(Vec<String>),
    /// `uuid`.
    Uuid,
    /// `date`: days since 1970-01-01.
    Date,
    /// `time-millis`: milliseconds since midnight.
    TimeMillis,
    /// `time-micros`: microseconds since midnight.
    TimeMicros,
    /// `timestamp-millis` (and `local-timestamp-millis`).
    TimestampMillis,
    /// `timestamp-micros` (and `local-timestamp-micros`).
    TimestampMicros,
    /// `timestamp-nanos` (and `local-timestamp-nanos`).
    TimestampNanos,
    /// `decimal(precision, scale)`, exact.
    Decimal {
        /// Total digits.
        precision: usize,
        /// Digits after the point.
        scale: usize,
    },
    /// Anything else, as its JSON text (see the module docs).
    Json,
    /// The value may be missing or null.
    Nullable(Box<ColumnType>),
    /// An array of values.
    Array(Box<ColumnType>),
    /// A map from strings to values.
    Map(Box<ColumnType>),
}

impl ColumnType {
    /// Nullable, unless it already is, or is an array or map (which are empty instead).
    pub fn nullable(self) -> Self {
        match self {
            Self::Nullable(_) | Self::Array(_) | Self::Map(_) => self,
            other => Self::Nullable(Box::new(other)),
        }
    }

    /// The type without its nullability.
    pub fn non_null(&self) -> &Self {
        match self {
            Self::Nullable(inner) => inner,
            other => other,
        }
    }

    /// Whether the values are numbers (for sums and averages).
    pub fn is_numeric(&self) -> bool {
        matches!(self.non_null(), Self::Int | Self::Long | Self::Float | Self::Double | Self::Decimal { .. })
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool => f.write_str("boolean"),
            Self::Int => f.write_str("int"),
            Self::Long => f.write_str("long"),
            Self::Float => f.write_str("float"),
            Self::Double => f.write_str("double"),
            Self::String => f.write_str("string"),
            Self::Bytes => f.write_str("bytes"),
            Self::Fixed(n) => write!(f, "fixed({n})"),
            Self::Enum(symbols) => write!(f, "enum({})", symbols.join(", ")),
            Self::Uuid => f.write_str("uuid"),
            Self::Date => f.write_str("date"),
            Self::TimeMillis => f.write_str("time-millis"),
            Self::TimeMicros => f.write_str("time-micros"),
            Self::TimestampMillis => f.write_str("timestamp-millis"),
            Self::TimestampMicros => f.write_str("timestamp-micros"),
            Self::TimestampNanos => f.write_str("timestamp-nanos"),
            Self::Decimal { precision, scale } => write!(f, "decimal({precision}, {scale})"),
            Self::Json => f.write_str("JSON text"),
            Self::Nullable(inner) => write!(f, "nullable {inner}"),
            Self::Array(inner) => write!(f, "array of {inner}"),
            Self::Map(inner) => write!(f, "map of {inner}"),
        }
    }
}

/// A column of a declared table: its name, where its value comes from, its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    /// The column name.
    pub name: String,
    /// Where the value is in the payload.
    pub path: FieldPath,
    /// What it holds.
    pub ty: ColumnType,
}

/// Why the columns of a table cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// A column's path leads nowhere in any of the event types.
    #[error("no event type of the table has a field {path} (for column `{column}`)")]
    NoSuchField {
        /// The column.
        column: String,
        /// Its path.
        path: String,
    },
    /// Two event types give one column different types.
    #[error("column `{column}` is {first} in {first_type} but {second} in {second_type}")]
    Conflict {
        /// The column.
        column: String,
        /// Its type in the first event type that has it.
        first: ColumnType,
        /// That event type.
        first_type: String,
        /// Its type in another.
        second: ColumnType,
        /// That one.
        second_type: String,
    },
    /// Two fields flatten to one column name.
    #[error("fields {first} and {second} both become column `{column}`")]
    Clash {
        /// The column name.
        column: String,
        /// One path.
        first: String,
        /// The other.
        second: String,
    },
    /// A column would shadow an envelope column.
    #[error("column `{column}` would shadow the envelope column of that name")]
    Envelope {
        /// The column.
        column: String,
    },
}

/// The columns of one event type's payload: every field, flattened (see the module docs).
pub fn payload_columns(schema: &Schema) -> Vec<TableColumn> {
    let names = names_of(schema);
    let mut out = Vec::new();
    if let Schema::Record(record) = schema {
        for field in record.fields.iter().filter(|f| !is_envelope_field(&f.name)) {
            let path = FieldPath(vec![Step::Field(field.name.clone())]);
            flatten(&field.name, path, &field.schema, &names, Shape::default(), &mut out);
        }
    }
    out
}

/// The column `name` taking `path` in `schema`; `None` when the schema has no such field.
pub fn path_column(schema: &Schema, name: &str, path: &FieldPath) -> Option<TableColumn> {
    let names = names_of(schema);
    let mut current = schema;
    let mut shape = Shape::default();
    for step in &path.0 {
        current = resolve(current, &names)?;
        if let Schema::Union(u) = current
            && let [Schema::Null, inner] | [inner, Schema::Null] = u.variants()
        {
            shape.nullable = true;
            current = resolve(inner, &names)?;
        }
        match (step, current) {
            (Step::Field(f), Schema::Record(r)) => {
                if shape.arrays == 0 && shape.depth == 0 && is_envelope_field(f) {
                    return None;
                }
                current = &r.fields.get(*r.lookup.get(f)?)?.schema;
            }
            (Step::Each, Schema::Array(a)) => {
                shape.arrays += 1;
                // Within an array, nullability is the element's own.
                shape.nullable = false;
                current = &a.items;
            }
            (Step::Index(_), Schema::Array(a)) => {
                // The array may be shorter.
                shape.nullable = true;
                current = &a.items;
            }
            _ => return None,
        }
        shape.depth += 1;
    }
    let ty = shape.wrap(leaf(current, &names, shape.depth));
    Some(TableColumn { name: name.to_owned(), path: path.clone(), ty })
}

/// Merges the columns of several event types (`(event type, its columns)`), in first-seen order:
/// a column some types lack becomes nullable; one type per column.
pub fn merge(per_type: &[(&str, Vec<TableColumn>)]) -> Result<Vec<TableColumn>, ColumnError> {
    let mut merged: Vec<TableColumn> = Vec::new();
    let mut first_of: BTreeMap<String, (usize, &str)> = BTreeMap::new();
    for (event_type, columns) in per_type {
        for column in columns {
            if is_envelope_column(&column.name) {
                return Err(ColumnError::Envelope { column: column.name.clone() });
            }
            match first_of.get(&column.name) {
                None => {
                    if let Some(other) = columns.iter().find(|c| c.name == column.name && c.path != column.path) {
                        return Err(ColumnError::Clash {
                            column: column.name.clone(),
                            first: column.path.to_string(),
                            second: other.path.to_string(),
                        });
                    }
                    first_of.insert(column.name.clone(), (merged.len(), event_type));
                    merged.push(column.clone());
                }
                Some(&(i, first_type)) => {
                    let existing = &mut merged[i];
                    if existing.path != column.path {
                        return Err(ColumnError::Clash {
                            column: column.name.clone(),
                            first: existing.path.to_string(),
                            second: column.path.to_string(),
                        });
                    }
                    if existing.ty.non_null() != column.ty.non_null() {
                        return Err(ColumnError::Conflict {
                            column: column.name.clone(),
                            first: existing.ty.clone(),
                            first_type: first_type.to_owned(),
                            second: column.ty.clone(),
                            second_type: (*event_type).to_owned(),
                        });
                    }
                    if matches!(column.ty, ColumnType::Nullable(_)) {
                        existing.ty = existing.ty.clone().nullable();
                    }
                }
            }
        }
    }
    for column in &mut merged {
        let everywhere = per_type.iter().all(|(_, columns)| columns.iter().any(|c| c.name == column.name));
        if !everywhere {
            column.ty = column.ty.clone().nullable();
        }
    }
    Ok(merged)
}

/// Columns every declared table has besides its own, from the envelope and the record's place.
pub const ENVELOPE_COLUMNS: &[&str] = &[
    "event_id",
    "event_type",
    "aggregate_id",
    "aggregate_version",
    "occurred_at",
    "occurred_at_ms",
    "producer",
    "topic",
    "partition",
    "offset",
    "ingested_at",
];

/// True for a name an envelope column takes.
pub fn is_envelope_column(name: &str) -> bool {
    ENVELOPE_COLUMNS.contains(&name) || is_envelope_field(name)
}

/// The type of an envelope field (or of the envelope column of that name in a declared table).
pub fn envelope_type(name: &str) -> Option<ColumnType> {
    Some(match name {
        "event_id" => ColumnType::Uuid,
        "event_type" | "aggregate_id" | "producer" | "topic" => ColumnType::String,
        "correlation_id" | "causation_id" | "traceparent" | "tracestate" => ColumnType::String.nullable(),
        "aggregate_version" | "offset" | "occurred_at_ms" => ColumnType::Long,
        "partition" => ColumnType::Int,
        "occurred_at" => ColumnType::TimestampMillis,
        _ => return None,
    })
}

impl ColumnType {
    /// Whether a value of this type is one value (not an array, a map or JSON text of a
    /// structure), so it can be a state column, a dimension or a measure's input.
    pub fn is_scalar(&self) -> bool {
        !matches!(self.non_null(), Self::Array(_) | Self::Map(_) | Self::Json)
    }

    /// Whether the values are points in time or days.
    pub fn is_time(&self) -> bool {
        matches!(self.non_null(), Self::Date | Self::TimestampMillis | Self::TimestampMicros | Self::TimestampNanos)
    }
}

/// Where a field sits: how many arrays enclose it, whether a union made it nullable, how deep.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    arrays: usize,
    nullable: bool,
    depth: usize,
}

impl Shape {
    fn wrap(self, leaf: ColumnType) -> ColumnType {
        let mut ty = if self.nullable { leaf.nullable() } else { leaf };
        for _ in 0..self.arrays {
            ty = ColumnType::Array(Box::new(ty));
        }
        ty
    }
}

fn names_of(schema: &Schema) -> HashMap<Name, Schema> {
    ResolvedSchema::new(schema)
        .map(|r| r.get_names().iter().map(|(n, s)| (n.clone(), (*s).clone())).collect())
        .unwrap_or_default()
}

fn resolve<'a>(schema: &'a Schema, names: &'a HashMap<Name, Schema>) -> Option<&'a Schema> {
    match schema {
        Schema::Ref { name } => names.get(name),
        other => Some(other),
    }
}

/// Adds the columns of field `name` (at `path`, of `schema`) to `out`.
fn flatten(
    name: &str,
    path: FieldPath,
    schema: &Schema,
    names: &HashMap<Name, Schema>,
    shape: Shape,
    out: &mut Vec<TableColumn>,
) {
    let Some(schema) = resolve(schema, names) else {
        out.push(TableColumn { name: name.to_owned(), path, ty: shape.wrap(ColumnType::Json) });
        return;
    };
    if shape.depth >= MAX_DEPTH {
        out.push(TableColumn { name: name.to_owned(), path, ty: shape.wrap(ColumnType::Json) });
        return;
    }
    let deeper = Shape { depth: shape.depth + 1, ..shape };
    match schema {
        Schema::Union(u) => match u.variants() {
            [Schema::Null, inner] | [inner, Schema::Null] => {
                flatten(name, path, inner, names, Shape { nullable: true, ..deeper }, out);
            }
            _ => out.push(TableColumn { name: name.to_owned(), path, ty: shape.wrap(ColumnType::Json) }),
        },
        Schema::Record(record) => flatten_record(name, &path, record, names, deeper, out),
        Schema::Array(array) if is_record(&array.items, names) => {
            let mut each = path.0;
            each.push(Step::Each);
            // Within an array, nullability is the element's own.
            flatten(
                name,
                FieldPath(each),
                &array.items,
                names,
                Shape { arrays: shape.arrays + 1, nullable: false, ..deeper },
                out,
            );
        }
        other => out.push(TableColumn { name: name.to_owned(), path, ty: shape.wrap(leaf(other, names, shape.depth)) }),
    }
}

fn flatten_record(
    name: &str,
    path: &FieldPath,
    record: &RecordSchema,
    names: &HashMap<Name, Schema>,
    shape: Shape,
    out: &mut Vec<TableColumn>,
) {
    for field in &record.fields {
        let mut steps = path.0.clone();
        steps.push(Step::Field(field.name.clone()));
        flatten(&format!("{name}_{}", field.name), FieldPath(steps), &field.schema, names, shape, out);
    }
}

/// Whether `schema` is a record, or a nullable one.
fn is_record(schema: &Schema, names: &HashMap<Name, Schema>) -> bool {
    match resolve(schema, names) {
        Some(Schema::Record(_)) => true,
        Some(Schema::Union(u)) => match u.variants() {
            [Schema::Null, inner] | [inner, Schema::Null] => matches!(resolve(inner, names), Some(Schema::Record(_))),
            _ => false,
        },
        _ => false,
    }
}

/// The type of a value kept whole: a scalar, or an array or map kept in its shape.
fn leaf(schema: &Schema, names: &HashMap<Name, Schema>, depth: usize) -> ColumnType {
    let Some(schema) = resolve(schema, names) else { return ColumnType::Json };
    if depth >= MAX_DEPTH {
        return ColumnType::Json;
    }
    match schema {
        Schema::Boolean => ColumnType::Bool,
        Schema::Int => ColumnType::Int,
        Schema::Long => ColumnType::Long,
        Schema::Float => ColumnType::Float,
        Schema::Double => ColumnType::Double,
        Schema::String => ColumnType::String,
        Schema::Bytes => ColumnType::Bytes,
        Schema::Fixed(f) => ColumnType::Fixed(f.size),
        Schema::Enum(e) => ColumnType::Enum(e.symbols.clone()),
        Schema::Uuid(UuidSchema::String | UuidSchema::Bytes | UuidSchema::Fixed(_)) => ColumnType::Uuid,
        Schema::Date => ColumnType::Date,
        Schema::TimeMillis => ColumnType::TimeMillis,
        Schema::TimeMicros => ColumnType::TimeMicros,
        Schema::TimestampMillis | Schema::LocalTimestampMillis => ColumnType::TimestampMillis,
        Schema::TimestampMicros | Schema::LocalTimestampMicros => ColumnType::TimestampMicros,
        Schema::TimestampNanos | Schema::LocalTimestampNanos => ColumnType::TimestampNanos,
        Schema::Decimal(d) => ColumnType::Decimal { precision: d.precision, scale: d.scale },
        Schema::Union(u) => match u.variants() {
            [Schema::Null, inner] | [inner, Schema::Null] => leaf(inner, names, depth + 1).nullable(),
            _ => ColumnType::Json,
        },
        Schema::Array(a) => ColumnType::Array(Box::new(leaf(&a.items, names, depth + 1))),
        Schema::Map(m) => match leaf(&m.types, names, depth + 1) {
            ColumnType::Json => ColumnType::Json,
            inner => ColumnType::Map(Box::new(inner)),
        },
        // Kept whole: a record named whole in `columns`, multi-branch unions, big-decimal,
        // duration.
        _ => ColumnType::Json,
    }
}

#[cfg(test)]
mod tests;
