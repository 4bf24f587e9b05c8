//! `sluice topics apply`: make the cluster's topics what the topology declares.
//!
//! The declared topics (dead-letter topics included) come from the topology; the cluster's come
//! from broker metadata and `DescribeConfigs`. [`plan`] compares the two (pure, unit-tested) and
//! [`TopicAdmin::apply`] carries the plan out through the Kafka admin API.
//!
//! What is changed, and what is only reported:
//! - a missing topic is created with its partitions, replication factor, `cleanup.policy`,
//!   `min.insync.replicas` and `retention.ms` (left to the broker default when the topology has
//!   no `retention`);
//! - too few partitions are increased (keys of existing events then map to other partitions:
//!   per-key order holds for new events only, which is why it is said in the output);
//! - a differing `cleanup.policy`, `min.insync.replicas` or `retention.ms` is altered (each is
//!   compared with the topic's effective value, its own or the broker's). rdkafka offers only the
//!   non-incremental `AlterConfigs`, which resets every topic-level setting it is not given, so
//!   the request carries the topic's other overrides unchanged;
//! - too many partitions (Kafka cannot remove partitions) and a different replication factor
//!   (a partition reassignment, not a config change) are reported as drift and left alone.

use crate::kafka::client_config as kafka_config;
use sluice_core::connections::KafkaConnection;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use sluice_core::topology::{TopicConfig, Topology};

/// The topic configs the topology manages.
pub const MANAGED_CONFIGS: [&str; 3] = ["cleanup.policy", "min.insync.replicas", "retention.ms"];

/// Why the cluster could not be inspected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TopicsError {
    /// Kafka did not answer or refused the request.
    #[error("Kafka: {0}")]
    Kafka(String),
}

/// A topic as the cluster has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingTopic {
    /// Partition count.
    pub partitions: usize,
    /// Replicas of partition 0.
    pub replication_factor: usize,
    /// Every config with its value (`None` for sensitive ones) and whether it is set on the
    /// topic itself (rather than inherited from the broker).
    pub configs: BTreeMap<String, (Option<String>, bool)>,
}

impl ExistingTopic {
    fn config(&self, key: &str) -> Option<&str> {
        self.configs.get(key).and_then(|(v, _)| v.as_deref())
    }

    /// The topic's `max.message.bytes` (its own or the broker's default), when the cluster said.
    pub fn max_message_bytes(&self) -> Option<usize> {
        self.config("max.message.bytes")?.parse().ok()
    }
}

/// One change `apply` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create the topic.
    Create,
    /// Raise the partition count.
    AddPartitions {
        /// Now.
        from: usize,
        /// Declared.
        to: usize,
    },
    /// Set a topic config.
    SetConfig {
        /// One of [`MANAGED_CONFIGS`].
        key: String,
        /// The cluster's value.
        from: Option<String>,
        /// The declared value.
        to: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Create => f.write_str("create"),
            Self::AddPartitions { from, to } => {
                write!(f, "partitions {from} → {to} (existing keys may move: order holds for new events)")
            }
            Self::SetConfig { key, from, to } => write!(f, "{key} {} → {to}", from.as_deref().unwrap_or("unset")),
        }
    }
}

/// A difference `apply` cannot fix: reported, left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// More partitions than declared; Kafka cannot remove partitions.
    TooManyPartitions {
        /// On the cluster.
        actual: usize,
        /// In the topology.
        declared: u32,
    },
    /// Another replication factor; changing it is a partition reassignment.
    ReplicationFactor {
        /// On the cluster.
        actual: usize,
        /// In the topology.
        declared: u16,
    },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooManyPartitions { actual, declared } => write!(
                f,
                "has {actual} partitions, the topology declares {declared}: Kafka cannot remove partitions \
                 (declare {actual}, or recreate the topic)"
            ),
            Self::ReplicationFactor { actual, declared } => write!(
                f,
                "replication factor is {actual}, the topology declares {declared}: change it with a partition \
                 reassignment (kafka-reassign-partitions)"
            ),
        }
    }
}

/// What `apply` does to one declared topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlan {
    /// The topic.
    pub topic: String,
    /// Its declaration.
    pub config: TopicConfig,
    /// Changes to make, in order.
    pub changes: Vec<Change>,
    /// Differences left alone.
    pub drift: Vec<Drift>,
}

impl TopicPlan {
    /// True when the cluster already has the topic as declared.
    pub fn is_up_to_date(&self) -> bool {
        self.changes.is_empty() && self.drift.is_empty()
    }
}

/// The managed configs a declaration asks for: `cleanup.policy` and `min.insync.replicas`
/// always (the topology fills in their defaults), `retention.ms` when the topology sets a
/// retention.
pub fn declared_configs(config: &TopicConfig) -> Vec<(&'static str, String)> {
    let [cleanup, min_insync, retention_ms] = MANAGED_CONFIGS;
    let mut configs = vec![
        (cleanup, config.cleanup_policy.as_str().to_owned()),
        (min_insync, config.min_insync_replicas.to_string()),
    ];
    if let Some(retention) = config.retention {
        configs.push((retention_ms, retention.kafka_retention_ms().to_string()));
    }
    configs
}

/// What it takes to make `existing` (the cluster's topics, by name) match `topology`; one plan
/// per declared topic, in name order. Topics the topology does not declare are not touched.
pub fn plan(topology: &Topology, existing: &BTreeMap<String, ExistingTopic>) -> Vec<TopicPlan> {
    topology
        .topics()
        .map(|(name, config)| {
            let (changes, drift) = compare(config, existing.get(name));
            TopicPlan { topic: name.to_owned(), config: config.clone(), changes, drift }
        })
        .collect()
}

/// The changes and the unfixable drift between a declaration and the cluster's topic.
fn compare(config: &TopicConfig, existing: Option<&ExistingTopic>) -> (Vec<Change>, Vec<Drift>) {
    let Some(topic) = existing else { return (vec![Change::Create], Vec::new()) };
    let mut changes = Vec::new();
    let mut drift = Vec::new();
    let declared = usize::try_from(config.partitions).unwrap_or(usize::MAX);
    if topic.partitions < declared {
        changes.push(Change::AddPartitions { from: topic.partitions, to: declared });
    } else if topic.partitions > declared {
        drift.push(Drift::TooManyPartitions { actual: topic.partitions, declared: config.partitions });
    }
    if topic.replication_factor != usize::from(config.replication_factor) {
        drift.push(Drift::ReplicationFactor { actual: topic.replication_factor, declared: config.replication_factor });
    }
    for (key, value) in declared_configs(config) {
        let current = topic.config(key);
        if current != Some(value.as_str()) {
            changes.push(Change::SetConfig { key: key.to_owned(), from: current.map(str::to_owned), to: value });
        }
    }
    (changes, drift)
}

/// A plan and how carrying it out went.
#[derive(Debug, Clone)]
pub struct TopicOutcome {
    /// The plan.
    pub plan: TopicPlan,
    /// Each change that failed, with Kafka's reason; empty when all succeeded (or for a dry run).
    pub failures: Vec<(Change, String)>,
}

/// The Kafka admin API, for topics.
#[derive(Clone)]
pub struct TopicAdmin {
    admin: Arc<AdminClient<DefaultClientContext>>,
    timeout: Duration,
}

impl std::fmt::Debug for TopicAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicAdmin").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl TopicAdmin {
    /// An admin client of the cluster at `brokers`; each request gives up after `timeout`.
    pub fn new(kafka: &KafkaConnection, timeout: Duration) -> Result<Self, TopicsError> {
        let admin = kafka_config(kafka)
            .create()
            .map_err(|e| TopicsError::Kafka(format!("cannot create the admin client: {e}")))?;
        Ok(Self { admin: Arc::new(admin), timeout })
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new().request_timeout(Some(self.timeout)).operation_timeout(Some(self.timeout))
    }

    /// Every topic of the cluster, by name, with its partition count and replication factor (the
    /// replicas of partition 0).
    pub async fn list(&self) -> Result<BTreeMap<String, (usize, usize)>, TopicsError> {
        self.partitions().await
    }

    /// Every topic of the cluster with its partition count and replication factor.
    async fn partitions(&self) -> Result<BTreeMap<String, (usize, usize)>, TopicsError> {
        let admin = Arc::clone(&self.admin);
        let timeout = self.timeout;
        // fetch_metadata blocks on librdkafka; keep it off the async workers.
        let metadata = tokio::task::spawn_blocking(move || {
            admin.inner().fetch_metadata(None, timeout).map(|m| {
                m.topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| {
                        let rf = t.partitions().iter().find(|p| p.id() == 0).map_or(0, |p| p.replicas().len());
                        (t.name().to_owned(), (t.partitions().len(), rf))
                    })
                    .collect::<BTreeMap<_, _>>()
            })
        })
        .await
        .map_err(|e| TopicsError::Kafka(format!("metadata task failed: {e}")))?
        .map_err(|e| TopicsError::Kafka(format!("cannot read the cluster's metadata: {e}")))?;
        Ok(metadata)
    }

    /// The cluster's topics among `names`, with their partitions, replication and configs.
    pub async fn describe(&self, names: &[&str]) -> Result<BTreeMap<String, ExistingTopic>, TopicsError> {
        let metadata = self.partitions().await?;
        let present: Vec<&str> = names.iter().copied().filter(|n| metadata.contains_key(*n)).collect();
        let mut topics = BTreeMap::new();
        if present.is_empty() {
            return Ok(topics);
        }
        let specifiers: Vec<ResourceSpecifier<'_>> = present.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        let described = self
            .admin
            .describe_configs(&specifiers, &self.options())
            .await
            .map_err(|e| TopicsError::Kafka(format!("cannot describe topic configs: {e}")))?;
        for (name, result) in present.iter().zip(described) {
            let resource = result.map_err(|code| TopicsError::Kafka(format!("describe configs of {name}: {code}")))?;
            let configs = resource
                .entries
                .iter()
                .map(|e| (e.name.clone(), (e.value.clone(), e.source == ConfigSource::DynamicTopic)))
                .collect();
            let (partitions, replication_factor) = metadata.get(*name).copied().unwrap_or_default();
            topics.insert((*name).to_owned(), ExistingTopic { partitions, replication_factor, configs });
        }
        Ok(topics)
    }

    /// Deletes the topics `names` (with their records); ones that do not exist are skipped. Only
    /// for throw-away copies of a topology: `sluice bench` removes its own with it.
    pub async fn delete(&self, names: &[&str]) -> Result<(), TopicsError> {
        let existing = self.partitions().await?;
        let present: Vec<&str> = names.iter().copied().filter(|n| existing.contains_key(*n)).collect();
        if present.is_empty() {
            return Ok(());
        }
        let results = self.admin.delete_topics(&present, &self.options()).await;
        for (name, result) in present.iter().zip(per_topic(results, present.len())) {
            match result {
                Ok(()) | Err(RDKafkaErrorCode::UnknownTopicOrPartition) => {}
                Err(code) => return Err(TopicsError::Kafka(format!("cannot delete topic {name}: {code}"))),
            }
        }
        Ok(())
    }

    /// The plan for `topology` against the cluster as it is now.
    pub async fn plan(&self, topology: &Topology) -> Result<Vec<TopicPlan>, TopicsError> {
        let names: Vec<&str> = topology.topics().map(|(n, _)| n).collect();
        Ok(plan(topology, &self.describe(&names).await?))
    }

    /// Carries out `plans` (from [`TopicAdmin::plan`]), then waits (up to the timeout) until the
    /// cluster's metadata shows the changes, so a second `apply` right after finds nothing to do.
    pub async fn apply(&self, plans: Vec<TopicPlan>) -> Result<Vec<TopicOutcome>, TopicsError> {
        let mut failures: BTreeMap<String, Vec<(Change, String)>> = BTreeMap::new();
        let mut fail = |topic: &str, change: &Change, reason: String| {
            failures.entry(topic.to_owned()).or_default().push((change.clone(), reason));
        };

        // Creations, all in one request.
        let creating: Vec<&TopicPlan> = plans.iter().filter(|p| p.changes.contains(&Change::Create)).collect();
        let configs: Vec<Vec<(&'static str, String)>> = creating.iter().map(|p| declared_configs(&p.config)).collect();
        let new_topics: Vec<NewTopic<'_>> = creating
            .iter()
            .zip(&configs)
            .map(|(p, configs)| {
                let partitions = i32::try_from(p.config.partitions).unwrap_or(i32::MAX);
                let replication = TopicReplication::Fixed(i32::from(p.config.replication_factor));
                configs.iter().fold(NewTopic::new(&p.topic, partitions, replication), |t, (k, v)| t.set(k, v))
            })
            .collect();
        if !new_topics.is_empty() {
            let results = self.admin.create_topics(&new_topics, &self.options()).await;
            for (p, result) in creating.iter().zip(per_topic(results, creating.len())) {
                match result {
                    // Created between our look and our request: the next run plans the rest.
                    Err(RDKafkaErrorCode::TopicAlreadyExists) => {}
                    Err(code) => fail(&p.topic, &Change::Create, code.to_string()),
                    Ok(()) => {}
                }
            }
        }

        // More partitions, all in one request.
        let growing: Vec<(&TopicPlan, &Change, usize)> = plans
            .iter()
            .flat_map(|p| p.changes.iter().map(move |c| (p, c)))
            .filter_map(|(p, c)| match c {
                Change::AddPartitions { to, .. } => Some((p, c, *to)),
                _ => None,
            })
            .collect();
        if !growing.is_empty() {
            let requests: Vec<NewPartitions<'_>> =
                growing.iter().map(|(p, _, to)| NewPartitions::new(&p.topic, *to)).collect();
            let results = self.admin.create_partitions(&requests, &self.options()).await;
            for ((p, change, _), result) in growing.iter().zip(per_topic(results, growing.len())) {
                if let Err(code) = result {
                    fail(&p.topic, change, code.to_string());
                }
            }
        }

        // Configs: one request per topic, carrying the topic's other overrides.
        let altering: Vec<&TopicPlan> =
            plans.iter().filter(|p| p.changes.iter().any(|c| matches!(c, Change::SetConfig { .. }))).collect();
        if !altering.is_empty() {
            let names: Vec<&str> = altering.iter().map(|p| p.topic.as_str()).collect();
            let current = self.describe(&names).await?;
            for p in altering {
                let sets: Vec<&Change> = p.changes.iter().filter(|c| matches!(c, Change::SetConfig { .. })).collect();
                if let Err(reason) = self.alter(p, current.get(&p.topic)).await {
                    for change in sets {
                        fail(&p.topic, change, reason.clone());
                    }
                }
            }
        }

        let outcomes: Vec<TopicOutcome> = plans
            .into_iter()
            .map(|plan| {
                let failures = failures.remove(&plan.topic).unwrap_or_default();
                TopicOutcome { plan, failures }
            })
            .collect();
        self.await_visible(&outcomes).await;
        Ok(outcomes)
    }

    /// Sets the declared managed configs of a topic, keeping its other topic-level overrides.
    async fn alter(&self, plan: &TopicPlan, existing: Option<&ExistingTopic>) -> Result<(), String> {
        let mut entries: BTreeMap<String, String> = BTreeMap::new();
        if let Some(topic) = existing {
            for (key, (value, overridden)) in &topic.configs {
                match (value, overridden) {
                    (Some(value), true) => {
                        entries.insert(key.clone(), value.clone());
                    }
                    // A sensitive override cannot be read back, so it cannot be carried over:
                    // altering would erase it.
                    (None, true) => {
                        return Err(format!("the topic has a sensitive override {key} that an alter would erase"));
                    }
                    _ => {}
                }
            }
        }
        for (key, value) in declared_configs(&plan.config) {
            entries.insert(key.to_owned(), value);
        }
        let request =
            entries.iter().fold(AlterConfig::new(ResourceSpecifier::Topic(&plan.topic)), |a, (k, v)| a.set(k, v));
        match self.admin.alter_configs([&request], &self.options()).await {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) => Ok(()),
                Some(Err((_, code))) => Err(code.to_string()),
                None => Err("no answer for the topic".to_owned()),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    /// Polls the cluster until the applied changes show, at most the timeout; a change that
    /// does not show in time is only logged (it still may, moments later).
    async fn await_visible(&self, outcomes: &[TopicOutcome]) {
        let changed: Vec<&TopicPlan> =
            outcomes.iter().filter(|o| !o.plan.changes.is_empty() && o.failures.is_empty()).map(|o| &o.plan).collect();
        if changed.is_empty() {
            return;
        }
        let names: Vec<&str> = changed.iter().map(|p| p.topic.as_str()).collect();
        let deadline = Instant::now() + self.timeout;
        loop {
            let pending = match self.describe(&names).await {
                Ok(existing) => {
                    changed.iter().filter(|p| !compare(&p.config, existing.get(&p.topic)).0.is_empty()).count()
                }
                Err(_) => changed.len(),
            };
            if pending == 0 {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(pending, "applied topic changes are not yet visible in the cluster's metadata");
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Per-topic results of an admin request, in request order; a failed request fails them all.
fn per_topic(
    results: rdkafka::error::KafkaResult<Vec<rdkafka::admin::TopicResult>>,
    n: usize,
) -> Vec<Result<(), RDKafkaErrorCode>> {
    match results {
        Ok(results) => results.into_iter().map(|r| r.map(drop).map_err(|(_, code)| code)).collect(),
        Err(e) => vec![Err(e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail)); n],
    }
}

#[cfg(test)]
mod tests;
