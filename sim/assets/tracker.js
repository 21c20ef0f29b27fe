/* hubspot-sim tracker: stands in for //js.hs-scripts.com/__PORTAL_ID__.js.
 * Follows shared/hubspot-behavior.md section 1 (the `_hsq` queue, identify, cookies, consent).
 * Hits go to the simulator's collector at __ORIGIN__. */
(function () {
  "use strict";
  var PORTAL = "__PORTAL_ID__";
  var ORIGIN = "__ORIGIN__";
  var CONSENT_BANNER = __CONSENT_BANNER__;
  var CHAT_WIDGET = __CHAT_WIDGET__;
  var COLLECTED_FORMS = __COLLECTED_FORMS__;
  var w = window, d = document;
  if (w._hstc_ran) return; // a second copy of the script does nothing
  w._hstc_ran = true;
  // The per-portal script also loads the collected-forms script (HubSpot's
  // js.hscollectedforms.net/collectedforms.js) when the portal has collected forms on. It is
  // inserted at once, not at load, so it binds the page's forms as early as it can.
  if (COLLECTED_FORMS && !d.getElementById("CollectedForms-" + PORTAL)) {
    var cf = d.createElement("script");
    cf.id = "CollectedForms-" + PORTAL;
    cf.src = ORIGIN + "/collectedforms.js";
    cf.async = true;
    (d.head || d.documentElement).appendChild(cf);
  }

  var hsq = (w._hsq = w._hsq || []);
  var hsp = (w._hsp = w._hsp || []);
  // What the per-portal script pushes itself: the automatic page view is the trackPageView here.
  hsq.push(["setPortalId", PORTAL]);
  hsq.push(["trackPageView"]);
  hsq.push(["setTrackingDomain", ORIGIN]);
  if (CHAT_WIDGET) hsq.push(["embedHubSpotScript", ORIGIN + "/conversations-embed.js", "hubspot-messages-loader"]);

  var DAY = 86400000;
  var UTK_LIFETIME = 180 * DAY; // newer build; the 2021 build used 390 days
  var SESSION_LIFETIME = 30 * 60000;

  // ---------------------------------------------------------------- cookies
  var cookieDomains = [];
  var secureCookies = false;
  function cookieDomain() {
    var host = location.hostname, best = null;
    for (var i = 0; i < cookieDomains.length; i++) {
      var dom = cookieDomains[i].replace(/^\./, "");
      if ((host === dom || host.slice(-dom.length - 1) === "." + dom) && (!best || dom.length < best.length)) best = dom;
    }
    return best;
  }
  function setCookie(name, value, ms) {
    var c = name + "=" + value + "; path=/; SameSite=Lax";
    if (ms) c += "; expires=" + new Date(Date.now() + ms).toUTCString();
    var dom = cookieDomain();
    if (dom) c += "; domain=" + dom;
    if (secureCookies) c += "; secure";
    d.cookie = c;
  }
  function getCookie(name) {
    var parts = d.cookie ? d.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return parts[i].slice(eq + 1);
    }
    return null;
  }
  function deleteCookie(name) {
    var dom = cookieDomain();
    d.cookie = name + "=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT" + (dom ? "; domain=" + dom : "");
    d.cookie = name + "=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT";
  }
  function domainHash() {
    // A short string hash of the cookie domain (the tracker's own hash function is not documented).
    var s = cookieDomain() || location.hostname, h = 0;
    for (var i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
    return String(h % 1000000000);
  }
  function newUtk() {
    var a = new Uint8Array(16);
    (w.crypto || w.msCrypto).getRandomValues(a);
    var s = "";
    for (var i = 0; i < a.length; i++) s += (a[i] < 16 ? "0" : "") + a[i].toString(16);
    return s;
  }

  // ---------------------------------------------------------------- state
  var state = {
    utk: null, hstc: null, hssc: null,
    identity: null, // null until identify is called; then merged in memory only
    path: null, prevPath: null,
    trackingEnabled: true,
    consent: null, // null: not decided; true/false
    pending: [], // hits made before consent
    sessionCounted: false,
    resetVisitor: false,
  };
  var consentListeners = [], utkListeners = [], identityListeners = [];

  // Cookies are written only after analytics consent (hubspot-behavior.md 1.4).
  function setUpCookies() {
    var hash = domainHash(), now = Date.now();
    var hstc = getCookie("__hstc"), parts = hstc ? hstc.split(".") : [];
    var returning = parts.length === 6 && /^[0-9a-f]{32}$/.test(parts[1]);
    var utk = returning ? parts[1] : getCookie("hubspotutk");
    if (!utk || !/^[0-9a-f]{32}$/.test(utk)) utk = newUtk();
    var hssc = getCookie("__hssc"), hssrc = getCookie("__hssrc");
    var sc = hssc ? hssc.split(".") : [];
    var sameSession = returning && sc.length === 3 && hssrc === "1";
    if (!returning) {
      parts = [hash, utk, now, now, now, 1];
    } else if (!sameSession) {
      // A new session rotates the timestamps: previous <- current, current <- now, session + 1.
      parts = [hash, utk, parts[2], parts[4], now, Number(parts[5]) + 1];
    }
    if (sameSession) {
      if (!state.sessionCounted) sc = [hash, Number(sc[1]) + 1, sc[2]]; // once per page load
    } else {
      sc = [hash, 1, now];
    }
    state.sessionCounted = true;
    state.utk = utk;
    state.hstc = parts.join(".");
    state.hssc = sc.join(".");
    setCookie("__hstc", state.hstc, UTK_LIFETIME);
    setCookie("hubspotutk", utk, UTK_LIFETIME);
    setCookie("__hssc", state.hssc, SESSION_LIFETIME);
    setCookie("__hssrc", "1", 0);
    for (var i = 0; i < utkListeners.length; i++) safe(utkListeners[i], [utk]);
    for (var j = 0; j < identityListeners.length; j++) safe(identityListeners[j], [state.hstc, state.hssc, ""]);
  }
  function clearTrackingCookies() {
    ["__hstc", "hubspotutk", "__hssc", "__hssrc"].forEach(deleteCookie);
    state.utk = state.hstc = state.hssc = null;
    state.sessionCounted = false;
  }

  function safe(fn, args) {
    try { return fn.apply(null, args || []); } catch (e) { report(e); }
  }
  function report(e) {
    // HubSpot beacons swallowed exceptions to __pto.gif; the simulator just logs them.
    if (w.console && console.warn) console.warn("[hubspot-sim tracker] swallowed:", e);
  }

  // ---------------------------------------------------------------- hits
  var images = [];
  function encodeIdentity(id) {
    var out = [];
    for (var k in id) if (Object.prototype.hasOwnProperty.call(id, k) && id[k] != null) {
      out.push(encodeURIComponent(k) + "=" + encodeURIComponent(String(id[k])));
    }
    return out.join("&");
  }
  function send(endpoint, params) {
    if (getCookie("__hs_do_not_track") === "yes" || !state.trackingEnabled) return;
    if (state.consent === false) return;
    var hit = { endpoint: endpoint, params: params };
    if (state.consent !== true) { state.pending.push(hit); return; }
    fire(hit);
  }
  function fire(hit) {
    var p = hit.params;
    p.a = PORTAL;
    p.vi = state.utk || "";
    p.u = state.hstc || "";
    p.b = state.hssc || "";
    p.cts = Date.now();
    if (state.identity) p.i = encodeIdentity(state.identity);
    if (state.resetVisitor) { p.rv = 1; state.resetVisitor = false; }
    var q = [];
    for (var k in p) q.push(encodeURIComponent(k) + "=" + encodeURIComponent(String(p[k])));
    var img = new Image(1, 1);
    images.push(img);
    img.onload = img.onerror = function () { images.splice(images.indexOf(img), 1); };
    img.src = ORIGIN + hit.endpoint + "?" + q.join("&");
  }
  function pageParams(k) {
    var p = { k: k, pu: location.href, t: d.title, r: d.referrer };
    if (state.path != null) { p.po = state.path; }
    if (state.prevPath != null) p.rpo = state.prevPath;
    return p;
  }

  // ---------------------------------------------------------------- consent
  function consentResult(allowed) {
    return { allowed: allowed, categories: { analytics: allowed, advertisement: allowed, functionality: allowed } };
  }
  function decideConsent(allowed, byVisitor) {
    var was = state.consent;
    state.consent = allowed;
    if (byVisitor) {
      setCookie("__hs_opt_out", allowed ? "no" : "yes", 180 * DAY);
      setCookie("__hs_cookie_cat_pref", allowed ? "1:true,2:true,3:true" : "1:false,2:false,3:false", 180 * DAY);
      var banner = d.getElementById("hs-eu-cookie-confirmation");
      if (banner) banner.parentNode.removeChild(banner);
    }
    if (allowed) {
      setUpCookies();
      var pending = state.pending; state.pending = [];
      for (var i = 0; i < pending.length; i++) fire(pending[i]);
    } else {
      state.pending = [];
      if (was === true) {
        // Allowed -> denied: the tracking cookies go and the visitor starts fresh, with no identity.
        clearTrackingCookies();
        state.identity = null;
      }
    }
    for (var j = 0; j < consentListeners.length; j++) safe(consentListeners[j], [consentResult(allowed)]);
  }
  function showBanner() {
    if (d.getElementById("hs-eu-cookie-confirmation")) return;
    var div = d.createElement("div");
    div.id = "hs-eu-cookie-confirmation";
    div.setAttribute("style", "position:fixed;bottom:0;left:0;right:0;padding:12px;background:#fff;border-top:1px solid #ccc;z-index:9999");
    div.innerHTML = '<span>This website uses cookies.</span> ' +
      '<button id="hs-eu-confirmation-button">Accept</button> <button id="hs-eu-decline-button">Decline</button>';
    (d.body || d.documentElement).appendChild(div);
    d.getElementById("hs-eu-confirmation-button").onclick = function () { decideConsent(true, true); };
    d.getElementById("hs-eu-decline-button").onclick = function () { decideConsent(false, true); };
  }
  function initConsent() {
    if (!CONSENT_BANNER) { decideConsent(true, false); return; }
    var optOut = getCookie("__hs_opt_out");
    if (optOut === "no") decideConsent(true, false);
    else if (optOut === "yes") decideConsent(false, false);
    else showBanner();
  }

  // ---------------------------------------------------------------- the tracker's methods
  var tracker = {
    setPortalId: function (id) { PORTAL = String(id); },
    setTrackingDomain: function () {},
    setCookiesToSubdomain: function () {},
    addCookieDomain: function (dom) { if (typeof dom === "string") cookieDomains.push(dom); },
    enableSecureCookie: function () { secureCookies = true; },
    embedHubSpotScript: function (src, id) {
      if (id && d.getElementById(id)) return;
      var s = d.createElement("script");
      s.src = src; s.async = true; if (id) s.id = id;
      (d.head || d.documentElement).appendChild(s);
    },
    setCanonicalUrl: function () {}, setContentType: function () {}, setContentMetadata: function () {},
    setPageId: function () {}, setTargetedContentMetadata: function () {}, setDebugMode: function () {},
    setLimitTrackingToCookieDomains: function () {},
    setPath: function (p) {
      if (typeof p !== "string") return;
      if (p === "") p = "/";
      if (p.charAt(0) !== "/") return; // must start with /
      state.prevPath = state.path != null ? state.path : location.pathname;
      state.path = p;
    },
    identify: function (obj) {
      if (!obj || typeof obj !== "object") return;
      state.identity = state.identity || {};
      for (var k in obj) if (Object.prototype.hasOwnProperty.call(obj, k)) state.identity[k] = obj[k];
    },
    trackPageView: function () { send("/__ptq.gif", pageParams(1)); },
    trackEvent: function (ev) {
      if (!ev || ev.id == null) return;
      var p = pageParams(3); p.n = String(ev.id); if (ev.value != null) p.m = ev.value;
      send("/__ptq.gif", p);
    },
    trackCustomBehavioralEvent: function (ev) {
      if (!ev || typeof ev.name !== "string") return;
      var p = { n: ev.name, pu: location.href };
      var props = ev.properties || {};
      for (var k in props) if (Object.prototype.hasOwnProperty.call(props, k)) p["_" + k] = props[k];
      send("/__ptbe.gif", p);
    },
    doNotTrack: function (opts) {
      if (opts && opts.track === true) deleteCookie("__hs_do_not_track");
      else setCookie("__hs_do_not_track", "yes", 180 * DAY);
    },
    setTrackingEnabled: function (on) { state.trackingEnabled = on !== false; },
    addPrivacyConsentListener: function (cb) { hspMethods.addPrivacyConsentListener(cb); },
    revokeCookieConsent: function () { hspMethods.revokeCookieConsent(); },
    addUserTokenListener: function (cb) {
      if (typeof cb !== "function") return;
      utkListeners.push(cb);
      if (state.utk) safe(cb, [state.utk]);
    },
    addIdentityListener: function (cb) {
      if (typeof cb !== "function") return;
      identityListeners.push(cb);
      if (state.hstc) safe(cb, [state.hstc, state.hssc, ""]);
    },
    // Undocumented (TRK): a new utk and session, identity cleared, rv=1 on the next hit.
    resetVisitor: function () {
      clearTrackingCookies();
      state.identity = null;
      state.resetVisitor = true;
      if (state.consent === true) setUpCookies();
    },
  };
  var hspMethods = {
    addPrivacyConsentListener: function (cb) {
      if (typeof cb !== "function") return;
      consentListeners.push(cb);
      if (state.consent !== null) safe(cb, [consentResult(state.consent)]);
    },
    // Also reachable as _hsq.push(["revokeCookieConsent"]) (hubspot-behavior.md section 9): the
    // banner and tracking cookies go, the banner shows again, and what was collected stays.
    revokeCookieConsent: function () {
      ["__hs_opt_out", "__hs_cookie_cat_pref", "__hs_initial_opt_in"].forEach(deleteCookie);
      clearTrackingCookies();
      state.identity = null;
      if (state.consent === true) {
        state.consent = false;
        for (var j = 0; j < consentListeners.length; j++) safe(consentListeners[j], [consentResult(false)]);
      }
      if (CONSENT_BANNER) showBanner();
    },
    showBanner: function () { if (CONSENT_BANNER) showBanner(); },
  };

  function run(entry, methods) {
    try {
      if (typeof entry === "function") return entry(tracker, state.hstc);
      if (!entry || typeof entry.length !== "number" || !entry.length) return;
      var fn = methods[entry[0]];
      if (typeof fn === "function") fn.apply(methods, Array.prototype.slice.call(entry, 1)); // unknown: ignored
    } catch (e) {
      report(e);
    }
  }

  // ---------------------------------------------------------------- draining the queue on load
  var CONFIG = { setTrackingDomain: 1, setCookiesToSubdomain: 1, addCookieDomain: 1, enableSecureCookie: 1 };
  var PRIORITY = {
    setPortalId: 1, setCanonicalUrl: 1, setPath: 1, setContentType: 1, setContentMetadata: 1, setPageId: 1,
    setTargetedContentMetadata: 1, identify: 1, setDebugMode: 1, setLimitTrackingToCookieDomains: 1,
    setTrackingEnabled: 1,
  };
  function name(e) { return e && typeof e !== "function" && e.length ? e[0] : null; }

  function processHsq() {
    var queued = Array.prototype.slice.call(hsq);
    hsq.length = 0;
    var pq = Array.prototype.slice.call(hsp);
    hsp.length = 0;
    var i;
    // 1. configuration
    for (i = 0; i < queued.length; i++) if (CONFIG[name(queued[i])]) run(queued[i], tracker);
    // 2. init: consent (listeners queued on _hsp subscribe first) and the visitor's cookies
    for (i = 0; i < pq.length; i++) if (name(pq[i]) === "addPrivacyConsentListener") run(pq[i], hspMethods);
    for (i = 0; i < queued.length; i++) if (name(queued[i]) === "addPrivacyConsentListener") run(queued[i], tracker);
    initConsent();
    // 3. priority entries, 4. every trackPageView, 5. the rest, first in first out
    for (i = 0; i < queued.length; i++) if (PRIORITY[name(queued[i])]) run(queued[i], tracker);
    for (i = 0; i < queued.length; i++) if (name(queued[i]) === "trackPageView") run(queued[i], tracker);
    for (i = 0; i < queued.length; i++) {
      var n = name(queued[i]);
      if (!CONFIG[n] && !PRIORITY[n] && n !== "trackPageView" && n !== "addPrivacyConsentListener") run(queued[i], tracker);
    }
    for (i = 0; i < pq.length; i++) if (name(pq[i]) !== "addPrivacyConsentListener") run(pq[i], hspMethods);
    // ?__hs_email= in the URL acts like identify({email}).
    var m = /[?&]__hs_email=([^&#]*)/.exec(location.search);
    if (m) tracker.identify({ email: decodeURIComponent(m[1]) });

    // After load the same arrays stay, and push becomes a synchronous dispatcher.
    hsq.push = function () {
      for (var j = 0; j < arguments.length; j++) run(arguments[j], tracker);
    };
    hsp.push = function () {
      for (var j = 0; j < arguments.length; j++) run(arguments[j], hspMethods);
    };
    // Entries pushed while draining (by queued functions) run now, in order.
    var late = Array.prototype.slice.call(hsq);
    hsq.length = 0;
    for (i = 0; i < late.length; i++) run(late[i], tracker);
  }

  // The tracker starts once the document is complete.
  if (d.readyState === "complete") processHsq();
  else w.addEventListener("load", processHsq);
})();
