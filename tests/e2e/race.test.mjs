// The end-to-end proof on the demo app: users change their email while the app's sync lags and
// keep browsing in two tabs, across reloads and single-page route changes. The naive page code
// leaves duplicate contacts in the simulator; hsq-identity leaves one contact per user, with the
// new email once synced, and every page view of the run on it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser, watchErrors, until, getJson } from "./helpers.mjs";
import { startStack } from "../../scripts/stack.mjs";
import { runRace, assertEveryViewOnOneContact } from "../../scripts/race.mjs";

const USERS = Number(process.env.RACE_USERS || 20);
let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test(`naive identify({email}) makes duplicates when ${USERS} users change email under a 0-5 s sync lag`, async () => {
  const stack = await startStack({ lagMs: "0-5000", simArgs: ["--rate-limit", "0"] });
  try {
    const r = await runRace({ browser, stack, mode: "naive", users: USERS });
    assert.deepEqual(r.pageErrors, []);
    assert.ok(r.duplicates > 0, `the scenario is real: ${r.duplicates} users with duplicates`);
    const failedSyncs = (await stack.demo.report()).log.filter((l) => l.status === 404 || l.status === 409);
    assert.ok(failedSyncs.length > 0, "syncing by email meets 404s and 409s under the race");
  } finally {
    await stack.stop();
  }
});

test(`hsq-identity leaves one contact per user, the new email on it and every view, for ${USERS} users`, async () => {
  // A short lease, so a tab that never refreshes lets the change through within the test.
  const stack = await startStack({ lagMs: "0-5000", simArgs: ["--rate-limit", "0"], relayEnv: { HSQ_LEASE_SECS: "20" } });
  try {
    // Midway, the relay is killed and restarted on its database, and HubSpot answers 429s and 500s.
    const midway = async () => {
      await stack.restartRelay("SIGKILL");
      for (const status of [429, 500]) {
        await fetch(`${stack.sim.url}/__sim/faults`, { method: "POST", body: JSON.stringify({ path: "/crm/v3/objects/contacts", status, count: 6 }) });
      }
    };
    const r = await runRace({ browser, stack, mode: "hsq", users: USERS, midway });
    assertEveryViewOnOneContact(r);
    const stats = (await getJson(`${stack.sim.url}/__sim/stats`)).body.calls;
    assert.ok(Object.keys(stats).some((k) => k.endsWith(" 429")) && Object.keys(stats).some((k) => k.endsWith(" 500")), "the faults were met");
  } finally {
    await stack.stop();
  }
});

test("a shared browser: after A logs out and B logs in, nothing of B lands on A", async () => {
  const stack = await startStack({ lagMs: "0" });
  const ctx = await browser.newContext();
  try {
    const p = await ctx.newPage();
    const errors = await watchErrors(p);
    await p.goto(`${stack.demo.url}/login?mode=hsq&sub=h-ann`);
    await p.waitForFunction(() => window.demoEvents && window.demoEvents.some((e) => e.type === "identified"));
    await p.click("a[href='/app/reports']");
    await until(async () => (await getJson(`${stack.sim.url}/__sim/hits`)).body.hits.length >= 2, "A's views");
    await p.click("#logout"); // hs.reset(), then the app's logout
    await p.waitForURL(`${stack.demo.url}/`);
    await p.goto(`${stack.demo.url}/login?mode=hsq&sub=h-ben`);
    await p.waitForFunction(() => window.demoEvents && window.demoEvents.some((e) => e.type === "identified"));
    await p.click("a[href='/app/billing']");
    await until(async () => (await getJson(`${stack.sim.url}/__sim/hits`)).body.hits.length >= 4, "B's views");
    const rep = await stack.demo.report();
    const ann = rep.users.find((u) => u.sub === "h-ann");
    const ben = rep.users.find((u) => u.sub === "h-ben");
    assert.equal(ann.contacts.length, 1);
    assert.equal(ben.contacts.length, 1);
    assert.notEqual(ann.contacts[0].id, ben.contacts[0].id);
    assert.equal(ann.contacts[0].pageViews, 2, "A keeps exactly A's views");
    assert.equal(ben.contacts[0].pageViews, 2, "B's views are B's");
    const sim = (await getJson(`${stack.sim.url}/__sim/contacts`)).body.contacts;
    const a = sim.find((c) => c.id === ann.contacts[0].id);
    const b = sim.find((c) => c.id === ben.contacts[0].id);
    assert.ok(!a.utks.some((u) => b.utks.includes(u)), "A and B have different hubspotutk values");
    assert.deepEqual(await errors(), []);
  } finally {
    await ctx.close();
    await stack.stop();
  }
});

test("the demo's chat is identified only with a confirmed email", async () => {
  const stack = await startStack({ lagMs: "0" });
  const ctx = await browser.newContext();
  try {
    const p = await ctx.newPage();
    await p.goto(`${stack.demo.url}/login?mode=hsq&sub=h-chat`);
    const load = await until(async () => (await getJson(`${stack.sim.url}/__sim/chat`)).body.events.find((e) => e.kind === "load"), "the chat load");
    assert.equal(load.identifiedEmail, "h-chat@example.com");
    // Another user whose email in the app is the same: a conflict, so the chat stays anonymous.
    const ctx2 = await browser.newContext();
    const p2 = await ctx2.newPage();
    await p2.goto(`${stack.demo.url}/login?mode=hsq&sub=h-copycat&email=h-chat@example.com`);
    await p2.waitForFunction(() => window.demoEvents && window.demoEvents.some((e) => e.type === "conflict"));
    const loads = await until(async () => {
      const l = (await getJson(`${stack.sim.url}/__sim/chat`)).body.events.filter((e) => e.kind === "load");
      return l.length >= 2 ? l : null;
    }, "the second chat load");
    assert.equal(loads[1].identifiedEmail, null);
    await ctx2.close();
  } finally {
    await ctx.close();
    await stack.stop();
  }
});
