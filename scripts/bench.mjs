// `npm run bench`: one table, every row measured in this run, on this machine.
//   - the email-change race on the demo app for N users (default 200), naive against hsq-identity:
//     users left with duplicate contacts, and page views lost or landing on another contact;
//   - the same race with HubSpot-side edits (BENCH_EDITS=0 leaves it out) and with collected
//     forms (BENCH_FORMS=0 leaves it out);
//   - the same race for hsq-identity with each tab's CPU slowed down by DevTools' throttling
//     (BENCH_THROTTLE, rates separated by commas, default 4; 0 leaves the row out);
//   - the package's gzipped size and its time to identify (scripts/bench-module.mjs);
//   - relay throughput, latency and HubSpot calls per 1,000 identity requests
//     (the relay's bench example, without its 40-second sync row unless BENCH_SYNC=1).
import { execFileSync } from "node:child_process";
import os from "node:os";
import { ROOT, launchBrowser } from "../tests/e2e/helpers.mjs";
import { startStack } from "./stack.mjs";
import { runRace, describe, throttledConcurrency } from "./race.mjs";
import { VARIANTS, runEditsRace, editsRow } from "./race-hubspot-edits.mjs";
import { VARIANTS as FORM_VARIANTS, runFormsRace, formsRow } from "./race-collected-forms.mjs";

const USERS = Number(process.env.BENCH_USERS || 200);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY || 8);
const THROTTLE = String(process.env.BENCH_THROTTLE ?? "4").split(",").map(Number).filter((n) => n > 1);
const run = (cmd, args, env = {}) =>
  execFileSync(cmd, args, { cwd: ROOT, encoding: "utf8", env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
const rowsOf = (table) => table.split("\n").filter((l) => l.startsWith("| ") && !l.startsWith("| measure"));

console.error("building (release)...");
run("bash", ["scripts/build-wasm.sh"]);
run("cargo", ["build", "--release", "--quiet", "-p", "hubspot-sim", "-p", "hsq-relay"]);

// Each row goes to stderr as soon as it is measured, so a later failure does not lose a long race.
const rows = [];
const add = (...rs) => {
  for (const r of rs) console.error(r);
  rows.push(...rs);
};
const browser = await launchBrowser();
for (const [mode, cpuThrottle] of [["naive", 1], ["hsq", 1], ...THROTTLE.map((t) => ["hsq", t])]) {
  console.error(`race: ${USERS} ${mode} users${cpuThrottle > 1 ? `, CPU ${cpuThrottle}x slower` : ""}...`);
  const stack = await startStack({ profile: "release", lagMs: "0-5000", simArgs: ["--rate-limit", "0"], relayEnv: { HSQ_LEASE_SECS: "15" } });
  try {
    // Throttled tabs spin on the CPU even while idle (race.mjs, throttledConcurrency): a throttled
    // race runs at most that many users at once, whatever BENCH_CONCURRENCY asks.
    const concurrency = cpuThrottle > 1 ? Math.min(CONCURRENCY, throttledConcurrency(cpuThrottle)) : CONCURRENCY;
    const r = await runRace({ browser, stack, mode, users: USERS, concurrency, settleMs: 180000, cpuThrottle });
    const label = (mode === "naive" ? "naive identify({email})" : "hsq-identity") + (cpuThrottle > 1 ? `, CPU ${cpuThrottle}x slower (DevTools throttling, ${concurrency} users at a time)` : "");
    const failed = r.pageErrors.filter((e) => e.includes("the session failed")).length;
    add(`| race, ${USERS} users, 0-5 s sync lag: ${label} | ${r.duplicates} users with duplicate contacts; ${r.lostViews} of ${r.viewsMade} page views lost, ${r.wrongContactViews} on another contact, ${r.extraViews} received twice; ${failed} sessions failed in the driver (${r.seconds.toFixed(0)} s, ${r.settleSeconds.toFixed(0)} s of it settling) |`);
    // hsq-identity promises every view on the user's one contact: show each that is not.
    if (mode === "hsq" && r.problems.length) console.error(describe(r));
  } finally {
    await stack.stop();
  }
}
// The race with HubSpot-side edits, four variants (BENCH_EDITS=0 skips it).
if (process.env.BENCH_EDITS !== "0") {
  for (const variant of VARIANTS) {
    console.error(`race with HubSpot-side edits: ${USERS} users, ${variant}...`);
    const r = await runEditsRace({ browser, variant, users: USERS, concurrency: CONCURRENCY, profile: "release", settleMs: 180000 });
    add(editsRow(r, USERS));
  }
}
// The race with collected forms, three variants (BENCH_FORMS=0 skips it).
if (process.env.BENCH_FORMS !== "0") {
  for (const variant of FORM_VARIANTS) {
    console.error(`race with collected forms: ${USERS} users, ${variant}...`);
    const r = await runFormsRace({ browser, variant, users: USERS, concurrency: CONCURRENCY, profile: "release", settleMs: 180000 });
    add(formsRow(r, USERS));
  }
}
await browser.close();
console.error("module...");
add(...rowsOf(run("node", ["scripts/bench-module.mjs"], { HSQ_BIN_PROFILE: "release" })));
console.error("relay...");
add(...rowsOf(run("cargo", ["run", "--release", "--quiet", "-p", "hsq-relay", "--example", "bench", "--", ...(process.env.BENCH_SYNC ? [] : ["--skip-sync"])])));
// The ceiling, SQLite, PostgreSQL with one and two relays (BENCH_MILLION=1 adds the 1M-request row).
console.error("relay scale...");
add(...rowsOf(run("cargo", ["run", "--release", "--quiet", "-p", "hsq-relay", "--example", "bench_scale", "--", ...(process.env.BENCH_MILLION ? ["--million"] : [])])));

const cpu = os.cpus()[0]?.model?.trim() || "unknown CPU";
console.log(`Measured ${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} cores (${cpu}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()}:\n`);
console.log("| measure | value |\n|---|---|");
for (const r of rows) console.log(r);
