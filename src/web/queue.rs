//! The hook on HubSpot's command queue, `window._hsq`.
//!
//! `_hsq.push` becomes an accessor property (`Object.defineProperty` with get/set closures): the
//! getter answers our push, and when the tracker assigns its own dispatcher on load, the setter
//! keeps that as the inner push, so every entry still goes through the filter first. Entries queued
//! before the hook have not run yet, so they go through the filter too.

use alloc::rc::Rc;
use core::cell::RefCell;
use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = "export function variadic(q, f) { return function () { for (let i = 0; i < arguments.length; i++) f(arguments[i]); return q.length; }; }")]
extern "C" {
    /// A `push(...entries)` that hands each argument to `f` and answers the queue's length. (A
    /// Rust closure has a fixed arity; `push` takes any number of entries.)
    fn variadic(q: &Array, f: &Function) -> Function;
}

/// The filter: answers the entry to pass on (maybe rewritten), or `None` to hold it back.
pub type Filter = dyn Fn(JsValue) -> Option<JsValue>;

/// A hooked `_hsq`.
#[derive(Debug, Clone)]
pub struct Queue {
    q: Array,
    /// The tracker's dispatcher once it assigned one, else none (entries wait in the array).
    inner: Rc<RefCell<Option<Function>>>,
    /// `Array.prototype.push`, for the array itself (its own `push` is the hook).
    array_push: Function,
}

impl Queue {
    /// Hooks `window._hsq` (creating it if it is not an array). Fails only when the page made
    /// `_hsq` or its `push` impossible to redefine.
    pub fn hook(filter: Rc<Filter>) -> Result<Queue, JsValue> {
        let win = super::global();
        let q = super::get(&win, "_hsq");
        let q: Array = if Array::is_array(&q) {
            q.unchecked_into()
        } else {
            let a = Array::new();
            Reflect::set(&win, &"_hsq".into(), &a)?;
            a
        };
        let key = JsValue::from_str("push");
        let current = super::get(&q, "push");
        // A dispatcher already in place (the tracker loaded first) stays the inner push.
        let inner = match current.dyn_into::<Function>() {
            Ok(f) if Object::has_own(&q, &key) => Some(f),
            _ => None,
        };
        let array_push: Function = super::get(&Array::new(), "push").dyn_into()?;
        let queue = Queue { q: q.clone(), inner: Rc::new(RefCell::new(inner)), array_push };

        let sender = queue.clone();
        let each = Closure::<dyn Fn(JsValue)>::new(move |e: JsValue| {
            if let Some(out) = filter(e) {
                sender.send(&out);
            }
        })
        .into_js_value();
        let push: Function = variadic(&q, each.unchecked_ref());
        let get = {
            let push = push.clone();
            Closure::<dyn Fn() -> JsValue>::new(move || push.clone().into()).into_js_value()
        };
        let set = {
            let (push, inner) = (push.clone(), queue.inner.clone());
            Closure::<dyn Fn(JsValue)>::new(move |v: JsValue| {
                if v != JsValue::from(&push) {
                    *inner.borrow_mut() = v.dyn_into::<Function>().ok();
                }
            })
            .into_js_value()
        };
        let desc = Object::new();
        Reflect::set(&desc, &"configurable".into(), &JsValue::TRUE)?;
        Reflect::set(&desc, &"get".into(), &get)?;
        Reflect::set(&desc, &"set".into(), &set)?;
        if !Reflect::define_property(&q, &key, &desc)? {
            return Err(super::type_error("hsq-identity: window._hsq.push cannot be redefined"));
        }
        // What was queued before the hook goes through it now, in order.
        let waiting = q.slice(0, q.length());
        q.set_length(0);
        for e in waiting.iter() {
            let _ = push.call1(&q, &e);
        }
        Ok(queue)
    }

    /// Passes an entry on, past the filter: to the tracker's dispatcher, or into the array before
    /// the tracker loads. An error thrown by the tracker is dropped.
    pub fn send(&self, e: &JsValue) {
        let inner = self.inner.borrow().clone();
        let _ = match inner {
            Some(f) => f.call1(&self.q, e),
            None => self.array_push.call1(&self.q, e),
        };
    }

    /// The queue array itself.
    pub fn array(&self) -> &Array {
        &self.q
    }
}
