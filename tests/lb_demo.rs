//! The README's walk-through, run by a test: `scripts/cluster.sh up`, the demo page opened
//! in headless Chromium through haproxy with the link the script prints, messages posted
//! through haproxy, the node the page is connected to restarted (`cluster.sh restart`)
//! while posting goes on, and the page ends showing every accepted message once, in seq
//! order, connected again.

mod common;
#[path = "js_client/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use common::lb::Cluster;
use harness::Browser;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

async fn page(b: &mut Browser) -> Value {
    let fields = json!({"state": "#state", "node": "#node", "messages": "#messages",
                        "reconnects": "#reconnects", "errors": "#errors"});
    b.ask(json!({"cmd": "text", "selectors": fields})).await
}

async fn post(cluster: &Cluster, n: u32, accepted: &RefCell<Vec<u32>>) {
    let body = json!({"to": "walker", "topic": "demo", "payload": {"n": n}}).to_string();
    if let Some((202, _)) = cluster.post("/api/v1/messages", &body).await {
        accepted.borrow_mut().push(n);
    }
}

#[actix_rt::test]
async fn the_demo_page_through_haproxy_keeps_receiving_while_its_node_restarts() {
    let cluster = Cluster::up("lb-demo");
    let link = format!("/demo#token={}&device=tab", cluster.token("walker"));
    let mut b = Browser::open(&format!("http://127.0.0.1:{}", cluster.port), &link).await;
    b.ask(json!({"cmd": "click", "selector": "#connect"})).await;
    let deadline = Instant::now() + LIMIT;
    while page(&mut b).await["text"]["state"] != "open" {
        assert!(
            Instant::now() < deadline,
            "the page did not connect through haproxy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = page(&mut b).await["text"]["node"]
        .as_str()
        .unwrap()
        .to_string();
    let accepted = RefCell::new(Vec::new());
    for n in 0..3 {
        post(&cluster, n, &accepted).await;
    }
    // Restart the page's node while posting goes on, one message every 100 ms.
    let posting = async {
        for n in 3..60 {
            post(&cluster, n, &accepted).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    futures_util::join!(cluster.restart(&first), posting);
    let want = accepted.borrow().clone();
    assert!(want.len() >= 50, "haproxy kept accepting posts: {want:?}");
    let deadline = Instant::now() + LIMIT;
    let shown = loop {
        let p = page(&mut b).await;
        if p["text"]["messages"].as_str() == Some(want.len().to_string().as_str()) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the page shows {p:#} of {} messages",
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let t = &shown["text"];
    assert_eq!(t["state"], "open", "{shown:#}");
    assert_ne!(
        t["reconnects"], "0",
        "the restart moved the page: {shown:#}"
    );
    assert_eq!(t["errors"], "0", "{shown:#}");
    // Rows are newest first: seq, topic, payload.
    let rows = shown["rows"].as_array().unwrap();
    let seqs: Vec<u64> = rows
        .iter()
        .rev()
        .map(|r| r[0].as_str().unwrap().parse().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=want.len() as u64).collect();
    assert_eq!(seqs, expected, "every accepted message once, in order");
    let payloads: Vec<u32> = rows
        .iter()
        .rev()
        .map(|r| {
            serde_json::from_str::<Value>(r[2].as_str().unwrap()).unwrap()["n"]
                .as_u64()
                .unwrap() as u32
        })
        .collect();
    assert_eq!(payloads, want, "in the order they were accepted");
    b.quit().await;
}
