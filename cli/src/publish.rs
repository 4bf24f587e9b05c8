//! `sluice publish`: JSON-lines events from a file or stdin onto their Kafka topics.
//!
//! A reader thread reads lines (a bounded channel between it and the publishing loop, so a
//! fast file never runs ahead of Kafka). Each line is one event object; its `event_type` (or
//! `--event-type`) picks the schema, the envelope defaults are filled in, and the
//! [`Publisher`] validates, encodes and queues it. Up to `--max-in-flight` events await their
//! acknowledgements at once; every one is awaited before the summary. Bad lines are reported on
//! stderr with their line number and counted; the summary goes to stdout.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::Value as Json;
use sluice_producers::{PublishError, Publisher, PublisherOptions, fill_envelope_defaults};
use tokio::sync::mpsc;

use crate::table::print_table;
use crate::{Context, GlobalArgs};

/// The envelope `producer` of events that do not name one.
const PRODUCER: &str = "sluice-cli";
/// Delivery failures printed one by one; the rest are counted.
const SHOWN_DELIVERY_FAILURES: u64 = 100;

#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    /// A JSON-lines file: one event object per line. Standard input when absent or `-`.
    #[arg(long, short, value_name = "PATH")]
    file: Option<PathBuf>,

    /// The event type of lines without an `event_type` field (a line whose field names another
    /// type is rejected).
    #[arg(long, value_name = "TYPE")]
    event_type: Option<String>,

    /// Stop reading at the first bad line (events before it are still published). By default bad
    /// lines are reported, counted, and the run goes on.
    #[arg(long)]
    stop_on_error: bool,

    /// Most events awaiting Kafka's acknowledgement at once.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_in_flight: usize,
}

/// A line turned into an event: its type and the JSON to publish.
#[derive(Debug, PartialEq)]
struct LineEvent {
    event_type: String,
    event: Json,
}

/// Why a line is not an event (before the schema is even looked at).
#[derive(Debug, PartialEq)]
struct LineError {
    /// The event type, when the line names one (for the per-type counts).
    event_type: Option<String>,
    message: String,
}

/// Parses one line and fills the envelope defaults (pure apart from the new id and the clock).
fn parse_line(bytes: &[u8], default_type: Option<&str>) -> Result<LineEvent, LineError> {
    let fail = |event_type: Option<String>, message: String| LineError { event_type, message };
    let json: Json = serde_json::from_slice(bytes).map_err(|e| fail(None, format!("not JSON: {e}")))?;
    let Json::Object(mut event) = json else {
        return Err(fail(None, format!("$: expected an event object, found {}", kind(&json))));
    };
    let event_type = match (event.get("event_type"), default_type) {
        (Some(Json::String(t)), Some(d)) if t != d => {
            return Err(fail(Some(t.clone()), format!("$.event_type: the line says {t:?} but --event-type is {d:?}")));
        }
        (Some(Json::String(t)), _) => t.clone(),
        (None | Some(Json::Null), Some(d)) => {
            event.insert("event_type".to_owned(), Json::String(d.to_owned()));
            d.to_owned()
        }
        (None | Some(Json::Null), None) => {
            return Err(fail(None, "$: no event_type field (add one, or pass --event-type)".to_owned()));
        }
        (Some(other), _) => {
            return Err(fail(None, format!("$.event_type: expected string, found {}", kind(other))));
        }
    };
    fill_envelope_defaults(&mut event, PRODUCER);
    Ok(LineEvent { event_type, event: Json::Object(event) })
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// True for errors about the event itself; the others (registry, Kafka, configuration) would
/// fail every following line the same way, so they stop the run.
fn is_about_the_event(e: &PublishError) -> bool {
    matches!(
        e,
        PublishError::UnknownEventType { .. }
            | PublishError::EventTypeMismatch { .. }
            | PublishError::Invalid(_)
            | PublishError::Payload(_)
            | PublishError::Encode(_)
    )
}

/// Counts per event type.
#[derive(Debug, Default)]
struct Counts {
    published: u64,
    rejected: u64,
    failed: u64,
}

#[derive(Debug, Default)]
struct Tally {
    by_type: BTreeMap<String, Counts>,
    published: u64,
    rejected: u64,
    failed: u64,
    blank: u64,
}

impl Tally {
    fn of(&mut self, event_type: Option<&str>) -> &mut Counts {
        self.by_type.entry(event_type.unwrap_or("(none)").to_owned()).or_default()
    }

    fn reject(&mut self, line: u64, event_type: Option<&str>, message: &str) {
        eprintln!("line {line}: {message}");
        self.rejected += 1;
        self.of(event_type).rejected += 1;
    }
}

pub(crate) async fn run(global: &GlobalArgs, args: PublishArgs) -> anyhow::Result<ExitCode> {
    let mut ctx = Context::load(global)?;
    let topology = Arc::new(ctx.topology.take().context("no topology loaded")?);
    let max_in_flight = args.max_in_flight.max(1);
    let publisher = Publisher::new(topology, &ctx.connections, PublisherOptions::new(PRODUCER))?;

    let input: Box<dyn Read + Send> = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            Box::new(std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
        }
        _ => Box::new(std::io::stdin()),
    };
    let (lines_tx, mut lines_rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(4096);
    // A plain thread, not `spawn_blocking`: when the run stops early it may be blocked reading
    // stdin, and the runtime's shutdown would wait for it; a detached thread ends with the process.
    let reader = std::thread::spawn(move || read_lines(input, &lines_tx));

    let started = Instant::now();
    let mut tally = Tally::default();
    let mut in_flight = FuturesUnordered::new();
    let mut line_no: u64 = 0;
    let mut stopped: Option<String> = None;
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    progress.tick().await;
    let mut reading = true;

    let settle = |tally: &mut Tally, (line, event_type, result): (u64, String, Result<_, PublishError>)| match result {
        Ok(_) => {
            tally.published += 1;
            tally.of(Some(&event_type)).published += 1;
        }
        Err(e) => {
            tally.failed += 1;
            tally.of(Some(&event_type)).failed += 1;
            if tally.failed <= SHOWN_DELIVERY_FAILURES {
                eprintln!("line {line}: delivery failed: {e}");
            } else if tally.failed == SHOWN_DELIVERY_FAILURES + 1 {
                eprintln!("(further delivery failures are counted, not shown)");
            }
        }
    };

    while reading || !in_flight.is_empty() {
        if in_flight.len() >= max_in_flight {
            if let Some(done) = in_flight.next().await {
                settle(&mut tally, done);
            }
            continue;
        }
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => settle(&mut tally, done),
            _ = progress.tick() => {
                let rate = tally.published as f64 / started.elapsed().as_secs_f64().max(1e-3);
                eprintln!(
                    "… {line_no} lines, {} published, {} rejected, {} in flight ({rate:.0} events/s)",
                    tally.published, tally.rejected, in_flight.len()
                );
            }
            line = lines_rx.recv(), if reading => {
                let Some(line) = line else {
                    reading = false;
                    continue;
                };
                line_no += 1;
                let line = match line {
                    Ok(line) => line,
                    Err(e) => {
                        stopped = Some(format!("stopped at line {line_no}: cannot read the input: {e}"));
                        reading = false;
                        continue;
                    }
                };
                if line.iter().all(u8::is_ascii_whitespace) {
                    tally.blank += 1;
                    continue;
                }
                let parsed = parse_line(&line, args.event_type.as_deref());
                let bad = match parsed {
                    Err(e) => Some((e.event_type, e.message)),
                    Ok(LineEvent { event_type, event }) => match publisher.enqueue_json(&event_type, &event).await {
                        Ok(pending) => {
                            let line = line_no;
                            in_flight.push(async move { (line, event_type, pending.await) });
                            None
                        }
                        Err(e) if is_about_the_event(&e) => Some((Some(event_type), e.to_string())),
                        Err(e) => {
                            stopped = Some(format!("stopped at line {line_no}: {e}"));
                            reading = false;
                            None
                        }
                    },
                };
                if let Some((event_type, message)) = bad {
                    tally.reject(line_no, event_type.as_deref(), &message);
                    if args.stop_on_error {
                        stopped = Some(format!("stopped at line {line_no} (--stop-on-error)"));
                        reading = false;
                    }
                }
            }
        }
    }
    if stopped.is_none() {
        // The channel closed, so the reader has returned (or panicked: then lines may be missing,
        // which must not pass for the end of the input).
        if reader.join().is_err() {
            stopped = Some(format!("stopped after line {line_no}: the input reader failed"));
        }
    }

    let elapsed = started.elapsed();
    let rate = tally.published as f64 / elapsed.as_secs_f64().max(1e-3);
    let rows: Vec<Vec<String>> = tally
        .by_type
        .iter()
        .map(|(t, c)| vec![t.clone(), c.published.to_string(), c.rejected.to_string(), c.failed.to_string()])
        .collect();
    if !rows.is_empty() {
        print_table(&["EVENT TYPE", "PUBLISHED", "REJECTED", "FAILED"], &rows);
    }
    if let Some(why) = &stopped {
        println!("{why}");
    }
    let blank = if tally.blank > 0 { format!(" ({} blank lines ignored)", tally.blank) } else { String::new() };
    let failed = if tally.failed > 0 { format!(", delivery failed {}", tally.failed) } else { String::new() };
    println!(
        "published {}, rejected {}{failed} in {:.2}s ({rate:.0} events/s){blank}",
        tally.published,
        tally.rejected,
        elapsed.as_secs_f64()
    );
    Ok(if tally.rejected + tally.failed > 0 || stopped.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Sends each line (without its line break) until the input ends or the receiver is gone.
fn read_lines(input: Box<dyn Read + Send>, tx: &mpsc::Sender<std::io::Result<Vec<u8>>>) {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if tx.blocking_send(Ok(line)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_becomes_an_event_with_envelope_defaults() {
        let line = br#"{"event_type": "user.deleted", "aggregate_id": "u-1", "aggregate_version": 2}"#;
        let parsed = parse_line(line, None).expect("event");
        assert_eq!(parsed.event_type, "user.deleted");
        assert_eq!(parsed.event["producer"], PRODUCER);
        assert!(parsed.event["event_id"].is_string() && parsed.event["occurred_at"].is_i64());

        let typed = parse_line(br#"{"aggregate_id": "u-1"}"#, Some("user.deleted")).expect("event");
        assert_eq!(typed.event["event_type"], "user.deleted", "--event-type fills the field");
    }

    #[test]
    fn bad_lines_say_why() {
        let err = |line: &[u8], default: Option<&str>| parse_line(line, default).expect_err("bad line").message;
        assert!(err(b"{not json", None).starts_with("not JSON: "));
        assert_eq!(err(b"[1]", None), "$: expected an event object, found array");
        assert_eq!(err(b"{}", None), "$: no event_type field (add one, or pass --event-type)");
        assert_eq!(err(br#"{"event_type": 3}"#, None), "$.event_type: expected string, found number");
        assert_eq!(
            err(br#"{"event_type": "a.b"}"#, Some("c.d")),
            r#"$.event_type: the line says "a.b" but --event-type is "c.d""#
        );
    }
}
