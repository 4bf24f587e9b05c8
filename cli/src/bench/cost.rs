//! What a drain cost: CPU time and resident memory of the processes that did it, read from
//! `/proc` (Linux; elsewhere the columns stay empty). The in-process drain is measured on this
//! process — its CPU time during the drain is the worker's, its memory the growth over the drain
//! (the bench's own data was there before); `sluice work` children are measured each, and their
//! peak is the largest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often resident memory is sampled during a drain.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times: Linux's `USER_HZ`, 100 on every
/// architecture it exposes to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// The cost of one drain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Cost {
    /// CPU seconds (user + system) spent during the drain.
    pub(super) cpu_seconds: f64,
    /// Peak resident memory during the drain, in bytes: of the largest child process, or this
    /// process's growth over the drain.
    pub(super) rss_bytes: u64,
    /// Whether `rss_bytes` is a growth (in-process) rather than a process's whole footprint.
    pub(super) growth: bool,
}

impl Cost {
    /// CPU milliseconds per 1,000 events.
    pub(super) fn cpu_ms_per_1k(&self, events: u64) -> f64 {
        self.cpu_seconds * 1e6 / events.max(1) as f64
    }
}

/// Measures processes from `start` to [`Meter::finish`], sampling memory in the background.
#[derive(Debug)]
pub(super) struct Meter {
    pids: Vec<Option<u32>>,
    cpu_start: f64,
    rss_start: u64,
    peak: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Meter {
    /// Starts measuring this process.
    pub(super) fn this_process() -> Self {
        Self::start(vec![None])
    }

    /// Starts measuring the processes `pids`.
    pub(super) fn processes(pids: impl IntoIterator<Item = u32>) -> Self {
        Self::start(pids.into_iter().map(Some).collect())
    }

    fn start(pids: Vec<Option<u32>>) -> Self {
        let (peak, stop) = (Arc::new(AtomicU64::new(0)), CancellationToken::new());
        let (sampled, until, watched) = (Arc::clone(&peak), stop.clone(), pids.clone());
        tokio::spawn(async move {
            loop {
                let largest = watched.iter().filter_map(|p| rss_bytes(*p)).max().unwrap_or(0);
                sampled.fetch_max(largest, Ordering::Relaxed);
                tokio::select! {
                    () = until.cancelled() => return,
                    () = tokio::time::sleep(SAMPLE_EVERY) => {}
                }
            }
        });
        let cpu_start = pids.iter().filter_map(|p| cpu_seconds(*p)).sum();
        let rss_start = pids.iter().filter_map(|p| rss_bytes(*p)).max().unwrap_or(0);
        Self { pids, cpu_start, rss_start, peak, stop }
    }

    /// The cost so far (`None` where `/proc` cannot be read). Call before the processes exit.
    pub(super) fn finish(self) -> Option<Cost> {
        self.stop.cancel();
        let cpu: Vec<f64> = self.pids.iter().filter_map(|p| cpu_seconds(*p)).collect();
        if cpu.len() != self.pids.len() {
            return None;
        }
        let peak = self.peak.load(Ordering::Relaxed).max(self.pids.iter().filter_map(|p| rss_bytes(*p)).max()?);
        let growth = self.pids == [None];
        let rss_bytes = if growth { peak.saturating_sub(self.rss_start) } else { peak };
        Some(Cost { cpu_seconds: cpu.iter().sum::<f64>() - self.cpu_start, rss_bytes, growth })
    }
}

fn proc_file(pid: Option<u32>, file: &str) -> Option<String> {
    let pid = pid.map_or_else(|| "self".to_owned(), |p| p.to_string());
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = proc_file(pid, "stat")?;
    // The command (field 2) may hold spaces and parentheses: the fields after its last `)` are
    // state (3) … utime (14), stime (15).
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / TICKS_PER_SECOND)
}

/// Resident memory of a process, in bytes.
fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let status = proc_file(pid, "status")?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn this_process_is_measured_while_it_works() {
        let meter = Meter::this_process();
        // Work that takes CPU time and memory the meter must see.
        let mut kept: Vec<Vec<u8>> = Vec::new();
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            kept.push(vec![1u8; 1 << 20]);
            if kept.len() > 64 {
                kept.remove(0);
            }
        }
        tokio::time::sleep(SAMPLE_EVERY * 2).await;
        let cost = meter.finish().expect("/proc is readable here");
        assert!(cost.growth);
        assert!(cost.cpu_seconds > 0.05, "{cost:?}");
        assert!(cost.rss_bytes >= 16 << 20, "64 MiB were held at the peak: {cost:?}");
        assert!(kept.len() <= 65);
        assert!((cost.cpu_ms_per_1k(2_000) - cost.cpu_seconds * 500.0).abs() < 1e-9);
    }
}
