// The demo app: plays a customer's web app (think a Rails app with background workers) in front
// of hubspot-sim and hsq-relay. Users log in, browse (page loads and single-page route changes),
// change their email, log out. Its worker reports email changes after a configurable lag:
//   - mode "naive": the page identifies by email (`_hsq.push(["identify", {email, id}])`) and the
//     worker syncs by email, the way integrations do today (v1 update-by-email, seed doc 003);
//   - mode "hsq": the page uses hsq-identity, and the worker tells the relay (`PUT /v1/users/{sub}`).
// The email form posts by the page's script (fetch, then `refresh()`), or by the browser (a plain
// form post and a redirect: without JavaScript, or always with `formPost`, as a server-rendered
// app does). `collectForms` is passed to hsq-identity (default: its guard marks every form).
//
// Run with `node www/server.mjs --sim URL --relay URL [--port 0] [--lag-ms 0-5000]`; the first
// stdout line is `demo listening on http://HOST:PORT`. No dependencies beyond Node.
import { createServer } from "node:http";
import { createHmac, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..");

/** Options from flags (`--name value`) with the environment as fallback. */
export function parseArgs(argv, env = process.env) {
  const get = (name, envName, dflt) => {
    const i = argv.indexOf("--" + name);
    return i >= 0 ? argv[i + 1] : env[envName] ?? dflt;
  };
  const lag = String(get("lag-ms", "DEMO_LAG_MS", "0-5000")).split("-").map(Number);
  const o = {
    port: Number(get("port", "DEMO_PORT", "0")),
    sim: get("sim", "DEMO_SIM_URL", ""),
    relay: get("relay", "DEMO_RELAY_URL", ""),
    portalId: get("portal-id", "DEMO_PORTAL_ID", "1234567"),
    hubspotToken: get("hubspot-token", "HUBSPOT_ACCESS_TOKEN", "T"),
    adminToken: get("admin-token", "HSQ_ADMIN_TOKEN", ""),
    secret: get("assertion-secret", "DEMO_ASSERTION_SECRET", ""),
    kid: get("assertion-kid", "DEMO_ASSERTION_KID", "k1"),
    lagMin: lag[0],
    lagMax: lag.length > 1 ? lag[1] : lag[0],
  };
  for (const [k, v] of Object.entries({ sim: o.sim, relay: o.relay, "admin-token": o.adminToken, "assertion-secret": o.secret }))
    if (!v) throw new Error(`demo: --${k} is required`);
  if (![o.lagMin, o.lagMax].every(Number.isFinite) || o.lagMin < 0 || o.lagMax < o.lagMin) throw new Error("demo: --lag-ms must be N or MIN-MAX milliseconds");
  return o;
}

/** An HS256 compact JWS, as the README's Node snippet mints it. */
export function mintAssertion({ sub, email, firstname }, secret, kid, lifetime = 600) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: "HS256", typ: "JWT", kid });
  const body = b64({ sub, email, firstname, aud: "hsq-relay", iat: now, exp: now + lifetime });
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const DEMO_USERS = ["alice", "bob", "carol"];

export async function startDemo(o) {
  const users = new Map(); // sub -> {sub, name, email, emails: [...], mode}
  const sessions = new Map(); // sid -> sub
  const log = []; // the worker's sync log, newest last
  const pending = new Set(); // worker timers
  let relayUrl = o.relay; // one URL, or several: taken in turn, the next one when one is down
  let turn = 0;
  const relayFetch = async (pathAndQuery, init) => {
    const urls = [].concat(relayUrl);
    const first = turn++;
    for (let i = 0; i < urls.length; i++) {
      const r = await fetch(urls[(first + i) % urls.length] + pathAndQuery, init).catch(() => null);
      if (r) return r;
    }
    return null;
  };

  const ensureUser = (sub, mode, email) => {
    if (!users.has(sub)) {
      const name = sub.replace(/^[nh]-/, "");
      const e = email || `${sub}@example.com`;
      users.set(sub, { sub, name, email: e, emails: [e], mode });
    }
    return users.get(sub);
  };
  for (const n of DEMO_USERS) {
    ensureUser("n-" + n, "naive");
    ensureUser("h-" + n, "hsq");
  }

  const note = (entry) => {
    log.push({ at: Date.now(), ...entry });
    if (log.length > 500) log.shift();
  };

  /** The worker: reports the change after the lag, as the mode's integration does. */
  function syncLater(user, oldEmail, newEmail) {
    const lag = o.lagMin + Math.random() * (o.lagMax - o.lagMin);
    const t = setTimeout(async () => {
      pending.delete(t);
      try {
        if (user.mode === "hsq") {
          const r = await relayFetch(`/v1/users/${encodeURIComponent(user.sub)}`, {
            method: "PUT",
            headers: { authorization: `Bearer ${o.adminToken}`, "content-type": "application/json" },
            body: JSON.stringify({ email: newEmail }),
          });
          if (!r) throw new Error("the relay is unreachable");
          note({ sub: user.sub, mode: user.mode, call: `PUT relay /v1/users/${user.sub}`, status: r.status });
        } else {
          // What integrations do today: update the contact found by its old email (seed doc 003).
          const r = await fetch(`${o.sim}/contacts/v1/contact/email/${encodeURIComponent(oldEmail)}/profile`, {
            method: "POST",
            headers: { authorization: `Bearer ${o.hubspotToken}`, "content-type": "application/json" },
            body: JSON.stringify({ properties: [{ property: "email", value: newEmail }] }),
          });
          note({ sub: user.sub, mode: user.mode, call: `POST /contacts/v1/contact/email/${oldEmail}/profile`, status: r.status });
        }
      } catch (e) {
        note({ sub: user.sub, mode: user.mode, call: "sync", status: 0, error: String(e.message || e) });
      }
    }, lag);
    pending.add(t);
  }

  const cookie = (req, name) => (req.headers.cookie || "").split(/;\s*/).map((c) => c.split("=")).find(([k]) => k === name)?.[1];
  const userOf = (req) => users.get(sessions.get(cookie(req, "demo_sid")));
  const send = (res, status, body, type = "text/html; charset=utf-8", extra = {}) =>
    res.writeHead(status, { "content-type": type, "cache-control": "no-store", ...extra }).end(body);
  const json = (res, status, v) => send(res, status, JSON.stringify(v), "application/json");
  const body = async (req) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    return Buffer.concat(chunks).toString("utf8");
  };

  /** Joins the app's users with the simulator's contacts: which contacts each user has. */
  async function report() {
    const sim = await fetch(`${o.sim}/__sim/contacts`).then((r) => r.json());
    const out = [];
    for (const u of users.values()) {
      const mine = sim.contacts.filter(
        (c) => c.properties.hsq_user_id === u.sub || c.ids.includes(u.sub) || u.emails.includes(c.email) || c.additionalEmails.some((e) => u.emails.includes(e)),
      );
      out.push({ sub: u.sub, mode: u.mode, email: u.email, contacts: mine.map((c) => ({ id: c.id, email: c.email, pageViews: c.pageViews, ids: c.ids, source: c.properties.hs_object_source, created: c.properties.createdate })) });
    }
    return { users: out, contacts: sim.contacts.length, anonymousHits: sim.anonymousHits, log: log.slice(-40) };
  }

  const server = createServer(async (req, res) => {
    try {
      const u = new URL(req.url, "http://x");
      const p = u.pathname;
      if (p.startsWith("/hsq/")) {
        // The relay, mounted on the app's origin (same-origin: no CORS, sendBeacon works).
        const b = req.method === "GET" || req.method === "HEAD" ? undefined : await body(req);
        const r = await relayFetch(p.slice(4) + u.search, { method: req.method, headers: { "content-type": req.headers["content-type"] || "application/json" }, body: b });
        if (!r) return json(res, 502, { error: "bad_gateway", message: "the relay is unreachable" });
        return send(res, r.status, Buffer.from(await r.arrayBuffer()), r.headers.get("content-type") || "application/json");
      }
      if (p.startsWith("/pkg/") || p.startsWith("/static/")) {
        const dir = p.startsWith("/pkg/") ? path.join(ROOT, "pkg") : path.join(HERE, "static");
        const file = path.join(dir, path.basename(p));
        const data = await readFile(file).catch(() => null);
        if (!data) return send(res, 404, "not found", "text/plain");
        const type = { ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css" }[path.extname(file)] || "application/octet-stream";
        return send(res, 200, data, type);
      }
      if (p === "/login") {
        const mode = u.searchParams.get("mode") === "naive" ? "naive" : "hsq";
        const sub = u.searchParams.get("sub") || (mode === "naive" ? "n-" : "h-") + "alice";
        const user = ensureUser(sub, mode, u.searchParams.get("email"));
        const sid = randomBytes(16).toString("hex");
        sessions.set(sid, user.sub);
        return send(res, 302, "", "text/plain", { location: "/app/", "set-cookie": `demo_sid=${sid}; path=/; SameSite=Lax` });
      }
      if (p === "/logout") {
        sessions.delete(cookie(req, "demo_sid"));
        return send(res, 302, "", "text/plain", { location: "/", "set-cookie": "demo_sid=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT" });
      }
      if (p === "/api/report") return json(res, 200, await report());
      if (p === "/api/users") return json(res, 200, [...users.values()]);
      const user = userOf(req);
      if (p === "/api/assertion") {
        if (!user) return json(res, 401, { error: "unauthorized", message: "log in first" });
        return send(res, 200, mintAssertion({ sub: user.sub, email: user.email, firstname: user.name }, o.secret, o.kid), "text/plain");
      }
      // The email form: posted by the page's script as JSON (/api/email), or by the browser itself
      // as a form (/app/email, without JavaScript or with a data-post form), answered with a
      // redirect to the settings page.
      if ((p === "/api/email" || p === "/app/email") && req.method === "POST") {
        const asForm = p === "/app/email";
        const fail = (status, error, message) =>
          asForm ? send(res, status, shell("Email not changed", `<main><p>${esc(message)}</p><p><a href="/app/settings">Back to settings</a></p></main>`)) : json(res, status, { error, message });
        if (!user) return fail(401, "unauthorized", "log in first");
        const raw = await body(req);
        const given = asForm ? new URLSearchParams(raw).get("email") : JSON.parse(raw || "{}").email;
        const email = String(given || "").trim().toLowerCase();
        if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) return fail(400, "bad_request", `email ${JSON.stringify(email)} is not an email address`);
        const old = user.email;
        if (email !== old) {
          user.email = email;
          if (!user.emails.includes(email)) user.emails.push(email);
          syncLater(user, old, email); // the app's DB has the new email now; HubSpot learns later
        }
        return asForm ? send(res, 303, "", "text/plain", { location: "/app/settings" }) : json(res, 200, { email });
      }
      if (p.startsWith("/app")) {
        if (!user) return send(res, 302, "", "text/plain", { location: "/" });
        return send(res, 200, appPage(user, o));
      }
      if (p === "/") return send(res, 200, landingPage(o));
      if (p === "/favicon.ico") return send(res, 204, "", "image/x-icon");
      return send(res, 404, "not found", "text/plain");
    } catch (e) {
      json(res, 500, { error: "internal", message: String(e.message || e) });
    }
  });
  server.listen(o.port, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    users,
    /** The relay's URL, or several relays' URLs to take in turn. */
    setRelay: (u) => (relayUrl = u),
    pendingSyncs: () => pending.size,
    report,
    close: () => {
      for (const t of pending) clearTimeout(t);
      return new Promise((r) => {
        server.closeAllConnections?.();
        server.close(r);
      });
    },
  };
}

function shell(title, inner, head = "") {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="stylesheet" href="/static/style.css">${head}</head>
<body>${inner}<script src="/static/panel.js" defer></script></body></html>`;
}

function landingPage(o) {
  const col = (mode, title, blurb) => `<section class="col ${mode}"><h2>${title}</h2><p>${blurb}</p>
    ${DEMO_USERS.map((n) => `<a class="btn" href="/login?mode=${mode}&sub=${mode === "naive" ? "n-" : "h-"}${n}">Log in as ${n}</a>`).join(" ")}</section>`;
  return shell(
    "hsq-identity demo",
    `<header><h1>hsq-identity demo</h1><p>An app whose users change their email. The app's worker tells HubSpot
    ${o.lagMin === o.lagMax ? o.lagMin : `${o.lagMin}&ndash;${o.lagMax}`} ms later; meanwhile the next page identifies the visitor.
    Log in, change the email on the Settings page, keep browsing, and watch the contacts below.</p></header>
    <div class="cols">${col("naive", "Naive tracking code", "<code>_hsq.push([\"identify\", {email, id}])</code> on every page, sync by email: the new email makes a second contact.")}
    ${col("hsq", "hsq-identity", "<code>StableIdentity.start(...)</code>: identify by the stable id, send an email only once HubSpot holds it.")}</div>
    <div id="panel" data-sim="${esc(o.sim)}"></div>`,
  );
}

function appPage(user, o) {
  const tracker = `${o.sim}/${o.portalId}.js`;
  const head =
    user.mode === "naive"
      ? `<script>var _hsq = window._hsq = window._hsq || [];
_hsq.push(["identify", {email: ${JSON.stringify(user.email)}, id: ${JSON.stringify(user.sub)}}]);
window.demo = { mode: "naive",
  view(path) { _hsq.push(["setPath", path]); _hsq.push(["trackPageView"]); },
  emailChanged(email) { _hsq.push(["identify", {email: email, id: ${JSON.stringify(user.sub)}}]); },
  logout() {} };
</script><script id="hs-script-loader" async defer src="${esc(tracker)}"></script>`
      : `<script type="module">
import { StableIdentity } from "/pkg/index.js";
window.demoEvents = [];
const hs = await StableIdentity.start({
  relayUrl: "/hsq/v1/identity",
  assertion: () => fetch("/api/assertion").then((r) => r.text()),
  portalId: ${JSON.stringify(o.portalId)},
  trackerUrl: ${JSON.stringify(tracker)},
  chat: true,
  onEvent: (e) => { window.demoEvents.push(e); document.dispatchEvent(new CustomEvent("hsq", { detail: e })); },${o.collectForms ? `\n  collectForms: ${JSON.stringify(o.collectForms)},` : ""}
});
window.demo = { mode: "hsq", hs,
  view(path) { hs.trackPageView(path); },
  emailChanged() { return hs.refresh(); },
  logout() { hs.reset(); } };
document.dispatchEvent(new Event("demo-ready"));
</script>`;
  return shell(
    `${user.name} · demo app`,
    `<header><h1>Demo app <small class="mode ${user.mode}">${user.mode === "naive" ? "naive" : "hsq-identity"}</small></h1>
    <p>Logged in as <b>${esc(user.sub)}</b> &lt;<span id="email">${esc(user.email)}</span>&gt;
    · <a href="/logout" id="logout">Log out</a> · <a href="/">Home</a></p>
    <nav><a href="/app/" data-spa>Dashboard</a> <a href="/app/reports" data-spa>Reports</a> <a href="/app/billing" data-spa>Billing</a> <a href="/app/settings" data-spa>Settings</a></nav></header>
    <main><h2 id="title">Dashboard</h2>
    <form id="email-form" method="post" action="/app/email"${o.formPost ? " data-post" : ""}><label>Change your email <input name="email" type="email" value="${esc(user.email)}"></label> <button>Save</button></form>
    <ul id="events"></ul></main>
    <div id="panel" data-sim="${esc(o.sim)}"></div>
    <script src="/static/app.js" defer></script>`,
    head,
  );
}

// Run as a program.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const demo = await startDemo(parseArgs(process.argv.slice(2)));
    console.log(`demo listening on ${demo.url}`);
    const stop = () => demo.close().then(() => process.exit(0));
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  } catch (e) {
    console.error(String(e.message || e));
    process.exit(1);
  }
}
