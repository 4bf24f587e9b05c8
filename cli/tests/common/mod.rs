//! Helpers shared by the end-to-end tests of the `sluice` binary (each `cli/tests/*.rs` file is
//! its own test crate; not every one uses every helper).
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use couchbase::error::ErrorKind;
use rdkafka::ClientConfig;
use rdkafka::consumer::Consumer;
use serde_json::Value;
use sluice_consumers::sinks::couchbase::service::deadline;
use sluice_consumers::sinks::couchbase::{Couchbase, Error as CbError};
use sluice_tests::domain::Model;
use sluice_tests::{connections, unique};

pub mod analytics;
pub mod clickhouse_rebuild;
pub mod gateway;
pub mod process;
pub mod proxy;
pub mod scale_out;
pub use analytics::assert_analysts_see_the_model;
pub use clickhouse_rebuild::{clickhouse_rebuild, live_log, publish, setup, stdout, text};
pub use process::{cpu_seconds, rss_kib};
pub use scale_out::{await_members, await_owners};

/// The binary under test, on `topology`.
pub fn sluice(topology: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.arg("--topology").arg(topology);
    // A test's own ClickHouse target and database (see `analytics_end_to_end`), if any.
    if let Ok(text) = std::fs::read_to_string(topology.with_file_name("clickhouse.env")) {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                c.env(k, v);
            }
        }
    }
    c
}

/// Runs `cmd`; fails the test with its output unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run sluice");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes `events` as JSON lines to `dir/name`.
pub fn write_jsonl(dir: &Path, name: &str, events: &[&Value]) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).expect("create jsonl");
    for e in events {
        writeln!(f, "{e}").expect("write line");
    }
    path
}

/// Polls `cond` every 100 ms until it holds; after `secs`, fails saying `what` did not happen.
/// Blocking: from an async test, call it where blocking a runtime thread briefly is fine (the
/// tests run on a multi-threaded runtime) or wrap it in `spawn_blocking`.
pub fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}: not within {secs}s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `sluice work`, killed when dropped so a failing test leaves nothing behind.
pub struct WorkerProcess(pub Child);

impl WorkerProcess {
    pub fn start(topology: &Path, projection: &str, crash_after_batches: Option<u64>) -> Self {
        let mut cmd = sluice(topology);
        cmd.stdin(Stdio::null());
        // A short session timeout: a crashed worker's partitions go to the next one in seconds
        // rather than the default 45 s.
        cmd.args(["work", "--projection", projection, "--consumer-config", "session.timeout.ms=6000"])
            .env("SLUICE_LOG", "info");
        if let Some(n) = crash_after_batches {
            cmd.env("SLUICE_FAILPOINT_CRASH_AFTER_BATCHES", n.to_string());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(topology.with_file_name(format!("{projection}.log")))
            .expect("log");
        Self(cmd.stdout(Stdio::piped()).stderr(log).spawn().expect("spawn worker"))
    }

    /// A `sluice work --projection <projection> <args>` with `env` set, its stderr (the log)
    /// appended to `<log>.log` next to the topology (see [`log_of`]).
    pub fn spawn(topology: &Path, projection: &str, args: &[&str], env: &[(&str, String)], log: &str) -> Self {
        let mut cmd = sluice(topology);
        cmd.stdin(Stdio::null()).args(["work", "--projection", projection]).args(args).env("SLUICE_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(topology.with_file_name(format!("{log}.log")))
            .expect("log");
        Self(cmd.stdout(Stdio::piped()).stderr(log).spawn().expect("spawn worker"))
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }

    /// SIGKILL: no drain, no commit, no leaving the group.
    pub fn kill(mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reap");
    }

    /// Waits for the process to exit by itself (the failpoint), up to `secs`.
    pub fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(start.elapsed() < Duration::from_secs(secs), "worker did not exit within {secs}s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then the exit status and stdout (the summary).
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.wait_exit(60);
        let mut out = String::new();
        if let Some(mut s) = self.0.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut s, &mut out);
        }
        (status, out)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The log a worker started with [`WorkerProcess::spawn`]`(.., log)` wrote so far.
pub fn log_of(topology: &Path, log: &str) -> String {
    std::fs::read_to_string(topology.with_file_name(format!("{log}.log"))).unwrap_or_default()
}

/// The documents of every user in the model, read back without their `_sluice` bookkeeping;
/// `None` for a missing document.
pub async fn user_docs(cb: &Couchbase, model: &Model) -> Vec<(String, Option<Value>)> {
    let coll = cb.collection(None, None);
    let mut out = Vec::new();
    for uid in model.users.keys().chain(model.erased.iter()) {
        let got = deadline("get", Duration::from_secs(10), coll.get(format!("user::{uid}"), None)).await;
        let doc = match got {
            Ok(r) => {
                let mut v: Value = r.content_as().expect("json doc");
                if let Some(o) = v.as_object_mut() {
                    o.remove("_sluice");
                }
                Some(v)
            }
            Err(CbError::Couchbase { source, .. }) if source.kind() == &ErrorKind::DocumentNotFound => None,
            Err(e) => panic!("get user::{uid}: {e}"),
        };
        out.push((uid.clone(), doc));
    }
    out
}

/// 8 hex digits, unique per run (prefix of the generated event ids).
pub fn uuid_hex8() -> String {
    unique("x").trim_start_matches("x_")[..8].to_owned()
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The user documents the model expects (`None`: erased).
pub fn expected_user_docs(model: &Model) -> Vec<(String, Option<Value>)> {
    model
        .users
        .iter()
        .map(|(u, d)| (u.clone(), Some(Value::Object(d.clone()))))
        .chain(model.erased.iter().map(|u| (u.clone(), None)))
        .collect()
}

/// Polls until the user documents equal the model, or fails with the first difference.
pub async fn await_user_docs(cb: &Couchbase, model: &Model, secs: u64) {
    let expected = expected_user_docs(model);
    let start = Instant::now();
    loop {
        let got = user_docs(cb, model).await;
        if got == expected {
            return;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let diff = got.iter().zip(&expected).find(|(g, e)| g != e);
            panic!("user documents did not converge within {secs}s; first difference (got, expected): {diff:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the group's committed offsets reach the high watermarks of `topics`: every record
/// published so far was projected and acknowledged.
pub async fn await_caught_up(group: &str, topics: &[String], secs: u64) {
    let brokers = connections().kafka.brokers;
    let (group, topics) = (group.to_owned(), topics.to_vec());
    let check = move || -> Result<(i64, i64), String> {
        let c: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .create()
            .map_err(|e| e.to_string())?;
        let md = c.fetch_metadata(None, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        let mut tpl = rdkafka::TopicPartitionList::new();
        let (mut high_sum, mut committed_sum) = (0, 0);
        for t in md.topics().iter().filter(|t| topics.iter().any(|n| n == t.name())) {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
                high_sum += c.fetch_watermarks(t.name(), p.id(), Duration::from_secs(10)).map_err(|e| e.to_string())?.1;
            }
        }
        for e in c.committed_offsets(tpl, Duration::from_secs(10)).map_err(|e| e.to_string())?.elements() {
            if let rdkafka::Offset::Offset(o) = e.offset() {
                committed_sum += o;
            }
        }
        Ok((committed_sum, high_sum))
    };
    let start = Instant::now();
    loop {
        let c = check.clone();
        let (committed, high) = tokio::task::spawn_blocking(c).await.expect("join").expect("offsets");
        if committed == high {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "not caught up within {secs}s: committed {committed} of {high}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A private ClickHouse 18.16 started by the rig's own script (own data dir and ports), so this
/// test can take it down without touching the shared one.
pub struct PrivateClickHouse {
    dev_dir: PathBuf,
    port: u16,
}

impl PrivateClickHouse {
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
    }

    pub fn dev(&self, args: &[&str]) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(root.join("dev").join(args[0]))
            .args(&args[1..])
            .env("SLUICE_DEV_DIR", &self.dev_dir)
            .env("SLUICE_DEV_CLICKHOUSE_COMPAT_PORT", self.port.to_string())
            .env("SLUICE_DEV_CLICKHOUSE_COMPAT_TCP_PORT", Self::free_port().to_string())
            .status()
            .expect("run dev script");
        assert!(status.success(), "dev/{args:?} failed");
    }

    pub fn start(dir: &Path) -> Self {
        let this = Self { dev_dir: dir.join("dev"), port: Self::free_port() };
        this.dev(&["up", "clickhouse_compat"]);
        this
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        // --purge: its data lives in RAM (see ram_data_dir in dev/lib.sh), not in the test's
        // temporary directory.
        let _ = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../dev/down"))
            .arg("--purge")
            .env("SLUICE_DEV_DIR", &self.dev_dir)
            .status();
    }
}

pub fn metric(addr: &str, name: &str) -> f64 {
    let body = Command::new("curl").args(["-s", &format!("http://{addr}/metrics")]).output().expect("curl").stdout;
    String::from_utf8_lossy(&body)
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The at-least-once ordeal: publishes `events`, runs a worker of `projection` that dies after its
/// first batch write and before committing it, starts a second one, publishes every event again
/// newest first, and returns that worker once its group caught up on `topics`.
pub async fn publish_twice_through_a_crash(
    topology: &Path,
    projection: &str,
    events: &[Value],
    topics: &[String],
) -> WorkerProcess {
    let dir = topology.parent().expect("dir");
    let all: Vec<&Value> = events.iter().collect();
    run_ok(sluice(topology).args(["publish", "--file"]).arg(write_jsonl(dir, "all.jsonl", &all)));
    let mut w = WorkerProcess::start(topology, projection, Some(1));
    assert!(!w.wait_exit(90).success(), "the failpoint kills the worker after its first batch");
    drop(w);
    let w = WorkerProcess::start(topology, projection, None);
    let reversed: Vec<&Value> = events.iter().rev().collect();
    run_ok(sluice(topology).args(["publish", "--file"]).arg(write_jsonl(dir, "again.jsonl", &reversed)));
    await_caught_up(&format!("sluice.{projection}"), topics, 120).await;
    w
}
