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
fn hub_threads_are_own_unless_set_and_only_own_or_workers_are_accepted() {
    let cfg = Config::from_sources(BASE, &BTreeMap::new()).unwrap();
    assert_eq!(cfg.server.hub_threads, HubThreads::Own);
    let on = |v: &str| Config::from_sources(BASE, &env(&[("HERALD_SERVER__HUB_THREADS", v)]));
    assert_eq!(
        on("workers").unwrap().server.hub_threads,
        HubThreads::Workers
    );
    let err = on("both").unwrap_err().to_string();
    assert!(err.contains("hub_threads"), "{err}");
    let text = include_str!("../../config.toml");
    let repo = Config::from_sources(text, &BTreeMap::new()).unwrap();
    assert_eq!(
        repo.server.hub_threads,
        HubThreads::Workers,
        "the embedded single node runs its shards on the workers"
    );
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

#[test]
fn trusted_proxies_parse_addresses_and_cidr_blocks_and_refuse_anything_else() {
    let net: IpNet = "10.0.0.0/8".parse().unwrap();
    assert!(net.contains("10.200.1.1".parse().unwrap()));
    assert!(!net.contains("11.0.0.1".parse().unwrap()));
    assert!(!net.contains("::1".parse().unwrap()));
    let one: IpNet = "192.0.2.7".parse().unwrap();
    assert!(one.contains("192.0.2.7".parse().unwrap()));
    assert!(!one.contains("192.0.2.8".parse().unwrap()));
    let v6: IpNet = "fd00::/8".parse().unwrap();
    assert!(v6.contains("fd12::1".parse().unwrap()));
    let all: IpNet = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("203.0.113.1".parse().unwrap()));
    for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", ""] {
        assert!(bad.parse::<IpNet>().is_err(), "{bad}");
    }
    let env = BTreeMap::from([(
        "HERALD_SERVER__TRUSTED_PROXIES".to_string(),
        r#"["10.0.0.0/8", "not-an-address"]"#.to_string(),
    )]);
    let err = Config::from_sources(BASE, &env).unwrap_err().to_string();
    assert!(err.contains("not-an-address"), "{err}");
}

#[test]
fn leeway_and_token_lifetime_have_upper_bounds() {
    let err = Config::from_sources(BASE, &env(&[("HERALD_AUTH__LEEWAY_S", "301")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("auth.leeway_s"), "{err}");
    assert!(Config::from_sources(BASE, &env(&[("HERALD_AUTH__LEEWAY_S", "300")])).is_ok());
    let err = Config::from_sources(
        BASE,
        &env(&[("HERALD_AUTH__MAX_TOKEN_LIFETIME_S", "999999999999")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("auth.max_token_lifetime_s"), "{err}");
    let err = Config::from_sources(BASE, &env(&[("HERALD_AUTH__ADMIN_KEYS", "[\"short\"]")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("auth.admin_keys"), "{err}");
}

#[test]
fn docker_compose_requires_every_secret_and_its_nodes_start_with_them() {
    use super::secrets::{judge, Verdict};
    let compose = include_str!("../../docker/docker-compose.yml");
    for var in [
        "HERALD_AUTH__JWT_SECRET",
        "HERALD_AUTH__API_KEYS",
        "HERALD_AUTH__ADMIN_KEYS",
        "HERALD_CLUSTER__SECRET",
    ] {
        let line = compose
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{var}:")))
            .unwrap_or_else(|| panic!("docker-compose.yml does not set {var}"));
        assert!(
            line.contains(":?") && !line.contains(":-"),
            "{var} has a default: {line}"
        );
    }
    assert!(
        !compose.contains("change-me"),
        "a dev secret in docker-compose.yml"
    );
    let toml = include_str!("../../docker/herald-cluster.toml");
    let bare = Config::from_sources(toml, &BTreeMap::new()).unwrap();
    assert!(matches!(judge(&bare, false), Verdict::Refuse(_)));
    // What the compose header's `openssl rand -hex` lines produce.
    let cfg = Config::from_sources(
        toml,
        &env(&[
            (
                "HERALD_AUTH__JWT_SECRET",
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            ),
            (
                "HERALD_CLUSTER__SECRET",
                "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
            ),
            (
                "HERALD_AUTH__API_KEYS",
                "[\"fd61a03af4f77d870fc21e05e7e80678\"]",
            ),
            (
                "HERALD_AUTH__ADMIN_KEYS",
                "[\"a4e624d686e03ed2767c0abd85c14426\"]",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(judge(&cfg, false), Verdict::Start);
}
