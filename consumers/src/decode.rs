//! From Kafka record bytes to an [`Event`]: Confluent framing, the writer's schema from the
//! registry (cached: ids are immutable), Avro decoding resolved to the reader schema of the
//! topology (so events written with an older compatible schema still decode), then the envelope.
//!
//! Per schema id the writer and reader schemas are compiled once into an [`EventDecoder`], which
//! reads each body straight into the event (see [`sluice_core::avro`]'s hot paths).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_schema_by_id};
use sluice_core::avro::{EventDecoder, ReadEventError};
use sluice_core::event::{Event, Position};
use sluice_core::framing::unframe;

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record itself is bad (framing, unknown schema id, undecodable body, no envelope):
    /// it goes to the DLQ with this reason and the partition moves on.
    #[error("{0}")]
    Permanent(String),
    /// The registry could not be asked (down, timeout): retry later, commit nothing past it.
    #[error("schema registry unavailable: {0}")]
    Transient(String),
}

/// Decodes records; shared by a worker's partitions.
#[derive(Debug)]
pub struct Decoder {
    registry: SrSettings,
    /// Per schema id: the writer schema compiled with the reader schema to resolve to — none
    /// when it is the same schema (resolution then costs nothing, the common case).
    writers: RwLock<HashMap<u32, Arc<EventDecoder>>>,
    /// Reader schemas by full record name (`sluice.users.UserRegistered`), from the topology.
    readers: HashMap<String, Arc<Schema>>,
}

fn record_name(schema: &Schema) -> Option<String> {
    match schema {
        Schema::Record(r) => Some(r.name.fullname(None)),
        _ => None,
    }
}

impl Decoder {
    /// A decoder asking `registry` for writer schemas and resolving to `readers`.
    pub fn new(registry: SrSettings, readers: impl IntoIterator<Item = Schema>) -> Self {
        let readers = readers.into_iter().filter_map(|s| Some((record_name(&s)?, Arc::new(s)))).collect();
        Self { registry, writers: RwLock::default(), readers }
    }

    /// The decoder of schema `id`, from the cache or made from the registry's schema.
    async fn decoder(&self, id: u32) -> Result<Arc<EventDecoder>, DecodeError> {
        if let Some(s) = self.writers.read().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(s);
        }
        let registered = get_schema_by_id(id, &self.registry).await.map_err(|e| {
            if e.retriable {
                DecodeError::Transient(e.to_string())
            } else {
                DecodeError::Permanent(format!("unknown schema id {id}: {e}"))
            }
        })?;
        let schema = Schema::parse_str(&registered.schema)
            .map_err(|e| DecodeError::Permanent(format!("schema id {id} is not valid Avro: {e}")))?;
        let reader = record_name(&schema)
            .and_then(|n| self.readers.get(&n).cloned())
            .filter(|r| r.canonical_form() != schema.canonical_form());
        let decoder = Arc::new(EventDecoder::new(Arc::new(schema), reader));
        if let Ok(mut m) = self.writers.write() {
            m.insert(id, decoder.clone());
        }
        Ok(decoder)
    }

    /// Decodes one record value read at `position`.
    pub async fn decode(&self, value: Option<&[u8]>, position: Position) -> Result<Event, DecodeError> {
        let framed = unframe(value.unwrap_or_default()).map_err(|e| DecodeError::Permanent(e.to_string()))?;
        let decoder = self.decoder(framed.schema_id).await?;
        decoder.decode_event(framed.body, position, framed.schema_id).map_err(|e| match e {
            ReadEventError::Body(e) => {
                DecodeError::Permanent(format!("undecodable body (schema id {}): {e}", framed.schema_id))
            }
            ReadEventError::Event(e) => DecodeError::Permanent(e.to_string()),
        })
    }
}
