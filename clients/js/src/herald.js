// @herald/client: the official Herald WebSocket client for browsers and Node (docs/protocol.md,
// section 1). This file owns a device connection's whole lifecycle: token (string or async
// callback), connect, welcome, application heartbeat and dead-connection detection, reconnect
// with exponential backoff and full jitter (a draining server's reconnect hint: a short
// jittered delay that does not count as a failure), resume from the last processed seq
// (`since`), dedupe by seq, batched cumulative acks, and the events the app sees. No runtime dependencies;
// the WebSocket class, timers, clock and randomness are injectable for tests.
// The public types are hand-written in herald.d.ts; keep the two in step.

export const VERSION = "0.1.0";

const OPEN = 1; // WebSocket.OPEN in every implementation
const CONNECTING = 0;
const CLOSED = 3;
const EVENTS = ["message", "state", "error", "truncated", "reset"];
// Close codes after which reconnecting in a loop is wrong (protocol.md 1.5).
const FATAL_CLOSE = { 1002: "protocol error", 4003: "policy violation" };
const TOKEN_EXPIRED = 4001;
// Close codes of a server that asks its clients to come back (drain, restart): 1001 going
// away, 1012 service restart. Not a failure: retried after a random delay in [0, jitter],
// the jitter from the connection's `reconnect` frame, and the backoff starts over.
const SERVER_RESTART = new Set([1001, 1012]);
const DEFAULT_RESTART_JITTER_MS = 1000;

// The numeric options and their defaults (README "Options"); undefined: no default.
const DEFAULTS = {
  ackIntervalMs: 100,
  ackBatch: 50,
  backoffBaseMs: 500,
  backoffMaxMs: 30000,
  stableAfterMs: 10000,
  connectTimeoutMs: 20000,
  pingIntervalMs: undefined, // the welcome's heartbeat_ms
  heartbeatTimeoutMs: 10000,
  closeTimeoutMs: 2000,
};

/** An error surfaced through the `error` event; `code` is the machine-readable part. */
export class HeraldError extends Error {
  constructor(code, message, details) {
    const { cause, closeCode, frame } = details || {};
    super(message, cause !== undefined ? { cause } : undefined);
    this.name = "HeraldError";
    this.code = code;
    if (closeCode !== undefined) this.closeCode = closeCode;
    if (frame !== undefined) this.frame = frame;
  }
}

function positive(name, value, fallback) {
  if (value === undefined) return fallback;
  if (typeof value === "number" && value > 0 && Number.isFinite(value)) return value;
  throw new TypeError(`herald: ${name} must be a positive number`);
}

export class HeraldClient {
  constructor(options) {
    const o = options || {};
    if (typeof o.url !== "string" || o.url === "") throw new TypeError("herald: url is required");
    if (typeof o.token !== "function" && (typeof o.token !== "string" || o.token === "")) {
      throw new TypeError("herald: token must be a non-empty string or a function returning one");
    }
    const WS = o.WebSocket || globalThis.WebSocket;
    if (typeof WS !== "function") {
      throw new TypeError(
        "herald: no WebSocket implementation: pass options.WebSocket " +
          "(Node 20: run with --experimental-websocket, or pass the `ws` package's WebSocket)",
      );
    }
    if (o.since !== undefined && !(Number.isSafeInteger(o.since) && o.since >= 0)) {
      throw new TypeError("herald: since must be a non-negative integer");
    }
    this._o = {
      url: o.url,
      token: o.token,
      device: o.device,
      WebSocket: WS,
      random: o.random || Math.random,
      now: o.now || Date.now,
      setTimeout: o.setTimeout || ((fn, ms) => globalThis.setTimeout(fn, ms)),
      clearTimeout: o.clearTimeout || ((h) => globalThis.clearTimeout(h)),
    };
    for (const [name, fallback] of Object.entries(DEFAULTS)) this._o[name] = positive(name, o[name], fallback);
    this._listeners = new Map(EVENTS.map((e) => [e, []]));
    this._state = "closed";
    this._ws = null; // the current socket, or null
    this._gen = 0; // bumped per attempt and by close(): late callbacks of older ones are dropped
    this._attempt = 0; // reconnects since the last stable connection
    this._token = typeof o.token === "string" ? o.token : null;
    this._tokenStale = true; // the callback must be asked before the next attempt
    this._lastSeq = o.since || 0; // highest seq handed to the app
    this._sinceKnown = o.since !== undefined; // send `since`, or let the server use the ack cursor
    this._ackedSeq = 0; // highest seq acked in this session
    this._unacked = 0;
    this._welcome = null;
    this._welcomeAt = 0;
    this._pingAt = -1; // when the outstanding ping was sent; -1: none outstanding
    this._jitterMs = null; // this connection's `reconnect` frame's jitter_ms; null: none came
    this._stopped = false; // close() called, or a fatal close: never reconnect
    this._timers = { retry: null, connect: null, ping: null, dead: null, ack: null };
  }

  get state() { return this._state; }
  get lastSeq() { return this._lastSeq; }
  get welcome() { return this._welcome; }

  on(event, fn) {
    const list = this._listeners.get(event);
    if (!list) throw new TypeError(`herald: unknown event "${event}"; one of ${EVENTS.join(", ")}`);
    if (typeof fn !== "function") throw new TypeError("herald: listener must be a function");
    list.push(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    const list = this._listeners.get(event);
    const i = list ? list.indexOf(fn) : -1;
    if (i >= 0) list.splice(i, 1);
  }

  /** Starts connecting (no-op unless closed). Reconnects on its own until close(). */
  connect() {
    if (this._state !== "closed") return;
    this._stopped = false;
    this._attempt = 0;
    if (typeof this._o.token === "function") this._tokenStale = true;
    this._setState("connecting", {});
    this._open();
  }

  /** Sends the pending ack, closes the socket with 1000 and stops reconnecting. */
  close() {
    const ws = this._ws;
    if (this._state === "closed" && !ws) return Promise.resolve();
    this._flushAck();
    this._stopped = true;
    this._gen++;
    this._ws = this._welcome = null;
    this._clearTimers();
    this._setState("closed", { reason: "closed by the client" });
    if (!ws) return Promise.resolve();
    return new Promise((resolve) => {
      let timer = null;
      const done = () => {
        if (timer !== null) this._o.clearTimeout(timer);
        timer = null;
        ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
        resolve();
      };
      ws.onopen = ws.onmessage = ws.onerror = null;
      ws.onclose = done;
      if (ws.readyState === CLOSED) return done();
      timer = this._o.setTimeout(done, this._o.closeTimeoutMs);
      if (ws.readyState === OPEN || ws.readyState === CONNECTING) {
        try {
          ws.close(1000, "bye");
        } catch {
          done();
        }
      }
    });
  }

  // ---- connecting ------------------------------------------------------------------------

  _open() {
    const gen = ++this._gen;
    const source = this._o.token;
    if (typeof source === "string") return this._dial(source);
    if (!this._tokenStale && this._token !== null) return this._dial(this._token);
    let pending;
    try {
      pending = Promise.resolve(source());
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (token) => {
        if (gen !== this._gen) return;
        if (typeof token !== "string" || token === "") {
          return this._tokenFailed(new TypeError("token callback must return a non-empty string"));
        }
        this._token = token;
        this._tokenStale = false;
        this._dial(token);
      },
      (err) => {
        if (gen === this._gen) this._tokenFailed(err);
      },
    );
  }

  _tokenFailed(err) {
    this._emit("error", new HeraldError("token_failed", `token callback failed: ${err && err.message}`, { cause: err }));
    this._scheduleRetry({ reason: "token callback failed" });
  }

  _url(token) {
    const base = globalThis.location && globalThis.location.href;
    const url = base ? new URL(this._o.url, base) : new URL(this._o.url);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    url.searchParams.set("token", token);
    if (this._o.device !== undefined) url.searchParams.set("device", this._o.device);
    if (this._sinceKnown) url.searchParams.set("since", String(this._lastSeq));
    return url.toString();
  }

  _dial(token) {
    let ws;
    try {
      ws = new this._o.WebSocket(this._url(token));
    } catch (err) {
      this._emit("error", new HeraldError("connect_failed", `cannot open a WebSocket: ${err && err.message}`, { cause: err }));
      return this._scheduleRetry({ reason: "cannot open a WebSocket" });
    }
    this._ws = ws;
    this._welcome = null;
    this._jitterMs = null;
    ws.onmessage = (ev) => { if (this._ws === ws) this._onFrame(ev.data); };
    ws.onclose = (ev) => {
      if (this._ws === ws) this._lost(ev.code, ev.reason || "", {});
    };
    ws.onerror = () => {}; // a close event follows; its code says more than the error does
    this._timers.connect = this._o.setTimeout(() => {
      if (this._ws === ws) this._lost(null, "no welcome within connectTimeoutMs", { abandon: true });
    }, this._o.connectTimeoutMs);
  }

  // ---- receiving -------------------------------------------------------------------------

  _onFrame(data) {
    // Any frame is a sign of life: the outstanding ping is answered.
    this._pingAt = -1;
    this._clear("dead");
    let frame;
    try {
      if (typeof data !== "string") throw new Error("a binary frame");
      frame = JSON.parse(data);
      if (frame === null || typeof frame !== "object") throw new Error("not a JSON object");
    } catch (err) {
      return this._emit("error", new HeraldError("invalid_frame", `server sent an unreadable frame: ${err.message}`));
    }
    switch (frame.type) {
      case "welcome": return this._onWelcome(frame);
      case "message": return this._onMessage(frame);
      case "history_truncated":
        return this._emit("truncated", { after: frame.after, resumeFrom: frame.resume_from });
      case "error":
        return this._emit("error", new HeraldError(String(frame.code), String(frame.message), { frame }));
      case "reconnect":
        // The server is about to close with 1012 (or 1001): spread the reconnects over this.
        if (Number.isFinite(frame.jitter_ms) && frame.jitter_ms >= 0) this._jitterMs = frame.jitter_ms;
        return;
      default: return; // pong, or a frame type newer than this client: nothing to do
    }
  }

  _onWelcome(frame) {
    const ws = this._ws;
    this._clear("connect");
    const lastSeq = typeof frame.last_seq === "number" ? frame.last_seq : 0;
    if (lastSeq < this._lastSeq) {
      // The store was reset (embedded store after a restart): seqs start again at 1.
      const previousSeq = this._lastSeq;
      this._lastSeq = 0;
      this._emit("reset", { previousSeq, lastSeq });
      if (this._ws !== ws) return; // a reset listener called close()
      if (lastSeq > 0) {
        // This session resumes from last_seq (the server clamps `since`), which would skip
        // messages 1..last_seq of the new store: reconnect at once from 0 instead.
        return this._lost(null, "store reset: resuming from seq 0", { abandon: true, resync: true });
      }
    }
    this._welcome = frame;
    this._welcomeAt = this._o.now();
    this._ackedSeq = this._lastSeq; // acks of the previous session cannot be sent in this one
    this._unacked = 0;
    this._setState("open", { welcome: frame });
    if (this._ws !== ws) return; // a state listener called close()
    this._clear("ping");
    this._schedulePing();
  }

  _onMessage(frame) {
    if (frame.broadcast === true || frame.seq === null) {
      frame.seq = null;
      frame.broadcast = true;
      return this._emit("message", frame); // outside the user's sequence: no dedupe, no ack
    }
    if (typeof frame.seq !== "number") {
      return this._emit("error", new HeraldError("invalid_frame", "message frame without a numeric seq", { frame }));
    }
    if (frame.seq <= this._lastSeq) return; // already handled (replay after a reconnect)
    if (frame.broadcast === undefined) frame.broadcast = false;
    const ws = this._ws;
    this._lastSeq = frame.seq;
    this._sinceKnown = true;
    this._emit("message", frame);
    if (this._ws !== ws) return; // a listener called close(), which acked already
    this._unacked++;
    if (this._unacked >= this._o.ackBatch) this._flushAck();
    else if (this._timers.ack === null) {
      this._timers.ack = this._o.setTimeout(() => {
        this._timers.ack = null;
        this._flushAck();
      }, this._o.ackIntervalMs);
    }
  }

  // ---- sending ---------------------------------------------------------------------------

  _send(frame) {
    const ws = this._ws;
    if (ws === null || ws.readyState !== OPEN) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false; // the close event follows
    }
  }

  _flushAck() {
    this._clear("ack");
    if (this._welcome === null || this._lastSeq <= this._ackedSeq) return;
    if (this._send({ type: "ack", seq: this._lastSeq })) {
      this._ackedSeq = this._lastSeq;
      this._unacked = 0;
    }
  }

  _schedulePing() {
    const interval = this._o.pingIntervalMs || this._welcome.heartbeat_ms || 25000;
    this._timers.ping = this._o.setTimeout(() => {
      this._timers.ping = null;
      if (this._ws === null) return;
      this._send({ type: "ping" });
      if (this._pingAt < 0) {
        this._pingAt = this._o.now();
        this._timers.dead = this._o.setTimeout(() => {
          this._timers.dead = null;
          if (this._pingAt >= 0 && this._ws !== null) {
            this._lost(null, "no frame within heartbeatTimeoutMs of a ping", { abandon: true });
          }
        }, this._o.heartbeatTimeoutMs);
      }
      this._schedulePing();
    }, interval);
  }

  // ---- losing and reconnecting -----------------------------------------------------------

  /** The current connection is gone: closed by the server (`code`), or given up by the client. */
  _lost(code, reason, how) {
    const ws = this._ws;
    const wasOpen = this._welcome !== null;
    this._ws = this._welcome = null;
    this._clearTimers();
    this._pingAt = -1;
    if (how.abandon && ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        ws.close(1000, "bye");
      } catch {} // already closing
    }
    if (this._stopped) return;
    if (code !== null && FATAL_CLOSE[code]) {
      return this._fatal(new HeraldError("closed_by_server", `server closed the connection: ${code} ${FATAL_CLOSE[code]}`, { closeCode: code }));
    }
    if (code === TOKEN_EXPIRED) {
      if (typeof this._o.token !== "function") {
        return this._fatal(new HeraldError("token_expired", "token expired (4001) and no token callback was given", { closeCode: code }));
      }
      this._tokenStale = true;
    }
    // A browser cannot see why an upgrade was refused (a 401 shows as 1006), so a connection
    // that never reached its welcome may have been an expired token: ask the callback again.
    if (!wasOpen && !how.resync) this._tokenStale = true;
    if (wasOpen && this._o.now() - this._welcomeAt >= this._o.stableAfterMs) this._attempt = 0;
    if (code !== null && SERVER_RESTART.has(code)) {
      // The server asked for it: not a failure, so the backoff starts over (attempt 0).
      this._attempt = 0;
      const jitter = Math.floor(Math.min(this._jitterMs !== null ? this._jitterMs : DEFAULT_RESTART_JITTER_MS, this._o.backoffMaxMs));
      return this._scheduleRetry({ closeCode: code, reason }, false, Math.floor(this._o.random() * (jitter + 1)));
    }
    this._scheduleRetry({ closeCode: code, reason }, how.resync);
  }

  /** Retries at once, after `fixedDelayMs` (a server restart; attempt stays 0), or with backoff. */
  _scheduleRetry(detail, immediate, fixedDelayMs) {
    let delayMs = fixedDelayMs || 0;
    if (!immediate && fixedDelayMs === undefined) {
      const cap = Math.min(this._o.backoffMaxMs, this._o.backoffBaseMs * 2 ** Math.min(this._attempt, 40));
      delayMs = Math.floor(this._o.random() * cap); // full jitter: uniform in [0, cap)
      this._attempt++;
    }
    const gen = this._gen;
    this._setState("reconnecting", { ...detail, attempt: this._attempt, delayMs });
    if (this._stopped || gen !== this._gen) return; // a state listener called close()
    this._timers.retry = this._o.setTimeout(() => {
      this._timers.retry = null;
      this._open();
    }, delayMs);
  }

  _fatal(err) {
    this._stopped = true;
    this._gen++;
    this._setState("closed", { closeCode: err.closeCode, reason: err.message });
    this._emit("error", err);
  }

  // ---- plumbing --------------------------------------------------------------------------

  _clear(name) {
    if (this._timers[name] !== null) this._o.clearTimeout(this._timers[name]);
    this._timers[name] = null;
  }

  _clearTimers() {
    for (const name of Object.keys(this._timers)) this._clear(name);
  }

  _setState(state, detail) {
    const previous = this._state;
    this._state = state;
    this._emit("state", { state, previous, ...detail });
  }

  _emit(event, value) {
    for (const fn of this._listeners.get(event).slice()) {
      try {
        fn(value);
      } catch (err) {
        if (event !== "error") {
          this._emit("error", new HeraldError("listener_failed", `a ${event} listener threw: ${err && err.message}`, { cause: err }));
        }
      }
    }
  }
}
