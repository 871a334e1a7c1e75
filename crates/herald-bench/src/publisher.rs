//! Publishing through the producer REST API at a fixed offered rate, over a pool of
//! keep-alive connections; knows nothing about the WebSocket side except which users are
//! connected.
//!
//! Request `u` (a message, or a batch of `batch_size`) is due at `start + u * per / rate`;
//! each pool connection takes the next request number, sleeps until it is due, stamps the
//! payload with the current time and waits for the answer. A server slower than the offered
//! rate therefore sees at most `conns` requests in flight, and the achieved rate is reported
//! next to the offered one, with the requests that went out late for want of a free
//! connection. The stamp is taken when the request is actually written, so latency does
//! not include time spent waiting for a free connection.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::http1::{Client, Response};
use super::protocol::{bump, merge_reasons, Reasons};
use super::sys::unix_micros;
use super::Mode;

/// How far behind its due time a request may go out before it counts as late.
const LATE: Duration = Duration::from_millis(10);

/// What to publish, to whom, and how fast.
pub struct Plan {
    pub mode: Mode,
    pub messages: u64,
    /// Offered rate, messages per second.
    pub rate: f64,
    pub batch_size: u64,
    /// Pool size (concurrent requests).
    pub conns: usize,
    pub targets: Vec<SocketAddr>,
    pub api_key: String,
    pub run_id: u64,
    /// Extra payload bytes (`"p"`), 0 for none.
    pub payload_bytes: usize,
    pub user_prefix: String,
    /// Connected users (global indices); targeted messages go round-robin over them.
    pub users: Vec<u64>,
    /// No request starts after this.
    pub deadline: Instant,
}

impl Plan {
    /// Messages per request.
    fn per_request(&self) -> u64 {
        match self.mode {
            Mode::Batch => self.batch_size.max(1),
            _ => 1,
        }
    }

    fn path(&self) -> &'static str {
        match self.mode {
            Mode::Batch => "/api/v1/messages/batch",
            _ => "/api/v1/messages",
        }
    }

    /// Appends one message object for message number `k`.
    fn message(&self, k: u64, now_us: u64, out: &mut String) {
        match self.mode {
            Mode::Broadcast => out.push_str(r#"{"broadcast":true,"payload":"#),
            _ => {
                let user = self.users[(k % self.users.len() as u64) as usize];
                // unwrap (the writes below): writing to a String cannot fail
                write!(out, r#"{{"to":"{}{user}","payload":"#, self.user_prefix).unwrap();
            }
        }
        write!(out, r#"{{"t":{now_us},"r":{}"#, self.run_id).unwrap();
        if self.payload_bytes > 0 {
            out.push_str(r#","p":""#);
            out.extend(std::iter::repeat_n('x', self.payload_bytes));
            out.push('"');
        }
        out.push_str("}}");
    }

    /// The body of request `u`, covering messages `first..first + n`.
    fn body(&self, first: u64, n: u64, out: &mut String) {
        out.clear();
        let now = unix_micros();
        if self.mode == Mode::Batch {
            out.push_str(r#"{"messages":["#);
            for k in first..first + n {
                if k > first {
                    out.push(',');
                }
                self.message(k, now, out);
            }
            out.push_str("]}");
        } else {
            self.message(first, now, out);
        }
    }
}

/// Running totals the coordinator reads for its progress line.
#[derive(Debug, Default)]
pub struct Live {
    /// Messages whose request was written.
    pub sent: AtomicU64,
    /// Messages the server accepted (2xx).
    pub accepted: AtomicU64,
}

/// What publishing achieved.
#[derive(Debug, Default)]
pub struct Outcome {
    pub accepted: u64,
    /// Messages refused by the server (non-2xx, or refused items of a batch).
    pub rejected: u64,
    /// Messages whose request failed in transport (their fate is unknown).
    pub failed: u64,
    /// Messages not sent because the phase timed out.
    pub unsent: u64,
    /// Requests that found no free connection until more than [`LATE`] after they were
    /// due: every publishing connection was waiting for an answer, because the node fell
    /// behind or because the pool caps the rate at `conns` / the request latency.
    pub late: u64,
    /// Responses by status code.
    pub http_status: BTreeMap<String, u64>,
    /// Refused requests by status and error code (`429 rate_limited`), so a run cut short by
    /// one of the node's own limits says which.
    pub refusals: Reasons,
    /// Transport errors by kind.
    pub errors: Reasons,
    /// Unix micros of the first request.
    pub first_send_us: u64,
    /// Seconds from the first request to the last response.
    pub secs: f64,
}

impl Outcome {
    fn merge(&mut self, o: Outcome) {
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.failed += o.failed;
        self.unsent += o.unsent;
        self.late += o.late;
        merge_reasons(&mut self.http_status, &o.http_status);
        merge_reasons(&mut self.refusals, &o.refusals);
        merge_reasons(&mut self.errors, &o.errors);
    }
}

impl Outcome {
    /// Counts one request's answer (status or error kind); returns how many of its `n`
    /// messages were accepted, or `None` when it got no answer (they count as failed).
    fn tally(&mut self, mode: Mode, n: u64, answer: std::io::Result<Response>) -> Option<u64> {
        match answer {
            Ok(r) => {
                bump(
                    &mut self.http_status,
                    itoa::Buffer::new().format(r.status),
                    1,
                );
                Some(match r.status {
                    202 if mode != Mode::Batch => n,
                    202 | 207 => serde_json::from_slice::<BatchAnswer>(&r.body)
                        .map_or(0, |b| b.accepted.min(n)),
                    status => {
                        bump(&mut self.refusals, &refusal(status, &r.body), 1);
                        0
                    }
                })
            }
            Err(e) => {
                bump(
                    &mut self.errors,
                    &format!("{:?}", e.kind()).to_lowercase(),
                    1,
                );
                self.failed += n;
                None
            }
        }
    }
}

/// `"<status> <code>"` of a refused request, from the node's error body
/// (`{"error":{"code":…}}`); the status alone when the body is not one.
fn refusal(status: u16, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        error: Code,
    }
    #[derive(Deserialize)]
    struct Code {
        code: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => format!("{status} {}", b.error.code),
        Err(_) => status.to_string(),
    }
}

/// The part of a batch answer the bench reads.
#[derive(Deserialize)]
struct BatchAnswer {
    accepted: u64,
}

/// Publishes the whole plan; returns when every request was answered or the deadline
/// passed.
pub async fn publish(plan: Arc<Plan>, live: Arc<Live>) -> Outcome {
    if plan.mode != Mode::Broadcast && plan.users.is_empty() {
        return Outcome {
            unsent: plan.messages,
            ..Default::default()
        };
    }
    let per = plan.per_request();
    let requests = plan.messages.div_ceil(per);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let first_send_us = unix_micros();
    let mut tasks = Vec::with_capacity(plan.conns);
    for c in 0..plan.conns.max(1) {
        let (plan, live, next) = (plan.clone(), live.clone(), next.clone());
        let target = plan.targets[c % plan.targets.len()];
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(target);
            let mut body = String::with_capacity(256 * per as usize);
            let mut out = Outcome::default();
            loop {
                let u = next.fetch_add(1, Relaxed);
                if u >= requests {
                    break;
                }
                let first = u * per;
                let n = per.min(plan.messages - first);
                let due = start + Duration::from_secs_f64(first as f64 / plan.rate);
                if due > plan.deadline || Instant::now() > plan.deadline {
                    out.unsent += n;
                    continue;
                }
                if Instant::now() > due + LATE {
                    out.late += 1;
                }
                tokio::time::sleep_until(due).await;
                plan.body(first, n, &mut body);
                live.sent.fetch_add(n, Relaxed);
                let answer = client
                    .request("POST", plan.path(), Some(&plan.api_key), body.as_bytes())
                    .await;
                let Some(accepted) = out.tally(plan.mode, n, answer) else {
                    continue;
                };
                out.accepted += accepted;
                out.rejected += n - accepted;
                live.accepted.fetch_add(accepted, Relaxed);
            }
            out
        }));
    }
    let mut total = Outcome {
        first_send_us,
        ..Default::default()
    };
    for t in tasks {
        if let Ok(o) = t.await {
            total.merge(o);
        }
    }
    total.secs = start.elapsed().as_secs_f64();
    total
}

/// The `counters` object of `GET /api/v1/stats` on `target`, if it answers; `admin_key`
/// is sent as the bearer (a node without admin keys answers loopback callers without one).
pub async fn server_counters(
    target: SocketAddr,
    admin_key: Option<&str>,
) -> Option<BTreeMap<String, u64>> {
    #[derive(Deserialize)]
    struct Stats {
        counters: BTreeMap<String, u64>,
    }
    let mut client = Client::new(target);
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        client.request("GET", "/api/v1/stats", admin_key, b""),
    )
    .await
    .ok()?
    .ok()?;
    if answer.status != 200 {
        return None;
    }
    serde_json::from_slice::<Stats>(&answer.body)
        .ok()
        .map(|s| s.counters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mode: Mode) -> Plan {
        Plan {
            mode,
            messages: 5,
            rate: 10.0,
            batch_size: 2,
            conns: 1,
            targets: vec!["127.0.0.1:1".parse().unwrap()],
            api_key: "k".into(),
            run_id: 7,
            payload_bytes: 0,
            user_prefix: "bench-u".into(),
            users: vec![3, 9],
            deadline: Instant::now(),
        }
    }

    fn parsed(p: &Plan, first: u64, n: u64) -> serde_json::Value {
        let mut body = String::new();
        p.body(first, n, &mut body);
        serde_json::from_str(&body).unwrap()
    }

    #[test]
    fn targeted_bodies_go_round_robin_over_connected_users_with_a_stamp() {
        let p = plan(Mode::Targeted);
        let a = parsed(&p, 0, 1);
        let b = parsed(&p, 1, 1);
        assert_eq!(a["to"], "bench-u3");
        assert_eq!(b["to"], "bench-u9");
        assert_eq!(parsed(&p, 2, 1)["to"], "bench-u3");
        assert_eq!(a["payload"]["r"], 7);
        assert!(a["payload"]["t"].as_u64().unwrap() > 1_600_000_000_000_000);
    }

    #[test]
    fn batch_bodies_hold_the_requested_messages() {
        let p = plan(Mode::Batch);
        let v = parsed(&p, 4, 1);
        assert_eq!(v["messages"].as_array().unwrap().len(), 1);
        let v = parsed(&p, 0, 2);
        let msgs = v["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1]["to"], "bench-u9");
    }

    #[test]
    fn broadcast_bodies_have_no_recipient_and_padding_is_sized() {
        let mut p = plan(Mode::Broadcast);
        p.payload_bytes = 100;
        let v = parsed(&p, 0, 1);
        assert_eq!(v["broadcast"], true);
        assert!(v.get("to").is_none());
        assert_eq!(v["payload"]["p"].as_str().unwrap().len(), 100);
    }

    #[test]
    fn refused_requests_are_counted_by_status_and_error_code() {
        let mut out = Outcome::default();
        let answer = |status: u16, body: &str| {
            Ok(Response {
                status,
                body: body.as_bytes().to_vec(),
            })
        };
        let limited = r#"{"error":{"code":"rate_limited","message":"slow down"}}"#;
        assert_eq!(out.tally(Mode::Targeted, 1, answer(429, limited)), Some(0));
        assert_eq!(out.tally(Mode::Targeted, 1, answer(429, limited)), Some(0));
        assert_eq!(out.tally(Mode::Targeted, 1, answer(502, "<html>")), Some(0));
        assert_eq!(out.tally(Mode::Targeted, 1, answer(202, "{}")), Some(1));
        assert_eq!(out.refusals.get("429 rate_limited"), Some(&2));
        assert_eq!(out.refusals.get("502"), Some(&1));
        assert_eq!(out.refusals.len(), 2, "accepted answers are no refusals");
        assert_eq!(out.http_status.get("202"), Some(&1));
    }
}
