// The race with collected forms (issue 24, part 4): the email-change race of scripts/race.mjs,
// where the demo's email form is posted by the browser (a real <form> and a redirect, as a
// server-rendered settings page) and the simulator's tracker collects the page's own forms
// (`collectedForms`, on by default): the submission reaches HubSpot from the next page, and
// HubSpot applies it utk first, writing the new email into the browser's contact behind the app's
// worker and the relay. Variants: naive page code; hsq-identity with its guard (the default,
// every form marked data-hs-do-not-collect); hsq-identity with `collectForms: true` (the guard
// off: what the guard prevents). Used by tests/e2e/race-collected-forms.test.mjs and
// `npm run bench` (BENCH_FORMS=0 leaves it out).
import { startStack } from "./stack.mjs";
import { runRace } from "./race.mjs";

export const VARIANTS = ["naive", "hsq", "hsq-unguarded"];

/** Runs one variant; answers runRace's result plus the variant and what collected forms did. */
export async function runFormsRace({ browser, variant, users, concurrency = 4, profile = "debug", settleMs = 60000, userSettleMs = 15000 }) {
  const stack = await startStack({
    profile,
    lagMs: "0-5000",
    simArgs: ["--rate-limit", "0", "--collected-forms=on"],
    relayEnv: { HSQ_LEASE_SECS: "20" },
    demo: { formPost: true, collectForms: variant === "hsq-unguarded" },
  });
  try {
    const mode = variant === "naive" ? "naive" : "hsq";
    const r = await runRace({ browser, stack, mode, users, concurrency, settleMs, userSettleMs, emailPost: true });
    const forms = await fetch(`${stack.sim.url}/__sim/forms`).then((x) => x.json());
    return { ...r, variant, formsCollected: forms.total, emailsRewritten: forms.byOutcome["email-replaced"] || 0, formOutcomes: forms.byOutcome };
  } finally {
    await stack.stop();
  }
}

/** One bench/table row. */
export function formsRow(r, users) {
  const failed = r.pageErrors.filter((e) => e.includes("the session failed")).length;
  return `| race with collected forms (the email form posted by the browser), ${users} users: ${r.variant} | ${r.duplicates} users with duplicate contacts; ${r.wrongContactViews} of ${r.viewsMade} page views on another contact, ${r.lostViews} lost; ${r.formsCollected} form submissions collected, ${r.emailsRewritten} emails rewritten by them; ${failed} sessions failed (${r.seconds.toFixed(0)} s) |`;
}
