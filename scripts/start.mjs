// `npm start`: builds what it needs and runs the demo on hubspot-sim, no account and no
// configuration. Ctrl-C stops everything it started.
import { execFileSync } from "node:child_process";
import { ROOT } from "../tests/e2e/helpers.mjs";
import { startStack } from "./stack.mjs";

console.log("Building the package and the servers (release; the first time takes a few minutes)...");
execFileSync("bash", ["scripts/build-wasm.sh"], { cwd: ROOT, stdio: "inherit" });
execFileSync("cargo", ["build", "--release", "--quiet", "-p", "hubspot-sim", "-p", "hsq-relay"], { cwd: ROOT, stdio: "inherit" });

const stack = await startStack({ profile: "release", simArgs: ["--rate-limit", "190"], relayEnv: { HSQ_LEASE_SECS: "120" } });
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await stack.stop().catch(() => {});
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
for (const s of [stack.sim, stack.relay]) s.child.on("exit", () => !stopping && (console.error("a server stopped; stopping the demo"), stop()));

console.log(`
  Demo:          ${stack.demo.url}
  hubspot-sim:   ${stack.sim.url}   (contacts: ${stack.sim.url}/__sim/contacts)
  hsq-relay:     ${stack.relay.url}   (mounted in the demo at /hsq/)

Open the demo, log in on both sides, change the email on Settings and keep browsing.
Press Ctrl-C to stop.`);
