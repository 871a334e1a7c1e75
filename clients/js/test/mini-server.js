// A tiny RFC 6455 WebSocket server on node:http for test/socket.test.js: enough of the
// protocol (handshake, unfragmented text frames, close, ping) to play a Herald node's part
// against a real WebSocket client implementation. Not a test file itself; not Herald.
import { createServer } from "node:http";
import { createHash } from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

function frame(opcode, payload) {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, len]) : Buffer.alloc(4);
  if (len >= 126) {
    if (len > 0xffff) throw new Error("mini-server: frame too large");
    head[0] = 0x80 | opcode;
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  }
  return Buffer.concat([head, payload]);
}

class Session {
  constructor(req, socket) {
    this.url = new URL(req.url, "http://localhost");
    this.socket = socket;
    this.received = []; // parsed JSON text frames from the client
    this.closeCode = null; // the code of the client's close frame
    this.waiters = [];
    this.buffer = Buffer.alloc(0);
    socket.on("data", (chunk) => this.onData(chunk));
    socket.on("error", () => {});
  }

  send(obj) {
    if (!this.socket.destroyed) this.socket.write(frame(1, Buffer.from(JSON.stringify(obj))));
  }

  close(code, reason = "") {
    const payload = Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(reason)]);
    if (!this.socket.destroyed) this.socket.end(frame(8, payload));
  }

  /** Resolves once a received frame satisfies `pred` (already received ones count). */
  waitFor(pred) {
    const found = this.received.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => this.waiters.push({ pred, resolve }));
  }

  onData(chunk) {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const b = this.buffer;
      if (b.length < 2) return;
      const opcode = b[0] & 0x0f;
      let len = b[1] & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        throw new Error("mini-server: 64-bit lengths not supported");
      }
      if (b.length < offset + 4 + len) return;
      const mask = b.subarray(offset, offset + 4);
      const payload = Buffer.from(b.subarray(offset + 4, offset + 4 + len));
      for (let i = 0; i < len; i++) payload[i] ^= mask[i % 4];
      this.buffer = b.subarray(offset + 4 + len);
      if (opcode === 1) {
        const value = JSON.parse(payload.toString("utf8"));
        this.received.push(value);
        this.waiters = this.waiters.filter((w) => (w.pred(value) ? (w.resolve(value), false) : true));
      } else if (opcode === 8) {
        this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.close(1000, "bye");
      } else if (opcode === 9) {
        this.socket.write(frame(10, payload));
      }
    }
  }
}

/** Starts a server on a free loopback port; `onSession(session)` is called per connection. */
export async function startMiniServer(onSession) {
  const sessions = [];
  const server = createServer((req, res) => res.writeHead(404).end());
  server.on("upgrade", (req, socket) => {
    const accept = createHash("sha1").update(req.headers["sec-websocket-key"] + GUID).digest("base64");
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    const session = new Session(req, socket);
    sessions.push(session);
    onSession(session);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `ws://127.0.0.1:${port}/ws`,
    sessions,
    stop: () => {
      for (const s of sessions) s.socket.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
