// The race with HubSpot-side edits (issue 17): the email-change race of scripts/race.mjs, plus a
// marketer who, during the run, edits every second user's email directly in HubSpot and merges a
// lead into every fourth user's contact. Variants: naive page code; hsq-identity with neither
// webhooks nor reconciliation; with reconciliation only (every 2 s); with webhooks (the
// simulator's signed deliveries to the relay). Each run also traces the contacts HubSpot's tracker
// made from the users' hits: duplicates made, and (in the row) users with duplicates left once the
// relay's repair has run. Used by tests/e2e/race-hubspot-edits.test.mjs and `npm run bench`
// (BENCH_EDITS=1).
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

/** Runs one variant; answers runRace's result plus the variant, the webhook log's counts and
 * the duplicates the tracker made (`made`, see `trackerDuplicates`). */
export async function runEditsRace({ browser, variant, users, concurrency = 4, profile = "debug", settleMs = 60000, userSettleMs = 15000 }) {
  const stack = await editsStack(variant, { profile });
  try {
    const mode = variant === "naive" ? "naive" : "hsq";
    const r = await runRace({ browser, stack, mode, users, concurrency, settleMs, userSettleMs, hubspotEdits: true });
    const hooks = await fetch(`${stack.sim.url}/__sim/webhooks`).then((x) => x.json());
    const made = await trackerDuplicates(stack, r, mode);
    return { ...r, variant, webhooksDelivered: hooks.delivered, made };
  } finally {
    await stack.stop();
  }
}

// A hit is paired with the lease it was sent under within this slack (the relay's repair.rs MARGIN_MS).
const LEASE_SLACK_MS = 30000;

/**
 * The contacts HubSpot's tracker made from each user's hits (the collector's `createdContact`,
 * which merges do not move), each with its trace: the hit that made it, the email it carried, the
 * page that sent it, whether the relay had leased that email to the user then and under which
 * lease (the relay's GET /v1/users/{sub}), and what the relay's repair did with it. With
 * hsq-identity every such contact is a duplicate (the relay makes the user's contact); with naive
 * page code the first one is the user's contact. Answers {created, users, traces}.
 */
export async function trackerDuplicates(stack, r, mode) {
  const t = (at) => `+${((at - r.trace.started) / 1000).toFixed(2)} s`;
  const hits = (await fetch(`${stack.sim.url}/__sim/hits`).then((x) => x.json())).hits;
  const fires = r.trace.page.filter((x) => x.ev === "fire");
  let created = 0, users = 0;
  const traces = [];
  for (const u of r.users) {
    const utks = new Set(fires.filter((f) => f.sub === u.sub).map((f) => f.utk).filter(Boolean));
    const makers = hits.filter((h) => h.createdContact !== null && h.createdContact !== undefined && ((h.identity && h.identity.id === u.sub) || utks.has(h.utk)));
    const dups = mode === "naive" ? makers.slice(1) : makers;
    if (!dups.length) continue;
    created += dups.length;
    users++;
    let view = null;
    if (mode === "hsq") {
      const res = await fetch(`${stack.relay.url}/v1/users/${encodeURIComponent(u.sub)}`, { headers: { authorization: `Bearer ${stack.admin}` } });
      if (res.ok) view = await res.json();
    }
    for (const h of dups) {
      const email = h.identity?.email || "-";
      // The page's last fire of this path for this browser before the collector stamped the hit.
      const path = (f) => f.po || new URL(f.pu, "http://x").pathname;
      const page = fires.filter((f) => f.sub === u.sub && f.utk === h.utk && path(f) === h.path && f.at <= h.at + 100).sort((a, b) => b.at - a.at)[0];
      // The lease that covered the hit, else one within the slack.
      const on = view?.leases.filter((l) => l.email === email) || [];
      const lease = on.find((l) => l.issuedAt <= h.at && h.at <= l.expiresAt) || on.find((l) => l.issuedAt - LEASE_SLACK_MS <= h.at && h.at <= l.expiresAt + LEASE_SLACK_MS);
      const repair = view?.repairs.find((x) => x.duplicateId === String(h.createdContact));
      traces.push(
        [
          `${u.sub}: contact ${h.createdContact} made by hit #${h.seq} at ${t(h.at)}, ${h.kind} ${h.path}, carrying email ${email}, utk ${(h.utk || "none").slice(0, 8)}`,
          `  sent by ${page ? `tab ${page.tab}, page ${page.doc} ${page.loc}, fired at ${t(page.at)}` : "no traced page"}`,
          `  ${mode === "naive" ? "naive page code: no lease" : lease ? `leased to ${u.sub} then: ${lease.id} (issued ${t(lease.issuedAt)}, ends ${t(lease.expiresAt)}${lease.released ? ", ended early" : ""})` : `not leased to ${u.sub} then (${view ? view.leases.filter((l) => l.email === email).length + " leases on it kept" : "no relay view"})`}`,
          `  ${mode === "naive" ? "" : repair ? `relay: ${repair.state}${repair.survivorId ? " into " + repair.survivorId : ""}${repair.lastError ? " (" + repair.lastError + ")" : ""}` : "relay: no repair recorded"}`,
        ]
          .filter((l) => l.trim())
          .join("\n"),
      );
    }
  }
  return { created, users, traces };
}

/** What the tracker's duplicates came to, made and left, each with its trace. */
export function describeDuplicates(r) {
  return [`${r.made.created} duplicate contacts made for ${r.made.users} users; ${r.duplicates} users with duplicates left`, ...r.made.traces].join("\n");
}

/** One bench/table row. */
export function editsRow(r, users) {
  const failed = r.pageErrors.filter((e) => e.includes("the session failed")).length;
  return `| race with HubSpot-side edits (${r.hubspotEdits.edit} emails edited, ${r.hubspotEdits.merge} merged), ${users} users: ${r.variant} | duplicates made for ${r.made.users} users (${r.made.created} contacts), left for ${r.duplicates} users; ${r.wrongContactViews} of ${r.viewsMade} page views on another contact, ${r.lostViews} lost; ${failed} sessions failed (${r.seconds.toFixed(0)} s) |`;
}
