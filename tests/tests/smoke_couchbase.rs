//! Smoke test of the Couchbase-protocol server through the official SDK: upsert, get with its CAS,
//! replace with the right CAS, and a replace with a stale CAS refused as a CAS mismatch.

use std::time::Duration;

use couchbase::error::ErrorKind;
use couchbase::options::kv_options::ReplaceOptions;
use serde_json::json;
use sluice_consumers::sinks::couchbase::service::deadline;
use sluice_consumers::sinks::couchbase::{Couchbase, Error};
use sluice_tests::{connections, unique};

const OP: Duration = Duration::from_secs(10);

#[tokio::test]
async fn upsert_get_and_optimistic_locking() {
    let cb = Couchbase::connect(&connections().couchbase).await.unwrap_or_else(|e| panic!("{e}"));
    let coll = cb.collection(None, None);
    let key = unique("smoke_user");

    let written = deadline("upsert", OP, coll.upsert(&key, json!({"name": "Ada", "v": 1}), None))
        .await
        .expect("upsert");
    let got = deadline("get", OP, coll.get(&key, None)).await.expect("get");
    assert_eq!(got.cas(), written.cas(), "get returns the CAS of the last write");
    let doc: serde_json::Value = got.content_as().expect("json document");
    assert_eq!(doc, json!({"name": "Ada", "v": 1}));

    let stale = got.cas();
    let replaced = deadline(
        "replace",
        OP,
        coll.replace(&key, json!({"name": "Ada", "v": 2}), ReplaceOptions::new().cas(stale)),
    )
    .await
    .expect("replace with the current CAS");
    assert_ne!(replaced.cas(), stale, "a write changes the CAS");

    let err = deadline(
        "replace",
        OP,
        coll.replace(&key, json!({"name": "Eve", "v": 3}), ReplaceOptions::new().cas(stale)),
    )
    .await
    .expect_err("a stale CAS must be refused");
    match &err {
        Error::Couchbase { source, .. } => {
            assert_eq!(source.kind(), &ErrorKind::CasMismatch, "{err}");
        }
        other => panic!("expected a CAS mismatch, got {other}"),
    }
    let doc: serde_json::Value =
        deadline("get", OP, coll.get(&key, None)).await.expect("get").content_as().expect("json");
    assert_eq!(doc, json!({"name": "Ada", "v": 2}), "the refused write changed nothing");

    deadline("remove", OP, coll.remove(&key, None)).await.expect("remove");
    let missing = deadline("get", OP, coll.get(&key, None)).await.expect_err("removed");
    assert!(
        matches!(&missing, Error::Couchbase { source, .. } if source.kind() == &ErrorKind::DocumentNotFound),
        "{missing}"
    );
}
