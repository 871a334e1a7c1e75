// Drives headless Chromium for the browser tests, one command per stdin line, one JSON
// answer per stdout line; the Rust test decides what passes.
//
//   node driver.cjs <base url> <admin key> <user data dir>
//   open <path>          -> {"ok":true}
//   read                 -> what the dashboard shows (nodes, totals, status line)
//   screenshot <file>    -> {"ok":true,"file":...}
//   quit
//
// Environment: HERALD_TEST_PLAYWRIGHT (the playwright-core package directory),
// HERALD_TEST_CHROMIUM (the browser binary).
"use strict";
const readline = require("readline");
const playwright = require(process.env.HERALD_TEST_PLAYWRIGHT);

const [base, key, dataDir] = process.argv.slice(2);

function answer(v) {
  process.stdout.write(JSON.stringify(v) + "\n");
}

async function main() {
  const context = await playwright.chromium.launchPersistentContext(dataDir, {
    executablePath: process.env.HERALD_TEST_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    httpCredentials: { username: "operator", password: key },
    viewport: { width: 1440, height: 1400 },
  });
  const page = context.pages()[0] || (await context.newPage());
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [cmd, arg] = line.trim().split(/\s+(.*)/);
    try {
      if (cmd === "open") {
        const resp = await page.goto(base + arg);
        answer({ ok: true, status: resp ? resp.status() : null });
      } else if (cmd === "read") {
        answer(await page.evaluate(() => {
          const text = (sel, root) => (root || document).querySelector(sel)?.textContent ?? null;
          return {
            ok: true,
            status: text("#status"),
            nodes_up: text("[data-testid=nodes-up]"),
            connections: text("[data-testid=connections-total]"),
            in_rate: text("[data-testid=in-rate]"),
            out_rate: text("[data-testid=out-rate]"),
            actor_rows: document.querySelectorAll("#actors tr").length,
            nodes: [...document.querySelectorAll(".node")].map((n) => ({
              node: n.dataset.node,
              up: n.dataset.up === "true",
              connections: text("[data-field=connections]", n),
              in: text("[data-field=in]", n),
              out: text("[data-field=out]", n),
              last_seen: text("[data-field=last-seen]", n),
            })),
          };
        }));
      } else if (cmd === "screenshot") {
        await page.screenshot({ path: arg, fullPage: true });
        answer({ ok: true, file: arg });
      } else if (cmd === "quit") {
        break;
      } else {
        answer({ ok: false, error: "unknown command " + cmd });
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
