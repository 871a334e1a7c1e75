//! Herald: a clustered WebSocket push service.
//!
//! The library holds everything; `src/main.rs` is a thin wrapper around [`cli::main`].
//! [`server::start`] is the entry point tests use: it takes an already-bound listener, so a
//! test binds `127.0.0.1:0` and knows the address before anything runs.
#![forbid(unsafe_code)]

pub mod actors;
pub mod auth;
pub mod bindings;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod frames;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod redis;
pub mod server;
pub mod store;
