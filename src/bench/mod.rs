//! `herald bench`: load generator (placeholder until the bench lands).

use std::process::ExitCode;

/// Arguments of `herald bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

/// Arguments of the hidden `herald bench-worker`.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {}

pub fn run(_args: BenchArgs) -> ExitCode {
    ExitCode::FAILURE
}

pub fn run_worker(_args: WorkerArgs) -> ExitCode {
    ExitCode::FAILURE
}
