//! The worker's Prometheus metrics (`sluice_<what>_<unit>`, labelled by projection and sink).
//!
//! Recorded through the `metrics` facade: whichever recorder the binary installs (the Prometheus
//! exporter of `sluice work --metrics-addr`, or the in-process one of `sluice bench`) sees them;
//! with none installed they cost almost nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use super::health::{AssignedGauge, ReadyGauge};

/// Metric names, so dashboards and the bench refer to one spelling.
pub mod names {
    /// Records read from Kafka.
    pub const CONSUMED: &str = "sluice_events_consumed_total";
    /// Events the sink accepted.
    pub const PROJECTED: &str = "sluice_events_projected_total";
    /// Records sent to the dead-letter topic, by stage and code.
    pub const DEAD_LETTERED: &str = "sluice_dlq_records_total";
    /// Failed attempts to write a dead letter (each is retried).
    pub const DLQ_WRITE_FAILURES: &str = "sluice_dlq_write_failures_total";
    /// Events of a declared type the projection does not fold: acknowledged, nothing written.
    pub const SKIPPED: &str = "sluice_worker_skipped_total";
    /// Events applied although their Kafka key is not their key field (`key_mismatch = "accept"`).
    pub const KEY_MISMATCHES: &str = "sluice_worker_key_mismatches_total";
    /// Events per batch written.
    pub const BATCH_SIZE: &str = "sluice_batch_size_events";
    /// Duration of a successful sink write.
    pub const WRITE_SECONDS: &str = "sluice_sink_write_seconds";
    /// Failed sink writes that are retried.
    pub const WRITE_RETRIES: &str = "sluice_sink_write_retries_total";
    /// Partitions paused: the sink is failing, or the next batch is full while a write is slow.
    pub const PAUSED: &str = "sluice_paused_partitions";
    /// Times the worker paused its partitions, by reason (`sink_failing`, `dlq_unavailable`,
    /// `buffer_full`).
    pub const PAUSES: &str = "sluice_worker_pauses_total";
    /// From an event's `occurred_at` to the sink's acknowledgement: publish → visible when the
    /// publisher stamps `occurred_at` (it does when the event has none).
    pub const VISIBLE_SECONDS: &str = "sluice_event_visible_latency_seconds";
    /// From a record's Kafka timestamp (its publish time, for producers that leave it to the
    /// client) to the worker reading it: the Kafka share of publish → visible.
    pub const READ_SECONDS: &str = "sluice_record_read_latency_seconds";
    /// 1 while the worker projects; 0 while it waits for its sink at start-up or its writes fail.
    pub const READY: &str = "sluice_worker_ready";
    /// Partitions of the projection's consumer group this worker owns now.
    pub const ASSIGNED: &str = "sluice_worker_assigned_partitions";
    /// Key-value operations a Couchbase projection sent, by `operation` (`get`, `insert`,
    /// `replace`, `remove`): per event projected, what a write costs the cluster.
    pub const COUCHBASE_OPERATIONS: &str = "sluice_couchbase_operations_total";
}

/// Bucket bounds of every worker histogram, for the exporter (`PrometheusBuilder::
/// set_buckets_for_metric`): histograms, unlike per-process quantiles, add up across replicas
/// (`histogram_quantile(0.99, sum by (le) (rate(..._bucket[5m])))`).
pub const BUCKETS: [(&str, &[f64]); 4] = [
    // A ClickHouse insert of 50,000 rows takes ~0.3 s on the rig, a Couchbase batch of 500 ~50 ms;
    // past 60 s the write is retried as failed anyway.
    (names::WRITE_SECONDS, &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
    // From the 20 ms a record takes through an idle pipeline to the hours a paused one holds it.
    (names::VISIBLE_SECONDS, LATENCY_BUCKETS),
    (names::READ_SECONDS, LATENCY_BUCKETS),
    // Batch sizes up to the largest `batch_size` the topology allows.
    (
        names::BATCH_SIZE,
        &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0, 50000.0, 100000.0],
    ),
];

/// Seconds from an event's publication to its reading or its visibility in the sink.
const LATENCY_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0];

/// Handles to one worker's metrics.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    pub(crate) consumed: Counter,
    pub(crate) projected: Counter,
    pub(crate) batch_size: Histogram,
    pub(crate) write_seconds: Histogram,
    pub(crate) write_retries: Counter,
    pub(crate) paused: Gauge,
    pub(crate) dlq_write_failures: Counter,
    pub(crate) ready: ReadyGauge,
    pub(crate) assigned: AssignedGauge,
    visible: Histogram,
    read: Histogram,
    projection: String,
}

impl WorkerMetrics {
    /// Registers the metrics of `projection` writing to `sink`.
    pub fn new(projection: &str, sink: &'static str) -> Self {
        describe_counter!(names::CONSUMED, "Records read from Kafka.");
        describe_counter!(names::PROJECTED, "Events the sink accepted.");
        describe_counter!(names::DEAD_LETTERED, "Records sent to the dead-letter topic, by stage and code.");
        describe_counter!(names::DLQ_WRITE_FAILURES, "Failed attempts to write a dead letter (retried).");
        describe_counter!(names::SKIPPED, "Events of a type the projection does not fold, acknowledged unwritten.");
        describe_counter!(names::KEY_MISMATCHES, "Events applied although their key is not their key field.");
        describe_histogram!(names::BATCH_SIZE, "Events per batch written to the sink.");
        describe_histogram!(names::WRITE_SECONDS, metrics::Unit::Seconds, "Duration of a successful sink write.");
        describe_counter!(names::WRITE_RETRIES, "Sink writes that failed transiently and were retried.");
        describe_gauge!(names::PAUSED, "Partitions paused: the sink is failing, or the next batch is full.");
        describe_counter!(names::PAUSES, "Times the worker paused its partitions, by reason.");
        describe_gauge!(names::READY, "1 while the worker projects; 0 while it waits for its sink or its writes fail.");
        describe_gauge!(names::ASSIGNED, "Partitions of the consumer group this worker owns.");
        describe_histogram!(
            names::VISIBLE_SECONDS,
            metrics::Unit::Seconds,
            "From an event's occurred_at to the sink's acknowledgement."
        );
        describe_histogram!(
            names::READ_SECONDS,
            metrics::Unit::Seconds,
            "From a record's Kafka timestamp to the worker reading it."
        );
        let p = projection.to_owned();
        Self {
            consumed: counter!(names::CONSUMED, "projection" => p.clone()),
            projected: counter!(names::PROJECTED, "projection" => p.clone(), "sink" => sink),
            batch_size: histogram!(names::BATCH_SIZE, "projection" => p.clone(), "sink" => sink),
            write_seconds: histogram!(names::WRITE_SECONDS, "projection" => p.clone(), "sink" => sink),
            write_retries: counter!(names::WRITE_RETRIES, "projection" => p.clone(), "sink" => sink),
            paused: gauge!(names::PAUSED, "projection" => p.clone()),
            dlq_write_failures: counter!(names::DLQ_WRITE_FAILURES, "projection" => p.clone()),
            ready: ReadyGauge::new(gauge!(names::READY, "projection" => p.clone()), &p),
            assigned: AssignedGauge::new(gauge!(names::ASSIGNED, "projection" => p.clone()), &p),
            visible: histogram!(names::VISIBLE_SECONDS, "projection" => p.clone()),
            read: histogram!(names::READ_SECONDS, "projection" => p.clone()),
            projection: p,
        }
    }

    /// Counts one dead letter of `stage`, refused for `code`.
    pub(crate) fn dead_lettered(&self, stage: &'static str, code: &'static str) {
        counter!(names::DEAD_LETTERED, "projection" => self.projection.clone(), "stage" => stage, "code" => code)
            .increment(1);
    }

    /// Counts one pause of the partitions, and why.
    pub(crate) fn paused_because(&self, reason: &'static str) {
        counter!(names::PAUSES, "projection" => self.projection.clone(), "reason" => reason).increment(1);
    }

    /// Records, for each event just acknowledged, how long ago it occurred (`occurred_at`, ms
    /// since the epoch).
    pub(crate) fn record_visible(&self, occurred_at: &[i64]) {
        let now = now_ms();
        for t in occurred_at {
            self.visible.record((now - t).max(0) as f64 / 1000.0);
        }
    }

    /// Records how long ago a record just read was written to Kafka (`timestamp_ms`, when the
    /// record has one).
    pub(crate) fn record_read(&self, timestamp_ms: Option<i64>) {
        if let Some(ts) = timestamp_ms {
            self.read.record((now_ms() - ts).max(0) as f64 / 1000.0);
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
