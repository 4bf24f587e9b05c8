//! sluice core: the pure heart of the pipeline, shared by producers, consumers and the CLI.
//!
//! - [`framing`]: the Confluent wire format (magic byte, schema id, Avro body).
//! - [`admission`]: which decoded events a projection applies, skips or refuses (to the DLQ).
//! - [`avro`]: user JSON ⇄ Avro values, and the Avro body written and read (with schema resolution).
//! - [`cdc`]: Debezium change events and outbox events from a legacy database → sluice events.
//! - [`connections`]: where the services are and how to reach them securely (`SLUICE_*` variables
//!   over an env file, TLS files, credentials).
//! - [`consistency`]: consistency tokens: the log positions of a write, for reading it back.
//! - [`decimal`]: exact decimal numbers (Avro bytes, Debezium columns, text), one codec.
//! - [`event`]: a decoded event split into envelope and payload.
//! - [`inclusion`]: whether a projection's committed offsets include a token's writes.
//! - [`group`]: a consumer group's members and the partitions each owns (Kafka's consumer
//!   protocol, parsed).
//! - [`fold`]: how an event changes an entity's latest-state document (Couchbase projection).
//! - [`json`]: the strict JSON parser for input from outside (a repeated key is refused).
//! - [`offsets`]: the commit point of a partition, never past an unacknowledged message.
//! - [`lag`]: lag per projection and partition, backpressure states and intake decisions.
//! - [`replay`]: the plan of a replay (per partition current → new offset, events to re-project).
//!
//! Nothing here opens a socket: producers and consumers own the I/O.

pub mod admission;
pub mod avro;
pub mod calendar;
pub mod cdc;
pub mod connections;
pub mod consistency;
pub mod decimal;
pub mod event;
pub mod fold;
pub mod framing;
pub mod group;
pub mod inclusion;
pub mod json;
pub mod lag;
pub mod offsets;
pub mod rebuild;
pub mod replay;
pub mod state;
mod suggest;
pub mod topology;

pub use connections::{Connections, Env, Secret, Services};
