//! `herald-bench`: the load generator's command line. `run` is the coordinator; `worker`
//! (hidden) is one client process the coordinator starts.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "herald-bench",
    version,
    about = "Load generator for Herald: connections, publishing, latency, server memory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a benchmark against one or more nodes.
    Run(herald_bench::BenchArgs),
    /// A named scenario of the performance targets (idle, connect, targeted, batch,
    /// broadcast, mongo-targeted, mongo-batch); flags after the name override it.
    Preset(herald_bench::preset::PresetArgs),
    /// A stand-in auth endpoint answering the bench's tokens, to benchmark
    /// `auth.mode = "http"` (point `auth.http.url` at it).
    AuthEndpoint(herald_bench::auth_endpoint::AuthEndpointArgs),
    /// Internal: one client process (started by `run`).
    #[command(hide = true)]
    Worker(herald_bench::WorkerArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => herald_bench::run(args),
        Command::Worker(args) => herald_bench::run_worker(args),
        Command::Preset(args) => herald_bench::preset::run(args),
        Command::AuthEndpoint(args) => herald_bench::auth_endpoint::run(args),
    }
}
