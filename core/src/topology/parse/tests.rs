//! Tests of the walk's names, paths, credential hints and string offsets.

use super::names::{
    display_path, valid_clickhouse_identifier, valid_couchbase_collection, valid_event_type, valid_topic_name,
};
use super::string_offset;
use super::walker::{Secrets, credential_hint};

#[test]
fn names() {
    assert!(valid_topic_name("user_state.dlq"));
    assert!(!valid_topic_name("a b"));
    assert!(!valid_topic_name(".."));
    assert!(valid_event_type("engagement.page_viewed"));
    assert!(!valid_event_type("registered"));
    assert!(!valid_event_type("User.Registered"));
    assert!(!valid_event_type("user..registered"));
    assert!(valid_couchbase_collection("_default"));
    assert!(!valid_couchbase_collection("_system"));
    assert!(valid_clickhouse_identifier("users_current"));
    assert!(!valid_clickhouse_identifier("events; DROP TABLE x"));
}

#[test]
fn paths_print_like_headers() {
    assert_eq!(display_path(&["events", "user.registered", "topic"]), "events.\"user.registered\".topic");
    assert_eq!(display_path(&["projections", "user_state"]), "projections.user_state");
}

#[test]
fn credentials_are_recognised() {
    let hint = |s, k| credential_hint(s, k).unwrap_or_default();
    assert!(hint(Secrets::Connections, "couchbase_password").contains("SLUICE_COUCHBASE_PASSWORD"));
    assert!(hint(Secrets::Connections, "clickhouse_user").contains("SLUICE_CLICKHOUSE_USER"));
    assert!(hint(Secrets::Couchbase, "username").contains("SLUICE_COUCHBASE_USERNAME"));
    assert!(hint(Secrets::ClickHouse, "password").contains("SLUICE_CLICKHOUSE_PASSWORD"));
    assert!(hint(Secrets::Other, "api_token").contains("SLUICE_COUCHBASE_PASSWORD"));
    assert_eq!(credential_hint(Secrets::Other, "users"), None);
    assert_eq!(credential_hint(Secrets::Couchbase, "collection"), None);
}

#[test]
fn offsets_inside_string_literals() {
    let src = r#"id = "user::{x}""#;
    assert_eq!(string_offset(src, 5..16, "user::{x}", 6, 3), 12..15);
    let escaped = r#"id = "user\u003a:{x}""#;
    assert_eq!(string_offset(escaped, 5..21, "user::{x}", 6, 3), 5..21);
}
