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

/** The simulator (debug build), with rate limiting off unless the test asks for it. */
export function startSim(args = []) {
  const bin = path.join(ROOT, "target", "debug", "hubspot-sim");
  const hasRate = args.includes("--rate-limit");
  return startServer(bin, ["--addr", "127.0.0.1:0", "--portal-id", "1234567", "--token", "T", ...(hasRate ? [] : ["--rate-limit", "0"]), ...args]);
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
export async function until(fn, what, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
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
