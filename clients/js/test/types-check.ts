// Compile-time test of src/herald.d.ts: uses every exported name and member the way an app
// would, and asserts (with @ts-expect-error) that misuse is rejected. Checked by `tsc` in
// scripts/check.sh without DOM or Node types; never run.
import {
  HeraldClient,
  HeraldError,
  VERSION,
  type ConnectionState,
  type HeraldErrorCode,
  type HeraldEvents,
  type HeraldMessage,
  type HeraldOptions,
  type Reset,
  type StateChange,
  type Truncation,
  type WebSocketConstructor,
  type WebSocketLike,
  type Welcome,
} from "@herald/client";

declare const SomeWebSocket: WebSocketConstructor;
declare function fetchToken(): Promise<string>;
const seen: unknown[] = [];
const log = (...values: unknown[]): void => void seen.push(values);

const version: string = VERSION;

// The five lines of the README.
const client = new HeraldClient({ url: "wss://push.example.com/ws", token: fetchToken, device: "laptop" });
client.on("message", (m) => log(m.seq, m.topic, m.payload));
client.on("state", (s) => log(s.state));
client.on("error", (e) => log(e.code, e.message));
client.connect();

// Every option.
const options: HeraldOptions = {
  url: "/ws",
  token: () => "jwt",
  device: "phone",
  since: 42,
  WebSocket: SomeWebSocket,
  ackIntervalMs: 100,
  ackBatch: 50,
  backoffBaseMs: 500,
  backoffMaxMs: 30000,
  stableAfterMs: 10000,
  connectTimeoutMs: 20000,
  pingIntervalMs: 25000,
  heartbeatTimeoutMs: 10000,
  closeTimeoutMs: 2000,
  random: Math.random,
  now: Date.now,
  setTimeout: (fn, ms) => ({ fn, ms }),
  clearTimeout: (handle) => log(handle),
};
const typed = new HeraldClient<{ order: number }>(options);
new HeraldClient({ url: "ws://127.0.0.1:8080/ws", token: "static-jwt" });

// Messages: the seq is a number exactly when it is not a broadcast.
const off = typed.on("message", (m: HeraldMessage<{ order: number }>) => {
  const order: number = m.payload.order;
  if (m.broadcast) {
    const none: null = m.seq;
    log(none);
  } else {
    const seq: number = m.seq;
    log(seq, m.id, m.ts, order);
  }
});
off();

const onState = (s: StateChange): void => {
  const state: ConnectionState = s.state;
  const previous: ConnectionState = s.previous;
  const welcome: Welcome | undefined = s.welcome;
  log(state, previous, welcome?.heartbeat_ms, welcome?.last_seq, welcome?.node, welcome?.session, welcome?.user);
  log(s.closeCode, s.reason, s.attempt, s.delayMs);
};
typed.on("state", onState);
typed.off("state", onState);
typed.on("error", (e: HeraldError) => {
  const code: HeraldErrorCode = e.code;
  log(code === "token_failed", e.closeCode, e.frame, e.name, e.cause);
});
typed.on("truncated", (t: Truncation) => log(t.after, t.resumeFrom));
typed.on("reset", (r: Reset) => log(r.previousSeq, r.lastSeq));

const state: ConnectionState = typed.state;
const lastSeq: number = typed.lastSeq;
const welcome: Welcome | null = typed.welcome;
const closed: Promise<void> = typed.close();
log(version, state, lastSeq, welcome, closed);

const events: keyof HeraldEvents = "truncated";
const err = new HeraldError("connect_failed", "no socket", { closeCode: 4003 });
const custom: HeraldErrorCode = "some_future_server_code";
log(events, err instanceof Error, custom);

// A minimal WebSocket satisfies the interface.
class TinySocket implements WebSocketLike {
  readyState = 0;
  onopen = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose = null;
  onerror = null;
  constructor(readonly url: string) {}
  send(data: string): void { log(data); }
  close(code?: number, reason?: string): void { log(code, reason); }
}
new HeraldClient({ url: "ws://h/ws", token: "t", WebSocket: TinySocket });

// Misuse is rejected.
// @ts-expect-error: url is required
new HeraldClient({ token: "t" });
// @ts-expect-error: a token callback returns a string
new HeraldClient({ url: "ws://h/ws", token: async () => 42 });
// @ts-expect-error: no such event
client.on("welcome", () => {});
// @ts-expect-error: state listeners get a StateChange, not a string
client.on("state", (s: string) => log(s));
// @ts-expect-error: not a state
const wrong: ConnectionState = "opening";
// @ts-expect-error: lastSeq is read-only
client.lastSeq = 3;
// @ts-expect-error: since is a number
new HeraldClient({ url: "ws://h/ws", token: "t", since: "3" });
log(wrong);
