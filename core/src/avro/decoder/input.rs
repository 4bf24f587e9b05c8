//! A body being read by the plan: every length checked against the bytes left before anything is
//! allocated; what does not read is a [`Bail`] to apache-avro.

use std::cmp::Ordering;
use std::mem::size_of;

use apache_avro::types::Value;
use apache_avro::util::{DEFAULT_MAX_ALLOCATION_BYTES, max_allocation_bytes};
use apache_avro::{Duration, Uuid};
use serde_json::{Map, Number, Value as Json};

use super::plan::{Bail, Node, Read};
use crate::avro::scalars::hex;
use crate::avro::to_json::time_json;
use crate::calendar::{Unit, format_date, format_date_time};

/// A body being read. Every length is checked against the bytes left before anything is
/// allocated, and against apache-avro's allocation limit, so a corrupt length costs nothing.
pub(super) struct Input<'a> {
    pub(super) rest: &'a [u8],
    /// apache-avro's limit (`apache_avro::util::max_allocation_bytes`): what it rejects, the
    /// plan rejects too.
    pub(super) max_allocation: usize,
}

impl<'a> Input<'a> {
    pub(super) fn new(body: &'a [u8]) -> Self {
        Self { rest: body, max_allocation: max_allocation_bytes(DEFAULT_MAX_ALLOCATION_BYTES) }
    }

    pub(super) fn finish(&self) -> Read<()> {
        if self.rest.is_empty() { Ok(()) } else { Err(Bail) }
    }

    pub(super) fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n).ok_or(Bail)?;
        self.rest = rest;
        Ok(head)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Read<[u8; N]> {
        let (head, rest) = self.rest.split_first_chunk::<N>().ok_or(Bail)?;
        self.rest = rest;
        Ok(*head)
    }

    /// A zigzag varint of at most 10 bytes, bits past 64 dropped, like apache-avro.
    pub(super) fn long(&mut self) -> Read<i64> {
        let mut z = 0_u64;
        for (i, &byte) in self.rest.iter().take(10).enumerate() {
            z |= u64::from(byte & 0x7f) << (i * 7);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                // Zigzag: the sign is the lowest bit.
                let magnitude = (z >> 1) as i64;
                return Ok(if z & 1 == 0 { magnitude } else { !magnitude });
            }
        }
        Err(Bail)
    }

    pub(super) fn int(&mut self) -> Read<i32> {
        i32::try_from(self.long()?).map_err(|_| Bail)
    }

    pub(super) fn len(&mut self) -> Read<usize> {
        let len = usize::try_from(self.long()?).map_err(|_| Bail)?;
        if len > self.max_allocation {
            return Err(Bail);
        }
        Ok(len)
    }

    pub(super) fn bytes(&mut self) -> Read<&'a [u8]> {
        let len = self.len()?;
        self.take(len)
    }

    pub(super) fn str(&mut self) -> Read<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Bail)
    }

    /// The item count of the next block of an array or map (0: the end), `so_far` items read,
    /// each costing apache-avro `item_size` bytes.
    pub(super) fn block_len(&mut self, so_far: usize, item_size: usize) -> Read<usize> {
        let raw = self.long()?;
        let len = match raw.cmp(&0) {
            Ordering::Equal => return Ok(0),
            // A negative count is followed by the block's size in bytes.
            Ordering::Less => {
                self.long()?;
                raw.checked_neg().ok_or(Bail)?
            }
            Ordering::Greater => raw,
        };
        let len = usize::try_from(len).map_err(|_| Bail)?;
        let total = so_far.checked_add(len).ok_or(Bail)?;
        if len > self.max_allocation || total.checked_mul(item_size).is_none_or(|bytes| bytes > self.max_allocation) {
            return Err(Bail);
        }
        Ok(len)
    }

    /// Reads one value as the JSON [`avro_to_json`](crate::avro::avro_to_json) makes of it. The common types are read
    /// here, the rest in functions of their own (which keeps this one small and quick).
    pub(super) fn read(&mut self, node: &Node) -> Read<Json> {
        let json = match node {
            Node::Null => Json::Null,
            Node::Boolean => match self.array::<1>()? {
                [0] => Json::Bool(false),
                [1] => Json::Bool(true),
                _ => return Err(Bail),
            },
            Node::Int => Json::from(self.int()?),
            Node::Long => Json::from(self.long()?),
            Node::Double => Number::from_f64(f64::from_le_bytes(self.array()?)).map_or(Json::Null, Json::Number),
            Node::String => Json::String(self.str()?.to_owned()),
            Node::Uuid => {
                let text = self.str()?;
                if is_canonical_uuid(text) { Json::String(text.to_owned()) } else { uuid_text(text)? }
            }
            Node::Enum(symbols) => {
                let index = usize::try_from(self.int()?).map_err(|_| Bail)?;
                Json::String(symbols.get(index).ok_or(Bail)?.clone())
            }
            Node::Nullable { null_index, inner } => match self.long()? {
                i if i == *null_index => Json::Null,
                i if i == 1 - *null_index => self.read(inner)?,
                _ => return Err(Bail),
            },
            Node::Union(branches) => {
                let index = usize::try_from(self.long()?).map_err(|_| Bail)?;
                self.read(branches.get(index).ok_or(Bail)?)?
            }
            Node::Record(fields) => self.record(fields)?,
            _ => self.read_other(node)?,
        };
        Ok(json)
    }

    #[inline(never)]
    pub(super) fn record(&mut self, fields: &[(String, Node)]) -> Read<Json> {
        let mut object = Map::with_capacity(fields.len());
        for (name, node) in fields {
            let value = self.read(node)?;
            object.insert(name.clone(), value);
        }
        Ok(Json::Object(object))
    }

    #[inline(never)]
    pub(super) fn read_other(&mut self, node: &Node) -> Read<Json> {
        let json = match node {
            Node::Float => {
                let f = f32::from_le_bytes(self.array()?);
                // As avro_to_json: through the shortest decimal form.
                f.to_string().parse::<f64>().ok().and_then(Number::from_f64).map_or(Json::Null, Json::Number)
            }
            Node::Bytes => Json::String(hex(self.bytes()?)),
            Node::Date => Json::String(format_date(i64::from(self.int()?))),
            Node::Time(unit) => {
                let count = match unit {
                    Unit::Millis => i64::from(self.int()?),
                    Unit::Micros | Unit::Nanos => self.long()?,
                };
                time_json(count, *unit)
            }
            Node::Timestamp { unit, zoned } => Json::String(format_date_time(self.long()?, *unit, *zoned)),
            Node::UuidBytes => {
                Json::String(Uuid::from_slice(self.bytes()?).map_err(|_| Bail)?.hyphenated().to_string())
            }
            Node::UuidFixed => Json::String(Uuid::from_bytes(self.array()?).hyphenated().to_string()),
            Node::Fixed(size) => Json::String(hex(self.take(*size)?)),
            Node::Decimal { fixed, scale } => {
                let bytes = match fixed {
                    Some(size) => self.take(*size)?,
                    None => self.bytes()?,
                };
                if bytes.is_empty() {
                    // No number at all: the reference says so (DecodeError::EmptyDecimal).
                    return Err(Bail);
                }
                Json::String(crate::decimal::text_from_be_bytes(bytes, *scale))
            }
            Node::Duration => {
                let d = Duration::from(self.array::<12>()?);
                let mut object = Map::with_capacity(3);
                object.insert("months".to_owned(), Json::from(u32::from(d.months())));
                object.insert("days".to_owned(), Json::from(u32::from(d.days())));
                object.insert("millis".to_owned(), Json::from(u32::from(d.millis())));
                Json::Object(object)
            }
            Node::Array(item) => {
                let mut items = Vec::new();
                loop {
                    let len = self.block_len(items.len(), size_of::<Value>())?;
                    if len == 0 {
                        break;
                    }
                    // Most items take a byte at least: never reserve beyond what the body holds.
                    items.reserve(len.min(self.rest.len()));
                    for _ in 0..len {
                        items.push(self.read(item)?);
                    }
                }
                Json::Array(items)
            }
            Node::Map(value) => {
                let mut entries = Vec::new();
                loop {
                    let len = self.block_len(entries.len(), size_of::<(String, Value)>())?;
                    if len == 0 {
                        break;
                    }
                    entries.reserve(len.min(self.rest.len()));
                    for _ in 0..len {
                        let key = self.str()?.to_owned();
                        entries.push((key, self.read(value)?));
                    }
                }
                // As avro_to_json: sorted keys; a repeated key keeps its last value, as in
                // apache-avro's HashMap.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                let mut object = Map::with_capacity(entries.len());
                for (key, value) in entries {
                    object.insert(key, value);
                }
                Json::Object(object)
            }
            Node::Null
            | Node::Boolean
            | Node::Int
            | Node::Long
            | Node::Double
            | Node::String
            | Node::Uuid
            | Node::Enum(_)
            | Node::Nullable { .. }
            | Node::Union(_)
            | Node::Record(_) => self.read(node)?,
        };
        Ok(json)
    }
}

/// A UUID in another spelling (upper case, braces, no hyphens), as avro_to_json spells it.
#[inline(never)]
pub(super) fn uuid_text(text: &str) -> Read<Json> {
    Ok(Json::String(Uuid::parse_str(text).map_err(|_| Bail)?.hyphenated().to_string()))
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lowercase hex: already what avro_to_json makes of
/// the UUID, no need to parse and format it again.
pub(super) fn is_canonical_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}
