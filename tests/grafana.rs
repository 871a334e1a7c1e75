//! The monitoring profile of `docker/` against a real node: every metric the Grafana
//! dashboard (`docker/grafana/dashboards/herald.json`) queries is one `GET /metrics` exports,
//! with the labels the panels select and group by; the dashboard names the provisioned
//! datasource; Prometheus scrapes every compose node's `/metrics` with a bearer credential
//! that the compose file writes where `prometheus.yml` reads it.

mod common;
mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use common::*;
use prometheus_parse::{LineInfo, SampleType, Scrape, Value as PromValue};
use promql::{base_name, grouping_labels, queries, selectors, Query};
use serde_json::{json, Value};

/// Labels Prometheus adds to every scraped series.
const ADDED_LABELS: &[&str] = &["job", "instance"];

/// A file under `docker/`.
fn docker_file(rel: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docker")
        .join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    (path, text)
}

fn dashboard() -> Value {
    let (path, text) = docker_file("grafana/dashboards/herald.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// What a Prometheus server would store from one scrape of a node.
#[derive(Debug, Default)]
struct Exported {
    /// Series names: sample names as scraped (a histogram under its base name, whose
    /// `_bucket`, `_sum` and `_count` series Prometheus stores), plus the families the scrape
    /// declares but has no sample of yet (the per-peer families on a node without peers),
    /// named as their samples will be (a counter's samples end in `_total`).
    names: BTreeSet<String>,
    /// Base names of the histograms.
    histograms: BTreeSet<String>,
    /// Label name -> values seen, by series name (only for names with samples).
    labels: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

async fn scrape(node: &TestNode) -> Exported {
    let (status, text) = http_raw(&node.url("/metrics"), None, Some(ADMIN_KEY)).await;
    assert_eq!(status, 200, "{text}");
    let mut out = Exported::default();
    for line in text.lines() {
        if let LineInfo::Type {
            metric_name,
            metric_alias,
            sample_type,
        } = LineInfo::parse(line)
        {
            let name = match sample_type {
                SampleType::Histogram => {
                    let base = metric_alias.expect("a histogram's base name");
                    out.histograms.insert(base.clone());
                    base
                }
                SampleType::Counter if !metric_name.ends_with("_total") => {
                    format!("{metric_name}_total")
                }
                _ => metric_name,
            };
            out.names.insert(name);
        }
    }
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = Scrape::parse(lines).expect("valid Prometheus text");
    for s in scrape.samples {
        if matches!(s.value, PromValue::Histogram(_)) {
            out.histograms.insert(s.metric.clone());
        }
        let labels = out.labels.entry(s.metric.clone()).or_default();
        for (k, v) in s.labels.iter() {
            labels.entry(k.clone()).or_default().insert(v.clone());
        }
        out.names.insert(s.metric);
    }
    out
}

#[actix_rt::test]
async fn every_metric_the_grafana_dashboard_queries_is_exported_with_the_labels_it_uses() {
    let node = start_node(&[]).await;
    // One live push, so the histograms have samples and every labelled family its rows.
    let mut ws = node.connect("mia", "").await;
    ws.welcome().await;
    node.send("mia", json!({"n": 1})).await;
    assert_eq!(ws.seqs(1).await, vec![1]);
    let exported = scrape(&node).await;
    assert!(
        exported.names.contains("herald_sessions_live")
            && exported
                .histograms
                .contains("herald_pipeline_latency_seconds"),
        "the scrape parsed to {exported:?}"
    );

    let d = dashboard();
    let queries = queries(&d);
    let mut used = BTreeSet::new();
    for Query { place, expr } in &queries {
        let sels = selectors(expr);
        for sel in &sels {
            let (base, suffix) = base_name(&sel.name);
            assert!(
                exported.names.contains(base),
                "{place} queries {}, which Herald does not export (expr: {expr}); exported: {:?}",
                sel.name,
                exported.names
            );
            if suffix.is_some() {
                assert!(
                    exported.histograms.contains(base),
                    "{place} reads {} but {base} is not a histogram (expr: {expr})",
                    sel.name
                );
            }
            used.insert(base.to_string());
            // Labels selected on must exist, and an exact value must be one the node reports.
            let Some(labels) = exported.labels.get(base) else {
                continue; // no samples on a lone node (per-peer families): names only
            };
            for (label, op, value) in &sel.matchers {
                if ADDED_LABELS.contains(&label.as_str()) {
                    continue;
                }
                let values = labels.get(label).unwrap_or_else(|| {
                    panic!("{place} selects {base} by label {label:?}, which it does not have (expr: {expr}); its labels: {:?}", labels.keys())
                });
                if op == "=" {
                    assert!(
                        values.contains(value),
                        "{place} selects {base}{{{label}=\"{value}\"}}, a value Herald never \
                         reports (it reports {values:?}; expr: {expr})"
                    );
                }
            }
        }
        // `by (...)` labels must exist on the one metric the query aggregates.
        if let [sel] = sels.as_slice() {
            let (base, suffix) = base_name(&sel.name);
            if let Some(labels) = exported.labels.get(base) {
                for label in grouping_labels(expr) {
                    let known = ADDED_LABELS.contains(&label.as_str())
                        || (label == "le" && suffix == Some("_bucket"))
                        || labels.contains_key(&label);
                    assert!(
                        known,
                        "{place} groups {base} by {label:?}, a label it does not have (expr: {expr})"
                    );
                }
            }
        }
    }
    // The panels the issue asks for read these families.
    for family in [
        "herald_sessions_live",
        "herald_accepted_total",
        "herald_delivered_total",
        "herald_pipeline_latency_seconds",
        "herald_actor_queue_depth",
        "herald_actor_handled_total",
        "herald_actor_handling_seconds",
        "herald_store_op_seconds",
        "herald_store_op_errors_total",
        "herald_redis_op_seconds",
        "herald_redis_op_errors_total",
        "herald_peer_queue",
        "herald_peer_drops_total",
        "herald_peer_forward_seconds",
        "herald_slow_consumers_total",
        "herald_heartbeat_timeouts_total",
        "herald_sessions_refused_total",
        "herald_users_by_sessions",
        "herald_process_resident_memory_bytes",
        "herald_process_cpu_seconds_total",
        "herald_process_open_fds",
    ] {
        assert!(used.contains(family), "no panel queries {family}");
    }
}

#[test]
fn the_grafana_dashboard_has_a_uid_a_title_and_at_least_ten_panels() {
    let d = dashboard();
    assert_eq!(d["uid"], "herald");
    assert!(
        d["title"].as_str().is_some_and(|t| !t.trim().is_empty()),
        "dashboard title: {}",
        d["title"]
    );
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    fn count(panels: &Value) -> usize {
        panels
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| usize::from(p["type"] != "row") + count(&p["panels"]))
            .sum()
    }
    let n = count(&d["panels"]);
    assert!(n >= 10, "only {n} panels besides rows");
    // Every panel but a row queries something.
    for p in d["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                !expr.trim().is_empty(),
                "panel {} has an empty query",
                p["title"]
            );
        }
    }
}

#[test]
fn every_dashboard_query_names_the_provisioned_prometheus_datasource() {
    let (_, provisioning) = docker_file("grafana/provisioning/datasources/prometheus.yml");
    assert!(provisioning.contains("type: prometheus"), "{provisioning}");
    assert!(
        provisioning.contains("url: http://prometheus:9090"),
        "{provisioning}"
    );
    let uid = provisioning
        .lines()
        .find_map(|l| l.trim().strip_prefix("uid:"))
        .map(|u| u.trim().trim_matches(['"', '\'']).to_string())
        .expect("the datasource has a fixed uid");
    let (_, text) = docker_file("grafana/dashboards/herald.json");
    assert!(
        !text.contains("${DS_"),
        "the dashboard must not need an import-time datasource input"
    );
    let d: Value = serde_json::from_str(&text).unwrap();
    fn check(panels: &Value, uid: &str) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("(untitled)");
            for t in p["targets"].as_array().into_iter().flatten() {
                let ds = if t["datasource"].is_object() {
                    &t["datasource"]
                } else {
                    &p["datasource"]
                };
                assert_eq!(ds["uid"], uid, "panel {title:?}: datasource {ds}");
                assert_eq!(ds["type"], "prometheus", "panel {title:?}: datasource {ds}");
            }
            check(&p["panels"], uid);
        }
    }
    check(&d["panels"], &uid);
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            assert_eq!(
                v["datasource"]["uid"],
                uid.as_str(),
                "variable {}",
                v["name"]
            );
        }
    }
}

#[test]
fn prometheus_scrapes_each_compose_node_metrics_with_a_bearer_credentials_file() {
    let (_, prom) = docker_file("prometheus.yml");
    for needle in [
        "metrics_path: /metrics",
        "herald-1:8080",
        "herald-2:8080",
        "herald-3:8080",
        "authorization:",
        "type: Bearer",
        "scrape_interval: 5s",
    ] {
        assert!(prom.contains(needle), "prometheus.yml lacks {needle:?}");
    }
    let credentials = prom
        .lines()
        .find_map(|l| l.trim().strip_prefix("credentials_file:"))
        .map(str::trim)
        .expect("prometheus.yml reads the key from a credentials_file");
    // The compose file runs Prometheus only in the monitoring profile, with that config, and
    // writes the admin key to the very file the config reads.
    let (_, compose) = docker_file("docker-compose.yml");
    let prometheus = service(&compose, "prometheus");
    assert!(
        prometheus.contains("profiles: [\"monitoring\"]"),
        "{prometheus}"
    );
    assert!(
        prometheus.contains("./prometheus.yml:/etc/prometheus/prometheus.yml:ro"),
        "{prometheus}"
    );
    assert!(
        prometheus.contains(&format!("> {credentials}")),
        "the prometheus service does not write {credentials}: {prometheus}"
    );
    assert!(prometheus.contains("127.0.0.1:9090:9090"), "{prometheus}");
}

#[test]
fn grafana_runs_in_the_monitoring_profile_and_loads_the_dashboard_directory() {
    let (_, compose) = docker_file("docker-compose.yml");
    let grafana = service(&compose, "grafana");
    assert!(grafana.contains("profiles: [\"monitoring\"]"), "{grafana}");
    assert!(grafana.contains("127.0.0.1:3000:3000"), "{grafana}");
    let (_, provider) = docker_file("grafana/provisioning/dashboards/herald.yml");
    let path = provider
        .lines()
        .find_map(|l| l.trim().strip_prefix("path:"))
        .map(str::trim)
        .expect("the dashboard provider names a path");
    assert!(
        grafana.contains(&format!("./grafana/dashboards:{path}:ro")),
        "compose must mount docker/grafana/dashboards at {path}: {grafana}"
    );
    for dir in ["datasources", "dashboards"] {
        let mount = format!("./grafana/provisioning/{dir}:/etc/grafana/provisioning/{dir}:ro");
        assert!(grafana.contains(&mount), "missing {mount}: {grafana}");
    }
    // The cluster's own services stay out of any profile: plain `up` runs exactly them.
    for name in [
        "herald-1", "herald-2", "herald-3", "redis", "mongo", "nginx",
    ] {
        let s = service(&compose, name);
        assert!(!s.contains("profiles:"), "{name} is in a profile: {s}");
    }
}

/// The lines of service `name` in the compose file: `  name:` and the lines indented deeper
/// that follow it.
fn service(compose: &str, name: &str) -> String {
    let header = format!("  {name}:");
    let mut lines = compose.lines().skip_while(|l| *l != header);
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no service {name} in docker-compose.yml"));
    let body = lines.take_while(|l| l.starts_with("    "));
    std::iter::once(first)
        .chain(body)
        .collect::<Vec<_>>()
        .join("\n")
}
