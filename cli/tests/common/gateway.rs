//! A `sluice gateway` process for the end-to-end tests: started on a free port with one token,
//! ready once `/readyz` answers 200; events posted as the gateway's clients post them.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{PrivateClickHouse, WorkerProcess, sluice};

/// The bearer token the test gateway accepts.
pub const TOKEN: &str = "bp-test-secret-0123456789";

/// A running `sluice gateway`, killed when dropped.
pub struct Gateway {
    process: WorkerProcess,
    pub base: String,
    http: reqwest::Client,
}

impl Gateway {
    pub async fn start(topology: &Path) -> Self {
        let addr = format!("127.0.0.1:{}", PrivateClickHouse::free_port());
        let log = std::fs::File::create(topology.with_file_name("gateway.log")).expect("log");
        let mut cmd = sluice(topology);
        cmd.args(["gateway", "--listen", &addr])
            .env("SLUICE_GATEWAY_TOKENS", format!("test:{TOKEN}:*"))
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut gw = Self {
            process: WorkerProcess(cmd.spawn().expect("spawn gateway")),
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = gw.process.0.try_wait() {
                panic!("the gateway exited with {status}: see {}", topology.with_file_name("gateway.log").display());
            }
            let ready = gw.http.get(format!("{}/readyz", gw.base)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return gw;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "the gateway did not become ready (see gateway.log)");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// `POST /v1/batch`: the status of each event, in order.
    pub async fn batch(&self, events: &[&Value]) -> Vec<u16> {
        let resp = self
            .http
            .post(format!("{}/v1/batch", self.base))
            .bearer_auth(TOKEN)
            .json(&events)
            .send()
            .await
            .expect("post batch");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("json body");
        assert!(matches!(status, 200 | 207 | 429), "batch answered {status}: {body}");
        let statuses: Vec<u16> = body["results"]
            .as_array()
            .unwrap_or_else(|| panic!("no results in {body}"))
            .iter()
            .map(|r| r["status"].as_u64().expect("status") as u16)
            .collect();
        assert_eq!(statuses.len(), events.len(), "{body}");
        statuses
    }

    /// `POST /v1/events/{type}` of one event: status, `Retry-After` header, body.
    pub async fn single(&self, event: &Value) -> (u16, Option<String>, Value) {
        let event_type = event["event_type"].as_str().expect("type");
        let resp = self
            .http
            .post(format!("{}/v1/events/{event_type}", self.base))
            .bearer_auth(TOKEN)
            .json(event)
            .send()
            .await
            .expect("post event");
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().expect("ascii").to_owned());
        (status, retry_after, resp.json().await.expect("json body"))
    }
}

impl Gateway {
    /// Posts `events` in batches of `size` until every one is accepted: events answered 429 or
    /// 503 (backpressure, a broker away) are posted again, any other refusal fails the test.
    pub async fn publish_all(&self, events: &[&Value], size: usize, secs: u64) {
        let start = Instant::now();
        for chunk in events.chunks(size) {
            let mut pending: Vec<&Value> = chunk.to_vec();
            while !pending.is_empty() {
                let statuses = self.batch(&pending).await;
                let mut again = Vec::new();
                for (event, status) in pending.iter().zip(statuses) {
                    match status {
                        200..=299 => {}
                        429 | 503 => again.push(*event),
                        other => panic!("the gateway refused an event with {other}: {event}"),
                    }
                }
                pending = again;
                if !pending.is_empty() {
                    assert!(start.elapsed() < Duration::from_secs(secs), "events still refused after {secs}s");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
