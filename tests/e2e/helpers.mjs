// Shared helpers for the browser tests: start real servers on ports they pick, launch Debian's
// Chromium through playwright-core, serve test pages, and wait for what the simulator records.
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

/** Starts a binary that prints `NAME listening on http://HOST:PORT` first; resolves with its URL. */
export async function startServer(bin, args = [], env = {}) {
  const child = spawn(bin, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const url = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`${bin} did not say where it listens; stderr: ${stderr}`)), 30000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${bin} exited with ${code}: ${stderr}`));
    });
  });
  return {
    url,
    child,
    stderr: () => stderr,
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await once(child, "exit");
    },
  };
}

/** Which cargo build the servers come from: debug for tests; `npm run bench` sets HSQ_BIN_PROFILE=release. */
const binPath = (name) => path.join(ROOT, "target", process.env.HSQ_BIN_PROFILE || "debug", name);

/** `HSQ_SIM_IDENTIFY_ID=honoured|ignored` runs the browser tests under that simulator switch. */
export const identifyIdArgs = () => (process.env.HSQ_SIM_IDENTIFY_ID ? ["--identify-id", process.env.HSQ_SIM_IDENTIFY_ID] : []);

/** The simulator, with rate limiting off unless the test asks for it. */
export function startSim(args = []) {
  const bin = binPath("hubspot-sim");
  const hasRate = args.includes("--rate-limit");
  return startServer(bin, ["--addr", "127.0.0.1:0", "--portal-id", "1234567", "--token", "T", ...(hasRate ? [] : ["--rate-limit", "0"]), ...identifyIdArgs(), ...args]);
}

/** A tiny static server for test pages: `pages` maps a path to HTML (or a function of the URL). */
export async function servePages(pages) {
  const server = createServer((req, res) => {
    const u = new URL(req.url, "http://x");
    const page = pages[u.pathname] ?? pages["*"];
    if (page === undefined) {
      res.writeHead(404).end("not found");
      return;
    }
    const body = typeof page === "function" ? page(u) : page;
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }).end(body);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(r)) };
}

/** Headless Chromium with the flags this machine needs; each launch has a fresh temporary profile. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Collects page errors and console errors so tests can assert the page stayed clean. */
export function watchPage(page) {
  const errors = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  return errors;
}

export async function getJson(url, init) {
  const res = await fetch(url, init);
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text), headers: res.headers };
  } catch {
    return { status: res.status, body: text, headers: res.headers };
  }
}

/** Polls `fn` until it returns a truthy value (waiting for asynchronous hits, not timing them). */
export async function until(fn, what, timeoutMs = 10000, everyMs = 50) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(last)}`);
}

export async function hits(simUrl) {
  return (await getJson(`${simUrl}/__sim/hits`)).body.hits;
}

export async function contacts(simUrl) {
  return (await getJson(`${simUrl}/__sim/contacts`)).body;
}

/** Waits until the collector holds at least `n` hits and returns them. */
export function waitHits(simUrl, n) {
  return until(async () => {
    const h = await hits(simUrl);
    return h.length >= n ? h : null;
  }, `${n} hits`);
}

export const ADMIN_TOKEN = "admin-token-for-tests-0123456789";
export const ASSERTION_SECRET = "test-assertion-secret-0123456789abcdef";

/** The relay in front of `simUrl`, with a fresh SQLite file. */
export async function startRelay(simUrl, env = {}) {
  const { mkdtempSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(path.join(tmpdir(), "hsq-relay-"));
  const relay = await startServer(binPath("hsq-relay"), ["serve"], {
    HUBSPOT_ACCESS_TOKEN: "T",
    HUBSPOT_API_BASE: simUrl,
    HSQ_ADDR: "127.0.0.1:0",
    HSQ_ASSERTION_SECRETS: `k1:${ASSERTION_SECRET}`,
    HSQ_ADMIN_TOKEN: ADMIN_TOKEN,
    HSQ_DB: path.join(dir, "relay.db"),
    HSQ_RATE_LIMIT_PER_IP: "0",
    HSQ_LOG: "warn",
    ...env,
  });
  relay.db = path.join(dir, "relay.db");
  return relay;
}

/** Creates the unique id property in the simulator, as `hsq-relay init` does. */
export async function initSim(simUrl) {
  await fetch(`${simUrl}/crm/v3/properties/contacts`, {
    method: "POST",
    headers: { authorization: "Bearer T", "content-type": "application/json" },
    body: JSON.stringify({ name: "hsq_user_id", label: "App user id", type: "string", fieldType: "text", groupName: "contactinformation", hasUniqueValue: true }),
  });
}

/** An HS256 compact JWS, as the app's backend mints it (the README's Node snippet). */
export async function mintAssertion(claims, secret = ASSERTION_SECRET, kid = "k1") {
  const { createHmac } = await import("node:crypto");
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: "HS256", typ: "JWT", kid });
  const body = b64({ aud: "hsq-relay", iat: now, exp: now + 600, ...claims });
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** Tells the relay the app changed a user's email (what the app's worker does). */
export async function reportEmail(relayUrl, sub, email) {
  const r = await fetch(`${relayUrl}/v1/users/${encodeURIComponent(sub)}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ email }),
  });
  if (r.status !== 202) throw new Error(`PUT /v1/users/${sub} answered ${r.status}: ${await r.text()}`);
}

const MIME = { ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".html": "text/html; charset=utf-8", ".css": "text/css", ".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png" };

/**
 * An app origin for browser tests: `pages` (path -> HTML or function of the URL), static files
 * under `/pkg/` (the built package) and `statics` (prefix -> directory), and `/hsq/*` proxied to
 * the relay, as a real app mounts it on its own origin.
 */
export async function serveApp({ relay, pages = {}, statics = {} }) {
  const { readFile } = await import("node:fs/promises");
  const dirs = { "/pkg/": path.join(ROOT, "pkg"), ...statics };
  const requests = [];
  const server = createServer(async (req, res) => {
    try {
      const u = new URL(req.url, "http://x");
      requests.push(req.method + " " + u.pathname);
      if (u.pathname.startsWith("/hsq/")) {
        const relayUrl = typeof relay === "function" ? relay() : relay;
        const chunks = [];
        for await (const c of req) chunks.push(c);
        const target = relayUrl + u.pathname.slice(4) + u.search;
        const r = await fetch(target, { method: req.method, headers: { "content-type": req.headers["content-type"] || "application/json" }, body: chunks.length ? Buffer.concat(chunks) : undefined }).catch((e) => null);
        if (!r) {
          res.writeHead(502, { "content-type": "application/json" }).end('{"error":"bad_gateway","message":"relay unreachable"}');
          return;
        }
        res.writeHead(r.status, { "content-type": r.headers.get("content-type") || "application/json" }).end(Buffer.from(await r.arrayBuffer()));
        return;
      }
      for (const [prefix, dir] of Object.entries(dirs)) {
        if (u.pathname.startsWith(prefix)) {
          const file = path.join(dir, path.normalize(u.pathname.slice(prefix.length)).replace(/^(\.\.[/\\])+/, ""));
          const body = await readFile(file).catch(() => null);
          if (!body) break;
          res.writeHead(200, { "content-type": MIME[path.extname(file)] || "application/octet-stream", "cache-control": "no-store" }).end(body);
          return;
        }
      }
      const page = pages[u.pathname] ?? pages["*"];
      if (page === undefined) {
        res.writeHead(404).end("not found");
        return;
      }
      const body = typeof page === "function" ? await page(u) : page;
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }).end(body);
    } catch (e) {
      res.writeHead(500).end(String(e));
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, requests, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}

/** Collects page errors and unhandled rejections. */
export async function watchErrors(page) {
  const errors = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  await page.addInitScript(() => {
    window.__unhandled = [];
    addEventListener("unhandledrejection", (e) => window.__unhandled.push(String((e.reason && e.reason.message) || e.reason)));
  });
  return async () => errors.concat(await page.evaluate(() => window.__unhandled || []).catch(() => []));
}
