//! Reading `[projections.<name>]` (see [`crate::topology::ProjectionConfig`]): sources, events,
//! batching, the dead-letter topic, backpressure, and which sink block (Couchbase or ClickHouse)
//! the projection writes to.

use super::super::diagnostics::Issue;
use super::super::model::{
    BackpressureConfig, ClickHouseSink, CouchbaseSink, DEFAULT_BATCH_SIZE, DEFAULT_LINGER, DEFAULT_MAX_IN_FLIGHT,
    MAX_IN_FLIGHT_LIMIT, ProjectionConfig, SinkConfig, SinkKind,
};
use super::names::{display_path, valid_topic_name};
use super::walker::{Secrets, Table, Walker};

impl Walker<'_> {
    pub(super) fn projection(&mut self, name: &str, t: &mut Table<'_, '_>) -> ProjectionConfig {
        let group = self.string(t, "group").unwrap_or_else(|| format!("sluice.{name}"));
        let sources = self.strings(t, "sources");
        let sources = t.require(self, "sources", sources, "[\"<topic>\"]");
        if sources.as_ref().is_some_and(Vec::is_empty) {
            self.issues.push(Issue::error(
                t.span_of("sources"),
                format!("`{}` is empty: a projection consumes at least one topic", display_path(&t.child("sources"))),
            ));
        }
        let events = self.strings(t, "events");
        if events.as_ref().is_some_and(Vec::is_empty) {
            self.issues.push(
                Issue::error(
                    t.span_of("events"),
                    format!("`{}` is empty: the projection would fold nothing", display_path(&t.child("events"))),
                )
                .hint("leave `events` out to fold every event type of the sources"),
            );
        }
        let kind: Option<SinkKind> = self.choice(t, "sink", SinkKind::NAMES);
        let kind = t.require(self, "sink", kind, "\"couchbase\" or \"clickhouse\"");
        let batch_size = self.uint(t, "batch_size", 1, u64::from(u32::MAX));
        let linger = self.duration(t, "linger", true);
        let max_in_flight = self.uint(t, "max_in_flight", 1, u64::from(MAX_IN_FLIGHT_LIMIT));
        let dlq_topic = self.checked_string(t, "dlq_topic", valid_topic_name, "a Kafka topic name");
        let backpressure = match self.table(t, "backpressure", Secrets::Other) {
            Some(mut b) => {
                let config = self.backpressure(&mut b);
                b.finish(self);
                config
            }
            None => BackpressureConfig::default(),
        };
        let couchbase = self.table(t, "couchbase", Secrets::Couchbase).map(|mut c| {
            let sink = self.couchbase(&mut c);
            c.finish(self);
            sink
        });
        let clickhouse = self.table(t, "clickhouse", Secrets::ClickHouse).map(|mut c| {
            let sink = self.clickhouse(&mut c);
            c.finish(self);
            sink
        });
        let sink = self.sink(t, kind, couchbase, clickhouse);
        ProjectionConfig {
            group,
            sources: sources.unwrap_or_default(),
            events: events.unwrap_or_default(),
            batch_size: batch_size.and_then(|n| u32::try_from(n).ok()).unwrap_or(DEFAULT_BATCH_SIZE),
            linger: linger.unwrap_or(DEFAULT_LINGER),
            max_in_flight: max_in_flight.and_then(|n| u32::try_from(n).ok()).unwrap_or(DEFAULT_MAX_IN_FLIGHT),
            dlq_topic: dlq_topic.unwrap_or_else(|| format!("{name}.dlq")),
            backpressure,
            sink,
        }
    }

    /// Matches `sink = "…"` with the sink blocks present.
    pub(super) fn sink(
        &mut self,
        t: &Table<'_, '_>,
        kind: Option<SinkKind>,
        couchbase: Option<CouchbaseSink>,
        clickhouse: Option<ClickHouseSink>,
    ) -> SinkConfig {
        let stray = |w: &mut Self, block: &str, kind: SinkKind| {
            w.issues.push(
                Issue::error(
                    t.span_of(block),
                    format!("[{}] given, but the projection's sink is \"{kind}\"", display_path(&t.child(block))),
                )
                .hint(format!("remove the block, or set `sink = \"{block}\"`")),
            );
        };
        let missing = |w: &mut Self, kind: SinkKind| {
            w.issues.push(
                Issue::error(
                    t.span_of("sink"),
                    format!("`sink = \"{kind}\"` needs a [{}] block", display_path(&t.child(kind.as_str()))),
                )
                .hint(match kind {
                    SinkKind::Couchbase => "add the block with at least `document_id = \"<entity>::{aggregate_id}\"`",
                    SinkKind::ClickHouse => "add the block with at least `table = \"events\"`",
                }),
            );
        };
        match kind {
            Some(SinkKind::Couchbase) => {
                if clickhouse.is_some() {
                    stray(self, "clickhouse", SinkKind::Couchbase);
                }
                match couchbase {
                    Some(couchbase) => SinkConfig::Couchbase { couchbase },
                    None => {
                        missing(self, SinkKind::Couchbase);
                        placeholder_sink()
                    }
                }
            }
            Some(SinkKind::ClickHouse) => {
                if couchbase.is_some() {
                    stray(self, "couchbase", SinkKind::ClickHouse);
                }
                match clickhouse {
                    Some(clickhouse) => SinkConfig::ClickHouse { clickhouse },
                    None => {
                        missing(self, SinkKind::ClickHouse);
                        placeholder_sink()
                    }
                }
            }
            // `sink` is wrong or missing (reported): keep a block, if any, for the cross-checks.
            None => match (couchbase, clickhouse) {
                (Some(couchbase), _) => SinkConfig::Couchbase { couchbase },
                (None, Some(clickhouse)) => SinkConfig::ClickHouse { clickhouse },
                (None, None) => placeholder_sink(),
            },
        }
    }

    pub(super) fn backpressure(&mut self, t: &mut Table<'_, '_>) -> BackpressureConfig {
        let soft_lag = self.uint(t, "soft_lag", 1, u64::MAX);
        let hard_lag = self.uint(t, "hard_lag", 1, u64::MAX);
        let soft_lag_age = self.duration(t, "soft_lag_age", false);
        let hard_lag_age = self.duration(t, "hard_lag_age", false);
        let critical_events = self.strings(t, "critical_events").unwrap_or_default();
        let mut ordered = |soft: &'static str, hard: &'static str, pair: Option<(String, String)>| {
            if let Some((s, h)) = pair {
                self.issues.push(
                    Issue::error(t.span_of(hard), format!("`{hard}` ({h}) must be above `{soft}` ({s})"))
                        .hint("past the soft threshold intake slows down; past the hard one it refuses events"),
                );
            }
        };
        ordered(
            "soft_lag",
            "hard_lag",
            soft_lag.zip(hard_lag).filter(|(s, h)| s >= h).map(|(s, h)| (s.to_string(), h.to_string())),
        );
        ordered(
            "soft_lag_age",
            "hard_lag_age",
            soft_lag_age.zip(hard_lag_age).filter(|(s, h)| s >= h).map(|(s, h)| (s.to_string(), h.to_string())),
        );
        BackpressureConfig { soft_lag, hard_lag, soft_lag_age, hard_lag_age, critical_events }
    }
}

/// A sink standing in for a missing one; never leaves the module's callers (an issue is filed).
fn placeholder_sink() -> SinkConfig {
    SinkConfig::ClickHouse { clickhouse: ClickHouseSink::new(String::new()) }
}
