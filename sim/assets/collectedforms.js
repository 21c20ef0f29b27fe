/* hubspot-sim collected forms: stands in for js.hscollectedforms.net/collectedforms.js, which
 * HubSpot's per-portal script loads when the portal has collected forms on.
 * Follows shared/hubspot-behavior.md section 10: it listens for submissions of the page's
 * <form>s, stores each in the li_formsub cookie so that it survives the form's redirect, and sends
 * it on the next page load, or after a brief moment when the page stays. A form marked
 * data-hs-do-not-collect="true" when the script binds it is never observed.
 * Submissions go to the simulator's POST __ORIGIN__/collected-forms/submit/form. */
(function () {
  "use strict";
  var PORTAL = "__PORTAL_ID__";
  var ORIGIN = "__ORIGIN__";
  var COOKIE = "li_formsub";
  var SEND_AFTER_MS = 1000; // "after a brief moment" [guess]
  var KEEP_MS = 30 * 60000; // how long an unsent submission waits for the next page [guess]
  var COOKIE_MAX = 3500; // encoded characters kept in the cookie (a cookie holds about 4 KB)
  var w = window, d = document;
  if (w.__hsCollectedFormsRan) return; // a second copy does nothing
  w.__hsCollectedFormsRan = true;

  function getCookie(name) {
    var parts = d.cookie ? d.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return parts[i].slice(eq + 1);
    }
    return null;
  }
  function stored() {
    try {
      var v = JSON.parse(decodeURIComponent(getCookie(COOKIE) || "[]"));
      return Array.isArray(v) ? v : [];
    } catch (e) {
      return [];
    }
  }
  function keep(list) {
    var size = function (l) { return encodeURIComponent(JSON.stringify(l)).length; };
    while (list.length > 1 && size(list) > COOKIE_MAX) list = list.slice(1); // oldest first
    if (list.length && size(list) > COOKIE_MAX) delete list[0].formValues;
    var expires = list.length ? new Date(Date.now() + KEEP_MS) : new Date(0);
    var value = list.length ? encodeURIComponent(JSON.stringify(list)) : "";
    d.cookie = COOKIE + "=" + value + "; path=/; SameSite=Lax; expires=" + expires.toUTCString();
  }
  function optedOut() {
    return getCookie("__hs_do_not_track") === "yes" || getCookie("__hs_opt_out") === "yes";
  }
  function uuid() {
    if (w.crypto && crypto.randomUUID) return crypto.randomUUID();
    var a = new Uint8Array(16), s = "";
    crypto.getRandomValues(a);
    for (var i = 0; i < 16; i++) s += (a[i] < 16 ? "0" : "") + a[i].toString(16);
    return s;
  }

  // ---------------------------------------------------------------- reading a form
  var EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
  var NAMES = {
    firstname: /^(first_?name|fname|given_?name)$/i,
    lastname: /^(last_?name|lname|family_?name|surname)$/i,
    phone: /^(phone|tel|telephone)$/i,
    company: /^(company|organi[sz]ation)$/i,
  };
  var SKIP = { password: 1, hidden: 1, submit: 1, button: 1, reset: 1, file: 1, image: 1 };
  /** The contact fields and values of a form; null without an email (HubSpot creates nothing). */
  function read(form) {
    var fields = {}, values = {}, els = form.elements || [];
    for (var i = 0; i < els.length; i++) {
      var el = els[i], name = el.name || el.id, type = String(el.type || "").toLowerCase();
      // Passwords and card numbers are never collected; hidden fields neither [guess].
      if (!name || el.disabled || SKIP[type] || /^cc-/.test(el.autocomplete || "")) continue;
      if ((type === "checkbox" || type === "radio") && !el.checked) continue;
      var v = typeof el.value === "string" ? el.value.trim() : "";
      if (!v) continue;
      values[name] = v;
      if (!fields.email && (type === "email" || /e-?mail/i.test(name)) && EMAIL.test(v)) fields.email = v;
      for (var k in NAMES) if (!fields[k] && NAMES[k].test(name)) fields[k] = v;
    }
    return fields.email ? { contactFields: fields, formValues: values } : null;
  }

  // ---------------------------------------------------------------- sending
  var sending = {};
  /** Sends every stored submission; each leaves the cookie once the collector took it (or refused it). */
  function flush() {
    var list = stored();
    for (var i = 0; i < list.length; i++) send(list[i]);
  }
  function send(sub) {
    if (!sub || !sub.uuid || sending[sub.uuid]) return;
    sending[sub.uuid] = true;
    if (!sub.utk) sub.utk = getCookie("hubspotutk") || "";
    // text/plain: a simple request, no preflight, and keepalive lets it outlive the page.
    w.fetch(ORIGIN + "/collected-forms/submit/form", {
      method: "POST",
      body: JSON.stringify(sub),
      headers: { "content-type": "text/plain;charset=UTF-8" },
      credentials: "omit",
      keepalive: true,
    })
      .then(function (r) {
        if (r.status < 500) keep(stored().filter(function (s) { return s.uuid !== sub.uuid; }));
      })
      .catch(function () {})
      .then(function () { delete sending[sub.uuid]; });
  }

  function onSubmit(e) {
    var form = e.currentTarget;
    if (optedOut()) return;
    var got = read(form);
    if (!got) return;
    var classes = String(form.getAttribute("class") || "").trim();
    var list = stored();
    list.push({
      contactFields: got.contactFields,
      formValues: got.formValues,
      formSelectorId: form.id ? "#" + form.id : "",
      formSelectorClasses: classes ? "." + classes.split(/\s+/).join(".") : "",
      collectedFormId: form.id || "",
      collectedFormAction: form.getAttribute("action") || "",
      pageUrl: location.href,
      pageTitle: d.title,
      portalId: Number(PORTAL),
      type: "SCRAPED",
      // The browser's usertoken when the form was submitted: HubSpot dedupes by it first.
      utk: getCookie("hubspotutk") || "",
      uuid: uuid(),
      version: "hubspot-sim-collected-forms",
    });
    keep(list);
    // Whether the app's handler prevented the navigation does not matter: the submission is
    // collected either way [guess].
    setTimeout(flush, SEND_AFTER_MS);
  }

  // ---------------------------------------------------------------- binding forms
  var bound = typeof WeakSet === "function" ? new WeakSet() : null;
  function bind(form) {
    if (!bound || bound.has(form)) return;
    bound.add(form);
    // The opt-out is read here, once: a form marked after it was bound is still collected
    // [guess: the harder case]. HubSpot's own embedded forms (class hs-form) submit themselves.
    if (form.getAttribute("data-hs-do-not-collect") === "true") return;
    if (/(^|\s)hs-form(\s|$)/.test(String(form.getAttribute("class") || ""))) return;
    form.addEventListener("submit", onSubmit);
  }
  function scan(root) {
    if (root.tagName === "FORM") bind(root);
    var forms = root.querySelectorAll ? root.querySelectorAll("form") : [];
    for (var i = 0; i < forms.length; i++) bind(forms[i]);
  }
  // Forms on the page when the script runs, then every form added later, as it is added.
  scan(d);
  if (w.MutationObserver) {
    new MutationObserver(function (records) {
      for (var i = 0; i < records.length; i++) {
        var added = records[i].addedNodes;
        for (var j = 0; j < added.length; j++) if (added[j].nodeType === 1) scan(added[j]);
      }
    }).observe(d.documentElement || d, { childList: true, subtree: true });
  }
  // What a previous page stored (its form redirected here) goes now.
  if (!optedOut()) flush();
})();
