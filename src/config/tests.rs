//! Config loading tests: the repository's files, overrides, errors naming the key.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

const BASE: &str = "[auth]\njwt_secret = \"0123456789abcdef\"\n";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn repository_config_file_is_valid() {
    let text = include_str!("../../config.toml");
    Config::from_sources(text, &BTreeMap::new()).expect("config.toml must load");
}

#[test]
fn docker_cluster_config_file_is_valid() {
    let text = include_str!("../../docker/herald-cluster.toml");
    let cfg =
        Config::from_sources(text, &BTreeMap::new()).expect("docker/herald-cluster.toml must load");
    assert_eq!(cfg.store.backend, StoreBackend::Mongo);
    assert_eq!(cfg.routes.backend, RoutesBackend::Redis);
}

#[test]
fn env_overrides_replace_file_values_with_typed_values() {
    let cfg = Config::from_sources(
        BASE,
        &env(&[
            ("HERALD_SESSION__HEARTBEAT_MS", "500"),
            ("HERALD_AUTH__API_KEYS", "[\"key-aaaaaaaa\"]"),
            ("HERALD_NODE__ID", "n1"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.session.heartbeat_ms, 500);
    assert_eq!(cfg.auth.api_keys, vec!["key-aaaaaaaa".to_string()]);
    assert_eq!(cfg.node.id, "n1");
    let nested = Config::from_sources(BASE, &env(&[("HERALD_ROUTES__KEY_PREFIX", "p1")])).unwrap();
    assert_eq!(nested.routes.key_prefix, "p1");
    let err = Config::from_sources(BASE, &env(&[("HERALD_LOG__LEVEL__X", "1")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("log.level"), "{err}");
}

#[test]
fn unknown_key_fails_naming_the_key() {
    let err = Config::from_sources("[session]\nheartbeat = 3\n", &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("heartbeat"), "{err}");
}

#[test]
fn bad_value_fails_naming_the_key() {
    let err = Config::from_sources(BASE, &env(&[("HERALD_SESSION__OUTBOUND_QUEUE", "0")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("session.outbound_queue"), "{err}");
    let err = Config::from_sources("[auth]\njwt_secret = \"short\"\n", &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("auth.jwt_secret"), "{err}");
    let err = Config::from_sources(BASE, &env(&[("HERALD_SESSION__HEARTBEAT_MS", "\"soon\"")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("heartbeat_ms"), "{err}");
}

#[test]
fn heartbeat_timeout_is_derived_from_heartbeat_when_unset() {
    let cfg =
        Config::from_sources(BASE, &env(&[("HERALD_SESSION__HEARTBEAT_MS", "1000")])).unwrap();
    assert_eq!(cfg.session.heartbeat_timeout(), Duration::from_millis(7000));
}

#[test]
fn internal_body_timeout_is_the_forward_timeout_unless_set() {
    let cfg =
        Config::from_sources(BASE, &env(&[("HERALD_CLUSTER__FORWARD_TIMEOUT_MS", "700")])).unwrap();
    assert_eq!(
        cfg.cluster.internal_body_timeout(),
        Duration::from_millis(700)
    );
    let cfg = Config::from_sources(
        BASE,
        &env(&[("HERALD_CLUSTER__INTERNAL_BODY_TIMEOUT_MS", "250")]),
    )
    .unwrap();
    assert_eq!(
        cfg.cluster.internal_body_timeout(),
        Duration::from_millis(250)
    );
}
