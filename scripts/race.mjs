// The email-change race on the demo app, driven in Chromium: each user logs in with two tabs,
// browses (page loads, reloads, SPA route changes), changes their email in one tab while the app's
// worker lags, and keeps browsing in both; with hsq-identity the user comes back once HubSpot has
// the new email. Used by tests/e2e/race.test.mjs and `npm run bench`.
import { until, getJson } from "../tests/e2e/helpers.mjs";

const PACE_MS = 300; // a user's pause after a single-page view before the next navigation
// How often a finishing user asks for the report (all contacts joined with all users): at the
// helpers' 50 ms, 8 users finishing at once would spend the 2 cores on reports.
const REPORT_EVERY_MS = 500;

async function ready(page, mode) {
  // The tracker has loaded (so the page's automatic view went out or is held), and in hsq mode
  // the module has started.
  await page.waitForFunction((m) => window._hstc_ran === true && (m === "naive" || (window.demo && window.demoEvents)), mode, { timeout: 30000 });
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
async function session({ browser, url, mode, sub, newEmail, errors, changed, edit }) {
  const ctx = await browser.newContext();
  try {
    return await browse(ctx, { url, mode, sub, newEmail, errors, changed, edit });
  } catch (e) {
    await ctx.close().catch(() => {});
    throw e;
  }
}

async function browse(ctx, { url, mode, sub, newEmail, errors, changed, edit }) {
  const [t1, t2] = [await ctx.newPage(), await ctx.newPage()];
  for (const p of [t1, t2]) {
    p.on("pageerror", (e) => errors.push(`${sub}: ${e.message}`));
  }
  let views = 0;
  await go(t1, `${url}/login?mode=${mode}&sub=${sub}`);
  await ready(t1, mode);
  views++;
  await go(t2, `${url}/app/`);
  await ready(t2, mode);
  views++;
  await spa(t1, "/app/reports");
  views++;
  await reload(t2);
  await ready(t2, mode);
  views++;
  if (edit) {
    // HubSpot-side edits: the user keeps browsing in both tabs meanwhile.
    await edit();
    await spa(t2, "/app/billing");
    views++;
    await spa(t1, "/app/");
    views++;
  }
  // The user changes their email in tab 1; the app's worker tells HubSpot (or the relay) later.
  await t1.fill("input[name=email]", newEmail);
  await t1.click("#email-form button");
  await t1.waitForFunction((e) => document.getElementById("email").textContent === e, newEmail);
  changed();
  await spa(t1, "/app/billing");
  views++;
  await reload(t1);
  await ready(t1, mode);
  views++;
  await spa(t2, "/app/settings");
  views++;
  await reload(t2);
  await ready(t2, mode);
  views++;
  await spa(t2, "/app/reports");
  views++;
  await spa(t1, "/app/settings");
  views++;
  return { ctx, t1, views };
}

/**
 * hsq mode, after the session: once HubSpot holds the user's new email the user comes back (one
 * more page load, which identifies with that email), and the tabs close once every view of the
 * user is on their contact (or `waitMs` passed). Views made while the relay could not confirm an
 * email went out with the id alone and sit on the browser's hubspotutk; HubSpot moves them to the
 * contact at the visitor's next hit that carries the email, which is this page load.
 * Answers the views it made.
 */
async function comeBack({ stack, t1, sub, newEmail, made, waitMs }) {
  const mine = async () => (await stack.demo.report()).users.find((u) => u.sub === sub);
  const synced = await until(async () => {
    const u = await mine();
    return u && u.contacts.length === 1 && u.contacts[0].email === newEmail;
  }, `${sub}: the new email in HubSpot`, waitMs, REPORT_EVERY_MS).catch(() => false);
  if (!synced) return 0;
  await reload(t1);
  await ready(t1, "hsq");
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
 */
export async function runRace({ browser, stack, mode, users, concurrency = 4, midway = null, settleMs = 90000, userSettleMs = 60000, hubspotEdits = false }) {
  const url = stack.demo.url;
  const errors = [];
  const made = new Map();
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
        const o = await session({ browser, url, mode, sub, newEmail, errors, changed, edit });
        // Each user's tabs close when the user is done (200 users' open tabs would swamp the
        // machine). A naive page holds nothing: a moment for its last hit, then close.
        try {
          if (mode === "naive") await new Promise((r) => setTimeout(r, 500));
          else o.views += await comeBack({ stack, t1: o.t1, sub, newEmail, made: o.views, waitMs: userSettleMs });
        } finally {
          made.set(sub, o.views);
          await o.ctx.close().catch(() => {});
        }
      } catch (e) {
        errors.push(`${sub}: the session failed: ${String(e.message || e).split("\n")[0]}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, subs.length) }, worker));
  if (midwayRun) await midwayRun;
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
  rep = await stack.demo.report();
  const mine = rep.users.filter((u) => made.has(u.sub)).map((u) => ({ ...u, viewsMade: made.get(u.sub) }));
  const hits = (await getJson(`${stack.sim.url}/__sim/hits`)).body.hits.filter((h) => h.kind === "pageview").length;
  return {
    users: mine,
    duplicates: mine.filter((u) => u.contacts.length > 1).length,
    anonymousHits: rep.anonymousHits,
    viewsMade: totalMade,
    viewsReceived: hits,
    lostViews: Math.max(0, totalMade - hits),
    wrongContactViews: mine.reduce((n, u) => n + Math.max(0, u.viewsMade - Math.max(0, ...u.contacts.map((c) => c.pageViews))), 0),
    pageErrors: errors,
    hubspotEdits: edits,
    seconds: (Date.now() - started) / 1000,
  };
}
