//! Reading `[connections]` (see [`crate::topology::ConnectionDefaults`]): where the services are,
//! as URLs and names without credentials, which come only from the environment.

use super::super::diagnostics::Issue;
use super::super::model::ConnectionDefaults;
use super::names::{display_path, valid_clickhouse_identifier, valid_couchbase_bucket, valid_kafka_brokers};
use super::walker::{Secrets, Table, Walker, credential_hint};

impl Walker<'_> {
    pub(super) fn connections(&mut self, t: &mut Table<'_, '_>) -> ConnectionDefaults {
        let kafka_brokers = self.checked_string(t, "kafka_brokers", valid_kafka_brokers, "host:port[,host:port…]");
        let schema_registry_url = self.url(t, "schema_registry_url", &["http://", "https://"]);
        let couchbase_connstr = self.url(t, "couchbase_connstr", &["couchbase://", "couchbases://"]);
        let couchbase_bucket =
            self.checked_string(t, "couchbase_bucket", valid_couchbase_bucket, "a Couchbase bucket name");
        let clickhouse_url = self.url(t, "clickhouse_url", &["http://", "https://"]);
        let clickhouse_database = self.checked_string(
            t,
            "clickhouse_database",
            valid_clickhouse_identifier,
            "a ClickHouse identifier (letters, digits, `_`)",
        );
        let clickhouse_cluster = self.checked_string(
            t,
            "clickhouse_cluster",
            valid_clickhouse_identifier,
            "a cluster of the servers' <remote_servers> (letters, digits, `_`)",
        );
        ConnectionDefaults {
            kafka_brokers,
            schema_registry_url,
            couchbase_connstr,
            couchbase_bucket,
            clickhouse_url,
            clickhouse_database,
            clickhouse_cluster,
        }
    }

    /// A URL with one of `schemes`, and no credentials in it.
    pub(super) fn url(&mut self, t: &mut Table<'_, '_>, key: &'static str, schemes: &[&str]) -> Option<String> {
        let url = self.string(t, key)?;
        let path = t.child(key);
        let span = t.span_of(key);
        let Some(rest) = schemes.iter().find_map(|s| url.strip_prefix(s)) else {
            self.spans.forget(&path);
            self.issues.push(Issue::error(
                span,
                format!("`{}` = {url:?} must start with {}", display_path(&path), schemes.join(" or ")),
            ));
            return None;
        };
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.contains('@') {
            self.spans.forget(&path);
            self.issues.push(
                Issue::error(
                    span,
                    format!("`{}` has credentials in it: they never go in the topology file", display_path(&path)),
                )
                .maybe_hint(credential_hint(Secrets::Connections, &format!("{key}_password"))),
            );
            return None;
        }
        Some(url)
    }
}
