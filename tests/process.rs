//! The `herald` binary: `serve` drains on SIGTERM and exits 0, `token` mints usable tokens,
//! and bad configuration fails at startup naming the key.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn herald() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herald"));
    c.env_remove("RUST_LOG");
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");

#[actix_rt::test]
async fn serve_drains_on_sigterm_closing_sessions_with_1012_and_exits_zero() {
    let port = free_port();
    let mut child = herald()
        .args(["serve", "--config", CONFIG])
        .env("HERALD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("HERALD_SERVER__WORKERS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    eventually("node answers /healthz", || {
        let url = format!("{base}/healthz");
        async move {
            tokio::net::TcpStream::connect(
                url.trim_start_matches("http://")
                    .trim_end_matches("/healthz"),
            )
            .await
            .is_ok()
        }
    })
    .await;
    let out = herald()
        .args(["token", "zed", "--ttl", "10m", "--config", CONFIG])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut ws = Ws::connect(&format!("ws://127.0.0.1:{port}/ws?token={token}"))
        .await
        .unwrap();
    assert_eq!(ws.welcome().await["user"], "zed");
    let (s, _) = http(&format!("{base}/readyz"), None, None).await;
    assert_eq!(s, 200);
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let (code, _) = ws.expect_close().await;
    assert_eq!(code, 1012);
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "herald did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn invalid_config_fails_at_startup_naming_the_key() {
    let out = herald()
        .args(["serve", "--config", CONFIG])
        .env("HERALD_SESSION__OUTBOUND_QUEUE", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("session.outbound_queue"), "{err}");
    let out = herald()
        .args(["serve", "--config", "/nonexistent/herald.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/herald.toml"));
}

#[test]
fn token_command_rejects_bad_user_and_ttl() {
    let out = herald()
        .args(["token", "bad user", "--config", CONFIG])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid user id"));
    let out = herald()
        .args(["token", "u", "--ttl", "soon", "--config", CONFIG])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("duration"));
}

#[test]
fn minted_token_carries_user_device_and_expiry() {
    let out = herald()
        .args([
            "token", "amy", "--ttl", "2h", "--device", "tablet", "--config", CONFIG,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    let cfg = herald::config::Config::load(Some(std::path::Path::new(CONFIG))).unwrap();
    let id = herald::auth::TokenVerifier::from_config(&cfg.auth)
        .unwrap()
        .verify(token.trim())
        .unwrap();
    assert_eq!(id.user.as_str(), "amy");
    assert_eq!(id.device.unwrap().as_str(), "tablet");
    let left = id.expires_at - herald::clock::now_s();
    assert!((7190..=7200).contains(&left), "{left}");
}
