//! The bench's table: one row per phase and projection, printed to stdout, with the JSON-only
//! baselines' ratio line, what the floor rows are, and the Couchbase projections' operations.

use super::{BASELINE, Latency, Row, blackhole, kv_floor};

/// The table of `rows` (the isolated copy's `suffix` taken off the names), then how each typed
/// projection's backlog rate compares with its JSON-only baseline, and what each Couchbase
/// projection's drain cost per operation.
pub(super) fn print_rows(rows: &[Row], suffix: &str) {
    print_table(rows, suffix);
    if rows.iter().any(|r| r.phase == blackhole::PHASE) {
        println!(
            "{}: the projection's worker alone (Kafka consumer, decoder, batching, commits) into a \
             sink that drops every event: the floor under its backlog row's CPU",
            blackhole::PHASE
        );
    }
    print_operations(rows, suffix);
    for r in rows.iter().filter(|r| r.phase == "backlog") {
        let baseline = format!("{}{BASELINE}_{suffix}", r.projection.trim_end_matches(&format!("_{suffix}")));
        if let Some(b) = rows.iter().find(|b| b.phase == "backlog" && b.projection == baseline) {
            let name = r.projection.trim_end_matches(&format!("_{suffix}"));
            println!(
                "{name}: typed tables drain at {:.0}% of the JSON-only rate ({:.0} vs {:.0} events/s)",
                100.0 * r.per_sec / b.per_sec.max(1e-9),
                r.per_sec,
                b.per_sec
            );
        }
    }
}

/// Each Couchbase backlog drain's key-value operations per event, and its CPU per operation next
/// to the SDK's alone (the `kv-floor` rows).
fn print_operations(rows: &[Row], suffix: &str) {
    if rows.iter().any(|r| r.phase == kv_floor::PHASE) {
        println!(
            "{}: the Couchbase SDK alone on the projection's collection, {} in flight (EVENTS are \
             operations; CPU ms/1k = CPU µs per operation)",
            kv_floor::PHASE,
            sluice_consumers::sinks::couchbase::sink::MAX_DOCUMENTS_IN_FLIGHT
        );
    }
    for r in rows {
        let Some(operations) = &r.kv_operations else { continue };
        let total: u64 = operations.values().sum();
        let per_event = |n: u64| n as f64 / r.events.max(1) as f64;
        let kinds: Vec<String> =
            operations.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {:.2}", per_event(*n))).collect();
        let cpu = r.cost.map_or(String::new(), |c| {
            format!(", {:.1} CPU µs per operation", c.cpu_seconds * 1e6 / total.max(1) as f64)
        });
        println!(
            "{}: {total} Couchbase operations, {:.2} per event ({}){cpu}",
            r.projection.trim_end_matches(&format!("_{suffix}")),
            per_event(total),
            kinds.join(", ")
        );
    }
}

fn print_table(rows: &[Row], suffix: &str) {
    // The start-up column only when some run was made of worker processes.
    let startup = rows.iter().any(|r| r.startup.is_some());
    let start_column = |v: String| if startup { format!(" {v:>8}") } else { String::new() };
    println!(
        "\n{:<10} {:<16} {:<11} {:>9} {:>10} {:>10} {:>8} {:>7} {:>8} {:>9} {:>9} {:>15} {:>15}{}",
        "PHASE",
        "PROJECTION",
        "SINK",
        "EVENTS",
        "EVENTS/S",
        "CPU ms/1k",
        "RSS MiB",
        "TAIL",
        "UNSEEN",
        "P50 ms",
        "P99 ms",
        "READ p50/p99",
        "WRITE p50/p99",
        start_column("START s".to_owned())
    );
    for r in rows {
        let ms = |v: Option<Latency>| match v {
            None => "-".to_owned(),
            Some(Latency::Ms(v)) => format!("{v:.1}"),
            Some(Latency::AtLeast(d)) => format!(">{}", d.as_millis()),
        };
        let projection = r.projection.trim_end_matches(&format!("_{suffix}"));
        let pair = |v: Option<(f64, f64)>| v.map_or("-".to_owned(), |(a, b)| format!("{a:.0}/{b:.0} ms"));
        let count = |v: Option<u64>| v.map_or("-".to_owned(), |n| n.to_string());
        let unseen = match r.not_visible {
            None => "-".to_owned(),
            Some(None) => "?".to_owned(),
            Some(Some(n)) => n.to_string(),
        };
        let start = match r.startup {
            None => "-".to_owned(),
            Some(None) => "?".to_owned(),
            Some(Some(d)) => format!("{:.2}", d.as_secs_f64()),
        };
        let (cpu, rss) = match r.cost {
            None => ("-".to_owned(), "-".to_owned()),
            Some(c) => (
                format!("{:.1}", c.cpu_ms_per_1k(r.events)),
                format!("{}{:.0}", if c.growth { "+" } else { "" }, c.rss_bytes as f64 / (1 << 20) as f64),
            ),
        };
        println!(
            "{:<10} {:<16} {:<11} {:>9} {:>10.0} {:>10} {:>8} {:>7} {:>8} {:>9} {:>9} {:>15} {:>15}{}",
            r.phase,
            projection,
            r.sink,
            r.events,
            r.per_sec,
            cpu,
            rss,
            count(r.tail),
            unseen,
            ms(r.p50_ms),
            ms(r.p99_ms),
            pair(r.read_ms),
            pair(r.write_ms),
            start_column(start)
        );
    }
    if rows.iter().any(|r| r.cost.is_some()) {
        println!(
            "backlog: CPU ms/1k = CPU milliseconds (user + system) per 1,000 events drained; RSS MiB = \
             peak resident memory of the largest `sluice work` process (×n rows), or +growth of this \
             process over an in-process drain"
        );
    }
    if startup {
        println!(
            "backlog ×n: n `sluice work` processes drain the backlog with a group of their own; \
             EVENTS = records in the projection's sources, EVENTS/S = EVENTS / (spawning the \
             processes → the group committed them all), process start and the group join \
             included; START s = spawning → the group Stable with n members (? = not seen); \
             UNSEEN = records the group had still not committed when the run gave up"
        );
    }
    if rows.iter().any(|r| r.tail.is_some()) {
        println!(
            "steady phase: EVENTS/S = events a projection made visible during the phase / its length; \
             TAIL = made visible after publishing ended (in the latency); UNSEEN = still not visible \
             at the end of --catch-up (counted in the latency as longer than it)"
        );
    }
}
