//! sluice producers.
