//! Samples a process's resident memory and CPU time from /proc while a
//! run is in progress.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What the broker used during one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// Largest VmRSS seen (anonymous and file-mapped memory; the page cache
    /// of files read with read/pread is not in it).
    pub peak_rss_bytes: u64,
    /// Largest RssAnon seen (heap and stacks).
    pub peak_rss_anon_bytes: u64,
    /// User + system CPU time spent during the run.
    pub cpu_seconds: f64,
    /// `cpu_seconds` over the run's wall time, in percent of one core.
    pub cpu_percent: f64,
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    #[allow(unsafe_code)]
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks.max(1.0))
}

/// Samples every 50 ms until stopped.
pub struct Sampler {
    pid: u32,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    peak_anon: Arc<AtomicU64>,
    cpu_start: f64,
    started: Instant,
    handle: Option<JoinHandle<()>>,
}

impl Sampler {
    pub fn start(pid: Option<u32>) -> Option<Self> {
        let pid = pid?;
        let cpu_start = cpu_seconds(pid)?;
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let peak_anon = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, peak, peak_anon) =
                (Arc::clone(&stop), Arc::clone(&peak), Arc::clone(&peak_anon));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kb) = status_kb(pid, "VmRSS:") {
                        peak.fetch_max(kb * 1024, Ordering::Relaxed);
                    }
                    if let Some(kb) = status_kb(pid, "RssAnon:") {
                        peak_anon.fetch_max(kb * 1024, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Some(Sampler {
            pid,
            stop,
            peak,
            peak_anon,
            cpu_start,
            started: Instant::now(),
            handle: Some(handle),
        })
    }

    pub fn finish(mut self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let cpu = cpu_seconds(self.pid).unwrap_or(self.cpu_start) - self.cpu_start;
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        Usage {
            peak_rss_bytes: self.peak.load(Ordering::Relaxed),
            peak_rss_anon_bytes: self.peak_anon.load(Ordering::Relaxed),
            cpu_seconds: cpu,
            cpu_percent: cpu / wall * 100.0,
        }
    }
}
