// The race with collected forms, small: the demo's email form is a real <form> posted by the
// browser, and HubSpot's collected forms (the simulator's default) capture it and apply it utk
// first. Naive page code lets HubSpot rewrite emails and make duplicates; hsq-identity marks its
// forms data-hs-do-not-collect, so nothing is collected and each user keeps one contact with
// every view; with `collectForms: true` (its guard off) the forms rewrite emails again. The bench
// runs them at N=200 (`npm run bench`).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser } from "./helpers.mjs";
import { startStack } from "../../scripts/stack.mjs";
import { assertEveryViewOnOneContact } from "../../scripts/race.mjs";
import { runFormsRace, formsRow } from "../../scripts/race-collected-forms.mjs";

const USERS = Number(process.env.RACE_FORMS_USERS || 4);
let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test(`naive page code: collected forms rewrite emails in HubSpot and the old email makes duplicates (${USERS} users)`, async () => {
  const r = await runFormsRace({ browser, variant: "naive", users: USERS });
  console.log(formsRow(r, USERS));
  assert.deepEqual(r.pageErrors, []);
  assert.equal(r.formsCollected, USERS, "every user's email form was collected");
  assert.ok(r.emailsRewritten + r.duplicates > 0, `the forms cost the naive page: ${JSON.stringify(r.formOutcomes)}`);
});

test(`hsq-identity: no form is collected, and each user has one contact with every view (${USERS} users)`, async () => {
  const r = await runFormsRace({ browser, variant: "hsq", users: USERS });
  console.log(formsRow(r, USERS));
  assert.equal(r.formsCollected, 0, "the marked email form was never collected");
  assertEveryViewOnOneContact(r);
});

test(`hsq-identity with collectForms: true: the email form is collected and rewrites the email behind the relay (${USERS} users)`, async () => {
  const r = await runFormsRace({ browser, variant: "hsq-unguarded", users: USERS, settleMs: 30000 });
  console.log(formsRow(r, USERS));
  assert.deepEqual(r.pageErrors, []);
  assert.equal(r.formsCollected, USERS, "every user's email form was collected");
  assert.ok(r.emailsRewritten > 0, `HubSpot took the new email from the form, before the relay: ${JSON.stringify(r.formOutcomes)}`);
});

test("the demo's email form works without JavaScript (a post and a redirect) and with it (no navigation)", async () => {
  const stack = await startStack({ lagMs: "0" });
  try {
    const noJs = await browser.newContext({ javaScriptEnabled: false });
    const p = await noJs.newPage();
    await p.goto(`${stack.demo.url}/login?mode=hsq&sub=h-nojs`);
    await p.fill("#email-form input[name=email]", "nojs-new@example.com");
    await Promise.all([p.waitForURL("**/app/settings"), p.click("#email-form button")]);
    assert.equal(await p.textContent("#email"), "nojs-new@example.com");
    // The browser checks type=email itself; what a form post that gets past it sees:
    const bad = await noJs.request.post(`${stack.demo.url}/app/email`, { form: { email: "not an email" }, maxRedirects: 0 });
    assert.equal(bad.status(), 400);
    assert.match(await bad.text(), /&quot;not an email&quot; is not an email address/);
    await noJs.close();

    const ctx = await browser.newContext();
    const q = await ctx.newPage();
    await q.goto(`${stack.demo.url}/login?mode=hsq&sub=h-js`);
    await q.waitForFunction(() => window.demo && window.demoEvents);
    let navigated = false;
    q.on("framenavigated", () => (navigated = true));
    await q.fill("#email-form input[name=email]", "js-new@example.com");
    await q.click("#email-form button");
    await q.waitForFunction(() => document.getElementById("email").textContent === "js-new@example.com");
    assert.equal(navigated, false, "with JavaScript the page posts the form itself");
    assert.equal(await q.getAttribute("#email-form", "data-hs-do-not-collect"), "true", "hsq-identity marked the demo's form");
    await ctx.close();
    assert.deepEqual(["h-nojs", "h-js"].map((s) => stack.demo.users.get(s).email), ["nojs-new@example.com", "js-new@example.com"]);
  } finally {
    await stack.stop();
  }
});
