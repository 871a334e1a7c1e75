//! The `herald` binary: `serve` drains on SIGTERM and exits 0, `token` mints usable tokens,
//! bad configuration fails at startup naming the key, and `bench` hands its arguments to the
//! load generator beside it.

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

/// The `herald` binary alone in a fresh directory (nothing beside it, an empty `PATH`),
/// removed on drop.
struct Lone(std::path::PathBuf);

impl Lone {
    fn new(tag: &str) -> Lone {
        let dir = std::env::temp_dir().join(format!("herald-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A hard link where it can be (the debug binary is large), a copy across devices.
        let (bin, lone) = (env!("CARGO_BIN_EXE_herald"), dir.join("herald"));
        if std::fs::hard_link(bin, &lone).is_err() {
            std::fs::copy(bin, &lone).unwrap();
        }
        Lone(dir)
    }

    fn herald(&self) -> Command {
        let mut c = Command::new(self.0.join("herald"));
        c.env_remove("RUST_LOG").env("PATH", "/nonexistent");
        c
    }
}

impl Drop for Lone {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn bench_hands_its_arguments_to_the_load_generator_beside_it_and_returns_its_exit_code() {
    use std::os::unix::fs::PermissionsExt;
    let lone = Lone::new("bench-found");
    let args_file = lone.0.join("args");
    let fake = lone.0.join("herald-bench");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nexit 7\n",
            args_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = lone
        .herald()
        .args(["bench", "preset", "targeted", "--rate", "100", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let passed = std::fs::read_to_string(&args_file).unwrap();
    assert_eq!(
        passed.lines().collect::<Vec<_>>(),
        ["preset", "targeted", "--rate", "100", "--help"]
    );
}

#[test]
fn bench_without_the_load_generator_says_how_to_build_it_and_exits_one() {
    let lone = Lone::new("bench-missing");
    let out = lone.herald().args(["bench", "run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("herald-bench"), "{err}");
    assert!(
        err.contains("cargo build --release -p herald-bench"),
        "{err}"
    );
}
