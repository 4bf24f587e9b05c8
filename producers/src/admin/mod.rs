//! Preparing a cluster for the topology: its topics on Kafka, its schemas in the registry.
//!
//! `topics` and `schemas` read the topology and change only what it declares; the CLI's `sluice
//! topics apply` and `sluice schemas register|check` print what these return. They live with the
//! producers because a topic and a registered schema are what publishing needs first. `discover`
//! goes the other way, for `sluice topology init`: it reads what a cluster already holds, to write
//! a first topology from it, and changes nothing.

pub mod discover;
pub mod schemas;
pub mod topics;
