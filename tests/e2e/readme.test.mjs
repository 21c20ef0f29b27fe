// The README's Node snippet for minting an assertion is the one users copy: run it as written
// and check the relay accepts what it mints.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT, startSim, startRelay, initSim, ASSERTION_SECRET } from "./helpers.mjs";

test("the README's Node snippet mints an assertion the relay accepts", async () => {
  const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
  const m = /<!-- mint:node -->\s*```js\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, "the README has the marked Node snippet");
  const file = path.join(mkdtempSync(path.join(tmpdir(), "hsq-readme-")), "mint.mjs");
  writeFileSync(file, m[1]);
  const { mintAssertion } = await import(pathToFileURL(file).href);
  const token = mintAssertion({ id: 42, email: "Readme@X.io" }, { secret: ASSERTION_SECRET });

  const sim = await startSim();
  await initSim(sim.url);
  const relay = await startRelay(sim.url);
  try {
    const r = await fetch(`${relay.url}/v1/identity`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ assertion: token }) });
    const t = await r.json();
    assert.equal(r.status, 200, JSON.stringify(t));
    assert.deepEqual([t.id, t.state, t.email], ["42", "confirmed", "readme@x.io"]);
    const bad = mintAssertion({ id: 42, email: "readme@x.io" }, { secret: "not-the-secret-0123456789abcdef0123" });
    const r2 = await fetch(`${relay.url}/v1/identity`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ assertion: bad }) });
    assert.equal(r2.status, 401);
  } finally {
    await relay.stop();
    await sim.stop();
  }
});
