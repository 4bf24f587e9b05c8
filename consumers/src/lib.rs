//! sluice consumers: projection workers and the sinks they write to.
//!
//! Data path: Kafka (Confluent-framed Avro) → worker (decode, fold) → [`sinks`] (Couchbase for
//! the latest state of each entity, ClickHouse for analytics).
//!
//! - [`consistency`]: whether a projection includes a write (a consistency token against its
//!   committed offsets).
//! - [`reads`]: reading projections back after a write (the gateway's and the CLI's reads).
//! - [`group`]: a projection's consumer group members and the partitions each owns.
//! - [`lag`]: the lag monitor (lag per projection and partition, backpressure state) and the
//!   intake gate over it.
//! - [`replay`]: reads a replay plan's offsets and commits them for a stopped projection group.
//! - [`rebuild`]: bounded re-projection (`replay --to`, `rebuild --key`) and blue/green rebuilds.

pub mod consistency;
pub mod decode;
pub mod group;
// Test hooks, compiled only in debug builds (the ones the integration tests run): a release
// build carries neither the code nor the variable names.
#[cfg(debug_assertions)]
pub mod failpoint;
pub mod lag;
pub mod reads;
pub mod rebuild;
pub mod replay;
mod retry;
pub mod sink;
pub mod sinks;
pub mod worker;

pub use sink::{Batch, Batching, Encoder, Rejected, Sink, SinkError};
