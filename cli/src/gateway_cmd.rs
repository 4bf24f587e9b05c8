//! `sluice gateway`: run the HTTP ingest gateway until SIGTERM/SIGINT, then drain.
//!
//! Reads the tokens (`SLUICE_GATEWAY_TOKENS` and/or `--tokens-file`) and, with `--tls-cert` and
//! `--tls-key`, the TLS pair; builds the publisher of the topology (schemas must be registered
//! beforehand unless `--auto-register`), installs the Prometheus recorder served on the
//! gateway's own `/metrics`, and hands everything to [`sluice_producers::gateway::serve`].
//! SIGHUP re-reads the tokens file and the TLS pair ([`gateway::Reloader`]); the library also
//! watches those files for a change.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sluice_consumers::lag::{DEFAULT_INTERVAL, LagGate, LagMonitor};
use sluice_consumers::reads::Reads;
use sluice_core::lag::IntakePolicy;
use sluice_producers::gateway::{
    self, GatewayConfig, GatewayState, Reloader, TlsCertificate, TlsFiles, TokenSource, Tokens,
};
use sluice_producers::{Publisher, PublisherOptions};

use crate::Context;

/// The variable holding tokens, `name:token:scope[,scope…]` entries separated by `;`.
const TOKENS_VAR: &str = "SLUICE_GATEWAY_TOKENS";

/// Options of `sluice gateway`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Tokens: entries name:token:scope[,scope...], e.g. \
                        SLUICE_GATEWAY_TOKENS='web:<secret>:user.*,session.*;etl:<secret>:*' \
                        (entries separated by ;) and/or --tokens-file (one entry per line, blank \
                        lines and lines starting with # skipped). A token is at least 16 \
                        characters; a scope is an event type or a glob with *. Tokens are never \
                        logged: log lines and errors name the entry (file, line, name).\n\n\
                        TLS: --tls-cert and --tls-key (both or neither) serve HTTPS (TLS 1.2/1.3) \
                        instead of plain HTTP, from a PEM certificate chain (server certificate \
                        first) and a PEM private key (PKCS#8, RSA or EC).\n\n\
                        Reloading without a restart: SIGHUP re-reads the tokens file and the TLS \
                        pair; both are also checked every --watch-interval and re-read when they \
                        change (a rotated Kubernetes secret). Requests in \
                        flight finish; open connections keep their certificate. A file that does \
                        not load is logged as an error and the previous tokens or certificate stay \
                        in use. SLUICE_GATEWAY_TOKENS is read at start only.\n\n\
                        Every accepted event answers with a consistency_token (a batch with one \
                        covering all its events).\n\n\
                        Reads: GET /v1/projections/{projection}/progress?after=TOKEN&wait=5s \
                        answers 200 once the projection (any: analytics too) includes the write; \
                        GET /v1/projections/{projection}/documents/{key}?after=TOKEN&wait=5s \
                        (when SLUICE_COUCHBASE_* is set) the document once it includes the \
                        write, 410 gone when the aggregate was erased. Either answers 409 \
                        not_yet (with where it is behind) when not within wait (at most 30s and \
                        the request timeout less a second); the bearer token needs the \
                        scope projection:<name> (or a glob matching it).\n\n\
                        Routes: POST /v1/events/{event_type}, POST /v1/events/{event_type}/batch, \
                        POST /v1/batch, GET /v1/projections/{projection}/documents/{key}, \
                        GET /v1/projections/{projection}/progress, \
                        GET /healthz, GET /readyz, GET /metrics.")]
pub(crate) struct GatewayArgs {
    /// Address to listen on.
    #[arg(long, env = "SLUICE_GATEWAY_ADDR", default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    listen: SocketAddr,

    /// A secret file of tokens, one `name:token:scope[,scope…]` per line (added to
    /// SLUICE_GATEWAY_TOKENS). Re-read on SIGHUP and when the file changes.
    #[arg(long, env = "SLUICE_GATEWAY_TOKENS_FILE", value_name = "PATH")]
    tokens_file: Option<PathBuf>,

    /// Serve HTTPS with this PEM certificate chain (the server's certificate first); needs
    /// --tls-key. Re-read on SIGHUP and when the file changes.
    #[arg(long, env = "SLUICE_GATEWAY_TLS_CERT_FILE", value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The PEM private key (PKCS#8, RSA or EC) of --tls-cert; needs --tls-cert.
    #[arg(long, env = "SLUICE_GATEWAY_TLS_KEY_FILE", value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// How often the TLS files and the tokens file are checked for a change (modification time,
    /// size, inode); a change re-reads what changed.
    #[arg(long, default_value = "5s", value_parser = duration)]
    watch_interval: Duration,

    /// Largest single-event body, e.g. `1MiB`, `512KiB`, `65536`, as sent and once decompressed
    /// (`Content-Encoding: gzip` or `deflate`).
    #[arg(long, default_value = "1MiB", value_parser = byte_size)]
    max_body: usize,

    /// Largest batch body, as sent and once decompressed.
    #[arg(long, default_value = "10MiB", value_parser = byte_size)]
    max_batch_body: usize,

    /// Most events in one batch.
    #[arg(long, default_value_t = 10_000)]
    max_batch_events: usize,

    /// Longest a request may take from the end of its headers to its answer (body and Kafka's
    /// acknowledgement included); also the producer's delivery timeout, and the longest an
    /// answer's write may stall on a client that stopped reading.
    #[arg(long, default_value = "10s", value_parser = duration)]
    request_timeout: Duration,

    /// Longest a client may take to send a request's headers (from connecting, or from its last
    /// answer on a kept-alive connection); then the connection is closed. Bounds idle
    /// keep-alive connections and clients trickling headers a byte at a time.
    #[arg(long, default_value = "10s", value_parser = duration)]
    header_read_timeout: Duration,

    /// Most client connections open at once. At the limit new connections wait in the listen
    /// backlog until one closes (logged, and counted in
    /// sluice_gateway_connection_limit_waits_total). Keep it under `ulimit -n`.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_connections: usize,

    /// How long a shutdown may spend finishing in-flight requests and flushing.
    #[arg(long, default_value = "30s", value_parser = duration)]
    drain_deadline: Duration,

    /// How often /readyz's probe of Kafka and the registry runs.
    #[arg(long, default_value = "5s", value_parser = duration)]
    ready_interval: Duration,

    /// The producer's batching delay (librdkafka linger.ms): lower is lower latency, higher is
    /// fewer, larger requests to Kafka.
    #[arg(long, default_value = "2ms", value_parser = duration)]
    linger: Duration,

    /// Register a schema that is not registered yet (by default the gateway only looks ids up:
    /// registration belongs to `sluice schemas register` in the deployment).
    #[arg(long)]
    auto_register: bool,

    /// A librdkafka producer setting, `KEY=VALUE`, repeatable. `acks` and `enable.idempotence`
    /// stay `all` and `true`: a value weakening them is refused.
    #[arg(long = "producer-config", value_name = "KEY=VALUE", value_parser = key_value)]
    producer_config: Vec<(String, String)>,

    /// Accept every event whatever the projections' lag (no 429s from backpressure). By default
    /// the gateway slows or refuses event types feeding a projection past its thresholds.
    #[arg(long)]
    no_backpressure: bool,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    s.parse::<sluice_core::topology::HumanDuration>().map(Into::into).map_err(|e| e.to_string())
}

/// `1048576`, `512KiB`, `1MiB`, `10MB` (decimal units are 1000-based).
pub(crate) fn byte_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().map_err(|_| format!("expected a size like 1MiB, got {s:?}"))?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} (B, KiB, MiB, GiB, KB, MB, GB)")),
    };
    n.checked_mul(factor).filter(|&b| b > 0).ok_or_else(|| format!("size {s:?} is zero or too large"))
}

/// The tokens' source (the variable's, fixed for the process's life, and the file's) and the
/// tokens it gives now.
fn tokens(args: &GatewayArgs) -> anyhow::Result<(TokenSource, Tokens)> {
    let mut fixed = Tokens::default();
    if let Ok(text) = std::env::var(TOKENS_VAR) {
        fixed.add(&text, TOKENS_VAR)?;
    }
    let source = TokenSource::new(fixed, args.tokens_file.clone());
    let tokens = source.load()?;
    Ok((source, tokens))
}

/// The TLS pair, when both files are given (clap refuses one without the other).
fn tls(args: &GatewayArgs) -> anyhow::Result<Option<Arc<TlsCertificate>>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let tls = TlsCertificate::load(TlsFiles { cert: cert.clone(), key: key.clone() })?;
    tracing::info!(cert = %cert.display(), sha256 = %tls.fingerprint(), "serving TLS");
    Ok(Some(Arc::new(tls)))
}

/// Reloads on every SIGHUP until the process ends. The handler is installed before this returns:
/// SIGHUP's default action ends the process, so it must be in place before anyone is told the
/// gateway runs.
fn reload_on_hangup(reloader: Reloader) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let report = reloader.reload("SIGHUP");
                if report.tokens.is_none() && report.tls.is_none() {
                    tracing::info!("SIGHUP: nothing to reload (no --tokens-file, no TLS)");
                }
            }
        }))
    }
    #[cfg(not(unix))]
    Ok(tokio::spawn(async move { drop(reloader) }))
}

/// Connects the reads to Couchbase; a failure is logged, and the first document read tries again.
async fn warm_up(reads: Arc<Reads>) {
    match reads.warm_up().await {
        Ok(true) => tracing::info!("connected to Couchbase for document reads"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot connect to Couchbase for document reads yet; each read will try again")
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the gateway cleanly");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub(crate) async fn run(ctx: &Context, args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let (token_source, tokens) = tokens(&args)?;
    for p in tokens.principals() {
        tracing::info!(token = p.name(), scopes = %p.scopes().join(","), "accepting token");
    }
    let tls = tls(&args)?;
    let topology = Arc::new(ctx.topology()?.clone());
    // Lag-based backpressure: the lag monitor refreshes every projection's lag about once a
    // second; the gate slows (soft threshold) or refuses with 429 (hard threshold) the event
    // types that feed a projection that fell behind. Critical event types are never refused.
    let monitor_stop = tokio_util::sync::CancellationToken::new();
    let snapshots = if args.no_backpressure {
        None
    } else {
        Some(
            LagMonitor::spawn(topology.clone(), &ctx.connections.kafka, DEFAULT_INTERVAL, monitor_stop.clone())
                .context("starting the lag monitor")?,
        )
    };
    let gate_topology = topology.clone();
    let mut opts = PublisherOptions::new("sluice-gateway");
    opts.delivery_timeout = args.request_timeout;
    opts.linger = args.linger;
    opts.auto_register = args.auto_register;
    opts.kafka = args.producer_config.clone();
    let publisher = Arc::new(Publisher::new(topology, &ctx.connections, opts).context("creating the Kafka producer")?);

    let mut config = GatewayConfig::default();
    config.max_body_bytes = args.max_body;
    config.max_batch_body_bytes = args.max_batch_body;
    config.max_batch_events = args.max_batch_events;
    config.request_timeout = args.request_timeout;
    config.header_read_timeout = args.header_read_timeout;
    config.max_connections = args.max_connections;
    config.drain_deadline = args.drain_deadline;
    config.ready_interval = args.ready_interval;
    config.watch_interval = args.watch_interval;

    let metrics = crate::metrics::builder()?.install_recorder().context("installing the metrics recorder")?;
    let mut state = GatewayState::new(publisher, &ctx.connections, tokens, config)?
        .with_metrics(metrics)
        .with_token_source(token_source);
    if let Some(rx) = snapshots {
        state = state.with_gate(Arc::new(LagGate::new(rx, gate_topology, IntakePolicy::default())));
    }
    // Reads of projections: `GET /v1/projections/…/progress` always (from Kafka's committed
    // offsets), `…/documents/…` when Couchbase is configured (connected from the start, in the
    // background: the gateway serves writes whether or not Couchbase answers).
    let couchbase = (!ctx.connections.couchbase.connstr.is_empty()).then(|| ctx.connections.couchbase.clone());
    let reads = Arc::new(Reads::new(Arc::new(ctx.topology()?.clone()), ctx.connections.kafka.clone(), couchbase));
    tokio::spawn(warm_up(Arc::clone(&reads)));
    state = state.with_reads(reads);
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(tls) = tls {
        state = state.with_tls(tls);
    }
    let hangups = reload_on_hangup(state.reloader())?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    eprintln!(
        "sluice gateway on {scheme}://{} (SIGTERM or Ctrl-C stops it after draining; SIGHUP reloads the tokens file and TLS pair)",
        listener.local_addr()?
    );
    gateway::serve(listener, state, stop_signal()).await?;
    hangups.abort();
    monitor_stop.cancel();
    eprintln!("sluice gateway stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(byte_size("1MiB"), Ok(1 << 20));
        assert_eq!(byte_size("512 KiB"), Ok(512 << 10));
        assert_eq!(byte_size("65536"), Ok(65_536));
        assert_eq!(byte_size("10MB"), Ok(10_000_000));
        assert!(byte_size("0").is_err());
        assert!(byte_size("1 parsec").is_err());
        assert!(byte_size("MiB").is_err());
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        gateway: GatewayArgs,
    }

    #[test]
    fn tls_takes_both_files_or_neither() {
        use clap::Parser as _;
        let plain = Cli::try_parse_from(["sluice"]).expect("plain HTTP by default");
        assert!(plain.gateway.tls_cert.is_none() && plain.gateway.tls_key.is_none());
        let both = Cli::try_parse_from(["sluice", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).expect("both");
        assert_eq!(both.gateway.tls_key.as_deref(), Some(std::path::Path::new("k.pem")));
        for half in [["sluice", "--tls-cert", "c.pem"], ["sluice", "--tls-key", "k.pem"]] {
            let err = Cli::try_parse_from(half).expect_err("one without the other");
            assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument, "{err}");
            let text = err.to_string();
            assert!(text.contains("--tls-key") || text.contains("--tls-cert"), "{text}");
        }
    }
}
