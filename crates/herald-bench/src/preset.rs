//! `herald-bench preset <name>`: the benchmark scenarios of the performance targets as named
//! presets, so each is rerun with one command. A preset is a list of `run` flags; flags given
//! after the name are appended and win (`herald-bench preset targeted --rate 20000
//! --server-pid 1234`).

use std::process::ExitCode;

use clap::Parser;

use super::BenchArgs;

/// The scenarios of the performance issue.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// 10 000 idle connections, 10 s idle: server RSS per connection (pass --server-pid).
    Idle,
    /// 10 000 connections, 256 handshakes in flight per worker: connections per second.
    Connect,
    /// One POST per message to one user, 150 000 messages at 15 000/s.
    Targeted,
    /// The batch endpoint, 100 messages per POST, 500 000 messages at 50 000/s.
    Batch,
    /// Broadcast to 10 000 sessions, 500 messages at 50/s.
    Broadcast,
    /// `targeted` against a node on the MongoDB store: 100 000 messages at 10 000/s, from
    /// 128 publishing connections (a store round trip of 5-15 ms needs 50-150 requests in
    /// flight to offer 10 000/s; 32 capped the rate at 32 / the latency).
    MongoTargeted,
    /// `batch` against a node on the MongoDB store: 300 000 messages at 30 000/s (32
    /// publishing connections already keep 3 200 messages in flight; 128 only queued more).
    MongoBatch,
}

impl Preset {
    /// The `run` flags of the preset.
    pub fn flags(self) -> &'static [&'static str] {
        match self {
            Preset::Idle => &["--conns", "10000", "--mode", "none", "--idle-secs", "10"],
            Preset::Connect => &[
                "--conns",
                "10000",
                "--mode",
                "none",
                "--connect-concurrency",
                "256",
            ],
            Preset::Targeted => &[
                "--conns",
                "10000",
                "--mode",
                "targeted",
                "--messages",
                "150000",
                "--rate",
                "15000",
            ],
            Preset::Batch => &[
                "--conns",
                "10000",
                "--mode",
                "batch",
                "--messages",
                "500000",
                "--rate",
                "50000",
                "--batch-size",
                "100",
            ],
            Preset::Broadcast => &[
                "--conns",
                "10000",
                "--mode",
                "broadcast",
                "--messages",
                "500",
                "--rate",
                "50",
            ],
            Preset::MongoTargeted => &[
                "--conns",
                "9000",
                "--mode",
                "targeted",
                "--messages",
                "100000",
                "--rate",
                "10000",
                "--publish-conns",
                "128",
            ],
            Preset::MongoBatch => &[
                "--conns",
                "9000",
                "--mode",
                "batch",
                "--messages",
                "300000",
                "--rate",
                "30000",
                "--batch-size",
                "100",
            ],
        }
    }
}

#[derive(clap::Args)]
pub struct PresetArgs {
    /// The scenario.
    #[arg(value_enum)]
    pub name: Preset,
    /// Further `run` flags; they override the preset's (e.g. --targets, --server-pid).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

/// `run`'s flags on their own, later ones overriding earlier ones.
#[derive(Parser)]
#[command(name = "herald-bench preset", args_override_self = true)]
struct RunFlags {
    #[command(flatten)]
    args: BenchArgs,
}

/// The `run` arguments of a preset and the extra flags.
pub fn bench_args(name: Preset, extra: &[String]) -> Result<BenchArgs, clap::Error> {
    let argv = std::iter::once("herald-bench preset".to_string())
        .chain(name.flags().iter().map(|s| s.to_string()))
        .chain(extra.iter().cloned());
    RunFlags::try_parse_from(argv).map(|f| f.args)
}

pub fn run(p: PresetArgs) -> ExitCode {
    match bench_args(p.name, &p.extra) {
        Ok(args) => {
            eprintln!(
                "bench: preset {:?}: run {}",
                p.name,
                p.name.flags().join(" ")
            );
            super::run(args)
        }
        Err(e) => {
            let _ = e.print();
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_later_flags_override_it() {
        for p in [
            Preset::Idle,
            Preset::Connect,
            Preset::Targeted,
            Preset::Batch,
            Preset::Broadcast,
            Preset::MongoTargeted,
            Preset::MongoBatch,
        ] {
            bench_args(p, &[]).unwrap();
        }
        let a = bench_args(Preset::Targeted, &["--rate".into(), "20000".into()]).unwrap();
        assert_eq!(a.rate, 20000.0);
        assert_eq!(a.messages, 150_000);
        assert_eq!(a.conns, 10_000);
        let b = bench_args(Preset::Broadcast, &[]).unwrap();
        assert_eq!(b.mode, crate::Mode::Broadcast);
        assert!(bench_args(Preset::Idle, &["--nope".into()]).is_err());
    }
}
