//! The configuration files Herald ships for deployment load with the real config loader and
//! pass the node's startup secret check the way their topology runs them: `config.toml`,
//! `docker/herald-cluster.toml` with the environment `docker/docker-compose.yml` gives each
//! node, and what `scripts/cluster.sh configs` writes (its haproxy config is checked by
//! Debian's `haproxy -c`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use herald::config::secrets::{judge, Verdict};
use herald::config::{Config, RoutesBackend, StoreBackend};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap()
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The `HERALD_*` variables docker-compose.yml sets on a node, with strong secrets.
fn compose_env(node: &str) -> BTreeMap<String, String> {
    let compose = read("docker/docker-compose.yml");
    for key in [
        "HERALD_AUTH__JWT_SECRET",
        "HERALD_AUTH__API_KEYS",
        "HERALD_AUTH__ADMIN_KEYS",
        "HERALD_CLUSTER__SECRET",
        "HERALD_NODE__ID",
        "HERALD_CLUSTER__INTERNAL_ADVERTISE",
    ] {
        assert!(
            compose.contains(key),
            "docker-compose.yml no longer sets {key}"
        );
    }
    env(&[
        (
            "HERALD_AUTH__JWT_SECRET",
            "7f3a9c1e5b2d8f4a6c0e9b3d7a1f5c2e8b4d6a0f",
        ),
        ("HERALD_AUTH__API_KEYS", r#"["9d4b2f7a1c8e3b6d0f5a"]"#),
        ("HERALD_AUTH__ADMIN_KEYS", r#"["e2c7a9f4b1d6083c5e7a"]"#),
        (
            "HERALD_CLUSTER__SECRET",
            "a8f1c6e3b9d2074f5c1e8a3b6d9f2c5e0a7b4d1f",
        ),
        ("HERALD_NODE__ID", node),
        (
            "HERALD_CLUSTER__INTERNAL_ADVERTISE",
            &format!("{node}:8081"),
        ),
    ])
}

#[test]
fn the_single_node_config_loads_and_starts_on_loopback() {
    let cfg = Config::from_sources(&read("config.toml"), &BTreeMap::new()).unwrap();
    assert_eq!(cfg.store.backend, StoreBackend::Memory);
    assert!(cfg.server.listen.ip().is_loopback());
    assert!(
        matches!(judge(&cfg, false), Verdict::Warn(_)),
        "dev secrets warn on loopback"
    );
}

#[test]
fn the_docker_cluster_config_loads_with_the_compose_environment() {
    let text = read("docker/herald-cluster.toml");
    let cfg = Config::from_sources(&text, &compose_env("herald-2")).unwrap();
    assert_eq!(cfg.node.id, "herald-2");
    assert_eq!(cfg.cluster.internal_advertise, "herald-2:8081");
    assert_eq!(cfg.store.backend, StoreBackend::Mongo);
    assert_eq!(cfg.routes.backend, RoutesBackend::Redis);
    assert!(matches!(judge(&cfg, false), Verdict::Start));
    // Without the secrets compose requires, the file alone must refuse to listen on 0.0.0.0.
    let bare = Config::from_sources(&text, &BTreeMap::new()).unwrap();
    assert!(matches!(judge(&bare, false), Verdict::Refuse(_)));
}

/// A fresh state directory under target/tmp for one test.
fn state_dir(name: &str) -> PathBuf {
    let dir = Path::new(ROOT)
        .join("target/tmp")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_local_cluster_configs_load_and_haproxy_accepts_its_config() {
    let dir = state_dir("cluster-configs");
    let out = Command::new(Path::new(ROOT).join("scripts/cluster.sh"))
        .arg("configs")
        .env("HERALD_CLUSTER_DIR", &dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cluster.sh configs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let etc = dir.join("etc");
    let mut ids = Vec::new();
    let mut internal = Vec::new();
    for n in ["node1", "node2", "node3"] {
        let text = std::fs::read_to_string(etc.join(format!("{n}.toml"))).unwrap();
        let cfg = Config::from_sources(&text, &BTreeMap::new()).unwrap();
        assert!(
            matches!(judge(&cfg, false), Verdict::Start),
            "{n}: strong secrets"
        );
        assert_eq!(cfg.store.backend, StoreBackend::Mongo);
        assert_eq!(cfg.routes.backend, RoutesBackend::Redis);
        assert!(cfg.server.drain_close_rate > 0, "{n}: a spread drain");
        ids.push(cfg.node.id.clone());
        internal.push(cfg.cluster.internal_listen);
    }
    assert_eq!(ids, ["node1", "node2", "node3"]);
    let haproxy_cfg = std::fs::read_to_string(etc.join("haproxy.cfg")).unwrap();
    for addr in &internal {
        assert!(
            !haproxy_cfg.contains(&addr.to_string()),
            "haproxy must not reach the internal listener {addr}"
        );
    }
    let check = Command::new("haproxy")
        .args(["-c", "-f"])
        .arg(etc.join("haproxy.cfg"))
        .output()
        .expect("haproxy is not installed: run ./scripts/test.sh (it installs Debian's haproxy)");
    assert!(
        check.status.success(),
        "haproxy -c refused the config: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
