//! `herald-bench auth-endpoint`: a stand-in for a business's auth endpoint, to benchmark
//! Herald's `auth.mode = "http"` with the bench's own tokens. It answers each call with the
//! `sub` of the token's JWT payload, read without checking the signature (a bench tool, not
//! an example to copy), on keep-alive HTTP/1.1 connections, and prints how many calls it
//! answered once a second when that changed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Largest request read.
const MAX_BODY: usize = 64 * 1024;

#[derive(clap::Args)]
pub struct AuthEndpointArgs {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub listen: SocketAddr,
    /// Extra time each answer takes, ms (an endpoint that looks sessions up in a database).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
}

#[derive(serde::Deserialize)]
struct Call {
    token: String,
}

#[derive(serde::Deserialize)]
struct Payload {
    sub: String,
    exp: u64,
}

pub fn run(args: AuthEndpointArgs) -> ExitCode {
    if !args.listen.ip().is_loopback() {
        eprintln!("herald-bench: --listen must be a loopback address");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("herald-bench: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        eprintln!("auth endpoint on http://{}/", args.listen);
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let n = c.load(Ordering::Relaxed);
                if n != last {
                    eprintln!("calls {n}");
                    last = n;
                }
            }
        });
        let delay = Duration::from_millis(args.delay_ms);
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve(sock, calls.clone(), delay));
        }
    })
}

/// One keep-alive connection: request after request until the peer closes.
async fn serve(sock: TcpStream, calls: Arc<AtomicU64>, delay: Duration) {
    let mut conn = BufReader::new(sock);
    let mut line = String::new();
    loop {
        let mut length = 0usize;
        loop {
            line.clear();
            match conn.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        if length > MAX_BODY {
            return;
        }
        let mut body = vec![0; length];
        if conn.read_exact(&mut body).await.is_err() {
            return;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        calls.fetch_add(1, Ordering::Relaxed);
        let answer = serde_json::from_slice::<Call>(&body)
            .ok()
            .and_then(|c| jsonwebtoken::dangerous::insecure_decode::<Payload>(c.token).ok())
            .map(|t| serde_json::json!({"user": t.claims.sub, "expires_at": t.claims.exp}));
        let (status, text) = match answer {
            Some(a) => ("200 OK", a.to_string()),
            None => ("401 Unauthorized", "{}".to_string()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if conn.get_mut().write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
