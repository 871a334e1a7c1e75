//! `herald-bench run`: load generator that opens many WebSocket clients, publishes through the
//! REST API at a fixed rate and reports throughput, loss, latency and server memory.
//!
//! # How it runs
//!
//! The coordinator (`herald-bench run`) starts `ceil(conns / conns-per-worker)` copies of itself
//! as `herald-bench worker` (one process per ~10 000 sockets: a process may hold at most
//! 20 000 open files). Each worker, on a current-thread runtime, connects its share of users
//! `<user-prefix><i>` from source addresses 127.0.0.2, .3, … (round-robin; with
//! `IP_BIND_ADDRESS_NO_PORT` the port is picked at connect time, so each source address
//! holds ~28 000 connections per target), answers pings, and records the latency of every
//! message frame whose payload carries this run's id. Workers report on stdout as JSON lines
//! (`protocol.rs`); the coordinator drives the phases:
//!
//! 1. **connect**: all workers connect; connect rate = connections / wall seconds.
//! 2. **idle** (`--idle-secs`), then the server's `VmRSS` is read again (`--server-pid`):
//!    memory per connection = (after - before) / connected.
//! 3. **publish** `--messages` at `--rate` msg/s over `--publish-conns` keep-alive HTTP/1.1
//!    connections. `targeted`: one `POST /api/v1/messages` per message, users round-robin
//!    over the connected ones (1 expected delivery each). `batch`: `POST
//!    /api/v1/messages/batch` with `--batch-size` such messages. `broadcast`: one POST of
//!    `{"broadcast":true}` per message (expects one delivery per connected session). `none`:
//!    connect and measure memory only. Payloads are `{"t":<unix µs at send>,"r":<run id>}`
//!    (plus `"p"` padding with `--payload-bytes`).
//! 4. **drain**: wait until every expected delivery arrived, nothing arrived for
//!    `--drain-secs`, or `--timeout-secs` passed; then workers ack what they received (so a
//!    later run does not get it replayed), close, and send their summaries.
//!
//! Every phase is bounded by `--timeout-secs`; workers also exit on their own when their
//! coordinator goes away. Targets must be loopback addresses. Several targets are meant to
//! be nodes of one cluster: against independent nodes a targeted message published on one
//! node for a user connected to another is not delivered, and counts as loss.
//!
//! # Flags (defaults)
//!
//! | flag | meaning |
//! | --- | --- |
//! | `--targets 127.0.0.1:8080` | comma list of loopback `host:port`; sockets and POSTs round-robin |
//! | `-n/--conns 1000` | WebSocket connections; user `i` is `<--user-prefix><i>`, device `--device` |
//! | `--conns-per-worker 10000` | sockets per worker process (hard cap: 20 000 open files) |
//! | `--connect-concurrency 256` | handshakes in flight per worker |
//! | `--source-addrs` | source addresses 127.0.0.2.. (default one per 20 000 conns) |
//! | `--mode targeted` | `targeted`, `batch`, `broadcast` or `none` |
//! | `-m/--messages 10000`, `--rate 1000` | messages to publish, offered msg/s |
//! | `--batch-size 100`, `--publish-conns 32` | messages per batch POST, keep-alive HTTP connections |
//! | `--payload-bytes 0` | padding per payload |
//! | `--server-pid`, `--idle-secs 0` | measure the server's RSS (and CPU), after idling this long |
//! | `--timeout-secs 60`, `--drain-secs 3` | limit of every phase; quiet time that ends the drain |
//! | `--jwt-secret`, `--api-key`, `--admin-key`, `-c/--config` | dev defaults of `config.toml`, or all from a config (its first API and admin key) |
//! | `--token-epoch 0` | mint tokens as issued at this unix second, so two runs send the same tokens (0: now) |
//!
//! `herald-bench preset <idle|connect|targeted|batch|broadcast|mongo-targeted|mongo-batch>
//! [run flags]` runs a named scenario of the performance targets (`preset.rs`).
//!
//! `herald-bench auth-endpoint --listen 127.0.0.1:9100` is a stand-in for a business's auth
//! endpoint that accepts the bench's tokens, to measure `auth.mode = "http"` (see
//! `auth_endpoint.rs`).
//!
//! # Output
//!
//! Once a second on stderr: `bench: <t>s <phase> open=… connected=…/N failed=… sent=…
//! accepted=… received=…`. At the end, one JSON object on one line on stdout (fields in
//! phase order; see `report::Report` for each one's doc):
//!
//! - connect: `conns`, `workers`, `connected`, `connect_failed`, `connect_errors` (by
//!   reason: `fd_limit`, `refused`, `timeout`, `http_401`, …), `connect_secs`,
//!   `connect_rate` (connections/s), `server_cpu_connect_secs`;
//! - memory: `rss_before_bytes`, `rss_after_bytes`, `rss_per_conn_bytes`,
//!   `rss_per_conn_kb` (server, (after - before) / connected; only meaningful against a
//!   freshly started server, since freed memory is reused), `client_rss_per_conn_kb`;
//! - handshakes: `handshake_ms` (TCP connect -> `101`, every opened connection; a SYN
//!   retry after an accept-queue overflow shows as ~1 s), as `{count,p50,p90,p99,p999,max,mean}`;
//! - publish: `messages`, `rate_offered`, `publish_secs`, `publish_rate` (accepted/s),
//!   `accepted`, `rejected`, `publish_failed`, `unsent`, `late_requests` (sent more than
//!   10 ms after they were due because every publishing connection awaited an answer: the
//!   node fell behind, or `--publish-conns` was too few for the latency), `http_status`,
//!   `refusals` (by status and error code, e.g. `429 rate_limited`), `publish_errors`;
//! - delivery: `open_at_publish`, `expected`, `received`, `loss` (expected - received),
//!   `loss_pct`, `stale` (replays of other runs, ignored), `out_of_order`, `disconnects`
//!   (server closes by code, e.g. `close_4002`), `drain_secs`, `deliveries_per_sec`
//!   (received / (last receipt - first send)), `latency_ms` (send -> receipt),
//!   `stored_latency_ms` (send -> the frame's `ts`), `worker_loop_lag_ms` (when high, the
//!   bench itself was short of CPU), each as `{count,p50,p90,p99,p999,max,mean}`;
//! - CPU: `server_cpu_publish_secs`, `publisher_cpu_secs`, `server_cpu_us_per_message`,
//!   `server_cpu_us_per_delivery` (with `--server-pid`), `worker_cpu_secs`;
//! - `offered_rate_held`: accepted/s ≥ 95 % of the offered rate with nothing refused,
//!   failed, unsent or lost (a run that missed it also says so on stderr);
//! - `server_counters`: delta of the targets' `/api/v1/stats` counters (read with
//!   `--admin-key`; absent when a target refuses it); `elapsed_secs`.
//!
//! The exit code is 0 when a report was printed with at least one connection, 1 otherwise,
//! 2 for bad flags.
//!
//! # Example
//!
//! ```text
//! herald-bench run --conns 10000 --server-pid $(pgrep -n herald) --mode targeted \
//!     --messages 150000 --rate 15000
//! ```

pub mod auth_endpoint;
mod conn;
mod coordinator;
mod fleet;
mod frame;
mod histogram;
mod http1;
pub mod preset;
mod protocol;
mod publisher;
mod report;
mod setup;
mod shared;
mod sys;
mod wire;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

pub use histogram::Histogram;

/// Default HS256 secret: the one in the repository's `config.toml`.
pub const DEFAULT_JWT_SECRET: &str = "dev-secret-change-me-0123456789";
/// Default producer API key: the one in the repository's `config.toml`.
pub const DEFAULT_API_KEY: &str = "dev-api-key-change-me";
/// Default operator key (for the targets' `/api/v1/stats`): the one in `config.toml`.
pub const DEFAULT_ADMIN_KEY: &str = "dev-admin-key-change-me";
/// Environment variable that carries the JWT secret to workers (kept out of `ps` output).
/// Deliberately not `HERALD_*`: those are config overrides.
pub const WORKER_SECRET_ENV: &str = "BENCH_WORKER_JWT_SECRET";

/// How messages are published.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One POST per message to one connected user.
    Targeted,
    /// `--batch-size` targeted messages per POST to the batch endpoint.
    Batch,
    /// One broadcast POST per message, delivered to every connected session.
    Broadcast,
    /// Connect (and measure memory) only.
    None,
}

/// Arguments of `herald-bench run`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Server addresses, comma separated (loopback only); connections and publishes are
    /// spread round-robin over them.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8080")]
    pub targets: Vec<String>,
    /// WebSocket connections to open.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub conns: u64,
    /// Connections per worker process (a process may hold at most 20 000 open files).
    #[arg(long, default_value_t = 10_000)]
    pub conns_per_worker: u64,
    /// Mint every token as issued at this unix second (0: now), so that two runs send the
    /// very same tokens (an auth endpoint's cache then answers the second).
    #[arg(long, default_value_t = 0)]
    pub token_epoch: u64,
    /// Concurrent handshakes per worker.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Distinct source addresses (127.0.0.2, 127.0.0.3, …); default one per 20 000 conns.
    #[arg(long)]
    pub source_addrs: Option<u8>,
    /// Publishing mode.
    #[arg(long, value_enum, default_value_t = Mode::Targeted)]
    pub mode: Mode,
    /// Messages to publish (a batch carries `--batch-size` of them).
    #[arg(long, short = 'm', default_value_t = 10_000)]
    pub messages: u64,
    /// Offered rate, messages per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Messages per batch request (`--mode batch`).
    #[arg(long, default_value_t = 100)]
    pub batch_size: u64,
    /// Concurrent keep-alive HTTP connections used for publishing.
    #[arg(long, default_value_t = 32)]
    pub publish_conns: usize,
    /// Extra payload bytes per message (a `"p"` string), to test larger frames.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// Server process id; its VmRSS is read before connecting and after `--idle-secs`.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Seconds to hold the connections idle before measuring memory and publishing.
    #[arg(long, default_value_t = 0)]
    pub idle_secs: u64,
    /// Limit of every phase (connect, publish, drain, finish), seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// After publishing, stop waiting once nothing arrived for this many seconds.
    #[arg(long, default_value_t = 3)]
    pub drain_secs: u64,
    /// Users are `<user-prefix><i>` for i in 0..conns.
    #[arg(long, default_value = "bench-u")]
    pub user_prefix: String,
    /// Device id of every connection (acks are stored per user and device).
    #[arg(long, default_value = "bench")]
    pub device: String,
    /// HS256 secret for connection tokens (ignored with --config).
    #[arg(long, default_value = DEFAULT_JWT_SECRET)]
    pub jwt_secret: String,
    /// Producer API key (ignored with --config, which supplies its first key).
    #[arg(long, default_value = DEFAULT_API_KEY)]
    pub api_key: String,
    /// Operator key for the targets' `/api/v1/stats` counters; empty sends none (a node
    /// without `auth.admin_keys` answers loopback callers). Ignored with --config, which
    /// supplies its first admin key, or none.
    #[arg(long, default_value = DEFAULT_ADMIN_KEY)]
    pub admin_key: String,
    /// Read the token key, API key and admin key from a Herald config file instead.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// Arguments of the hidden `herald-bench worker` (set by the coordinator).
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Worker number, for log lines.
    #[arg(long)]
    pub id: usize,
    /// Resolved loopback targets; connection i goes to `targets[i % len]`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub targets: Vec<SocketAddr>,
    /// Global index of this worker's first user.
    #[arg(long)]
    pub first_user: u64,
    /// Connections this worker opens.
    #[arg(long)]
    pub count: u64,
    #[arg(long)]
    pub user_prefix: String,
    #[arg(long)]
    pub device: String,
    #[arg(long, default_value_t = 1)]
    pub source_addrs: u8,
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Limit of the connect phase, seconds.
    #[arg(long)]
    pub timeout_secs: u64,
    /// Hard lifetime, seconds: the worker reports and exits by then whatever happens.
    #[arg(long)]
    pub max_secs: u64,
    /// Id carried in payloads of this run; frames with another id are stale.
    #[arg(long)]
    pub run_id: u64,
    /// Token key from a Herald config; otherwise from the `BENCH_WORKER_JWT_SECRET` env var.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Issue time of the minted tokens (0: now).
    #[arg(long, default_value_t = 0)]
    pub token_epoch: u64,
}

/// `herald-bench run`.
pub fn run(args: BenchArgs) -> ExitCode {
    coordinator::run(args)
}

/// `herald-bench worker`.
pub fn run_worker(args: WorkerArgs) -> ExitCode {
    worker::run(args)
}
