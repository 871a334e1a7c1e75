// The client on a real WebSocket implementation (the platform's: Node 22+, or Node 20/21 with
// --experimental-websocket, which scripts/check.sh adds) and real timers, against
// test/mini-server.js playing a Herald node: welcome, messages, acks, ping/pong, a 4001 with
// a new token and a resume, and a clean close. Skipped without a global WebSocket.
import { test } from "node:test";
import assert from "node:assert/strict";
import { HeraldClient } from "../src/herald.js";
import { startMiniServer } from "./mini-server.js";

const skip = typeof globalThis.WebSocket !== "function" && "no global WebSocket (Node 20: --experimental-websocket)";

test("a real socket: messages, acks, ping, 4001 with a new token, resume, clean close", { skip }, async () => {
  const server = await startMiniServer((session) => {
    const n = server.sessions.length;
    session.send({ type: "welcome", session: `s${n}`, node: "mini", user: "alice", heartbeat_ms: 25000, last_seq: n === 1 ? 0 : 3 });
    if (n === 1) for (let seq = 1; seq <= 3; seq++) session.send({ type: "message", id: `m${seq}`, seq, topic: null, payload: { seq }, ts: 1 });
  });
  let tokens = 0;
  const client = new HeraldClient({
    url: server.url,
    token: async () => `tok-${++tokens}`,
    device: "laptop",
    ackIntervalMs: 10,
    backoffBaseMs: 20,
    pingIntervalMs: 30,
  });
  const seqs = [];
  const states = [];
  client.on("message", (m) => seqs.push(m.seq));
  client.on("state", (s) => states.push(s.state));
  const errors = [];
  client.on("error", (e) => errors.push(`${e.code}: ${e.message}`));
  try {
    client.connect();
    const first = await waitForSession(server, 1);
    assert.equal(first.url.searchParams.get("token"), "tok-1");
    assert.equal(first.url.searchParams.get("device"), "laptop");
    await first.waitFor((f) => f.type === "ack" && f.seq === 3);
    await first.waitFor((f) => f.type === "ping");
    assert.deepEqual(seqs, [1, 2, 3]);

    first.close(4001, "token expired");
    const second = await waitForSession(server, 2);
    assert.equal(second.url.searchParams.get("token"), "tok-2");
    assert.equal(second.url.searchParams.get("since"), "3");
    await until(() => client.state === "open");
    second.send({ type: "message", id: "m3", seq: 3, topic: null, payload: {}, ts: 1 }); // a duplicate
    second.send({ type: "message", id: "m4", seq: 4, topic: null, payload: {}, ts: 1 });
    await until(() => seqs.length === 4);
    await client.close();
    assert.equal(second.closeCode, 1000);
    assert.equal(second.received.filter((f) => f.type === "ack").at(-1).seq, 4);
    assert.deepEqual(seqs, [1, 2, 3, 4]);
    assert.deepEqual(states, ["connecting", "open", "reconnecting", "open", "closed"]);
    assert.deepEqual(errors, []);
  } finally {
    await client.close();
    await server.stop();
  }
});

async function waitForSession(server, n) {
  await until(() => server.sessions.length >= n);
  return server.sessions[n - 1];
}

async function until(cond, timeoutMs = 5000) {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${cond}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
