//! `sluice bench --gateway`: the steady phase published over HTTP through a gateway — the one
//! `sluice gateway` runs, started in this process on a loopback port for the isolated topology —
//! one event per request (`POST /v1/events/{type}`) or `--gateway-batch` events per request
//! (`POST /v1/batch`), paced, as the upstream services that are not in Rust publish. The
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
    /// Events per request: 1 posts each on its own.
    batch: usize,
    stop: CancellationToken,
    serving: JoinHandle<Result<(), gateway::GatewayError>>,
}

impl Gateway {
    /// Starts a gateway for `topology` on a free loopback port, with a token of its own; its
    /// requests will go over `connections` connections, `batch` events each.
    pub(super) async fn start(
        ctx: &Context,
        topology: Arc<Topology>,
        connections: usize,
        batch: usize,
    ) -> anyhow::Result<Self> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let tokens = Tokens::parse(&format!("bench:{token}:*"), "the bench's token")?;
        let publisher = Publisher::new(topology, &ctx.connections, PublisherOptions::new("sluice-gateway"))
            .context("creating the gateway's Kafka producer")?;
        let state = GatewayState::new(Arc::new(publisher), &ctx.connections, tokens, GatewayConfig::default())?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let target = Arc::new(Target::plain(listener.local_addr()?, &token)?);
        let stop = CancellationToken::new();
        let serving = tokio::spawn(gateway::serve(listener, state, stop.clone().cancelled_owned()));
        Ok(Self { target, connections: connections.max(1), batch: batch.max(1), stop, serving })
    }

    /// Posts `events`, `rate` events a second.
    pub(super) async fn publish(&self, events: &[Json], rate: u64) -> anyhow::Result<PhaseResult> {
        let requests: Vec<(String, Bytes)> = match self.batch {
            1 => events.iter().map(request).collect(),
            n => events.chunks(n).map(batch_request).collect(),
        };
        let per_second = (rate as f64 / self.batch as f64).ceil().max(1.0);
        let phase = Phase {
            name: "gateway".to_owned(),
            max_requests: requests.len() as u64,
            // Paced: the requests take their count / rate; the margin lets a slow gateway finish.
            duration: Duration::from_secs_f64(requests.len() as f64 / per_second) + Duration::from_secs(60),
            requests: Arc::new(requests),
            events_per_request: self.batch as u64,
            connections: self.connections,
            rate: Some(per_second as u32),
        };
        run_phase(&self.target, &phase, true).await
    }

    /// Stops the gateway (it drains its requests and flushes its producer first).
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.serving.await.context("the gateway panicked")?.context("the gateway failed")
    }
}

/// The request that publishes `event`: its type's path, the event as the gateway takes it.
fn request(event: &Json) -> (String, Bytes) {
    let event_type = event["event_type"].as_str().unwrap_or_default();
    (format!("/v1/events/{event_type}"), Bytes::from(unstamped(event).to_string()))
}

/// The request that publishes `events` together (of any types).
fn batch_request(events: &[Json]) -> (String, Bytes) {
    let events: Vec<Json> = events.iter().map(unstamped).collect();
    ("/v1/batch".to_owned(), Bytes::from(Json::from(events).to_string()))
}

/// `event` without the fields the gateway stamps at intake.
fn unstamped(event: &Json) -> Json {
    let mut event = event.clone();
    if let Some(map) = event.as_object_mut() {
        map.remove("event_id");
        map.remove("occurred_at");
    }
    event
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

    #[test]
    fn a_batch_goes_to_the_mixed_endpoint_each_event_naming_its_type() {
        let events =
            [json!({"event_id": "a", "event_type": "t.one", "n": 1}), json!({"event_type": "t.two", "occurred_at": 9})];
        let (path, body) = batch_request(&events);
        assert_eq!(path, "/v1/batch");
        let sent: Json = serde_json::from_slice(&body).expect("json");
        assert_eq!(sent, json!([{"event_type": "t.one", "n": 1}, {"event_type": "t.two"}]));
    }
}
