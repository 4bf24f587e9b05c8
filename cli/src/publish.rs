//! `sluice publish`: JSON-lines events from a file or stdin onto their Kafka topics.
//!
//! A reader thread reads lines (a bounded channel between it and the publishing loop, so a
//! fast file never runs ahead of Kafka). Each line is one event object; its `event_type` (or
//! `--event-type`) picks the schema, the envelope defaults are filled in, and the
//! [`Publisher`] validates, encodes and queues it. Up to `--max-in-flight` events await their
//! acknowledgements at once; every one is awaited before the summary.
//!
//! A line is *rejected* when the line itself is the problem: not JSON, a repeated key (the
//! strict parser of [`sluice_core::json`]), no or another event type, a field that does not fit
//! the schema, an `aggregate_id` too long, a record too large for its topic (before sending, or
//! refused by Kafka afterwards), a line longer than `--max-line` (skipped without being held in
//! memory). Each is reported on stderr with its line number and reason, counted, and the run
//! goes on with the next line. Only trouble that would fail every following line the same way
//! (registry or Kafka unavailable, a configuration error) stops the run. The summary goes to
//! stdout; the exit code is 1 when any line was rejected or failed, or the run stopped.

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
use sluice_core::Services;
use sluice_core::avro::json_type;
use sluice_core::consistency::ConsistencyToken;
use sluice_core::json::{StrictJsonError, from_slice_strict};
use sluice_producers::admin::topics::TopicAdmin;
use sluice_producers::{Delivery, PublishError, Publisher, PublisherOptions, fill_envelope_defaults};
use tokio::sync::mpsc;

use crate::table::print_table;
use crate::{Context, GlobalArgs};

/// The envelope `producer` of events that do not name one.
const PRODUCER: &str = "sluice-cli";
/// Delivery failures printed one by one; the rest are counted.
const SHOWN_DELIVERY_FAILURES: u64 = 100;
/// Longest wait for the topics' size limits at start.
const TOPIC_LIMITS_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// Longest line read, e.g. `16MiB`: a longer one is rejected without being held in memory
    /// (events are also refused past their topic's record size limit, usually about 1 MB).
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = crate::gateway_cmd::byte_size)]
    max_line: usize,
}

/// What the reader thread hands over per line.
#[derive(Debug)]
enum Line {
    /// The line, without its line break.
    Text(Vec<u8>),
    /// A line longer than `--max-line`, skipped; at least this many bytes.
    TooLong(usize),
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
    let json = from_slice_strict(bytes).map_err(|e| match e {
        StrictJsonError::Syntax(e) => fail(None, format!("not JSON: {e}")),
        duplicate @ StrictJsonError::DuplicateKey { .. } => fail(None, duplicate.to_string()),
    })?;
    let Json::Object(mut event) = json else {
        return Err(fail(None, format!("$: expected an event object, found {}", json_type(&json))));
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
            return Err(fail(None, format!("$.event_type: expected string, found {}", json_type(other))));
        }
    };
    fill_envelope_defaults(&mut event, PRODUCER);
    Ok(LineEvent { event_type, event: Json::Object(event) })
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
    /// Covers every event published: `sluice lag --after` takes it.
    token: ConsistencyToken,
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
    let mut ctx = Context::load_for(global, Services::KAFKA.and(Services::REGISTRY)).await?;
    let topology = Arc::new(ctx.topology.take().context("no topology loaded")?);
    let max_in_flight = args.max_in_flight.max(1);
    let publisher = Publisher::new(topology, &ctx.connections, PublisherOptions::new(PRODUCER))?;
    // So a line too large for its topic is rejected before it is sent; without the topics'
    // limits (the cluster unreachable now) the producer's still applies.
    let limits = match TopicAdmin::new(&ctx.connections.kafka, TOPIC_LIMITS_TIMEOUT) {
        Ok(admin) => publisher.read_topic_limits(&admin).await,
        Err(e) => Err(e),
    };
    if let Err(e) = limits {
        tracing::warn!(error = %e, "cannot read the topics' size limits; only the producer's applies");
    }

    let input: Box<dyn Read + Send> = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            Box::new(std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
        }
        _ => Box::new(std::io::stdin()),
    };
    let (lines_tx, mut lines_rx) = mpsc::channel::<std::io::Result<Line>>(4096);
    // A plain thread, not `spawn_blocking`: when the run stops early it may be blocked reading
    // stdin, and the runtime's shutdown would wait for it; a detached thread ends with the process.
    let max_line = args.max_line;
    let reader = std::thread::spawn(move || read_lines(input, max_line, &lines_tx));

    let started = Instant::now();
    let mut tally = Tally::default();
    let mut in_flight = FuturesUnordered::new();
    let mut line_no: u64 = 0;
    let mut stopped: Option<String> = None;
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    progress.tick().await;
    let mut reading = true;

    let settle =
        |tally: &mut Tally, (line, event_type, result): (u64, String, Result<Delivery, PublishError>)| match result {
            Ok(delivery) => {
                tally.token.include(&delivery.topic, delivery.partition, delivery.offset);
                tally.published += 1;
                tally.of(Some(&event_type)).published += 1;
            }
            // Kafka refused the record for what it is (its size): the line's fault, like a
            // refusal before sending.
            Err(e) if e.is_invalid_event() => tally.reject(line, Some(&event_type), &e.to_string()),
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
                    Ok(Line::Text(line)) => line,
                    Ok(Line::TooLong(bytes)) => {
                        let message = format!(
                            "the line is {bytes} bytes or more; lines are read up to {} bytes (--max-line)",
                            args.max_line
                        );
                        tally.reject(line_no, None, &message);
                        if args.stop_on_error {
                            stopped = Some(format!("stopped at line {line_no} (--stop-on-error)"));
                            reading = false;
                        }
                        continue;
                    }
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
                        Err(e) if e.is_invalid_event() => Some((Some(event_type), e.to_string())),
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
    if !tally.token.is_empty() {
        println!("consistency token: {} (wait for it with `sluice lag --after`)", tally.token);
    }
    Ok(if tally.rejected + tally.failed > 0 || stopped.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Sends each line (without its line break) until the input ends or the receiver is gone. A
/// line longer than `max_line` bytes is read through without being kept ([`Line::TooLong`]).
fn read_lines(input: Box<dyn Read + Send>, max_line: usize, tx: &mpsc::Sender<std::io::Result<Line>>) {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    loop {
        match read_line(&mut reader, max_line) {
            Ok(None) => return,
            Ok(Some(line)) => {
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

/// The next line (`None` at the end of the input), at most `max_line` bytes kept.
fn read_line(reader: &mut impl BufRead, max_line: usize) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    // The line break may be the byte past the limit: a line of exactly `max_line` is kept.
    let cap = u64::try_from(max_line).unwrap_or(u64::MAX).saturating_add(1);
    if reader.by_ref().take(cap).read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        return Ok(Some(Line::Text(line)));
    }
    if line.len() <= max_line {
        // The last line, without a line break.
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        return Ok(Some(Line::Text(line)));
    }
    // Too long: skip to the end of the line, counting, keeping nothing.
    let mut bytes = line.len();
    drop(line);
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(Some(Line::TooLong(bytes)));
        }
        match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(Some(Line::TooLong(bytes + end)));
            }
            None => {
                let n = buffer.len();
                reader.consume(n);
                bytes += n;
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
        assert_eq!(
            err(br#"{"event_type": "a.b", "amount": 1, "amount": "x"}"#, None),
            r#"$.amount: duplicate key "amount" (line 1, column 43)"#
        );
    }

    fn lines(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, usize>> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        while let Some(line) = read_line(&mut reader, max).expect("in memory") {
            out.push(match line {
                Line::Text(t) => Ok(t),
                Line::TooLong(n) => Err(n),
            });
        }
        out
    }

    #[test]
    fn overlong_lines_are_skipped_not_kept() {
        let got = lines(b"1234\r\n123456789\nabc\n\n123456\n12345", 5);
        assert_eq!(
            got,
            [Ok(b"1234".to_vec()), Err(9), Ok(b"abc".to_vec()), Ok(Vec::new()), Err(6), Ok(b"12345".to_vec())]
        );
        assert_eq!(lines(b"1234567", 5), [Err(7)], "the last line, without a line break");
        assert_eq!(lines(b"", 5), Vec::<Result<Vec<u8>, usize>>::new());
    }
}
