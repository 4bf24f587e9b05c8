//! Reading `[topics.<name>]` (see [`crate::topology::TopicConfig`]): partitions, replication
//! (`replication_factor`, `min_insync_replicas`), retention and the envelope field that keys the
//! records.

use super::super::diagnostics::{Issue, suggest};
use super::super::duration::Retention;
use super::super::model::{
    CleanupPolicy, DEFAULT_KEY, KeyMismatchPolicy, SubjectStrategy, TopicConfig, default_min_insync_replicas,
};
use super::super::schema::KEY_FIELDS;
use super::names::display_path;
use super::walker::{Table, Walker};

impl Walker<'_> {
    pub(super) fn topic(&mut self, t: &mut Table<'_, '_>) -> TopicConfig {
        let partitions = self.uint(t, "partitions", 1, 1_000_000);
        let partitions = t.require(self, "partitions", partitions, "3");
        // Kafka stores the replication factor as an int16.
        let replication_factor = self.uint(t, "replication_factor", 1, 32_767);
        let replication_factor = t.require(self, "replication_factor", replication_factor, "1");
        let min_insync_replicas = self.uint(t, "min_insync_replicas", 1, 32_767);
        if let (Some(min), Some(rf)) = (min_insync_replicas, replication_factor)
            && min > rf
        {
            let span = t.span_of("min_insync_replicas");
            self.spans.forget(&t.child("min_insync_replicas"));
            self.issues.push(
                Issue::error(
                    span,
                    format!(
                        "`{}` = {min} is more than the {rf} replica{} of `replication_factor`: no write could \
                         ever be acknowledged",
                        display_path(&t.child("min_insync_replicas")),
                        if rf == 1 { "" } else { "s" }
                    ),
                )
                .hint(format!(
                    "use at most {rf}, or leave it out for {} (two copies where there are two)",
                    default_min_insync_replicas(u16::try_from(rf).unwrap_or(u16::MAX))
                )),
            );
        }
        let cleanup_policy = self.choice(t, "cleanup_policy", CleanupPolicy::NAMES);
        let retention: Option<Retention> = self.parsed_duration(t, "retention");
        if let Some(Retention::For(d)) = retention
            && d.is_zero()
        {
            let span = t.span_of("retention");
            self.issues.push(
                Issue::error(span, format!("`{}` must be longer than zero", display_path(&t.child("retention"))))
                    .hint("write \"forever\" to keep records forever, or leave it out for the broker's default"),
            );
        }
        let key = self.string(t, "key");
        if let Some(k) = &key
            && !KEY_FIELDS.contains(&k.as_str())
        {
            let span = t.span_of("key");
            self.issues.push(
                Issue::error(
                    span,
                    format!("`{}` = {k:?} is not an envelope field that is never null", display_path(&t.child("key"))),
                )
                .maybe_hint(suggest(k, KEY_FIELDS, true)),
            );
        }
        let subject_strategy = self.choice(t, "subject_strategy", SubjectStrategy::NAMES);
        let key_mismatch = self.choice(t, "key_mismatch", KeyMismatchPolicy::NAMES);
        let replication_factor = replication_factor.and_then(|n| u16::try_from(n).ok()).unwrap_or(1);
        TopicConfig {
            partitions: partitions.and_then(|n| u32::try_from(n).ok()).unwrap_or(1),
            replication_factor,
            min_insync_replicas: min_insync_replicas
                .and_then(|n| u16::try_from(n).ok())
                .unwrap_or_else(|| default_min_insync_replicas(replication_factor)),
            cleanup_policy: cleanup_policy.unwrap_or_default(),
            retention,
            key: key.unwrap_or_else(|| DEFAULT_KEY.to_owned()),
            subject_strategy: subject_strategy.unwrap_or_default(),
            key_mismatch: key_mismatch.unwrap_or_default(),
        }
    }
}
