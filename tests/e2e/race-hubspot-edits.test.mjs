// The race with HubSpot-side edits, small: a marketer edits emails and merges contacts in HubSpot
// while users browse and change their email in the app. Naive page code sends the email HubSpot no
// longer holds and makes a new contact with it. With hsq-identity a page may still send its leased
// email after HubSpot's copy changed and the tracker makes a duplicate with it; the relay finds it
// (by webhook, or by reconciliation) and merges it into the user's contact: no user is left with a
// duplicate, and every view is on the user's one contact. Each row prints the duplicates made and
// those left; each one made prints with its trace. The bench runs all variants at N=200
// (BENCH_EDITS=1).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser } from "./helpers.mjs";
import { runEditsRace, editsRow, describeDuplicates } from "../../scripts/race-hubspot-edits.mjs";
import { assertEveryViewOnOneContact } from "../../scripts/race.mjs";

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

for (const [variant, how] of [
  ["hsq-webhooks", "with webhooks"],
  ["hsq-reconcile", "with reconciliation only"],
]) {
  test(`hsq-identity ${how}: no user is left with a duplicate, every view is on the user's one contact (${USERS} users)`, async () => {
    const r = await runEditsRace({ browser, variant, users: USERS });
    console.log(editsRow(r, USERS));
    if (r.made.created) console.log(describeDuplicates(r));
    assert.ok(r.hubspotEdits.edit > 0 && r.hubspotEdits.merge > 0, "the marketer edited and merged");
    if (variant === "hsq-webhooks") assert.ok(r.webhooksDelivered > 0, "the simulator's webhooks reached the relay");
    assert.equal(r.duplicates, 0, describeDuplicates(r));
    assertEveryViewOnOneContact(r);
  });
}
