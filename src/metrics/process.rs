//! The node process as the kernel sees it, read from `/proc/self`.

/// The process as the kernel sees it: resident memory (bytes), CPU time (seconds, user +
/// system) and open file descriptors; `None` where `/proc` cannot say (not Linux).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ProcessReadings {
    pub resident_memory_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
}

/// Clock ticks per second of `/proc/<pid>/stat` times: USER_HZ, which Linux fixes at 100 in
/// its ABI on every architecture Herald builds for.
const USER_HZ: f64 = 100.0;

impl ProcessReadings {
    /// Reads `/proc/self` now.
    pub fn now() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        Self {
            resident_memory_bytes: status.as_deref().and_then(rss_bytes),
            cpu_seconds: stat.as_deref().and_then(cpu_seconds),
            open_fds: open_fds(),
        }
    }
}

/// Open file descriptors. Linux 6.2 and later give the count as the size of
/// `/proc/self/fd`, one `stat` instead of listing the directory (10 000 entries with
/// 10 000 sessions, read every second for the dashboard); older kernels say 0 there, and
/// the directory is counted.
fn open_fds() -> Option<u64> {
    let by_size = std::fs::metadata("/proc/self/fd").ok()?.len();
    if by_size > 0 {
        return Some(by_size);
    }
    std::fs::read_dir("/proc/self/fd")
        .ok()
        // The listing holds its own descriptor open while it reads.
        .map(|d| (d.count() as u64).saturating_sub(1))
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
fn rss_bytes(status: &str) -> Option<u64> {
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// utime + stime of a `/proc/<pid>/stat` text, in seconds. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After `)`: field 3 is the state; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_readings_parse_proc_status_and_stat() {
        assert_eq!(
            rss_bytes("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(rss_bytes("Name:\tx\n"), None);
        let stat = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 1";
        assert_eq!(cpu_seconds(stat), Some(2.0));
        let now = ProcessReadings::now();
        assert!(now.resident_memory_bytes.unwrap() > 0);
        assert!(now.open_fds.unwrap() > 0);
        assert!(now.cpu_seconds.is_some());
    }

    #[test]
    fn open_fds_counts_descriptors_this_process_holds() {
        let held: Vec<std::fs::File> = (0..64)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        assert!(open_fds().unwrap() >= held.len() as u64);
    }
}
