//! What `sluice replay --to` and `sluice rebuild` share: the projection's sink for a given
//! version, progress bars over a bounded re-projection, and its summary.
//!
//! Progress goes to stderr: bars per partition and overall (events/s, ETA) when stderr is a
//! terminal, a plain log line every few seconds otherwise (CI logs, pipes). stdout keeps only the
//! plan and the summary, for scripts and tests.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_consumers::rebuild::runner::{Progress, Summary};
use sluice_consumers::sink::{Collect, MapEncoded};
use sluice_consumers::sinks::clickhouse::ClickHouseProjection;
use sluice_consumers::sinks::clickhouse::sink::EncodedBatch;
use sluice_consumers::sinks::couchbase::{Couchbase, CouchbaseProjection, LiveProjection};
use sluice_consumers::{Batch, Batching, Encoder, Rejected, Sink, SinkError};
use sluice_core::rebuild::{Span, rate_and_eta, total};
use sluice_core::topology::{CouchbaseSink, ProjectionConfig, SinkConfig};

use crate::Context;

/// The sink a bounded re-projection writes through.
#[derive(Debug)]
pub(crate) enum AnySink {
    /// The live Couchbase collection, following the pointer (replay); with the cluster
    /// connection, which must outlive the sink's bucket handle.
    CouchbaseLive(Box<LiveProjection>, #[allow(dead_code, reason = "held, never read")] Couchbase),
    /// One Couchbase collection (a rebuild's version), with the cluster connection.
    Couchbase(Box<CouchbaseProjection>, #[allow(dead_code, reason = "held, never read")] Couchbase),
    /// ClickHouse tables of one version.
    ClickHouse(Box<ClickHouseProjection>),
}

/// A batch as the sink of an [`AnySink`] encoded it.
#[derive(Debug)]
pub(crate) enum AnyEncoded {
    /// A Couchbase sink's: the events themselves.
    Batch(Batch),
    /// A ClickHouse sink's rows.
    ClickHouse(EncodedBatch),
}

impl Sink for AnySink {
    type Encoded = AnyEncoded;

    fn kind(&self) -> &'static str {
        match self {
            Self::CouchbaseLive(s, _) => s.kind(),
            Self::Couchbase(s, _) => s.kind(),
            Self::ClickHouse(s) => s.kind(),
        }
    }

    fn encode(&self, batch: Batch) -> AnyEncoded {
        match self {
            Self::ClickHouse(s) => AnyEncoded::ClickHouse(s.encode(batch)),
            Self::CouchbaseLive(..) | Self::Couchbase(..) => AnyEncoded::Batch(batch),
        }
    }

    /// ClickHouse's own encoder (rows written as the events are decoded); the events kept for
    /// Couchbase.
    fn encoder<'a>(&'a self, topic: &str, partition: i32, records: usize) -> Box<dyn Encoder<AnyEncoded> + 'a> {
        match self {
            Self::ClickHouse(s) => {
                Box::new(MapEncoded::new(s.encoder(topic, partition, records), AnyEncoded::ClickHouse))
            }
            Self::CouchbaseLive(..) | Self::Couchbase(..) => Collect::boxed(self, topic, partition, records),
        }
    }

    /// Every batch was encoded by this very sink, so each is of its kind.
    async fn write_all(&self, batches: &[AnyEncoded]) -> Result<Vec<Vec<Rejected>>, SinkError> {
        let events = || {
            batches.iter().filter_map(|b| match b {
                AnyEncoded::Batch(b) => Some(b),
                AnyEncoded::ClickHouse(_) => None,
            })
        };
        let rows = batches.iter().filter_map(|b| match b {
            AnyEncoded::ClickHouse(b) => Some(b),
            AnyEncoded::Batch(_) => None,
        });
        match self {
            Self::CouchbaseLive(s, _) => s.write_each(events()).await,
            Self::Couchbase(s, _) => s.write_each(events()).await,
            Self::ClickHouse(s) => s.write_each(rows).await,
        }
    }

    fn batching(&self) -> Batching {
        match self {
            Self::CouchbaseLive(s, _) => s.batching(),
            Self::Couchbase(s, _) => s.batching(),
            Self::ClickHouse(s) => s.batching(),
        }
    }

    fn unchanged(&self) -> Option<u64> {
        match self {
            Self::CouchbaseLive(s, _) => s.unchanged(),
            Self::Couchbase(s, _) => s.unchanged(),
            Self::ClickHouse(s) => s.unchanged(),
        }
    }
}

/// Which version of a projection a sink writes to.
#[derive(Debug, Clone)]
pub(crate) enum Version {
    /// What readers use now (Couchbase: through the pointer; ClickHouse: the topology's names),
    /// with ClickHouse insert tokens prefixed by this (so they never collide with the worker's).
    Live(String),
    /// Couchbase: this collection of the projection's scope.
    Collection(String),
    /// ClickHouse: objects with this suffix, tokens with this prefix.
    Suffixed(String, String),
}

/// The sink of projection `name` writing to `version`.
pub(crate) async fn sink(
    ctx: &Context,
    name: &str,
    projection: &ProjectionConfig,
    version: &Version,
) -> anyhow::Result<AnySink> {
    Ok(match (&projection.sink, version) {
        (SinkConfig::Couchbase { .. }, Version::Live(_)) => {
            let cb = Couchbase::connect(&ctx.connections.couchbase).await?;
            let sink = LiveProjection::from_projection(&cb, name, projection).await?;
            AnySink::CouchbaseLive(Box::new(sink), cb)
        }
        (SinkConfig::Couchbase { couchbase }, Version::Collection(collection)) => {
            let cb = Couchbase::connect(&ctx.connections.couchbase).await?;
            let config = CouchbaseSink { collection: collection.clone(), ..couchbase.clone() };
            let batching = Batching::of(projection);
            let sink = CouchbaseProjection::new(&cb, name, &config, batching).await?;
            AnySink::Couchbase(Box::new(sink), cb)
        }
        (SinkConfig::ClickHouse { .. }, Version::Live(prefix)) => AnySink::ClickHouse(Box::new(
            ClickHouseProjection::connect(&ctx.connections.clickhouse, projection).await?.versioned("", prefix),
        )),
        (SinkConfig::ClickHouse { .. }, Version::Suffixed(suffix, prefix)) => AnySink::ClickHouse(Box::new(
            ClickHouseProjection::connect(&ctx.connections.clickhouse, projection).await?.versioned(suffix, prefix),
        )),
        (sink, version) => anyhow::bail!("a {} projection has no version {version:?}", sink.kind()),
    })
}

/// Seconds between plain progress lines when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// One partition's bar: its span's start and end, how far it got, and its bar on a terminal.
type PartBar = (i64, i64, i64, Option<ProgressBar>);

/// Progress of one bounded run: bars on a terminal, periodic lines otherwise.
pub(crate) struct Bars {
    what: String,
    total: u64,
    started: Instant,
    /// Per partition: (start, end, position, bar).
    parts: Mutex<BTreeMap<(String, i32), PartBar>>,
    overall: Option<ProgressBar>,
    _multi: Option<MultiProgress>,
    last_line: Mutex<Instant>,
}

impl std::fmt::Debug for Bars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bars").field("what", &self.what).field("total", &self.total).finish_non_exhaustive()
    }
}

impl Bars {
    /// Progress over `spans`, titled `what` (e.g. "rebuilding user_state into v2").
    pub(crate) fn new(what: &str, spans: &[Span]) -> Self {
        let total = total(spans);
        let tty = std::io::stderr().is_terminal();
        let multi = tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let style =
            |template: &str| ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        let overall = multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(total));
            bar.set_style(style("{msg:>24} [{bar:40}] {pos}/{len} events, {per_sec}, ETA {eta}"));
            bar.set_message(what.to_owned());
            bar
        });
        let parts = spans
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| {
                let bar = multi.as_ref().map(|m| {
                    let bar = m.add(ProgressBar::new(s.len()));
                    bar.set_style(style("{msg:>24} [{bar:40}] {pos}/{len} {per_sec}, ETA {eta}"));
                    bar.set_message(format!("{}:{}", s.topic, s.partition));
                    bar
                });
                ((s.topic.clone(), s.partition), (s.start, s.end, s.start, bar))
            })
            .collect();
        if !tty {
            eprintln!("{what}: {total} event(s) on {} partition(s)", spans.iter().filter(|s| !s.is_empty()).count());
        }
        Self {
            what: what.to_owned(),
            total,
            started: Instant::now(),
            parts: Mutex::new(parts),
            overall,
            _multi: multi,
            last_line: Mutex::new(Instant::now()),
        }
    }

    /// Ends the bars (they stay on screen).
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.overall {
            bar.finish();
        }
        if let Ok(parts) = self.parts.lock() {
            for (_, _, _, bar) in parts.values() {
                if let Some(bar) = bar {
                    bar.finish();
                }
            }
        }
    }
}

impl Progress for Bars {
    fn advanced(&self, topic: &str, partition: i32, position: i64) {
        let Ok(mut parts) = self.parts.lock() else { return };
        if let Some((start, end, at, bar)) = parts.get_mut(&(topic.to_owned(), partition)) {
            *at = position.clamp(*start, *end);
            if let Some(bar) = bar {
                bar.set_position(u64::try_from(*at - *start).unwrap_or(0));
            }
        }
        let done: u64 = parts.values().map(|(start, _, at, _)| u64::try_from(at - start).unwrap_or(0)).sum();
        drop(parts);
        if let Some(bar) = &self.overall {
            bar.set_position(done);
            return;
        }
        let Ok(mut last) = self.last_line.lock() else { return };
        if last.elapsed() >= LOG_EVERY || done == self.total {
            *last = Instant::now();
            let left = self.total.saturating_sub(done);
            match rate_and_eta(done, left, self.started.elapsed()) {
                Some((rate, eta)) => {
                    eprintln!("{}: {done}/{} events, {rate:.0} events/s, ETA {}s", self.what, self.total, eta.as_secs())
                }
                None => eprintln!("{}: {done}/{} events", self.what, self.total),
            }
        }
    }
}

/// The summary line of a run: `events read N, applied N, skipped as duplicates N, sent to the DLQ N`.
pub(crate) fn summary(s: &Summary) -> String {
    let unchanged = match s.unchanged {
        Some(n) => n.to_string(),
        None => "n/a (ClickHouse collapses duplicates when it merges)".to_owned(),
    };
    let mut line = format!(
        "events read {}, applied {}, skipped as duplicates {unchanged}, sent to the DLQ {}",
        s.read, s.applied, s.dead_lettered
    );
    if s.other_keys > 0 {
        line.push_str(&format!(", other keys passed over {}", s.other_keys));
    }
    line.push_str(&format!(" ({:.1}s)", s.elapsed.as_secs_f64()));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_read_as_sentences() {
        let s = Summary {
            read: 10,
            applied: 8,
            unchanged: Some(3),
            other_keys: 0,
            dead_lettered: 2,
            batches: 1,
            elapsed: Duration::from_millis(1500),
        };
        assert_eq!(summary(&s), "events read 10, applied 8, skipped as duplicates 3, sent to the DLQ 2 (1.5s)");
        let s = Summary { unchanged: None, other_keys: 4, ..s };
        assert_eq!(
            summary(&s),
            "events read 10, applied 8, skipped as duplicates n/a (ClickHouse collapses duplicates when it merges), \
             sent to the DLQ 2, other keys passed over 4 (1.5s)"
        );
    }
}
