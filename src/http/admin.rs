//! Operator access to the operations endpoints that reveal the node's insides
//! (`/api/v1/stats`, `/metrics`, `/dashboard`): an admin key when `auth.admin_keys` is set,
//! otherwise a loopback peer only. The key comes as a bearer token or, for a browser opening
//! the dashboard, as the password of HTTP Basic auth (any user name). [`admin_access`]
//! decides from plain inputs; [`check_admin`] feeds it a request.

use actix_web::http::header;
use actix_web::HttpRequest;
use base64::Engine;

use super::error::ApiError;
use super::{bearer, AppState};
use crate::auth::ApiKeys;
use crate::config::secrets::is_loopback;

/// Why an operator request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRefusal {
    /// Admin keys are configured and the request carries no bearer key (401).
    KeyMissing,
    /// The bearer key is not one of the admin keys (403).
    KeyInvalid,
    /// No admin key is configured and the caller is not on loopback (403).
    Disabled,
}

/// Decides operator access. `keys` are the configured admin keys (compared in constant
/// time), `bearer` the request's bearer key, `peer_loopback` whether the TCP peer (never a
/// forwarded header) is a loopback address. With keys configured a key is always needed,
/// from loopback too.
pub fn admin_access(
    keys: &ApiKeys,
    bearer: Option<&str>,
    peer_loopback: bool,
) -> Result<(), AdminRefusal> {
    if keys.is_empty() {
        return if peer_loopback {
            Ok(())
        } else {
            Err(AdminRefusal::Disabled)
        };
    }
    match bearer {
        None => Err(AdminRefusal::KeyMissing),
        Some(k) if keys.accepts(k.as_bytes()) => Ok(()),
        Some(_) => Err(AdminRefusal::KeyInvalid),
    }
}

/// The password of an `Authorization: Basic …` value (`None` when it is not one).
pub fn basic_password(value: &str) -> Option<String> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string())
}

/// [`admin_access`] for `req`; a peer address actix cannot tell counts as remote.
pub fn check_admin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let loopback = req.peer_addr().is_some_and(|a| is_loopback(a.ip()));
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(basic_password);
    let key = bearer(req).or(basic.as_deref());
    admin_access(&state.admin_keys, key, loopback).map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_admin_keys_are_required_even_from_loopback() {
        let keys = ApiKeys::new(&["admin-key-0123456789".into()]);
        assert_eq!(
            admin_access(&keys, None, true),
            Err(AdminRefusal::KeyMissing)
        );
        assert_eq!(
            admin_access(&keys, Some("admin-key-012345678"), true),
            Err(AdminRefusal::KeyInvalid)
        );
        assert_eq!(
            admin_access(&keys, Some("admin-key-0123456789"), false),
            Ok(())
        );
    }

    #[test]
    fn basic_auth_gives_its_password_and_anything_else_gives_none() {
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let v = format!("Basic {}", enc("ops:admin-key:with-colon"));
        assert_eq!(basic_password(&v).as_deref(), Some("admin-key:with-colon"));
        assert_eq!(
            basic_password(&format!("basic {}", enc(":k"))).as_deref(),
            Some("k")
        );
        assert_eq!(basic_password(&format!("Basic {}", enc("no-colon"))), None);
        assert_eq!(basic_password("Basic !!!"), None);
        assert_eq!(basic_password("Bearer abc"), None);
    }

    #[test]
    fn without_admin_keys_only_loopback_peers_are_answered() {
        let none = ApiKeys::new(&[]);
        assert_eq!(admin_access(&none, None, true), Ok(()));
        assert_eq!(admin_access(&none, Some("anything"), true), Ok(()));
        assert_eq!(
            admin_access(&none, None, false),
            Err(AdminRefusal::Disabled)
        );
        assert_eq!(
            admin_access(&none, Some("anything"), false),
            Err(AdminRefusal::Disabled)
        );
    }
}
