//! `min_insync_replicas` of topics (with the implied dead-letter topics') and `durability` of
//! Couchbase projections (and their `on_erase`): defaults, and errors at their line and column.

use super::*;

#[test]
fn min_insync_replicas_defaults_to_two_copies_where_there_are_two() {
    let t = valid(BASE);
    assert_eq!(t.topic("users").map(|t| t.min_insync_replicas), Some(1), "one replica: one copy");
    let three = valid(&base_with("replication_factor = 1", "replication_factor = 3"));
    assert_eq!(three.topic("users").map(|t| (t.replication_factor, t.min_insync_replicas)), Some((3, 2)));
    assert_eq!(three.topic("sessions").map(|t| (t.replication_factor, t.min_insync_replicas)), Some((1, 1)));
    // The implied dead-letter topic is replicated like its sources.
    let dlq = three.topic("user_state.dlq").expect("implied");
    assert_eq!((dlq.replication_factor, dlq.min_insync_replicas), (3, 2));
}

#[test]
fn min_insync_replicas_is_read_and_given_to_the_dead_letter_topic() {
    let text = base_with("replication_factor = 1", "replication_factor = 5\nmin_insync_replicas = 3");
    let t = valid(&text);
    assert_eq!(t.topic("users").map(|t| (t.replication_factor, t.min_insync_replicas)), Some((5, 3)));
    let dlq = t.topic("user_state.dlq").expect("implied");
    assert_eq!((dlq.replication_factor, dlq.min_insync_replicas), (5, 3));
    let one = valid(&base_with("replication_factor = 1", "replication_factor = 3\nmin_insync_replicas = 1"));
    assert_eq!(one.topic("users").map(|t| t.min_insync_replicas), Some(1));
    // Printed with the effective topology, and read back the same.
    let printed = toml::to_string(t.config()).unwrap_or_else(|e| panic!("{e}"));
    assert!(printed.contains("replication_factor = 5\nmin_insync_replicas = 3\n"), "{printed}");
    assert_eq!(valid(&printed).config(), t.config());
}

#[test]
fn min_insync_replicas_above_the_replication_factor_is_refused_where_it_is() {
    let text = base_with("replication_factor = 1", "replication_factor = 1\nmin_insync_replicas = 2");
    assert_eq!(
        error(&text),
        (
            4,
            23,
            "`topics.users.min_insync_replicas` = 2 is more than the 1 replica of `replication_factor`: no write \
             could ever be acknowledged"
                .into(),
            Some("use at most 1, or leave it out for 1 (two copies where there are two)".into())
        )
    );
    let text = base_with("replication_factor = 1", "replication_factor = 3\nmin_insync_replicas = 4");
    let (line, column, message, hint) = error(&text);
    assert_eq!((line, column), (4, 23));
    assert!(message.contains("= 4 is more than the 3 replicas"), "{message}");
    assert_eq!(hint.as_deref(), Some("use at most 3, or leave it out for 2 (two copies where there are two)"));
    let (line, column, message, _) =
        error(&base_with("replication_factor = 1", "replication_factor = 1\nmin_insync_replicas = 0"));
    assert_eq!((line, column), (4, 23));
    assert_eq!(message, "`topics.users.min_insync_replicas` = 0 is out of range: it must be between 1 and 32767");
    let (line, column, message, _) =
        error(&base_with("replication_factor = 1", "replication_factor = 1\nmin_insync_replicas = \"1\""));
    assert_eq!((line, column), (4, 23));
    assert_eq!(message, "`topics.users.min_insync_replicas` must be an integer, not a string");
}

/// The Couchbase block of the test topology's `user_state`.
fn user_state_couchbase(t: &Topology) -> &CouchbaseSink {
    match &t.projection("user_state").expect("declared").sink {
        SinkConfig::Couchbase { couchbase } => couchbase,
        other => panic!("not Couchbase: {other:?}"),
    }
}

#[test]
fn couchbase_durability_defaults_to_none_and_takes_the_sdk_levels() {
    let sink = |t: &Topology| user_state_couchbase(t).durability;
    assert_eq!(sink(&valid(BASE)), CouchbaseDurability::None);
    for (text, level) in [
        ("none", CouchbaseDurability::None),
        ("majority", CouchbaseDurability::Majority),
        ("majority_and_persist_active", CouchbaseDurability::MajorityAndPersistActive),
        ("persist_to_majority", CouchbaseDurability::PersistToMajority),
    ] {
        let t = valid(&base_with(
            "erase_on = [\"user.deleted\"]",
            &format!("erase_on = [\"user.deleted\"]\ndurability = \"{text}\""),
        ));
        assert_eq!(sink(&t), level);
        let printed = toml::to_string(t.config()).unwrap_or_else(|e| panic!("{e}"));
        assert!(printed.contains(&format!("durability = \"{text}\"")), "{printed}");
    }
}

#[test]
fn an_unknown_couchbase_durability_is_refused_with_a_suggestion() {
    let text =
        base_with("erase_on = [\"user.deleted\"]", "erase_on = [\"user.deleted\"]\ndurability = \"persist_majority\"");
    assert_eq!(
        error(&text),
        (
            29,
            14,
            "`projections.user_state.couchbase.durability` = \"persist_majority\" is not one of the allowed values"
                .into(),
            Some("did you mean \"persist_to_majority\"?".into())
        )
    );
    let (_, _, _, hint) =
        error(&base_with("erase_on = [\"user.deleted\"]", "erase_on = [\"user.deleted\"]\ndurability = \"quorum\""));
    assert!(hint.is_some_and(|h| h.contains("majority")), "the hint lists the levels");
}

#[test]
fn on_erase_defaults_to_remove_and_a_misspelling_is_refused_with_a_suggestion() {
    let sink = |t: &Topology| user_state_couchbase(t).on_erase;
    assert_eq!(sink(&valid(BASE)), OnErase::Remove);
    let t =
        valid(&base_with("erase_on = [\"user.deleted\"]", "erase_on = [\"user.deleted\"]\non_erase = \"tombstone\""));
    assert_eq!(sink(&t), OnErase::Tombstone);
    let printed = toml::to_string(t.config()).unwrap_or_else(|e| panic!("{e}"));
    assert!(printed.contains("on_erase = \"tombstone\""), "{printed}");

    let (_, _, message, hint) =
        error(&base_with("erase_on = [\"user.deleted\"]", "erase_on = [\"user.deleted\"]\non_erase = \"tombstones\""));
    assert_eq!(
        message,
        "`projections.user_state.couchbase.on_erase` = \"tombstones\" is not one of the allowed values"
    );
    assert_eq!(hint.as_deref(), Some("did you mean \"tombstone\"?"));
}

#[test]
fn on_erase_without_erase_on_is_a_warning() {
    let t = valid(&base_with("erase_on = [\"user.deleted\"]", "on_erase = \"tombstone\""));
    let messages: Vec<String> = t.warnings().diagnostics().iter().map(|d| d.message.clone()).collect();
    assert_eq!(messages, ["`on_erase` has no effect without `erase_on`: nothing erases a document"]);
    let quiet = valid(&base_with("erase_on = [\"user.deleted\"]", "on_erase = \"remove\""));
    assert!(quiet.warnings().diagnostics().is_empty(), "{}", quiet.warnings());
}
