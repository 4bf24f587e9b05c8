//! A projection's consumer group as the broker describes it: its state and its members, each with
//! the partitions it owns — what `sluice lag` shows in its OWNER column and members table.
//!
//! Data path: DescribeGroups (librdkafka's `fetch_group_list` for one group) → the assignment bytes
//! of each member → [`sluice_core::group::parse_assignment`] (pure) → [`GroupView`]. A blocking
//! call: run it on the blocking pool.

use sluice_core::connections::KafkaConnection;
use sluice_producers::kafka::client_config as kafka_config;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use serde::Serialize;
use sluice_core::group::{AssignmentError, Member, parse_assignment};

/// How long the group description may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a group could not be described.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// Kafka did not answer or refused.
    #[error("describing consumer group {group}: {source}")]
    Kafka {
        /// The group.
        group: String,
        /// The client's error.
        source: KafkaError,
    },
    /// A member's assignment is not in the consumer protocol format.
    #[error("consumer group {group}, member {member}: {source}")]
    Assignment {
        /// The group.
        group: String,
        /// The member id.
        member: String,
        /// What was wrong.
        source: AssignmentError,
    },
}

/// A consumer group now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// The coordinator's state: `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`,
    /// `Dead`.
    pub state: String,
    /// Its members, by member id.
    pub members: Vec<Member>,
}

/// Describes consumer group `group` on `kafka`. A group nobody joined yet is `Dead` with no
/// members.
pub fn describe(kafka: &KafkaConnection, group: &str) -> Result<GroupView, GroupError> {
    let failed = |source| GroupError::Kafka { group: group.to_owned(), source };
    let client: BaseConsumer = kafka_config(kafka).set("client.id", "sluice-lag-members").create().map_err(failed)?;
    let list = client.fetch_group_list(Some(group), TIMEOUT).map_err(failed)?;
    let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
        return Ok(GroupView { state: "Dead".to_owned(), members: Vec::new() });
    };
    let mut members = Vec::with_capacity(info.members().len());
    for m in info.members() {
        let partitions = parse_assignment(m.assignment().unwrap_or_default())
            .map_err(|source| GroupError::Assignment { group: group.to_owned(), member: m.id().to_owned(), source })?;
        members.push(Member::new(m.id(), m.client_id(), m.client_host(), partitions));
    }
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    Ok(GroupView { state: info.state().to_owned(), members })
}
