//! Preparing a cluster for the topology: its topics on Kafka, its schemas in the registry.
//!
//! Both read the topology and change only what it declares; the CLI's `sluice topics apply` and
//! `sluice schemas register|check` print what these return. They live with the producers because
//! a topic and a registered schema are what publishing needs first.

pub mod schemas;
pub mod topics;
