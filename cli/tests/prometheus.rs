//! The dashboard, proven against a real Prometheus: a `sluice gateway` and two workers (one
//! Couchbase, one ClickHouse projection) run while events flow through the gateway; a Prometheus
//! (Debian's package, installed by `dev/bootstrap`; on 127.0.0.1, a free port, its own data
//! directory, stopped with the test) scrapes them every second and loads the alert rules; then
//! **every** PromQL expression of `deploy/grafana/sluice.json` must return data, and a finite
//! value. Also prints the processes' resident memory (the figures behind the manifests' memory
//! requests).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use sluice_tests::domain::generate;
use sluice_tests::{connections, fresh_topology, unique};

mod common;
use common::gateway::Gateway;
use common::*;

/// A Prometheus server of this test, killed (by its own pid) when dropped.
struct Prometheus {
    child: Child,
    base: String,
}

impl Prometheus {
    fn start(dir: &Path, workers: &[String], gateway: &str) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let rules = root.join("deploy/prometheus/sluice-rules.yml").canonicalize().expect("rules file");
        let targets = |t: &[String]| t.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  \
             - job_name: sluice-worker\n    static_configs: [{{targets: [{}]}}]\n  - job_name: sluice-gateway\n    \
             static_configs: [{{targets: ['{gateway}']}}]\n",
            rules.display(),
            targets(workers),
        );
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write prometheus.yml");
        let addr = format!("127.0.0.1:{}", PrivateClickHouse::free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus ({e}): dev/bootstrap installs it"));
        Self { child, base: format!("http://{addr}") }
    }

    /// `/api/v1/query`: the result vector (or an error text).
    async fn query(&self, http: &reqwest::Client, expr: &str) -> Result<Vec<Value>, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/query", self.base), &[("query", expr)])
            .map_err(|e| e.to_string())?;
        let resp = http.get(url).send().await.map_err(|e| e.to_string())?;
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(body.to_string());
        }
        Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every `expr` of the dashboard, with the panel it belongs to.
fn dashboard_queries() -> Vec<(String, String)> {
    fn walk(v: &Value, panel: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                let title = m.get("title").and_then(Value::as_str).unwrap_or(panel);
                if let Some(expr) = m.get("expr").and_then(Value::as_str) {
                    out.push((title.to_owned(), expr.to_owned()));
                }
                m.values().for_each(|c| walk(c, title, out));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, panel, out)),
            _ => {}
        }
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/sluice.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("json");
    let mut out = Vec::new();
    walk(&dashboard, "", &mut out);
    out
}

/// Grafana's own variables, as Grafana would fill them for a 1 s scrape interval.
fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m").replace("$__interval", "1s").replace("$__range", "5m")
}

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024
}

/// The topology of this test: the repository's, isolated by `sfx`, with user_state's soft lag
/// threshold so low that the gateway's intake gate slows its event types (decisions counted).
fn topology(sfx: &str) -> PathBuf {
    let path = fresh_topology(sfx);
    let text = std::fs::read_to_string(&path).expect("read topology");
    let patched = text.replacen("soft_lag = 10000\n", "soft_lag = 5\n", 1);
    assert_ne!(patched, text, "user_state's soft threshold patched");
    std::fs::write(&path, patched).expect("write topology");
    let ch = connections().clickhouse;
    std::fs::write(
        path.with_file_name("clickhouse.env"),
        format!("SLUICE_CLICKHOUSE_URL={}\nSLUICE_CLICKHOUSE_DATABASE=db_{sfx}\n", ch.url),
    )
    .expect("clickhouse.env");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus_scraping_workers_and_the_gateway() {
    let sfx = unique("prom");
    let topology = topology(&sfx);
    let dir = topology.parent().expect("dir").to_path_buf();
    run_ok(sluice(&topology).args(["topics", "apply"]));
    run_ok(sluice(&topology).args(["schemas", "register"]));
    run_ok(sluice(&topology).args(["clickhouse", "migrate"]));

    // Events first, with no worker running: user_state's lag passes its soft threshold and the
    // gateway slows its event types.
    let gateway = Gateway::start(&topology).await;
    let (events, _model) = generate(200, 5, &uuid_hex8(), &format!("{sfx}-"));
    let all: Vec<&Value> = events.iter().collect();
    let (first, rest) = all.split_at(all.len() / 2);
    gateway.publish_all(first, 100, 120).await;
    // One record no schema decodes: a dead letter for every projection reading `users`.
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", connections().kafka.brokers).create().expect("producer");
    producer
        .send(
            FutureRecord::<str, [u8]>::to(&format!("users_{sfx}")).payload(b"not avro".as_slice()).key("x"),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("send the undecodable record");

    let mut workers = Vec::new();
    let mut worker_addrs = Vec::new();
    for projection in [format!("user_state_{sfx}"), format!("analytics_{sfx}")] {
        let addr = format!("127.0.0.1:{}", PrivateClickHouse::free_port());
        workers.push(WorkerProcess::spawn(&topology, &projection, &["--metrics-addr", &addr], &[], &projection));
        worker_addrs.push(addr);
    }
    let gateway_addr = gateway.base.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&dir, &worker_addrs, &gateway_addr);
    let http = reqwest::Client::new();

    // The workers' probes: ready once they write and own partitions.
    for addr in &worker_addrs {
        let start = Instant::now();
        loop {
            let ready = http.get(format!("http://{addr}/readyz")).send().await;
            if ready.as_ref().is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(90), "worker on {addr} not ready: {ready:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let live = http.get(format!("http://{addr}/healthz")).send().await.expect("healthz");
        assert_eq!(live.status(), 200);
    }

    // Events keep flowing while Prometheus scrapes: the rest, in small batches, over ~20 s.
    let started = Instant::now();
    for chunk in rest.chunks(rest.len().div_ceil(20)) {
        gateway.publish_all(chunk, 50, 120).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let up = prometheus.query(&http, "sum(up)").await.expect("query up");
    assert_eq!(up.first().and_then(|s| s["value"][1].as_str()), Some("3"), "all three targets up: {up:?}");
    eprintln!("events flowed for {:?}", started.elapsed());

    // Every expression of the dashboard returns data, with at least one finite value. A
    // histogram_quantile over a window without samples answers NaN, so a panel that would show
    // nothing fails here too.
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "the dashboard's expressions: {queries:?}");
    let mut failures = Vec::new();
    let mut deadline = Instant::now() + Duration::from_secs(60);
    for (panel, expr) in &queries {
        loop {
            let answer = prometheus.query(&http, &grafana_to_promql(expr)).await;
            let finite = answer.as_ref().is_ok_and(|series| {
                series
                    .iter()
                    .any(|s| s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).is_some_and(f64::is_finite))
            });
            if finite {
                eprintln!("ok  {panel}: {expr}: {} series", answer.map(|s| s.len()).unwrap_or(0));
                break;
            }
            if Instant::now() > deadline {
                failures.push(format!("{panel}: {expr}: {answer:?}"));
                // One slow panel does not eat the next one's time.
                deadline = Instant::now() + Duration::from_secs(5);
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    assert!(failures.is_empty(), "dashboard queries without data:\n{}", failures.join("\n"));

    // The alert rules loaded into the real server, and its rule evaluation works.
    let rules: Value =
        http.get(format!("{}/api/v1/rules", prometheus.base)).send().await.expect("rules").json().await.expect("json");
    let loaded = rules["data"]["groups"][0]["rules"].as_array().map_or(0, Vec::len);
    assert_eq!(loaded, 9, "alert rules loaded: {rules}");
    let errors: Vec<&Value> =
        rules["data"]["groups"][0]["rules"].as_array().into_iter().flatten().filter(|r| r["health"] == "err").collect();
    assert!(errors.is_empty(), "rules failing to evaluate: {errors:?}");

    for (worker, addr) in workers.iter().zip(&worker_addrs) {
        eprintln!("RSS worker {addr}: {} MiB", rss_mib(worker.0.id()));
    }
    eprintln!("RSS gateway: {} MiB", rss_mib(gateway.pid()));
    drop(prometheus);
    let _ = std::fs::remove_dir_all(dir.join("prometheus-data"));
}
