//! The worker alone, as a floor under every projection's CPU: the projection's own worker —
//! its consumer, decoder, batching and commits — draining the same backlog with a group of its
//! own into a sink that takes each event and drops it (Vector's `blackhole` sink, for the same
//! purpose). What a projection spends per event beyond this row is its sink's: building what it
//! writes and the client library's I/O. Bench-only: no topology can name this sink.

use std::time::Duration;

use anyhow::Context as _;
use sluice_consumers::{Batch, Batching, Encoder, Rejected, Sink, SinkError};
use sluice_core::event::Event;
use tokio_util::sync::CancellationToken;

use super::{Row, cost};
use crate::Context;
use crate::work::{self, RunOptions};

/// The phase column of the floor's rows.
pub(super) const PHASE: &str = "read-floor";

/// Takes every event and keeps nothing: each batch is acknowledged as soon as it is flushed.
#[derive(Debug)]
struct Blackhole {
    batching: Batching,
}

/// A batch as the blackhole "writes" it: nothing.
#[derive(Debug)]
struct Nothing;

impl Encoder<Nothing> for Nothing {
    fn push(&mut self, event: Event) {
        drop(event);
    }

    fn finish(self: Box<Self>, _first_offset: i64, _last_offset: i64) -> Nothing {
        Nothing
    }
}

impl Sink for Blackhole {
    type Encoded = Nothing;

    fn kind(&self) -> &'static str {
        "blackhole"
    }

    fn encode(&self, batch: Batch) -> Nothing {
        drop(batch);
        Nothing
    }

    fn encoder<'a>(&'a self, _topic: &str, _partition: i32, _records: usize) -> Box<dyn Encoder<Nothing> + 'a> {
        Box::new(Nothing)
    }

    async fn write_all(&self, batches: &[Nothing]) -> Result<Vec<Vec<Rejected>>, SinkError> {
        Ok(batches.iter().map(|_| Vec::new()).collect())
    }

    fn batching(&self) -> Batching {
        self.batching
    }
}

/// Projection `name`'s worker draining its sources from the start into the blackhole, under a
/// consumer group of its own (`<group>-blackhole`): its row, with this process's CPU over it.
pub(super) async fn row(ctx: &Context, name: &str) -> anyhow::Result<Row> {
    let topology = ctx.topology()?;
    let projection = topology.projection(name).with_context(|| format!("no projection {name:?}"))?;
    let opts = RunOptions { drain_deadline: Duration::from_secs(30), ..RunOptions::default() };
    let mut cfg = work::worker_config(ctx, name, projection, &opts);
    cfg.group = format!("{}-blackhole", projection.group);
    let decoder = work::decoder(topology, name, &ctx.connections.registry)?;
    let sink = Blackhole { batching: Batching::of(projection) };
    let meter = cost::Meter::this_process();
    let stats = work::run_with(cfg, sink, decoder, true, CancellationToken::new()).await?;
    Ok(Row {
        cost: meter.finish(),
        ..Row::drained(PHASE.into(), name.to_owned(), "blackhole", stats.projected, stats.active)
    })
}
