//! Startup secret policy: a node with a listener that faces the network refuses the
//! repository's dev secrets and weak ones, unless started with `--insecure-dev`; a node on
//! loopback only starts with a warning. Plain functions over [`Config`]; the CLI acts on the
//! [`Verdict`]. Secret values never appear in a message, only the key that holds them.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use super::{Config, JwtAlgorithm, RoutesBackend};

/// The dev values shipped in `config.toml` and `docker/`: fine on a laptop, never on a
/// network. Any value containing [`DEV_MARKER`] counts as one too.
pub const DEV_SECRETS: &[&str] = &[
    "dev-secret-change-me-0123456789",
    "dev-api-key-change-me",
    "dev-admin-key-change-me",
    "dev-cluster-secret-change-me",
];
/// Marks a placeholder secret.
pub const DEV_MARKER: &str = "change-me";

/// What a secret is for, which sets how strong it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// An HMAC key (`auth.jwt_secret`, `cluster.secret`): 32+ bytes, 10+ distinct characters.
    Signing,
    /// A bearer key (`auth.api_keys`, `auth.admin_keys`): 16+ bytes, 8+ distinct characters.
    Bearer,
}

impl SecretKind {
    /// (shortest length in bytes, fewest distinct characters) accepted.
    pub fn minimums(self) -> (usize, usize) {
        match self {
            SecretKind::Signing => (32, 10),
            SecretKind::Bearer => (16, 8),
        }
    }
}

/// Why a secret is not fit for a network-facing node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weakness {
    /// One of [`DEV_SECRETS`], or contains [`DEV_MARKER`].
    Dev,
    /// Empty or whitespace only.
    Blank,
    TooShort {
        min: usize,
    },
    FewDistinct {
        min: usize,
    },
}

impl std::fmt::Display for Weakness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Weakness::Dev => write!(f, "is a dev value (contains `{DEV_MARKER}`)"),
            Weakness::Blank => write!(f, "is blank"),
            Weakness::TooShort { min } => write!(f, "is shorter than {min} bytes"),
            Weakness::FewDistinct { min } => {
                write!(f, "has fewer than {min} distinct characters")
            }
        }
    }
}

/// How `value` falls short for `kind`, if it does (the first reason found).
pub fn weakness(value: &str, kind: SecretKind) -> Option<Weakness> {
    let (min_len, min_distinct) = kind.minimums();
    if DEV_SECRETS.contains(&value) || value.to_ascii_lowercase().contains(DEV_MARKER) {
        Some(Weakness::Dev)
    } else if value.trim().is_empty() {
        Some(Weakness::Blank)
    } else if value.len() < min_len {
        Some(Weakness::TooShort { min: min_len })
    } else if value.chars().collect::<BTreeSet<char>>().len() < min_distinct {
        Some(Weakness::FewDistinct { min: min_distinct })
    } else {
        None
    }
}

/// One weak secret: the config key holding it (with the index for lists) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: String,
    pub weakness: Weakness,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.key, self.weakness)
    }
}

/// Every secret the node uses that is a dev value or weak.
pub fn findings(cfg: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut check = |key: String, value: &str, kind| {
        if let Some(weakness) = weakness(value, kind) {
            out.push(Finding { key, weakness });
        }
    };
    if cfg.auth.jwt_algorithm == JwtAlgorithm::HS256 {
        check(
            "auth.jwt_secret".into(),
            &cfg.auth.jwt_secret,
            SecretKind::Signing,
        );
    }
    for (name, keys) in [
        ("auth.api_keys", &cfg.auth.api_keys),
        ("auth.admin_keys", &cfg.auth.admin_keys),
    ] {
        for (i, k) in keys.iter().enumerate() {
            check(format!("{name}[{i}]"), k, SecretKind::Bearer);
        }
    }
    if cfg.routes.backend == RoutesBackend::Redis {
        check(
            "cluster.secret".into(),
            &cfg.cluster.secret,
            SecretKind::Signing,
        );
    }
    out
}

/// Whether `ip` is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x.y.z).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The node's listeners that are not on loopback (`0.0.0.0` and `::` count as exposed):
/// the public one, and the internal one in cluster mode.
pub fn exposed_listeners(cfg: &Config) -> Vec<(&'static str, SocketAddr)> {
    let mut listeners = vec![("server.listen", cfg.server.listen)];
    if cfg.routes.backend == RoutesBackend::Redis {
        listeners.push(("cluster.internal_listen", cfg.cluster.internal_listen));
    }
    listeners.retain(|(_, addr)| !is_loopback(addr.ip()));
    listeners
}

/// What to do about the node's secrets at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to say.
    Start,
    /// Start, logging each line as a warning (weak secrets on loopback).
    Warn(Vec<String>),
    /// Start because `--insecure-dev` says so, printing this loudly.
    Insecure(String),
    /// Do not start; the message names the keys and the way out.
    Refuse(String),
}

/// Judges `cfg`'s secrets against its listeners; `insecure_dev` is `--insecure-dev` (or
/// `HERALD_INSECURE_DEV=1`).
pub fn judge(cfg: &Config, insecure_dev: bool) -> Verdict {
    let weak = findings(cfg);
    if weak.is_empty() {
        return Verdict::Start;
    }
    let exposed = exposed_listeners(cfg);
    let listed = |sep: &str| {
        weak.iter()
            .map(Finding::to_string)
            .collect::<Vec<_>>()
            .join(sep)
    };
    if exposed.is_empty() {
        let mut lines: Vec<String> = weak
            .iter()
            .map(|f| {
                format!("{f}: acceptable on loopback only; replace it before listening elsewhere")
            })
            .collect();
        lines.sort();
        return Verdict::Warn(lines);
    }
    let where_ = exposed
        .iter()
        .map(|(key, addr)| format!("`{key}` = {addr}"))
        .collect::<Vec<_>>()
        .join(", ");
    if insecure_dev {
        return Verdict::Insecure(format!(
            "INSECURE (--insecure-dev): listening beyond loopback ({where_}) with weak or dev \
             secrets: {}; anyone who knows them can mint tokens, post messages and read stats",
            listed(", ")
        ));
    }
    Verdict::Refuse(format!(
        "refusing to start: {where_} is not a loopback address and {}; set strong secrets \
         (e.g. HERALD_AUTH__JWT_SECRET from `openssl rand -hex 32`), or pass --insecure-dev \
         (HERALD_INSECURE_DEV=1) to run with them anyway",
        listed(", ")
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const STRONG_SIGNING: &str = "c2f1e0d9b8a7968574635241302f1e0d";
    const STRONG_KEY: &str = "k7Hq2xW9pZr4mN8v";

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        let mut env: BTreeMap<String, String> = [
            ("HERALD_AUTH__JWT_SECRET", STRONG_SIGNING),
            ("HERALD_AUTH__API_KEYS", "[\"k7Hq2xW9pZr4mN8v\"]"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            env.insert(k.to_string(), v.to_string());
        }
        Config::from_sources("", &env).unwrap()
    }

    #[test]
    fn dev_values_and_placeholders_are_dev_whatever_their_length() {
        for v in DEV_SECRETS {
            assert_eq!(weakness(v, SecretKind::Bearer), Some(Weakness::Dev), "{v}");
        }
        let placeholder = "my-very-long-production-secret-CHANGE-ME-please";
        assert_eq!(
            weakness(placeholder, SecretKind::Signing),
            Some(Weakness::Dev)
        );
    }

    #[test]
    fn short_blank_and_repetitive_secrets_are_weak() {
        assert_eq!(
            weakness("   \t ", SecretKind::Bearer),
            Some(Weakness::Blank)
        );
        assert_eq!(
            weakness("0123456789abcdef", SecretKind::Signing),
            Some(Weakness::TooShort { min: 32 })
        );
        assert_eq!(
            weakness("abc123", SecretKind::Bearer),
            Some(Weakness::TooShort { min: 16 })
        );
        assert_eq!(
            weakness(&"a".repeat(64), SecretKind::Signing),
            Some(Weakness::FewDistinct { min: 10 })
        );
        assert_eq!(
            weakness("abababababababababab", SecretKind::Bearer),
            Some(Weakness::FewDistinct { min: 8 })
        );
        assert_eq!(weakness(STRONG_SIGNING, SecretKind::Signing), None);
        assert_eq!(weakness(STRONG_KEY, SecretKind::Bearer), None);
    }

    #[test]
    fn findings_name_each_weak_key_and_skip_the_cluster_secret_on_a_single_node() {
        let c = cfg(&[
            (
                "HERALD_AUTH__API_KEYS",
                "[\"k7Hq2xW9pZr4mN8v\", \"dev-api-key-change-me\"]",
            ),
            ("HERALD_AUTH__ADMIN_KEYS", "[\"short-key\"]"),
            ("HERALD_CLUSTER__SECRET", "x"),
        ]);
        let keys: Vec<String> = findings(&c).into_iter().map(|f| f.key).collect();
        assert_eq!(keys, ["auth.api_keys[1]", "auth.admin_keys[0]"]);
        let c = cfg(&[
            ("HERALD_ROUTES__BACKEND", "redis"),
            ("HERALD_CLUSTER__SECRET", "dev-cluster-secret-change-me"),
        ]);
        let keys: Vec<String> = findings(&c).into_iter().map(|f| f.key).collect();
        assert_eq!(keys, ["cluster.secret"]);
    }

    #[test]
    fn only_loopback_listeners_count_as_private() {
        assert!(is_loopback("127.9.8.7".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("0.0.0.0".parse().unwrap()));
        assert!(!is_loopback("::".parse().unwrap()));
        assert!(!is_loopback("10.0.0.5".parse().unwrap()));
        let c = cfg(&[("HERALD_CLUSTER__INTERNAL_LISTEN", "0.0.0.0:8081")]);
        assert!(
            exposed_listeners(&c).is_empty(),
            "internal listener unused on one node"
        );
        let c = cfg(&[
            ("HERALD_ROUTES__BACKEND", "redis"),
            ("HERALD_CLUSTER__SECRET", STRONG_SIGNING),
            ("HERALD_CLUSTER__INTERNAL_LISTEN", "0.0.0.0:8081"),
        ]);
        assert_eq!(exposed_listeners(&c)[0].0, "cluster.internal_listen");
    }

    #[test]
    fn exposed_node_with_dev_secrets_is_refused_unless_insecure_dev() {
        let text = include_str!("../../config.toml");
        let mut env = BTreeMap::new();
        env.insert(
            "HERALD_SERVER__LISTEN".to_string(),
            "0.0.0.0:8080".to_string(),
        );
        let c = Config::from_sources(text, &env).unwrap();
        match judge(&c, false) {
            Verdict::Refuse(m) => {
                for needle in [
                    "server.listen",
                    "auth.jwt_secret",
                    "auth.api_keys[0]",
                    "--insecure-dev",
                ] {
                    assert!(m.contains(needle), "{needle} missing from: {m}");
                }
                assert!(
                    !m.contains("dev-secret-change-me-0123456789"),
                    "leaks the value: {m}"
                );
            }
            v => panic!("not refused: {v:?}"),
        }
        assert!(matches!(judge(&c, true), Verdict::Insecure(m) if m.contains("auth.jwt_secret")));
    }

    #[test]
    fn loopback_node_with_dev_secrets_starts_with_warnings_and_strong_secrets_say_nothing() {
        let c = Config::from_sources(include_str!("../../config.toml"), &BTreeMap::new()).unwrap();
        assert!(matches!(judge(&c, false), Verdict::Warn(l) if l.len() == 3));
        let strong = cfg(&[("HERALD_SERVER__LISTEN", "0.0.0.0:8080")]);
        assert_eq!(judge(&strong, false), Verdict::Start);
    }
}
