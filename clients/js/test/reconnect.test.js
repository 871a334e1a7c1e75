// Unit tests of losing and regaining the connection: the token callback (reused, called again
// on 4001 and after a failed upgrade), close codes that stop the client, exponential backoff
// with full jitter (measured over 50 simulated clients) and its reset, the application
// heartbeat that detects a dead connection, and the connect timeout. A server's restart
// (1001, 1012 and the `reconnect` frame) is in drain.test.js.
import { test } from "node:test";
import assert from "node:assert/strict";
import { harness, seededRandom, settle } from "./fakes.js";

function tokenSource() {
  const calls = [];
  const token = async () => {
    calls.push(calls.length + 1);
    return `tok-${calls.length}`;
  };
  return { token, calls };
}

test("the token callback is reused across reconnects and called again on 4001", async () => {
  const { token, calls } = tokenSource();
  const h = harness({ token });
  h.client.connect();
  assert.equal(h.sockets.length, 0, "no socket before the token arrives");
  await settle();
  assert.equal(h.last().url.searchParams.get("token"), "tok-1");
  h.last().accept();
  h.last().serverClose(1001, "server going away, reconnect");
  h.clock.advance(h.events.state.at(-1).delayMs);
  await settle();
  assert.equal(calls.length, 1, "a drain reconnect reuses the token");
  assert.equal(h.last().url.searchParams.get("token"), "tok-1");
  h.last().accept();
  h.last().serverClose(4001, "token expired");
  assert.equal(h.client.state, "reconnecting");
  h.clock.advance(h.events.state.at(-1).delayMs);
  await settle();
  assert.equal(calls.length, 2, "4001 asks for a new token");
  assert.equal(h.last().url.searchParams.get("token"), "tok-2");
  h.last().accept();
  assert.equal(h.client.state, "open");
  assert.deepEqual(h.events.error, []);
});

test("a connection that fails before its welcome asks for a new token (a 401 looks like 1006)", async () => {
  const { token, calls } = tokenSource();
  const h = harness({ token });
  h.client.connect();
  await settle();
  h.last().serverClose(1006);
  h.clock.advance(h.events.state.at(-1).delayMs);
  await settle();
  assert.equal(calls.length, 2);
  assert.equal(h.last().url.searchParams.get("token"), "tok-2");
});

test("a failing token callback is an error event and is retried with backoff", async () => {
  let fail = true;
  const h = harness({
    token: async () => {
      if (fail) throw new Error("auth server down");
      return "fresh";
    },
  });
  h.client.connect();
  await settle();
  assert.deepEqual(h.events.error.map((e) => e.code), ["token_failed"]);
  assert.equal(h.events.error[0].cause.message, "auth server down");
  assert.equal(h.client.state, "reconnecting");
  assert.equal(h.sockets.length, 0);
  fail = false;
  h.clock.advance(h.events.state.at(-1).delayMs);
  await settle();
  assert.equal(h.last().url.searchParams.get("token"), "fresh");
});

test("a static token that expires (4001) stops the client with an error", () => {
  const h = harness({ token: "static" });
  h.client.connect();
  h.last().accept();
  h.last().serverClose(4001, "token expired");
  assert.equal(h.client.state, "closed");
  assert.deepEqual(h.events.error.map((e) => [e.code, e.closeCode]), [["token_expired", 4001]]);
  h.clock.advance(120_000);
  assert.equal(h.sockets.length, 1);
  assert.equal(h.clock.timers.size, 0);
});

for (const code of [1002, 4003]) {
  test(`close code ${code} stops the client instead of looping`, () => {
    const h = harness();
    h.client.connect();
    h.last().accept();
    h.last().serverClose(code, "");
    assert.equal(h.client.state, "closed");
    assert.equal(h.events.state.at(-1).closeCode, code);
    assert.deepEqual(h.events.error.map((e) => [e.code, e.closeCode]), [["closed_by_server", code]]);
    h.clock.advance(120_000);
    assert.equal(h.sockets.length, 1);
  });
}

for (const code of [1000, 1006, 1009, 1011, 4002, 4008]) {
  test(`close code ${code} reconnects with backoff`, () => {
    const h = harness();
    h.client.connect();
    h.last().accept();
    h.last().serverClose(code, "");
    assert.equal(h.client.state, "reconnecting");
    h.clock.advance(h.events.state.at(-1).delayMs);
    assert.equal(h.sockets.length, 2);
  });
}

test("backoff grows exponentially with full jitter (50 simulated clients)", () => {
  const base = 500;
  const max = 30_000;
  const attempts = 8;
  const delays = Array.from({ length: attempts }, () => []); // delays[k]: the (k+1)th retry
  const seeds = seededRandom(42); // each client its own generator, seeded from one master
  for (let c = 0; c < 50; c++) {
    const random = seededRandom(Math.floor(seeds() * 2 ** 32));
    const h = harness({ backoffBaseMs: base, backoffMaxMs: max, random });
    h.client.connect();
    for (let k = 0; k < attempts; k++) {
      h.last().serverClose(1006); // the node is down: every attempt fails before its welcome
      const change = h.events.state.at(-1);
      assert.equal(change.attempt, k + 1);
      delays[k].push(change.delayMs);
      const before = h.sockets.length;
      if (change.delayMs > 0) {
        h.clock.advance(change.delayMs - 1);
        assert.equal(h.sockets.length, before, "no attempt before the delay");
      }
      h.clock.advance(1);
      assert.equal(h.sockets.length, before + 1, "the attempt follows the delay");
    }
  }
  const means = [];
  for (let k = 0; k < attempts; k++) {
    const cap = Math.min(max, base * 2 ** k);
    const d = delays[k];
    const mean = d.reduce((a, b) => a + b, 0) / d.length;
    means.push(mean);
    assert.ok(d.every((x) => x >= 0 && x < cap), `retry ${k + 1}: every delay in [0, ${cap})`);
    // Full jitter: uniform over [0, cap), so spread over nearly all of it, mean about cap / 2.
    assert.ok(Math.min(...d) < 0.2 * cap, `retry ${k + 1}: some delays near 0 (${Math.min(...d)})`);
    assert.ok(Math.max(...d) > 0.8 * cap, `retry ${k + 1}: some delays near the cap (${Math.max(...d)})`);
    assert.ok(Math.abs(mean - cap / 2) < 0.15 * cap, `retry ${k + 1}: mean ${mean} near ${cap / 2}`);
    assert.ok(new Set(d).size >= 40, `retry ${k + 1}: the 50 clients do not retry in step`);
  }
  for (let k = 1; k < 6; k++) assert.ok(means[k] > 1.25 * means[k - 1], `mean grows: ${means}`);
  assert.ok(means[7] < max, "capped at backoffMaxMs");
});

test("a connection that stays open resets the backoff; a short one does not", () => {
  const h = harness({ random: () => 0.999, backoffBaseMs: 100, stableAfterMs: 10_000 });
  h.client.connect();
  const retry = () => {
    const change = h.events.state.at(-1);
    h.clock.advance(change.delayMs);
    return change;
  };
  h.last().serverClose(1006);
  assert.equal(retry().attempt, 1);
  h.last().serverClose(1006);
  assert.equal(retry().attempt, 2);
  h.last().accept();
  h.clock.advance(9_000);
  h.last().serverClose(1006);
  assert.equal(retry().attempt, 3, "open 9 s: not stable, the backoff keeps growing");
  h.last().accept();
  h.clock.advance(10_000);
  h.last().serverClose(1006);
  const change = retry();
  assert.equal(change.attempt, 1, "open 10 s: stable, the backoff starts over");
  assert.ok(change.delayMs < 100);
});

test("application heartbeat: pings every heartbeat_ms; a pong keeps the connection", () => {
  const h = harness({ heartbeatTimeoutMs: 10_000 });
  h.client.connect();
  const ws = h.last();
  ws.accept({ heartbeat_ms: 25_000 });
  h.clock.advance(25_000);
  for (let i = 1; i <= 4; i++) {
    assert.equal(ws.pings(), i);
    h.clock.advance(3_000);
    ws.receive({ type: "pong" });
    h.clock.advance(22_000);
  }
  assert.equal(ws.pings(), 5);
  ws.message(1); // any frame, not only a pong, answers the outstanding ping
  h.clock.advance(20_000);
  assert.equal(h.client.state, "open", "a message counts as a sign of life as well");
});

test("a dead connection (no frame within heartbeatTimeoutMs of a ping) is dropped and replaced", () => {
  const h = harness({ heartbeatTimeoutMs: 10_000 });
  h.client.connect();
  const ws = h.last();
  ws.accept({ heartbeat_ms: 25_000 });
  ws.message(1);
  h.clock.advance(25_000);
  assert.equal(ws.pings(), 1);
  h.clock.advance(9_999);
  assert.equal(h.client.state, "open");
  h.clock.advance(1);
  assert.equal(h.client.state, "reconnecting");
  const change = h.events.state.at(-1);
  assert.equal(change.closeCode, null);
  assert.match(change.reason, /heartbeatTimeoutMs/);
  assert.equal(ws.closeCalls.length, 1, "the dead socket is closed and forgotten");
  assert.deepEqual(ws.acks(), [1], "the ack went out long before");
  ws.serverClose(1006); // its close event, whenever it comes, is ignored
  h.clock.advance(change.delayMs);
  assert.equal(h.sockets.length, 2);
  assert.equal(h.last().url.searchParams.get("since"), "1");
});

test("pingIntervalMs overrides the welcome's heartbeat_ms", () => {
  const h = harness({ pingIntervalMs: 5_000 });
  h.client.connect();
  h.last().accept({ heartbeat_ms: 25_000 });
  h.clock.advance(5_000);
  assert.equal(h.last().pings(), 1);
});

test("no welcome within connectTimeoutMs: the attempt is given up and retried", () => {
  const h = harness({ connectTimeoutMs: 20_000 });
  h.client.connect();
  h.last().open(); // upgraded, but the welcome never comes
  h.clock.advance(20_000);
  assert.equal(h.client.state, "reconnecting");
  assert.match(h.events.state.at(-1).reason, /connectTimeoutMs/);
  assert.equal(h.sockets[0].closeCalls.length, 1);
  h.clock.advance(h.events.state.at(-1).delayMs);
  assert.equal(h.sockets.length, 2);
});

test("the constructor refuses bad options and a missing WebSocket", () => {
  assert.throws(() => harness({ url: "" }), /url is required/);
  assert.throws(() => harness({ token: 3 }), /token must be/);
  assert.throws(() => harness({ since: -1 }), /since must be/);
  assert.throws(() => harness({ ackIntervalMs: 0 }), /ackIntervalMs must be a positive number/);
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = undefined;
  try {
    assert.throws(() => harness({ WebSocket: undefined }), /no WebSocket implementation/);
  } finally {
    globalThis.WebSocket = saved;
  }
  assert.throws(() => harness().client.on("welcome", () => {}), /unknown event/);
});
