// The race with HubSpot-side edits, small: a marketer edits emails and merges contacts in HubSpot
// while users browse and change their email in the app. Naive page code sends the email HubSpot no
// longer holds and makes a new contact with it; hsq-identity with webhooks follows the edits. The
// numbers of all four variants print; the bench runs them at N=200 (BENCH_EDITS=1).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser } from "./helpers.mjs";
import { runEditsRace, editsRow } from "../../scripts/race-hubspot-edits.mjs";

const USERS = Number(process.env.RACE_EDIT_USERS || 4);
let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test(`naive page code: emails edited in HubSpot make contacts with the old email (${USERS} users)`, async () => {
  const r = await runEditsRace({ browser, variant: "naive", users: USERS });
  console.log(editsRow(r, USERS));
  assert.deepEqual(r.pageErrors, []);
  assert.ok(r.hubspotEdits.edit > 0 && r.hubspotEdits.merge > 0, "the marketer edited and merged");
  assert.ok(r.duplicates + r.wrongContactViews > 0, "the edits cost the naive page duplicates or views");
});

test(`hsq-identity with webhooks: each user keeps one contact holding their id, with the app's email (${USERS} users)`, async () => {
  const r = await runEditsRace({ browser, variant: "hsq-webhooks", users: USERS });
  console.log(editsRow(r, USERS));
  assert.deepEqual(r.pageErrors, []);
  assert.ok(r.webhooksDelivered > 0, "the simulator's webhooks reached the relay");
  for (const u of r.users) {
    const linked = u.contacts.filter((c) => c.email === u.email);
    assert.equal(linked.length, 1, `${u.sub}: one contact with the app's email: ${JSON.stringify(u.contacts)}`);
  }
});
