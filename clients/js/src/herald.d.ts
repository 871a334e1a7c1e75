// Hand-written public types of @herald/client (src/herald.js). test/types-check.ts uses every
// part of this API so that `tsc` checks it; keep this file and herald.js in step. It must not
// depend on DOM or Node types, so that it compiles under any `lib` setting.

/** The package version, the same as package.json's. */
export declare const VERSION: string;

/** The connection's state, reported by the `state` event. */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

/** The first frame of every session (protocol.md 1.3). */
export interface Welcome {
  type: "welcome";
  /** This connection's id on its node. */
  session: string;
  /** The node serving the connection. */
  node: string;
  /** The user id from the token's `sub`. */
  user: string;
  /** The server's ping interval; the client pings this often unless `pingIntervalMs` is set. */
  heartbeat_ms: number;
  /** The user's newest seq when the session started (0: no messages). */
  last_seq: number;
}

/** A message to the user (`broadcast: false`, numeric `seq`) or a broadcast (`seq: null`). */
export type HeraldMessage<P = unknown> =
  | {
      type: "message";
      /** Message id (UUID v7), shared by every recipient. */
      id: string;
      /** The user's sequence number: strictly increasing, possibly with holes. */
      seq: number;
      broadcast: false;
      topic: string | null;
      payload: P;
      /** When the message was accepted, unix ms. */
      ts: number;
    }
  | {
      type: "message";
      id: string;
      /** Broadcasts are outside the user's sequence: never replayed, deduplicated or acked. */
      seq: null;
      broadcast: true;
      topic: string | null;
      payload: P;
      ts: number;
    };

/** The `state` event: the new state, the one before it and, depending on the state, why. */
export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** `open`: the session's welcome frame. */
  welcome?: Welcome;
  /** `reconnecting`/`closed`: the server's close code; absent or null when the client gave up on the connection. */
  closeCode?: number | null;
  /** `reconnecting`/`closed`: why the connection ended. */
  reason?: string;
  /**
   * `reconnecting`: retries since the last stable connection, this one included; 0 when the
   * server asked for the reconnect (close 1001 or 1012: not a failure, the backoff starts over).
   */
  attempt?: number;
  /**
   * `reconnecting`: how long the client waits before this retry: full-jitter backoff, or after
   * 1001/1012 uniform in [0, jitter_ms] of the server's `reconnect` frame (default 1000).
   */
  delayMs?: number;
}

/** The `truncated` event (`history_truncated` frame): messages with after < seq < resumeFrom are skipped. */
export interface Truncation {
  after: number;
  resumeFrom: number;
}

/** The `reset` event: the server's newest seq is below the client's (its store was reset). */
export interface Reset {
  /** The highest seq the client had processed before the reset. */
  previousSeq: number;
  /** The welcome's `last_seq`. */
  lastSeq: number;
}

/** Machine-readable error codes; a server `error` frame's code is passed through as is. */
export type HeraldErrorCode =
  | "token_failed"
  | "token_expired"
  | "connect_failed"
  | "closed_by_server"
  | "invalid_frame"
  | "listener_failed"
  | "bad_frame"
  | "unknown_frame"
  | "binary_not_supported"
  | "fragmented_not_supported"
  | "token_invalid"
  | "token_user_mismatch"
  | "token_device_mismatch"
  | "store_unavailable"
  | (string & {});

/** What the `error` event carries. */
export declare class HeraldError extends Error {
  constructor(code: HeraldErrorCode, message: string, details?: { closeCode?: number; frame?: object; cause?: unknown });
  readonly name: "HeraldError";
  readonly code: HeraldErrorCode;
  /** For `closed_by_server` and `token_expired`: the close code. */
  readonly closeCode?: number;
  /** For errors from the server: its `error` frame. */
  readonly frame?: object;
}

/** The event names and what their listeners receive. */
export interface HeraldEvents<P = unknown> {
  message: HeraldMessage<P>;
  state: StateChange;
  error: HeraldError;
  truncated: Truncation;
  reset: Reset;
}

/** The part of a WebSocket the client uses: browsers' WebSocket, Node 22's, `ws`'s. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // `any` events: each implementation has its own event classes. The client reads
  // `data` (a string) from message events and `code`/`reason` from close events.
  onopen: ((event: any) => any) | null;
  onmessage: ((event: any) => any) | null;
  onclose: ((event: any) => any) | null;
  onerror: ((event: any) => any) | null;
}

/** A WebSocket class: `new WebSocket(url)`. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface HeraldOptions {
  /** The node's WebSocket endpoint, e.g. `wss://push.example.com/ws`; relative (`/ws`) in a page. */
  url: string;
  /** A connection token, or a function returning one (maybe async), called again after 4001. */
  token: string | (() => string | Promise<string>);
  /** The device id (`?device=`); the server's default is `default`. */
  device?: string;
  /** Resume point on the first connection: the highest seq the app already handled. */
  since?: number;
  /** The WebSocket class; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Longest wait before a pending ack is sent (default 100). */
  ackIntervalMs?: number;
  /** Send the ack at once when this many messages are unacked (default 50). */
  ackBatch?: number;
  /** First backoff cap (default 500); doubled per retry. */
  backoffBaseMs?: number;
  /** Largest backoff cap (default 30000). */
  backoffMaxMs?: number;
  /** A connection open this long resets the backoff (default 10000). */
  stableAfterMs?: number;
  /** Give up on a connection without a welcome after this long (default 20000). */
  connectTimeoutMs?: number;
  /** Ping interval; default the welcome's `heartbeat_ms`. */
  pingIntervalMs?: number;
  /** The connection is dead when nothing arrives this long after a ping (default 10000). */
  heartbeatTimeoutMs?: number;
  /** close() resolves at the latest this long after it was called (default 2000). */
  closeTimeoutMs?: number;
  /** Randomness for the backoff jitter, in [0, 1); default Math.random. */
  random?: () => number;
  /** The clock, unix ms; default Date.now. */
  now?: () => number;
  /** Timers; default the global ones. */
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: any) => void;
}

export declare class HeraldClient<P = unknown> {
  constructor(options: HeraldOptions);
  /** The current state; `closed` until connect(). */
  readonly state: ConnectionState;
  /** The highest seq handed to a `message` listener (the resume point); 0 before any. */
  readonly lastSeq: number;
  /** The current session's welcome; null while not open. */
  readonly welcome: Welcome | null;
  /** Starts connecting; reconnects on its own until close(). No-op unless closed. */
  connect(): void;
  /** Sends the pending ack, closes the socket (1000) and stops; resolves once it is closed. */
  close(): Promise<void>;
  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof HeraldEvents<P>>(event: K, listener: (value: HeraldEvents<P>[K]) => void): () => void;
  off<K extends keyof HeraldEvents<P>>(event: K, listener: (value: HeraldEvents<P>[K]) => void): void;
}
