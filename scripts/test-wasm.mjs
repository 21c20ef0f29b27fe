// `node scripts/test-wasm.mjs`: the wasm-bindgen-test suites (tests/web.rs, tests/relay.rs) in
// headless Chromium through chromedriver, against a real simulator and relay started here. The
// relay allows the test page's origin (the runner listens on a port picked here); a small config
// server tells the tests, by a URL compiled in as HSQ_TEST_CONFIG, where the relay is, a freshly
// minted assertion, and endpoints that answer garbage, an error, slowly, or not at all.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { createServer as createHttp } from "node:http";
import { once } from "node:events";
import { ROOT, startSim, startRelay, initSim, mintAssertion } from "../tests/e2e/helpers.mjs";

async function freePort() {
  const s = createServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

const cors = { "access-control-allow-origin": "*", "access-control-allow-headers": "content-type", "access-control-allow-methods": "GET, POST, DELETE" };

const runnerPort = await freePort();
const origin = `http://127.0.0.1:${runnerPort}`;
const sim = await startSim();
await initSim(sim.url);
const relay = await startRelay(sim.url, { HSQ_ALLOWED_ORIGINS: origin });
let n = 0;
const config = createHttp(async (req, res) => {
  const u = new URL(req.url, "http://x");
  if (req.method === "OPTIONS") return res.writeHead(204, cors).end();
  if (u.pathname === "/config") {
    // A fresh user per call: each test starts from an unknown user.
    const sub = `w_${process.pid}_${++n}`, email = `${sub}@wasm.test`;
    const base = `http://127.0.0.1:${config.address().port}`;
    const body = {
      relay: `${relay.url}/v1/identity`,
      assertion: await mintAssertion({ sub, email }),
      sub,
      email,
      garbage: `${base}/garbage`,
      error: `${base}/error`,
      slow: `${base}/slow`,
      down: `http://127.0.0.1:${await freePort()}/v1/identity`,
    };
    return res.writeHead(200, { ...cors, "content-type": "application/json" }).end(JSON.stringify(body));
  }
  if (u.pathname === "/garbage") return res.writeHead(200, { ...cors, "content-type": "application/json" }).end("not json at all");
  if (u.pathname === "/error")
    return res.writeHead(503, { ...cors, "content-type": "application/json" }).end('{"error":"hubspot_unavailable","message":"HubSpot is down"}');
  if (u.pathname === "/slow") {
    await new Promise((r) => setTimeout(r, 3000));
    return res.writeHead(200, { ...cors, "content-type": "application/json" }).end("{}");
  }
  res.writeHead(404, cors).end();
});
config.listen(0, "127.0.0.1");
await once(config, "listening");

let code = 1;
try {
  const child = spawn(
    "cargo",
    ["test", "--target", "wasm32-unknown-unknown", "-p", "hsq-identity", "--test", "web", "--test", "relay"],
    {
      cwd: ROOT,
      stdio: "inherit",
      env: {
        ...process.env,
        CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER: "wasm-bindgen-test-runner",
        CHROMEDRIVER: process.env.CHROMEDRIVER || "/usr/bin/chromedriver",
        WASM_BINDGEN_TEST_ADDRESS: `127.0.0.1:${runnerPort}`,
        WASM_BINDGEN_TEST_TIMEOUT: "120",
        HSQ_TEST_CONFIG: `http://127.0.0.1:${config.address().port}/config`,
      },
    },
  );
  [code] = await once(child, "exit");
} finally {
  config.closeAllConnections?.();
  config.close();
  await relay.stop();
  await sim.stop();
}
process.exit(code ?? 1);
