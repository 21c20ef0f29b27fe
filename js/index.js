// hsq-identity: the npm entry and the web shell. It reads and writes the page (`_hsq`, cookies,
// storage, fetch, tracker and chat loading); every decision comes from the Rust core compiled to
// wasm (src/core, through src/wasm.rs). Nothing here throws into the page from a queue callback
// or leaves a promise rejection unhandled.
import init, { call } from "./hsq_identity.js";

const F = "\x1f", R = "\x1e", P = "\x1d"; // the core's field, record and part separators
const CACHE_KEY = "hsq-identity:ticket";
const HELD_KEY = "hsq-identity:held"; // entries still held when a page went away, for the next page
const HELD_MAX = 1000; // held entries beyond this drop oldest first
const HOLD_MARGIN = 5000; // as the core's HOLD_MARGIN_MS
const RELEASE_GRACE = 10000; // a lease given back on page hide lives this long at the relay (at least)
const LEAVE_WAIT = 10000; // after beforeunload, held entries stay held this long if the page stays
const HUBSPOT_COOKIES = ["hubspotutk", "__hstc", "__hssc", "__hssrc"];

let ready = null;

/** Fetches and compiles the wasm (streaming when served as application/wasm). `start` calls it. */
export function preload() {
  ready = ready || init({ module_or_path: new URL("./hsq_identity_bg.wasm", import.meta.url) });
  return ready;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const quiet = (fn) => {
  try {
    return fn();
  } catch (_) {
    return undefined;
  }
};

function readCookie(name) {
  return quiet(() => {
    for (const part of document.cookie ? document.cookie.split("; ") : []) {
      const eq = part.indexOf("=");
      if (part.slice(0, eq) === name) return decodeURIComponent(part.slice(eq + 1));
    }
    return null;
  }) ?? null;
}

/** Deletes HubSpot's tracking cookies on this host and each parent domain they may be set on. */
function deleteHubSpotCookies() {
  quiet(() => {
    const labels = location.hostname.split(".");
    const domains = [""];
    for (let i = 0; i < labels.length - 1; i++) domains.push("; domain=." + labels.slice(i).join("."));
    for (const name of HUBSPOT_COOKIES)
      for (const d of domains) document.cookie = name + "=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT" + d;
  });
}

const store = (kind) => (kind === "local" ? localStorage : sessionStorage);

function metaContent(name) {
  return quiet(() => document.querySelector('meta[name="' + name + '"]')?.getAttribute("content")) ?? null;
}

/** POST JSON with a timeout. Resolves {status, body} or {error}; never rejects. */
async function postJson(url, body, timeoutMs) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body, credentials: "same-origin", signal: ctl.signal });
    const text = await res.text();
    return { status: res.status, body: quiet(() => JSON.parse(text)) ?? null };
  } catch (e) {
    return { error: e && e.name === "AbortError" ? "the relay did not answer in " + timeoutMs + " ms" : String((e && e.message) || e) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Sits on `_hsq.push`. Every entry goes through `filter`, which answers the entry to pass on (maybe
 * rewritten) or undefined to hold it. `push` is an accessor, so when the tracker assigns its own
 * dispatcher on load, the accessor keeps that and goes on filtering. Entries queued before the hook
 * have not run yet, so they are filtered too. Answers `send`, which passes the filter by.
 */
function hookQueue(filter) {
  const q = Array.isArray(window._hsq) ? window._hsq : (window._hsq = []);
  let inner = Object.prototype.hasOwnProperty.call(q, "push") && typeof q.push === "function" ? q.push : null;
  const send = (e) => quiet(() => (inner ? inner.call(q, e) : Array.prototype.push.call(q, e)));
  const push = function () {
    for (let i = 0; i < arguments.length; i++) {
      const out = quiet(() => filter(arguments[i]));
      if (out !== undefined) send(out);
    }
    return q.length;
  };
  Object.defineProperty(q, "push", { configurable: true, get: () => push, set: (v) => { if (v !== push) inner = v; } });
  for (const e of Array.prototype.splice.call(q, 0, q.length)) push(e);
  return send;
}

/** Whether a `_hsq` entry sends a hit. */
const isHit = (e) => Array.isArray(e) && (e[0] === "trackPageView" || e[0] === "trackCustomBehavioralEvent" || e[0] === "trackEvent");

function kindOf(v) {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

/** `sub` and `email` from an assertion's payload (unverified: the relay verifies). */
function claims(token) {
  return quiet(() => {
    const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const p = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))));
    return typeof p.sub === "string" && typeof p.email === "string" ? { sub: p.sub, email: p.email.trim().toLowerCase() } : null;
  }) ?? null;
}

function decodeEvent(s) {
  const p = s.split(P);
  if (p[0] === "identified")
    return p[1] === "confirmed" ? { type: "identified", state: "confirmed", email: p[2], cached: p[3] === "1" } : { type: p[1], state: p[1] };
  return p[0] === "relay-error" ? { type: "relay-error", message: p[1] } : { type: p[0] };
}

function decodePlan(s) {
  const f = s.split(F);
  return {
    identify: f[0],
    resetVisitor: !!f[1],
    releaseHeld: !!f[2],
    renewAt: f[3] ? +f[3] : null,
    pollIn: f[4] ? +f[4] : null,
    releaseLease: f[5] || null,
    rotateUtk: !!f[6],
    chatEmail: f[7] || null,
    chatToken: f[8] || null,
    events: f[9] ? f[9].split(R).map(decodeEvent) : [],
  };
}

/** One call of the wasm core: fields in, text out (src/core/wire.rs lists the calls). Strings lose
 * the separators; numbers go as whole ms, anything else as empty ("none"). */
function run(fields) {
  const out = call(fields.map((v) => (typeof v === "string" ? v.replace(/[\x1d-\x1f]/g, "") : typeof v === "number" && v >= 0 && v < 1e15 ? Math.round(v) : v === true ? "1" : "")).join(F));
  if (out[0] === "!") throw new Error(out.slice(1));
  return out;
}

/** One page's identity state machine in the core, behind its handle. Plans come back encoded. */
class Core {
  constructor(sub, email) {
    this.h = +run(["n", sub, email]);
  }
  /** Everything the shell reads of a session at `now`, in one call. */
  state(now = Date.now()) {
    const [holding, email, leaseId, until, sub] = run(["q", this.h, now]).split(F);
    return { holding: !!holding, safeEmail: email || null, leaseId: leaseId || null, leaseUntil: +(until || NaN), sub };
  }
  sub = () => this.state().sub;
  holding = (now) => this.state(now).holding;
  leaseId = () => this.state().leaseId;
  leaseUntil = () => this.state().leaseUntil;
  begin = (...a) => run(["b", this.h, ...a]);
  ticket = (...a) => run(["t", this.h, ...a]);
  error = (why, now) => run(["e", this.h, why, now]);
  tick = (now) => run(["k", this.h, now]);
  refresh = (sub, email) => run(["r", this.h, sub, email]);
  hide = () => run(["p", this.h]);
  reset = () => run(["z", this.h]);
  free = () => run(["x", this.h]);
}

const num = (n) => (typeof n === "number" ? n : NaN);
const str = (s) => (typeof s === "string" ? s : undefined);

/** Identify this page's visitor to HubSpot by a stable id, never racing an email change. */
export class StableIdentity {
  /** Starts identifying the page's visitor. Rejects only for bad options, naming the option. */
  static async start(options) {
    if (!options || typeof options !== "object" || Array.isArray(options))
      throw new TypeError("hsq-identity: StableIdentity.start(options) needs an options object");
    try {
      await preload();
    } catch (e) {
      ready = null;
      throw new Error("hsq-identity: cannot load its WebAssembly: " + ((e && e.message) || e));
    }
    const spec = Object.keys(options)
      .map((k) => {
        const v = options[k], kind = kindOf(v);
        return k + F + kind + F + (kind === "string" || kind === "number" || kind === "boolean" ? String(v) : "");
      })
      .join(R);
    const meta = metaContent("hsq-assertion");
    const out = call("o" + F + (meta !== null ? "1" : "") + F + spec);
    if (out[0] === "!") throw new TypeError(out.slice(1));
    const hs = new StableIdentity(Object.fromEntries(out.split(R).map((r) => r.split(F))), options, meta);
    const token = await hs.#token().catch((e) => {
      throw new TypeError("hsq-identity: option `assertion`: " + e.message);
    });
    const c = claims(token);
    if (!c) throw new TypeError("hsq-identity: option `assertion`: its payload has no sub and email claims");
    hs.#core = new Core(c.sub, c.email);
    hs.#send = hookQueue((e) => hs.#filter(e));
    hs.#restoreHeld();
    addEventListener("pagehide", () => quiet(() => hs.#hide()));
    addEventListener("pageshow", (e) => quiet(() => e.persisted && hs.#back()));
    if (hs.#o.chat === "true") chatSettings(null, null);
    if (hs.#o.consent === "granted") await hs.#begin(true);
    else {
      // Nothing is identified or asked before analytics consent. HubSpot's tracker asks for
      // consent, so it may load at once.
      const listener = (c) =>
        quiet(() => {
          const analytics = !!(c && ((c.categories && c.categories.analytics) || c.allowed));
          hs.#emit([{ type: "consent", analytics }]);
          if (analytics && !hs.#consented) hs.#begin(false).catch(() => {});
        });
      quiet(() => (window._hsp = window._hsp || []).push(["addPrivacyConsentListener", listener]));
      hs.#insertTracker();
    }
    return hs;
  }

  #o; #onEvent; #assertionFn; #tokenValue; #core = null; #send = () => {};
  #ticket = null; #held = []; #asking = false; #again = false; #askTimer = 0; #tickTimer = 0;
  #trackerInserted = false; #chatAs = undefined; #consented = false; #restored = [];
  #pins = new WeakSet(); #pathSent = false;
  #settling = true; // until consent and the relay's first answer (or the timeout)
  #lastHit = 0; #flushTimer = 0;
  // From beforeunload (a navigation away has begun) until the page is hidden: held entries stay
  // held, for the next page. A hit the tracker fires now would be cancelled with the page.
  #leaving = false; #leaveTimer = 0; #onLeave = () => quiet(() => this.#leave());

  constructor(o, options, meta) {
    this.#o = o;
    this.#onEvent = typeof options.onEvent === "function" ? options.onEvent : null;
    this.#assertionFn = typeof options.assertion === "function" ? options.assertion : null;
    this.#tokenValue = o.assertion === "token" ? options.assertion : o.assertion === "meta" ? meta : "";
  }

  /** The current ticket (a copy), or null. */
  get identity() {
    if (!this.#ticket) return null;
    const { leaseUntilLocal, ...t } = this.#ticket;
    return JSON.parse(JSON.stringify(t));
  }

  /** `setPath(path)` (when given) then `trackPageView`, for single-page apps. */
  trackPageView(path) {
    if (path !== undefined && (typeof path !== "string" || path[0] !== "/"))
      throw new TypeError("hsq-identity: trackPageView(path): path must be a string starting with / or left out");
    if (path !== undefined) this.#push(["setPath", path]);
    this.#push(["trackPageView"]);
  }

  /** `trackCustomBehavioralEvent({name, properties})`. */
  track(name, properties) {
    if (typeof name !== "string" || !name) throw new TypeError("hsq-identity: track(name, properties): name must be a non-empty string");
    if (properties !== undefined && kindOf(properties) !== "object")
      throw new TypeError("hsq-identity: track(name, properties): properties must be an object or left out");
    this.#push(["trackCustomBehavioralEvent", { name, properties: properties || {} }]);
  }

  /** After the app changed the user's email, or a new login. Resolves with the new ticket, or
   * null when the relay has not answered in `timeoutMs` (it keeps trying). */
  async refresh(assertion) {
    if (assertion !== undefined && !(typeof assertion === "string" && assertion.split(".").length === 3))
      throw new TypeError("hsq-identity: refresh(assertion): expected a compact JWS string, or nothing to ask the assertion function");
    if (assertion !== undefined) this.#tokenValue = assertion;
    const c = claims(await this.#token());
    if (!c) throw new TypeError("hsq-identity: refresh(assertion): its payload has no sub and email claims");
    if (!this.#core) {
      this.#core = new Core(c.sub, c.email);
      await this.#begin(true);
      return this.identity;
    }
    if (c.sub !== this.#core.sub()) this.#ticket = null;
    this.#apply(this.#core.refresh(c.sub, c.email));
    await Promise.race([this.#ask(), sleep(+this.#o.timeoutMs)]);
    return this.identity;
  }

  /** Logout: forgets the ticket, gives the lease back, clears the tracker's visitor and HubSpot's
   * cookies, and resets the chat widget. */
  reset() {
    if (this.#core) {
      this.#apply(this.#core.reset());
      this.#core.free();
      this.#core = null;
    }
    clearTimeout(this.#askTimer);
    clearTimeout(this.#tickTimer);
    this.#ticket = null;
    this.#cache(null);
    deleteHubSpotCookies();
    // Held hits waited for an email; the visitor is reset, so they go without one.
    this.#flush();
    if (this.#chatAs !== undefined) {
      this.#chatAs = undefined;
      withChat((api) => api.clear({ resetWidget: true }));
    }
    this.#emit([{ type: "reset" }]);
  }

  /** Entries a previous page of this tab still held when it went away go through the filter again
   * (held here too while this page must hold, else sent now). */
  #restoreHeld() {
    if (this.#o.storage === "none") return;
    const kept = quiet(() => JSON.parse(store(this.#o.storage).getItem(HELD_KEY)));
    quiet(() => store(this.#o.storage).removeItem(HELD_KEY));
    if (Array.isArray(kept)) this.#restored = kept;
    this.#watchLeave();
  }

  /** Listens for beforeunload only while entries are held (the listener costs Firefox's
   * back-forward cache, so it is not kept for nothing). */
  #watchLeave() {
    const want = this.#held.length > 0 || this.#restored.length > 0;
    quiet(() => (want ? addEventListener : removeEventListener)("beforeunload", this.#onLeave));
  }

  /** A navigation away has begun: what is held now stays held, and goes to the next page at page
   * hide. Released now, the tracker's image request would die with this page (the 100-user race
   * lost a view that way). If the page stays after all (a download, a cancelled navigation), the
   * entries go after LEAVE_WAIT. */
  #leave() {
    this.#leaving = true;
    clearTimeout(this.#leaveTimer);
    this.#leaveTimer = setTimeout(() => {
      this.#leaving = false;
      this.#flush();
    }, LEAVE_WAIT);
  }

  /** Back from the back-forward cache: what this page handed over at page hide and no next page
   * took is this page's again (a page that took it sent it); hits wait for a new lease. */
  #back() {
    this.#leaving = false;
    clearTimeout(this.#leaveTimer);
    if (this.#o.storage !== "none") {
      const kept = quiet(() => JSON.parse(store(this.#o.storage).getItem(HELD_KEY)));
      quiet(() => store(this.#o.storage).removeItem(HELD_KEY));
      if (Array.isArray(kept)) this.#held = kept.concat(this.#held);
    }
    this.#watchLeave();
    this.#tick();
    this.#flush();
  }

  async #token() {
    if (!this.#assertionFn) return this.#tokenValue;
    let t;
    try {
      t = await this.#assertionFn();
    } catch (e) {
      throw new Error("the assertion function failed: " + ((e && e.message) || e));
    }
    if (typeof t !== "string" || t.split(".").length !== 3) throw new Error("the assertion function must return a compact JWS string");
    return (this.#tokenValue = t);
  }

  #cache(value) {
    const kind = this.#o.storage;
    if (kind === "none") return null;
    return quiet(() => {
      if (value === undefined) return JSON.parse(store(kind).getItem(CACHE_KEY));
      if (value === null) store(kind).removeItem(CACHE_KEY);
      else store(kind).setItem(CACHE_KEY, JSON.stringify(value));
    }) ?? null;
  }

  #emit(events) {
    if (this.#onEvent) for (const e of events) quiet(() => this.#onEvent(e));
  }

  #leaseUrl(lease) {
    // "/hsq/v1/identity" -> "/hsq/v1/leases/{id}"
    const u = this.#o.relayUrl;
    return u.slice(0, u.lastIndexOf("/")) + "/leases/" + lease;
  }

  #releaseLease(lease, beacon) {
    const url = this.#leaseUrl(lease);
    quiet(() => {
      if (beacon && navigator.sendBeacon && navigator.sendBeacon(url + "/release", "")) return;
      fetch(url, { method: "DELETE", keepalive: true, credentials: "same-origin" }).catch(() => {});
    });
  }

  #insertTracker() {
    if (this.#trackerInserted || !this.#o.portalId) return;
    this.#trackerInserted = true;
    quiet(() => {
      if (document.getElementById("hs-script-loader")) return;
      const s = document.createElement("script");
      s.id = "hs-script-loader";
      s.src = this.#o.trackerUrl || "https://js.hs-scripts.com/" + this.#o.portalId + ".js";
      s.async = s.defer = true;
      (document.head || document.documentElement).appendChild(s);
    });
  }

  /** The `_hsq.push` filter: the guard rewrites other code's identify to the safe identity; while
   * the tracker carries an email without a live lease, entries are held, in order. */
  #filter(entry) {
    const now = Date.now();
    const st = this.#core && this.#core.state(now); // one call into the core per entry
    let out = entry, guard = null;
    if (this.#o.guard === "true" && Array.isArray(entry) && entry[0] === "identify" && entry[1] && typeof entry[1] === "object") {
      const copy = Object.assign({}, entry[1]);
      const given = typeof copy.email === "string" ? copy.email : null;
      const email = st ? st.safeEmail : null;
      if (st) copy.id = st.sub;
      else delete copy.id;
      if (email) copy.email = email;
      else delete copy.email;
      if (given !== null && given !== email) guard = { type: "guard", email: given, sent: email };
      out = ["identify", copy];
    }
    // Until consent and the relay's first answer (or the timeout), entries wait too, the tracker's
    // automatic view among them: HubSpot calls the consent listener while it drains the queue,
    // after it took the queued entries, so an identify pushed then would only follow the view.
    // Held, the view goes out after the identify, with the email when the relay confirms it.
    if ((st && (this.#settling || st.holding || this.#leaving)) || this.#held.length) {
      if (this.#held.length >= HELD_MAX) this.#held.shift();
      // A held page view keeps the path it was made on, even if it goes out from another page.
      const last = this.#held[this.#held.length - 1];
      if (Array.isArray(out) && out[0] === "trackPageView" && !(Array.isArray(last) && last[0] === "setPath")) {
        const pin = ["setPath", location.pathname + location.search];
        this.#pins.add(pin);
        this.#held.push(pin);
      }
      this.#held.push(out);
      out = undefined;
      if (this.#held.length === 1) this.#watchLeave();
    }
    if (guard) this.#emit([guard]);
    return out;
  }

  /** Passes an entry to the tracker. A path pinned to a held view is left out when the view goes
   * from the page it was made on, at the same address, and the page never set a path: the view is
   * then exactly what it would have been unheld. */
  #out(e) {
    if (isHit(e) && Date.now() <= this.#lastHit) {
      // A second hit in the same millisecond would be the same image URL, which the browser
      // fetches once: it waits a moment, and what comes after waits behind it.
      this.#held.unshift(e);
      if (!this.#flushTimer) this.#flushTimer = setTimeout(() => ((this.#flushTimer = 0), this.#flush()), 1);
      return;
    }
    if (this.#pins.has(e) && !this.#pathSent && e[1] === location.pathname + location.search) return;
    if (Array.isArray(e) && e[0] === "setPath") this.#pathSent = true;
    this.#send(e);
    if (isHit(e)) this.#lastHit = Date.now(); // after: the tracker reads the clock as it sends
  }

  /** Sends held entries, in order, unless the page must hold them. */
  #flush() {
    while (this.#held.length && !this.#leaving && !(this.#core && (this.#settling || this.#core.holding(Date.now())))) {
      const e = this.#held.shift();
      this.#out(e);
      if (this.#held[0] === e) return; // it waits a moment (see #out)
    }
    if (!this.#held.length) this.#watchLeave();
  }

  #push(entry) {
    const out = this.#filter(entry);
    if (out !== undefined) this.#out(out);
  }

  /** Carries out a plan from the core. */
  #apply(encoded) {
    const p = decodePlan(encoded);
    const core = this.#core;
    const st = core ? core.state() : null; // the session after this plan, read once
    const sends = [];
    let events = p.events;
    if (p.releaseLease) this.#releaseLease(p.releaseLease, false);
    if (p.resetVisitor) sends.push(["resetVisitor"]);
    if (p.rotateUtk) {
      deleteHubSpotCookies();
      if (window._hstc_ran) sends.push(["resetVisitor"]); // the tracker already read the old cookies
    }
    if (p.identify && st) sends.push(["identify", p.identify === "-" ? { id: st.sub } : { id: st.sub, email: p.identify }]);
    const release = p.releaseHeld && !this.#leaving ? this.#held.length : 0;
    if (p.releaseHeld) this.#settling = false; // the relay answered
    if (release) events = events.filter((e) => e.type !== "release").concat([{ type: "release", count: release }]);
    if (this.#o.chat === "true" && p.chatEmail && this.#chatAs !== p.chatEmail) {
      const reload = this.#chatAs !== undefined;
      this.#chatAs = p.chatEmail;
      loadChat(p.chatEmail, p.chatToken, reload);
    }
    if (this.#ticket && st) this.#cache({ ...this.#ticket, leaseUntilLocal: st.leaseUntil });
    const now = Date.now();
    const askIn = p.renewAt !== null ? p.renewAt - now : p.pollIn;
    if (askIn !== null) {
      clearTimeout(this.#askTimer);
      this.#askTimer = setTimeout(() => this.#ask(), Math.max(0, askIn));
    }
    // A timer for the moment hits must stop, if that is still to come (once past, the ask above
    // is what ends the hold).
    const until = st ? st.leaseUntil : NaN;
    if (!isNaN(until) && until - HOLD_MARGIN >= now) {
      clearTimeout(this.#tickTimer);
      this.#tickTimer = setTimeout(() => this.#tick(), until - HOLD_MARGIN - now + 1);
    }
    for (const e of sends) this.#out(e);
    if (release) this.#flush();
    this.#emit(events);
  }

  #tick() {
    if (this.#core) this.#apply(this.#core.tick(Date.now()));
  }

  /** Page hide: the lease goes back by sendBeacon. The relay keeps it for a grace, so the next
   * page of this tab may identify from the cache if it comes within the grace (less the margin). */
  #hide() {
    const core = this.#core;
    if (!core) return;
    const until = Math.min(core.leaseUntil(), Date.now() + RELEASE_GRACE);
    const p = core.hide();
    const lease = p.split(F)[5];
    if (lease) this.#releaseLease(lease, true);
    this.#apply(p.split(F).map((f, i) => (i === 5 ? "" : f)).join(F));
    if (this.#ticket && !isNaN(until)) this.#cache({ ...this.#ticket, leaseUntilLocal: until });
    // Entries still held would die with the page: the next page of this tab sends them, after
    // consent there. So do entries a previous page left that this one has not passed on yet (it
    // went away before consent or the relay's first answer).
    // They are handed over: kept here too, a page back from the back-forward cache would send
    // them a second time.
    const keep = this.#restored.concat(this.#held).filter((e) => Array.isArray(e));
    if (keep.length && this.#o.storage !== "none" && quiet(() => (store(this.#o.storage).setItem(HELD_KEY, JSON.stringify(keep)), true))) {
      this.#held = [];
      this.#restored = [];
    }
  }

  /** Consent given (or not needed): the first decision, then the relay. */
  async #begin(wait) {
    this.#consented = true;
    this.#settling = true;
    const core = this.#core;
    if (!core) return;
    const c = this.#cache(undefined);
    const plan = core.begin(str(c?.id), str(c?.email), str(c?.state), str(c?.leaseId), num(c?.leaseUntilLocal), Date.now());
    const fromCache = plan.split(F)[0].length > 1;
    if (fromCache) this.#ticket = c;
    this.#apply(plan);
    if (fromCache) this.#settling = false;
    // What the previous page of this tab held, then what this page held waiting for consent.
    const waited = this.#held.splice(0);
    for (const e of this.#restored.splice(0).concat(waited)) this.#push(e);
    this.#watchLeave();
    if (fromCache) return this.#insertTracker(); // the renewal is scheduled
    // The tracker and held entries (and an anonymous chat, if the email is not confirmed by then)
    // wait for the relay's first answer or the timeout; `start` waits too unless consent came later.
    const settled = Promise.race([this.#ask(), sleep(+this.#o.timeoutMs)]).then(() => {
      this.#settling = false;
      this.#flush();
      this.#insertTracker();
      if (this.#o.chat === "true" && this.#chatAs === undefined) {
        this.#chatAs = null;
        loadChat(null, null, false);
      }
    });
    if (wait) await settled;
  }

  /** Asks the relay for a ticket and applies the answer; one ask at a time. Never rejects. */
  async #ask() {
    if (this.#asking) {
      this.#again = true;
      return;
    }
    this.#asking = true;
    try {
      do {
        this.#again = false;
        const before = this.#core;
        if (!before) return;
        let plan;
        try {
          const body = JSON.stringify({ assertion: await this.#token(), utk: /^[0-9a-f]{32}$/.test(readCookie("hubspotutk") || "") ? readCookie("hubspotutk") : null, leaseId: before.leaseId() ?? null });
          const res = await postJson(this.#o.relayUrl, body, +this.#o.timeoutMs);
          if (res.error) throw new Error(res.error);
          const t = res.body;
          if (res.status !== 200 || !t || typeof t.id !== "string" || typeof t.state !== "string")
            throw new Error("the relay answered " + res.status + (t && t.message ? ": " + t.message : ""));
          if (this.#core !== before) continue; // reset or another user meanwhile
          plan = before.ticket(t.id, str(t.email), t.state, str(t.leaseId), num(t.emailValidUntil) * 1000, !!t.rotateUtk, str(t.chat?.email), str(t.chat?.token), num(t.now) * 1000, Date.now());
          if (t.id === before.sub()) this.#ticket = t;
        } catch (e) {
          if (this.#core !== before) continue;
          plan = before.error(String((e && e.message) || e), Date.now());
        }
        this.#apply(plan);
      } while (this.#again);
    } catch (_) {
      // never reject
    } finally {
      this.#asking = false;
    }
  }
}

/** Sets chat settings before the widget loads (merging with what the page set). */
function chatSettings(email, token) {
  quiet(() => {
    const s = Object.assign({}, window.hsConversationsSettings || {}, { loadImmediately: false });
    delete s.identificationEmail;
    delete s.identificationToken;
    if (email && token) Object.assign(s, { identificationEmail: email, identificationToken: token });
    window.hsConversationsSettings = s;
  });
}

/** Runs `fn(HubSpotConversations)` once the chat API is ready. */
function withChat(fn) {
  const run = () => quiet(() => fn(window.HubSpotConversations));
  quiet(() => (window.HubSpotConversations ? run() : (window.hsConversationsOnReady = window.hsConversationsOnReady || []).push(run)));
}

function loadChat(email, token, reload) {
  chatSettings(email, token);
  withChat((api) => {
    if (reload) api.widget.remove();
    api.widget.load();
  });
}
