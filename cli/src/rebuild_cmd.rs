//! `sluice rebuild --projection P [--abort | --drop-old | --key K]`: blue/green rebuilds of a
//! projection, and single-aggregate repairs.
//!
//! The decisions are `sluice_core::rebuild`'s (state machine, targets, key → partition); this
//! module carries them out with `sluice_consumers::rebuild` and saves the state after every
//! transition, so the same command run again resumes wherever the last one stopped:
//!
//! 1. **planned** — the new generation, its consumer group (`<group>.rebuild.v<n>`) and the target
//!    (every source partition's high watermark now) are stored before anything is created.
//! 2. **building** — the new version is created next to the live one and the history up to the
//!    target is projected into it, committed to the rebuild's group after every batch.
//! 3. **caught-up** — catch-up passes take in what arrived meanwhile (up to the then-current high
//!    watermarks) until a pass finds little new; then the **swap**: ClickHouse tables exchanged
//!    (or renamed) in one statement, or the Couchbase pointer document rewritten. Readers and the
//!    running live worker use the new version from then on, without a restart.
//! 4. Right after the swap a last pass projects, into the now-live version, everything up to the
//!    high watermarks read *after* the swap: records the live worker wrote to the old version just
//!    before the swap are in the new one too. Only then is **swapped** stored (a crash before that
//!    redoes the pass; the swap itself is detected as done).
//! 5. `--drop-old` removes the old version; `--abort` (before the swap) the partial new one.
//!
//! Why the state lives in a compacted Kafka topic: see `sluice_consumers::rebuild::state`.

use std::process::ExitCode;

use anyhow::Context as _;
use sluice_consumers::decode::Decoder;
use sluice_consumers::rebuild::runner::{self, Bounded, Summary};
use sluice_consumers::rebuild::target::{Storage, couchbase_place};
use sluice_consumers::rebuild::{RebuildError, state};
use sluice_consumers::replay::source_offsets;
use sluice_consumers::sinks::clickhouse::ClickHouse;
use sluice_consumers::sinks::couchbase::service::{KV_TIMEOUT, deadline};
use sluice_consumers::sinks::couchbase::{Couchbase, pointer};
use sluice_consumers::sinks::couchbase::{durability, request_builder};
use sluice_core::connections::KafkaConnection;
use sluice_core::rebuild::{
    Command, Phase, RebuildState, Span, Step, catch_up, decide, partition_of_key, ready_to_swap, remaining, start,
    total,
};
use sluice_core::topology::{ProjectionConfig, SinkConfig};
use tokio_util::sync::CancellationToken;

use crate::Context;
use crate::reproject::{self, Bars, Version};

/// Options of `sluice rebuild`.
#[derive(Debug, clap::Args)]
#[command(after_help = "A rebuild never stops the live projection: keep its `sluice work` processes \
                        running. It needs room for a second copy of the projection until --drop-old.\n\n\
                        Examples:\n  \
                        sluice rebuild -p analytics                # build v2, catch up, swap (resumes if interrupted)\n  \
                        sluice rebuild -p analytics --drop-old     # then remove the old version\n  \
                        sluice rebuild -p analytics --abort        # or, before the swap, give up\n  \
                        sluice rebuild -p user_state --key u-42    # repair one aggregate's document\n\n\
                        The state of each projection's rebuild is kept in the Kafka topic `sluice.rebuilds`; \
                        `--status` prints it.")]
pub(crate) struct RebuildArgs {
    /// The projection to rebuild (a `[projections.<name>]` of the topology).
    #[arg(long, short)]
    pub(crate) projection: String,

    /// Remove the partial new version of a rebuild that has not swapped; the live one is untouched.
    #[arg(long, conflicts_with_all = ["drop_old", "key", "status"])]
    abort: bool,

    /// After a swap: remove the old version.
    #[arg(long, conflicts_with_all = ["key", "status"])]
    drop_old: bool,

    /// Re-project only this aggregate (its Kafka key) into the live version, to repair it: its
    /// Couchbase document is removed and folded again from every retained event; its ClickHouse
    /// rows are inserted again (the newest insert wins when rows collapse). Nothing else changes.
    #[arg(long, value_name = "KEY", conflicts_with = "status")]
    key: Option<String>,

    /// With --key: scan every partition, not only the one the key hashes to (for events that
    /// producers other than sluice's partitioned differently).
    #[arg(long, requires = "key")]
    all_partitions: bool,

    /// Print the stored state of the projection's last rebuild and exit.
    #[arg(long)]
    status: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Everything a rebuild step needs.
struct Run<'a> {
    ctx: &'a Context,
    name: &'a str,
    projection: &'a ProjectionConfig,
    storage: Storage,
    decoder: Decoder,
    token: CancellationToken,
}

pub(crate) async fn run(ctx: &Context, args: RebuildArgs) -> anyhow::Result<ExitCode> {
    let topology = ctx.topology()?;
    let name = args.projection.as_str();
    let projection = topology.projection(name).with_context(|| {
        let known: Vec<&str> = topology.projections().map(|(n, _)| n).collect();
        format!("no projection {name:?} in the topology (known: {})", known.join(", "))
    })?;
    let kafka = &ctx.connections.kafka;
    let token = CancellationToken::new();
    crate::work::cancel_on_signals(token.clone());
    let decoder = crate::work::decoder(topology, name, &ctx.connections.registry)?;
    if let Some(key) = &args.key {
        return repair_key(ctx, name, projection, key, args.all_partitions, &decoder, &token).await;
    }
    let stored = state::load(kafka, name).await?;
    if args.status {
        match &stored {
            None => println!("projection {name} was never rebuilt"),
            Some(s) => println!("{}", serde_json::to_string_pretty(s)?),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let command = if args.abort {
        Command::Abort
    } else if args.drop_old {
        Command::DropOld
    } else {
        Command::Run
    };
    let step = decide(name, stored.as_ref(), command)?;
    let storage = match &projection.sink {
        SinkConfig::ClickHouse { clickhouse } => Storage::ClickHouse {
            server: ClickHouse::connect(&ctx.connections.clickhouse).await?,
            database: clickhouse.database.clone().unwrap_or_else(|| ctx.connections.clickhouse.database.clone()),
            config: clickhouse.clone(),
        },
        SinkConfig::Couchbase { couchbase } => {
            Storage::couchbase(Couchbase::connect(&ctx.connections.couchbase).await?, name, couchbase).await?
        }
    };
    let run = Run { ctx, name, projection, storage, decoder, token };
    let mut st = match (step, stored) {
        (Step::Start { live, last }, _) => {
            let offsets = source_offsets(kafka, &projection.group, &projection.sources).await?;
            let st = start(name, &projection.group, live, last, &offsets, now_ms());
            println!(
                "planned: rebuilding {name} into {} ({}) with consumer group {}, up to the current end of \
                 {} partition(s): {} event(s); live stays {} until the swap",
                st.building,
                run.storage.describe(st.building, false),
                st.group,
                st.targets.len(),
                total(&st.targets),
                st.live
            );
            state::save(kafka, &st).await?;
            st
        }
        (_, None) => anyhow::bail!("the stored rebuild state of {name} vanished; run the command again"),
        (Step::Resume, Some(st)) => {
            println!("resuming the rebuild of {name} into {} ({})", st.building, st.phase);
            st
        }
        (Step::Abort, Some(mut st)) => {
            println!("{}", run.storage.drop_version(st.building).await?);
            if let Err(e) = state::delete_group(kafka, &st.group).await {
                tracing::warn!(error = %e, "the rebuild's consumer group was not deleted");
            }
            st.advance(Phase::Aborted, now_ms())?;
            state::save(kafka, &st).await?;
            println!("aborted: the rebuild of {name} into {} is removed; live {} untouched", st.building, st.live);
            return Ok(ExitCode::SUCCESS);
        }
        (Step::DropOld, Some(mut st)) => {
            println!("{}", run.storage.drop_version(st.live).await?);
            st.advance(Phase::OldDropped, now_ms())?;
            state::save(kafka, &st).await?;
            println!("old version {} of {name} dropped; live is {}", st.live, st.building);
            return Ok(ExitCode::SUCCESS);
        }
    };
    let mut total_summary = Summary::default();
    match run.resume(&mut st, &mut total_summary).await {
        Ok(()) => {
            println!("summary: {}", reproject::summary(&total_summary));
            println!(
                "swapped: {name} now reads {}; the old version {} is kept — remove it with `sluice rebuild \
                 --projection {name} --drop-old`",
                st.building, st.live
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(RebuildError::Cancelled) => {
            println!("summary: {}", reproject::summary(&total_summary));
            anyhow::bail!("stopped while {}: run `sluice rebuild --projection {name}` to resume, or --abort", st.phase)
        }
        Err(e) => Err(e.into()),
    }
}

impl Run<'_> {
    fn kafka(&self) -> &KafkaConnection {
        &self.ctx.connections.kafka
    }

    async fn save(&self, st: &mut RebuildState, phase: Phase) -> Result<(), RebuildError> {
        st.advance(phase, now_ms())?;
        state::save(self.kafka(), st).await
    }

    /// Carries the rebuild from its stored phase to swapped.
    async fn resume(&self, st: &mut RebuildState, sum: &mut Summary) -> Result<(), RebuildError> {
        if st.phase == Phase::Planned {
            for line in self.storage.create(st.building).await? {
                println!("{line}");
            }
            self.save(st, Phase::Building).await?;
        }
        if st.phase == Phase::Building {
            let offsets = source_offsets(self.kafka(), &st.group, &self.projection.sources).await.map_err(replay)?;
            let left = remaining(&st.targets, &offsets);
            *sum += self.pass(st, &left, false, &format!("building {} {}", self.name, st.building)).await?;
            self.save(st, Phase::CaughtUp).await?;
        }
        if st.phase == Phase::CaughtUp {
            // A swap interrupted after it took effect: the new version is live already.
            if !self.storage.is_live(st.building).await? {
                let mut passes = 0;
                loop {
                    passes += 1;
                    let offsets =
                        source_offsets(self.kafka(), &st.group, &self.projection.sources).await.map_err(replay)?;
                    let pass =
                        self.pass(st, &catch_up(&offsets), false, &format!("catching up {}", st.building)).await?;
                    *sum += pass;
                    if ready_to_swap(pass.read, passes) {
                        break;
                    }
                }
                let how = self.storage.swap(st.live, st.building).await?;
                println!("swap ({how}): {} is live", self.storage.describe(st.building, true));
            }
            let offsets = source_offsets(self.kafka(), &st.group, &self.projection.sources).await.map_err(replay)?;
            *sum += self.pass(st, &catch_up(&offsets), true, &format!("after the swap, {}", st.building)).await?;
            self.save(st, Phase::Swapped).await?;
            if let Err(e) = state::delete_group(self.kafka(), &st.group).await {
                tracing::warn!(error = %e, "the finished rebuild's consumer group was not deleted");
            }
        }
        Ok(())
    }

    /// One bounded run over `spans` into the new version (`live`: it was swapped in already).
    async fn pass(&self, st: &RebuildState, spans: &[Span], live: bool, what: &str) -> Result<Summary, RebuildError> {
        let prefix = format!("rebuild-{}:", st.building);
        let version = match (&self.projection.sink, live) {
            (SinkConfig::Couchbase { couchbase }, _) => {
                Version::Collection(couchbase_place(self.name, couchbase, st.building).1)
            }
            (SinkConfig::ClickHouse { .. }, true) => Version::Live(prefix),
            (SinkConfig::ClickHouse { .. }, false) => Version::Suffixed(st.building.suffix(), prefix),
        };
        let sink = reproject::sink(self.ctx, self.name, self.projection, &version).await.map_err(|e| {
            RebuildError::Sink { sink: self.projection.sink.kind().as_str(), message: format!("{e:#}") }
        })?;
        let cfg = Bounded {
            projection: self.name.to_owned(),
            kafka: self.kafka().clone(),
            group: Some(st.group.clone()),
            dlq_topic: self.projection.dlq_topic.clone(),
            spans: spans.to_vec(),
            key: None,
            max_batch: sluice_consumers::sink::Batching::of(self.projection).max_records,
            // Test failpoint, debug builds only (the integration tests run the debug binary).
            #[cfg(debug_assertions)]
            crash_after_batches: sluice_consumers::failpoint::crash_after_batches(),
        };
        let bars = Bars::new(what, spans);
        let result = runner::run(&cfg, &sink, &self.decoder, &bars, &self.token).await;
        bars.finish();
        let summary = result?;
        if self.token.is_cancelled() {
            return Err(RebuildError::Cancelled);
        }
        Ok(summary)
    }
}

fn replay(e: sluice_consumers::replay::ReplayError) -> RebuildError {
    RebuildError::State(e.to_string())
}

/// `--key`: re-projects one aggregate into the live version.
async fn repair_key(
    ctx: &Context,
    name: &str,
    projection: &ProjectionConfig,
    key: &str,
    all_partitions: bool,
    decoder: &Decoder,
    token: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let kafka = &ctx.connections.kafka;
    let offsets = source_offsets(kafka, &projection.group, &projection.sources).await?;
    let spans: Vec<Span> =
        projection
            .sources
            .iter()
            .flat_map(|topic| {
                let count = offsets.iter().filter(|p| &p.topic == topic).count() as u32;
                let home = partition_of_key(key.as_bytes(), count);
                offsets
                    .iter()
                    .filter(move |p| &p.topic == topic && (all_partitions || p.partition == home))
                    .map(|p| Span { topic: p.topic.clone(), partition: p.partition, start: p.low, end: p.high })
            })
            .collect();
    for s in &spans {
        println!("scanning {}:{} offsets {}..{} for key {key:?}", s.topic, s.partition, s.start, s.end);
    }
    if let SinkConfig::Couchbase { couchbase } = &projection.sink {
        // The documents the key's events fold into are removed first: a corrupt document whose
        // bookkeeping claims the latest version would otherwise make every event a duplicate.
        let cb = Couchbase::connect(&ctx.connections.couchbase).await?;
        let bucket = cb.open_bucket(couchbase.bucket.as_deref()).await?;
        let live = pointer::live(&bucket, name, couchbase).await?;
        let collection = bucket.scope(&live.scope).collection(&live.collection);
        let ids = document_ids(ctx, name, projection, &spans, key, decoder, token).await?;
        for id in &ids {
            for doc in [id.clone(), request_builder::tombstone_id(id)] {
                let options = durability::remove_options(couchbase.durability, None);
                match deadline("remove", KV_TIMEOUT, collection.remove(&doc, options)).await {
                    Ok(_) => println!("removed {doc} from {}.{}", live.scope, live.collection),
                    Err(sluice_consumers::sinks::couchbase::Error::Couchbase { source, .. })
                        if *source.kind() == couchbase::error::ErrorKind::DocumentNotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("removing {doc} (projection {name}, durability = \"{}\")", couchbase.durability)
                        });
                    }
                }
            }
        }
    }
    let sink =
        reproject::sink(ctx, name, projection, &Version::Live(format!("repair-{}:", uuid::Uuid::new_v4().simple())))
            .await?;
    let cfg = bounded_for_key(ctx, name, projection, &spans, key);
    let bars = Bars::new(&format!("re-projecting {key}"), &spans);
    let result = runner::run(&cfg, &sink, decoder, &bars, token).await;
    bars.finish();
    let summary = result?;
    println!("repaired {key}: {}", reproject::summary(&summary));
    Ok(ExitCode::SUCCESS)
}

fn bounded_for_key(ctx: &Context, name: &str, projection: &ProjectionConfig, spans: &[Span], key: &str) -> Bounded {
    Bounded {
        projection: name.to_owned(),
        kafka: ctx.connections.kafka.clone(),
        group: None,
        dlq_topic: projection.dlq_topic.clone(),
        spans: spans.to_vec(),
        key: Some(key.as_bytes().to_vec()),
        max_batch: sluice_consumers::sink::Batching::of(projection).max_records,
        #[cfg(debug_assertions)]
        crash_after_batches: None,
    }
}

/// The Couchbase document ids the events of `key` fold into (read, not written).
async fn document_ids(
    ctx: &Context,
    name: &str,
    projection: &ProjectionConfig,
    spans: &[Span],
    key: &str,
    decoder: &Decoder,
    token: &CancellationToken,
) -> anyhow::Result<Vec<String>> {
    let SinkConfig::Couchbase { couchbase } = &projection.sink else { return Ok(Vec::new()) };
    let collect = Collect { config: couchbase.clone(), ids: std::sync::Mutex::default() };
    let cfg = bounded_for_key(ctx, name, projection, spans, key);
    runner::run(&cfg, &collect, decoder, &runner::NoProgress, token).await?;
    let ids = collect.ids.lock().map(|ids| ids.clone()).unwrap_or_default();
    Ok(ids.into_iter().collect())
}

/// A sink that writes nothing and remembers which documents the events would fold into.
#[derive(Debug)]
struct Collect {
    config: sluice_core::topology::CouchbaseSink,
    ids: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl sluice_consumers::Sink for Collect {
    type Encoded = sluice_consumers::Batch;

    fn kind(&self) -> &'static str {
        "couchbase"
    }

    fn encode(&self, batch: sluice_consumers::Batch) -> sluice_consumers::Batch {
        batch
    }

    async fn write_all(
        &self,
        batches: &[sluice_consumers::Batch],
    ) -> Result<Vec<Vec<sluice_consumers::Rejected>>, sluice_consumers::SinkError> {
        for e in batches.iter().flat_map(|b| &b.events) {
            if let (Ok(change), Ok(mut ids)) = (request_builder::build(&self.config, e), self.ids.lock()) {
                ids.insert(change.document_id);
            }
        }
        Ok(vec![Vec::new(); batches.len()])
    }

    fn batching(&self) -> sluice_consumers::Batching {
        sluice_consumers::Batching {
            max_records: 1000,
            linger: std::time::Duration::from_millis(100),
            max_in_flight: 1,
        }
    }
}
