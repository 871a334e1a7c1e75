//! `GET /api/openapi.json` on a real node: an OpenAPI 3.1 document that lists exactly the
//! routes `src/http/mod.rs::configure` registers (read from its source, so a new route
//! without a documented operation fails here), never the internal listener, that documents
//! the statuses and error codes the node really answers, and that a real validator accepts.
//!
//! The validator is PyPI's `openapi-spec-validator`, named by
//! `HERALD_TEST_OPENAPI_VALIDATOR` (`./scripts/test.sh` installs it); without it the test
//! fails.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

/// A (method, path template) pair, lowercase method, `{name}` parameters.
type Route = (String, String);

/// The routes `configure` in `src/http/mod.rs` registers: every `.route("PATH", web::METHOD()`.
fn routes_in_source() -> BTreeSet<Route> {
    let source = include_str!("../src/http/mod.rs");
    let start = source
        .find("pub fn configure(")
        .expect("src/http/mod.rs has `pub fn configure(`");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").expect("configure ends")];
    let mut routes = BTreeSet::new();
    let mut rest = body;
    while let Some(at) = rest.find(".route(") {
        rest = rest[at + ".route(".len()..].trim_start();
        let path = rest
            .strip_prefix('"')
            .and_then(|r| r.split_once('"'))
            .map(|(p, _)| p)
            .unwrap_or_else(|| panic!("a `.route(` without a string path: {rest:.60}"));
        let after = rest[path.len() + 2..].trim_start();
        let after = after
            .strip_prefix(',')
            .map(str::trim_start)
            .and_then(|a| a.strip_prefix("web::"))
            .unwrap_or_else(|| panic!("route {path}: expected `, web::<method>()`"));
        let method: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        routes.insert((method, template(path)));
    }
    assert!(routes.len() > 5, "too few routes found: {routes:?}");
    routes
}

/// An actix path as an OpenAPI template: `{id:\d+}` becomes `{id}`.
fn template(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').expect("a closing brace");
        let name = rest[open + 1..close].split(':').next().unwrap_or_default();
        out.push_str(&rest[..open]);
        out.push_str(&format!("{{{name}}}"));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The (method, path) operations of the document.
fn operations(doc: &Value) -> BTreeSet<Route> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            ops.insert((method.clone(), path.clone()));
        }
    }
    ops
}

async fn fetch_document(node: &TestNode) -> Value {
    let (status, doc) = http(&node.url("/api/openapi.json"), None, None).await;
    assert_eq!(status, 200, "{doc}");
    assert!(doc.is_object(), "the document is JSON: {doc}");
    doc
}

#[actix_rt::test]
async fn the_document_lists_exactly_the_public_routes() {
    let node = start_node(&[]).await;
    let doc = fetch_document(&node).await;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi: {version}");

    let routes = routes_in_source();
    let documented = operations(&doc);
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes without an operation in src/http/openapi.rs: {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(
        unrouted.is_empty(),
        "documented operations configure() does not route: {unrouted:?}"
    );
    let text = doc.to_string();
    assert!(!text.contains("/internal"), "the internal listener leaked");
}

#[actix_rt::test]
async fn the_document_passes_openapi_spec_validator() {
    let validator = match std::env::var("HERALD_TEST_OPENAPI_VALIDATOR") {
        Ok(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "HERALD_TEST_OPENAPI_VALIDATOR is not set: this test needs PyPI's \
             openapi-spec-validator (run ./scripts/test.sh, which installs it)"
        ),
    };
    assert!(
        validator.is_file(),
        "{} is missing: run ./scripts/test.sh, which installs openapi-spec-validator",
        validator.display()
    );
    let node = start_node(&[]).await;
    let doc = fetch_document(&node).await;
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("openapi-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = Command::new(&validator)
        .args(["--schema", "3.1", "--validation-errors", "all"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", validator.display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{}: {report}", file.display());
    let _ = std::fs::remove_file(&file);
}

/// One request and the operation it exercises.
struct Case {
    method: &'static str,
    template: &'static str,
    url: String,
    body: Option<Value>,
    key: Option<&'static str>,
}

fn get(template: &'static str, url: impl Into<String>, key: Option<&'static str>) -> Case {
    Case {
        method: "get",
        template,
        url: url.into(),
        body: None,
        key,
    }
}

fn post(template: &'static str, body: Value, key: Option<&'static str>) -> Case {
    Case {
        method: "post",
        template,
        url: template.to_string(),
        body: Some(body),
        key,
    }
}

#[actix_rt::test]
async fn statuses_and_error_codes_the_node_answers_are_documented() {
    let node = start_node(&[]).await;
    let doc = fetch_document(&node).await;
    let token = node.token("alice", 3600);
    let id = node.send("alice", json!(1)).await;
    let (msg, batch) = ("/api/v1/messages", "/api/v1/messages/batch");
    let (status, history) = (
        "/api/v1/messages/{id}/status",
        "/api/v1/users/{user}/messages",
    );
    let presence = "/api/v1/users/{user}/presence";
    let key = Some(API_KEY);
    let wrong = Some("not-a-key-0123456789");
    let admin = Some(ADMIN_KEY);
    let cases = [
        get("/healthz", "/healthz", None),
        get("/readyz", "/readyz", None),
        get("/api/openapi.json", "/api/openapi.json", None),
        get("/api/v1/stats", "/api/v1/stats", admin),
        get("/api/v1/stats", "/api/v1/stats", None),
        get("/api/v1/stats", "/api/v1/stats", wrong),
        get("/metrics", "/metrics", admin),
        get("/metrics", "/metrics", None),
        get("/dashboard", "/dashboard", admin),
        get("/dashboard", "/dashboard", wrong),
        get("/dashboard/data", "/dashboard/data", admin),
        get("/dashboard/data", "/dashboard/data", None),
        post(msg, json!({"to": "alice", "payload": 1}), key),
        post(msg, json!({"to": "alice", "payload": 1}), None),
        post(msg, json!({"to": "alice", "payload": 1}), wrong),
        post(msg, json!({"to": "alice"}), key),
        post(msg, json!({"to": "bad user", "payload": 1}), key),
        post(msg, json!("{"), key),
        post(batch, json!({"messages": [{"to": "a", "payload": 1}]}), key),
        post(batch, json!({"messages": []}), key),
        post(
            batch,
            json!({"messages": [{"to": "a"}, {"to": "b", "payload": 1}]}),
            key,
        ),
        post(batch, json!({"messages": [{"to": "a"}]}), key),
        get(status, format!("/api/v1/messages/{id}/status"), key),
        get(status, "/api/v1/messages/nope/status", key),
        get(status, format!("/api/v1/messages/{}/status", nil_id()), key),
        get(
            history,
            "/api/v1/users/alice/messages?since=0&limit=10",
            key,
        ),
        get(history, "/api/v1/users/alice/messages?limit=0", key),
        get(history, "/api/v1/users/bad%20user/messages", key),
        get(presence, "/api/v1/users/alice/presence", key),
        get(presence, "/api/v1/users/alice/presence", None),
        get("/ws", "/ws", None),
        get("/ws", "/ws?token=not-a-jwt", None),
        get("/ws", format!("/ws?token={token}&since=x"), None),
        get(
            "/ws",
            format!("/ws?token={token}&device=bad%20device"),
            None,
        ),
        get("/ws", format!("/ws?token={token}"), None),
    ];
    for case in cases {
        // `post` sends the JSON text of the value; a JSON string is sent as its contents.
        let body = case.body.as_ref().map(|b| match b {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let (code, answer) = http(&node.url(&case.url), body.as_deref(), case.key).await;
        let answer_text = answer.to_string();
        let what = format!(
            "{} {} -> {code} {:.200}",
            case.method, case.url, answer_text
        );
        let op = &doc["paths"][case.template][case.method];
        assert!(op.is_object(), "{what}: no operation {}", case.template);
        let response = &op["responses"][code.to_string()];
        assert!(
            response.is_object(),
            "{what}: status {code} is not documented"
        );
        if let Some(error) = answer["error"]["code"].as_str() {
            let examples = &response["content"]["application/json"]["examples"];
            assert!(
                examples.get(error).is_some(),
                "{what}: error code {error} is not documented for {code}"
            );
        }
    }
}

/// A well-formed message id no message has.
fn nil_id() -> &'static str {
    "00000000-0000-7000-8000-000000000000"
}
