//! The dashboard's memory of one node: a reading of [`Counters`] taken every second, turned
//! into rates and windowed quantiles against the previous one, and kept in a ring of the
//! last few minutes so a freshly opened page has history.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;

use super::{ActorKind, Counters, ProcessReadings, Snapshot, Stage};

/// What is read off [`Counters`] once a second.
#[derive(Debug, Clone, Default)]
pub struct Tick {
    pub now_ms: u64,
    pub sessions: u64,
    pub accepted: u64,
    pub delivered: u64,
    /// Every error-ish counter summed (refusals, failures, slow consumers, timeouts).
    pub errors: u64,
    /// Producer-to-socket latencies so far.
    pub socket: Snapshot,
    pub actors: Vec<ActorTick>,
    /// (backend, op, latencies, errors) for every store and Redis operation.
    pub ops: Vec<(&'static str, &'static str, Snapshot, u64)>,
    pub peers: Vec<PeerTick>,
    pub process: ProcessReadings,
}

#[derive(Debug, Clone, Default)]
pub struct PeerTick {
    pub peer: Arc<str>,
    pub queue: u64,
    pub forwarded: u64,
    pub drops: u64,
    pub latency: Snapshot,
}

#[derive(Debug, Clone, Default)]
pub struct ActorTick {
    pub live: u64,
    pub depth: u64,
    pub errors: u64,
    pub handling: Snapshot,
}

impl Tick {
    pub fn read(c: &Counters, now_ms: u64) -> Tick {
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let errors = [
            &c.slow_consumers,
            &c.heartbeat_timeouts,
            &c.sessions_refused,
            &c.forward_failures,
            &c.route_errors,
            &c.overloaded,
            &c.position_check_errors,
            &c.internal_refused,
        ]
        .iter()
        .map(|a| g(a))
        .sum::<u64>()
            + c.actors.iter().map(|a| g(&a.errors)).sum::<u64>();
        let mut ops = Vec::new();
        for (backend, table) in [
            ("store", &c.ops.store),
            ("redis", &c.ops.redis),
            ("auth", &c.ops.auth),
        ] {
            for (name, s) in table.iter() {
                ops.push((backend, name, s.latency.snapshot(), g(&s.errors)));
            }
        }
        let peers = c
            .peers
            .all()
            .into_iter()
            .map(|(peer, s)| PeerTick {
                peer,
                queue: g(&s.queue),
                forwarded: g(&s.forwarded),
                drops: g(&s.drops),
                latency: s.latency.snapshot(),
            })
            .collect();
        Tick {
            now_ms,
            peers,
            process: ProcessReadings::default(),
            sessions: g(&c.sessions_live),
            accepted: g(&c.accepted),
            delivered: g(&c.delivered),
            errors,
            socket: c.stages[Stage::Socket as usize].snapshot(),
            actors: ActorKind::ALL
                .iter()
                .map(|k| (k, c.actor(*k)))
                .map(|(k, a)| ActorTick {
                    live: g(&a.live),
                    depth: c.queue_depth(*k),
                    errors: g(&a.errors),
                    handling: a.handling.snapshot(),
                })
                .collect(),
            ops,
        }
    }
}

/// One point of the charts.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Sample {
    pub t_ms: u64,
    pub connections: u64,
    pub in_per_s: f64,
    pub out_per_s: f64,
    pub errors_per_s: f64,
    /// Producer-to-socket latency over the second, ms (`None`: nothing written).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// CPU time over the second, in cores (1.0 = one core busy).
    pub cpu: Option<f64>,
    pub rss_bytes: Option<u64>,
}

/// One peer's forwarding over the last second.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PeerRow {
    pub peer: String,
    pub queue: u64,
    pub per_s: f64,
    pub drops_per_s: f64,
    pub p99_ms: Option<f64>,
}

/// One actor type over the last second.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ActorRow {
    pub actor: &'static str,
    pub live: u64,
    pub queue: u64,
    pub per_s: f64,
    pub errors_per_s: f64,
    pub p99_ms: Option<f64>,
}

/// One backend operation over the last second.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct OpRow {
    pub backend: &'static str,
    pub op: &'static str,
    pub per_s: f64,
    pub errors_per_s: f64,
    pub p99_ms: Option<f64>,
}

/// The ring of samples and the latest per-second tables.
#[derive(Debug)]
pub struct History {
    cap: usize,
    samples: VecDeque<Sample>,
    prev: Option<Tick>,
    pub actors: Vec<ActorRow>,
    pub ops: Vec<OpRow>,
    pub peers: Vec<PeerRow>,
}

impl Default for History {
    fn default() -> Self {
        History::new(300)
    }
}

fn ms(s: Option<f64>) -> Option<f64> {
    s.map(|v| (v * 1e6).round() / 1e3)
}

impl History {
    /// Keeps the last `cap` samples.
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            samples: VecDeque::new(),
            prev: None,
            actors: Vec::new(),
            ops: Vec::new(),
            peers: Vec::new(),
        }
    }

    /// Keeps the last `cap` samples from now on.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
        while self.samples.len() > self.cap {
            self.samples.pop_front();
        }
    }

    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// Adds the reading taken now; the first one only sets the baseline.
    pub fn push(&mut self, tick: Tick) {
        let Some(prev) = self.prev.replace(tick) else {
            return;
        };
        let now = self.prev.as_ref().expect("just set");
        let secs = (now.now_ms.saturating_sub(prev.now_ms) as f64 / 1e3).max(1e-3);
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let window = now.socket.since(&prev.socket);
        let sample = Sample {
            t_ms: now.now_ms,
            connections: now.sessions,
            in_per_s: rate(now.accepted, prev.accepted),
            out_per_s: rate(now.delivered, prev.delivered),
            errors_per_s: rate(now.errors, prev.errors),
            p50_ms: ms(window.quantile_s(0.5)),
            p99_ms: ms(window.quantile_s(0.99)),
            cpu: now
                .process
                .cpu_seconds
                .zip(prev.process.cpu_seconds)
                .map(|(a, b)| ((a - b).max(0.0) / secs * 100.0).round() / 100.0),
            rss_bytes: now.process.resident_memory_bytes,
        };
        self.peers = now
            .peers
            .iter()
            .map(|p| {
                let before = prev.peers.iter().find(|q| q.peer == p.peer);
                let (fwd, drops, lat) = before.map_or((0, 0, Snapshot::default()), |b| {
                    (b.forwarded, b.drops, b.latency)
                });
                PeerRow {
                    peer: p.peer.to_string(),
                    queue: p.queue,
                    per_s: rate(p.forwarded, fwd),
                    drops_per_s: rate(p.drops, drops),
                    p99_ms: ms(p.latency.since(&lat).quantile_s(0.99)),
                }
            })
            .collect();
        self.actors = ActorKind::ALL
            .iter()
            .zip(now.actors.iter().zip(prev.actors.iter()))
            .map(|(kind, (a, b))| {
                let w = a.handling.since(&b.handling);
                ActorRow {
                    actor: kind.name(),
                    live: a.live,
                    queue: a.depth,
                    per_s: w.count() as f64 / secs,
                    errors_per_s: rate(a.errors, b.errors),
                    p99_ms: ms(w.quantile_s(0.99)),
                }
            })
            .collect();
        self.ops = now
            .ops
            .iter()
            .zip(prev.ops.iter())
            .map(|((backend, op, s, e), (_, _, ps, pe))| {
                let w = s.since(ps);
                OpRow {
                    backend,
                    op,
                    per_s: w.count() as f64 / secs,
                    errors_per_s: rate(*e, *pe),
                    p99_ms: ms(w.quantile_s(0.99)),
                }
            })
            .filter(|r| r.per_s > 0.0 || r.errors_per_s > 0.0)
            .collect();
        if self.samples.len() == self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(c: &Counters, now_ms: u64) -> Tick {
        Tick::read(c, now_ms)
    }

    #[test]
    fn samples_are_rates_over_the_interval_and_the_ring_keeps_the_newest() {
        let c = Counters::default();
        let mut h = History::new(3);
        h.push(tick(&c, 1_000));
        assert_eq!(h.samples().count(), 0, "the first reading is the baseline");
        Counters::add(&c.accepted, 50);
        Counters::add(&c.delivered, 100);
        Counters::add(&c.sessions_live, 7);
        for _ in 0..10 {
            c.stages[Stage::Socket as usize].record_us(3_000);
        }
        h.push(tick(&c, 1_500));
        let s = *h.samples().last().unwrap();
        assert_eq!(s.connections, 7);
        assert_eq!((s.in_per_s, s.out_per_s), (100.0, 200.0));
        let p99 = s.p99_ms.unwrap();
        assert!(p99 > 2.0 && p99 <= 4.1, "{p99}");
        h.push(tick(&c, 2_500));
        assert_eq!(
            h.samples().last().unwrap().p99_ms,
            None,
            "a quiet second has no latency"
        );
        for t in 3..6 {
            h.push(tick(&c, t * 1_000));
        }
        let ts: Vec<u64> = h.samples().map(|s| s.t_ms).collect();
        assert_eq!(ts, [3_000, 4_000, 5_000]);
    }

    #[test]
    fn actor_rows_give_each_type_its_rate_queue_and_p99_for_the_last_second() {
        let c = Counters::default();
        let mut h = History::new(10);
        h.push(tick(&c, 0));
        let hub = c.actor(ActorKind::Hub);
        hub.started();
        hub.sent(5);
        for _ in 0..4 {
            drop(c.handling(ActorKind::Hub));
        }
        c.ops
            .store
            .op(b"append")
            .observe(std::time::Instant::now(), false);
        h.push(tick(&c, 2_000));
        let row = h.actors.iter().find(|r| r.actor == "hub").unwrap();
        assert_eq!((row.live, row.queue, row.per_s), (1, 1, 2.0));
        assert!(row.p99_ms.is_some());
        assert_eq!(h.actors.len(), ActorKind::ALL.len());
        assert_eq!(h.ops.len(), 1);
        assert_eq!((h.ops[0].op, h.ops[0].errors_per_s), ("append", 0.5));
    }
}
