// The demo stack: hubspot-sim, hsq-relay and the demo app on free local ports. Used by
// `npm start`, the end-to-end tests and `npm run bench`.
import path from "node:path";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { ROOT, startServer, identifyIdArgs } from "../tests/e2e/helpers.mjs";
import { startDemo } from "../www/server.mjs";
import { startPostgres } from "./pg.mjs";

/**
 * `profile`: "debug" (tests) or "release" (npm start, bench). `lagMs`: the worker's sync lag,
 * "N" or "MIN-MAX". Secrets are made up per run. `relays: 2` starts two relays on one temporary
 * PostgreSQL, and the demo takes them in turn (`killRelay(i)` takes one away). `demo`: more of
 * the demo's options (`formPost`, `collectForms`).
 */
export async function startStack({ profile = "debug", simArgs = [], relayEnv = {}, lagMs = "0-5000", portalId = "1234567", relays: relayCount = 1, demo: demoOptions = {} } = {}) {
  const bin = (name) => path.join(ROOT, "target", profile, name);
  const token = "pat-na1-demo-" + randomBytes(8).toString("hex");
  const admin = "demo-admin-" + randomBytes(16).toString("hex");
  const secret = randomBytes(32).toString("hex");
  const dir = mkdtempSync(path.join(tmpdir(), "hsq-demo-"));
  const started = [];
  try {
    const sim = await startServer(bin("hubspot-sim"), ["--addr", "127.0.0.1:0", "--portal-id", portalId, "--token", token, ...identifyIdArgs(), ...simArgs]);
    started.push(sim);
    // `hsq-relay init` against the simulator: the unique contact property.
    execFileSync(bin("hsq-relay"), ["init"], { env: { ...process.env, HUBSPOT_ACCESS_TOKEN: token, HUBSPOT_API_BASE: sim.url }, stdio: "ignore" });
    const relayEnvAll = {
      HUBSPOT_ACCESS_TOKEN: token,
      HUBSPOT_API_BASE: sim.url,
      HSQ_ADDR: "127.0.0.1:0",
      HSQ_ASSERTION_SECRETS: `k1:${secret}`,
      HSQ_ADMIN_TOKEN: admin,
      HSQ_DB: path.join(dir, "relay.db"),
      HSQ_RATE_LIMIT_PER_IP: "0",
      HSQ_CHAT: "true",
      HSQ_LOG: "hsq_relay=warn",
      ...relayEnv,
    };
    let pg = null;
    if (relayCount > 1) {
      pg = await startPostgres();
      started.push({ stop: async () => pg.stop() });
      relayEnvAll.HSQ_DB = pg.url;
    }
    const startRelay = () => startServer(bin("hsq-relay"), ["serve"], relayEnvAll);
    let relay = await startRelay();
    started.push(relay);
    const others = [];
    for (let i = 1; i < relayCount; i++) {
      others.push(await startRelay());
      started.push(others.at(-1));
    }
    const demo = await startDemo({
      port: 0, sim: sim.url, relay: relayCount > 1 ? [relay.url, ...others.map((r) => r.url)] : relay.url, portalId, hubspotToken: token, adminToken: admin, secret, kid: "k1",
      lagMin: Number(String(lagMs).split("-")[0]), lagMax: Number(String(lagMs).split("-").pop()),
      ...demoOptions,
    });
    return {
      sim, demo, token, admin, secret, dir,
      get relay() {
        return relay;
      },
      /** Every relay, the first being `relay`. */
      get relays() {
        return [relay, ...others];
      },
      /** Stops relay `i` (SIGKILL by default); the demo goes on with the others. */
      async killRelay(i, signal = "SIGKILL") {
        const all = [relay, ...others];
        await all[i].stop(signal);
        demo.setRelay(all.filter((_, j) => j !== i).map((r) => r.url));
      },
      /** Stops the relay (SIGKILL or SIGTERM) and starts it again on the same database. */
      async restartRelay(signal = "SIGKILL") {
        await relay.stop(signal);
        relay = await startRelay();
        demo.setRelay(relay.url);
        return relay;
      },
      async stop() {
        await demo.close();
        for (const r of [relay, ...others]) await r.stop();
        await sim.stop();
        pg?.stop();
      },
    };
  } catch (e) {
    for (const s of started.reverse()) await s.stop().catch(() => {});
    throw e;
  }
}
