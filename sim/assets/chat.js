/* hubspot-sim chat widget: stands in for HubSpot's conversations-embed.js.
 * Honours hsConversationsSettings, hsConversationsOnReady and the HubSpotConversations widget API
 * (shared/hubspot-behavior.md section 5). It tells the simulator who each load identified. */
(function () {
  "use strict";
  var PORTAL = "__PORTAL_ID__";
  var ORIGIN = "__ORIGIN__";
  var w = window, d = document;
  if (w.HubSpotConversations) return;

  var loaded = false, el = null, open = false, listeners = {};
  var images = [];
  function getCookie(name) {
    var parts = d.cookie ? d.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return parts[i].slice(eq + 1);
    }
    return null;
  }
  function deleteCookie(name) { d.cookie = name + "=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT"; }
  function report(kind, extra) {
    var q = "kind=" + encodeURIComponent(kind) + "&portalId=" + PORTAL;
    for (var k in extra) if (extra[k] != null) q += "&" + k + "=" + encodeURIComponent(String(extra[k]));
    var img = new Image(1, 1);
    images.push(img);
    img.src = ORIGIN + "/__sim/chat/event?" + q;
  }
  function emit(type, payload) {
    var l = listeners[type] || [];
    for (var i = 0; i < l.length; i++) { try { l[i](payload); } catch (e) {} }
  }
  function settings() { return w.hsConversationsSettings || {}; }

  var widget = {
    load: function (opts) {
      if (loaded) return; // a no-op when already loaded
      var s = settings();
      var email = s.identificationEmail, token = s.identificationToken;
      var identified = !!(email && token);
      var mutk = null;
      if (!identified) {
        // Identified chats do not use the messagesUtk cookie.
        mutk = getCookie("messagesUtk");
        if (!mutk) {
          var a = new Uint8Array(16); w.crypto.getRandomValues(a);
          mutk = Array.prototype.map.call(a, function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
          d.cookie = "messagesUtk=" + mutk + "; path=/; SameSite=Lax; expires=" + new Date(Date.now() + 390 * 86400000).toUTCString();
        }
      }
      loaded = true;
      el = d.createElement("div");
      el.id = "hubspot-messages-iframe-container";
      el.setAttribute("data-identified-email", identified ? email : "");
      el.setAttribute("style", "position:fixed;right:16px;bottom:16px;padding:8px 12px;border-radius:16px;background:#ff7a59;color:#fff;font:13px sans-serif;z-index:9998");
      el.textContent = identified ? "Chat (" + email + ")" : "Chat";
      (d.body || d.documentElement).appendChild(el);
      open = !!(opts && opts.widgetOpen);
      report("load", { email: email, token: token, messagesUtk: mutk });
      emit("widgetLoaded", { message: "Widget has loaded" });
    },
    remove: function () {
      if (!loaded) return; // a no-op when absent
      if (el && el.parentNode) el.parentNode.removeChild(el);
      el = null; loaded = false; open = false;
      report("remove", {});
      emit("widgetClosed", {});
    },
    refresh: function (opts) { if (loaded) report("refresh", { openToNewThread: opts && opts.openToNewThread ? 1 : 0 }); },
    open: function () { if (loaded) open = true; },
    close: function () { if (loaded) open = false; },
    status: function () { return { loaded: loaded }; },
  };
  w.HubSpotConversations = {
    widget: widget,
    clear: function (opts) {
      ["messagesUtk", "hs-messages-is-open", "hs-messages-hide-welcome-message"].forEach(deleteCookie);
      var reset = !!(opts && opts.resetWidget);
      if (reset && loaded) {
        // A new instance: the old widget goes; it comes back with widget.load() or a reload.
        if (el && el.parentNode) el.parentNode.removeChild(el);
        el = null; loaded = false;
      }
      report("clear", { resetWidget: reset ? 1 : 0 });
    },
    on: function (type, fn) { (listeners[type] = listeners[type] || []).push(fn); },
    off: function (type, fn) { var l = listeners[type] || []; var i = l.indexOf(fn); if (i >= 0) l.splice(i, 1); },
  };

  if (settings().loadImmediately !== false) widget.load();
  var ready = w.hsConversationsOnReady = w.hsConversationsOnReady || [];
  var fns = Array.prototype.slice.call(ready);
  ready.length = 0;
  ready.push = function () { for (var i = 0; i < arguments.length; i++) { try { arguments[i](); } catch (e) {} } };
  for (var i = 0; i < fns.length; i++) { try { fns[i](); } catch (e) {} }
})();
