/// <reference lib="dom" />
// Compile-time test that src/herald.d.ts fits a browser program: the DOM's WebSocket class is
// accepted as the `WebSocket` option and nothing clashes with DOM globals. Checked by `tsc` in
// scripts/check.sh; never run.
import { HeraldClient } from "@herald/client";

const client = new HeraldClient({
  url: "/ws",
  token: async () => (await fetch("/token")).text(),
  WebSocket: globalThis.WebSocket,
  setTimeout: (fn, ms) => window.setTimeout(fn, ms),
  clearTimeout: (handle) => window.clearTimeout(handle),
});
client.on("message", (m) => console.log(m.seq, m.payload));
client.connect();
window.addEventListener("pagehide", () => void client.close());
