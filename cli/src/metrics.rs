//! The Prometheus endpoint of long-running commands.

use std::net::SocketAddr;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusBuilder;

/// Installs the Prometheus recorder and serves `/metrics` on `addr` (a background task).
pub(crate) fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .with_context(|| format!("serving metrics on {addr}"))?;
    tracing::info!(%addr, "Prometheus metrics on http://{addr}/metrics");
    Ok(())
}
