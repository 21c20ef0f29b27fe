// The package in a Vite build, with no plugin: Vite resolves it like any installed package and
// emits the wasm as an asset; the built app then identifies in Chromium.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ROOT, startSim, startRelay, initSim, serveApp, launchBrowser, watchErrors, mintAssertion, until, hits } from "./helpers.mjs";

test("a Vite app that imports hsq-identity builds and identifies in Chromium", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "hsq-vite-"));
  mkdirSync(path.join(dir, "node_modules"));
  symlinkSync(ROOT, path.join(dir, "node_modules", "hsq-identity"), "dir");
  writeFileSync(path.join(dir, "index.html"), `<!doctype html><html><head><title>vite app</title></head><body><script type="module" src="/main.js"></script></body></html>`);
  writeFileSync(
    path.join(dir, "main.js"),
    `import { StableIdentity } from "hsq-identity";
window.events = [];
const token = new URLSearchParams(location.search).get("a");
const tracker = new URLSearchParams(location.search).get("t");
StableIdentity.start({ relayUrl: "/hsq/v1/identity", assertion: token, portalId: "1234567", trackerUrl: tracker, consent: "granted", onEvent: (e) => window.events.push(e) })
  .then((hs) => { window.hs = hs; });
`,
  );
  const { build } = await import("vite");
  await build({ root: dir, logLevel: "warn", build: { outDir: path.join(dir, "dist"), emptyOutDir: true } });
  const assets = readdirSync(path.join(dir, "dist", "assets"));
  assert.ok(assets.some((f) => f.endsWith(".wasm")), `the wasm is emitted as an asset: ${assets}`);

  const sim = await startSim();
  await initSim(sim.url);
  await fetch(`${sim.url}/__sim/config`, { method: "POST", body: JSON.stringify({ chatWidget: false }) });
  const relay = await startRelay(sim.url);
  const app = await serveApp({ relay: relay.url, statics: { "/assets/": path.join(dir, "dist", "assets") }, pages: { "*": () => import("node:fs").then((fs) => fs.readFileSync(path.join(dir, "dist", "index.html"), "utf8")) } });
  const browser = await launchBrowser();
  try {
    const p = await browser.newPage();
    const errors = await watchErrors(p);
    const token = await mintAssertion({ sub: "u_vite", email: "vite@x.io" });
    await p.goto(`${app.url}/?a=${encodeURIComponent(token)}&t=${encodeURIComponent(sim.url + "/1234567.js")}`);
    await p.waitForFunction(() => window.events.some((e) => e.type === "identified"));
    const h = await until(async () => (await hits(sim.url))[0], "the first view");
    assert.deepEqual(h.identity, { id: "u_vite", email: "vite@x.io" });
    assert.deepEqual(await errors(), []);
  } finally {
    await browser.close();
    await app.close();
    await relay.stop();
    await sim.stop();
  }
});
