//! `sluice loadgen`: a load generator for the ingest gateway, and the benchmark table it prints.
//!
//! Sends realistic events (from [`sluice_sample::generate`], `event_id` left to the gateway so
//! every request is a new event) to a running `sluice gateway` on this machine: a single-event
//! phase (`POST /v1/events/{type}`, `--concurrency` keep-alive connections, closed loop, or paced
//! at `--rate` requests/s) and a batch phase (`POST /v1/events/{type}/batch`). Every phase is
//! bounded by a request count and a duration, and only loopback addresses are accepted: this is
//! a benchmark of the local stack, never a tool to point at someone else's server.
//!
//! The client is hyper's bare HTTP/1 connection (no pool, bodies built once; TLS only for an
//! `https://` URL, to measure the gateway's TLS), to leave as much of the machine as possible to
//! the gateway; latency is measured from the moment a
//! request was due (with `--rate`, the schedule; otherwise its send), so a stalled server cannot
//! hide behind a client that waited for it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value as Json;
use sluice_core::connections::TlsFiles;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::table::print_table;

/// The variable holding the bearer token (not a flag: it would show in `ps`).
const TOKEN_VAR: &str = "SLUICE_LOADGEN_TOKEN";
/// The longest any phase may run.
const MAX_DURATION: Duration = Duration::from_secs(600);
/// Connection or protocol failures after which a phase gives up.
const MAX_ERRORS: u64 = 1_000;

/// Which phases to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Single,
    Batch,
    Both,
}

/// Options of `sluice loadgen`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Start a gateway first (`sluice gateway`, with a release build for real figures), \
                        then: SLUICE_LOADGEN_TOKEN=<token> sluice loadgen --url http://127.0.0.1:8080. \
                        Only loopback addresses are accepted.")]
pub(crate) struct LoadgenArgs {
    /// The gateway's base URL (http or https, loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,

    /// CA certificate (PEM) to verify an `https://` gateway with; the system's roots when absent.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,

    /// The event type to post (one the sample generator makes).
    #[arg(long, default_value = "engagement.page_viewed")]
    event_type: String,

    /// Which phases to run.
    #[arg(long, value_enum, default_value = "both")]
    mode: Mode,

    /// Connections of the single-event phase, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,

    /// Target requests/s of the single-event phase (paced, latency measured from the schedule);
    /// as fast as the connections go when absent.
    #[arg(long)]
    rate: Option<u32>,

    /// Most requests of the single-event phase.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    requests: u64,

    /// Events per batch request.
    #[arg(long, default_value_t = 1_000)]
    batch_size: usize,

    /// Connections of the batch phase.
    #[arg(long, default_value_t = 4)]
    batch_concurrency: usize,

    /// Most requests of the batch phase.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batches: u64,

    /// Longest each phase runs (at most 10m).
    #[arg(long, default_value = "20s", value_parser = duration)]
    duration: Duration,

    /// Unmeasured warm-up before each phase (connections, schema ids, producer).
    #[arg(long, default_value = "2s", value_parser = duration)]
    warmup: Duration,
}

fn duration(s: &str) -> Result<Duration, String> {
    let d: Duration = s.parse::<sluice_core::topology::HumanDuration>().map(Into::into).map_err(|e| e.to_string())?;
    if d > MAX_DURATION { Err(format!("at most {MAX_DURATION:?}")) } else { Ok(d) }
}

/// Where and how to send.
pub(crate) struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    auth: HeaderValue,
    /// For an `https://` URL: the connector and the name the certificate must carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("addr", &self.addr).field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

impl Target {
    /// A plain-HTTP gateway at `addr` (on this machine), posting with `token`.
    pub(crate) fn plain(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
        Ok(Self { addr, host: HeaderValue::from_str(&addr.to_string())?, auth: bearer(token)?, tls: None })
    }
}

/// The `Authorization` value for `token`, kept out of debug output.
fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).context("the token is not a header value")?;
    auth.set_sensitive(true);
    Ok(auth)
}

/// The address of `url`, refused unless every address it names is loopback.
async fn loopback_target(url: &str) -> anyhow::Result<(SocketAddr, HeaderValue)> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("not a URL: {url:?}"))?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => bail!("only http:// or https:// URLs (the gateway on this machine)"),
    };
    let host = uri.host().context("the URL has no host")?;
    let port = uri.port_u16().unwrap_or(default_port);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("resolving {host}"))?
        .collect();
    match addrs.first() {
        Some(first) if addrs.iter().all(|a| a.ip().is_loopback()) => {
            Ok((*first, HeaderValue::from_str(&format!("{host}:{port}"))?))
        }
        _ => bail!("{url} is not a loopback address: the load generator only targets this machine"),
    }
}

/// Request bodies, built once: events of `event_type` without `event_id`.
fn sample_events(event_type: &str) -> anyhow::Result<Vec<Json>> {
    let (events, _) = sluice_sample::generate(400, 7, "10adbe0c", "loadgen-");
    let mut chosen: Vec<Json> = events.into_iter().filter(|e| e["event_type"] == event_type).collect();
    if chosen.is_empty() {
        bail!(
            "the sample generator makes no {event_type:?} events (try engagement.page_viewed, engagement.clicked, session.heartbeat)"
        );
    }
    for e in &mut chosen {
        if let Some(map) = e.as_object_mut() {
            map.remove("event_id");
        }
    }
    Ok(chosen)
}

/// What one phase measured.
#[derive(Debug)]
pub(crate) struct PhaseResult {
    name: String,
    connections: usize,
    /// Requests answered.
    pub(crate) requests: u64,
    /// Events the gateway took.
    pub(crate) events: u64,
    /// Answers by status.
    pub(crate) statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer.
    pub(crate) errors: u64,
    /// From the first request to the last answer.
    pub(crate) elapsed: Duration,
    /// Request latency in µs, from when the request was due.
    pub(crate) latency_us: Histogram<u64>,
}

/// What one connection measured.
struct WorkerStats {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    events: u64,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).context("latency histogram")
}

async fn connect(target: &Target) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let addr = target.addr;
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let Some((tls, name)) = &target.tls else { return handshake(TokioIo::new(stream)).await };
    let stream = tls.connect(name.clone(), stream).await.with_context(|| format!("TLS handshake with {addr}"))?;
    handshake(TokioIo::new(stream)).await
}

async fn handshake<T>(io: T) -> anyhow::Result<SendRequest<Full<Bytes>>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One phase's plan.
pub(crate) struct Phase {
    pub(crate) name: String,
    /// The requests sent, in turn: path and body.
    pub(crate) requests: Arc<Vec<(String, Bytes)>>,
    pub(crate) events_per_request: u64,
    pub(crate) connections: usize,
    pub(crate) max_requests: u64,
    pub(crate) duration: Duration,
    /// Requests per second, paced; as fast as the connections go when `None`.
    pub(crate) rate: Option<u32>,
}

/// Runs `phase` against `target`; `measure` false (a warm-up) keeps no latencies.
pub(crate) async fn run_phase(target: &Arc<Target>, phase: &Phase, measure: bool) -> anyhow::Result<PhaseResult> {
    let budget = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let end = started + phase.duration;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..phase.connections {
        let target = Arc::clone(target);
        let budget = Arc::clone(&budget);
        let requests = Arc::clone(&phase.requests);
        let connections = phase.connections;
        let max = phase.max_requests;
        let per_request = phase.events_per_request;
        // Paced: each connection sends every `connections / rate` seconds, offset so the
        // connections interleave.
        let interval = phase.rate.map(|r| Duration::from_secs_f64(phase.connections as f64 / f64::from(r.max(1))));
        let offset = interval.map(|i| i.mul_f64(w as f64 / phase.connections as f64)).unwrap_or_default();
        workers.spawn(async move {
            let mut stats = WorkerStats { latency_us: histogram()?, statuses: BTreeMap::new(), errors: 0, events: 0 };
            let mut sender = connect(&target).await?;
            let mut due = started + offset;
            let mut i = w;
            while Instant::now() < end && budget.fetch_add(1, Ordering::Relaxed) < max {
                if interval.is_some() {
                    tokio::time::sleep_until(due).await;
                } else {
                    due = Instant::now();
                }
                let (path, body) = &requests[i % requests.len()];
                // The connections take the requests in turn: each is sent once per round.
                i += connections;
                let request = Request::builder()
                    .method(Method::POST)
                    .uri(path.as_str())
                    .header(HOST, target.host.clone())
                    .header(AUTHORIZATION, target.auth.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(Full::new(body.clone()))?;
                let outcome = async {
                    let response = sender.send_request(request).await?;
                    let status = response.status();
                    let bytes = response.into_body().collect().await?.to_bytes();
                    anyhow::Ok((status, bytes))
                }
                .await;
                match outcome {
                    Ok((status, bytes)) => {
                        let us = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
                        stats.latency_us.saturating_record(us);
                        *stats.statuses.entry(status.as_u16()).or_default() += 1;
                        stats.events += match status {
                            StatusCode::OK | StatusCode::CREATED => per_request,
                            StatusCode::MULTI_STATUS => published_in(&bytes),
                            _ => 0,
                        };
                    }
                    Err(e) => {
                        stats.errors += 1;
                        if stats.errors >= MAX_ERRORS {
                            return Err(e.context("too many failed requests"));
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        sender = connect(&target).await?;
                    }
                }
                if let Some(interval) = interval {
                    due += interval;
                }
            }
            anyhow::Ok(stats)
        });
    }
    let mut result = PhaseResult {
        name: phase.name.clone(),
        connections: phase.connections,
        requests: 0,
        events: 0,
        statuses: BTreeMap::new(),
        errors: 0,
        elapsed: Duration::ZERO,
        latency_us: histogram()?,
    };
    while let Some(joined) = workers.join_next().await {
        let stats = joined.context("a load worker panicked")??;
        if measure {
            result.latency_us.add(&stats.latency_us).context("merging histograms")?;
        }
        result.requests += stats.statuses.values().sum::<u64>();
        result.errors += stats.errors;
        result.events += stats.events;
        for (status, n) in stats.statuses {
            *result.statuses.entry(status).or_default() += n;
        }
    }
    result.elapsed = started.elapsed();
    Ok(result)
}

/// The `published` count of a 207 batch answer.
fn published_in(body: &[u8]) -> u64 {
    serde_json::from_slice::<Json>(body).ok().and_then(|v| v["published"].as_u64()).unwrap_or(0)
}

fn ms(us: u64) -> String {
    format!("{:.1}ms", us as f64 / 1000.0)
}

fn per_second(n: u64, elapsed: Duration) -> String {
    format!("{:.0}", n as f64 / elapsed.as_secs_f64().max(1e-9))
}

pub(crate) async fn run(args: LoadgenArgs) -> anyhow::Result<ExitCode> {
    let token = std::env::var(TOKEN_VAR).with_context(|| format!("set {TOKEN_VAR} to a gateway token"))?;
    let (addr, host) = loopback_target(&args.url).await?;
    let auth = bearer(&token)?;
    let tls = match args.url.starts_with("https://") {
        true => {
            let files = TlsFiles { ca_file: args.ca_file.clone(), ..TlsFiles::default() };
            let config = sluice_producers::tls::client_config(&files, "gateway").map_err(anyhow::Error::msg)?;
            let host = args
                .url
                .parse::<hyper::Uri>()?
                .host()
                .context("the URL has no host")?
                .trim_matches(['[', ']'])
                .to_owned();
            Some((TlsConnector::from(Arc::new(config)), ServerName::try_from(host)?))
        }
        false => None,
    };
    let target = Arc::new(Target { addr, host, auth, tls });
    let events = sample_events(&args.event_type)?;
    let t = &args.event_type;

    let mut phases = Vec::new();
    if args.mode != Mode::Batch {
        let path = format!("/v1/events/{t}");
        let requests = events.iter().map(|e| (path.clone(), Bytes::from(e.to_string()))).collect();
        phases.push(Phase {
            name: match args.rate {
                Some(r) => format!("single @ {r}/s"),
                None => "single".to_owned(),
            },
            requests: Arc::new(requests),
            events_per_request: 1,
            connections: args.concurrency.max(1),
            max_requests: args.requests,
            duration: args.duration,
            rate: args.rate,
        });
    }
    if args.mode != Mode::Single {
        let size = args.batch_size.max(1);
        let path = format!("/v1/events/{t}/batch");
        let requests = (0..8)
            .map(|k| {
                let batch: Vec<&Json> = events.iter().cycle().skip(k * 97).take(size).collect();
                serde_json::to_vec(&batch).map(|body| (path.clone(), Bytes::from(body)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        phases.push(Phase {
            name: format!("batch × {size}"),
            requests: Arc::new(requests),
            events_per_request: size as u64,
            connections: args.batch_concurrency.max(1),
            max_requests: args.batches,
            duration: args.duration,
            rate: None,
        });
    }

    let mut results = Vec::new();
    for phase in &phases {
        if !args.warmup.is_zero() {
            let warmup = Phase {
                name: phase.name.clone(),
                requests: Arc::clone(&phase.requests),
                duration: args.warmup,
                max_requests: phase.max_requests,
                ..*phase
            };
            run_phase(&target, &warmup, false).await?;
        }
        eprintln!("running {} for at most {:?} / {} requests…", phase.name, phase.duration, phase.max_requests);
        results.push(run_phase(&target, phase, true).await?);
    }

    let headers =
        ["phase", "conns", "requests", "events", "non-2xx", "time", "req/s", "events/s", "p50", "p90", "p99", "max"];
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let non_2xx: u64 = r.statuses.iter().filter(|(s, _)| !(200..300).contains(*s)).map(|(_, n)| n).sum();
            let h = &r.latency_us;
            vec![
                r.name.clone(),
                r.connections.to_string(),
                r.requests.to_string(),
                r.events.to_string(),
                (non_2xx + r.errors).to_string(),
                format!("{:.1}s", r.elapsed.as_secs_f64()),
                per_second(r.requests, r.elapsed),
                per_second(r.events, r.elapsed),
                ms(h.value_at_quantile(0.50)),
                ms(h.value_at_quantile(0.90)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max()),
            ]
        })
        .collect();
    print_table(&headers, &rows);
    let mut clean = true;
    for r in &results {
        let odd: Vec<String> =
            r.statuses.iter().filter(|(s, _)| !(200..300).contains(*s)).map(|(s, n)| format!("{s}×{n}")).collect();
        if !odd.is_empty() || r.errors > 0 {
            clean = false;
            println!("{}: statuses {} ; connection errors {}", r.name, odd.join(" "), r.errors);
        }
    }
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback() {
        assert!(loopback_target("http://127.0.0.1:8080").await.is_ok());
        assert!(loopback_target("http://[::1]:8080").await.is_ok());
        assert!(loopback_target("http://localhost:8080").await.is_ok());
        assert!(loopback_target("http://10.0.0.1:8080").await.is_err());
        assert!(loopback_target("https://127.0.0.1:8443").await.is_ok());
        assert!(loopback_target("ftp://127.0.0.1:21").await.is_err());
    }

    #[test]
    fn bodies_have_no_event_id() {
        let events = sample_events("engagement.page_viewed").expect("samples");
        assert!(!events.is_empty() && events.iter().all(|e| e.get("event_id").is_none()));
        assert!(sample_events("no.such").is_err());
        assert!(duration("11m").is_err());
    }
}
