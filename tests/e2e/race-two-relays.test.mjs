// The race on the demo app with two relays sharing one PostgreSQL: the demo takes them in turn
// (pages' identity calls, lease releases and the worker's PUTs), and midway one relay is
// SIGKILLed. Nothing it accepted is lost: every change reaches HubSpot through the other relay,
// each user keeps one contact with the new email, and every view lands on it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser } from "./helpers.mjs";
import { startStack } from "../../scripts/stack.mjs";
import { runRace, assertEveryViewOnOneContact } from "../../scripts/race.mjs";

const USERS = Number(process.env.RACE_USERS || 20);
let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test(`two relays on one PostgreSQL, one SIGKILLed midway: one contact per user, every view on it, for ${USERS} users`, async () => {
  // A short lease and a quick outbox poll, so changes the killed relay accepted go through the
  // other relay within the test (its claims run out after HSQ_OUTBOX_CLAIM_SECS).
  const stack = await startStack({
    relays: 2,
    lagMs: "0-5000",
    simArgs: ["--rate-limit", "0"],
    relayEnv: { HSQ_LEASE_SECS: "20", HSQ_OUTBOX_POLL_MS: "200", HSQ_OUTBOX_CLAIM_SECS: "5" },
  });
  try {
    let killed = null;
    let servedBeforeKill = 0;
    const midway = async () => {
      killed = stack.relays[1].url;
      // What the relay about to die had answered: the demo really split the load.
      const metrics = await (await fetch(`${killed}/metrics`)).text();
      servedBeforeKill = metrics.split("\n").filter((l) => l.startsWith("hsq_requests_total{route=\"/v1/identity\"")).reduce((n, l) => n + Number(l.split(" ").pop()), 0);
      await stack.killRelay(1, "SIGKILL");
    };
    const r = await runRace({ browser, stack, mode: "hsq", users: USERS, midway });
    assert.ok(killed, "a relay was killed midway");
    assert.ok(servedBeforeKill > 0, "the killed relay had answered pages");
    assertEveryViewOnOneContact(r);
    // Both relays answered: the worker's PUTs were accepted by each before the kill.
    const puts = (await stack.demo.report()).log.filter((l) => l.call?.startsWith("PUT relay"));
    assert.ok(puts.length >= USERS && puts.every((l) => l.status === 202), JSON.stringify(puts.filter((l) => l.status !== 202)));
  } finally {
    await stack.stop();
  }
});
