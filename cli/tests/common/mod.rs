//! Helpers shared by the end-to-end tests of the `sluice` binary (each `cli/tests/*.rs` file is
//! its own test crate; not every one uses every helper).
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use couchbase::error::ErrorKind;
use serde_json::Value;
use sluice_consumers::sinks::couchbase::service::deadline;
use sluice_consumers::sinks::couchbase::{Couchbase, Error as CbError};
use sluice_tests::domain::Model;
use sluice_tests::unique;

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
