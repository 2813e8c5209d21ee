//! What the generator reads from /proc about the process under test and the machine: resident
//! memory and CPU time. Linux only, like the benchmarks.

/// Resident set size of a process in KiB (`VmRSS`), or `None` once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU time of a process, in clock ticks.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The machine's (busy, total) CPU ticks summed over all cores, from /proc/stat.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait are the 4th and 5th columns.
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// A CPU reading to diff against a later one. Ticks are converted to cores through the
/// machine's own tick count, so the tick rate never has to be known.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    process: Option<u64>,
    busy: u64,
    total: u64,
}

impl CpuMark {
    pub fn now(pid: Option<u32>) -> Self {
        let (busy, total) = machine_ticks().unwrap_or((0, 0));
        Self {
            process: pid.and_then(process_ticks),
            busy,
            total,
        }
    }

    /// (cores the process used, cores the whole machine used) since `self`.
    pub fn since(&self, later: &CpuMark) -> (Option<f64>, f64) {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        let per_core = total / cores();
        let process = match (self.process, later.process) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / per_core),
            _ => None,
        };
        let busy = later.busy.saturating_sub(self.busy) as f64 / per_core;
        (process, busy)
    }
}
