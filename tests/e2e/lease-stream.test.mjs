// A revoked lease reaches a live page within about a second (issue 24, part 2): a single-page
// app's page carries the leased email on every hit; a marketer edits that email in HubSpot (the
// simulator's PATCH, with its webhooks to the relay). The relay's lease stream tells the page at
// once, so the page holds its next hit instead of sending the old email until its renewal (200 s
// away at the default 600 s lease), and the view lands on the user's one contact.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser, until, hits, contacts } from "./helpers.mjs";
import { streamStack, carryingPage, editInHubSpot } from "../../scripts/lease-streams.mjs";

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test("a page carrying an email holds its next hit once the email is edited in HubSpot, and the view lands on the user's one contact", async () => {
  const s = await streamStack();
  const ctx = await browser.newContext();
  try {
    const { p, errors, contactId } = await carryingPage(s, ctx, "u_stream", "stream@x.io");
    const edited = Date.now();
    await editInHubSpot(s.sim.url, contactId, "typo-stream@x.io");
    // The hold comes from the stream: the lease has ~600 s left and the renewal is ~200 s away.
    const hold = await until(async () => (await p.evaluate(() => window.events)).find((e) => e.type === "hold" && e.at >= edited), "the page to hold", 15000);
    console.log(`edit in HubSpot -> page holding: ${hold.at - edited} ms`);
    // The single-page app's next view: held, then sent once the relay confirms an email again.
    await p.evaluate(() => window.hs.trackPageView("/after-edit"));
    const view = await until(async () => (await hits(s.sim.url)).find((h) => h.path === "/after-edit"), "the view after the edit", 30000);
    const all = (await contacts(s.sim.url)).contacts;
    const mine = all.filter((c) => c.properties.hsq_user_id === "u_stream" || c.ids.includes("u_stream") || ["stream@x.io", "typo-stream@x.io"].includes(c.email));
    console.log(`contacts: ${all.length}; the user's: ${JSON.stringify(mine.map((c) => ({ id: c.id, email: c.email, pageViews: c.pageViews })))}; the view: contact ${view.contactId}, email ${view.identity?.email}`);
    assert.equal(all.length, 1, "no user has two contacts: nothing was made with the old email");
    assert.equal(String(view.contactId), contactId, "the view is on the user's one contact");
    assert.ok(!view.identity?.email || view.identity.email === all[0].email, `the view carried only the email HubSpot holds: ${view.identity?.email} vs ${all[0].email}`);
    assert.deepEqual(await errors(), []);
  } finally {
    await ctx.close();
    await s.stop();
  }
});

test("a page whose stream is refused (HSQ_MAX_STREAMS=0) keeps to its renewal timer without an error", async () => {
  const s = await streamStack({ HSQ_MAX_STREAMS: "0" });
  const ctx = await browser.newContext();
  try {
    const { p, errors } = await carryingPage(s, ctx, "u_nostream", "nostream@x.io");
    await p.evaluate(() => window.hs.trackPageView("/second"));
    await until(async () => (await hits(s.sim.url)).some((h) => h.path === "/second"), "the second view", 15000);
    const events = await p.evaluate(() => window.events.map((e) => e.type));
    console.log(`events without a stream: ${events.join(", ")}`);
    assert.ok(!events.includes("hold"), "nothing held while the lease lives");
    assert.deepEqual(await errors(), []);
  } finally {
    await ctx.close();
    await s.stop();
  }
});
