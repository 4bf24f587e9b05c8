//! The Prometheus endpoint of long-running commands, and the worker's probes.
//!
//! Every histogram is exported with buckets ([`builder`]), never as per-process quantiles, so a
//! dashboard can add replicas up. `sluice work --metrics-addr` serves, on one listener:
//! `/metrics`; `/healthz` (200 while the process serves: the liveness probe, which must not
//! restart a worker that only waits for its sink); `/readyz` (200 while every worker of the
//! process writes and owns partitions, see [`sluice_consumers::worker::health`]; 503 otherwise).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sluice_consumers::worker::{health, metrics::BUCKETS};
use sluice_producers::gateway;

/// Buckets of a histogram nobody chose buckets for: without any, the exporter would render a
/// summary (quantiles of one process), which cannot be aggregated.
const DEFAULT_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The exporter of every sluice process: the gateway's buckets, the worker's, and
/// [`DEFAULT_BUCKETS`] for any other histogram.
pub(crate) fn builder() -> anyhow::Result<PrometheusBuilder> {
    let mut b = gateway::metrics::prometheus_builder();
    for (name, buckets) in BUCKETS {
        b = b.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets).context("histogram buckets")?;
    }
    b.set_buckets(DEFAULT_BUCKETS).context("histogram buckets")
}

/// Installs the Prometheus recorder and serves `/metrics`, `/healthz` and `/readyz` on `addr`
/// (background tasks).
pub(crate) async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let handle = builder()?.install_recorder().context("installing the metrics recorder")?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("serving metrics on {addr}"))?;
    let upkeep = handle.clone();
    // Histogram samples wait in the recorder until rendered; upkeep bounds them when nobody scrapes.
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let app = axum::Router::new()
        .route("/metrics", get(move || std::future::ready(render(&handle))))
        .route("/healthz", get(|| std::future::ready("ok\n")))
        .route("/readyz", get(|| std::future::ready(ready())));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    tracing::info!(%addr, "Prometheus metrics on http://{addr}/metrics, probes on /healthz and /readyz");
    Ok(())
}

fn render(handle: &PrometheusHandle) -> impl IntoResponse + use<> {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render())
}

fn ready() -> impl IntoResponse {
    let states = health::snapshot();
    let ready = health::all_ready(&states);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(serde_json::json!({ "ready": ready, "projections": states })))
}
