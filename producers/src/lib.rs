//! sluice producers: how events get onto Kafka, and the topics and subjects they need there.
//!
//! Upstream services publish with a [`Publisher`]: it checks each event against its type's Avro
//! schema from the topology (an invalid event is refused with the exact place, nothing is
//! written), writes it in the Confluent wire format with the schema's registry id, keyed by the
//! topic's key field so one entity's events stay in order, and returns where Kafka stored it.
//!
//! - [`draft`]: an [`EventDraft`] and the envelope defaults (`event_id`, `occurred_at`, `producer`).
//! - `record` (private): JSON event → key and framed Avro value, pure.
//! - [`publisher`]: the idempotent Kafka producer and the cached schema ids.
//! - [`limits`]: the largest record a topic takes, checked before sending.
//! - [`registry`]: the schema registry's Confluent API.
//! - [`intake`]: the backpressure hook ([`IntakeGate`]) both the publisher and the gateway ask
//!   before publishing.
//! - [`admin`]: `sluice topics apply` and `sluice schemas register|check`, as library calls.
//! - [`gateway`]: the HTTP ingest gateway (`sluice gateway`): JSON events over HTTP, with bearer
//!   tokens, validated and published by a [`Publisher`], answered after Kafka's acknowledgement.
//!
//! # Publishing from a service
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use serde::Serialize;
//! use sluice_core::topology::Topology;
//! use sluice_core::{Connections, Env};
//! use sluice_producers::{EventDraft, PublishError, Publisher, PublisherOptions};
//!
//! #[derive(Serialize)]
//! struct PurchaseCompleted {
//!     user_id: String,
//!     session_id: Option<String>,
//!     order_id: String,
//!     amount_cents: i64,
//!     currency: String,
//!     items: i32,
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let topology = Arc::new(Topology::load("topology.toml".as_ref())?);
//! let connections = Connections::from_env(&Env::discover()?)?;
//! let publisher = Publisher::new(topology, &connections, PublisherOptions::new("checkout"))?;
//!
//! let purchase = PurchaseCompleted {
//!     user_id: "user-42".into(),
//!     session_id: None,
//!     order_id: "order-7".into(),
//!     amount_cents: 1250,
//!     currency: "EUR".into(),
//!     items: 2,
//! };
//! // event_id (a UUID v4), occurred_at (now) and producer ("checkout") are filled in.
//! let draft = EventDraft::new("engagement.purchase_completed", "user-42", 17)
//!     .payload(&purchase)
//!     .correlation_id("checkout-flow-9");
//! match publisher.publish(draft).await {
//!     Ok(delivery) => println!("{} at {}/{}@{}", delivery.event_id, delivery.topic, delivery.partition, delivery.offset),
//!     // With a lag gate (`Publisher::with_gate`): a projection fed by this type is far behind.
//!     Err(PublishError::Backpressure { retry_after, .. }) => { /* try again after retry_after */ }
//!     Err(e) if e.is_retriable() => { /* Kafka or the registry is away: try again later */ }
//!     Err(PublishError::Invalid(e)) => eprintln!("bug in the event: {e}"), // `$.amount_cents: …`
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Backpressure: give the publisher the lag gate the gateway uses
//! (`publisher.with_gate(Arc::new(sluice_consumers::lag::LagGate::new(..)))`) and it slows down
//! events of types whose projections passed a soft lag threshold and refuses them with
//! [`PublishError::Backpressure`] past a hard one (critical types excepted).
//!
//! JSON events (from a file, an HTTP body) go through [`Publisher::publish_json`], or
//! [`Publisher::enqueue_json`] to keep many in flight.

pub mod admin;
pub mod draft;
mod error;
pub mod gateway;
pub mod intake;
pub mod kafka;
pub mod limits;
pub mod publisher;
mod record;
pub mod registry;
pub mod tls;

pub use draft::{EventDraft, fill_envelope_defaults};
pub use error::{PublishError, RegistryError};
pub use intake::{AlwaysAllow, Decision, IntakeGate};
pub use publisher::{Delivery, PendingDelivery, Publisher, PublisherOptions};
pub use registry::{Registry, SubjectVersion};
pub use uuid::Uuid;
