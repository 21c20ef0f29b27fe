//! The collected-forms guard. HubSpot's tracker captures submissions of the page's own `<form>`s
//! and dedupes them by the browser's usertoken first, so an app's settings form that changes the
//! user's email would rewrite the contact's email behind the relay (hubspot-behavior.md sections 2
//! and 10). Its opt-out, `data-hs-do-not-collect="true"`, is read when the tracker binds a form:
//! every form is marked before the tracker script is inserted, and every form added later as it
//! is added (this observer exists before the tracker's, so it sees each addition first).

use crate::core::options::{bad_selector, CollectForms};
use js_sys::Array;
use wasm_bindgen::prelude::*;
use web_sys::{Element, MutationObserver};

/// The forms still to mark: not marked by anyone yet (a form that carries the attribute, with
/// any value, is the app's decision).
const UNMARKED: &str = "form:not([data-hs-do-not-collect])";

/// Marks `el` if it is an unmarked form, and every unmarked form inside it, except those `sel`
/// leaves to HubSpot. `el` may be a node of any kind: a text node has no `matches`, and the
/// call's error is dropped. False when `sel` could not be used (the app's selector is invalid).
fn scan(el: &JsValue, sel: &str) -> bool {
    let mark = |f: &JsValue| {
        let _ = f.unchecked_ref::<Element>().set_attribute("data-hs-do-not-collect", "true");
    };
    let el: &Element = el.unchecked_ref();
    if el.matches(sel).unwrap_or(false) {
        mark(el);
    }
    el.query_selector_all(sel).map(|inside| Array::from(&inside).iter().for_each(|f| mark(&f))).is_ok()
}

/// Guards the page's forms as `choice` says; a selector the browser cannot read is an error.
pub fn guard(choice: CollectForms) -> Result<(), String> {
    let sel = match choice {
        CollectForms::All => return Ok(()),
        CollectForms::None => String::from(UNMARKED),
        // `:not()` of a selector list (Selectors 4: Chrome 88, Firefox 84, Safari 9).
        CollectForms::Matching(k) => String::from(UNMARKED) + ":not(" + k + ")",
    };
    let Some(root) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.document_element()) else { return Ok(()) };
    let root = JsValue::from(root);
    if !scan(&root, &sel) {
        if let CollectForms::Matching(k) = choice {
            return Err(bad_selector(k));
        }
    }
    let added = Closure::<dyn Fn(JsValue)>::new(move |records: JsValue| {
        for r in records.unchecked_into::<Array>().iter() {
            Array::from(&super::get(&r, "addedNodes")).iter().for_each(|n| {
                scan(&n, &sel);
            });
        }
    })
    .into_js_value();
    if let Ok(o) = MutationObserver::new(added.unchecked_ref()) {
        // A plain object: MutationObserverInit's setters would each be an import.
        let init = js_sys::Object::new();
        super::set(&init, "childList", &JsValue::TRUE);
        super::set(&init, "subtree", &JsValue::TRUE);
        let _ = o.observe_with_options(root.unchecked_ref(), init.unchecked_ref());
    }
    Ok(())
}
