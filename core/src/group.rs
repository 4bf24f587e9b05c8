//! Who owns which partition in a projection's consumer group.
//!
//! Data path: Kafka's DescribeGroups answer (through the consumers crate: member id, client id,
//! host and the assignment bytes of every member) → [`parse_assignment`], which reads the
//! assignment in Kafka's consumer protocol format → [`Member`]s → [`owners`], the partition →
//! owner map `sluice lag` shows in its OWNER column.
//!
//! Pure: the bytes are passed in, so every case is tested without a broker.

use std::collections::BTreeMap;

use serde::Serialize;

/// Why an assignment could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    /// The bytes end inside a field.
    #[error("assignment truncated at byte {at} (reading {what})")]
    Truncated {
        /// Where the missing bytes start.
        at: usize,
        /// The field.
        what: &'static str,
    },
    /// A length is negative where the protocol allows none.
    #[error("negative {what} length {len} at byte {at}")]
    NegativeLength {
        /// The field.
        what: &'static str,
        /// The length read.
        len: i32,
        /// Where.
        at: usize,
    },
    /// A topic name is not UTF-8.
    #[error("topic name at byte {at} is not UTF-8")]
    TopicNotUtf8 {
        /// Where.
        at: usize,
    },
}

/// A reader over big-endian protocol fields.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], AssignmentError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else { return Err(AssignmentError::Truncated { at: self.at, what }) };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, AssignmentError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, AssignmentError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An array length: non-negative (the protocol's null array, -1, counts as empty).
    fn len32(&mut self, what: &'static str) -> Result<usize, AssignmentError> {
        let at = self.at;
        match self.i32(what)? {
            -1 => Ok(0),
            len if len < 0 => Err(AssignmentError::NegativeLength { what, len, at }),
            len => Ok(len as usize),
        }
    }

    fn string(&mut self, what: &'static str) -> Result<String, AssignmentError> {
        let at = self.at;
        let len = self.i16(what)?;
        let len = usize::try_from(len).map_err(|_| AssignmentError::NegativeLength { what, len: len.into(), at })?;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| AssignmentError::TopicNotUtf8 { at })
    }
}

/// The partitions of a member's assignment, as `(topic, partition)` sorted, from its bytes in
/// Kafka's consumer protocol format (`ConsumerProtocolAssignment`, versions 0 to 3: a version,
/// then per topic its name and partition numbers, then user data, which is ignored). Empty bytes
/// (a member not yet assigned, the group rebalancing) are an empty assignment.
pub fn parse_assignment(bytes: &[u8]) -> Result<Vec<(String, i32)>, AssignmentError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader { bytes, at: 0 };
    let _version = r.i16("version")?;
    let mut out = Vec::new();
    for _ in 0..r.len32("topic count")? {
        let topic = r.string("topic")?;
        for _ in 0..r.len32("partition count")? {
            out.push((topic.clone(), r.i32("partition")?));
        }
    }
    out.sort();
    Ok(out)
}

/// One member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The id the coordinator gave it (`<instance id or client id>-<uuid>`).
    pub member_id: String,
    /// Its `client.id` (`sluice-<projection>`, `/<instance id>` appended when it has one).
    pub client_id: String,
    /// Where it connects from, as the broker sees it.
    pub host: String,
    /// Its partitions, `(topic, partition)` sorted.
    pub partitions: Vec<(String, i32)>,
}

impl Member {
    /// A member from the broker's fields; the host's leading `/` (Java's address format) is
    /// dropped.
    pub fn new(member_id: &str, client_id: &str, host: &str, partitions: Vec<(String, i32)>) -> Self {
        Self {
            member_id: member_id.to_owned(),
            client_id: client_id.to_owned(),
            host: host.trim_start_matches('/').to_owned(),
            partitions,
        }
    }

    /// The worker's instance id, when its client id carries one (`sluice-<projection>/<id>`).
    pub fn instance_id(&self) -> Option<&str> {
        self.client_id.split_once('/').map(|(_, id)| id).filter(|id| !id.is_empty())
    }

    /// A short name for the OWNER column: the instance id, else the first 8 characters of the
    /// unique part of the member id (what follows `<client id>-`).
    pub fn owner(&self) -> String {
        if let Some(id) = self.instance_id() {
            return id.to_owned();
        }
        let unique = self.member_id.strip_prefix(&format!("{}-", self.client_id)).unwrap_or(&self.member_id);
        unique.chars().take(8).collect()
    }
}

/// Partition → the owner name of the member it is assigned to.
pub fn owners(members: &[Member]) -> BTreeMap<(String, i32), String> {
    members.iter().flat_map(|m| m.partitions.iter().map(move |tp| (tp.clone(), m.owner()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An assignment in the consumer protocol format, as the brokers hand it out.
    fn encode(version: i16, topics: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (topic, partitions) in topics {
            b.extend((topic.len() as i16).to_be_bytes());
            b.extend(topic.as_bytes());
            b.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                b.extend(p.to_be_bytes());
            }
        }
        match user_data {
            Some(d) => {
                b.extend((d.len() as i32).to_be_bytes());
                b.extend(d);
            }
            None => b.extend((-1i32).to_be_bytes()),
        }
        b
    }

    #[test]
    fn reads_every_topic_and_partition_of_every_version() {
        for version in 0..=3 {
            let bytes = encode(version, &[("users", &[4, 1]), ("sessions", &[0])], None);
            let got = parse_assignment(&bytes).expect("parse");
            assert_eq!(got, [("sessions".into(), 0), ("users".into(), 1), ("users".into(), 4)], "v{version}");
        }
        let with_user_data = encode(1, &[("t", &[2])], Some(b"sticky"));
        assert_eq!(parse_assignment(&with_user_data).expect("parse"), [("t".into(), 2)]);
    }

    #[test]
    fn no_bytes_or_no_topics_is_an_empty_assignment() {
        assert_eq!(parse_assignment(&[]).expect("empty"), []);
        assert_eq!(parse_assignment(&encode(0, &[], None)).expect("no topics"), []);
        // Older clients end the assignment without its user data field.
        let mut bytes = encode(0, &[("t", &[1])], None);
        bytes.truncate(bytes.len() - 4);
        assert_eq!(parse_assignment(&bytes).expect("no user data"), [("t".into(), 1)]);
    }

    #[test]
    fn refuses_truncated_or_negative_fields() {
        let bytes = encode(0, &[("users", &[1, 2])], None);
        for cut in [1, 5, 8, 14, 18] {
            assert!(
                matches!(parse_assignment(&bytes[..cut]), Err(AssignmentError::Truncated { .. })),
                "cut at {cut}: {:?}",
                parse_assignment(&bytes[..cut])
            );
        }
        let mut negative = 0i16.to_be_bytes().to_vec();
        negative.extend((-2i32).to_be_bytes());
        assert_eq!(
            parse_assignment(&negative),
            Err(AssignmentError::NegativeLength { what: "topic count", len: -2, at: 2 })
        );
        let mut bad_name = encode(0, &[("ab", &[])], None);
        bad_name[8] = 0xff;
        assert_eq!(parse_assignment(&bad_name), Err(AssignmentError::TopicNotUtf8 { at: 6 }));
    }

    #[test]
    fn owners_are_instance_ids_or_short_member_ids() {
        let a = Member::new("w-0-1b2c", "sluice-users/w-0", "/10.0.0.7", vec![("t".into(), 0), ("t".into(), 2)]);
        let b = Member::new("sluice-users-9f8e7d6c-5b4a", "sluice-users", "/10.0.0.8", vec![("t".into(), 1)]);
        assert_eq!((a.instance_id(), a.owner(), a.host.as_str()), (Some("w-0"), "w-0".to_owned(), "10.0.0.7"));
        assert_eq!((b.instance_id(), b.owner()), (None, "9f8e7d6c".to_owned()));
        let owners = owners(&[a, b]);
        let got: Vec<(i32, &str)> = owners.iter().map(|((_, p), o)| (*p, o.as_str())).collect();
        assert_eq!(got, [(0, "w-0"), (1, "9f8e7d6c"), (2, "w-0")]);
    }
}
