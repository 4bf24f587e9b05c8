//! sluice core: the pure heart of the pipeline, shared by producers, consumers and the CLI.
//!
//! - [`framing`]: the Confluent wire format (magic byte, schema id, Avro body).
//! - [`connections`]: where the services are (`SLUICE_*` variables over an env file).
//!
//! Nothing here opens a socket: producers and consumers own the I/O.

pub mod connections;
pub mod framing;

pub use connections::{Connections, Env, Secret};
