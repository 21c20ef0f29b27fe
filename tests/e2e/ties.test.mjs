// The email leaves a browser once (issue 24, part 1): once HubSpot has tied the browser's
// hubspotutk to the user's contact (one identify with the email reached it), the relay says so in
// the ticket (`tiedUtk`, after asking HubSpot itself) and the browser's pages push `{id}` only;
// their hits still land on the user's contact, by the utk. A new cookie (reset()) ties again.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser, watchErrors, mintAssertion, until, hits, contacts } from "./helpers.mjs";
import { streamStack } from "../../scripts/lease-streams.mjs";

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test("after HubSpot tied the browser, its pages send the id only and their views land on the user's one contact", async () => {
  const s = await streamStack();
  const ctx = await browser.newContext();
  try {
    const sub = "u_tie";
    const token = await mintAssertion({ sub, email: "tie@x.io" });
    const p = await ctx.newPage();
    const errors = await watchErrors(p);
    const go = async (n) => {
      await p.goto(`${s.app.url}/p${n}?a=${encodeURIComponent(token)}`);
      await p.waitForFunction(() => window.started);
    };
    const mine = async () => (await hits(s.sim.url)).filter((h) => h.identity?.id === sub);
    // Page 1: no cookie yet; the email goes with its views (the identify that ties the browser).
    await go(1);
    await until(async () => (await mine()).some((h) => h.path === "/p1" && h.identity.email === "tie@x.io"), "page 1's view with the email", 20000);
    // Page 2: from the cache (the email, leased), and the relay asked at once, now with the cookie.
    await go(2);
    const tied = await until(() => p.evaluate(() => window.hs.identity?.tiedUtk), "the relay to find the tie", 20000);
    const cookie = (await ctx.cookies()).find((c) => c.name === "hubspotutk")?.value;
    assert.equal(tied, cookie, "tied is the browser's own cookie");
    // Pages 3 and 4, and a single-page view: the id only.
    await go(3);
    await p.evaluate(() => window.hs.trackPageView("/p3/spa"));
    // A view fired just before a navigation may be cancelled with its page: let it arrive first.
    await until(async () => (await mine()).filter((h) => ["/p3", "/p3/spa"].includes(h.path)).length >= 2, "page 3's views", 20000);
    await go(4);
    await until(async () => (await mine()).filter((h) => ["/p3", "/p3/spa", "/p4"].includes(h.path)).length >= 3, "pages 3 and 4's views", 20000);
    const identifies = await p.evaluate(() => window.snapshot.filter((e) => e[0] === "identify"));
    assert.deepEqual(identifies, [["identify", { id: sub }]], "page 4 pushed the id alone");
    const h = await mine();
    const withEmail = h.filter((x) => x.identity.email);
    const later = h.filter((x) => ["/p3", "/p3/spa", "/p4"].includes(x.path));
    const all = (await contacts(s.sim.url)).contacts;
    const contact = all.find((c) => c.properties.hsq_user_id === sub);
    console.log(`hits: ${h.length}, carrying the email: ${withEmail.length} (${withEmail.map((x) => x.path).join(", ")}); contacts: ${all.length}`);
    assert.ok(later.every((x) => !x.identity.email), `no email after the tie: ${JSON.stringify(later.map((x) => x.identity))}`);
    assert.ok(withEmail.every((x) => ["/p1", "/p2"].includes(x.path)), "the email went only before the relay knew of the tie");
    assert.equal(all.length, 1, "one contact");
    assert.ok(h.every((x) => String(x.contactId) === contact.id), "every view on the user's one contact");

    // Logout and login again in the same browser: reset() deletes the cookies, so the next page
    // has a new utk that no identify has tied yet: it sends the email again, under a lease.
    await p.evaluate(() => window.hs.reset());
    await go(5);
    await until(async () => (await mine()).some((x) => x.path === "/p5" && x.identity.email === "tie@x.io"), "page 5's view with the email: a new cookie ties again", 20000);
    const after = (await contacts(s.sim.url)).contacts;
    assert.equal(after.length, 1, "still one contact");
    assert.deepEqual(await errors(), []);
  } finally {
    await ctx.close();
    await s.stop();
  }
});
