// `npm start`: builds the servers and runs the demo stack on free local ports, no account needed.
// Ctrl-C stops everything it started.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { startServer, ROOT } from "../tests/e2e/helpers.mjs";

const bin = (name) => path.join(ROOT, "target", "release", name);
console.log("Building the simulator (release)...");
execFileSync("cargo", ["build", "--release", "--quiet", "-p", "hubspot-sim"], { cwd: ROOT, stdio: "inherit" });

const started = [];
async function stopAll() {
  for (const s of started.reverse()) await s.stop().catch(() => {});
}
process.on("SIGINT", () => stopAll().then(() => process.exit(0)));
process.on("SIGTERM", () => stopAll().then(() => process.exit(0)));

try {
  const sim = await startServer(bin("hubspot-sim"), ["--addr", "127.0.0.1:0", "--portal-id", "1234567", "--token", "pat-na1-demo", "--rate-limit", "190"]);
  started.push(sim);
  console.log(`\nhubspot-sim (offline HubSpot) listening on ${sim.url}`);
  console.log(`  tracker script:  ${sim.url}/1234567.js`);
  console.log(`  contacts:        ${sim.url}/__sim/contacts`);
  console.log(`  API token:       pat-na1-demo`);
  console.log("\nPress Ctrl-C to stop.");
  sim.child.on("exit", (code) => {
    console.error(`hubspot-sim stopped (${code}); stopping everything`);
    stopAll().then(() => process.exit(1));
  });
} catch (e) {
  console.error(String(e.stack || e));
  await stopAll();
  process.exit(1);
}
