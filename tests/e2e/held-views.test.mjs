// Views the module holds must reach the collector even when the page goes away while they wait:
// issue 18's lost view. Each test slows one thing down on purpose so the timing that lost a view
// in the 100-user race on a slow machine happens every time:
//   - the relay's answer is held back (a gate in front of the relay) until a navigation started,
//     and a hit the old page fires then cannot leave the browser before the page is gone
//     (Playwright holds its request, as a busy machine does);
//   - the tracker's script is slow (a simulator fault), so a page goes away before HubSpot's
//     consent reached the module.
// What is checked is what the collector receives (`/__sim/hits`), not how the module does it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";
import { startSim, startRelay, initSim, serveApp, launchBrowser, watchErrors, mintAssertion, reportEmail, until, hits, contacts } from "./helpers.mjs";

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A proxy in front of the relay that can hold identity requests back until it is opened again. */
async function relayGate(relayUrl) {
  let open = true;
  let waiters = [];
  const answered = [];
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const gated = req.url.startsWith("/v1/identity");
    while (gated && !open) await new Promise((r) => waiters.push(r));
    const r = await fetch(relayUrl + req.url, { method: req.method, headers: { "content-type": req.headers["content-type"] || "application/json" }, body: chunks.length ? Buffer.concat(chunks) : undefined }).catch(() => null);
    if (!r) return void res.writeHead(502, { "content-type": "application/json" }).end('{"error":"bad_gateway"}');
    res.writeHead(r.status, { "content-type": r.headers.get("content-type") || "application/json" }).end(Buffer.from(await r.arrayBuffer()));
    if (gated) for (const f of answered.splice(0)) f();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    shut: () => (open = false),
    open: () => {
      open = true;
      for (const w of waiters.splice(0)) w();
    },
    /** Resolves once the next identity answer went back to the page. */
    nextAnswer: () => new Promise((r) => answered.push(r)),
    close: () => new Promise((r) => (server.closeAllConnections?.(), server.close(r))),
  };
}

/**
 * A simulator, relay (behind the gate) and app origin. Every app page starts hsq-identity as the
 * demo does (consent left to HubSpot's tracker), with the user's current email in its assertion;
 * `slow` maps a path to a function the page's response waits for.
 */
async function stack(user) {
  const sim = await startSim();
  await initSim(sim.url);
  await fetch(`${sim.url}/__sim/config`, { method: "POST", body: JSON.stringify({ chatWidget: false }) });
  const relay = await startRelay(sim.url);
  const gate = await relayGate(relay.url);
  const slow = {};
  const html = `<!doctype html><html><head><title>app</title>
<script type="module">
import { StableIdentity } from "/pkg/index.js";
window.events = [];
window.hs = await StableIdentity.start({ relayUrl: "/hsq/v1/identity", assertion: () => fetch("/assertion").then((r) => r.text()),
  portalId: "1234567", trackerUrl: ${JSON.stringify(sim.url + "/1234567.js")}, timeoutMs: 20000, onEvent: (e) => window.events.push(e) });
window.started = true;
</script></head><body>app</body></html>`;
  const app = await serveApp({
    relay: () => gate.url,
    pages: {
      "/assertion": () => mintAssertion({ sub: user.sub, email: user.email }),
      "*": async (u) => {
        if (slow[u.pathname]) await slow[u.pathname]();
        return html;
      },
    },
  });
  return {
    sim, relay, gate, app, slow,
    async stop() {
      await app.close();
      await gate.close();
      await relay.stop();
      await sim.stop();
    },
  };
}

const views = async (simUrl, path) => (await hits(simUrl)).filter((h) => h.kind === "pageview" && h.path === path);

/**
 * Page /a identifies the user with their email, then the app changes it: the module gives the
 * lease back and holds hits while the tracker carries the old email. The relay is shut, so the
 * page's questions wait, and a single-page view of /v is made: it is held. The app's worker
 * reports the change and HubSpot gets the new email.
 */
async function holdAView(s, user, p) {
  await p.goto(`${s.app.url}/a`);
  await p.waitForFunction(() => window.events.some((e) => e.type === "identified" && e.email));
  await until(async () => (await views(s.sim.url, "/a")).length === 1, "the view of /a");
  s.gate.shut();
  const newEmail = user.email.replace("@", "-new@");
  user.email = newEmail;
  await p.evaluate(() => void window.hs.refresh());
  await p.waitForFunction(() => window.events.some((e) => e.type === "hold"));
  await p.evaluate(() => window.hs.trackPageView("/v"));
  await reportEmail(s.relay.url, user.sub, newEmail);
  await until(async () => (await contacts(s.sim.url)).contacts.some((c) => c.email === newEmail), "HubSpot to hold the new email", 20000);
  assert.equal((await views(s.sim.url, "/v")).length, 0, "the view of /v is held while the relay has not confirmed the new email");
}

test("a held view released while the page is being left goes out from the next page", async () => {
  const user = { sub: "u_leave", email: "leave@x.io" };
  const s = await stack(user);
  const ctx = await browser.newContext();
  try {
    const p = await ctx.newPage();
    const errors = await watchErrors(p);
    await holdAView(s, user, p);
    // A hit /a fires from now on cannot leave the browser before /a is gone: its request waits.
    let firedOnA;
    const fromA = new Promise((r) => (firedOnA = r));
    await p.route(`${s.sim.url}/__ptq.gif*`, (route) => {
      if (new URL(new URL(route.request().url()).searchParams.get("pu")).pathname === "/a") return firedOnA(); // left pending
      return route.continue();
    });
    // The user goes to /b. Once the browser asks for /b (the navigation is under way), the relay
    // answers /a's waiting question with the new email; /b's page arrives after /a had its chance
    // to fire the held view.
    s.slow["/b"] = async () => {
      const answer = s.gate.nextAnswer();
      s.gate.open();
      await answer;
      await Promise.race([fromA, sleep(1500)]);
    };
    await p.goto(`${s.app.url}/b`);
    await p.waitForFunction(() => window.events.some((e) => e.type === "identified" && e.email));
    const got = await until(async () => {
      const v = await views(s.sim.url, "/v");
      return v.length ? v : null;
    }, "the held view of /v at the collector", 20000).catch(() => []);
    assert.equal(got.length, 1, "the view of /v reaches the collector once");
    assert.equal(got[0].identity.email, user.email, "with the new email, now confirmed");
    await until(async () => (await views(s.sim.url, "/b")).length === 1, "the view of /b");
    assert.equal((await views(s.sim.url, "/v")).length, 1, "and not twice");
    assert.deepEqual(await errors(), []);
  } finally {
    await ctx.close();
    await s.stop();
  }
});

test("held views survive a page that goes away before HubSpot's consent reached the module", async () => {
  const user = { sub: "u_early", email: "early@x.io" };
  const s = await stack(user);
  const ctx = await browser.newContext();
  try {
    const p = await ctx.newPage();
    const errors = await watchErrors(p);
    await holdAView(s, user, p);
    // /b: the tracker's script takes 10 s, so consent (and with it the module's begin) waits; the
    // user goes on to /c before that.
    await fetch(`${s.sim.url}/__sim/faults`, { method: "POST", body: JSON.stringify({ path: "/1234567.js", latencyMs: 10000, count: 1 }) });
    await p.goto(`${s.app.url}/b`);
    await p.waitForFunction(() => window.started === true);
    s.gate.open();
    await p.goto(`${s.app.url}/c`);
    await p.waitForFunction(() => window.events.some((e) => e.type === "identified" && e.email));
    const got = await until(async () => {
      const v = await views(s.sim.url, "/v");
      return v.length ? v : null;
    }, "the held view of /v at the collector", 20000).catch(() => []);
    assert.equal(got.length, 1, "the view of /v reaches the collector once");
    assert.equal(got[0].identity.email, user.email);
    await until(async () => (await views(s.sim.url, "/c")).length === 1, "the view of /c");
    assert.equal((await views(s.sim.url, "/v")).length, 1, "and not twice");
    assert.deepEqual(await errors(), []);
  } finally {
    await ctx.close();
    await s.stop();
  }
});
