//! sluice consumers: projection workers and the sinks they write to.
//!
//! Data path: Kafka (Confluent-framed Avro) → worker (decode, fold) → [`sinks`] (Couchbase for
//! the latest state of each entity, ClickHouse for analytics).

pub mod decode;
pub mod sink;
pub mod sinks;
pub mod worker;

pub use sink::{Batch, Batching, Rejected, Sink, SinkError};
