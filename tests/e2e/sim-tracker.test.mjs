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

const forms = async () => (await getJson(`${sim.url}/__sim/forms`)).body;

test("collected forms: a form from a tied browser rewrites the contact's email utk-first; an opted-out form is never collected", async () => {
  await reset();
  const form = (id, attrs = "") => `<form id="${id}" method="post" action="/done" ${attrs}><input type="email" name="email"><input name="firstname" value="Ann"><input type="password" name="pw" value="secret"><button>Save</button></form>`;
  const pages = {
    // The app's settings page: the browser is already tied to old@x.io's contact by an identify.
    "/settings": page(`_hsq.push(["identify", {email: "old@x.io"}]);`, { body: form("opted", 'data-hs-do-not-collect="true"') + form("plain") }),
    // Where the forms redirect (HubSpot sends a stored submission on the next page load).
    "/done": page(),
  };
  await withPage(pages, async (p, url, context) => {
    await p.goto(url + "/settings");
    await waitHits(sim.url, 1);
    const old = (await contacts(sim.url)).contacts.find((c) => c.email === "old@x.io");
    assert.ok(old, "the identify made old@x.io's contact");

    // The opted-out form posts: nothing is stored, nothing is sent.
    await p.fill("#opted input[name=email]", "never@x.io");
    await Promise.all([p.waitForURL(/\/done$/), p.click("#opted button")]);
    await loaded(p);
    await waitHits(sim.url, 2);
    // The form that is not marked posts: stored in li_formsub, sent from the next page.
    await p.goto(url + "/settings");
    await loaded(p);
    await p.fill("#plain input[name=email]", "new@x.io");
    await p.evaluate(() => document.getElementById("plain").addEventListener("submit", () => (window.stored = document.cookie.includes("li_formsub="))));
    await Promise.all([p.waitForURL(/\/done$/), p.click("#plain button")]);
    const f = await until(async () => ((await forms()).total >= 1 ? forms() : null), "the collected submission");
    await new Promise((r) => setTimeout(r, 1500)); // long enough for a wrongly collected second one
    const all = await forms();
    console.log(`collected forms: ${all.total} submissions (${JSON.stringify(all.byOutcome)}); contacts ${(await contacts(sim.url)).total}`);
    assert.equal(all.total, 1, "only the form that is not marked was collected");
    const [s] = f.submissions;
    assert.deepEqual([s.email, s.outcome, s.previousEmail, s.contactId], ["new@x.io", "email-replaced", "old@x.io", Number(old.id)]);
    assert.equal(s.formSelectorId, "#plain");
    assert.ok(s.utk && old.utks.includes(s.utk), "it carried the browser's usertoken");
    const { contacts: list } = await contacts(sim.url);
    assert.equal(list.length, 1, "no contact was created: the submission went into the utk's contact");
    assert.equal(list[0].email, "new@x.io", "the contact's email was replaced behind the app's back");
    assert.equal(list[0].properties.firstname, "Ann");
    assert.ok(!JSON.stringify(list[0].properties).includes("secret"), "passwords are not collected");
    assert.equal(list.some((c) => c.email === "never@x.io"), false);
    await until(async () => !(await context.cookies()).some((c) => c.name === "li_formsub"), "li_formsub cleared once sent");

    // The damage: a page still carrying the old email now makes a second contact with it.
    await p.goto(url + "/settings");
    await until(async () => (await contacts(sim.url)).total === 2, "the identify with the old email");
  });
});

test("collected forms: a submission the page handles itself goes after a moment, forms added later are bound, and the switch turns it off", async () => {
  await reset();
  const body = `<div id="app"></div><script>
    window.addForm = function (id, marked) {
      var f = document.createElement("form");
      f.id = id;
      if (marked) f.setAttribute("data-hs-do-not-collect", "true");
      f.innerHTML = '<input name="work_email" type="text"><button>Go</button>';
      f.addEventListener("submit", function (e) { e.preventDefault(); window.sent = (window.sent || 0) + 1; });
      document.getElementById("app").appendChild(f);
    };
  </script>`;
  await withPage({ "/": page(`_hsq.push(["identify", {email: "spa@x.io"}]);`, { body }) }, async (p, url) => {
    await p.goto(url + "/");
    await loaded(p);
    await waitHits(sim.url, 1);
    // Added after the collected-forms script bound the page's forms: bound as they are added.
    await p.evaluate(() => (addForm("later"), addForm("later-marked", true)));
    await p.fill("#later-marked input", "marked@x.io");
    await p.click("#later-marked button");
    await p.fill("#later input", "spa-new@x.io");
    await p.click("#later button");
    const f = await until(async () => ((await forms()).total >= 1 ? forms() : null), "the submission sent after a moment");
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await p.evaluate(() => window.sent), 2, "the page handled both submissions itself");
    assert.equal((await forms()).total, 1, "the marked form was not collected");
    assert.deepEqual([f.submissions[0].email, f.submissions[0].outcome], ["spa-new@x.io", "email-replaced"]);
  });

  await reset({ collectedForms: false });
  try {
    await withPage({ "/": page("", { body }) }, async (p, url) => {
      await p.goto(url + "/");
      await loaded(p);
      assert.equal(await p.evaluate(() => !!document.querySelector("script[src*='collectedforms.js']")), false, "off: the script is not loaded");
      await p.evaluate(() => addForm("x"));
      await p.fill("#x input", "off@x.io");
      await p.click("#x button");
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await forms()).total, 0);
    });
  } finally {
    await reset({ collectedForms: true });
  }
});
