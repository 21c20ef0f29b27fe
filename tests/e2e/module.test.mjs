// The hsq-identity package in headless Chromium, against hubspot-sim's tracker and collector and
// the real relay over HTTP (mounted on the app's origin under /hsq/, as the README advises).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startSim, startRelay, initSim, serveApp, launchBrowser, watchErrors, mintAssertion, reportEmail, getJson, until, hits, contacts, waitHits } from "./helpers.mjs";

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** A fresh simulator, relay and app origin for one test. */
async function stack({ simArgs = [], relayEnv = {}, switches = {} } = {}) {
  const sim = await startSim(simArgs);
  await initSim(sim.url);
  await fetch(`${sim.url}/__sim/config`, { method: "POST", body: JSON.stringify({ chatWidget: false, ...switches }) });
  const relay = await startRelay(sim.url, relayEnv);
  let relayUrl = relay.url;
  const app = await serveApp({ relay: () => relayUrl, pages: { "*": (u) => page(sim.url, u) } });
  return {
    sim, relay, app,
    setRelay: (u) => (relayUrl = u),
    async stop() {
      await app.close();
      await relay.stop();
      await sim.stop();
    },
  };
}

/** The app's page: starts hsq-identity with the assertion in `?a=` and options in `?o=`. */
function page(simUrl, u) {
  const a = u.searchParams.get("a") || "";
  const extra = u.searchParams.get("o") || "{}";
  return `<!doctype html><html><head><title>app</title>
<script type="module">
import { StableIdentity } from "/pkg/index.js";
window.events = [];
const opts = Object.assign({ relayUrl: "/hsq/v1/identity", assertion: ${JSON.stringify(a)}, portalId: "1234567",
  trackerUrl: ${JSON.stringify(simUrl + "/1234567.js")}, consent: "granted", onEvent: (e) => window.events.push(e) }, ${extra});
try {
  window.hs = await StableIdentity.start(opts);
  window.snapshot = JSON.parse(JSON.stringify(Array.from(window._hsq)));
  window.started = true;
} catch (e) { window.startError = e.message; }
</script></head><body>${u.searchParams.get("body") || "app"}</body></html>`;
}

const url = (base, token, opts) => `${base}/?a=${encodeURIComponent(token)}${opts ? "&o=" + encodeURIComponent(JSON.stringify(opts)) : ""}`;
const started = (p) => p.waitForFunction(() => window.started || window.startError);
const eventsOf = (p) => p.evaluate(() => window.events);
const waitEvent = (p, pred, what) => until(async () => (await eventsOf(p)).find(pred), what, 20000);
const trackerLoaded = (p) => p.waitForFunction(() => window._hstc_ran === true && typeof window._hsq.push === "function");

async function open(ctx) {
  const p = await ctx.newPage();
  const errors = await watchErrors(p);
  return { p, errors };
}

test("a cached ticket identifies with its email before any network call", async () => {
  const s = await stack();
  const ctx = await browser.newContext();
  try {
    const token = await mintAssertion({ sub: "u_cache", email: "cache@x.io" });
    const { p, errors } = await open(ctx);
    await p.goto(url(s.app.url, token));
    await started(p);
    await waitEvent(p, (e) => e.type === "identified", "the first confirmation");
    await waitHits(s.sim.url, 1);

    // The next page: the relay is made slow, so anything identified early came from the cache.
    let answered = false;
    await p.route("**/hsq/v1/identity", async (route) => {
      await new Promise((r) => setTimeout(r, 1500));
      await route.continue();
      answered = true;
    });
    await p.goto(url(s.app.url, token) + "&page=2");
    await started(p);
    const snapshot = await p.evaluate(() => window.snapshot);
    assert.equal(answered, false, "the relay has not answered yet");
    assert.deepEqual(snapshot.find((e) => e[0] === "identify"), ["identify", { id: "u_cache", email: "cache@x.io" }]);
    const ev = await eventsOf(p);
    assert.deepEqual(ev[0], { type: "identified", state: "confirmed", email: "cache@x.io", cached: true });
    const h = await waitHits(s.sim.url, 2);
    assert.deepEqual(h[1].identity, { id: "u_cache", email: "cache@x.io" }, "the page's first view carries the email");
    assert.deepEqual(await errors(), []);
  } finally {
    await ctx.close();
    await s.stop();
  }
});

test("with consent left to HubSpot (the default), each page's automatic view carries the identity", async () => {
  // HubSpot calls the consent listener while it drains the queue, after it took the queued
  // entries: an identify pushed from the listener would go after the automatic view. The view
  // waits for consent and the relay's first answer, like the tracker itself with consent granted.
  const s = await stack();
  const ctx = await browser.newContext();
  try {
    const token = await mintAssertion({ sub: "u_auto", email: "auto@x.io" });
    const { p, errors } = await open(ctx);
    await p.goto(url(s.app.url, token, { consent: "hubspot" }));
    await started(p);
    await waitEvent(p, (e) => e.type === "identified" && e.state === "confirmed", "the first confirmation");
    const first = (await waitHits(s.sim.url, 1))[0];
    assert.equal(first.path, "/");
    assert.deepEqual(first.identity, { id: "u_auto", email: "auto@x.io" }, "the first page's automatic view waits for the relay's answer");
    await p.goto(url(s.app.url, token, { consent: "hubspot" }) + "&page=2");
    await started(p);
    const second = (await waitHits(s.sim.url, 2))[1];
    assert.deepEqual(second.identity, { id: "u_auto", email: "auto@x.io" }, "the next page's automatic view carries the cached email");
    assert.equal((await hits(s.sim.url)).filter((h) => h.kind === "pageview").length, 2, "one view per page, none doubled");
    // Two views in one go would be the same image URL, which the browser fetches once.
    await p.evaluate(() => (window.hs.trackPageView(), window.hs.trackPageView()));
    await waitHits(s.sim.url, 4);
    assert.deepEqual(await errors(), []);
  } finally {
    await ctx.close();
    await s.stop();
  }
});

test("a relay that is down, slow or answers garbage leaves the page working on id only, then recovers", async () => {
  const s = await stack();
  const ctx = await browser.newContext();
  try {
    const token = await mintAssertion({ sub: "u_down", email: "down@x.io" });
    const { p, errors } = await open(ctx);
    let n = 0;
    await p.route("**/hsq/v1/identity", async (route) => {
      n++;
      if (n === 1) return route.abort("connectionrefused");
      if (n === 2) return new Promise((r) => setTimeout(r, 1500)).then(() => route.fulfill({ status: 200, body: "{}" }));
      if (n === 3) return route.fulfill({ status: 500, contentType: "text/html", body: "<h1>oops</h1>" });
      if (n === 4) return route.fulfill({ status: 200, contentType: "application/json", body: "not json at all" });
      return route.continue();
    });
    await p.goto(url(s.app.url, token, { timeoutMs: 800 }));
    await started(p);
    assert.equal(await p.evaluate(() => window.startError || null), null, "start resolved");
    const first = (await waitHits(s.sim.url, 1))[0];
    assert.deepEqual(first.identity, { id: "u_down" }, "identified by id only while the relay is out");
    await waitEvent(p, (e) => e.type === "identified" && e.state === "confirmed", "recovery");
    const kinds = (await eventsOf(p)).map((e) => e.type);
    assert.ok(kinds.filter((k) => k === "relay-error").length >= 3, kinds.join());
    await p.evaluate(() => window.hs.trackPageView("/after"));
    const h = await until(async () => (await hits(s.sim.url)).find((x) => x.path === "/after"), "the view after recovery");
    assert.deepEqual(h.identity, { id: "u_down", email: "down@x.io" });
    assert.deepEqual(await errors(), [], "no exception, no unhandled rejection");
    assert.equal((await contacts(s.sim.url)).total, 1);
  } finally {
    await ctx.close();
    await s.stop();
  }
});

test("the guard rewrites a stray identify({email}) to the confirmed identity", async () => {
  const s = await stack();
  const ctx = await browser.newContext();
  try {
    const token = await mintAssertion({ sub: "u_guard", email: "guard@x.io" });
    const { p, errors } = await open(ctx);
    await p.goto(url(s.app.url, token));
    await started(p);
    await trackerLoaded(p);
    await waitHits(s.sim.url, 1);
    await p.evaluate(() => {
      window._hsq.push(["identify", { email: "someone-new@x.io", firstname: "G" }]);
      window._hsq.push(["setPath", "/stray"]);
      window._hsq.push(["trackPageView"]);
    });
    const h = await until(async () => (await hits(s.sim.url)).find((x) => x.path === "/stray"), "the stray view");
    assert.deepEqual(h.identity, { id: "u_guard", email: "guard@x.io", firstname: "G" });
    assert.ok((await eventsOf(p)).some((e) => e.type === "guard" && e.email === "someone-new@x.io" && e.sent === "guard@x.io"));
    const { contacts: list } = await contacts(s.sim.url);
    assert.equal(list.length, 1);
    assert.equal(list[0].email, "guard@x.io");
    assert.deepEqual(await errors(), []);
  } finally {
    await ctx.close();
    await s.stop();
  }
});

test("across an email change no hit carries an unleased email and none is lost, with two tabs", async () => {
  const s = await stack({ relayEnv: { HSQ_LEASE_SECS: "30" } });
  const ctx = await browser.newContext();
  try {
    const tokenA = await mintAssertion({ sub: "u_move", email: "before@x.io" });
    const tab1 = await open(ctx);
    const tab2 = await open(ctx);
    await tab1.p.goto(url(s.app.url, tokenA));
    await tab2.p.goto(url(s.app.url, tokenA) + "&tab=2");
    for (const t of [tab1, tab2]) {
      await started(t.p);
      await waitEvent(t.p, (e) => e.type === "identified", "confirmed in each tab");
      await trackerLoaded(t.p);
    }
    await waitHits(s.sim.url, 2);

    // The user changes their email in tab 1: the app's backend reports it, and the page refreshes.
    await reportEmail(s.relay.url, "u_move", "after@x.io");
    await new Promise((r) => setTimeout(r, 1100)); // a new assertion is minted in a later second
    const tokenB = await mintAssertion({ sub: "u_move", email: "after@x.io" });
    const refreshed = tab1.p.evaluate((t) => window.hs.refresh(t), tokenB);
    // Browsing goes on while the change is under way.
    for (const path of ["/s1", "/s2", "/s3"]) await tab1.p.evaluate((x) => window.hs.trackPageView(x), path);
    // Tab 2 goes away: its lease is released by sendBeacon on pagehide.
    await tab2.p.goto("about:blank");
    await refreshed;
    await waitEvent(tab1.p, (e) => e.type === "identified" && e.email === "after@x.io", "the new email confirmed");
    const kinds = (await eventsOf(tab1.p)).map((e) => e.type);
    assert.ok(kinds.includes("hold") && kinds.includes("release"), kinds.join());
    await tab1.p.evaluate(() => window.hs.trackPageView("/s4"));

    const all = await until(async () => {
      const h = await hits(s.sim.url);
      return h.filter((x) => x.kind === "pageview").length >= 6 ? h : null;
    }, "every view");
    const { contacts: list, anonymousHits } = await contacts(s.sim.url);
    assert.equal(list.length, 1, "one contact: no duplicate");
    assert.equal(list[0].email, "after@x.io");
    assert.equal(anonymousHits, 0);
    assert.equal(list[0].pageViews, all.filter((x) => x.kind === "pageview").length, "every view is on the contact");
    const paths = all.map((x) => x.path);
    for (const p of ["/s1", "/s2", "/s3", "/s4"]) assert.ok(paths.includes(p), `${p} arrived: ${paths}`);
    for (const h of all) {
      if (["/s1", "/s2", "/s3", "/s4"].includes(h.path)) assert.equal(h.identity.email, "after@x.io", `${h.path} waited for the new email`);
    }
    assert.deepEqual(await tab1.errors(), []);
  } finally {
    await ctx.close();
    await s.stop();
  }
});

test("reset() and a shared browser (rotateUtk) give the next user a new hubspotutk", async () => {
  const s = await stack();
  try {
    const a = await mintAssertion({ sub: "u_a", email: "a@x.io" });
    const b = await mintAssertion({ sub: "u_b", email: "b@x.io" });
    const utkOf = async (ctx) => (await ctx.cookies()).find((c) => c.name === "hubspotutk")?.value;

    // Logout with reset(), then B logs in.
    let ctx = await browser.newContext();
    let { p, errors } = await open(ctx);
    await p.goto(url(s.app.url, a));
    await started(p);
    await trackerLoaded(p);
    await waitEvent(p, (e) => e.type === "identified", "A confirmed");
    await waitHits(s.sim.url, 1);
    const utkA = await utkOf(ctx);
    await p.evaluate(() => window.hs.reset());
    assert.equal(await utkOf(ctx), undefined, "reset deleted the HubSpot cookies");
    await p.goto(url(s.app.url, b));
    await started(p);
    await trackerLoaded(p);
    await waitHits(s.sim.url, 2);
    const utkB = await utkOf(ctx);
    assert.ok(utkB && utkB !== utkA, "B has a new utk");
    assert.deepEqual(await errors(), []);
    await ctx.close();

    // No logout: B simply logs in where A was. The relay says rotateUtk.
    ctx = await browser.newContext();
    ({ p, errors } = await open(ctx));
    await p.goto(url(s.app.url, a) + "&again=1");
    await started(p);
    await trackerLoaded(p);
    await until(async () => (await hits(s.sim.url)).length >= 3, "A's view");
    // A renewal sends A's utk to the relay, which binds it to A.
    await p.evaluate(() => window.hs.refresh());
    const utkA2 = await utkOf(ctx);
    await p.goto(url(s.app.url, b) + "&again=1");
    await started(p);
    await trackerLoaded(p);
    assert.ok((await eventsOf(p)).some((e) => e.type === "rotate-utk"));
    const utkB2 = await utkOf(ctx);
    assert.ok(utkB2 && utkB2 !== utkA2, "B got a fresh utk instead of A's");
    await until(async () => (await hits(s.sim.url)).length >= 4, "B's view");
    const { contacts: list } = await contacts(s.sim.url);
    const ca = list.find((c) => c.email === "a@x.io");
    const cb = list.find((c) => c.email === "b@x.io");
    assert.ok(!ca.utks.includes(utkB2) && cb.utks.includes(utkB2), "nothing of B lands on A");
    assert.ok(ca.hits.every((h) => h.utk !== utkB2));
    assert.deepEqual(await errors(), []);
    await ctx.close();
  } finally {
    await s.stop();
  }
});

test("with consent denied nothing is asked, identified or sent; granted, it identifies", async () => {
  const s = await stack({ switches: { consentBanner: true } });
  try {
    const token = await mintAssertion({ sub: "u_consent", email: "consent@x.io" });
    let ctx = await browser.newContext();
    let { p, errors } = await open(ctx);
    await p.goto(url(s.app.url, token, { consent: "hubspot" }));
    await started(p);
    await p.click("#hs-eu-decline-button");
    await p.evaluate(() => window.hs.trackPageView("/declined"));
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(s.app.requests.filter((r) => r.includes("/hsq/")).length, 0, "the relay was never asked");
    assert.equal((await hits(s.sim.url)).length, 0, "no hit");
    assert.deepEqual((await eventsOf(p)).map((e) => e.type), ["consent"]);
    assert.deepEqual(await errors(), []);
    await ctx.close();

    ctx = await browser.newContext();
    ({ p, errors } = await open(ctx));
    await p.goto(url(s.app.url, token, { consent: "hubspot" }));
    await started(p);
    await p.click("#hs-eu-confirmation-button");
    await waitEvent(p, (e) => e.type === "identified", "identified after consent");
    await p.evaluate(() => window.hs.trackPageView("/granted"));
    const h = await until(async () => (await hits(s.sim.url)).find((x) => x.path === "/granted"), "the view");
    assert.deepEqual(h.identity, { id: "u_consent", email: "consent@x.io" });
    assert.deepEqual(await errors(), []);
    await ctx.close();
  } finally {
    await s.stop();
  }
});

test("the chat widget is identified only with a confirmed email", async () => {
  const s = await stack({ relayEnv: { HSQ_CHAT: "true" }, switches: { chatWidget: true } });
  try {
    const chatEvents = async () => (await getJson(`${s.sim.url}/__sim/chat`)).body.events;
    let ctx = await browser.newContext();
    let { p, errors } = await open(ctx);
    await p.goto(url(s.app.url, await mintAssertion({ sub: "u_chat", email: "chat@x.io", firstname: "Chat" }), { chat: true }));
    await started(p);
    const ev = await until(async () => (await chatEvents()).find((e) => e.kind === "load"), "the chat load");
    assert.equal(ev.identifiedEmail, "chat@x.io");
    assert.deepEqual(await errors(), []);
    await ctx.close();

    // Another user whose app email another user's contact holds: conflict, so an anonymous chat.
    ctx = await browser.newContext();
    ({ p, errors } = await open(ctx));
    await p.goto(url(s.app.url, await mintAssertion({ sub: "u_other", email: "chat@x.io" }), { chat: true }));
    await started(p);
    await waitEvent(p, (e) => e.type === "conflict", "the conflict");
    const loads = await until(async () => {
      const l = (await chatEvents()).filter((e) => e.kind === "load");
      return l.length >= 2 ? l : null;
    }, "the second chat load");
    assert.equal(loads[1].identifiedEmail, null);
    assert.equal(loads[1].refused, null, "no token was offered");
    assert.deepEqual(await errors(), []);
    await ctx.close();
  } finally {
    await s.stop();
  }
});

test("bad options reject start with a message naming the option", async () => {
  const s = await stack();
  const ctx = await browser.newContext();
  try {
    const { p, errors } = await open(ctx);
    const token = await mintAssertion({ sub: "u_opts", email: "o@x.io" });
    await p.goto(url(s.app.url, token));
    await started(p);
    const messages = await p.evaluate(async (token) => {
      const { StableIdentity } = await import("/pkg/index.js");
      const cases = [
        undefined,
        { assertion: token },
        { relayUrl: 5, assertion: token },
        { relayUrl: "/r", assertion: "nope" },
        { relayUrl: "/r", assertion: token, storage: "cookie" },
        { relayUrl: "/r", assertion: token, timeoutMs: 2.5 },
        { relayUrl: "/r", assertion: token, portalId: "12ab" },
        { relayUrl: "/r", assertion: token, relyUrl: "/typo" },
        { relayUrl: "/r", assertion: () => 42 },
        { relayUrl: "/r", assertion: token, collectForms: "form[" },
        { relayUrl: "/r", assertion: token, collectForms: 1 },
      ];
      const out = [];
      for (const c of cases) {
        try {
          await StableIdentity.start(c);
          out.push("resolved");
        } catch (e) {
          out.push(e.message);
        }
      }
      return out;
    }, token);
    const expected = ["needs an options object", "`relayUrl`", "`relayUrl`", "`assertion`", "`storage`", "`timeoutMs`", "`portalId`", "unknown option `relyUrl`", "`assertion`: the assertion function must return",
      '`collectForms` must be a CSS selector the browser can parse, got "form["', "`collectForms` must be true, false, or a CSS selector"];
    expected.forEach((want, i) => assert.ok(messages[i].includes(want), `case ${i}: ${messages[i]}`));
    assert.deepEqual(await errors(), []);
  } finally {
    await ctx.close();
    await s.stop();
  }
});

test("collected forms: every form, at start and added later, is marked before HubSpot binds it, unless the app leaves it to HubSpot", async () => {
  const s = await stack();
  const ctx = await browser.newContext();
  const form = (id, attrs = "") => `<form id="${id}" ${attrs} method="post"><input type="email" name="email"><button>Save</button></form>`;
  const body = form("settings") + form("news", 'class="newsletter"') + form("decided", 'data-hs-do-not-collect="false"') + `<div id="later"></div>`;
  const marks = (p) => p.evaluate(() => Object.fromEntries([...document.forms].map((f) => [f.id, f.getAttribute("data-hs-do-not-collect")])));
  const addLater = (p) =>
    p.evaluate(() => {
      const f = document.createElement("form");
      f.id = "added";
      f.method = "post";
      f.innerHTML = '<input type="email" name="email"><button>Save</button>';
      document.getElementById("later").append(f);
      const wrap = document.createElement("div"); // a form inside a subtree added at once
      wrap.innerHTML = '<form id="nested" class="newsletter"><input type="email" name="email"></form>';
      document.getElementById("later").append(wrap);
      return new Promise((r) => setTimeout(r, 0)); // mutation observers have run
    });
  try {
    const token = await mintAssertion({ sub: "u_forms", email: "forms@x.io" });
    const { p, errors } = await open(ctx);
    const at = (opts) => url(s.app.url, token, opts) + "&body=" + encodeURIComponent(body);

    // Default: every form is marked, except the one the app marked itself.
    await p.goto(at());
    await started(p);
    await trackerLoaded(p);
    await waitEvent(p, (e) => e.type === "identified", "the confirmation");
    await addLater(p);
    let m = await marks(p);
    console.log(`collectForms default: ${JSON.stringify(m)}`);
    assert.deepEqual(m, { settings: "true", news: "true", decided: "false", added: "true", nested: "true" });

    // What that guards: HubSpot's collected forms (loaded with the tracker) skip the marked forms.
    await p.waitForFunction(() => window.__hsCollectedFormsRan === true);
    for (const [id, email] of [["settings", "changed@x.io"], ["added", "added@x.io"]]) {
      await p.goto(at());
      await started(p);
      await trackerLoaded(p);
      if (id === "added") await addLater(p);
      await p.fill(`#${id} input[name=email]`, email);
      await Promise.all([p.waitForNavigation(), p.click(`#${id} button`)]);
      await started(p);
      await trackerLoaded(p);
    }
    // The form the app left to HubSpot is collected: the switch is on and the script works here.
    await p.fill("#decided input[name=email]", "decided@x.io");
    await Promise.all([p.waitForNavigation(), p.click("#decided button")]);
    await started(p);
    const got = await until(async () => {
      const f = (await getJson(`${s.sim.url}/__sim/forms`)).body;
      return f.total >= 1 && f;
    }, "the form left to HubSpot, collected");
    await new Promise((r) => setTimeout(r, 1500)); // room for a wrongly collected one to arrive
    const f = (await getJson(`${s.sim.url}/__sim/forms`)).body;
    console.log(`collected: ${f.total} submission(s): ${f.submissions.map((x) => x.email).join(", ")}`);
    assert.deepEqual(f.submissions.map((x) => x.email), ["decided@x.io"], "the marked forms were never collected");
    assert.equal(got.submissions[0].formSelectorId, "#decided");

    // A selector leaves the forms it matches to HubSpot, those present and those added later.
    await p.goto(at({ collectForms: "form.newsletter" }));
    await started(p);
    await addLater(p);
    m = await marks(p);
    console.log(`collectForms "form.newsletter": ${JSON.stringify(m)}`);
    assert.deepEqual(m, { settings: "true", news: null, decided: "false", added: "true", nested: null });

    // true: the module leaves every form alone.
    await p.goto(at({ collectForms: true }));
    await started(p);
    await addLater(p);
    m = await marks(p);
    assert.deepEqual(m, { settings: null, news: null, decided: "false", added: null, nested: null });
    assert.deepEqual(await errors(), []);
  } finally {
    await ctx.close();
    await s.stop();
  }
});
