//! Test support for the property tests of [`super::decoder`] and [`super::encoder`]: the schemas
//! the fast paths are checked on, random Avro values and bodies of any of them, and random JSON
//! events, valid or not, as users write them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, Name, ResolvedSchema, UuidSchema,
};
use apache_avro::types::Value;
use apache_avro::{Days, Decimal, Duration, Millis, Months, Schema, Uuid};
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use serde_json::{Value as Json, json};

/// Every `.avsc` under `schemas/`, by path.
pub(super) fn repository_schemas() -> Vec<(String, Schema)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("schemas dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "avsc") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas"), &mut paths);
    paths.sort();
    assert!(paths.len() >= 10, "found {} schemas", paths.len());
    paths
        .into_iter()
        .map(|p| {
            let schema = Schema::parse_str(&std::fs::read_to_string(&p).expect("read")).expect("parse");
            (p.display().to_string(), schema)
        })
        .collect()
}

/// Every type the fast paths know, nested: arrays of records, maps, unions of several
/// branches, every logical type, defaults of each kind. No named references (see
/// [`with_references`]).
pub(super) const EVERY_TYPE: &str = r#"{
  "type": "record", "name": "Every", "namespace": "test.every",
  "fields": [
    {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "event_type", "type": "string"},
    {"name": "aggregate_id", "type": "string"},
    {"name": "aggregate_version", "type": "long"},
    {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "producer", "type": "string"},
    {"name": "correlation_id", "type": ["null", "string"], "default": null},
    {"name": "flag", "type": "boolean", "default": true},
    {"name": "small", "type": "int", "default": -3},
    {"name": "ratio", "type": "float", "default": 0.5},
    {"name": "precise", "type": ["double", "null"], "default": 1.25},
    {"name": "blob", "type": "bytes", "default": "\u00ff\u0000a"},
    {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 3}, "default": "abc"},
    {"name": "tier", "type": {"type": "enum", "name": "Tier", "symbols": ["FREE", "PRO", "GOLD"], "default": "FREE"}, "default": "PRO"},
    {"name": "lines", "type": {"type": "array", "items": {
      "type": "record", "name": "Line",
      "fields": [
        {"name": "sku", "type": "string"},
        {"name": "qty", "type": "int", "default": 1},
        {"name": "note", "type": ["null", "string", "long"], "default": null}
      ]}}, "default": []},
    {"name": "tags", "type": {"type": "map", "values": ["null", "long", "string"]}, "default": {}},
    {"name": "choice", "type": ["long", "string", {"type": "array", "items": "int"}, "boolean"], "default": 7},
    {"name": "maybe_record", "type": ["null", {"type": "record", "name": "Inner", "fields": [
      {"name": "a", "type": "long"}, {"name": "b", "type": ["null", "double"], "default": null}
    ]}], "default": null},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}, "default": 0},
    {"name": "tm", "type": {"type": "int", "logicalType": "time-millis"}, "default": 0},
    {"name": "tu", "type": {"type": "long", "logicalType": "time-micros"}, "default": 0},
    {"name": "ts_us", "type": {"type": "long", "logicalType": "timestamp-micros"}, "default": 0},
    {"name": "ts_ns", "type": ["null", {"type": "long", "logicalType": "timestamp-nanos"}], "default": null},
    {"name": "local_ms", "type": {"type": "long", "logicalType": "local-timestamp-millis"}, "default": 0},
    {"name": "uuid_fixed", "type": {"type": "fixed", "name": "U16", "size": 16, "logicalType": "uuid"}},
    {"name": "tracestate", "type": ["null", "string"], "default": null}
  ]
}"#;

/// The logical types the encoder leaves to the reference (the decoder reads them).
pub(super) const DECIMALS_AND_DURATIONS: &str = r#"{
  "type": "record", "name": "Amounts", "namespace": "test",
  "fields": [
    {"name": "id", "type": "string"},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}, "default": "\u0000"},
    {"name": "price_fixed", "type": ["null", {"type": "fixed", "name": "P8", "size": 8, "logicalType": "decimal", "precision": 12, "scale": 3}], "default": null},
    {"name": "span", "type": ["null", {"type": "fixed", "name": "Span", "size": 12, "logicalType": "duration"}], "default": null}
  ]
}"#;

/// Named types used again by reference, and a union of a record and its reference.
pub(super) fn with_references() -> Schema {
    Schema::parse_str(
        r#"{
          "type": "record", "name": "Order", "namespace": "test",
          "fields": [
            {"name": "lines", "type": {"type": "array", "items": {
              "type": "record", "name": "Line",
              "fields": [{"name": "sku", "type": "string"}, {"name": "amount_cents", "type": "long"}]}}},
            {"name": "gift", "type": ["null", "Line"], "default": null},
            {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["A", "B"]}},
            {"name": "previous", "type": ["null", "State"], "default": null},
            {"name": "note", "type": ["long", "string", "Line"], "default": 0}
          ]
        }"#,
    )
    .expect("valid schema")
}

/// Decimals everywhere a scale must be found: by reference, in arrays, maps and unions, at scale
/// 0, and past 128 bits (a `Decimal256`'s 76 digits in a fixed of 32 bytes).
pub(super) const NESTED_DECIMALS: &str = r#"{
  "type": "record", "name": "Ledger", "namespace": "test",
  "fields": [
    {"name": "total", "type": {"type": "fixed", "name": "Wide", "size": 32, "logicalType": "decimal", "precision": 76, "scale": 10}},
    {"name": "again", "type": ["null", "Wide"], "default": null},
    {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Entry", "fields": [
      {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4}}]}}},
    {"name": "by_key", "type": {"type": "map", "values": "Entry"}},
    {"name": "whole", "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 0}},
    {"name": "either", "type": ["string", {"type": "bytes", "logicalType": "decimal", "precision": 3, "scale": 3}]}
  ]
}"#;

/// Every schema the property tests run on, by name.
pub(super) fn test_schemas() -> Vec<(String, Schema)> {
    let mut schemas = repository_schemas();
    schemas.push(("every type".to_owned(), Schema::parse_str(EVERY_TYPE).expect("valid schema")));
    schemas
        .push(("decimals and durations".to_owned(), Schema::parse_str(DECIMALS_AND_DURATIONS).expect("valid schema")));
    schemas.push(("references".to_owned(), with_references()));
    schemas.push(("nested decimals".to_owned(), Schema::parse_str(NESTED_DECIMALS).expect("valid schema")));
    schemas
}

/// Random values of `schema`.
pub(super) fn value(schema: &Schema) -> BoxedStrategy<Value> {
    let resolved = ResolvedSchema::new(schema).expect("names resolve");
    let names = resolved.get_names().iter().map(|(n, s)| (n.clone(), (*s).clone())).collect();
    of(schema, &names, None)
}

/// Random values of `schema`, with the Avro body apache-avro writes for them.
pub(super) fn body(schema: &Schema) -> BoxedStrategy<(Value, Vec<u8>)> {
    let schema_for_encode = schema.clone();
    value(schema)
        .prop_filter_map("apache-avro encodes it", move |v| {
            let body = super::encode(&v, &schema_for_encode).ok()?;
            Some((v, body))
        })
        .boxed()
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![".{0,12}", "[a-z0-9-]{0,8}"].boxed()
}

fn of(schema: &Schema, names: &HashMap<Name, Schema>, ns: Option<&str>) -> BoxedStrategy<Value> {
    match schema {
        Schema::Null => Just(Value::Null).boxed(),
        Schema::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        Schema::Int => any::<i32>().prop_map(Value::Int).boxed(),
        Schema::Long => any::<i64>().prop_map(Value::Long).boxed(),
        Schema::Float => proptest::num::f32::ANY.prop_map(Value::Float).boxed(),
        Schema::Double => proptest::num::f64::ANY.prop_map(Value::Double).boxed(),
        Schema::Bytes => proptest::collection::vec(any::<u8>(), 0..6).prop_map(Value::Bytes).boxed(),
        Schema::String => text().prop_map(Value::String).boxed(),
        Schema::Fixed(FixedSchema { size, .. }) => {
            let size = *size;
            proptest::collection::vec(any::<u8>(), size).prop_map(move |b| Value::Fixed(size, b)).boxed()
        }
        Schema::Enum(EnumSchema { symbols, .. }) => {
            let symbols = symbols.clone();
            (0..symbols.len())
                .prop_map(move |i| Value::Enum(u32::try_from(i).expect("small"), symbols[i].clone()))
                .boxed()
        }
        Schema::Union(union) => {
            let branches: Vec<_> = union
                .variants()
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let i = u32::try_from(i).expect("small");
                    of(s, names, ns).prop_map(move |v| Value::Union(i, Box::new(v))).boxed()
                })
                .collect();
            proptest::strategy::Union::new(branches).boxed()
        }
        Schema::Array(array) => {
            proptest::collection::vec(of(&array.items, names, ns), 0..4).prop_map(Value::Array).boxed()
        }
        Schema::Map(map) => {
            proptest::collection::hash_map(text(), of(&map.types, names, ns), 0..4).prop_map(Value::Map).boxed()
        }
        Schema::Record(record) => {
            let inner = record.name.fully_qualified_name(ns).namespace().map(str::to_owned);
            let fields: Vec<_> = record
                .fields
                .iter()
                .map(|f| {
                    let name = f.name.clone();
                    of(&f.schema, names, inner.as_deref()).prop_map(move |v| (name.clone(), v))
                })
                .collect();
            fields.prop_map(Value::Record).boxed()
        }
        Schema::Uuid(_) => any::<u128>().prop_map(|n| Value::Uuid(Uuid::from_u128(n))).boxed(),
        Schema::Date => any::<i32>().prop_map(Value::Date).boxed(),
        Schema::TimeMillis => any::<i32>().prop_map(Value::TimeMillis).boxed(),
        Schema::TimeMicros => any::<i64>().prop_map(Value::TimeMicros).boxed(),
        // Mostly years 0 to 9999, which RFC 3339 can spell.
        Schema::TimestampMillis => prop_oneof![any::<i64>(), -62_167_219_200_000..253_402_300_800_000_i64]
            .prop_map(Value::TimestampMillis)
            .boxed(),
        Schema::TimestampMicros => prop_oneof![any::<i64>(), -62_167_219_200_000_000..253_402_300_800_000_000_i64]
            .prop_map(Value::TimestampMicros)
            .boxed(),
        Schema::TimestampNanos => any::<i64>().prop_map(Value::TimestampNanos).boxed(),
        Schema::LocalTimestampMillis => any::<i64>().prop_map(Value::LocalTimestampMillis).boxed(),
        Schema::LocalTimestampMicros => any::<i64>().prop_map(Value::LocalTimestampMicros).boxed(),
        Schema::LocalTimestampNanos => any::<i64>().prop_map(Value::LocalTimestampNanos).boxed(),
        Schema::Decimal(DecimalSchema { inner, precision, .. }) => {
            let max = match inner {
                InnerDecimalSchema::Fixed(fixed) => fixed.size,
                InnerDecimalSchema::Bytes => 32,
            };
            let limit = 10_i128.checked_pow(u32::try_from(*precision).expect("small")).unwrap_or(i128::MAX) - 1;
            // Mostly within the precision, sometimes any bytes at all.
            prop_oneof![
                3 => (-limit..=limit).prop_map(|n| Value::Decimal(Decimal::from(crate::decimal::Decimal::integer(n).to_be_bytes()))),
                1 => proptest::collection::vec(any::<u8>(), 1..=max).prop_map(|b| Value::Decimal(Decimal::from(b))),
            ]
            .boxed()
        }
        Schema::Duration(_) => (any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(m, d, ms)| Value::Duration(Duration::new(Months::new(m), Days::new(d), Millis::new(ms))))
            .boxed(),
        Schema::Ref { name } => {
            let full = name.fully_qualified_name(ns);
            let named = names.get(&full).expect("reference resolves");
            of(named, names, full.namespace())
        }
        Schema::BigDecimal => unimplemented!("no test schema has a big-decimal"),
    }
}

/// A body damaged the way a corrupt or foreign record might be.
pub(super) fn damaged(body: Vec<u8>) -> BoxedStrategy<Vec<u8>> {
    let len = body.len();
    let truncated = {
        let body = body.clone();
        (0..=len).prop_map(move |n| body[..n].to_vec())
    };
    let extended = {
        let body = body.clone();
        proptest::collection::vec(any::<u8>(), 1..4).prop_map(move |tail| [body.clone(), tail].concat())
    };
    let flipped = {
        let body = body.clone();
        (0..len.max(1), any::<u8>()).prop_map(move |(at, byte)| {
            let mut b = body.clone();
            if let Some(slot) = b.get_mut(at) {
                *slot = byte;
            }
            b
        })
    };
    prop_oneof![truncated, extended, flipped].boxed()
}

/// [`EVERY_TYPE`] has the types it means to have (a `fixed` uuid is easily a plain `fixed`).
#[test]
fn every_type_parses_as_intended() {
    let Schema::Record(record) = Schema::parse_str(EVERY_TYPE).expect("valid schema") else { panic!("record") };
    let field = |name: &str| &record.fields[record.lookup[name]].schema;
    assert!(matches!(field("uuid_fixed"), Schema::Uuid(UuidSchema::Fixed(_))), "{:?}", field("uuid_fixed"));
    assert!(matches!(field("tier"), Schema::Enum(_)));
}

/// Random JSON events of `schema`: the JSON of a random value, spelt the other ways users spell
/// it (RFC 3339 timestamps, upper-case or braced UUIDs, `2.0` for 2, `YYYY-MM-DD` dates), then
/// perhaps broken (a field dropped, nulled, of another type, an unknown field, keys reordered).
pub(super) fn event_json(schema: &Schema) -> BoxedStrategy<Json> {
    let schema = schema.clone();
    (value(&schema), any::<u64>(), prop_oneof![Just(0_usize), 1..4_usize])
        .prop_map(move |(v, seed, breaks)| {
            let mut rng = Rng(seed);
            let mut json = respell(super::avro_to_json(&v, &schema), &schema, &mut rng);
            for _ in 0..breaks {
                json = damage(json, &mut rng);
            }
            json
        })
        .boxed()
}

/// splitmix64: choices inside one proptest case, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).expect("small")).expect("small")
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

fn respell(json: Json, schema: &Schema, rng: &mut Rng) -> Json {
    use crate::calendar::{Unit, Zone, parse_date, parse_date_time, parse_time_of_day};
    let timestamp = |schema: &Schema| match schema {
        Schema::TimestampMillis => Some((Unit::Millis, Zone::Required)),
        Schema::TimestampMicros => Some((Unit::Micros, Zone::Required)),
        Schema::TimestampNanos => Some((Unit::Nanos, Zone::Required)),
        Schema::LocalTimestampMillis => Some((Unit::Millis, Zone::Forbidden)),
        Schema::LocalTimestampMicros => Some((Unit::Micros, Zone::Forbidden)),
        Schema::LocalTimestampNanos => Some((Unit::Nanos, Zone::Forbidden)),
        _ => None,
    };
    match (json, schema) {
        // Timestamps as read (UTC text), as integer counts, or at another offset.
        (Json::String(s), _) if timestamp(schema).is_some() => {
            let (unit, zone) = timestamp(schema).expect("a timestamp");
            let count = parse_date_time(&s, zone).ok().and_then(|n| unit.count(n)).expect("read text reads back");
            let digits = u32::try_from(unit.digits()).expect("small");
            match rng.below(3) {
                0 => json!(count),
                1 if zone == Zone::Required => rfc3339(count, digits, rng).map_or(Json::String(s), Json::String),
                _ => Json::String(s),
            }
        }
        (Json::String(s), Schema::Date) if rng.one_in(2) => json!(parse_date(&s).expect("read text reads back")),
        (Json::String(s), Schema::TimeMillis | Schema::TimeMicros) if rng.one_in(2) => {
            let unit = if matches!(schema, Schema::TimeMillis) { Unit::Millis } else { Unit::Micros };
            json!(unit.count(i128::from(parse_time_of_day(&s).expect("read text reads back"))))
        }
        (Json::Number(n), _) if rng.one_in(3) => match n.as_i64() {
            // 2 as 2.0: the same integer for the converter, when the float holds it exactly.
            Some(i) if i.unsigned_abs() < 1 << 53 => json!(i as f64),
            _ => Json::Number(n),
        },
        (Json::String(s), Schema::Uuid(_)) => match (Uuid::parse_str(&s), rng.below(4)) {
            (Ok(u), 0) => json!(u.hyphenated().to_string().to_uppercase()),
            (Ok(u), 1) => json!(u.simple().to_string()),
            (Ok(u), 2) => json!(u.braced().to_string()),
            _ => Json::String(s),
        },
        (Json::Object(object), Schema::Record(record)) => Json::Object(
            object
                .into_iter()
                .map(|(k, v)| {
                    let field = record.fields.iter().find(|f| f.name == k).map(|f| &f.schema);
                    let v = match field {
                        Some(s) => respell(v, s, rng),
                        None => v,
                    };
                    (k, v)
                })
                .collect(),
        ),
        (Json::Array(items), Schema::Array(array)) => {
            Json::Array(items.into_iter().map(|v| respell(v, &array.items, rng)).collect())
        }
        (Json::Object(object), Schema::Map(map)) => {
            Json::Object(object.into_iter().map(|(k, v)| (k, respell(v, &map.types, rng))).collect())
        }
        (json, Schema::Union(union)) if !json.is_null() => {
            match union.variants().iter().filter(|s| !matches!(s, Schema::Null)).collect::<Vec<_>>()[..] {
                [only] => respell(json, only, rng),
                _ => json,
            }
        }
        (json, _) => json,
    }
}

/// Scalars of every JSON type, and the near misses of the schemas' own spellings.
fn odd_value(rng: &mut Rng) -> Json {
    let pool = [
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(2.0),
        json!(1e39),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(2_147_483_648_i64),
        json!("12"),
        json!(""),
        json!("ab"),
        json!("zz"),
        json!("FREE"),
        json!("2026-11-26T04:28:21.123Z"),
        json!("2026-02-30T00:00:00Z"),
        json!("2024-02-29"),
        json!("+010000-01-01"),
        json!("10:00:00.123"),
        json!("24:00:00"),
        json!("2026-11-26T04:28:21.123"),
        json!("2026-11-26 04:28:21+02:00"),
        json!("7f0c1c9e-9a43-4c55-9d7b-2f8ad6c1e001"),
        json!("not-a-uuid"),
        json!([]),
        json!([1, 2]),
        json!({}),
        json!({"a": 1}),
        json!({"sku": "x"}),
        json!({"sku": "x", "qty": "2"}),
    ];
    pool[rng.below(pool.len())].clone()
}

fn damage(json: Json, rng: &mut Rng) -> Json {
    let Json::Object(mut object) = json else { return json };
    let keys: Vec<String> = object.keys().cloned().collect();
    let key = keys.get(rng.below(keys.len())).cloned();
    match (rng.below(7), key) {
        (0, Some(key)) => {
            object.shift_remove(&key);
        }
        (1, Some(key)) => {
            object.insert(key, Json::Null);
        }
        (2, Some(key)) => {
            object.insert(key, odd_value(rng));
        }
        (3, key) => {
            let unknown = match (rng.below(3), key) {
                (0, Some(key)) => key.to_uppercase(),
                (1, Some(key)) if key.len() > 2 => key[1..].to_owned(),
                _ => "zzz".to_owned(),
            };
            object.insert(unknown, json!(1));
        }
        (4, _) => {
            let mut entries: Vec<_> = object.into_iter().collect();
            let by = rng.below(entries.len());
            entries.rotate_left(by);
            if rng.one_in(2) {
                entries.reverse();
            }
            object = entries.into_iter().collect();
        }
        // Inside a nested record, or a record in an array.
        (5, Some(key)) => {
            let inner = object.shift_remove(&key).unwrap_or_default();
            let inner = match inner {
                Json::Array(mut items) if !items.is_empty() => {
                    let at = rng.below(items.len());
                    items[at] = damage(items[at].take(), rng);
                    Json::Array(items)
                }
                other => damage(other, rng),
            };
            object.insert(key, inner);
        }
        _ => {}
    }
    Json::Object(object)
}

/// `n` units of 10^-`digits` s since the epoch as RFC 3339, in UTC or another offset (`None`
/// outside years 0 to 9999).
fn rfc3339(n: i64, digits: u32, rng: &mut Rng) -> Option<String> {
    let per_second = 10_i64.pow(digits);
    let (seconds, fraction) = (n.div_euclid(per_second), n.rem_euclid(per_second));
    let offset_minutes = [0_i64, 120, -300, 345][rng.below(4)];
    let local = seconds + offset_minutes * 60;
    let (days, second_of_day) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (y, m, d) = crate::calendar::civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let zone = match offset_minutes {
        0 => "Z".to_owned(),
        o => format!("{}{:02}:{:02}", if o < 0 { '-' } else { '+' }, o.abs() / 60, o.abs() % 60),
    };
    let width = usize::try_from(digits).expect("small");
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{fraction:0width$}{zone}",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    ))
}
