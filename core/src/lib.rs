//! sluice core: the pure heart of the pipeline, shared by producers, consumers and the CLI.
//!
//! - [`framing`]: the Confluent wire format (magic byte, schema id, Avro body).
//! - [`connections`]: where the services are (`SLUICE_*` variables over an env file).
//! - [`fold`]: how an event changes an entity's latest-state document (Couchbase projection).
//! - [`offsets`]: the commit point of a partition, never past an unacknowledged message.
//!
//! Nothing here opens a socket: producers and consumers own the I/O.

pub mod connections;
pub mod fold;
pub mod framing;
pub mod offsets;

pub use connections::{Connections, Env, Secret};
