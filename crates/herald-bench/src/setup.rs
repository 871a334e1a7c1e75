//! Checking and resolving the flags of `herald-bench run` before anything starts: loopback
//! targets, ids, token key, API key and admin key (from flags or a Herald config), source addresses
//! and the run id. Bad input is reported here as one line, with exit code 2.

use std::net::SocketAddr;

use super::sys::{loopback_target, rss_bytes, unix_micros};
use super::BenchArgs;
use herald::auth::TokenMinter;
use herald::config::{AuthConfig, Config};
use herald::ids::{DeviceId, UserId};

/// Connections one source address can hold (the ephemeral port range is ~28 000).
const CONNS_PER_SOURCE_ADDR: u64 = 20_000;
/// Connections per worker above which the 20 000 open-file cap gets close.
const WORKER_CONNS_WARN: u64 = 15_000;

/// Flags checked and resolved.
pub struct Setup {
    pub args: BenchArgs,
    pub targets: Vec<SocketAddr>,
    pub api_key: String,
    /// Operator key for the targets' stats, if any.
    pub admin_key: Option<String>,
    /// How workers get the token key: a config path or the secret in their environment.
    pub worker_auth: WorkerAuth,
    pub source_addrs: u8,
    pub run_id: u64,
}

/// How a worker gets the token key.
pub enum WorkerAuth {
    /// Loads this Herald config itself (same key, algorithm, audience and issuer).
    Config(std::path::PathBuf),
    /// An HS256 secret, passed in the worker's environment.
    Secret(String),
}

pub fn setup(args: BenchArgs) -> Result<Setup, String> {
    if args.conns == 0 || args.conns_per_worker == 0 {
        return Err("--conns and --conns-per-worker must be at least 1".into());
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err("--rate must be a positive number of messages per second".into());
    }
    if args.batch_size == 0 || args.publish_conns == 0 || args.timeout_secs == 0 {
        return Err("--batch-size, --publish-conns and --timeout-secs must be at least 1".into());
    }
    let targets = args
        .targets
        .iter()
        .map(|t| loopback_target(t.trim()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    if targets.is_empty() {
        return Err("--targets is empty".into());
    }
    let last_user = format!("{}{}", args.user_prefix, args.conns - 1);
    UserId::parse(&last_user)
        .map_err(|e| format!("--user-prefix gives user `{last_user}`: {e}"))?;
    DeviceId::parse(&args.device).map_err(|e| format!("--device: {e}"))?;
    let (auth, api_key, admin_key, worker_auth) = match &args.config {
        Some(path) => {
            let cfg = Config::load(Some(path)).map_err(|e| e.to_string())?;
            let key = cfg
                .auth
                .api_keys
                .first()
                .cloned()
                .ok_or_else(|| format!("{} has no auth.api_keys", path.display()))?;
            let admin = cfg.auth.admin_keys.first().cloned();
            (cfg.auth, key, admin, WorkerAuth::Config(path.clone()))
        }
        None => (
            AuthConfig {
                jwt_secret: args.jwt_secret.clone(),
                ..Default::default()
            },
            args.api_key.clone(),
            Some(args.admin_key.clone()).filter(|k| !k.is_empty()),
            WorkerAuth::Secret(args.jwt_secret.clone()),
        ),
    };
    TokenMinter::from_config(&auth).map_err(|e| e.to_string())?;
    if let Some(pid) = args.server_pid {
        rss_bytes(&pid.to_string())
            .ok_or_else(|| format!("--server-pid {pid}: cannot read /proc/{pid}/status"))?;
    }
    if args.conns_per_worker > WORKER_CONNS_WARN {
        eprintln!(
            "bench: warning: {} connections per worker is close to the 20 000 open-file cap \
             of a process; connections past it fail with EMFILE",
            args.conns_per_worker
        );
    }
    let source_addrs = match args.source_addrs {
        Some(n) => n.clamp(1, 250),
        None => args.conns.div_ceil(CONNS_PER_SOURCE_ADDR).clamp(1, 250) as u8,
    };
    Ok(Setup {
        targets,
        api_key,
        admin_key,
        worker_auth,
        source_addrs,
        // Distinct per run, so replays of earlier runs' messages are recognised as stale.
        run_id: unix_micros() ^ (u64::from(std::process::id()) << 40),
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn check(flags: &[&str]) -> Result<Setup, String> {
        setup(Cli::parse_from(std::iter::once("bench").chain(flags.iter().copied())).args)
    }

    #[test]
    fn remote_targets_bad_ids_and_zero_rates_are_refused() {
        let refused = |flags: &[&str], needle: &str| match check(flags) {
            Ok(_) => panic!("{flags:?} was accepted"),
            Err(e) => assert!(e.contains(needle), "{flags:?}: {e}"),
        };
        refused(&["--targets", "127.0.0.1:1,10.1.2.3:80"], "not a loopback");
        refused(&["--user-prefix", "bad user"], "--user-prefix");
        refused(&["--device", "a/b"], "--device");
        refused(&["--rate", "0"], "--rate");
        refused(&["--conns", "0"], "--conns");
    }

    #[test]
    fn defaults_use_one_source_address_per_20000_connections() {
        // unwrap: the defaults are valid
        let s = check(&[]).unwrap();
        assert_eq!(
            s.targets,
            vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(s.source_addrs, 1);
        assert!(matches!(s.worker_auth, WorkerAuth::Secret(_)));
        assert_eq!(s.admin_key.as_deref(), Some(crate::DEFAULT_ADMIN_KEY));
        assert_eq!(check(&["--admin-key", ""]).unwrap().admin_key, None);
        assert_eq!(check(&["--conns", "45000"]).unwrap().source_addrs, 3);
        assert_eq!(check(&["--source-addrs", "9"]).unwrap().source_addrs, 9);
    }
}
