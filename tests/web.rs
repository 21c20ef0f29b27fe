//! The web shell in headless Chromium (wasm-bindgen-test, `run_in_browser`): the `_hsq` hook,
//! storage and cookies that fail, and the option validation messages. Run by
//! `scripts/test-wasm.mjs` (part of `npm test`).
#![cfg(target_arch = "wasm32")]

use hsq_identity::core::options::Storage;
use hsq_identity::web::{cookies, queue::Queue, storage};
use hsq_identity::StableIdentity;
use js_sys::{Array, Function, Reflect};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Runs JS in the test page (test set-up only).
fn js(code: &str) -> JsValue {
    Function::new_no_args(code).call0(&JsValue::UNDEFINED).expect(code)
}

fn strings(v: &JsValue) -> Vec<String> {
    Array::from(v).iter().map(|e| e.as_string().unwrap_or_else(|| js_sys::JSON::stringify(&e).unwrap().into())).collect()
}

/// A fresh `_hsq` holding `pre`, hooked with a filter that records what it saw and passes
/// everything on except entries starting with "hold".
fn hooked(pre: &str) -> (Queue, Rc<RefCell<Vec<String>>>, Rc<RefCell<Vec<JsValue>>>) {
    js(&format!("delete window._hsq; window._hsq = {pre};"));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let held = Rc::new(RefCell::new(Vec::new()));
    let (s, h) = (seen.clone(), held.clone());
    let q = Queue::hook(Rc::new(move |e: JsValue| {
        let name = e.as_string().unwrap_or_default();
        s.borrow_mut().push(name.clone());
        if name.starts_with("hold") {
            h.borrow_mut().push(e);
            None
        } else {
            Some(e)
        }
    }))
    .expect("hook");
    (q, seen, held)
}

#[wasm_bindgen_test]
fn entries_queued_before_the_hook_go_through_it_first_in_order() {
    let (_q, seen, _) = hooked(r#"["a", "b"]"#);
    let n = js(r#"return window._hsq.push("c", "d");"#);
    assert_eq!(*seen.borrow(), ["a", "b", "c", "d"]);
    assert_eq!(strings(&js("return Array.from(window._hsq);")), ["a", "b", "c", "d"]);
    assert_eq!(n.as_f64(), Some(4.0), "push answers the queue's length, like Array.prototype.push");
}

#[wasm_bindgen_test]
fn held_entries_wait_and_go_out_in_order_when_released() {
    let (q, seen, held) = hooked("[]");
    js(r#"window._hsq.push("x1"); window._hsq.push("hold1"); window._hsq.push("hold2"); window._hsq.push("x2");"#);
    assert_eq!(seen.borrow().len(), 4);
    assert_eq!(strings(&js("return Array.from(window._hsq);")), ["x1", "x2"], "held entries are not in the queue");
    for e in held.borrow_mut().drain(..) {
        q.send(&e);
    }
    assert_eq!(strings(&js("return Array.from(window._hsq);")), ["x1", "x2", "hold1", "hold2"]);
}

#[wasm_bindgen_test]
fn the_hook_survives_the_tracker_replacing_push() {
    let (q, seen, _) = hooked(r#"["early"]"#);
    // What HubSpot's tracker does on load: takes the queue and assigns its own dispatcher.
    js(r#"window.dispatched = []; const ours = window._hsq.push;
          window._hsq.push = function (e) { window.dispatched.push(e); return 0; };
          window.stillOurs = window._hsq.push === ours;"#);
    assert_eq!(js("return window.stillOurs;").as_bool(), Some(true), "reading push still answers the hook");
    js(r#"window._hsq.push("after", "hold-me");"#);
    assert_eq!(*seen.borrow(), ["early", "after", "hold-me"], "every entry still goes through the filter");
    assert_eq!(strings(&js("return window.dispatched;")), ["after"], "the tracker's dispatcher receives what passes");
    q.send(&"direct".into());
    assert_eq!(strings(&js("return window.dispatched;")), ["after", "direct"], "send goes to the dispatcher too");
    // A tracker that throws does not throw into the page's push.
    js(r#"window._hsq.push = function () { throw new Error("tracker bug"); };"#);
    js(r#"window._hsq.push("x");"#);
}

#[wasm_bindgen_test]
fn a_filter_may_push_again_from_inside_the_hook() {
    js("delete window._hsq; window._hsq = [];");
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let _q = Queue::hook(Rc::new(move |e: JsValue| {
        let name = e.as_string().unwrap_or_default();
        s.borrow_mut().push(name.clone());
        if name == "outer" {
            // The page's onEvent handler pushing while an entry is being filtered.
            js(r#"window._hsq.push("inner");"#);
        }
        Some(e)
    }))
    .expect("hook");
    js(r#"window._hsq.push("outer");"#);
    assert_eq!(*seen.borrow(), ["outer", "inner"]);
    assert_eq!(strings(&js("return Array.from(window._hsq);")), ["inner", "outer"]);
}

#[wasm_bindgen_test]
fn a_queue_that_cannot_be_hooked_is_an_error_not_a_panic() {
    js(r#"delete window._hsq; window._hsq = Object.freeze([]);"#);
    assert!(Queue::hook(Rc::new(Some)).is_err());
    js("delete window._hsq;");
}

#[wasm_bindgen_test]
fn storage_that_throws_reads_as_empty_and_writes_nothing() {
    assert!(storage::set(Storage::Session, "hsq-test", "1"));
    assert_eq!(storage::get(Storage::Session, "hsq-test").as_deref(), Some("1"));
    // A full or refused storage: setItem throws.
    js(r#"window.realSetItem = Storage.prototype.setItem;
          Storage.prototype.setItem = function () { throw new DOMException("full", "QuotaExceededError"); };"#);
    assert!(!storage::set(Storage::Session, "hsq-test", "2"));
    js("Storage.prototype.setItem = window.realSetItem;");
    // Storage disabled: reading window.sessionStorage throws.
    js(r#"window.ssOwn = Object.getOwnPropertyDescriptor(window, "sessionStorage");
          Object.defineProperty(window, "sessionStorage", { configurable: true, get() { throw new DOMException("denied", "SecurityError"); } });"#);
    assert_eq!(storage::get(Storage::Session, "hsq-test"), None);
    assert!(!storage::set(Storage::Session, "hsq-test", "3"));
    storage::remove(Storage::Session, "hsq-test");
    js(r#"if (window.ssOwn) Object.defineProperty(window, "sessionStorage", window.ssOwn); else delete window.sessionStorage;"#);
    assert_eq!(storage::get(Storage::Session, "hsq-test").as_deref(), Some("1"), "restored");
    storage::remove(Storage::Session, "hsq-test");
    assert_eq!(storage::get(Storage::None, "hsq-test"), None, "storage none keeps nothing");
    assert!(storage::set(Storage::Local, "hsq-test", "4"), "local storage still works");
    storage::remove(Storage::Local, "hsq-test");
}

#[wasm_bindgen_test]
fn cookies_are_read_and_a_disabled_cookie_jar_reads_as_none() {
    js(r#"document.cookie = "hubspotutk=0123456789abcdef0123456789abcdef; path=/"; document.cookie = "other=a%20b; path=/";"#);
    assert_eq!(cookies::read("other").as_deref(), Some("a b"), "values are URI-decoded");
    assert_eq!(cookies::hubspot_utk().as_deref(), Some("0123456789abcdef0123456789abcdef"));
    js(r#"document.cookie = "hubspotutk=not-a-utk; path=/";"#);
    assert_eq!(cookies::hubspot_utk(), None, "a utk without HubSpot's format is not sent");
    cookies::delete_hubspot();
    assert_eq!(cookies::read("hubspotutk"), None, "deleted");
    assert_eq!(cookies::read("other").as_deref(), Some("a b"), "other cookies stay");
    // A sandboxed document: document.cookie throws.
    js(r#"Object.defineProperty(document, "cookie", { configurable: true,
          get() { throw new DOMException("no cookies", "SecurityError"); },
          set() { throw new DOMException("no cookies", "SecurityError"); } });"#);
    assert_eq!(cookies::read("other"), None);
    cookies::delete_hubspot();
    js(r#"delete document.cookie;"#);
}

async fn start_error(options: &str) -> String {
    let opts = if options.is_empty() { JsValue::UNDEFINED } else { js(&format!("return {options};")) };
    match StableIdentity::start(opts).await {
        Ok(_) => String::from("resolved"),
        Err(e) => {
            assert!(e.is_instance_of::<js_sys::TypeError>(), "a TypeError: {e:?}");
            Reflect::get(&e, &"message".into()).unwrap().as_string().unwrap()
        }
    }
}

#[wasm_bindgen_test]
async fn bad_options_reject_start_naming_the_option() {
    let jws = "\"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1XzEiLCJlbWFpbCI6ImFAeC5pbyJ9.c2ln\"";
    let cases = [
        (String::new(), "needs an options object"),
        ("[]".into(), "needs an options object"),
        (format!("{{assertion: {jws}}}"), "option `relayUrl` must be the relay's identity URL"),
        (format!("{{relayUrl: 5, assertion: {jws}}}"), "`relayUrl` must be the relay's identity URL, e.g. \"/hsq/v1/identity\", got a number"),
        ("{relayUrl: \"/r\", assertion: \"nope\"}".into(), "`assertion` must be a compact JWS string"),
        (format!("{{relayUrl: \"/r\", assertion: {jws}, storage: \"cookie\"}}"), "`storage` must be \"session\", \"local\" or \"none\", got \"cookie\""),
        (format!("{{relayUrl: \"/r\", assertion: {jws}, timeoutMs: 2.5}}"), "`timeoutMs` must be a number of milliseconds from 1 to 60000, got a number that is not a whole"),
        (format!("{{relayUrl: \"/r\", assertion: {jws}, portalId: \"12ab\"}}"), "`portalId` must be your HubSpot account id (digits), got \"12ab\""),
        (format!("{{relayUrl: \"/r\", assertion: {jws}, guard: null}}"), "`guard` must be true or false, got null"),
        (format!("{{relayUrl: \"/r\", assertion: {jws}, onEvent: []}}"), "`onEvent` must be a function, got an array"),
        (format!("{{relayUrl: \"/r\", assertion: {jws}, relyUrl: \"/typo\"}}"), "unknown option `relyUrl`; known options: relayUrl, assertion"),
        ("{relayUrl: \"/r\", assertion: () => 42}".into(), "option `assertion`: the assertion function must return a compact JWS string"),
        ("{relayUrl: \"/r\", assertion: () => { throw new Error(\"no session\"); }}".into(), "option `assertion`: the assertion function failed: no session"),
        ("{relayUrl: \"/r\", assertion: () => Promise.reject(\"offline\")}".into(), "the assertion function failed: offline"),
        ("{relayUrl: \"/r\", assertion: \"a.b.c\"}".into(), "option `assertion`: its payload has no sub and email claims"),
    ];
    for (options, want) in cases {
        let got = start_error(&options).await;
        assert!(got.contains(want), "{options}: {got}");
        assert!(got.starts_with("hsq-identity: "), "{got}");
    }
}

/// A token whose payload is `payload_js` (a JS expression for the payload's text) as base64url.
fn token_with(payload_js: &str) -> String {
    let code = format!(
        "return 'h.' + btoa({payload_js}).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '') + '.s'"
    );
    js(&code).as_string().unwrap()
}

#[wasm_bindgen_test]
fn claims_are_read_as_utf8_and_bad_payloads_are_none() {
    use hsq_identity::web::shell::claims;
    // UTF-8 bytes of the JSON as a binary string, as a JWS payload carries them.
    let utf8 = |json: &str| format!("unescape(encodeURIComponent({json:?}))");
    let c = claims(&token_with(&utf8(r#"{"sub":"u_1","email":" Jöl.Ünï@X.io ","exp":1}"#))).expect("claims");
    assert_eq!((c.sub.as_str(), c.email.as_str()), ("u_1", "jöl.ünï@x.io"));
    // Not UTF-8 (a lone 0xFF byte), no sub, not JSON, not base64: none, and no panic.
    assert!(claims(&token_with(r#"'{"sub":"u","email":"\xff@x.io"}'"#)).is_none());
    assert!(claims(&token_with(&utf8(r#"{"email":"a@x.io"}"#))).is_none());
    assert!(claims(&token_with("'not json'")).is_none());
    assert!(claims("h.%%%.s").is_none());
}

#[wasm_bindgen_test]
fn a_mistyped_ticket_reads_as_none_and_the_error_names_the_kind_not_the_value() {
    use hsq_identity::web::types::{from_js, Ticket};
    // The patched serde-wasm-bindgen (vendor/serde-wasm-bindgen/PATCHED.md): the message names
    // what was found without formatting it, so no f64 or Debug formatting is in the package.
    let m = |v: JsValue| {
        let e: JsValue = serde_wasm_bindgen::from_value::<String>(v).unwrap_err().into();
        Reflect::get(&e, &"message".into()).unwrap().as_string().unwrap()
    };
    assert_eq!(m(JsValue::from(1.5)), "invalid type: a number, expected a string");
    assert_eq!(m(JsValue::TRUE), "invalid type: a boolean, expected a string");
    assert_eq!(m(js("return {}")), "invalid type: another value, expected a string");
    // A ticket whose fields have the wrong types is no ticket; its right fields still read.
    assert!(from_js::<Ticket>(js("return {id: 5, state: 'confirmed'}")).is_none());
    assert!(from_js::<Ticket>(js("return {id: 'u', state: ['confirmed']}")).is_none());
    let t = from_js::<Ticket>(js("return {id: 'u', state: 'confirmed', exp: 1.5}")).expect("a ticket");
    assert_eq!((t.id.as_deref(), t.exp), (Some("u"), Some(1.5)));
}
