// Unit tests of the package itself: the version is the same in package.json and the module,
// the package resolves by its name through `exports`, and the module exports exactly the
// names herald.d.ts declares.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as herald from "@herald/client";

const read = (path) => readFileSync(new URL(path, import.meta.url), "utf8");

test("VERSION is package.json's version", () => {
  const pkg = JSON.parse(read("../package.json"));
  assert.equal(pkg.name, "@herald/client");
  assert.match(pkg.version, /^\d+\.\d+\.\d+$/);
  assert.equal(herald.VERSION, pkg.version);
});

test("the runtime exports are the names herald.d.ts declares", () => {
  const dts = read("../src/herald.d.ts");
  const declared = [...dts.matchAll(/^export declare (?:const|class) (\w+)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(Object.keys(herald).sort(), declared);
  assert.deepEqual(declared, ["HeraldClient", "HeraldError", "VERSION"]);
});

test("every event and option named in herald.d.ts exists in herald.js", () => {
  const dts = read("../src/herald.d.ts");
  const js = read("../src/herald.js");
  const events = dts.match(/interface HeraldEvents<P = unknown> \{([^}]*)\}/)[1];
  for (const [, name] of events.matchAll(/^\s+(\w+):/gm)) assert.ok(js.includes(`"${name}"`), `event ${name}`);
  const options = dts.match(/interface HeraldOptions \{([\s\S]*?)\n\}/)[1];
  const defaults = js.match(/const DEFAULTS = \{([^}]*)\}/)[1];
  for (const [, name] of options.matchAll(/^  (\w+)\??:/gm)) {
    assert.ok(js.includes(`o.${name}`) || new RegExp(`^  ${name}:`, "m").test(defaults), `option ${name}`);
  }
});
