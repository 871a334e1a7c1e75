//! `herald auth check --token T`: runs one token through the configured auth mode (JWT
//! key, JWKS, or the auth endpoint) exactly as a connect would, and prints the verdict, for
//! operators debugging logins.

use std::process::ExitCode;
use std::sync::Arc;

use crate::auth::{AuthRequest, Authenticator, Purpose};
use crate::config::Config;
use crate::metrics::Counters;

/// Exit code of a token that was refused (the check itself worked).
const REFUSED: u8 = 1;
/// Exit code when the endpoint or key set could not be reached.
const UNAVAILABLE: u8 = 3;

pub fn run(cfg: &Config, token: &str, device: Option<&str>) -> ExitCode {
    let auth = match Authenticator::from_config(&cfg.auth, Arc::new(Counters::default())) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(2);
        }
    };
    let verdict = actix_rt::System::new().block_on(async {
        auth.start().await;
        auth.verify(AuthRequest {
            token,
            device,
            remote_addr: None,
            since: None,
            purpose: Purpose::Connect,
        })
        .await
    });
    let mode = serde_json::to_value(cfg.auth.mode).unwrap_or_default();
    match verdict {
        Ok(id) => {
            let out = serde_json::json!({
                "verdict": "accepted",
                "mode": mode,
                "user": id.user.as_str(),
                "device": id.device.as_ref().map(|d| d.as_str()),
                "expires_at": id.expires_at,
                "max_sessions": id.max_sessions,
            });
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let out = serde_json::json!({
                "verdict": if e.code() == "auth_unavailable" { "unavailable" } else { "refused" },
                "mode": mode,
                "code": e.code(),
                "message": e.to_string(),
            });
            println!("{out}");
            ExitCode::from(if e.code() == "auth_unavailable" {
                UNAVAILABLE
            } else {
                REFUSED
            })
        }
    }
}
