// The email-change race on the demo app, driven in Chromium: each user logs in with two tabs,
// browses (page loads, reloads, SPA route changes), changes their email in one tab while the app's
// worker lags, and keeps browsing in both. Used by tests/e2e/race.test.mjs and `npm run bench`.
import { until, getJson } from "../tests/e2e/helpers.mjs";

const PACE_MS = 300; // a user's pause after a single-page view before the next navigation

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

/** One user's session; answers the number of page views it made. */
async function session({ browser, url, mode, sub, newEmail, errors, changed }) {
  const ctx = await browser.newContext();
  try {
    return await browse(ctx, { url, mode, sub, newEmail, errors, changed });
  } catch (e) {
    await ctx.close().catch(() => {});
    throw e;
  }
}

async function browse(ctx, { url, mode, sub, newEmail, errors, changed }) {
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
  return { ctx, views };
}

/**
 * Runs the race for `users` users of `mode` ("naive" or "hsq") on `stack` (scripts/stack.mjs),
 * `concurrency` users at a time; `midway()` runs once half of them have changed their email.
 */
export async function runRace({ browser, stack, mode, users, concurrency = 4, midway = null, settleMs = 90000 }) {
  const url = stack.demo.url;
  const errors = [];
  const made = new Map();
  const contexts = [];
  let changedCount = 0;
  let midwayRun = null;
  const changed = () => {
    changedCount++;
    if (midway && !midwayRun && changedCount >= Math.ceil(users / 2)) midwayRun = midway();
  };
  const subs = Array.from({ length: users }, (_, i) => `${mode === "naive" ? "n" : "h"}-race${i}`);
  const started = Date.now();
  // A pool of `concurrency` users at a time, each starting as another finishes.
  let next = 0;
  const worker = async () => {
    while (next < subs.length) {
      const sub = subs[next++];
      try {
        const o = await session({ browser, url, mode, sub, newEmail: `${sub}-new@example.com`, errors, changed });
        made.set(sub, o.views);
        // A naive page holds nothing: close it now (200 users' open tabs would swamp the machine).
        // An hsq page may still hold views until its new email is confirmed: keep it to the end.
        if (mode === "naive") await new Promise((r) => setTimeout(r, 500)).then(() => o.ctx.close());
        else contexts.push(o.ctx);
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
  for (const c of contexts) await c.close();
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
    seconds: (Date.now() - started) / 1000,
  };
}
