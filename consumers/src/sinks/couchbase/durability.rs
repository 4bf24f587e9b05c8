//! The durability of the Couchbase sink's writes: a projection's `durability` (topology
//! `[projections.<name>.couchbase]`) as the SDK's [`DurabilityLevel`], in the options of every
//! insert, replace, remove and upsert the sink, the live-collection pointer and `rebuild --key`
//! make (built here, so no write can leave it out); and what the server's durability errors mean
//! for the worker.
//!
//! A bucket that cannot give the level (too few replicas or nodes for a majority, persistence
//! asked of an ephemeral bucket, a server without synchronous replication) refuses every write
//! the same way, so that is a configuration error naming the projection and the level: retrying
//! would loop forever, and refusing the events to the DLQ would throw away good data. A durable
//! write whose outcome is unknown (the replicas did not confirm in time) is transient: the batch
//! is written again, which the fold and CAS make harmless. Pure code.

use std::time::Duration;

use couchbase::durability_level::DurabilityLevel;
use couchbase::error::ErrorKind;
use couchbase::options::kv_options::{InsertOptions, RemoveOptions, ReplaceOptions, UpsertOptions};
use sluice_core::topology::CouchbaseDurability;

/// The SDK level of `durability`; `None` for `none`, so such writes carry no durability frame at
/// all (as before the setting existed, and accepted by every server).
pub fn level(durability: CouchbaseDurability) -> Option<DurabilityLevel> {
    match durability {
        CouchbaseDurability::None => None,
        CouchbaseDurability::Majority => Some(DurabilityLevel::MAJORITY),
        CouchbaseDurability::MajorityAndPersistActive => Some(DurabilityLevel::MAJORITY_AND_PERSIST_ACTIVE),
        CouchbaseDurability::PersistToMajority => Some(DurabilityLevel::PERSIST_TO_MAJORITY),
    }
}

/// The options of an insert: the durability, and the expiry when the projection has a `ttl`.
pub fn insert_options(durability: CouchbaseDurability, expiry: Option<Duration>) -> InsertOptions {
    let mut options = InsertOptions::new();
    options.expiry = expiry;
    options.durability_level = level(durability);
    options
}

/// The options of a CAS-guarded replace: the durability, and the expiry (set again by every
/// write: a TTL counts from the entity's latest change).
pub fn replace_options(durability: CouchbaseDurability, expiry: Option<Duration>, cas: u64) -> ReplaceOptions {
    let mut options = ReplaceOptions::new().cas(cas);
    options.expiry = expiry;
    options.durability_level = level(durability);
    options
}

/// The options of a remove, CAS-guarded when `cas` is given.
pub fn remove_options(durability: CouchbaseDurability, cas: Option<u64>) -> RemoveOptions {
    let mut options = RemoveOptions::new();
    options.cas = cas;
    options.durability_level = level(durability);
    options
}

/// The options of an upsert (the live-collection pointer).
pub fn upsert_options(durability: CouchbaseDurability) -> UpsertOptions {
    let mut options = UpsertOptions::new();
    options.durability_level = level(durability);
    options
}

/// What a durability error means for the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DurabilityError {
    /// The bucket can never give the level: stop with a configuration error.
    Unsatisfiable,
    /// The replicas did not confirm in time; the write may or may not have happened: write the
    /// batch again.
    Ambiguous,
    /// Another durable write of the same document is still being committed: read and fold again.
    InProgress,
}

/// The durability meaning of an SDK error kind, `None` for any other error.
pub(super) fn classify(kind: &ErrorKind) -> Option<DurabilityError> {
    match kind {
        ErrorKind::DurabilityImpossible | ErrorKind::DurabilityLevelNotAvailable => {
            Some(DurabilityError::Unsatisfiable)
        }
        // The SDK's own refusal when the server did not offer synchronous replication.
        ErrorKind::InvalidArgument(arg) if arg.arg() == Some("durability_level") => {
            Some(DurabilityError::Unsatisfiable)
        }
        ErrorKind::DurabilityAmbiguous => Some(DurabilityError::Ambiguous),
        ErrorKind::DurabilityWriteInProgress | ErrorKind::DurableWriteRecommitInProgress => {
            Some(DurabilityError::InProgress)
        }
        _ => None,
    }
}

/// The configuration error of a bucket that cannot give `durability` to `projection`.
pub(super) fn unsatisfiable(projection: &str, keyspace: &str, durability: CouchbaseDurability, error: &str) -> String {
    format!(
        "projection `{projection}` writes with durability = \"{durability}\", which {keyspace} cannot give \
         ({error}): a majority needs the bucket's replicas on enough nodes (1 replica: 2 nodes; 2: 3), and \
         persistence a Couchbase (not ephemeral) bucket. Add replicas or nodes, or set a lower `durability` \
         (\"none\" always works) in [projections.{projection}.couchbase]"
    )
}

#[cfg(test)]
mod tests {
    use couchbase::error::{Error, InvalidArgumentErrorKind};

    use super::*;

    #[test]
    fn every_level_maps_to_the_sdk_and_none_sends_nothing() {
        assert_eq!(level(CouchbaseDurability::None), None);
        assert_eq!(level(CouchbaseDurability::Majority), Some(DurabilityLevel::MAJORITY));
        assert_eq!(
            level(CouchbaseDurability::MajorityAndPersistActive),
            Some(DurabilityLevel::MAJORITY_AND_PERSIST_ACTIVE)
        );
        assert_eq!(level(CouchbaseDurability::PersistToMajority), Some(DurabilityLevel::PERSIST_TO_MAJORITY));
    }

    #[test]
    fn every_write_carries_the_level() {
        let ttl = Some(Duration::from_secs(60));
        for d in CouchbaseDurability::NAMES.iter().filter_map(|n| n.parse::<CouchbaseDurability>().ok()) {
            let insert = insert_options(d, ttl);
            assert_eq!((insert.durability_level, insert.expiry), (level(d), ttl), "{d}");
            let replace = replace_options(d, ttl, 7);
            assert_eq!((replace.durability_level, replace.expiry, replace.cas), (level(d), ttl, Some(7)), "{d}");
            let remove = remove_options(d, Some(9));
            assert_eq!((remove.durability_level, remove.cas), (level(d), Some(9)), "{d}");
            assert_eq!(remove_options(d, None).cas, None);
            assert_eq!(upsert_options(d).durability_level, level(d), "{d}");
        }
        assert_eq!(insert_options(CouchbaseDurability::Majority, None).expiry, None);
    }

    #[test]
    fn a_bucket_that_cannot_give_the_level_is_a_configuration_error() {
        for kind in [ErrorKind::DurabilityImpossible, ErrorKind::DurabilityLevelNotAvailable] {
            assert_eq!(classify(&kind), Some(DurabilityError::Unsatisfiable), "{kind:?}");
        }
        let sdk = ErrorKind::InvalidArgument(InvalidArgumentErrorKind::new(
            Some("durability_level".to_owned()),
            "cannot use synchronous durability when its not enabled",
        ));
        assert_eq!(classify(&sdk), Some(DurabilityError::Unsatisfiable));
        let other = ErrorKind::InvalidArgument(InvalidArgumentErrorKind::new(Some("key".to_owned()), "too long"));
        assert_eq!(classify(&other), None, "other invalid arguments stay per-event refusals");
        assert_eq!(classify(&ErrorKind::DurabilityAmbiguous), Some(DurabilityError::Ambiguous));
        assert_eq!(classify(&ErrorKind::DurabilityWriteInProgress), Some(DurabilityError::InProgress));
        assert_eq!(classify(&ErrorKind::CasMismatch), None);

        let error = Error::new(ErrorKind::DurabilityImpossible).to_string();
        let message = unsatisfiable("user_state", "default._default.users", CouchbaseDurability::Majority, &error);
        assert!(message.starts_with("projection `user_state` writes with durability = \"majority\""), "{message}");
        assert!(message.contains("durability impossible"), "{message}");
        assert!(message.contains("[projections.user_state.couchbase]"), "{message}");
    }
}
