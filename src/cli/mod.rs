//! Command line: `herald serve`, `herald token`, `herald auth check` (`auth_check.rs`)
//! and `herald bench` (`bench.rs`: runs the load generator, the `herald-bench` binary).
//! `serve` refuses dev or weak secrets on a listener beyond loopback unless given
//! `--insecure-dev` (the judgement is `config::secrets`).
//!
//! Errors print one line naming what is wrong and exit non-zero: 2 for bad input
//! (arguments, config), 1 for runtime failures.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod auth_check;
mod bench;

use crate::auth::TokenMinter;
use crate::config::secrets::{self, Verdict};
use crate::config::{Config, LogFormat};
use crate::ids::{DeviceId, UserId};

#[derive(Parser)]
#[command(name = "herald", version, about = "Clustered WebSocket push service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Serve {
        /// Config file (TOML); HERALD_SECTION__KEY environment variables override it.
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
        /// Start even with dev or weak secrets on a listener that is not loopback (a loud
        /// warning instead of a refusal). For throwaway setups only.
        #[arg(long, env = INSECURE_DEV_ENV, value_parser = clap::builder::BoolishValueParser::new())]
        insecure_dev: bool,
    },
    /// Print a connection token (JWT) signed with the configured key.
    Token {
        /// User id (the `sub` claim).
        user: String,
        /// Lifetime: a number with s, m, h or d (`90s`, `1h`, `7d`) or plain seconds.
        #[arg(long, default_value = "1h", value_parser = parse_duration_s)]
        ttl: u64,
        /// Bind the token to one device id.
        #[arg(long)]
        device: Option<String>,
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Connection-token tools for operators.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Run the load generator (the `herald-bench` binary, beside this one or on PATH) with
    /// the arguments that follow: `herald bench preset targeted --server-pid <pid>`,
    /// `herald bench run --help`.
    #[command(disable_help_flag = true)]
    Bench {
        /// Arguments for `herald-bench`, passed on unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Run a token through the configured auth mode, as a connect would; prints the
    /// verdict as JSON. Exit 0 accepted, 1 refused, 3 auth service unavailable.
    Check {
        /// The token a client would connect with.
        #[arg(long)]
        token: String,
        /// The device the client would name.
        #[arg(long)]
        device: Option<String>,
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
    },
}

/// Environment variable that acts as `herald serve --insecure-dev` (`1`, `true`, `yes`,
/// `on`). It has no `__`, so it is not a config override.
pub const INSECURE_DEV_ENV: &str = "HERALD_INSECURE_DEV";

/// Parses `90s`, `15m`, `1h`, `7d` or plain seconds; a value whose seconds do not fit a
/// u64 is refused rather than wrapped.
pub fn parse_duration_s(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90s, 15m, 1h or 7d"))?;
    if n == 0 {
        return Err("duration must be positive".into());
    }
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too long to be a duration"))
}

/// Checks a `herald token --ttl` against `auth.max_token_lifetime_s`: nodes refuse a token
/// that expires further ahead, so minting one would only hand out a useless token.
pub fn check_token_ttl(ttl_s: u64, max_lifetime_s: u64) -> Result<(), String> {
    if ttl_s > max_lifetime_s {
        return Err(format!(
            "--ttl {ttl_s}s is longer than auth.max_token_lifetime_s ({max_lifetime_s}s); \
             nodes would refuse the token"
        ));
    }
    Ok(())
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: a log file or a pipeline gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}

fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(Some(path)).map_err(|e| {
        eprintln!("herald: {e}");
        ExitCode::from(2)
    })
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench { args } => bench::run(args),
        Command::Auth {
            command:
                AuthCommand::Check {
                    token,
                    device,
                    config,
                },
        } => match load_config(&config) {
            Ok(mut cfg) => {
                // The check's own log says why a call failed (on a node that is debug level).
                cfg.log.level = "warn,herald::auth=debug".into();
                init_logging(&cfg);
                auth_check::run(&cfg, &token, device.as_deref())
            }
            Err(code) => code,
        },
        Command::Serve {
            config,
            insecure_dev,
        } => {
            let cfg = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(&cfg);
            if !secrets_allow_start(&cfg, insecure_dev) {
                return ExitCode::from(2);
            }
            serve(cfg)
        }
        Command::Token {
            user,
            ttl,
            device,
            config,
        } => {
            let cfg = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Err(e) = check_token_ttl(ttl, cfg.auth.max_token_lifetime_s) {
                eprintln!("herald: {e}");
                return ExitCode::from(2);
            }
            let user = match UserId::parse(&user) {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("herald: invalid user id `{user}`: {e}");
                    return ExitCode::from(2);
                }
            };
            let device = match device
                .map(|d| DeviceId::parse(&d).map_err(|e| (d, e)))
                .transpose()
            {
                Ok(d) => d,
                Err((d, e)) => {
                    eprintln!("herald: invalid device id `{d}`: {e}");
                    return ExitCode::from(2);
                }
            };
            match TokenMinter::from_config(&cfg.auth) {
                Ok(m) => {
                    println!("{}", m.mint(&user, device.as_ref(), ttl));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("herald: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Acts on the startup secret policy (`config::secrets`): prints a refusal, or logs the
/// warnings; false when the node must not start.
fn secrets_allow_start(cfg: &Config, insecure_dev: bool) -> bool {
    match secrets::judge(cfg, insecure_dev) {
        Verdict::Start => true,
        Verdict::Warn(lines) => {
            for line in lines {
                tracing::warn!("{line}");
            }
            true
        }
        Verdict::Insecure(message) => {
            eprintln!("herald: WARNING: {message}");
            tracing::warn!("{message}");
            true
        }
        Verdict::Refuse(message) => {
            eprintln!("herald: {message}");
            false
        }
    }
}

fn serve(cfg: Config) -> ExitCode {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let listener = match std::net::TcpListener::bind(cfg.server.listen) {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "herald: cannot listen on {} (server.listen): {e}",
                    cfg.server.listen
                );
                return ExitCode::from(1);
            }
        };
        match crate::server::start(cfg, listener).await {
            Ok(node) => {
                node.run_until_signal().await;
                ExitCode::SUCCESS
            }
            Err(e @ crate::server::StartError::Store(_)) => {
                eprintln!("herald: {e}");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("herald: {e}");
                ExitCode::from(2)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{check_token_ttl, parse_duration_s};

    #[test]
    fn durations_accept_units_and_reject_garbage() {
        assert_eq!(parse_duration_s("90s"), Ok(90));
        assert_eq!(parse_duration_s("15m"), Ok(900));
        assert_eq!(parse_duration_s("1h"), Ok(3600));
        assert_eq!(parse_duration_s("2d"), Ok(172_800));
        assert_eq!(parse_duration_s("42"), Ok(42));
        assert!(parse_duration_s("soon").is_err());
        assert!(parse_duration_s("0s").is_err());
    }

    #[test]
    fn durations_whose_seconds_overflow_are_refused_not_wrapped() {
        let e = parse_duration_s("99999999999999999d").unwrap_err();
        assert!(e.contains("too long"), "{e}");
        assert!(parse_duration_s("99999999999999999999").is_err());
        assert_eq!(parse_duration_s("18446744073709551615s"), Ok(u64::MAX));
    }

    #[test]
    fn token_ttl_over_the_accepted_lifetime_is_refused() {
        assert!(check_token_ttl(3600, 86_400).is_ok());
        assert!(check_token_ttl(86_400, 86_400).is_ok());
        let e = check_token_ttl(86_401, 86_400).unwrap_err();
        assert!(e.contains("auth.max_token_lifetime_s"), "{e}");
    }
}
