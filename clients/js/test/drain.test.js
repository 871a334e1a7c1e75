// Unit tests of a server that asks its clients to come back (protocol 1.5): the `reconnect`
// frame (`jitter_ms`) followed by close 1012, or a plain 1001. The client reconnects after a
// delay uniform in [0, jitter_ms] (1000 without a frame, at most backoffMaxMs) and does not
// count it as a failure: the backoff starts over. On the fake clock and sockets of fakes.js.
import { test } from "node:test";
import assert from "node:assert/strict";
import { harness, seededRandom, settle } from "./fakes.js";

/** Connects, welcomes, and closes with `code` after an optional reconnect frame; the state event. */
function restart(h, code, frame) {
  h.last().accept();
  if (frame !== undefined) h.last().receive(frame);
  h.last().serverClose(code, "server restarting, reconnect");
  return h.events.state.at(-1);
}

test("a reconnect frame then 1012: reconnects after a delay in [0, jitter_ms], attempt 0", () => {
  for (const [random, expected] of [[0, 0], [0.5, 1000], [0.99999, 2000]]) {
    const h = harness({ random: () => random });
    h.client.connect();
    const change = restart(h, 1012, { type: "reconnect", jitter_ms: 2000 });
    assert.equal(change.state, "reconnecting");
    assert.equal(change.closeCode, 1012);
    assert.equal(change.attempt, 0, "a restart is not a failed attempt");
    assert.equal(change.delayMs, expected, `random ${random}`);
    if (expected > 0) {
      h.clock.advance(expected - 1);
      assert.equal(h.sockets.length, 1, "no attempt before the delay");
    }
    h.clock.advance(1);
    assert.equal(h.sockets.length, 2, "the attempt follows the delay");
    h.last().accept();
    assert.equal(h.client.state, "open");
    assert.deepEqual(h.events.error, [], "the reconnect frame is no error");
    assert.deepEqual(h.events.message, [], "nor a message");
  }
});

test("50 clients told jitter_ms 3000 spread their reconnects over [0, 3000]", () => {
  const seeds = seededRandom(7);
  const delays = [];
  for (let c = 0; c < 50; c++) {
    const h = harness({ random: seededRandom(Math.floor(seeds() * 2 ** 32)) });
    h.client.connect();
    delays.push(restart(h, 1012, { type: "reconnect", jitter_ms: 3000 }).delayMs);
  }
  assert.ok(delays.every((d) => Number.isInteger(d) && d >= 0 && d <= 3000), `${delays}`);
  assert.ok(Math.min(...delays) < 600 && Math.max(...delays) > 2400, `spread: ${delays}`);
  assert.ok(new Set(delays).size >= 40, "the clients do not come back in step");
});

for (const code of [1001, 1012]) {
  test(`${code} without a reconnect frame waits at most the default 1000 ms`, () => {
    const h = harness({ random: () => 0.99999 });
    h.client.connect();
    const change = restart(h, code);
    assert.equal(change.attempt, 0);
    assert.equal(change.delayMs, 1000);
  });
}

test("a bad jitter_ms is ignored (default 1000), a huge one capped at backoffMaxMs", () => {
  for (const jitter of [-5, "500", null, Infinity]) {
    const h = harness({ random: () => 0.99999 });
    h.client.connect();
    assert.equal(restart(h, 1012, { type: "reconnect", jitter_ms: jitter }).delayMs, 1000, `${jitter}`);
  }
  const h = harness({ random: () => 0.99999, backoffMaxMs: 5000 });
  h.client.connect();
  assert.equal(restart(h, 1012, { type: "reconnect", jitter_ms: 600_000 }).delayMs, 5000);
});

test("a restart does not count as a failure: the backoff after it starts over", () => {
  const h = harness({ random: () => 0.99999, backoffBaseMs: 100, stableAfterMs: 10_000 });
  h.client.connect();
  const fail = () => {
    h.last().serverClose(1006); // the node is down
    const change = h.events.state.at(-1);
    h.clock.advance(change.delayMs);
    return change;
  };
  assert.deepEqual([fail().attempt, fail().attempt, fail().attempt], [1, 2, 3]);
  const change = restart(h, 1012, { type: "reconnect", jitter_ms: 50 }); // open for 0 ms: not stable
  assert.deepEqual([change.attempt, change.delayMs], [0, 50]);
  h.clock.advance(change.delayMs);
  const next = fail(); // the next node is not up yet
  assert.equal(next.attempt, 1, "counted from the start again");
  assert.ok(next.delayMs < 100, `delay ${next.delayMs} below backoffBaseMs`);
});

test("the jitter belongs to its connection; other close codes ignore it", () => {
  const h = harness({ random: () => 0.99999, backoffBaseMs: 100 });
  h.client.connect();
  const dropped = restart(h, 1006, { type: "reconnect", jitter_ms: 5000 });
  assert.deepEqual([dropped.attempt, dropped.delayMs], [1, 99], "1006: backoff, not the hint");
  h.clock.advance(dropped.delayMs);
  const change = restart(h, 1012); // a new connection without a frame: the default again
  assert.deepEqual([change.attempt, change.delayMs], [0, 1000]);
});

test("a token callback is reused across a restart", async () => {
  let calls = 0;
  const h = harness({ token: async () => `tok-${++calls}` });
  h.client.connect();
  await settle();
  const change = restart(h, 1012, { type: "reconnect", jitter_ms: 10 });
  h.clock.advance(change.delayMs);
  await settle();
  assert.equal(calls, 1);
  assert.equal(h.last().url.searchParams.get("token"), "tok-1");
});

test("close() during the restart delay cancels the reconnect", () => {
  const h = harness();
  h.client.connect();
  restart(h, 1012, { type: "reconnect", jitter_ms: 2000 });
  h.client.close();
  h.clock.advance(5000);
  assert.equal(h.sockets.length, 1);
  assert.equal(h.client.state, "closed");
});
