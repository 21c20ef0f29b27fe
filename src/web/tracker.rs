//! HubSpot's scripts on the page: the tracker script tag, the chat widget's settings and API, and
//! the privacy-consent listener. Every failure is dropped: the page goes on without them.

use js_sys::{Array, Function, Object};
use wasm_bindgen::prelude::*;

/// Inserts `<script id="hs-script-loader" src async defer>` unless the page has it already.
pub fn insert_script(src: &str) {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else { return };
    if doc.get_element_by_id("hs-script-loader").is_some() {
        return;
    }
    let Ok(s) = doc.create_element("script") else { return };
    for (k, v) in [("id", "hs-script-loader"), ("src", src), ("async", ""), ("defer", "")] {
        let _ = s.set_attribute(k, v);
    }
    let parent = doc.head().map(web_sys::Element::from).or_else(|| doc.document_element());
    if let Some(p) = parent {
        let _ = p.append_child(&s);
    }
}

/// Sets `window.hsConversationsSettings` before the widget loads, keeping what the page set:
/// `loadImmediately: false`, and the identification email and token only when both are given.
pub fn chat_settings(email: Option<&str>, token: Option<&str>) {
    let win = super::global();
    let s = Object::new();
    let current = super::get(&win, "hsConversationsSettings");
    if current.is_object() {
        Object::assign(&s, current.unchecked_ref());
    }
    super::set(&s, "loadImmediately", &JsValue::FALSE);
    let _ = js_sys::Reflect::delete_property(&s, &"identificationEmail".into());
    let _ = js_sys::Reflect::delete_property(&s, &"identificationToken".into());
    if let (Some(e), Some(t)) = (email, token) {
        super::set(&s, "identificationEmail", &e.into());
        super::set(&s, "identificationToken", &t.into());
    }
    super::set(&win, "hsConversationsSettings", &s);
}

/// Runs `f(HubSpotConversations)` now if the chat API is ready, else when it is
/// (`hsConversationsOnReady`).
pub fn with_chat(f: impl FnOnce(JsValue) + 'static) {
    let win = super::global();
    let api = super::get(&win, "HubSpotConversations");
    if api.is_object() {
        return f(api);
    }
    let run = Closure::once_into_js(move || f(super::get(&super::global(), "HubSpotConversations")));
    let mut ready = super::get(&win, "hsConversationsOnReady");
    if !ready.is_object() {
        ready = Array::new().into();
        super::set(&win, "hsConversationsOnReady", &ready);
    }
    super::call_method(&ready, "push", &Array::of1(&run));
}

/// Loads the chat widget identified with `email` and `token` (anonymous without them); `reload`
/// removes the loaded widget first.
pub fn load_chat(email: Option<String>, token: Option<String>, reload: bool) {
    chat_settings(email.as_deref(), token.as_deref());
    with_chat(move |api| {
        let widget = super::get(&api, "widget");
        if reload {
            super::call_method(&widget, "remove", &Array::new());
        }
        super::call_method(&widget, "load", &Array::new());
    });
}

/// `HubSpotConversations.clear({resetWidget: true})` once the chat API is ready.
pub fn clear_chat() {
    with_chat(|api| {
        let o = Object::new();
        super::set(&o, "resetWidget", &JsValue::TRUE);
        super::call_method(&api, "clear", &Array::of1(&o));
    });
}

/// Registers `listener` with HubSpot's privacy-consent API (`_hsp.push(["addPrivacyConsentListener", f])`).
pub fn on_consent(listener: &Function) {
    let win = super::global();
    let mut hsp = super::get(&win, "_hsp");
    if hsp.is_falsy() {
        hsp = Array::new().into();
        super::set(&win, "_hsp", &hsp);
    }
    super::call_method(&hsp, "push", &Array::of1(&super::entry("addPrivacyConsentListener", listener)));
}

/// Whether the tracker has run on this page (`window._hstc_ran`).
pub fn tracker_ran() -> bool {
    super::get(&super::global(), "_hstc_ran").is_truthy()
}
