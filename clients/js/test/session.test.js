// Unit tests of one session's traffic: the connect URL, welcome and state, message delivery,
// dedupe by seq, batched cumulative acks, resume with `since`, the store-reset rule,
// history_truncated, server error frames, listener failures and a clean close().
import { test } from "node:test";
import assert from "node:assert/strict";
import { harness } from "./fakes.js";

test("connects with token and device, opens on welcome, delivers messages", () => {
  const h = harness();
  assert.equal(h.client.state, "closed");
  h.client.connect();
  assert.equal(h.client.state, "connecting");
  const ws = h.last();
  assert.equal(ws.url.pathname, "/ws");
  assert.equal(ws.url.searchParams.get("token"), "tok-1");
  assert.equal(ws.url.searchParams.get("device"), "laptop");
  assert.equal(ws.url.searchParams.has("since"), false, "first connect resumes from the ack cursor");
  ws.accept({ last_seq: 2 });
  assert.equal(h.client.state, "open");
  assert.deepEqual(h.states(), ["connecting", "open"]);
  assert.equal(h.events.state[1].welcome.node, "node-a");
  assert.equal(h.client.welcome.last_seq, 2);
  ws.message(1);
  ws.message(2);
  assert.deepEqual(h.seqs(), [1, 2]);
  assert.deepEqual(h.events.message[0].payload, { n: 1 });
  assert.equal(h.events.message[0].broadcast, false);
  assert.equal(h.client.lastSeq, 2);
});

test("acks are cumulative and batched: after ackIntervalMs, or at once after ackBatch messages", () => {
  const h = harness({ ackIntervalMs: 100, ackBatch: 5 });
  h.client.connect();
  const ws = h.last();
  ws.accept();
  ws.message(1);
  ws.message(2);
  ws.message(3);
  assert.deepEqual(ws.acks(), [], "no ack before the interval");
  h.clock.advance(99);
  assert.deepEqual(ws.acks(), []);
  h.clock.advance(1);
  assert.deepEqual(ws.acks(), [3], "one cumulative ack for three messages");
  h.clock.advance(1000);
  assert.deepEqual(ws.acks(), [3], "nothing new, nothing sent");
  for (let seq = 4; seq <= 8; seq++) ws.message(seq);
  assert.deepEqual(ws.acks(), [3, 8], "the fifth unacked message sends the ack at once");
  h.clock.advance(100);
  assert.deepEqual(ws.acks(), [3, 8], "the interval timer was cancelled by the batch ack");
});

test("deduplicates by seq; broadcasts are delivered without dedupe or ack", () => {
  const h = harness();
  h.client.connect();
  const ws = h.last();
  ws.accept();
  ws.message(1);
  ws.message(2);
  ws.message(2);
  ws.message(1);
  ws.receive({ type: "message", id: "b1", seq: null, broadcast: true, topic: null, payload: "hi", ts: 5 });
  ws.receive({ type: "message", id: "b1", seq: null, broadcast: true, topic: null, payload: "hi", ts: 5 });
  ws.message(4); // holes are allowed
  assert.deepEqual(h.seqs(), [1, 2, null, null, 4]);
  assert.equal(h.events.message[2].broadcast, true);
  h.clock.advance(100);
  assert.deepEqual(ws.acks(), [4]);
});

test("reconnects with since = last processed seq and drops the replayed duplicates", () => {
  const h = harness();
  h.client.connect();
  const first = h.last();
  first.accept({ last_seq: 0 });
  for (let seq = 1; seq <= 5; seq++) first.message(seq);
  first.serverClose(1001, "server going away, reconnect");
  assert.equal(h.client.state, "reconnecting");
  const change = h.events.state.at(-1);
  assert.equal(change.closeCode, 1001);
  assert.equal(change.reason, "server going away, reconnect");
  h.clock.advance(change.delayMs);
  const second = h.last();
  assert.notEqual(second, first);
  assert.equal(second.url.searchParams.get("since"), "5");
  second.accept({ last_seq: 7 });
  assert.equal(h.client.state, "open");
  // Acks of the first session were lost with it; a replay from an older point is deduplicated.
  for (let seq = 4; seq <= 7; seq++) second.message(seq);
  assert.deepEqual(h.seqs(), [1, 2, 3, 4, 5, 6, 7]);
  h.clock.advance(100);
  assert.deepEqual(second.acks(), [7]);
});

test("the since option is the resume point of the first connection", () => {
  const h = harness({ since: 41 });
  h.client.connect();
  assert.equal(h.last().url.searchParams.get("since"), "41");
  h.last().accept({ last_seq: 43 });
  h.last().message(41);
  h.last().message(42);
  assert.deepEqual(h.seqs(), [42]);
});

test("a welcome with last_seq below the last processed seq resets and resumes from 0", () => {
  const h = harness();
  h.client.connect();
  const first = h.last();
  first.accept();
  for (let seq = 1; seq <= 10; seq++) first.message(seq);
  first.serverClose(1006);
  h.clock.advance(h.events.state.at(-1).delayMs);
  const second = h.last();
  assert.equal(second.url.searchParams.get("since"), "10");
  // The node restarted with an empty store and already has 3 new messages for the user.
  second.accept({ last_seq: 3 });
  assert.deepEqual(h.events.reset, [{ previousSeq: 10, lastSeq: 3 }]);
  assert.equal(h.client.lastSeq, 0);
  assert.equal(second.closeCalls.length, 1, "that session (resuming from 3) is given up");
  assert.equal(h.client.state, "reconnecting");
  assert.equal(h.events.state.at(-1).delayMs, 0, "at once, without backoff");
  h.clock.advance(0);
  const third = h.last();
  assert.equal(third.url.searchParams.get("since"), "0");
  third.accept({ last_seq: 3 });
  assert.equal(h.events.reset.length, 1);
  for (let seq = 1; seq <= 3; seq++) third.message(seq);
  assert.deepEqual(h.seqs(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3]);
  h.clock.advance(100);
  assert.deepEqual(third.acks(), [3]);
});

test("a reset to an empty store keeps the session and accepts seq 1 again", () => {
  const h = harness({ since: 20 });
  h.client.connect();
  const ws = h.last();
  ws.accept({ last_seq: 0 });
  assert.deepEqual(h.events.reset, [{ previousSeq: 20, lastSeq: 0 }]);
  assert.equal(h.client.state, "open");
  assert.equal(h.sockets.length, 1);
  ws.message(1);
  assert.deepEqual(h.seqs(), [1]);
});

test("history_truncated is surfaced as a truncated event", () => {
  const h = harness();
  h.client.connect();
  const ws = h.last();
  ws.accept({ last_seq: 2000 });
  ws.receive({ type: "history_truncated", after: 10, resume_from: 1011 });
  ws.message(1011);
  assert.deepEqual(h.events.truncated, [{ after: 10, resumeFrom: 1011 }]);
  assert.deepEqual(h.seqs(), [1011]);
});

test("server error frames and unreadable frames are error events; the session stays open", () => {
  const h = harness();
  h.client.connect();
  const ws = h.last();
  ws.accept();
  ws.receive({ type: "error", code: "bad_frame", message: "ack: missing field `seq`" });
  ws.receive("not json");
  ws.receive({ type: "pong" });
  ws.receive({ type: "some_future_frame" });
  assert.deepEqual(h.events.error.map((e) => e.code), ["bad_frame", "invalid_frame"]);
  assert.equal(h.events.error[0].name, "HeraldError");
  assert.equal(h.events.error[0].frame.message, "ack: missing field `seq`");
  assert.equal(h.client.state, "open");
});

test("a throwing listener is reported and the message still counts as processed", () => {
  const h = harness();
  h.client.on("message", () => {
    throw new Error("app bug");
  });
  h.client.connect();
  const ws = h.last();
  ws.accept();
  ws.message(1);
  assert.deepEqual(h.events.error.map((e) => e.code), ["listener_failed"]);
  assert.equal(h.events.error[0].cause.message, "app bug");
  h.clock.advance(100);
  assert.deepEqual(ws.acks(), [1]);
});

test("close() sends the pending ack, closes with 1000 and never reconnects", async () => {
  const h = harness();
  h.client.connect();
  const ws = h.last();
  ws.accept();
  ws.message(1);
  ws.message(2);
  const closed = h.client.close();
  assert.deepEqual(ws.acks(), [2], "the batched ack is flushed before closing");
  assert.deepEqual(ws.closeCalls, [{ code: 1000, reason: "bye" }]);
  assert.equal(h.client.state, "closed");
  assert.equal(h.client.welcome, null);
  ws.serverClose(1000, "bye");
  await closed;
  h.clock.advance(60_000);
  assert.equal(h.sockets.length, 1, "no reconnect");
  assert.equal(h.clock.timers.size, 0, "no timer left running");
  assert.deepEqual(h.states(), ["connecting", "open", "closed"]);
  ws.message(3);
  assert.deepEqual(h.seqs(), [1, 2], "nothing is delivered after close()");
});

test("close() resolves after closeTimeoutMs when the server never answers", async () => {
  const h = harness({ closeTimeoutMs: 500 });
  h.client.connect();
  h.last().accept();
  let resolved = false;
  const closed = h.client.close().then(() => (resolved = true));
  h.clock.advance(499);
  await Promise.resolve();
  assert.equal(resolved, false);
  h.clock.advance(1);
  await closed;
  assert.equal(h.clock.timers.size, 0);
});

test("close() while waiting to reconnect cancels the retry; connect() starts again", async () => {
  const h = harness();
  h.client.connect();
  h.last().accept();
  h.last().message(1);
  h.last().serverClose(4002, "slow consumer");
  assert.equal(h.client.state, "reconnecting");
  await h.client.close();
  h.clock.advance(60_000);
  assert.equal(h.sockets.length, 1);
  h.client.connect();
  assert.equal(h.sockets.length, 2);
  assert.equal(h.last().url.searchParams.get("since"), "1", "the same client resumes");
});
