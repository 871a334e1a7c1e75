//! `GET /metrics` against a real node: the Prometheus text a real parser reads, each message
//! counted once, and only for operators.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::json;

/// One parsed sample: labels and value (a histogram's value is its observation count, read
/// from its `+Inf` bucket).
#[derive(Debug, Clone)]
struct Reading {
    labels: HashMap<String, String>,
    value: f64,
}

/// The samples of `/metrics`, parsed by a Prometheus text-format parser: name -> readings.
async fn scrape(node: &TestNode) -> HashMap<String, Vec<Reading>> {
    let (status, text) = http_raw(&node.url("/metrics"), None, Some(ADMIN_KEY)).await;
    assert_eq!(status, 200, "{text}");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let mut out: HashMap<String, Vec<Reading>> = HashMap::new();
    for s in scrape.samples {
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .expect("a +Inf bucket")
                    .count
            }
            other => panic!("unexpected sample {other:?}"),
        };
        let labels = s
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.entry(s.metric)
            .or_default()
            .push(Reading { labels, value });
    }
    out
}

/// The value of the unlabelled sample `name`.
fn plain(m: &HashMap<String, Vec<Reading>>, name: &str) -> Option<f64> {
    m.get(name)?
        .iter()
        .find(|r| r.labels.is_empty())
        .map(|r| r.value)
}

/// The value of `name` whose label `key` is `value`.
fn labelled(m: &HashMap<String, Vec<Reading>>, name: &str, key: &str, value: &str) -> Option<f64> {
    m.get(name)?
        .iter()
        .find(|r| r.labels.get(key).map(String::as_str) == Some(value))
        .map(|r| r.value)
}

#[actix_rt::test]
async fn metrics_are_prometheus_text_and_count_each_message_once() {
    let node = start_node(&[]).await;
    let mut ws = node.connect("mia", "").await;
    for i in 0..3 {
        node.send("mia", json!(i)).await;
    }
    assert_eq!(ws.seqs(3).await, vec![1, 2, 3]);
    let m = scrape(&node).await;
    let p = |name: &str| plain(&m, name);
    assert_eq!(p("herald_accepted_total"), Some(3.0), "{m:?}");
    assert_eq!(p("herald_delivered_total"), Some(3.0));
    assert_eq!(p("herald_sessions_live"), Some(1.0));
    assert_eq!(p("herald_sessions_opened_total"), Some(1.0));
    assert!(p("herald_process_resident_memory_bytes").unwrap() > 0.0);
    assert!(p("herald_process_open_fds").unwrap() > 0.0);
    assert!(p("herald_process_cpu_seconds_total").is_some());
    // The same readings as the JSON stats, under the same names.
    let (_, stats) = node.stats().await;
    for (name, v) in stats["counters"].as_object().unwrap() {
        let got = p(&format!("herald_{name}_total")).or_else(|| p(&format!("herald_{name}")));
        assert_eq!(got, v.as_f64(), "{name}");
    }
}

#[actix_rt::test]
async fn each_message_is_timed_once_per_pipeline_stage_and_every_actor_type_reports() {
    let node = start_node(&[]).await;
    let mut ws = node.connect("mia", "").await;
    // Live pushes only: a message the session reads from the store (replay) is not timed.
    ws.welcome().await;
    for i in 0..4 {
        node.send("mia", json!(i)).await;
    }
    assert_eq!(ws.seqs(4).await, vec![1, 2, 3, 4]);
    let m = scrape(&node).await;
    let stage = |s: &str| labelled(&m, "herald_pipeline_latency_seconds", "stage", s);
    // One recipient with one device on one node: every stage but forwarding sees each
    // message exactly once.
    for s in ["accepted", "stored", "dispatched", "socket"] {
        assert_eq!(stage(s), Some(4.0), "stage {s}: {m:?}");
    }
    assert_eq!(stage("forwarded"), Some(0.0));
    for actor in [
        "session",
        "hub",
        "dispatch",
        "peer",
        "cursor_writer",
        "group_commit",
        "keeper",
    ] {
        for name in [
            "herald_actor_live",
            "herald_actor_queue_depth",
            "herald_actor_handled_total",
            "herald_actor_errors_total",
            "herald_actor_handling_seconds",
        ] {
            assert!(
                labelled(&m, name, "actor", actor).is_some(),
                "{name}{{actor={actor}}} missing"
            );
        }
    }
    let live = |a: &str| labelled(&m, "herald_actor_live", "actor", a);
    assert_eq!(live("session"), Some(1.0));
    assert_eq!(live("hub"), Some(1.0));
    // Each pushed message was handled by the session actor; nothing waits now.
    assert!(labelled(&m, "herald_actor_handled_total", "actor", "session").unwrap() >= 4.0);
    assert_eq!(
        labelled(&m, "herald_actor_queue_depth", "actor", "session"),
        Some(0.0)
    );
    // The memory store's calls are timed under their operation names.
    assert_eq!(
        labelled(&m, "herald_store_op_seconds", "op", "append"),
        Some(4.0)
    );
    assert_eq!(
        labelled(&m, "herald_users_by_sessions", "sessions", "1"),
        Some(1.0)
    );
}

#[actix_rt::test]
async fn metrics_and_the_dashboard_refuse_requests_without_the_admin_key() {
    let node = start_node(&[]).await;
    let (s, v) = http(&node.url("/metrics"), None, None).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "admin_key_missing");
    let (s, v) = http(&node.url("/metrics"), None, Some(API_KEY)).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "admin_key_invalid");
    for path in ["/dashboard", "/dashboard/data"] {
        let (s, v) = http(&node.url(path), None, None).await;
        assert_eq!(s, 401, "{path}: {v}");
        assert_eq!(v["error"]["code"], "admin_key_missing");
        let (s, v) = http(&node.url(path), None, Some(API_KEY)).await;
        assert_eq!(s, 403, "{path}: {v}");
        let (s, v) = http(&node.url(path), None, Some(ADMIN_KEY)).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
}
