//! `GET /metrics` against a real node: the Prometheus text a real parser reads, each message
//! counted once, and only for operators.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::json;

/// The samples of `/metrics`, parsed by a Prometheus text-format parser: name -> value.
async fn scrape(node: &TestNode) -> HashMap<String, f64> {
    let (status, text) = http_raw(&node.url("/metrics"), None, Some(ADMIN_KEY)).await;
    assert_eq!(status, 200, "{text}");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("unexpected sample {other:?}"),
            };
            (s.metric, v)
        })
        .collect()
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
    assert_eq!(m["herald_accepted_total"], 3.0, "{m:?}");
    assert_eq!(m["herald_delivered_total"], 3.0);
    assert_eq!(m["herald_sessions_live"], 1.0);
    assert_eq!(m["herald_sessions_opened_total"], 1.0);
    assert!(m["herald_process_resident_memory_bytes"] > 0.0);
    assert!(m["herald_process_open_fds"] > 0.0);
    assert!(m.contains_key("herald_process_cpu_seconds_total"));
    // The same readings as the JSON stats, under the same names.
    let (_, stats) = node.stats().await;
    for (name, v) in stats["counters"].as_object().unwrap() {
        let total = format!("herald_{name}_total");
        let gauge = format!("herald_{name}");
        let got = m.get(&total).or_else(|| m.get(&gauge));
        assert_eq!(got.copied(), v.as_f64(), "{name}");
    }
}

#[actix_rt::test]
async fn metrics_refuse_requests_without_the_admin_key() {
    let node = start_node(&[]).await;
    let (s, v) = http(&node.url("/metrics"), None, None).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "admin_key_missing");
    let (s, v) = http(&node.url("/metrics"), None, Some(API_KEY)).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "admin_key_invalid");
}
