//! `sluice bench --gateway`: the steady phase published over HTTP through a gateway — the one
//! `sluice gateway` runs, started in this process on a loopback port for the isolated topology —
//! one event per request, paced, as the upstream services that are not in Rust publish. The
//! requests are sent as `sluice loadgen` sends them (paced per connection, each latency measured
//! from when its request was due, so a slow answer also delays the ones queued behind it).
//!
//! Each event goes without `event_id` and `occurred_at`: the gateway stamps both at intake, so
//! publish → visible is measured from the gateway's intake to the sink's acknowledgement. The
//! lag gate is off (a bench run must not be slowed by the rig's other groups' lag).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::body::Bytes;
use serde_json::Value as Json;
use sluice_core::topology::Topology;
use sluice_producers::gateway::{self, GatewayConfig, GatewayState, Tokens};
use sluice_producers::{Publisher, PublisherOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Context;
use crate::loadgen::{Phase, PhaseResult, Target, run_phase};

/// A gateway serving in this process.
#[derive(Debug)]
pub(super) struct Gateway {
    target: Arc<Target>,
    connections: usize,
    stop: CancellationToken,
    serving: JoinHandle<Result<(), gateway::GatewayError>>,
}

impl Gateway {
    /// Starts a gateway for `topology` on a free loopback port, with a token of its own; its
    /// requests will go over `connections` connections.
    pub(super) async fn start(ctx: &Context, topology: Arc<Topology>, connections: usize) -> anyhow::Result<Self> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let tokens = Tokens::parse(&format!("bench:{token}:*"), "the bench's token")?;
        let publisher = Publisher::new(topology, &ctx.connections, PublisherOptions::new("sluice-gateway"))
            .context("creating the gateway's Kafka producer")?;
        let state = GatewayState::new(Arc::new(publisher), &ctx.connections, tokens, GatewayConfig::default())?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let target = Arc::new(Target::plain(listener.local_addr()?, &token)?);
        let stop = CancellationToken::new();
        let serving = tokio::spawn(gateway::serve(listener, state, stop.clone().cancelled_owned()));
        Ok(Self { target, connections: connections.max(1), stop, serving })
    }

    /// Posts each of `events` in a request of its own, `rate` requests a second.
    pub(super) async fn publish(&self, events: &[Json], rate: u64) -> anyhow::Result<PhaseResult> {
        let requests: Vec<(String, Bytes)> = events.iter().map(request).collect();
        let rate = u32::try_from(rate.max(1)).unwrap_or(u32::MAX);
        let phase = Phase {
            name: "gateway".to_owned(),
            requests: Arc::new(requests),
            events_per_request: 1,
            connections: self.connections,
            max_requests: events.len() as u64,
            // Paced: the requests take events / rate; the margin lets a slow gateway finish.
            duration: Duration::from_secs_f64(events.len() as f64 / f64::from(rate)) + Duration::from_secs(60),
            rate: Some(rate),
        };
        run_phase(&self.target, &phase, true).await
    }

    /// Stops the gateway (it drains its requests and flushes its producer first).
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.serving.await.context("the gateway panicked")?.context("the gateway failed")
    }
}

/// The request that publishes `event`: its type's path, the event without the fields the gateway
/// stamps.
fn request(event: &Json) -> (String, Bytes) {
    let mut event = event.clone();
    let event_type = event["event_type"].as_str().unwrap_or_default().to_owned();
    if let Some(map) = event.as_object_mut() {
        map.remove("event_id");
        map.remove("occurred_at");
    }
    (format!("/v1/events/{event_type}"), Bytes::from(event.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_request_leaves_id_and_time_to_the_gateway() {
        let event = json!({"event_id": "x", "event_type": "user.signed_up", "occurred_at": 5, "user_id": "u-1"});
        let (path, body) = request(&event);
        assert_eq!(path, "/v1/events/user.signed_up");
        let sent: Json = serde_json::from_slice(&body).expect("json");
        assert_eq!(sent, json!({"event_type": "user.signed_up", "user_id": "u-1"}));
    }
}
