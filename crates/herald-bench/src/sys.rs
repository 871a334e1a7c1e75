//! What the bench reads from the operating system: the clock, `/proc` memory and limits,
//! and the loopback-only target check.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch; the same clock in every process on the machine, so a
/// send time stamped by the coordinator can be compared with a receive time in a worker.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `VmRSS` of process `pid` in bytes, from `/proc/<pid>/status`.
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system) process `pid` has used, seconds, from `/proc/<pid>/stat`.
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields are counted after its closing paren.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// The soft limit on open files of this process, from `/proc/self/limits`.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Why a `--targets` entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target `{0}` is not host:port")]
    Unresolvable(String),
    #[error("target `{0}` is not a loopback address; the bench only loads 127.0.0.0/8 or ::1")]
    NotLoopback(String),
}

/// Resolves `host:port` to a loopback address (IPv4 preferred), refusing anything else.
pub fn loopback_target(s: &str) -> Result<SocketAddr, TargetError> {
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|_| TargetError::Unresolvable(s.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable(s.to_string()));
    }
    if addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(TargetError::NotLoopback(s.to_string()));
    }
    Ok(addrs
        .iter()
        .find(|a| a.is_ipv4())
        .copied()
        .unwrap_or(addrs[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_accepted_and_others_refused() {
        assert_eq!(
            loopback_target("127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(loopback_target("127.3.4.5:1").is_ok());
        assert!(loopback_target("[::1]:80").is_ok());
        assert!(matches!(
            loopback_target("10.0.0.1:8080"),
            Err(TargetError::NotLoopback(_))
        ));
        assert!(matches!(
            loopback_target("8.8.8.8:53"),
            Err(TargetError::NotLoopback(_))
        ));
        assert!(matches!(
            loopback_target("no-port"),
            Err(TargetError::Unresolvable(_))
        ));
    }

    #[test]
    fn own_memory_and_limits_are_readable() {
        assert!(rss_bytes("self").is_some_and(|b| b > 0));
        assert!(open_files_limit().is_some_and(|n| n > 0));
        assert!(cpu_secs("self").is_some_and(|s| s >= 0.0));
        assert_eq!(rss_bytes("no-such-pid"), None);
    }
}
