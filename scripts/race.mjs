// The email-change race on the demo app, driven in Chromium: each user logs in with two tabs,
// browses (page loads, reloads, SPA route changes), changes their email in one tab while the app's
// worker lags, and keeps browsing in both; with hsq-identity the user comes back once HubSpot has
// the new email. Used by tests/e2e/race.test.mjs and `npm run bench`.
//
// Every view a user makes is traced: the driver notes when and where it made it, the page notes
// what became of it (the hit the tracker fired and how its request ended, the module's events,
// entries stored for the next page at page hide and restored there), and the collector's hits
// (`/__sim/hits`) say what HubSpot received. A run that loses a view or puts one on another
// contact answers `problems`: each such view with its trace, so the cause can be read off.
//
// `node scripts/race.mjs [hsq|naive] [USERS] [--throttle RATE] [--concurrency N]` runs one race on
// the debug build (`npm test` builds it) and prints what it found. A throttled race runs
// `throttledConcurrency(RATE)` users at a time unless told otherwise.
import assert from "node:assert/strict";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { until, getJson, launchBrowser } from "../tests/e2e/helpers.mjs";

const PACE_MS = 300; // a user's pause after a single-page view before the next navigation
const DRIVER_TIMEOUT_MS = 30000; // playwright's default wait for one driver step, per unit of CPU throttling
// How often a finishing user asks for the report (all contacts joined with all users): at the
// helpers' 50 ms, 8 users finishing at once would spend the 2 cores on reports.
const REPORT_EVERY_MS = 500;
const TRACE = "hsq-race:trace:"; // session storage keys of the page's trace, one per document

/**
 * Runs in every document of a tab before the page's own scripts and notes what happens to page
 * views in the tab's session storage (which outlives each page, and keeps what a page notes while
 * it goes away, unlike the console): `fire` (the tracker sets a collector image's URL: the hit leaves),
 * `answered` / `failed` (how that image request ended; neither when the page went first), `module`
 * (the module's onEvent, which the demo re-dispatches as an `hsq` DOM event: held entries
 * released, identified, ...), `stored` / `restored` (held entries the module keeps in session
 * storage for the tab's next page, and reads back there), `tracker` (its script ran), `load`,
 * `pagehide`. (No beforeunload listener: one makes every navigation wait for the page's answer.)
 */
function pageTrace({ tab, prefix }) {
  const doc = Math.random().toString(36).slice(2, 7);
  const lines = [];
  const save = Storage.prototype.setItem;
  const log = (ev, o) => {
    try {
      lines.push(Object.assign({ tab, doc, ev, at: Date.now(), loc: location.pathname }, o));
      save.call(sessionStorage, prefix + doc, JSON.stringify(lines));
    } catch (_) {}
  };
  log("document", {});
  addEventListener("load", () => log("load", {}));
  addEventListener("pagehide", () => log("pagehide", {}));
  // The tracker marks itself with window._hstc_ran when its script runs (it drains _hsq at load).
  let ran;
  Object.defineProperty(window, "_hstc_ran", {
    configurable: true,
    get: () => ran,
    set: (v) => {
      ran = v;
      log("tracker", {});
    },
  });
  document.addEventListener("hsq", (e) => {
    const d = e.detail || {};
    log("module", { type: d.type, count: d.count, email: d.email });
  });
  const src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
  Object.defineProperty(HTMLImageElement.prototype, "src", {
    configurable: true,
    enumerable: src.enumerable,
    get() {
      return src.get.call(this);
    },
    set(v) {
      const m = /\/__pt(q|be)\.gif\?/.exec(String(v));
      if (m) {
        const q = new URL(String(v), location.href).searchParams;
        const i = new URLSearchParams(q.get("i") || "");
        const cts = q.get("cts");
        log("fire", { kind: m[1] === "be" ? "event" : q.get("k") === "3" ? "legacy-event" : "pageview", po: q.get("po"), pu: q.get("pu"), utk: q.get("vi"), cts, id: i.get("id"), email: i.get("email") });
        this.addEventListener("load", () => log("answered", { cts }));
        this.addEventListener("error", () => log("failed", { cts }));
      }
      src.set.call(this, v);
    },
  });
  // The module's store for held entries (js/index.js HELD_KEY): which views it holds over.
  const HELD = "hsq-identity:held";
  const views = (text) => {
    try {
      let p = null;
      const out = [];
      for (const e of JSON.parse(text)) {
        if (e[0] === "setPath") p = e[1];
        if (e[0] === "trackPageView") out.push(p || "(unpinned)");
      }
      return out;
    } catch (_) {
      return null;
    }
  };
  const S = Storage.prototype, setItem = S.setItem, getItem = S.getItem;
  S.setItem = function (k, v) {
    if (k === HELD) log("stored", { views: views(v) });
    return setItem.apply(this, arguments);
  };
  S.getItem = function (k) {
    const v = getItem.apply(this, arguments);
    if (k === HELD && v) log("restored", { views: views(v) });
    return v;
  };
}

/**
 * How many users a race throttled `rate` times runs at once on `cores` cores. DevTools' CPU
 * throttling does not idle a tab on Linux: every 200 µs it signals the tab's main thread, whose
 * handler spins for (rate - 1) times the wall time since it last resumed (blink's
 * ThreadCPUThrottler). So a throttled tab burns up to 1 - 1/rate of a core even while idle, and
 * once the tabs outnumber the cores each spin lengthens with the wait, and the pages slow down far
 * more than `rate`. Measured here (2 cores, 4x): 4 users at a time (8 tabs) made about 10 views a
 * minute, 1 user at a time about 40. Each user has two tabs; a quarter of the cores stays with
 * the browser, the servers and the driver.
 */
export function throttledConcurrency(rate, cores = os.availableParallelism()) {
  return Math.max(1, Math.floor((cores * 0.75) / (2 * (1 - 1 / rate))));
}

/** A tab of a user's session: traced, and CPU-throttled when `rate` > 1 (DevTools' throttling). */
async function openTab(ctx, tab, { errors, sub, cpuThrottle }) {
  const p = await ctx.newPage();
  // The driver waits as many times longer as it slows the page down: a throttled tab on a loaded
  // 2-core machine may take more than playwright's 30 s to become clickable, and that is not a failure.
  p.setDefaultTimeout(DRIVER_TIMEOUT_MS * Math.max(1, cpuThrottle));
  p.on("pageerror", (e) => errors.push(`${sub}: ${e.message}`));
  await p.addInitScript(pageTrace, { tab, prefix: TRACE });
  if (cpuThrottle > 1) await (await ctx.newCDPSession(p)).send("Emulation.setCPUThrottlingRate", { rate: cpuThrottle });
  return p;
}

async function ready(page, mode) {
  // The tracker has loaded (so the page's automatic view went out or is held), and in hsq mode
  // the module has started.
  await page.waitForFunction((m) => window._hstc_ran === true && (m === "naive" || (window.demo && window.demoEvents)), mode);
}

// Pages are ready when the tracker has run, not at "load" (which also waits for hits in flight).
const go = (page, url) => page.goto(url, { waitUntil: "domcontentloaded" });
const reload = (page) => page.reload({ waitUntil: "domcontentloaded" });

async function spa(page, href) {
  await page.click(`a[href='${href}']`);
  await new Promise((r) => setTimeout(r, PACE_MS));
}

/**
 * HubSpot-side edits (the `hubspotEdits` mode): while the user browses, a marketer edits the
 * email of every second user's contact directly in HubSpot, and merges a lead contact into every
 * fourth user's (offset by one). Answers what it did, or null for users left alone.
 */
export async function editInHubSpot(stack, sub, index) {
  const kind = index % 2 === 0 ? "edit" : index % 4 === 1 ? "merge" : null;
  if (!kind) return null;
  const api = (method, p, body) =>
    fetch(`${stack.sim.url}${p}`, { method, headers: { authorization: `Bearer ${stack.token}`, "content-type": "application/json" }, body: body && JSON.stringify(body) });
  const contact = await until(async () => {
    const u = (await stack.demo.report()).users.find((x) => x.sub === sub);
    return u?.contacts[0];
  }, `${sub}: a contact to edit`, 20000, REPORT_EVERY_MS).catch(() => null);
  if (!contact) return null;
  if (kind === "edit") {
    await api("PATCH", `/crm/v3/objects/contacts/${contact.id}`, { properties: { email: `${sub}-edited-in-hubspot@example.com` } });
  } else {
    const lead = await (await api("POST", "/crm/v3/objects/contacts", { properties: { email: `${sub}-lead@example.com` } })).json();
    await api("POST", "/crm/v3/objects/contacts/merge", { primaryObjectId: contact.id, objectIdToMerge: lead.id });
  }
  return kind;
}

/** One user's session; answers its browser context, its first tab and the page views it made. */
async function session({ browser, url, mode, sub, newEmail, errors, changed, log, edit, emailPost }) {
  const ctx = await browser.newContext();
  try {
    return await browse(ctx, { url, mode, sub, newEmail, errors, changed, log, edit, emailPost });
  } catch (e) {
    await ctx.close().catch(() => {});
    throw e;
  }
}

async function browse(ctx, { url, mode, sub, newEmail, errors, changed, log, edit, emailPost }) {
  const t1 = await openTab(ctx, "t1", { ...log, errors, sub });
  const t2 = await openTab(ctx, "t2", { ...log, errors, sub });
  const tabOf = (p) => (p === t1 ? "t1" : "t2");
  // Each view as the driver makes it: which tab, how, on which path, when.
  const made = (p, how, path) => log.made.push({ sub, tab: tabOf(p), n: log.made.filter((m) => m.sub === sub).length + 1, how, path, at: Date.now() });
  const spaView = (p, href) => (made(p, "single-page view", href), spa(p, href));
  const reloadView = async (p) => {
    made(p, "reload", new URL(p.url()).pathname);
    await reload(p);
    await ready(p, mode);
  };
  let views = 0;
  made(t1, "login, then load", "/app/");
  await go(t1, `${url}/login?mode=${mode}&sub=${sub}`);
  await ready(t1, mode);
  views++;
  made(t2, "load", "/app/");
  await go(t2, `${url}/app/`);
  await ready(t2, mode);
  views++;
  await spaView(t1, "/app/reports");
  views++;
  await reloadView(t2);
  views++;
  if (edit) {
    // HubSpot-side edits: the user keeps browsing in both tabs meanwhile.
    await edit();
    await spaView(t2, "/app/billing");
    views++;
    await spaView(t1, "/app/");
    views++;
  }
  // The user changes their email in tab 1; the app's worker tells HubSpot (or the relay) later.
  await t1.fill("input[name=email]", newEmail);
  if (emailPost) {
    // The browser posts the form and the app redirects to its settings page: a page view.
    made(t1, "email form posted, then redirected", "/app/settings");
    await Promise.all([t1.waitForURL("**/app/settings", { waitUntil: "domcontentloaded" }), t1.click("#email-form button")]);
    await ready(t1, mode);
    views++;
  } else {
    await t1.click("#email-form button");
  }
  await t1.waitForFunction((e) => document.getElementById("email").textContent === e, newEmail);
  changed();
  await spaView(t1, "/app/billing");
  views++;
  await reloadView(t1);
  views++;
  await spaView(t2, "/app/settings");
  views++;
  await reloadView(t2);
  views++;
  await spaView(t2, "/app/reports");
  views++;
  await spaView(t1, "/app/settings");
  views++;
  return { ctx, t1, t2, views, reloadView };
}

/**
 * hsq mode, after the session: once HubSpot holds the user's new email the user comes back (one
 * more page load, which identifies with that email), and the tabs close once every view of the
 * user is on their contact (or `waitMs` passed). Views made while the relay could not confirm an
 * email went out with the id alone and sit on the browser's hubspotutk; HubSpot moves them to the
 * contact at the visitor's next hit that carries the email, which is this page load.
 * Answers the views it made.
 */
async function comeBack({ stack, t1, sub, newEmail, made, waitMs, reloadView }) {
  const mine = async () => (await stack.demo.report()).users.find((u) => u.sub === sub);
  const synced = await until(async () => {
    const u = await mine();
    return u && u.contacts.length === 1 && u.contacts[0].email === newEmail;
  }, `${sub}: the new email in HubSpot`, waitMs, REPORT_EVERY_MS).catch(() => false);
  if (!synced) return 0;
  await reloadView(t1);
  await t1.waitForFunction((e) => window.demoEvents.some((x) => x.type === "identified" && x.email === e), newEmail, { timeout: waitMs }).catch(() => {});
  await until(async () => {
    const u = await mine();
    return u && u.contacts.length === 1 && u.contacts[0].pageViews >= made + 1;
  }, `${sub}: every view on the contact`, waitMs, REPORT_EVERY_MS).catch(() => {});
  return 1;
}

/**
 * Runs the race for `users` users of `mode` ("naive" or "hsq") on `stack` (scripts/stack.mjs),
 * `concurrency` users at a time; `midway()` runs once half of them have changed their email.
 * `cpuThrottle` slows each tab's CPU down that many times (DevTools' CPU throttling). `emailPost`:
 * the email form is posted by the browser (the demo's stack needs `formPost`), not by the page's script.
 */
export async function runRace({ browser, stack, mode, users, concurrency = 4, midway = null, settleMs = 90000, userSettleMs = 60000, cpuThrottle = 1, hubspotEdits = false, emailPost = false }) {
  const url = stack.demo.url;
  const errors = [];
  const made = new Map();
  const log = { made: [], traces: [], cpuThrottle };
  let changedCount = 0;
  let midwayRun = null;
  const changed = () => {
    changedCount++;
    if (midway && !midwayRun && changedCount >= Math.ceil(users / 2)) midwayRun = midway();
  };
  const subs = Array.from({ length: users }, (_, i) => `${mode === "naive" ? "n" : "h"}-race${i}`);
  const edits = { edit: 0, merge: 0 };
  const started = Date.now();
  // A pool of `concurrency` users at a time, each starting as another finishes.
  let next = 0;
  const worker = async () => {
    while (next < subs.length) {
      const sub = subs[next++];
      try {
        const newEmail = `${sub}-new@example.com`;
        const index = subs.indexOf(sub);
        const edit = hubspotEdits
          ? async () => {
              const k = await editInHubSpot(stack, sub, index);
              if (k) edits[k]++;
            }
          : null;
        const o = await session({ browser, url, mode, sub, newEmail, errors, changed, log, edit, emailPost });
        // Each user's tabs close when the user is done (200 users' open tabs would swamp the
        // machine). A naive page holds nothing: a moment for its last hit, then close.
        try {
          if (mode === "naive") await new Promise((r) => setTimeout(r, 500));
          else o.views += await comeBack({ stack, t1: o.t1, sub, newEmail, made: o.views, waitMs: userSettleMs, reloadView: o.reloadView });
        } finally {
          made.set(sub, o.views);
          // The tabs' traces, read before the tabs close.
          for (const p of [o.t1, o.t2]) {
            const docs = await p.evaluate((prefix) => Object.keys(sessionStorage).filter((k) => k.startsWith(prefix)).map((k) => sessionStorage.getItem(k)), TRACE).catch(() => []);
            for (const d of docs) for (const x of JSON.parse(d)) log.traces.push({ sub, ...x });
          }
          await o.ctx.close().catch(() => {});
        }
      } catch (e) {
        errors.push(`${sub}: the session failed: ${String(e.message || e).split("\n")[0]}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, subs.length) }, worker));
  if (midwayRun) await midwayRun;
  const browsed = Date.now();
  const totalMade = [...made.values()].reduce((a, b) => a + b, 0);
  // Settle: every sync done, and (for hsq) every change applied and every held view released.
  // A naive page holds nothing, so once the syncs are done and no view has come for 3 s, the
  // views still missing were lost (a navigation cancels a hit in flight).
  let rep;
  let last = -1, stableSince = Date.now();
  await until(
    async () => {
      if (stack.demo.pendingSyncs() > 0) return false;
      rep = await stack.demo.report();
      const mine = rep.users.filter((u) => made.has(u.sub));
      const views = (await getJson(`${stack.sim.url}/__sim/hits`)).body.hits.filter((h) => h.kind === "pageview").length;
      if (views !== last) [last, stableSince] = [views, Date.now()];
      if (mode === "naive") return views >= totalMade || Date.now() - stableSince > 3000;
      return views >= totalMade && mine.every((u) => u.contacts.length === 1 && u.contacts[0].email === u.email);
    },
    "the run to settle",
    settleMs,
  ).catch(() => {});
  const settleSeconds = (Date.now() - browsed) / 1000;
  rep = await stack.demo.report();
  const mine = rep.users.filter((u) => made.has(u.sub)).map((u) => ({ ...u, viewsMade: made.get(u.sub) }));
  const hits = (await getJson(`${stack.sim.url}/__sim/hits`)).body.hits.filter((h) => h.kind === "pageview");
  const views = account({ users: mine, made: log.made, traces: log.traces, hits, started });
  return {
    users: mine,
    duplicates: mine.filter((u) => u.contacts.length > 1).length,
    anonymousHits: rep.anonymousHits,
    viewsMade: totalMade,
    viewsReceived: hits.length,
    lostViews: views.lost,
    wrongContactViews: views.onAnother,
    extraViews: views.extra,
    problems: views.problems,
    pageErrors: errors,
    hubspotEdits: edits,
    seconds: (Date.now() - started) / 1000,
    settleSeconds,
    cpuThrottle,
    trace: { made: log.made, page: log.traces, hits, started },
  };
}

const pathOf = (u) => {
  try {
    return new URL(u).pathname;
  } catch (_) {
    return "/";
  }
};

/**
 * Each user's views, made against received. A view is lost when the collector has no page view
 * for it from the user (by the `id` it carried or the browser's hubspotutk), and on another
 * contact when it arrived but not on the contact holding most of the user's views. Views are
 * paired in order: made (driver) -> fired on the same tab and path (page) -> received with the
 * same utk, URL and path (collector). Answers the counts and, for each lost or misattributed
 * view, its trace as text.
 */
function account({ users, made, traces, hits, started }) {
  const t = (at) => `+${((at - started) / 1000).toFixed(2)} s`;
  const short = (u) => (u ? u.slice(0, 8) : "none");
  let lost = 0, onAnother = 0, extra = 0;
  const problems = [];
  for (const u of users) {
    const mine = made.filter((m) => m.sub === u.sub).sort((a, b) => a.at - b.at);
    const trace = traces.filter((x) => x.sub === u.sub).sort((a, b) => a.at - b.at);
    const fired = trace.filter((x) => x.ev === "fire");
    const utks = new Set(fired.map((f) => f.utk).filter(Boolean));
    const got = hits.filter((h) => (h.identity && h.identity.id === u.sub) || (h.utk && utks.has(h.utk)));
    const byContact = new Map();
    for (const h of got) byContact.set(h.contactId, (byContact.get(h.contactId) || 0) + 1);
    const main = [...byContact.entries()].filter(([c]) => c !== null).sort((a, b) => b[1] - a[1])[0]?.[0] ?? null;
    const userLost = Math.max(0, u.viewsMade - got.length);
    const userOther = got.filter((h) => h.contactId !== main).length;
    lost += userLost;
    onAnother += userOther;
    extra += Math.max(0, got.length - u.viewsMade);
    if (!userLost && !userOther) continue;
    // Pair made -> fired -> received, in order.
    const usedF = new Set(), usedH = new Set();
    for (const m of mine) {
      const f = fired.find((x) => !usedF.has(x) && x.kind === "pageview" && x.tab === m.tab && (x.po || pathOf(x.pu)) === m.path && x.at >= m.at - 50);
      if (f) usedF.add(f);
      const h = f && got.find((x) => !usedH.has(x) && x.utk === f.utk && x.url === f.pu && x.path === (f.po || pathOf(f.pu)));
      if (h) usedH.add(h);
      Object.assign(m, { fire: f, hit: h });
    }
    // Hits no fired view explains (a view fired twice, or from a page the trace missed).
    const strays = got.filter((h) => !usedH.has(h));
    for (const m of mine) {
      if (m.hit && m.hit.contactId === main) continue;
      const why = !m.hit ? "LOST" : m.hit.contactId === null ? "ANONYMOUS (on no contact)" : `ON ANOTHER CONTACT (${m.hit.contactId}, not ${main})`;
      const lines = [`${why}: ${u.sub} view ${m.n} of ${u.viewsMade}, tab ${m.tab}, ${m.how} ${m.path}, made at ${t(m.at)}`];
      const nextOnTab = mine.find((x) => x.tab === m.tab && x.at > m.at);
      const end = (nextOnTab ? nextOnTab.at : m.at) + 5000;
      lines.push(`  page (tab ${m.tab}, ${t(m.at - 100)} to ${t(end)}):`);
      for (const x of trace.filter((x) => x.tab === m.tab && x.at >= m.at - 100 && x.at <= end)) {
        const what =
          x.ev === "fire"
            ? `fire ${x.kind} ${x.po || pathOf(x.pu)} (page ${pathOf(x.pu)}, utk ${short(x.utk)}, id ${x.id || "-"}, email ${x.email || "-"}, cts ${x.cts})${x === m.fire ? "  <- this view" : ""}`
            : x.ev === "module"
              ? `module: ${x.type}${x.count !== undefined ? " " + x.count : ""}${x.email ? " " + x.email : ""}`
              : x.ev === "stored" || x.ev === "restored"
                ? `${x.ev} held views for the next page: [${(x.views || []).join(", ")}]`
                : x.ev === "answered" || x.ev === "failed"
                  ? `${x.ev === "answered" ? "collector answered" : "hit request FAILED (cancelled or refused)"} cts ${x.cts}`
                  : x.ev;
        lines.push(`    ${t(x.at)} [${x.doc} ${x.loc}] ${what}`);
      }
      if (m.fire && !trace.some((x) => x.doc === m.fire.doc && (x.ev === "answered" || x.ev === "failed") && x.cts === m.fire.cts))
        lines.push("    (the hit's request never ended in its page: the page went away first)");
      const same = got.filter((h) => h.path === m.path);
      lines.push(`  collector, ${u.sub}'s page views of ${m.path}: ${same.length ? same.map((h) => `#${h.seq} ${t(h.at)} contact ${h.contactId} utk ${short(h.utk)} id ${h.identity?.id || "-"}`).join("; ") : "none"}`);
      problems.push(lines.join("\n"));
    }
    if (strays.length)
      problems.push(`  ${u.sub}: hits no traced view explains: ${strays.map((h) => `#${h.seq} ${h.path} ${t(h.at)} contact ${h.contactId}`).join("; ")}`);
    problems.push(`  ${u.sub}: made ${u.viewsMade}, received ${got.length} (${[...byContact.entries()].map(([c, n]) => `${n} on ${c}`).join(", ")}); lost ${userLost}, on another contact ${userOther}`);
  }
  return { lost, onAnother, extra, problems };
}

/** The race's result: the counts apart, then each lost or misattributed view (the first `max`). */
export function describe(r, max = 40) {
  const head = `${r.duplicates} users with duplicate contacts; ${r.lostViews} of ${r.viewsMade} page views lost, ${r.wrongContactViews} on another contact, ${r.extraViews} received twice; settled in ${r.settleSeconds.toFixed(0)} s (${r.seconds.toFixed(0)} s in all)`;
  const more = r.problems.length > max ? [`... and ${r.problems.length - max} more`] : [];
  return [head, ...r.problems.slice(0, max), ...more].join("\n");
}

/** The race's promise for hsq-identity (`r` from scripts/race.mjs's runRace): no page error, no
 * view lost or misattributed, and each user on one contact with the new email and every view. */
export function assertEveryViewOnOneContact(r) {
  assert.deepEqual(r.pageErrors, []);
  // Each lost or misattributed view, with what the page and the collector saw of it.
  assert.equal(r.lostViews + r.wrongContactViews, 0, describe(r));
  assert.equal(r.duplicates, 0, "no user has two contacts");
  for (const u of r.users) {
    assert.equal(u.contacts.length, 1, `${u.sub}: ${JSON.stringify(u.contacts)}`);
    assert.equal(u.contacts[0].email, u.email, `${u.sub}: the new email is on the one contact`);
    assert.equal(u.contacts[0].pageViews, u.viewsMade, `${u.sub}: every view of the run is on it`);
  }
  assert.equal(r.anonymousHits, 0);
}

// Run as a program: one race, printed.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const flag = (name, dflt) => {
    const i = args.indexOf(name);
    return i >= 0 ? args.splice(i, 2)[1] : dflt;
  };
  const cpuThrottle = Number(flag("--throttle", "1"));
  const dump = flag("--dump", null);
  const concurrency = Number(flag("--concurrency", String(cpuThrottle > 1 ? throttledConcurrency(cpuThrottle) : 4)));
  const [mode = "hsq", users = "20"] = args;
  const { startStack } = await import("./stack.mjs");
  const browser = await launchBrowser();
  const stack = await startStack({ profile: process.env.HSQ_BIN_PROFILE || "debug", lagMs: "0-5000", simArgs: ["--rate-limit", "0"], relayEnv: { HSQ_LEASE_SECS: "15" } });
  try {
    const r = await runRace({ browser, stack, mode, users: Number(users), concurrency, cpuThrottle, settleMs: 120000 });
    console.log(`race, ${users} ${mode} users, CPU ${cpuThrottle}x: ${describe(r)}`);
    for (const e of r.pageErrors) console.log(`error: ${e}`);
    if (dump) (await import("node:fs")).writeFileSync(dump, JSON.stringify(r.trace));
  } finally {
    await stack.stop();
    await browser.close();
  }
}
