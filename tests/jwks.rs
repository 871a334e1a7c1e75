//! JWT mode with a JSON Web Key Set (`auth.jwks_url`) served by the test's identity
//! provider: keys rotate without a restart, a removed key is refused once the set is
//! refreshed, and a flood of unknown `kid`s cannot make Herald fetch more often than
//! `auth.jwks_min_refresh_ms` allows. Keys are generated with openssl for each run.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::auth_endpoint::Endpoint;
use common::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A freshly generated key pair of `alg` ("RS256" or "ES256"), as an encoding key and the
/// public JWK with `kid`.
fn key_pair(dir: &Path, alg: &str, kid: &str) -> (EncodingKey, Value) {
    let file = dir.join(format!("{kid}.key"));
    let gen: &[&str] = if alg == "RS256" {
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ]
    } else {
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ]
    };
    let ok = std::process::Command::new("openssl")
        .args(gen)
        .arg("-out")
        .arg(&file)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(ok.success());
    let pem = std::fs::read(&file).unwrap();
    let (key, a) = if alg == "RS256" {
        (EncodingKey::from_rsa_pem(&pem).unwrap(), Algorithm::RS256)
    } else {
        (EncodingKey::from_ec_pem(&pem).unwrap(), Algorithm::ES256)
    };
    let mut jwk = Jwk::from_encoding_key(&key, a).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    (key, serde_json::to_value(jwk).unwrap())
}

fn token(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, user: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(&header, &json!({"sub": user, "exp": exp}), key).unwrap()
}

fn key_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-jwks-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn jwks_node(ep: &Endpoint, alg: &str, min_refresh_ms: &str) -> TestNode {
    let url = format!("{}/jwks", ep.base);
    start_node(&[
        ("HERALD_AUTH__JWT_ALGORITHM", alg),
        ("HERALD_AUTH__JWKS_URL", &url),
        ("HERALD_AUTH__JWKS_MIN_REFRESH_MS", min_refresh_ms),
    ])
    .await
}

async fn status_of(node: &TestNode, token: &str) -> u16 {
    match Ws::connect(&node.ws_url(&format!("token={token}"))).await {
        Ok(mut ws) => {
            ws.welcome().await;
            101
        }
        Err(r) => r.status,
    }
}

#[actix_rt::test]
async fn keys_rotate_without_a_restart_and_a_removed_key_is_refused_after_refresh() {
    let dir = key_dir("rotate");
    let ep = Endpoint::start();
    let (k1, j1) = key_pair(&dir, "ES256", "k1");
    let (k2, j2) = key_pair(&dir, "ES256", "k2");
    ep.publish(vec![j1.clone()]);
    let node = jwks_node(&ep, "ES256", "200").await;
    assert_eq!(ep.fetches(), 1, "fetched at startup");
    let t1 = token(&k1, Algorithm::ES256, Some("k1"), "alice");
    let t2 = token(&k2, Algorithm::ES256, Some("k2"), "bob");
    assert_eq!(status_of(&node, &t1).await, 101);
    // The provider starts publishing k2: the first k2 token makes Herald refresh.
    ep.publish(vec![j1.clone(), j2.clone()]);
    assert_eq!(
        status_of(&node, &t2).await,
        101,
        "a new kid is fetched on a miss"
    );
    assert_eq!(
        status_of(&node, &t1).await,
        101,
        "both keys while both are published"
    );
    assert_eq!(ep.fetches(), 2);
    // k1 is withdrawn; the next refresh (here: a miss, past the rate limit) drops it.
    ep.publish(vec![j2.clone()]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (k3, _) = key_pair(&dir, "ES256", "k3");
    let unknown = token(&k3, Algorithm::ES256, Some("k3"), "eve");
    assert_eq!(
        status_of(&node, &unknown).await,
        401,
        "unknown after a refresh"
    );
    assert_eq!(ep.fetches(), 3);
    assert_eq!(status_of(&node, &t1).await, 401, "a removed key is refused");
    assert_eq!(status_of(&node, &t2).await, 101);
    let no_kid = token(&k2, Algorithm::ES256, None, "bob");
    assert_eq!(status_of(&node, &no_kid).await, 401, "a token without kid");
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn rs256_keys_come_from_the_set_too() {
    let dir = key_dir("rs");
    let ep = Endpoint::start();
    let (k, j) = key_pair(&dir, "RS256", "rsa-1");
    ep.publish(vec![j]);
    let node = jwks_node(&ep, "RS256", "200").await;
    let t = token(&k, Algorithm::RS256, Some("rsa-1"), "carol");
    assert_eq!(status_of(&node, &t).await, 101);
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_kid_flood_cannot_make_herald_fetch_more_than_the_rate_limit_allows() {
    let dir = key_dir("flood");
    let ep = Endpoint::start();
    let (k, j) = key_pair(&dir, "ES256", "real");
    ep.publish(vec![j]);
    let node = jwks_node(&ep, "ES256", "60000").await;
    assert_eq!(ep.fetches(), 1);
    let bogus = |i: usize| token(&k, Algorithm::ES256, Some(&format!("bogus-{i}")), "mallory");
    // The first unknown kid may refresh the set; once that has answered, every miss of the
    // flood finds the set current and the refresh rate-limited (misses that arrive while a
    // refresh is under way use its result instead, so the flood comes after it).
    assert_eq!(status_of(&node, &bogus(0)).await, 401);
    let floods = (1..200).map(|i| {
        let url = node.ws_url(&format!("token={}", bogus(i)));
        async move { Ws::connect(&url).await.err().map(|r| r.status) }
    });
    let statuses = futures_util::future::join_all(floods).await;
    assert!(statuses.iter().all(|s| *s == Some(401)), "{statuses:?}");
    assert!(
        ep.fetches() <= 2,
        "{} fetches for 200 unknown kids",
        ep.fetches()
    );
    let good = token(&k, Algorithm::ES256, Some("real"), "alice");
    assert_eq!(
        status_of(&node, &good).await,
        101,
        "known keys keep working"
    );
    let (_, stats) = http(&node.url("/api/v1/stats"), None, Some(ADMIN_KEY)).await;
    // Every miss of the flood was turned away by the rate limit, and counted.
    assert!(
        stats["counters"]["jwks_refresh_limited"].as_u64().unwrap() >= 199,
        "{stats}"
    );
    assert_eq!(stats["counters"]["auth_refused"], 200);
    let _ = std::fs::remove_dir_all(&dir);
}
