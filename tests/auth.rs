//! Connection authentication: every kind of bad token is refused with 401 and a JSON body
//! before the upgrade; good tokens connect.

mod common;

use base64::Engine;
use common::*;
use herald::clock::now_s;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn hs(alg: jsonwebtoken::Algorithm, secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn refused(node: &TestNode, query: &str) -> (u16, serde_json::Value) {
    let r = Ws::connect(&node.ws_url(query))
        .await
        .err()
        .expect("connection must be refused");
    (r.status, r.body)
}

#[actix_rt::test]
async fn valid_token_connects_and_gets_welcome_with_user_and_heartbeat() {
    let node = start_node(&[("HERALD_SESSION__HEARTBEAT_MS", "1234")]).await;
    let mut ws = node.connect("alice", "device=phone").await;
    let w = ws.welcome().await;
    assert_eq!(w["user"], "alice");
    assert_eq!(w["heartbeat_ms"], 1234);
    assert_eq!(w["last_seq"], 0);
    assert!(w["session"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(w["node"].as_str().is_some_and(|s| !s.is_empty()));
}

#[actix_rt::test]
async fn token_in_authorization_header_is_accepted_with_any_scheme_case() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let node = start_node(&[]).await;
    let mut req = node.ws_url("device=d1").into_client_request().unwrap();
    req.headers_mut().insert(
        "Authorization",
        format!("bearer {}", node.token("bob", 60)).parse().unwrap(),
    );
    let (inner, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut ws = Ws { inner };
    assert_eq!(ws.welcome().await["user"], "bob");
}

#[actix_rt::test]
async fn missing_token_is_refused_with_401() {
    let node = start_node(&[]).await;
    let (status, body) = refused(&node, "device=a").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "token_missing");
}

#[actix_rt::test]
async fn token_with_bad_signature_is_refused() {
    let node = start_node(&[]).await;
    let t = hs(
        jsonwebtoken::Algorithm::HS256,
        "some-other-secret-0123456789",
        serde_json::json!({"sub": "a", "exp": now_s() + 60}),
    );
    let (status, body) = refused(&node, &format!("token={t}")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "token_invalid");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("signature"));
}

#[actix_rt::test]
async fn expired_token_is_refused() {
    let node = start_node(&[]).await;
    let t = hs(
        jsonwebtoken::Algorithm::HS256,
        SECRET,
        serde_json::json!({"sub": "a", "exp": now_s() - 120}),
    );
    let (status, body) = refused(&node, &format!("token={t}")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "token_expired");
}

#[actix_rt::test]
async fn token_with_another_algorithm_is_refused() {
    let node = start_node(&[]).await;
    let t = hs(
        jsonwebtoken::Algorithm::HS512,
        SECRET,
        serde_json::json!({"sub": "a", "exp": now_s() + 60}),
    );
    let (status, body) = refused(&node, &format!("token={t}")).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("algorithm"),
        "{body}"
    );
}

#[actix_rt::test]
async fn unsigned_alg_none_token_is_refused() {
    let node = start_node(&[]).await;
    let claims = serde_json::json!({"sub": "a", "exp": now_s() + 60}).to_string();
    let t = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims));
    let (status, body) = refused(&node, &format!("token={t}")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "token_invalid");
}

#[actix_rt::test]
async fn token_without_exp_or_with_invalid_subject_is_refused() {
    let node = start_node(&[]).await;
    let no_exp = hs(
        jsonwebtoken::Algorithm::HS256,
        SECRET,
        serde_json::json!({"sub": "a"}),
    );
    assert_eq!(refused(&node, &format!("token={no_exp}")).await.0, 401);
    let bad_sub = hs(
        jsonwebtoken::Algorithm::HS256,
        SECRET,
        serde_json::json!({"sub": "not a user!", "exp": now_s() + 60}),
    );
    let (status, body) = refused(&node, &format!("token={bad_sub}")).await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("subject"));
    assert_eq!(refused(&node, "token=garbage").await.0, 401);
}

#[actix_rt::test]
async fn wrong_audience_is_refused_and_right_audience_accepted() {
    let node = start_node(&[("HERALD_AUTH__AUDIENCE", "herald")]).await;
    let wrong = hs(
        jsonwebtoken::Algorithm::HS256,
        SECRET,
        serde_json::json!({"sub": "a", "exp": now_s() + 60, "aud": "other"}),
    );
    let (status, body) = refused(&node, &format!("token={wrong}")).await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("audience"));
    let missing = hs(
        jsonwebtoken::Algorithm::HS256,
        SECRET,
        serde_json::json!({"sub": "a", "exp": now_s() + 60}),
    );
    assert_eq!(refused(&node, &format!("token={missing}")).await.0, 401);
    let listed = hs(
        jsonwebtoken::Algorithm::HS256,
        SECRET,
        serde_json::json!({"sub": "a", "exp": now_s() + 60, "aud": ["other", "herald"]}),
    );
    let mut ok = Ws::connect(&node.ws_url(&format!("token={listed}")))
        .await
        .unwrap();
    ok.welcome().await;
    // The node's own minter adds the configured audience.
    let mut ws = node.connect("a", "").await;
    ws.welcome().await;
}

#[actix_rt::test]
async fn device_bound_token_refuses_another_device_and_bad_params_get_400() {
    let node = start_node(&[]).await;
    let t = token_for(&node.cfg, "a", Some("phone"), 60);
    let (status, _) = refused(&node, &format!("token={t}&device=laptop")).await;
    assert_eq!(status, 401);
    let mut ok = Ws::connect(&node.ws_url(&format!("token={t}&device=phone")))
        .await
        .unwrap();
    ok.welcome().await;
    let t2 = node.token("a", 60);
    let (status, body) = refused(&node, &format!("token={t2}&device=bad%20device")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_device"))
    );
    let (status, body) = refused(&node, &format!("token={t2}&since=-3")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_since"))
    );
}

#[actix_rt::test]
async fn rs256_and_es256_keys_from_pem_files_verify_tokens() {
    // Key pairs generated once with openssl for this test only.
    let dir = std::env::temp_dir().join(format!("herald-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (alg, gen) in [
        (
            "RS256",
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
        ),
        (
            "ES256",
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
        ),
    ] {
        let key = dir.join(format!("{alg}.key"));
        let pubk = dir.join(format!("{alg}.pub"));
        let mut args = gen.clone();
        args.extend(["-out", key.to_str().unwrap()]);
        let ok = std::process::Command::new("openssl")
            .args(&args)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "openssl genpkey");
        let ok = std::process::Command::new("openssl")
            .args([
                "pkey",
                "-in",
                key.to_str().unwrap(),
                "-pubout",
                "-out",
                pubk.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(ok.success(), "openssl pkey");
        let node = start_node(&[
            ("HERALD_AUTH__JWT_ALGORITHM", alg),
            ("HERALD_AUTH__JWT_PUBLIC_KEY_FILE", pubk.to_str().unwrap()),
            ("HERALD_AUTH__JWT_PRIVATE_KEY_FILE", key.to_str().unwrap()),
        ])
        .await;
        let mut ws = node.connect("k", "").await;
        assert_eq!(ws.welcome().await["user"], "k");
        // An HS256 token signed with the public key as secret (the classic confusion attack).
        let pem = std::fs::read_to_string(&pubk).unwrap();
        let forged = hs(
            jsonwebtoken::Algorithm::HS256,
            &pem,
            serde_json::json!({"sub": "k", "exp": now_s() + 60}),
        );
        assert_eq!(
            refused(&node, &format!("token={forged}")).await.0,
            401,
            "{alg}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
