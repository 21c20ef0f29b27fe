//! The web shell: everything that reads or writes the page, on web-sys, js-sys and gloo-net.
//! Every decision comes from [`crate::core`]. Nothing here throws into the page from a queue
//! callback or leaves a promise rejection unhandled: each JS call that may throw is imported with
//! `catch` (web-sys and js-sys `Result`s), and its error is handled or dropped on purpose.
//!
//! - [`queue`]: the `_hsq.push` hook.
//! - [`cookies`], [`storage`]: HubSpot's cookies and the ticket cache, failing quietly.
//! - [`forms`]: marks the page's forms so HubSpot's collected forms leave them alone.
//! - [`relay`]: the relay call (gloo-net, a timeout by `AbortController`) and lease release.
//! - [`tracker`]: the tracker script, chat widget and consent listener.
//! - [`shell`]: the page's session and the exported `StableIdentity` class.
//! - [`types`]: the serde types that cross to JS (tickets, events, the relay request).

pub mod cookies;
pub mod forms;
pub mod queue;
pub mod relay;
pub mod shell;
pub mod storage;
pub mod tracker;
pub mod types;

use js_sys::{Array, Function, Reflect};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout_js(f: &JsValue, ms: f64) -> f64;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout_js(id: f64);
    #[wasm_bindgen(catch, js_name = String)]
    fn js_string(v: &JsValue) -> Result<String, JsValue>;
}

/// Runs `f` once after `ms` (at least 0). Answers the timer's id for [`clear_timeout`].
pub fn set_timeout(ms: f64, f: impl FnOnce() + 'static) -> f64 {
    set_timeout_js(&Closure::once_into_js(f), if ms > 0.0 { ms } else { 0.0 })
}

/// Cancels a timer from [`set_timeout`]; 0 is no timer.
pub fn clear_timeout(id: f64) {
    if id != 0.0 {
        clear_timeout_js(id);
    }
}

/// The page's clock, ms.
pub fn now() -> f64 {
    js_sys::Date::now()
}

/// `globalThis`.
pub fn global() -> JsValue {
    js_sys::global().into()
}

/// `obj[key]`, or undefined when reading it throws (a getter) or `obj` is not an object.
pub fn get(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() && !obj.is_function() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `obj[key] = value`; false when it could not be set.
pub fn set(obj: &JsValue, key: &str, value: &JsValue) -> bool {
    obj.is_object() && Reflect::set(obj, &JsValue::from_str(key), value).unwrap_or(false)
}

/// Calls `obj[key](args...)` with `obj` as `this`; an error or a missing method is dropped.
pub fn call_method(obj: &JsValue, key: &str, args: &Array) -> Option<JsValue> {
    let f = get(obj, key).dyn_into::<Function>().ok()?;
    f.apply(obj, args).ok()
}

/// The message of a thrown value: an `Error`'s message, or the value as a string (a third-party
/// script may throw a string).
pub fn message_of(e: &JsValue) -> String {
    if let Some(m) = get(e, "message").as_string() {
        return m;
    }
    js_string(e).unwrap_or_default()
}

/// A number as JS writes it (`String(n)`), without Rust's number formatting in the wasm.
pub fn number_text(n: f64) -> String {
    js_string(&JsValue::from_f64(n)).unwrap_or_default()
}

/// A `TypeError` with `message`, as `start` and the methods reject or throw it.
pub fn type_error(message: &str) -> JsValue {
    js_sys::TypeError::new(message).into()
}

/// A two-element `_hsq` entry, e.g. `["identify", {...}]`.
pub fn entry(command: &str, arg: &JsValue) -> JsValue {
    Array::of2(&JsValue::from_str(command), arg).into()
}

/// The command of a `_hsq` entry (`e[0]` when `e` is an array).
pub fn command_of(e: &JsValue) -> Option<String> {
    if Array::is_array(e) {
        Reflect::get_u32(e, 0).ok()?.as_string()
    } else {
        None
    }
}

/// `location.pathname + location.search`.
pub fn page_path() -> String {
    let Some(w) = web_sys::window() else { return String::new() };
    let l = w.location();
    let mut s = l.pathname().unwrap_or_default();
    s.push_str(&l.search().unwrap_or_default());
    s
}
