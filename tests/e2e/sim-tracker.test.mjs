// hubspot-sim's tracker and collector in headless Chromium: the `_hsq` queue, identify, cookies,
// consent, chat, and the duplicate-contact bug exactly as HubSpot produces it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startSim, servePages, launchBrowser, watchPage, getJson, until, hits, contacts, waitHits } from "./helpers.mjs";

let sim, browser;
before(async () => {
  sim = await startSim();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await sim?.stop();
});

async function reset(switches = {}) {
  await fetch(`${sim.url}/__sim/reset`, { method: "POST" });
  const defaults = { consentBanner: false, chatWidget: false };
  await fetch(`${sim.url}/__sim/config`, { method: "POST", body: JSON.stringify({ ...defaults, ...switches }) });
}

/** A page that runs `inline` before the tracker script tag. */
function page(inline = "", { tracker = true, body = "" } = {}) {
  return `<!doctype html><html><head><title>t</title><script>var _hsq = window._hsq = window._hsq || [];\n${inline}</script>
${tracker ? `<script id="hs-script-loader" async defer src="${sim.url}/1234567.js"></script>` : ""}</head><body>${body}</body></html>`;
}

async function withPage(pages, fn) {
  const site = await servePages(pages);
  const context = await browser.newContext();
  const p = await context.newPage();
  const errors = watchPage(p);
  try {
    await fn(p, site.url, context);
    assert.deepEqual(errors, [], "the page threw");
  } finally {
    await context.close();
    await site.close();
  }
}

const loaded = (p) => p.waitForFunction(() => window._hstc_ran && window._hsq.push !== Array.prototype.push);

test("queued identify and setPath run before the automatic page view, which carries them", async () => {
  await reset();
  const inline = `_hsq.push(function(){ window.order = (window.order||[]).concat("fn"); });
    _hsq.push(["identify", {email: "Early@x.io", id: "u1"}]);
    _hsq.push(["setPath", "/virtual"]);`;
  await withPage({ "/": page(inline) }, async (p, url) => {
    await p.goto(url + "/");
    await loaded(p);
    const [h] = await waitHits(sim.url, 1);
    assert.equal(h.kind, "pageview");
    assert.equal(h.path, "/virtual");
    assert.deepEqual(h.identity, { email: "Early@x.io", id: "u1" });
    assert.equal(h.portalId, "1234567");
    assert.deepEqual(await p.evaluate(() => window.order), ["fn"]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await hits(sim.url)).length, 1, "exactly one automatic page view");
  });
});

test("after load _hsq is the same array and push is a synchronous dispatcher", async () => {
  await reset();
  await withPage({ "/": page("window.before = _hsq;") }, async (p, url) => {
    await p.goto(url + "/");
    await loaded(p);
    const r = await p.evaluate(() => {
      let ran = false;
      _hsq.push(function (tracker) { ran = typeof tracker.trackPageView === "function"; });
      const sync = ran;
      _hsq.push(["noSuchMethod", 1]); // unknown names are ignored
      _hsq.push(function () { throw new Error("swallowed"); }); // exceptions are swallowed
      return { same: window.before === window._hsq, isArray: Array.isArray(window._hsq), sync };
    });
    assert.deepEqual(r, { same: true, isArray: true, sync: true });
  });
});

test("identify calls merge, and the identity goes on every later hit of the page", async () => {
  await reset();
  await withPage({ "/": page() }, async (p, url) => {
    await p.goto(url + "/");
    await loaded(p);
    await waitHits(sim.url, 1);
    await p.evaluate(() => {
      _hsq.push(["identify", { email: "m@x.io" }]);
      _hsq.push(["identify", { firstname: "M" }]);
      _hsq.push(["setPath", "/a"]);
      _hsq.push(["trackPageView"]);
      _hsq.push(["identify", { email: "n@x.io" }]);
      _hsq.push(["trackCustomBehavioralEvent", { name: "pe1234567_clicked", properties: { color: "red" } }]);
    });
    const h = await waitHits(sim.url, 3);
    // Two image requests fired together may reach the collector in either order.
    const first = h.find((x) => x.kind === "pageview" && x.path === "/");
    const view = h.find((x) => x.kind === "pageview" && x.path === "/a");
    const event = h.find((x) => x.kind === "event");
    assert.equal(first.identity, null, "no identity before identify");
    assert.deepEqual(view.identity, { email: "m@x.io", firstname: "M" });
    assert.equal(event.eventName, "pe1234567_clicked");
    assert.deepEqual(event.eventProperties, { color: "red" });
    assert.deepEqual(event.identity, { email: "n@x.io", firstname: "M" }, "new keys overwrite, others remain");
  });
});

test("cookies have HubSpot's formats, and __hssc counts once per page load", async () => {
  await reset();
  await withPage({ "/": page() }, async (p, url, context) => {
    await p.goto(url + "/");
    await loaded(p);
    const jar = async () => Object.fromEntries((await context.cookies()).map((c) => [c.name, c]));
    let c = await jar();
    assert.match(c.hubspotutk.value, /^[0-9a-f]{32}$/);
    const hstc = c.__hstc.value.split(".");
    assert.equal(hstc.length, 6);
    assert.equal(hstc[1], c.hubspotutk.value);
    assert.ok(hstc[2] === hstc[3] && hstc[3] === hstc[4] && /^\d{13}$/.test(hstc[2]));
    assert.equal(hstc[5], "1");
    const hssc = c.__hssc.value.split(".");
    assert.deepEqual([hssc.length, hssc[0], hssc[1]], [3, hstc[0], "1"]);
    assert.equal(c.__hssrc.value, "1");
    assert.equal(c.hubspotutk.sameSite, "Lax");
    assert.ok(c.__hssc.expires - Date.now() / 1000 <= 30 * 60 + 5, "__hssc lives 30 minutes");

    // An SPA page view does not count; a reload does.
    await p.evaluate(() => _hsq.push(["trackPageView"]));
    assert.equal((await jar()).__hssc.value.split(".")[1], "1");
    await waitHits(sim.url, 2); // a navigation cancels an image hit still in flight
    await p.reload();
    await loaded(p);
    c = await jar();
    assert.equal(c.__hssc.value.split(".")[1], "2");
    assert.equal(c.hubspotutk.value, hstc[1], "the same visitor keeps its utk");
    const h = await waitHits(sim.url, 3);
    assert.ok(h.every((x) => x.utk === hstc[1]));
  });
});

test("the bug: identifying with a changed email makes a second contact, while id alone does not", async () => {
  // Naive page code: each page load identifies with the app's current email and the app's user id.
  await reset();
  const naive = (u) => page(`_hsq.push(["identify", {email: ${JSON.stringify(u.searchParams.get("email"))}, id: "u1"}]);`);
  await withPage({ "/": naive }, async (p, url) => {
    await p.goto(url + "/?email=a@x.io");
    await waitHits(sim.url, 1);
    // The user changes their email in the app; the next page renders with it before HubSpot knows.
    await p.goto(url + "/?email=b@x.io");
    await waitHits(sim.url, 2);
    const { contacts: list } = await contacts(sim.url);
    assert.equal(list.length, 2, "HubSpot now holds two contacts for one person");
    const a = list.find((c) => c.email === "a@x.io");
    const b = list.find((c) => c.email === "b@x.io");
    const { identifyId } = (await getJson(`${sim.url}/__sim/config`)).body.switches;
    if (identifyId === "honoured") assert.deepEqual(a.ids, ["u1"], "the id stays on the original contact");
    else assert.deepEqual(a.ids, [], "identify-id ignored: the id is tied to nothing");
    assert.equal(b.pageViews, 1, "the second page view went to the duplicate");
  });

  // The cure's identify: the id alone after the first identify with the confirmed email.
  await reset();
  const stable = (u) =>
    page(u.searchParams.get("email") ? `_hsq.push(["identify", {email: ${JSON.stringify(u.searchParams.get("email"))}, id: "u1"}]);` : `_hsq.push(["identify", {id: "u1"}]);`);
  await withPage({ "/": stable }, async (p, url) => {
    await p.goto(url + "/?email=a@x.io");
    await waitHits(sim.url, 1);
    await p.goto(url + "/");
    await waitHits(sim.url, 2);
    const { contacts: list, anonymousHits } = await contacts(sim.url);
    assert.equal(list.length, 1);
    assert.equal(list[0].pageViews, 2, "both page views sit on the one contact");
    assert.equal(anonymousHits, 0);
  });
});

test("identify-id: honoured ties the id to the email's contact; ignored drops it", async () => {
  const { identifyId: started } = (await getJson(`${sim.url}/__sim/config`)).body.switches;
  const pages = {
    "/login": page(`_hsq.push(["identify", {email: "both@x.io", id: "u9"}]);`),
    "/byid": page(`_hsq.push(["identify", {id: "u9"}]);`),
  };
  try {
    for (const mode of ["honoured", "ignored"]) {
      await reset({ identifyId: mode });
      await withPage(pages, async (p, url) => {
        await p.goto(url + "/login");
        await waitHits(sim.url, 1);
      });
      // A second browser sends the id alone.
      await withPage(pages, async (p, url) => {
        await p.goto(url + "/byid");
        await waitHits(sim.url, 2);
      });
      const { contacts: list, anonymousHits } = await contacts(sim.url);
      assert.equal(list.length, 1, `${mode}: no contact from an id`);
      assert.deepEqual(list[0].ids, mode === "honoured" ? ["u9"] : [], mode);
      assert.equal(list[0].pageViews, mode === "honoured" ? 2 : 1, `${mode}: where the id-only view lands`);
      assert.equal(anonymousHits, mode === "honoured" ? 0 : 1, mode);
      assert.deepEqual((await hits(sim.url))[1].identity, { id: "u9" }, `${mode}: the hit is recorded as sent`);
    }
  } finally {
    await reset({ identifyId: started });
  }
});

test("id alone on a fresh browser creates nothing, and its history moves once the utk is tied", async () => {
  await reset();
  const pages = {
    "/anon": page(`_hsq.push(["identify", {id: "nobody"}]);`),
    "/login": page(`_hsq.push(["identify", {email: "late@x.io"}]);`),
  };
  await withPage(pages, async (p, url) => {
    await p.goto(url + "/anon");
    await waitHits(sim.url, 1);
    assert.equal((await contacts(sim.url)).total, 0, "id alone creates no contact");
    await p.goto(url + "/login");
    await waitHits(sim.url, 2);
    const { contacts: list, anonymousHits } = await contacts(sim.url);
    assert.equal(list.length, 1);
    assert.equal(list[0].pageViews, 2, "the anonymous view moved to the contact");
    assert.equal(anonymousHits, 0);
  });
});

test("doNotTrack stops every hit until it is lifted", async () => {
  await reset();
  const pages = { "/": page(`_hsq.push(["doNotTrack"]);`), "/plain": page(), "/track": page(`_hsq.push(["doNotTrack", {track: true}]);`) };
  await withPage(pages, async (p, url) => {
    // doNotTrack is not a priority entry: it runs after the automatic page view of this load.
    await p.goto(url + "/");
    await loaded(p);
    await p.evaluate(() => _hsq.push(["trackPageView"]));
    await waitHits(sim.url, 1);
    await new Promise((r) => setTimeout(r, 200));
    await p.goto(url + "/plain");
    await loaded(p);
    await p.goto(url + "/track");
    await loaded(p);
    await p.evaluate(() => _hsq.push(["trackPageView"]));
    const h = await waitHits(sim.url, 2);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual((await hits(sim.url)).map((x) => new URL(x.url).pathname), ["/", "/track"]);
  });
});

test("with the consent banner, nothing is stored or sent until the visitor accepts", async () => {
  await reset({ consentBanner: true });
  const inline = `window._hsp = window._hsp || []; window.consents = [];
    _hsp.push(["addPrivacyConsentListener", function (c) { window.consents.push(c.categories.analytics); }]);
    _hsq.push(["identify", {email: "c@x.io"}]);`;
  await withPage({ "/": page(inline) }, async (p, url, context) => {
    await p.goto(url + "/");
    await p.waitForSelector("#hs-eu-confirmation-button");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await hits(sim.url)).length, 0, "no hit before consent");
    assert.deepEqual((await context.cookies()).map((c) => c.name), [], "no cookie before consent");
    assert.deepEqual(await p.evaluate(() => window.consents), []);
    await p.click("#hs-eu-confirmation-button");
    const h = await waitHits(sim.url, 1);
    assert.deepEqual(h[0].identity, { email: "c@x.io" });
    assert.deepEqual(await p.evaluate(() => window.consents), [true]);
    assert.ok((await context.cookies()).some((c) => c.name === "hubspotutk"));

    // Revoking consent (pushed on _hsq, as the current reference shows) deletes the tracking and
    // banner cookies, tells the listeners and shows the banner again; what was collected stays.
    await p.evaluate(() => _hsq.push(["revokeCookieConsent"]));
    const names = (await context.cookies()).map((c) => c.name);
    assert.ok(!names.includes("hubspotutk") && !names.includes("__hstc") && !names.includes("__hs_opt_out"), names.join());
    assert.deepEqual(await p.evaluate(() => window.consents), [true, false]);
    await p.waitForSelector("#hs-eu-confirmation-button");
    const kept = (await contacts(sim.url)).contacts.find((c) => c.email === "c@x.io");
    assert.equal(kept.pageViews, 1, "the contact keeps its history");
    // Accepting again starts a new visitor.
    await p.click("#hs-eu-confirmation-button");
    const utk = (await context.cookies()).find((c) => c.name === "hubspotutk")?.value;
    assert.ok(utk && utk !== h[0].utk, "a new usertoken");
  });

  await reset({ consentBanner: true });
  await withPage({ "/": page(inline) }, async (p, url) => {
    await p.goto(url + "/");
    await p.click("#hs-eu-decline-button");
    await p.evaluate(() => _hsq.push(["trackPageView"]));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await hits(sim.url)).length, 0, "declined: nothing is sent");
  });
});

test("the chat widget is identified only with a valid token for that email, and clear resets it", async () => {
  await reset({ chatWidget: true });
  const token = (await getJson(`${sim.url}/visitor-identification/v3/tokens/create`, {
    method: "POST",
    headers: { authorization: "Bearer T", "content-type": "application/json" },
    body: JSON.stringify({ email: "chat@x.io", firstName: "Chat" }),
  })).body.token;
  const settings = (email, tok) => `window.hsConversationsSettings = {loadImmediately: false, identificationEmail: ${JSON.stringify(email)}, identificationToken: ${JSON.stringify(tok)}};
    window.hsConversationsOnReady = [function () { window.HubSpotConversations.widget.load(); }];`;
  const pages = {
    "/good": page(settings("chat@x.io", token)),
    "/forged": page(settings("someone@x.io", token)),
    "/anon": page(""),
  };
  await withPage(pages, async (p, url) => {
    const events = async (n) => until(async () => {
      const e = (await getJson(`${sim.url}/__sim/chat`)).body.events;
      return e.length >= n ? e : null;
    }, `${n} chat events`);
    await p.goto(url + "/good");
    let e = await events(1);
    assert.equal(e[0].kind, "load");
    assert.equal(e[0].identifiedEmail, "chat@x.io");
    assert.equal(await p.evaluate(() => window.HubSpotConversations.widget.status().loaded), true);
    const { contacts: list } = await contacts(sim.url);
    assert.equal(list.find((c) => c.email === "chat@x.io").properties.firstname, "Chat");

    await p.evaluate(() => window.HubSpotConversations.clear({ resetWidget: true }));
    e = await events(2);
    assert.deepEqual([e[1].kind, e[1].resetWidget], ["clear", true]);
    assert.equal(await p.evaluate(() => window.HubSpotConversations.widget.status().loaded), false);

    await p.goto(url + "/forged");
    e = await events(3);
    assert.equal(e[2].identifiedEmail, null);
    assert.match(e[2].refused, /issued for chat@x.io/);

    await p.goto(url + "/anon");
    e = await events(4);
    assert.equal(e[3].identifiedEmail, null);
    assert.match(e[3].messagesUtk, /^[0-9a-f]{32}$/, "an anonymous chat uses messagesUtk");
  });
});
