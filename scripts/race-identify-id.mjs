// The hsq-identity race under both values of hubspot-sim's `--identify-id` switch:
//   node scripts/race-identify-id.mjs [users=20] [honoured,ignored]
// Prints, per value, duplicates, views made / received / lost, anonymous views, and what became of
// the views sent before an email was confirmed (identity with `id` and no email). npm test runs
// the race under the default (`ignored`); this script also runs `honoured`. Build first
// (`cargo build -p hubspot-sim -p hsq-relay`, `npm run build`).
import { launchBrowser, getJson } from "../tests/e2e/helpers.mjs";
import { startStack } from "./stack.mjs";
import { runRace } from "./race.mjs";

const users = Number(process.argv[2] || 20);
const modes = (process.argv[3] || "honoured,ignored").split(",");
const browser = await launchBrowser();
let failed = false;
try {
  for (const mode of modes) {
    process.env.HSQ_SIM_IDENTIFY_ID = mode;
    const stack = await startStack({ lagMs: "0-5000", simArgs: ["--rate-limit", "0"], relayEnv: { HSQ_LEASE_SECS: "20" } });
    try {
      const r = await runRace({ browser, stack, mode: "hsq", users });
      const views = (await getJson(`${stack.sim.url}/__sim/hits`)).body.hits.filter((h) => h.kind === "pageview");
      const idOnly = views.filter((h) => h.identity && !h.identity.email && h.identity.id);
      const noIdentity = views.filter((h) => !h.identity);
      const onOwn = r.users.reduce((n, u) => n + (u.contacts.length === 1 && u.contacts[0].pageViews === u.viewsMade ? 1 : 0), 0);
      console.log(
        `identify-id ${mode}: ${users} users, ${r.duplicates} with duplicates; ${r.viewsMade} views made, ${r.viewsReceived} received, ` +
          `${r.lostViews} lost, ${r.anonymousHits} anonymous at the end; ${idOnly.length} views sent with the id and no email ` +
          `(${idOnly.filter((h) => h.contactId === null).length} of them unplaced), ${noIdentity.length} with no identity; ` +
          `${onOwn} of ${r.users.length} users have every view on their one contact; ${r.pageErrors.length} page errors (${r.seconds.toFixed(0)} s)`,
      );
      if (r.duplicates > 0 || r.pageErrors.length > 0) failed = true;
    } finally {
      await stack.stop();
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
