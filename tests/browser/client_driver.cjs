// Drives the JS client (@herald/client) in headless Chromium for tests/js_client.rs: one JSON
// command per stdin line, one JSON answer per stdout line ({"ok":true,...} or
// {"ok":false,"error":...}); the Rust test decides what passes. The page is a node's /demo;
// the clients under test are created in it from the node's own /client/herald.js (a dynamic
// import), and every event they emit is recorded in the page, with the page's clock.
//
//   node client_driver.cjs <base url> <user data dir> [bypass-csp]
//   (bypass-csp: the page's Content-Security-Policy is not applied, so that its clients may
//   dial other ports than the page's own node)
//   {"cmd":"open","path":"/demo"}            -> {"ok":true,"status":200,"version":"0.1.0"}
//   {"cmd":"start","id":"a","token":"<jwt>"|"tokens":["<jwt>",...],"url":"/ws",
//    "device":"d","options":{...},"count":N} -> {"ok":true}   (N > 1: ids a0..a<N-1>)
//   {"cmd":"read","id":"a"}                  -> {"ok":true,"clients":{"a":{...}}}
//   {"cmd":"read","prefix":"a"}              -> every client whose id starts with "a"
//   {"cmd":"stop","prefix":"a"}              -> close() them all
//   {"cmd":"click","selector":"#connect"}    -> a click on the page
//   {"cmd":"text","selectors":{"k":"#id"}}   -> {"ok":true,"text":{"k":"..."},"rows":[[...]]}
//                                               (an input's value; the #rows table's cells)
//   {"cmd":"quit"}
// A client's record: state, lastSeq, tokenCalls, messages [{seq,topic,payload,t}], states
// [{state,closeCode,reason,attempt,delayMs,t}], errors [{code,message,closeCode}]. Every
// answer also carries the page's console errors and uncaught exceptions so far ("problems").
//
// Environment: HERALD_TEST_PLAYWRIGHT (the playwright-core package directory),
// HERALD_TEST_CHROMIUM (the browser binary).
"use strict";
const readline = require("readline");
const playwright = require(process.env.HERALD_TEST_PLAYWRIGHT);

const [base, dataDir, flag] = process.argv.slice(2);
const problems = [];

function answer(v) {
  process.stdout.write(JSON.stringify({ ...v, problems }) + "\n");
}

// Runs in the page: loads the client from the node and installs the clients' bookkeeping
// (everything it needs is defined inside, since Playwright sends the function's source).
async function setUp() {
  const mod = await import("/client/herald.js");
  const clients = new Map();
  const records = new Map();
  const matching = ({ id, prefix }) =>
    [...clients.keys()].filter((k) => (id !== undefined ? k === id : k.startsWith(prefix || "")));
  const start = (spec) => {
    const ids = spec.count > 1 ? Array.from({ length: spec.count }, (_, i) => `${spec.id}${i}`) : [spec.id];
    for (const id of ids) {
      const rec = { tokenCalls: 0, messages: [], states: [], errors: [] };
      const tokens = spec.tokens;
      const token = tokens ? async () => tokens[Math.min(rec.tokenCalls++, tokens.length - 1)] : spec.token;
      const client = new mod.HeraldClient({ url: spec.url, token, device: spec.device, ...spec.options });
      const orNull = (v) => (v === undefined ? null : v);
      client.on("message", (m) => rec.messages.push({ seq: m.seq, topic: m.topic, payload: m.payload, t: performance.now() }));
      client.on("state", (s) => rec.states.push({
        state: s.state, closeCode: orNull(s.closeCode), reason: orNull(s.reason),
        attempt: orNull(s.attempt), delayMs: orNull(s.delayMs), t: performance.now(),
      }));
      client.on("error", (e) => rec.errors.push({ code: e.code, message: e.message, closeCode: orNull(e.closeCode) }));
      clients.set(id, client);
      records.set(id, rec);
      client.connect();
    }
  };
  const read = (which) => {
    const out = {};
    for (const id of matching(which)) {
      const c = clients.get(id);
      out[id] = { state: c.state, lastSeq: c.lastSeq, ...records.get(id) };
    }
    return out;
  };
  const stop = (which) => Promise.all(matching(which).map((id) => clients.get(id).close()));
  window.__herald = { start, read, stop };
  return mod.VERSION;
}

function text(selectors) {
  const out = {};
  for (const [k, sel] of Object.entries(selectors)) {
    const el = document.querySelector(sel);
    out[k] = el === null ? null : el instanceof HTMLInputElement ? el.value : el.textContent;
  }
  const rows = [...document.querySelectorAll("#rows tr")].map((tr) => [...tr.children].map((td) => td.textContent));
  return { text: out, rows };
}

async function main() {
  const context = await playwright.chromium.launchPersistentContext(dataDir, {
    executablePath: process.env.HERALD_TEST_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    bypassCSP: flag === "bypass-csp",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`exception: ${e.message}`));
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let c;
    try {
      c = JSON.parse(line);
      if (c.cmd === "open") {
        const resp = await page.goto(base + c.path);
        const version = await page.evaluate(setUp);
        answer({ ok: true, status: resp ? resp.status() : null, version });
      } else if (c.cmd === "start") {
        await page.evaluate((c) => window.__herald.start(c), c);
        answer({ ok: true });
      } else if (c.cmd === "read") {
        answer({ ok: true, clients: await page.evaluate((c) => window.__herald.read(c), c) });
      } else if (c.cmd === "stop") {
        await page.evaluate((c) => window.__herald.stop(c), c);
        answer({ ok: true });
      } else if (c.cmd === "click") {
        await page.click(c.selector);
        answer({ ok: true });
      } else if (c.cmd === "text") {
        answer({ ok: true, ...(await page.evaluate(text, c.selectors)) });
      } else if (c.cmd === "quit") {
        break;
      } else {
        answer({ ok: false, error: `unknown command ${c.cmd}` });
      }
    } catch (e) {
      answer({ ok: false, error: String(e) });
    }
  }
  await context.close();
}

main().catch((e) => {
  answer({ ok: false, error: String(e) });
  process.exit(1);
});
