//! The publisher: validated, Avro-encoded, Confluent-framed events onto their Kafka topics.
//!
//! Events come from a service's code ([`Publisher::publish`] with an [`EventDraft`]) or as JSON
//! ([`Publisher::publish_json`], `sluice publish`). The topology says which topic and schema an
//! event type has; the registry gives the schema's id once per event type (cached for the
//! publisher's life); the `record` module builds the record; an idempotent producer
//! (`enable.idempotence`, `acks=all`) writes it; the delivery report comes back as a [`Delivery`]
//! with partition and offset, or as a [`PublishError`] saying whether a retry can help. A record
//! larger than its topic takes is refused before it is sent ([`crate::limits`]), and so is an
//! `aggregate_id` too long to become a document key.
//!
//! [`Publisher::enqueue_json`] splits the two halves so a caller can keep many events in flight
//! (`sluice publish` keeps up to 10 000): it returns once the record is in the producer's queue,
//! with a [`PendingDelivery`] to await.

use sluice_core::connections::KafkaConnection;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use serde_json::Value as Json;
use sluice_core::Connections;
use sluice_core::consistency::{AggregateVersion, ConsistencyToken};
use sluice_core::topology::{DEFAULT_KEY, EventInfo, Topology};
use tokio::sync::OnceCell;

use crate::admin::topics::{TopicAdmin, TopicsError};
use crate::intake::{AlwaysAllow, Decision, IntakeGate};
use crate::limits::{DEFAULT_MESSAGE_MAX_BYTES, RecordLimits, record_size};
use crate::registry::Registry;
use crate::{EventDraft, PublishError, RegistryError, record};

/// How a [`Publisher`] behaves. Start from [`PublisherOptions::new`] and change what you need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PublisherOptions {
    /// The publishing service's name: the envelope's `producer` of every [`EventDraft`].
    pub producer_name: String,
    /// Longest wait for Kafka to acknowledge an event (librdkafka `message.timeout.ms`, retries
    /// included); then [`PublishError::Timeout`]. Default 30 s.
    pub delivery_timeout: Duration,
    /// How long the producer waits to fill a batch (librdkafka `linger.ms`). Default 5 ms.
    pub linger: Duration,
    /// Batch compression (librdkafka `compression.type`). Default `lz4`.
    pub compression: String,
    /// When an event type's schema is not yet registered under its subject: register it
    /// (`true`, the default; a new subject first gets the topology's compatibility level), or
    /// fail with [`RegistryError::NotRegistered`] (`false`: schemas are registered only by
    /// `sluice schemas register`, e.g. in a deployment pipeline).
    pub auto_register: bool,
    /// Longest wait for one registry call. Default 10 s.
    pub registry_timeout: Duration,
    /// Extra librdkafka settings, applied last (e.g. `("client.id", "checkout")`).
    pub kafka: Vec<(String, String)>,
}

impl PublisherOptions {
    /// The defaults, for the service named `producer_name`.
    pub fn new(producer_name: impl Into<String>) -> Self {
        Self {
            producer_name: producer_name.into(),
            delivery_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(5),
            compression: "lz4".to_owned(),
            auto_register: true,
            registry_timeout: Duration::from_secs(10),
            kafka: Vec::new(),
        }
    }

    /// Adds a librdkafka setting.
    #[must_use]
    pub fn kafka_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.kafka.push((key.into(), value.into()));
        self
    }
}

/// The producer settings that make an acknowledged event durable, which
/// [`PublisherOptions::kafka`] may not change: `acks=all` (every in-sync replica has the record,
/// and at least the topic's `min.insync.replicas` of them; see `sluice topics apply`) and the
/// idempotent producer (a retried send is never written twice, and order within a partition
/// holds across retries). `request.required.acks` is librdkafka's other name for `acks`.
pub const DURABLE_PRODUCER: [(&str, &str); 2] = [("acks", "all"), ("enable.idempotence", "true")];

/// The librdkafka configuration of a publisher: [`DURABLE_PRODUCER`], the options, and
/// `opts.kafka` last. An extra setting that would weaken [`DURABLE_PRODUCER`] is refused
/// ([`PublishError::Config`]) rather than silently applied or silently overridden.
fn producer_config(kafka: &KafkaConnection, opts: &PublisherOptions) -> Result<ClientConfig, PublishError> {
    let mut config = crate::kafka::client_config(kafka);
    for (key, value) in DURABLE_PRODUCER {
        config.set(key, value);
    }
    config
        .set("linger.ms", opts.linger.as_millis().to_string())
        .set("compression.type", &opts.compression)
        .set("message.timeout.ms", opts.delivery_timeout.as_millis().to_string())
        // Topics are created by `sluice topics apply` with the topology's settings, never by
        // a first publish with the broker's defaults.
        .set("allow.auto.create.topics", "false");
    for (key, value) in &opts.kafka {
        let required = match key.trim() {
            "acks" | "request.required.acks" => Some(("acks", ["all", "-1"].as_slice())),
            "enable.idempotence" => Some(("enable.idempotence", ["true"].as_slice())),
            _ => None,
        };
        if let Some((name, allowed)) = required
            && !allowed.contains(&value.trim())
        {
            return Err(PublishError::Config(format!(
                "`{key}={value}` would weaken the producer's durability: sluice publishes with {name}={} \
                 (leave the setting out)",
                allowed[0]
            )));
        }
        config.set(key, value);
    }
    Ok(config)
}

/// Where an event was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic.
    pub topic: String,
    /// The partition (chosen by the key).
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
    /// The event's `event_id`.
    pub event_id: String,
    /// The event's aggregate and the version it gave it (when the event names both).
    pub aggregate: Option<AggregateVersion>,
}

impl Delivery {
    /// The consistency token of this write: hand it to a reader that must see it
    /// ([`sluice_core::consistency`]).
    pub fn token(&self) -> ConsistencyToken {
        ConsistencyToken::single(&self.topic, self.partition, self.offset, self.aggregate.clone())
    }
}

/// Publishes events of one topology. Cheap to share: wrap it in an `Arc`; every method takes
/// `&self`.
pub struct Publisher {
    topology: Arc<Topology>,
    producer: FutureProducer,
    registry: Registry,
    /// Schema id per event type, resolved on first use. A failed resolution is not cached.
    ids: HashMap<String, OnceCell<u32>>,
    opts: PublisherOptions,
    /// Asked before each event: backpressure from lagging projections ([`AlwaysAllow`] unless
    /// [`Publisher::with_gate`]).
    gate: Arc<dyn IntakeGate>,
    /// The largest record each topic takes, checked before a record reaches the producer.
    limits: RecordLimits,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resolved: HashMap<&str, u32> =
            self.ids.iter().filter_map(|(t, id)| id.get().map(|id| (t.as_str(), *id))).collect();
        f.debug_struct("Publisher")
            .field("topology", &self.topology.path())
            .field("registry", &self.registry.url())
            .field("schema_ids", &resolved)
            .field("opts", &self.opts)
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher of `topology`'s event types to the Kafka cluster and registry of
    /// `connections`. Connects lazily: the first publish of each event type asks the registry
    /// for its schema id, and the producer connects in the background.
    pub fn new(
        topology: Arc<Topology>,
        connections: &Connections,
        opts: PublisherOptions,
    ) -> Result<Self, PublishError> {
        let config = producer_config(&connections.kafka, &opts)?;
        // The effective value, librdkafka's default included, so the check below matches the
        // one librdkafka makes at send time.
        let message_max_bytes = config
            .create_native_config()
            .and_then(|native| native.get("message.max.bytes"))
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
        let producer: FutureProducer = config.create().map_err(|e| PublishError::Config(e.to_string()))?;
        let registry = Registry::new(&connections.registry, opts.registry_timeout)?;
        let ids = topology.events().map(|e| (e.event_type.clone(), OnceCell::new())).collect();
        Ok(Self {
            topology,
            producer,
            registry,
            ids,
            opts,
            gate: Arc::new(AlwaysAllow),
            limits: RecordLimits::new(message_max_bytes),
        })
    }

    /// Reads every topology topic's `max.message.bytes` from the cluster through `admin`, so
    /// events too large for their topic are refused before they are sent
    /// ([`PublishError::RecordTooLarge`]). Until it succeeded once, only the producer's
    /// `message.max.bytes` is checked; calling it again picks up a changed topic config. Topics
    /// missing from the cluster are left as they were.
    pub async fn read_topic_limits(&self, admin: &TopicAdmin) -> Result<(), TopicsError> {
        let topics: Vec<&str> = self.topic_names();
        for (name, topic) in admin.describe(&topics).await? {
            if let Some(max) = topic.max_message_bytes() {
                self.limits.set_topic(&name, max);
            }
        }
        Ok(())
    }

    /// True once every topology topic's own size limit is known ([`Publisher::read_topic_limits`]).
    pub fn topic_limits_known(&self) -> bool {
        self.topic_names().iter().all(|t| self.limits.knows(t))
    }

    /// The largest record (key + value + record framing, see [`crate::limits`]) `topic` takes
    /// as far as this publisher knows.
    pub fn max_record_bytes(&self, topic: &str) -> usize {
        self.limits.limit(topic)
    }

    fn topic_names(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = self.topology.events().map(|e| e.topic.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        topics
    }

    /// Asks `gate` before each event: [`Decision::Delay`] holds the event that long (intake slows
    /// down), [`Decision::Refuse`] returns [`PublishError::Backpressure`] and publishes nothing.
    /// Give it `sluice_consumers::lag::LagGate` to follow the projections' lag thresholds.
    pub fn with_gate(mut self, gate: Arc<dyn IntakeGate>) -> Self {
        self.gate = gate;
        self
    }

    /// The topology events are published by.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The options it was made with.
    pub fn options(&self) -> &PublisherOptions {
        &self.opts
    }

    /// Publishes a drafted event and waits for Kafka's acknowledgement. The envelope gets a fresh
    /// `event_id` and `occurred_at = now` unless the draft sets them, and this publisher's
    /// producer name.
    pub async fn publish(&self, draft: EventDraft) -> Result<Delivery, PublishError> {
        let event_type = draft.event_type().to_owned();
        let json = draft.into_json(&self.opts.producer_name)?;
        self.publish_json(&event_type, &json).await
    }

    /// Publishes a complete JSON event (every envelope field the schema requires included) as
    /// `event_type`, and waits for Kafka's acknowledgement. Nothing is written when the event
    /// does not fit the schema.
    pub async fn publish_json(&self, event_type: &str, json: &Json) -> Result<Delivery, PublishError> {
        self.enqueue_json(event_type, json).await?.await
    }

    /// Validates and encodes the event and hands it to the producer's queue, without waiting for
    /// the acknowledgement: await the returned [`PendingDelivery`] for it. Waits (up to the
    /// delivery timeout) only when the producer's queue is full.
    pub async fn enqueue_json(&self, event_type: &str, json: &Json) -> Result<PendingDelivery, PublishError> {
        let info = self.event_info(event_type)?;
        match self.gate.check(event_type) {
            Decision::Allow => {}
            Decision::Delay(d) => tokio::time::sleep(d).await,
            Decision::Refuse { retry_after } => {
                return Err(PublishError::Backpressure { event_type: event_type.to_owned(), retry_after });
            }
        }
        let topic = self.topology.topic(&info.topic);
        let key_field = topic.map_or(DEFAULT_KEY, |t| t.key.as_str());
        let schema_id = self.resolve(info).await?;
        let record = record::build(info, key_field, schema_id, json)?;
        let size =
            Size { bytes: record_size(record.key.len(), record.value.len()), limit: self.limits.limit(&info.topic) };
        if size.bytes > size.limit {
            return Err(size.error(&info.topic));
        }
        let started = Instant::now();
        loop {
            let attempt = FutureRecord::to(&info.topic).key(&record.key).payload(&record.value);
            match self.producer.send_result(attempt) {
                Ok(inner) => {
                    return Ok(PendingDelivery {
                        inner,
                        topic: info.topic.clone(),
                        event_id: record.event_id,
                        aggregate: aggregate_of(json),
                        timeout: self.opts.delivery_timeout,
                        size,
                    });
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if started.elapsed() >= self.opts.delivery_timeout {
                        return Err(PublishError::QueueFull(started.elapsed()));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(kafka_error(&e, &info.topic, self.opts.delivery_timeout, size)),
            }
        }
    }

    /// The registry id of `event_type`'s schema, asked once and then cached.
    pub async fn schema_id(&self, event_type: &str) -> Result<u32, PublishError> {
        let info = self.event_info(event_type)?;
        self.resolve(info).await
    }

    /// Waits until every queued event is delivered or failed, at most `timeout`. Publishes
    /// already await their own deliveries; this is for a shutdown after
    /// [`Publisher::enqueue_json`] futures were dropped.
    pub fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        self.producer.flush(timeout).map_err(|e| match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::MessageTimedOut) => {
                PublishError::Timeout(timeout)
            }
            _ => PublishError::BrokerUnavailable(e.to_string()),
        })
    }

    fn event_info(&self, event_type: &str) -> Result<&EventInfo, PublishError> {
        self.topology.event(event_type).ok_or_else(|| PublishError::UnknownEventType {
            event_type: event_type.to_owned(),
            known: self.topology.events().map(|e| e.event_type.clone()).collect(),
        })
    }

    async fn resolve(&self, info: &EventInfo) -> Result<u32, PublishError> {
        let cell = self.ids.get(&info.event_type).ok_or_else(|| PublishError::UnknownEventType {
            event_type: info.event_type.clone(),
            known: self.ids.keys().cloned().collect(),
        })?;
        let id = cell.get_or_try_init(|| self.lookup_or_register(info)).await?;
        Ok(*id)
    }

    /// The id of the topology's schema under the event type's subject. The lookup comes first so
    /// a publisher without registration rights (or with `auto_register` off) works against a
    /// registry prepared by `sluice schemas register`.
    async fn lookup_or_register(&self, info: &EventInfo) -> Result<u32, PublishError> {
        let subject = &info.subject;
        if let Some(found) = self.registry.lookup(subject, &info.schema_text).await? {
            return Ok(found.id);
        }
        if !self.opts.auto_register {
            return Err(RegistryError::NotRegistered { subject: subject.clone() }.into());
        }
        // A brand-new subject gets the topology's level before its first version, so the next
        // schema change is checked like `sluice schemas register` would have it checked.
        if self.registry.latest(subject).await?.is_none() {
            self.registry.set_compatibility(subject, self.topology.compatibility()).await?;
        }
        let id = self.registry.register(subject, &info.schema_text, &info.record_name).await?;
        tracing::info!(event_type = %info.event_type, %subject, id, "registered the event type's schema");
        Ok(id)
    }
}

/// An event in the producer's queue; resolves to its [`Delivery`] once Kafka acknowledged it (or
/// to the error that ended its delivery, at the latest after the delivery timeout).
#[must_use = "the delivery is only known once awaited"]
pub struct PendingDelivery {
    inner: DeliveryFuture,
    topic: String,
    event_id: String,
    aggregate: Option<AggregateVersion>,
    timeout: Duration,
    size: Size,
}

/// The aggregate an event names: its `aggregate_id` and `aggregate_version`, both present.
fn aggregate_of(json: &Json) -> Option<AggregateVersion> {
    let id = json.get("aggregate_id")?.as_str()?;
    let version = json.get("aggregate_version")?.as_i64()?;
    Some(AggregateVersion { id: id.to_owned(), version })
}

/// A record's size and the limit it was checked against, for a refusal that comes from Kafka.
#[derive(Debug, Clone, Copy)]
struct Size {
    bytes: usize,
    limit: usize,
}

impl Size {
    fn error(self, topic: &str) -> PublishError {
        PublishError::RecordTooLarge { topic: topic.to_owned(), bytes: self.bytes, limit: self.limit }
    }
}

impl fmt::Debug for PendingDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingDelivery").field("topic", &self.topic).field("event_id", &self.event_id).finish()
    }
}

impl PendingDelivery {
    /// The event's `event_id`.
    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    fn finish(&mut self, result: OwnedDeliveryResult) -> Result<Delivery, PublishError> {
        match result {
            Ok(d) => Ok(Delivery {
                topic: std::mem::take(&mut self.topic),
                partition: d.partition,
                offset: d.offset,
                event_id: std::mem::take(&mut self.event_id),
                aggregate: self.aggregate.take(),
            }),
            Err((e, _)) => Err(kafka_error(&e, &self.topic, self.timeout, self.size)),
        }
    }
}

impl Future for PendingDelivery {
    type Output = Result<Delivery, PublishError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // librdkafka reports every message within `message.timeout.ms`, so no timer is needed
        // here; the channel closes without a report only when the producer is dropped.
        match Pin::new(&mut self.inner).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_canceled)) => Poll::Ready(Err(PublishError::Canceled)),
            Poll::Ready(Ok(result)) => Poll::Ready(self.finish(result)),
        }
    }
}

/// What a failed produce means for the caller.
fn kafka_error(e: &KafkaError, topic: &str, timeout: Duration, size: Size) -> PublishError {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        // Passed the check above but refused all the same (the topic's limit changed, or was
        // not read yet): still the event's size, never a server fault.
        Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge) => size.error(topic),
        Some(C::MessageTimedOut | C::OperationTimedOut | C::RequestTimedOut) => PublishError::Timeout(timeout),
        Some(C::UnknownTopic | C::UnknownTopicOrPartition) => PublishError::UnknownTopic(topic.to_owned()),
        Some(
            C::AllBrokersDown
            | C::BrokerTransportFailure
            | C::Resolve
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NetworkException,
        ) => PublishError::BrokerUnavailable(e.to_string()),
        Some(C::QueueFull) => PublishError::QueueFull(Duration::ZERO),
        Some(code @ (C::NotEnoughReplicas | C::NotEnoughReplicasAfterAppend | C::KafkaStorageError)) => {
            PublishError::Kafka { message: code.to_string(), retriable: true }
        }
        Some(code) => PublishError::Kafka { message: code.to_string(), retriable: false },
        None if matches!(e, KafkaError::Canceled) => PublishError::Canceled,
        None => PublishError::Kafka { message: e.to_string(), retriable: false },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_waits_for_every_in_sync_replica_and_is_idempotent() {
        let opts = PublisherOptions::new("tests").kafka_config("client.id", "checkout");
        let config = producer_config(&KafkaConnection::plaintext("127.0.0.1:1"), &opts).expect("valid");
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("allow.auto.create.topics"), Some("false"));
        assert_eq!(config.get("client.id"), Some("checkout"), "other settings pass through");
        // Restating the durable values is fine.
        let same = PublisherOptions::new("tests").kafka_config("acks", "-1").kafka_config("enable.idempotence", "true");
        assert!(producer_config(&KafkaConnection::plaintext("127.0.0.1:1"), &same).is_ok());
    }

    #[test]
    fn a_setting_weakening_durability_is_refused() {
        for (key, value) in [("acks", "1"), ("request.required.acks", "0"), ("enable.idempotence", "false")] {
            let opts = PublisherOptions::new("tests").kafka_config(key, value);
            let e = producer_config(&KafkaConnection::plaintext("127.0.0.1:1"), &opts).map(drop).expect_err("refused");
            assert!(matches!(&e, PublishError::Config(m) if m.contains("weaken the producer's durability")), "{e}");
        }
    }

    #[test]
    fn kafkas_size_refusals_are_the_events_size() {
        let size = Size { bytes: 2_000_036, limit: 1_000_000 };
        for code in [RDKafkaErrorCode::MessageSizeTooLarge, RDKafkaErrorCode::MessageBatchTooLarge] {
            let e = kafka_error(&KafkaError::MessageProduction(code), "t", Duration::from_secs(1), size);
            assert!(
                matches!(&e, PublishError::RecordTooLarge { topic, bytes: 2_000_036, limit: 1_000_000 } if topic == "t"),
                "{e:?}"
            );
            assert!(e.is_invalid_event() && !e.is_retriable());
        }
        let e = kafka_error(
            &KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown),
            "t",
            Duration::from_secs(1),
            size,
        );
        assert!(!e.is_invalid_event() && e.is_retriable(), "an outage is not the event's fault");
    }
}
