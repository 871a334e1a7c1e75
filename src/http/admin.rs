//! Operator access to the operations endpoints that reveal the node's insides
//! (`GET /api/v1/stats`): an admin key when `auth.admin_keys` is set, otherwise a loopback
//! peer only. [`admin_access`] decides from plain inputs; [`check_admin`] feeds it a request.

use actix_web::HttpRequest;

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

/// [`admin_access`] for `req`; a peer address actix cannot tell counts as remote.
pub fn check_admin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let loopback = req.peer_addr().is_some_and(|a| is_loopback(a.ip()));
    admin_access(&state.admin_keys, bearer(req), loopback).map_err(ApiError::from)
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
