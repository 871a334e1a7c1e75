// Test doubles for the unit tests: a fake clock (timers run only when the test advances time),
// a fake WebSocket class whose "server side" the test drives, a seeded random source, and a
// harness that builds a HeraldClient on them and records its events. Not a test file itself.
import { HeraldClient } from "../src/herald.js";

export class FakeClock {
  constructor() {
    this.t = 1_700_000_000_000;
    this.timers = new Map(); // id -> { at, fn }
    this.nextId = 1;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
      return id;
    };
    this.clearTimeout = (id) => void this.timers.delete(id);
    this.now = () => this.t;
  }

  /** Runs every timer due within `ms`, in time order (ties in creation order). */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (next === null || timer.at < next[1].at)) next = [id, timer];
      }
      if (next === null) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

/** A WebSocket class recording its instances; the test plays the server through them. */
export function fakeWebSocketClass() {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = new URL(url);
      this.readyState = 0;
      this.sent = [];
      this.closeCalls = [];
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.sent.push(JSON.parse(data));
    }
    close(code, reason) {
      this.closeCalls.push({ code, reason });
      if (this.readyState < 2) this.readyState = 2;
    }
    // ---- the server's side ----
    open() {
      this.readyState = 1;
      if (this.onopen) this.onopen({});
    }
    /** Opens the socket and sends a welcome. */
    accept(welcome = {}) {
      this.open();
      this.receive({ type: "welcome", session: "s1", node: "node-a", user: "alice", heartbeat_ms: 25000, last_seq: 0, ...welcome });
    }
    receive(frame) {
      if (this.onmessage) this.onmessage({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
    }
    message(seq, extra = {}) {
      this.receive({ type: "message", id: `id-${seq}`, seq, topic: "t", payload: { n: seq }, ts: 1, ...extra });
    }
    /** The server closes (or the connection drops: 1006). */
    serverClose(code, reason = "") {
      this.readyState = 3;
      if (this.onclose) this.onclose({ code, reason, wasClean: code !== 1006 });
    }
    acks() {
      return this.sent.filter((f) => f.type === "ack").map((f) => f.seq);
    }
    pings() {
      return this.sent.filter((f) => f.type === "ping").length;
    }
  }
  return { FakeSocket, sockets };
}

/** mulberry32: a small seeded PRNG, so jitter tests are reproducible. */
export function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A client on a fake clock and fake sockets, with every event recorded in `events`. */
export function harness(options = {}) {
  const clock = new FakeClock();
  const { FakeSocket, sockets } = fakeWebSocketClass();
  const client = new HeraldClient({
    url: "ws://herald.test/ws",
    token: "tok-1",
    device: "laptop",
    WebSocket: FakeSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: () => 0.5,
    ...options,
  });
  const events = { message: [], state: [], error: [], truncated: [], reset: [] };
  for (const name of Object.keys(events)) client.on(name, (v) => events[name].push(v));
  const last = () => sockets[sockets.length - 1];
  const seqs = () => events.message.map((m) => m.seq);
  const states = () => events.state.map((s) => s.state);
  return { client, clock, sockets, events, last, seqs, states };
}

/** Lets pending promise callbacks (an async token callback) run. */
export const settle = () => new Promise((resolve) => setImmediate(resolve));
