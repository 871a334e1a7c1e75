//! The OpenAPI 3.1 document of the public listener, served at `GET /api/openapi.json`. It
//! is assembled here from the handlers' `#[utoipa::path]` attributes, the types they read
//! and answer (`ToSchema`) and their error cases ([`super::error::ErrorCase`]), so it
//! follows the code; this module owns only the list of operations, the security schemes
//! and the tags. The internal listener (`/internal/v1/*`) is not public and never listed.
//!
//! `tests/openapi.rs` checks the document against the routes of [`super::configure`] and
//! runs a real validator over it.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::schema::AllOfBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{api, dashboard, demo, error, ops, status, users, ws};
use crate::ingest::validate::{self, MessageIn};

/// The document's definition; [`OpenApi::openapi`] builds it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Herald's public HTTP listener: the WebSocket upgrade for devices, the \
            REST API for producers, and the operations endpoints. `docs/protocol.md` is the \
            full contract (WebSocket frames, close codes, delivery semantics). Every error \
            is JSON `{\"error\":{\"code\":…,\"message\":…}}`; any method or path not listed \
            here answers `404` with code `not_found`."
    ),
    paths(
        ws::upgrade,
        ops::healthz,
        ops::readyz,
        ops::stats,
        ops::metrics,
        dashboard::page,
        dashboard::data,
        api::post_message,
        api::post_batch,
        status::message_status,
        users::history,
        users::presence,
        demo::page,
        demo::client,
        document,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&SecuritySchemes, &MessageRule),
    tags(
        (name = "websocket", description = "Devices: the WebSocket session"),
        (name = "messages", description = "Producers: send messages, follow their delivery"),
        (name = "users", description = "Producers: a user's history and presence"),
        (name = "operations", description = "Health, readiness, stats and metrics"),
        (name = "dashboard", description = "The operators' cluster dashboard"),
        (name = "demo", description = "The demo page and the JS client it uses"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// The credentials the listener accepts, named by the operations' `security` lists.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let bearer = |description: &str| {
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description))
        };
        let schemes = [
            (
                "api_key",
                bearer("A producer API key, one of `auth.api_keys`").build(),
            ),
            (
                "admin_key",
                bearer(
                    "An admin key, one of `auth.admin_keys`. With none configured, the \
                     operator endpoints answer loopback callers only, with no key",
                )
                .build(),
            ),
            (
                "admin_basic",
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "An admin key as the password of HTTP Basic auth (any user name), \
                         which is what a browser sends for the dashboard",
                    ))
                    .build(),
            ),
            (
                "token",
                bearer(
                    "A connection token: a JWT whose `sub` is the user id, or with \
                     `auth.mode = \"http\"` any token the business's auth endpoint accepts",
                )
                .build(),
            ),
        ];
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, scheme) in schemes {
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
        components.add_security_scheme(
            "token_query",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "A connection token (JWT) as `?token=`, for browsers, which cannot set \
                 headers on a WebSocket",
            ))),
        );
    }
}

/// Adds to the derived schema of a message the rule it cannot express: exactly one of `to`
/// and `broadcast` ([`validate::target_rule`]).
struct MessageRule;

impl Modify for MessageRule {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let schemas = &mut doc.components.get_or_insert_with(Default::default).schemas;
        if let Some(schema) = schemas.get_mut(MessageIn::name().as_ref()) {
            let derived = std::mem::take(schema);
            *schema = AllOfBuilder::new()
                .item(derived)
                .item(validate::target_rule())
                .into();
        }
    }
}

/// The document as JSON, built on first use and then served as is.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    // unwrap: the document is plain data with string keys; serializing it cannot fail
    ApiDoc::openapi().to_json().unwrap()
});

/// This document
///
/// The OpenAPI 3.1 document of this listener; public, no key.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi_document",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document", body = Object))
)]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn document() -> Value {
        serde_json::from_str(&DOCUMENT).unwrap()
    }

    #[test]
    fn the_document_builds_as_openapi_3_1_with_every_security_scheme() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["api_key"]["scheme"], "bearer");
        assert_eq!(schemes["admin_key"]["scheme"], "bearer");
        assert_eq!(schemes["admin_basic"]["scheme"], "basic");
        assert_eq!(
            schemes["token"]["scheme"], "bearer",
            "a JWT, or an opaque token in http mode"
        );
        assert_eq!(schemes["token_query"]["in"], "query");
        assert_eq!(schemes["token_query"]["name"], "token");
    }

    #[test]
    fn every_security_requirement_names_a_declared_scheme() {
        let doc = document();
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for requirement in op["security"].as_array().into_iter().flatten() {
                    for name in requirement.as_object().unwrap().keys() {
                        assert!(schemes.contains_key(name), "{method} {path}: {name}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = doc.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "no schema {name}");
        }
    }

    #[test]
    fn the_history_limit_documented_is_the_one_enforced() {
        let doc = document();
        let params = &doc["paths"]["/api/v1/users/{user}/messages"]["get"]["parameters"];
        let limit = params
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        let max = users::MAX_HISTORY_LIMIT as u64;
        assert_eq!(limit["schema"]["maximum"].as_u64(), Some(max));
    }

    #[test]
    fn every_error_response_carries_the_error_body_and_names_its_codes() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    // /readyz answers its 503 with the health body, by design.
                    if !status.starts_with(['4', '5']) || path == "/readyz" {
                        continue;
                    }
                    let text = response.to_string();
                    assert!(
                        text.contains("#/components/schemas/ErrorBody"),
                        "{method} {path} {status}: {text}"
                    );
                    let examples = &response["content"]["application/json"]["examples"];
                    assert!(
                        examples.as_object().is_some_and(|e| !e.is_empty()),
                        "{method} {path} {status} names no error code"
                    );
                }
            }
        }
    }
}
