// The race with HubSpot-side edits (issue 17): the email-change race of scripts/race.mjs, plus a
// marketer who, during the run, edits every second user's email directly in HubSpot and merges a
// lead into every fourth user's contact. Variants: naive page code; hsq-identity with neither
// webhooks nor reconciliation; with reconciliation only (every 2 s); with webhooks (the
// simulator's signed deliveries to the relay). Used by tests/e2e/race-hubspot-edits.test.mjs and
// `npm run bench` (BENCH_EDITS=1).
import { randomBytes } from "node:crypto";
import { startStack } from "./stack.mjs";
import { runRace } from "./race.mjs";

export const VARIANTS = ["naive", "hsq-neither", "hsq-reconcile", "hsq-webhooks"];

/** A demo stack for one variant; with webhooks, the simulator is pointed at the relay. */
export async function editsStack(variant, { profile = "debug", leaseSecs = "20" } = {}) {
  const secret = randomBytes(16).toString("hex");
  const relayEnv = { HSQ_LEASE_SECS: leaseSecs, HSQ_RECONCILE_SECS: variant === "hsq-reconcile" ? "2" : "0" };
  if (variant === "hsq-webhooks") relayEnv.HSQ_HUBSPOT_CLIENT_SECRET = secret;
  const stack = await startStack({ profile, lagMs: "0-5000", simArgs: ["--rate-limit", "0"], relayEnv });
  if (variant === "hsq-webhooks") {
    const r = await fetch(`${stack.sim.url}/__sim/config`, {
      method: "POST",
      body: JSON.stringify({ webhookUrl: `${stack.relay.url}/v1/hubspot/webhooks`, webhookSecret: secret }),
    });
    if (!r.ok) throw new Error(`the simulator refused the webhook config: ${r.status}`);
  }
  return stack;
}

/** Runs one variant; answers runRace's result plus the variant and the webhook log's counts. */
export async function runEditsRace({ browser, variant, users, concurrency = 4, profile = "debug", settleMs = 60000, userSettleMs = 15000 }) {
  const stack = await editsStack(variant, { profile });
  try {
    const mode = variant === "naive" ? "naive" : "hsq";
    const r = await runRace({ browser, stack, mode, users, concurrency, settleMs, userSettleMs, hubspotEdits: true });
    const hooks = await fetch(`${stack.sim.url}/__sim/webhooks`).then((x) => x.json());
    return { ...r, variant, webhooksDelivered: hooks.delivered };
  } finally {
    await stack.stop();
  }
}

/** One bench/table row. */
export function editsRow(r, users) {
  const failed = r.pageErrors.filter((e) => e.includes("the session failed")).length;
  return `| race with HubSpot-side edits (${r.hubspotEdits.edit} emails edited, ${r.hubspotEdits.merge} merged), ${users} users: ${r.variant} | ${r.duplicates} users with duplicate contacts; ${r.wrongContactViews} of ${r.viewsMade} page views on another contact, ${r.lostViews} lost; ${failed} sessions failed (${r.seconds.toFixed(0)} s) |`;
}
