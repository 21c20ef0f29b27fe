// `node scripts/bench-module.mjs`: the package's gzipped size, and the time from calling
// StableIdentity.start() (wasm fetch and instantiation included) to identify being queued, in
// headless Chromium against the simulator and the relay. In the same run, interleaved round by
// round and loaded the same way (a module import from the same server, no HTTP cache), a
// do-nothing ES module of the package's gzipped size that pushes identify as soon as it is
// evaluated: the floor for loading that many bytes; and `analytics` + `@analytics/hubspot` (bundled
// by esbuild into one ES module), whose identify is queued once HubSpot's tracker script has loaded
// (the simulator's, through the plugin's `customScriptSrc`). Each round is one browser context: a
// warm-up page, then the three kinds in turn at each position. Prints numbers and ratios; asserts
// nothing.
import { randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT, startSim, startRelay, initSim, serveApp, launchBrowser, mintAssertion } from "../tests/e2e/helpers.mjs";

// A multiple of 6: each kind of page takes each position equally often.
const RUNS = Number(process.env.RUNS || 18);
const gz = (f) => gzipSync(readFileSync(path.join(ROOT, "pkg", f)), { level: 9 }).length;
const sizes = { wasm: gz("hsq_identity_bg.wasm"), js: gz("index.js") };

// The do-nothing module: incompressible text padded until it gzips to the package's size.
const target = sizes.wasm + sizes.js;
let pad = "";
while (gzipSync(`export const pad = "${pad}";\n`, { level: 9 }).length < target) pad += randomBytes(256).toString("base64");
const noop = `export const pad = "${pad}";\n`;
const noopPage = `<!doctype html><script>
window.marks = {};
</script><script type="module">
window.t0 = performance.now();
await import("/bench/noop.js");
(window._hsq = window._hsq || []).push(["identify", { id: "u", email: "u@bench.test" }]);
window.marks.email = performance.now() - window.t0;
</script>`;

// analytics + @analytics/hubspot, bundled as an app would (the page calls it as the docs show).
const { build } = await import("esbuild");
const bundle = await build({
  stdin: { contents: `export { default as Analytics } from "analytics"; export { default as hubspot } from "@analytics/hubspot";`, resolveDir: ROOT },
  bundle: true, format: "esm", minify: true, target: "es2022", platform: "browser", write: false, logLevel: "warning",
});
const analyticsJs = bundle.outputFiles[0].text;

const sim = await startSim();
await initSim(sim.url);
await fetch(`${sim.url}/__sim/config`, { method: "POST", body: JSON.stringify({ chatWidget: false }) });
const relay = await startRelay(sim.url);
// The plugin queues identify on _hsq once the tracker replaced `_hsq.push` (its `loaded()`): the
// page marks identify as it reaches that dispatcher. HubSpot's tracker comes from the simulator
// (`customScriptSrc`: a page.route would fetch it through this process, adding its round trips).
const analyticsPage = `<!doctype html><script>
window.marks = {};
const q = (window._hsq = []);
const arrayPush = Array.prototype.push;
let inner = arrayPush;
const wrapped = function (...a) {
  for (const e of a) if (Array.isArray(e) && e[0] === "identify" && !("email" in window.marks)) window.marks.email = performance.now() - window.t0;
  return inner.apply(this, a);
};
Object.defineProperty(q, "push", { configurable: true, get: () => (inner === arrayPush ? arrayPush : wrapped), set: (f) => { inner = f; } });
</script><script type="module">
window.t0 = performance.now();
const { Analytics, hubspot } = await import("/bench/analytics.js");
const analytics = Analytics({ app: "bench", plugins: [hubspot({ portalId: "1234567", customScriptSrc: ${JSON.stringify(sim.url + "/1234567.js")} })] });
analytics.identify("u", { email: "u@bench.test" });
</script>`;
// With `?pre=1` the page's head asks for the wasm at once (`<link rel="preload" as="fetch">`), so
// its request runs beside the entry's instead of after it.
const page = (u) => `<!doctype html>${u.searchParams.get("pre") ? '<link rel="preload" href="/pkg/hsq_identity_bg.wasm" as="fetch" type="application/wasm" crossorigin>' : ""}<script>
// Timestamps each identify as it is queued (before the tracker loads, entries go through Array.prototype.push).
window.marks = {};
const push = Array.prototype.push;
Array.prototype.push = function (...a) {
  for (const e of a) if (Array.isArray(e) && e[0] === "identify" && this === window._hsq) {
    const k = e[1] && e[1].email ? "email" : "id";
    if (!(k in window.marks)) window.marks[k] = performance.now() - window.t0;
  }
  return push.apply(this, a);
};
</script><script type="module">
window.t0 = performance.now();
const { StableIdentity, preload } = await import("/pkg/index.js");
window.marks.imported = performance.now() - window.t0;
await preload(); // what start() awaits first: the wasm fetched, compiled and instantiated
window.marks.wasm = performance.now() - window.t0;
window.hs = await StableIdentity.start({ relayUrl: "/hsq/v1/identity", assertion: ${JSON.stringify(u.searchParams.get("a"))}, consent: "granted" });
window.done = performance.now() - window.t0;
</script>`;
const { mkdtempSync, writeFileSync } = await import("node:fs");
const { tmpdir } = await import("node:os");
const benchDir = mkdtempSync(path.join(tmpdir(), "hsq-bench-"));
writeFileSync(path.join(benchDir, "noop.js"), noop);
writeFileSync(path.join(benchDir, "analytics.js"), analyticsJs);
writeFileSync(path.join(benchDir, "tiny.js"), "export const x = 1;\n");
const warmupPage = `<!doctype html><script>window.marks = {};</script><script type="module">await import("/bench/tiny.js"); window.marks.email = 0;</script>`;
const app = await serveApp({ relay: relay.url, pages: { "*": page, "/noop": noopPage, "/analytics": analyticsPage, "/warmup": warmupPage }, statics: { "/bench/": benchDir } });
const browser = await launchBrowser();
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const cold = { id: [], email: [], imported: [], wasm: [], done: [] }, warm = [], warmPre = [], floor = [], plugin = [], parts = { imported: [], wasm: [] };
// `done`: the page sets window.done when start() resolves, which may be just after identify.
const measure = async (p, url, done = false) => {
  await p.goto(url);
  await p.waitForFunction((d) => window.marks.email !== undefined && (!d || window.done !== undefined), done);
  return p.evaluate(() => ({ ...window.marks, done: window.done }));
};
for (let i = 0; i < RUNS; i++) {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  const token = await mintAssertion({ sub: `b${i}`, email: `b${i}@bench.test` });
  // The first page a fresh context loads is slower whatever it loads (a 20-byte module took about
  // 50 ms to import there, 20 to 35 ms on later pages), so a warm-up page goes first, and the
  // three kinds of page take turns at each position, round by round.
  await measure(p, `${app.url}/warmup`);
  const kinds = [
    async () => {
      await ctx.clearCookies(); // the analytics page's tracker may have set hubspotutk
      const m = await measure(p, `${app.url}/?a=${encodeURIComponent(token)}`, true);
      cold.id.push(m.id);
      cold.email.push(m.email);
      cold.imported.push(m.imported);
      cold.wasm.push(m.wasm);
      cold.done.push(m.done);
      // The next pages of the same tab, with the cached ticket (no HTTP cache: no-store): one
      // plain, one preloading the wasm, each first in every other round.
      const plain = async () => {
        const w = await measure(p, `${app.url}/next?a=${encodeURIComponent(token)}`);
        warm.push(w.email);
        parts.imported.push(w.imported);
        parts.wasm.push(w.wasm);
      };
      const pre = async () => warmPre.push((await measure(p, `${app.url}/next?pre=1&a=${encodeURIComponent(token)}`)).email);
      for (const f of i % 2 ? [pre, plain] : [plain, pre]) await f();
    },
    // The floor, in the same tab.
    async () => floor.push((await measure(p, `${app.url}/noop`)).email),
    // analytics + @analytics/hubspot, in the same tab too.
    async () => plugin.push((await measure(p, `${app.url}/analytics`)).email),
  ];
  for (let k = 0; k < kinds.length; k++) await kinds[(i + k) % kinds.length]();
  await ctx.close();
}
await browser.close();
await app.close();
await relay.stop();
await sim.stop();
const ms = (x) => x.toFixed(1) + " ms";
console.log("| measure | value |\n|---|---|");
console.log(`| package size, gzipped (wasm + JS) | ${((sizes.wasm + sizes.js) / 1024).toFixed(1)} KB (${(sizes.wasm / 1024).toFixed(1)} + ${(sizes.js / 1024).toFixed(1)}) |`);
console.log(`| start() to identify queued, cached ticket (median of ${RUNS}) | ${ms(median(warm))} |`);
console.log(`| start() to identify queued, cached ticket, the page preloading the wasm (<link rel=preload>) | ${ms(median(warmPre))} |`);
console.log(`| start() to identify {id} queued, no cache | ${ms(median(cold.id))} |`);
console.log(`| start() to identify with the confirmed email, no cache (relay round trip) | ${ms(median(cold.email))} |`);
console.log(`| of which, cached: the JS entry imported / the wasm loaded (preload()) | ${ms(median(parts.imported))} / ${ms(median(parts.wasm))} |`);
console.log(`| of which, no cache: the JS entry imported / the wasm loaded / start() resolved | ${ms(median(cold.imported))} / ${ms(median(cold.wasm))} / ${ms(median(cold.done))} |`);
const f = median(floor);
console.log(`| do-nothing ES module of ${(noop.length / 1024).toFixed(0)} KB (${(gzipSync(noop, { level: 9 }).length / 1024).toFixed(1)} KB gz): import to identify queued | ${ms(f)} |`);
const an = median(plugin);
console.log(`| analytics + @analytics/hubspot (${(analyticsJs.length / 1024).toFixed(1)} KB, ${(gzipSync(analyticsJs, { level: 9 }).length / 1024).toFixed(1)} KB gz, and HubSpot's tracker): import to identify queued | ${ms(an)} |`);
console.log(`| ratios to the do-nothing module: cached / cached with the wasm preloaded / {id} / confirmed email / analytics + @analytics/hubspot | ${(median(warm) / f).toFixed(2)} / ${(median(warmPre) / f).toFixed(2)} / ${(median(cold.id) / f).toFixed(2)} / ${(median(cold.email) / f).toFixed(2)} / ${(an / f).toFixed(2)} |`);
console.log(`| ratios to analytics + @analytics/hubspot: cached / {id} / confirmed email | ${(median(warm) / an).toFixed(2)} / ${(median(cold.id) / an).toFixed(2)} / ${(median(cold.email) / an).toFixed(2)} |`);
