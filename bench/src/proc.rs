//! Process figures from `/proc`: CPU time and resident memory of the broker under test and of the generator.

use std::fs;

/// Clock ticks per second for `/proc/PID/stat` times (USER_HZ, 100 on every Linux port that runs here).
const TICKS_PER_SEC: f64 = 100.0;

/// User plus system CPU seconds of a process (`"self"` for the generator).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    // After the name: state(3) ... utime(14) stime(15); `rest` starts at field 3.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// A `kB` line of `/proc/PID/status`, such as `VmRSS` or `VmHWM`, in KiB.
pub fn status_kib(pid: &str, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Resets the peak resident set size (`VmHWM`) to the current size, so a scenario sees its own peak.
/// Needs permission to write `/proc/PID/clear_refs` (same user or root); failure is ignored.
pub fn reset_peak(pid: &str) {
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// CPU and memory of one process over a scenario.
pub struct Probe {
    pid: Option<String>,
    /// When the probe started: CPU shares are taken over the whole run, setup included.
    pub started: std::time::Instant,
    cpu0: Option<f64>,
    /// Resident KiB when the probe started.
    pub rss0: Option<u64>,
}

/// What a [`Probe`] saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    /// CPU seconds used during the scenario.
    pub cpu_s: Option<f64>,
    /// Peak resident KiB during the scenario (since the reset at its start).
    pub peak_kib: Option<u64>,
    /// Resident KiB at the end.
    pub rss_kib: Option<u64>,
}

impl Probe {
    /// Starts watching `pid` (or nothing): resets its peak and notes its CPU time.
    pub fn start(pid: Option<&str>) -> Self {
        if let Some(p) = pid {
            reset_peak(p);
        }
        Self {
            pid: pid.map(str::to_owned),
            started: std::time::Instant::now(),
            cpu0: pid.and_then(cpu_seconds),
            rss0: pid.and_then(|p| status_kib(p, "VmRSS")),
        }
    }

    /// Current resident KiB.
    pub fn rss_now(&self) -> Option<u64> {
        self.pid.as_deref().and_then(|p| status_kib(p, "VmRSS"))
    }

    /// The usage so far.
    pub fn usage(&self) -> Usage {
        let Some(pid) = self.pid.as_deref() else { return Usage::default() };
        Usage {
            cpu_s: cpu_seconds(pid).zip(self.cpu0).map(|(b, a)| b - a),
            peak_kib: status_kib(pid, "VmHWM"),
            rss_kib: status_kib(pid, "VmRSS"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let start = cpu_seconds("self").unwrap();
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds("self").unwrap() >= start);
        assert!(status_kib("self", "VmRSS").unwrap() > 100);
        assert!(status_kib("self", "VmHWM").unwrap() >= status_kib("self", "VmRSS").unwrap() / 2);
        assert_eq!(status_kib("self", "NoSuchKey"), None);
    }
}
