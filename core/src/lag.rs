//! Lag and backpressure, as pure decisions: how far behind each projection is, which
//! backpressure state that puts it in, and what intake should do about an event type.
//!
//! Data comes from the lag monitor (`sluice_consumers::lag`), which reads, for every projection's
//! consumer group and source partition, the watermarks, the committed offset and the Kafka
//! timestamp of the oldest unprocessed record ([`PartitionOffsets`]). From those this module
//! computes a [`LagSnapshot`]: per partition the lag in messages (high watermark − committed
//! offset) and its age (now − timestamp of the record at the committed offset), per projection the
//! sum and the maximum, and a [`BackpressureState`] decided from the projection's
//! [`BackpressureConfig`](crate::topology::BackpressureConfig) with hysteresis ([`LOW_WATER_PERCENT`]) so it does not flap. The snapshot
//! goes to the workers, the gateway and `sluice lag`; [`decide`] turns it into an
//! [`IntakeDecision`] for one event type, and a [`TokenBucket`] paces intake while it is slowed.
//!
//! Time is always passed in (`now_ms`, an [`Instant`](std::time::Instant)): nothing here reads a clock or a socket.

mod intake;
mod measure;
mod opt_seconds;
mod snapshot;
mod state;
mod token_bucket;

#[cfg(test)]
mod tests;

pub use intake::{DecisionReason, IntakeDecision, IntakePolicy, decide, is_critical, soft_pressure};
pub use measure::{Lag, PartitionLag, PartitionOffsets};
pub use snapshot::{LagSnapshot, Observation, ProjectionLag};
pub use state::{BackpressureState, LOW_WATER_PERCENT, SOFT_CEILING_FACTOR, Threshold, Trigger, fmt_ms, next_state};
pub use token_bucket::TokenBucket;
