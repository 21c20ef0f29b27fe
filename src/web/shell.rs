//! The page's session: the exported `StableIdentity` class (DESIGN.md section 6) and the
//! [`Shell`] behind it, which carries out the core's plans on the page.
//!
//! State lives in `Rc<Shell>` with `Cell`s and short `RefCell` borrows: no borrow is held while
//! JS runs (the page's `onEvent`, the tracker's dispatcher, the assertion function), so any of
//! them may call back into the module (`_hsq.push`, `trackPageView`) without a conflict.

use super::queue::Queue;
use super::types::{from_json, to_js, to_json, AskBody, Claims, PageEvent, Ticket};
use super::{cookies, relay, storage, tracker};
use crate::core::options::{self, AssertionSource, Consent, Storage, Val};
use crate::core::session::{Event, Plan, Session, HOLD_MARGIN_MS};
use crate::core::ticket::{self, State};
use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
use js_sys::{Array, Function, Object, Promise, Reflect, WeakSet};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};

const CACHE_KEY: &str = "hsq-identity:ticket";
/// Entries still held when a page went away, for the next page of the tab.
const HELD_KEY: &str = "hsq-identity:held";
/// Held entries beyond this drop oldest first.
const HELD_MAX: usize = 1000;
/// A lease given back on page hide lives this long at the relay (at least).
const RELEASE_GRACE_MS: f64 = 10_000.0;
/// After `beforeunload`, held entries stay held this long if the page stays.
const LEAVE_WAIT_MS: f64 = 10_000.0;

/// The validated options the shell keeps.
#[derive(Debug)]
struct Opts {
    relay_url: String,
    portal_id: Option<String>,
    tracker_url: Option<String>,
    guard: bool,
    chat: bool,
    storage: Storage,
    timeout_ms: f64,
}

/// What the filter and plans read of the session at one moment.
struct Snap {
    sub: String,
    holding: bool,
    safe_email: Option<String>,
    lease_until: Option<f64>,
}

/// One page's identity, on the page.
#[derive(Debug)]
pub struct Shell {
    o: Opts,
    on_event: Option<Function>,
    assertion_fn: Option<Function>,
    token_value: RefCell<String>,
    core: RefCell<Option<Session>>,
    /// Bumped whenever `core` is replaced or dropped: an answer for an older one is ignored.
    generation: Cell<u32>,
    queue: RefCell<Option<Queue>>,
    ticket: RefCell<Option<Ticket>>,
    held: RefCell<Vec<JsValue>>,
    restored: RefCell<Vec<JsValue>>,
    /// `setPath` entries the shell put before held page views.
    pins: WeakSet,
    asking: Cell<bool>,
    again: Cell<bool>,
    ask_timer: Cell<f64>,
    tick_timer: Cell<f64>,
    flush_timer: Cell<f64>,
    tracker_inserted: Cell<bool>,
    /// The email the chat widget was loaded with: none yet, `Some(None)` anonymous.
    chat_as: RefCell<Option<Option<String>>>,
    consented: Cell<bool>,
    path_sent: Cell<bool>,
    /// Until consent and the relay's first answer (or the timeout).
    settling: Cell<bool>,
    last_hit: Cell<f64>,
    /// From `beforeunload` (a navigation away has begun) until the page is hidden: held entries
    /// stay held, for the next page. A hit the tracker fired now would be cancelled with the page.
    leaving: Cell<bool>,
    leave_timer: Cell<f64>,
    /// The `beforeunload` listener, added only while entries are held.
    on_leave: RefCell<Option<JsValue>>,
}

/// Whether a `_hsq` entry sends a hit.
fn is_hit(e: &JsValue) -> bool {
    matches!(super::command_of(e).as_deref(), Some("trackPageView" | "trackCustomBehavioralEvent" | "trackEvent"))
}

/// `sub` and `email` (trimmed, lowercased) from an assertion's payload. Unverified: the relay
/// verifies; the page only needs to know whose it is.
pub fn claims(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    let b64: String = payload.chars().map(|c| match c { '-' => '+', '_' => '/', c => c }).collect();
    let binary = web_sys::window()?.atob(&b64).ok()?;
    // The payload's UTF-8 bytes as Latin-1 text: escape() makes them %XX, decodeURIComponent
    // reads those as UTF-8 (a URIError when they are not), without Rust's UTF-8 validation code.
    let text = String::from(js_sys::decode_uri_component(&String::from(js_sys::escape(&binary))).ok()?);
    let t: Ticket = from_json(&text)?;
    let email = String::from(js_sys::JsString::from(t.email?.as_str()).trim().to_lower_case());
    Some(Claims { sub: t.sub?, email })
}

fn kind_of(v: &JsValue) -> Val<'static> {
    if v.is_undefined() {
        Val::Undefined
    } else if v.is_null() {
        Val::Other("null")
    } else if let Some(n) = v.as_f64() {
        options::number(n)
    } else if let Some(b) = v.as_bool() {
        Val::Bool(b)
    } else if v.is_function() {
        Val::Func
    } else if Array::is_array(v) {
        Val::Other("an array")
    } else {
        Val::Other("an object")
    }
}

/// A JWS has three dot-separated parts.
fn is_jws(s: &str) -> bool {
    s.split('.').count() == 3
}

fn page_event<'a>(e: &'a Event) -> PageEvent<'a> {
    match e {
        Event::Identified { state: State::Confirmed, email, cached } => PageEvent {
            state: Some("confirmed"),
            email: Some(Some(email.as_deref().unwrap_or(""))),
            cached: Some(*cached),
            ..PageEvent::of("identified")
        },
        Event::Identified { state: State::Pending, .. } => PageEvent { state: Some("pending"), ..PageEvent::of("pending") },
        Event::Identified { state: State::Conflict, .. } => PageEvent { state: Some("conflict"), ..PageEvent::of("conflict") },
        Event::Identified { state: State::Unknown, .. } => PageEvent { state: Some("unknown"), ..PageEvent::of("unknown") },
        Event::Hold => PageEvent::of("hold"),
        Event::Release => PageEvent::of("release"),
        Event::LeaseReleased => PageEvent::of("lease-released"),
        Event::RotateUtk => PageEvent::of("rotate-utk"),
        Event::RelayError(m) => PageEvent { message: Some(m), ..PageEvent::of("relay-error") },
    }
}

/// A promise resolved when `f` ends or after `ms`, whichever comes first.
async fn race(ms: f64, f: impl core::future::Future<Output = ()> + 'static) {
    let mut resolve: Option<Function> = None;
    let p = Promise::new(&mut |res: Function, _: Function| resolve = Some(res));
    let Some(resolve) = resolve else { return };
    let r = resolve.clone();
    spawn_local(async move {
        f.await;
        let _ = r.call0(&JsValue::UNDEFINED);
    });
    super::set_timeout(ms, move || {
        let _ = resolve.call0(&JsValue::UNDEFINED);
    });
    let _ = JsFuture::from(p).await;
}

impl Shell {
    /// `StableIdentity.start(options)`: validates, hooks `_hsq`, and begins (see DESIGN.md 6).
    /// Only the two waits are async (the assertion, then the first decision); the work around
    /// them is in plain fns, so that no option or key list is held across an await.
    async fn start(options: JsValue) -> Result<Rc<Shell>, JsValue> {
        let (hs, consent) = Shell::prepare(&options)?;
        let got = match hs.token() {
            Ok(p) => JsFuture::from(p).await,
            Err(e) => Err(e),
        };
        if let Some(first) = hs.started(got, consent)? {
            let _ = first.await;
        }
        Ok(hs)
    }

    /// Validates the options and makes the shell.
    fn prepare(options: &JsValue) -> Result<(Rc<Shell>, Consent), JsValue> {
        if !options.is_object() || Array::is_array(&options) {
            return Err(super::type_error("hsq-identity: StableIdentity.start(options) needs an options object"));
        }
        let keys: Vec<String> = Object::keys(options.unchecked_ref::<Object>()).iter().filter_map(|k| k.as_string()).collect();
        let values: Vec<JsValue> = keys.iter().map(|k| super::get(&options, k)).collect();
        let texts: Vec<Option<String>> = values.iter().map(JsValue::as_string).collect();
        let fields: Vec<(&str, Val)> = keys
            .iter()
            .zip(values.iter().zip(texts.iter()))
            .map(|(k, (v, t))| (k.as_str(), t.as_deref().map_or_else(|| kind_of(v), Val::Str)))
            .collect();
        let meta = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.query_selector("meta[name=\"hsq-assertion\"]").ok().flatten())
            .and_then(|m| m.get_attribute("content"));
        let o = options::validate(&fields, meta.is_some()).map_err(|m| super::type_error(&m))?;
        // Before anything can insert the tracker, which reads the forms' opt-out as it binds them.
        super::forms::guard(o.collect_forms).map_err(|m| super::type_error(&m))?;
        let func = |k: &str| super::get(&options, k).dyn_into::<Function>().ok();
        let token = match o.assertion {
            AssertionSource::Token => texts[keys.iter().position(|k| k == "assertion").unwrap_or(0)].clone().unwrap_or_default(),
            AssertionSource::Meta => meta.unwrap_or_default(),
            AssertionSource::Function => String::new(),
        };
        let hs = Rc::new(Shell {
            o: Opts {
                relay_url: o.relay_url.into(),
                portal_id: o.portal_id,
                tracker_url: o.tracker_url.map(String::from),
                guard: o.guard,
                chat: o.chat,
                storage: o.storage,
                timeout_ms: o.timeout_ms,
            },
            on_event: func("onEvent"),
            assertion_fn: if o.assertion == AssertionSource::Function { func("assertion") } else { None },
            token_value: RefCell::new(token),
            core: RefCell::new(None),
            generation: Cell::new(0),
            queue: RefCell::new(None),
            ticket: RefCell::new(None),
            held: RefCell::new(Vec::new()),
            restored: RefCell::new(Vec::new()),
            pins: WeakSet::new(),
            asking: Cell::new(false),
            again: Cell::new(false),
            ask_timer: Cell::new(0.0),
            tick_timer: Cell::new(0.0),
            flush_timer: Cell::new(0.0),
            tracker_inserted: Cell::new(false),
            chat_as: RefCell::new(None),
            consented: Cell::new(false),
            path_sent: Cell::new(false),
            settling: Cell::new(true),
            last_hit: Cell::new(0.0),
            leaving: Cell::new(false),
            leave_timer: Cell::new(0.0),
            on_leave: RefCell::new(None),
        });
        *hs.on_leave.borrow_mut() = Some({
            let hs = hs.clone();
            Closure::<dyn Fn()>::new(move || hs.leave()).into_js_value()
        });
        Ok((hs, o.consent))
    }

    /// With the assertion: the session, the `_hsq` hook and the page's listeners; then the first
    /// decision (answered for `start` to wait on) or, before consent, the consent listener.
    fn started(self: &Rc<Self>, got: Result<JsValue, JsValue>, consent: Consent) -> Result<Option<JsFuture>, JsValue> {
        let hs = self;
        let token = hs.token_checked(got).map_err(|e| {
            let mut m = String::from("hsq-identity: option `assertion`: ");
            m.push_str(&e);
            super::type_error(&m)
        })?;
        let c = claims(&token)
            .ok_or_else(|| super::type_error("hsq-identity: option `assertion`: its payload has no sub and email claims"))?;
        hs.new_core(&c);
        let filter = {
            let hs = hs.clone();
            Rc::new(move |e: JsValue| hs.filter(e))
        };
        *hs.queue.borrow_mut() = Queue::hook(filter).ok();
        hs.restore_held();
        let win = super::global();
        if let Ok(target) = win.clone().dyn_into::<web_sys::EventTarget>() {
            let on_hide = {
                let hs = hs.clone();
                Closure::<dyn Fn()>::new(move || hs.hide()).into_js_value()
            };
            let on_show = {
                let hs = hs.clone();
                Closure::<dyn Fn(JsValue)>::new(move |e: JsValue| {
                    if super::get(&e, "persisted").is_truthy() {
                        hs.back();
                    }
                })
                .into_js_value()
            };
            let _ = target.add_event_listener_with_callback("pagehide", on_hide.unchecked_ref());
            let _ = target.add_event_listener_with_callback("pageshow", on_show.unchecked_ref());
        }
        if hs.o.chat {
            tracker::chat_settings(None, None);
        }
        if consent == Consent::Granted {
            return Ok(Some(hs.begin_spawned()));
        } else {
            // Nothing is identified or asked before analytics consent. HubSpot's tracker asks for
            // consent, so it may load at once.
            let listener = {
                let hs = hs.clone();
                Closure::<dyn Fn(JsValue)>::new(move |c: JsValue| {
                    let cats = super::get(&c, "categories");
                    let analytics = c.is_truthy() && (super::get(&cats, "analytics").is_truthy() || super::get(&c, "allowed").is_truthy());
                    hs.emit(&[PageEvent { analytics: Some(analytics), ..PageEvent::of("consent") }]);
                    if analytics && !hs.consented.get() {
                        let hs = hs.clone();
                        let _ = hs.begin_spawned();
                    }
                })
                .into_js_value()
            };
            tracker::on_consent(listener.unchecked_ref());
            hs.insert_tracker();
        }
        Ok(None)
    }

    fn new_core(&self, c: &Claims) {
        *self.core.borrow_mut() = Some(Session::new(c.sub.as_str(), c.email.as_str()));
        self.generation.set(self.generation.get().wrapping_add(1));
    }

    fn snap(&self) -> Option<Snap> {
        let now = super::now();
        self.core.borrow().as_ref().map(|s| Snap {
            sub: s.sub.clone(),
            holding: s.holding(now),
            safe_email: s.safe_email(now).map(String::from),
            lease_until: s.lease_until(),
        })
    }

    fn holding_now(&self) -> bool {
        let now = super::now();
        self.core.borrow().as_ref().is_some_and(|s| self.settling.get() || s.holding(now))
    }

    /// The assertion, as a promise: the token given, or what the assertion function answers.
    /// Not an async fn: callers await it inside their own state machine (each costs kilobytes).
    fn token(&self) -> Result<Promise, JsValue> {
        match &self.assertion_fn {
            None => Ok(Promise::resolve(&JsValue::from_str(self.token_value.borrow().as_str()))),
            Some(f) => f.call0(&JsValue::UNDEFINED).map(|v| Promise::resolve(&v)),
        }
    }

    /// The awaited [`Shell::token`], checked: a compact JWS string, or why not.
    fn token_checked(&self, got: Result<JsValue, JsValue>) -> Result<String, String> {
        let v = got.map_err(|e| {
            let mut m = String::from("the assertion function failed: ");
            m.push_str(&super::message_of(&e));
            m
        })?;
        match v.as_string() {
            Some(t) if is_jws(&t) => {
                *self.token_value.borrow_mut() = t.clone();
                Ok(t)
            }
            _ => Err(String::from("the assertion function must return a compact JWS string")),
        }
    }

    fn cache_get(&self) -> Option<Ticket> {
        from_json(&storage::get(self.o.storage, CACHE_KEY)?)
    }

    fn cache_put(&self, t: Option<&Ticket>) {
        match t.and_then(to_json) {
            Some(json) => {
                storage::set(self.o.storage, CACHE_KEY, &json);
            }
            None => storage::remove(self.o.storage, CACHE_KEY),
        }
    }

    fn emit(&self, events: &[PageEvent]) {
        if let Some(f) = &self.on_event {
            for e in events {
                let _ = f.call1(&JsValue::UNDEFINED, &to_js(e));
            }
        }
    }

    fn insert_tracker(&self) {
        if self.tracker_inserted.get() {
            return;
        }
        let Some(portal) = &self.o.portal_id else { return };
        self.tracker_inserted.set(true);
        let src = match &self.o.tracker_url {
            Some(u) => u.clone(),
            None => String::from("https://js.hs-scripts.com/") + portal + ".js",
        };
        tracker::insert_script(&src);
    }

    /// Entries a previous page of this tab still held when it went away go through the filter
    /// again (held here too while this page must hold, else sent now).
    fn restore_held(&self) {
        if self.o.storage == Storage::None {
            return;
        }
        let kept = storage::get(self.o.storage, HELD_KEY).and_then(|t| js_sys::JSON::parse(&t).ok());
        storage::remove(self.o.storage, HELD_KEY);
        if let Some(k) = kept.filter(Array::is_array) {
            *self.restored.borrow_mut() = k.unchecked_into::<Array>().iter().collect();
        }
        self.watch_leave();
    }

    /// Listens for `beforeunload` only while entries are held (the listener costs Firefox's
    /// back-forward cache, so it is not kept for nothing).
    fn watch_leave(&self) {
        let want = !self.held.borrow().is_empty() || !self.restored.borrow().is_empty();
        let listener = self.on_leave.borrow().clone();
        let target = super::global().dyn_into::<web_sys::EventTarget>().ok();
        if let (Some(t), Some(f)) = (target, listener) {
            let _ = if want {
                t.add_event_listener_with_callback("beforeunload", f.unchecked_ref())
            } else {
                t.remove_event_listener_with_callback("beforeunload", f.unchecked_ref())
            };
        }
    }

    /// A navigation away has begun: what is held now stays held, and goes to the next page at
    /// page hide. Released now, the tracker's image request would die with this page. If the page
    /// stays after all (a download, a cancelled navigation), the entries go after LEAVE_WAIT_MS.
    fn leave(self: &Rc<Self>) {
        self.leaving.set(true);
        super::clear_timeout(self.leave_timer.get());
        let hs = self.clone();
        self.leave_timer.set(super::set_timeout(LEAVE_WAIT_MS, move || {
            hs.leaving.set(false);
            hs.flush();
        }));
    }

    /// Back from the back-forward cache: what this page handed over at page hide and no next page
    /// took is this page's again (a page that took it sent it); hits wait for a new lease.
    fn back(self: &Rc<Self>) {
        self.leaving.set(false);
        super::clear_timeout(self.leave_timer.get());
        if self.o.storage != Storage::None {
            let kept = storage::get(self.o.storage, HELD_KEY).and_then(|t| js_sys::JSON::parse(&t).ok());
            storage::remove(self.o.storage, HELD_KEY);
            if let Some(k) = kept.filter(Array::is_array) {
                self.held.borrow_mut().splice(0..0, k.unchecked_into::<Array>().iter());
            }
        }
        self.watch_leave();
        self.tick();
        self.flush();
    }

    /// The `_hsq.push` filter: the guard rewrites other code's identify to the safe identity;
    /// until consent and the relay's first answer, and while the tracker carries an email without
    /// a live lease, entries are held, in order.
    fn filter(&self, entry: JsValue) -> Option<JsValue> {
        let st = self.snap();
        let mut out = entry;
        // Other code's identify with an email this page does not send: (given, sent instead).
        let mut guard: Option<(String, Option<String>)> = None;
        if self.o.guard && super::command_of(&out).as_deref() == Some("identify") {
            let arg = Reflect::get_u32(&out, 1).unwrap_or(JsValue::UNDEFINED);
            if arg.is_object() {
                let copy = Object::assign(&Object::new(), arg.unchecked_ref());
                let given = super::get(&copy, "email").as_string();
                let email = st.as_ref().and_then(|s| s.safe_email.clone());
                match &st {
                    Some(s) => {
                        super::set(&copy, "id", &s.sub.as_str().into());
                    }
                    None => {
                        let _ = Reflect::delete_property(&copy, &"id".into());
                    }
                }
                match &email {
                    Some(e) => {
                        super::set(&copy, "email", &e.as_str().into());
                    }
                    None => {
                        let _ = Reflect::delete_property(&copy, &"email".into());
                    }
                }
                if let Some(g) = given.filter(|g| Some(g) != email.as_ref()) {
                    guard = Some((g, email));
                }
                out = super::entry("identify", &copy);
            }
        }
        // Until consent and the relay's first answer (or the timeout), entries wait too, the
        // tracker's automatic view among them: HubSpot calls the consent listener while it drains
        // the queue, after it took the queued entries, so an identify pushed then would only
        // follow the view. Held, the view goes out after the identify.
        let hold = st.as_ref().is_some_and(|s| self.settling.get() || s.holding || self.leaving.get()) || !self.held.borrow().is_empty();
        let mut first_held = false;
        let result = if hold {
            let mut held = self.held.borrow_mut();
            if held.len() >= HELD_MAX {
                held.remove(0);
            }
            // A held page view keeps the path it was made on, even if it goes out from another page.
            let after_set_path = held.last().is_some_and(|l| super::command_of(l).as_deref() == Some("setPath"));
            if super::command_of(&out).as_deref() == Some("trackPageView") && !after_set_path {
                let pin = super::entry("setPath", &super::page_path().into());
                self.pins.add(pin.unchecked_ref());
                held.push(pin);
            }
            held.push(out);
            first_held = held.len() == 1;
            None
        } else if out.is_undefined() {
            None
        } else {
            Some(out)
        };
        if first_held {
            self.watch_leave();
        }
        if let Some((given, sent)) = &guard {
            self.emit(&[PageEvent { email: Some(Some(given)), sent: Some(sent.as_deref()), ..PageEvent::of("guard") }]);
        }
        result
    }

    /// Passes an entry to the tracker. A path pinned to a held view is left out when the view goes
    /// from the page it was made on, at the same address, and the page never set a path: the view
    /// is then exactly what it would have been unheld.
    fn out(self: &Rc<Self>, e: JsValue) {
        if is_hit(&e) && super::now() <= self.last_hit.get() {
            // A second hit in the same millisecond would be the same image URL, which the browser
            // fetches once: it waits a moment, and what comes after waits behind it.
            self.held.borrow_mut().insert(0, e);
            if self.flush_timer.get() == 0.0 {
                let hs = self.clone();
                self.flush_timer.set(super::set_timeout(1.0, move || {
                    hs.flush_timer.set(0.0);
                    hs.flush();
                }));
            }
            return;
        }
        let command = super::command_of(&e);
        if e.is_object() && self.pins.has(e.unchecked_ref()) && !self.path_sent.get() {
            let path = Reflect::get_u32(&e, 1).ok().and_then(|p| p.as_string());
            if path.as_deref() == Some(super::page_path().as_str()) {
                return;
            }
        }
        if command.as_deref() == Some("setPath") {
            self.path_sent.set(true);
        }
        let q = self.queue.borrow().clone();
        if let Some(q) = q {
            q.send(&e);
        }
        if is_hit(&e) {
            // After: the tracker reads the clock as it sends.
            self.last_hit.set(super::now());
        }
    }

    /// Sends held entries, in order, unless the page must hold them.
    fn flush(self: &Rc<Self>) {
        loop {
            if self.leaving.get() || self.holding_now() {
                break;
            }
            let e = {
                let mut held = self.held.borrow_mut();
                if held.is_empty() {
                    break;
                }
                held.remove(0)
            };
            self.out(e.clone());
            if self.held.borrow().first() == Some(&e) {
                return; // it waits a moment (see `out`)
            }
        }
        if self.held.borrow().is_empty() {
            self.watch_leave();
        }
    }

    fn push(self: &Rc<Self>, entry: JsValue) {
        if let Some(out) = self.filter(entry) {
            self.out(out);
        }
    }

    /// Carries out a plan from the core.
    fn apply(self: &Rc<Self>, p: Plan) {
        let st = self.snap(); // the session after this plan, read once
        let mut sends: Vec<JsValue> = Vec::new();
        if let Some(l) = &p.release_lease {
            relay::release(&self.o.relay_url, l, false);
        }
        let reset_visitor = || JsValue::from(Array::of1(&"resetVisitor".into()));
        if p.reset_visitor {
            sends.push(reset_visitor());
        }
        if p.rotate_utk {
            cookies::delete_hubspot();
            if tracker::tracker_ran() {
                sends.push(reset_visitor()); // the tracker already read the old cookies
            }
        }
        if let (Some(identify), Some(s)) = (&p.identify, &st) {
            let o = Object::new();
            super::set(&o, "id", &s.sub.as_str().into());
            if let Some(e) = identify {
                super::set(&o, "email", &e.as_str().into());
            }
            sends.push(super::entry("identify", &o));
        }
        let release = if p.release_held && !self.leaving.get() { self.held.borrow().len() as u32 } else { 0 };
        if p.release_held {
            self.settling.set(false); // the relay answered
        }
        let mut events: Vec<PageEvent> = p.events.iter().map(page_event).collect();
        if release > 0 {
            events.retain(|e| e.kind != "release");
            events.push(PageEvent { count: Some(release), ..PageEvent::of("release") });
        }
        if let Some(c) = p.chat.as_ref().filter(|c| self.o.chat && !c.email.is_empty()) {
            let mut chat_as = self.chat_as.borrow_mut();
            if chat_as.as_ref() != Some(&Some(c.email.clone())) {
                let reload = chat_as.is_some();
                *chat_as = Some(Some(c.email.clone()));
                drop(chat_as);
                tracker::load_chat(Some(c.email.clone()), Some(c.token.clone()).filter(|t| !t.is_empty()), reload);
            }
        }
        let ticket = self.ticket.borrow().clone();
        if let (Some(mut t), Some(s)) = (ticket, &st) {
            t.lease_until_local = s.lease_until;
            self.cache_put(Some(&t));
        }
        let now = super::now();
        let ask_in = p.renew_at.map(|r| r - now).or(p.poll_in);
        if let Some(ms) = ask_in {
            super::clear_timeout(self.ask_timer.get());
            let hs = self.clone();
            self.ask_timer.set(super::set_timeout(ms, move || spawn_local(async move { hs.ask().await })));
        }
        // A timer for the moment hits must stop, if that is still to come (once past, the ask
        // above is what ends the hold).
        if let Some(until) = st.as_ref().and_then(|s| s.lease_until) {
            if until - HOLD_MARGIN_MS >= now {
                super::clear_timeout(self.tick_timer.get());
                let hs = self.clone();
                self.tick_timer.set(super::set_timeout(until - HOLD_MARGIN_MS - now + 1.0, move || hs.tick()));
            }
        }
        for e in sends {
            self.out(e);
        }
        if release > 0 {
            self.flush();
        }
        self.emit(&events);
    }

    fn tick(self: &Rc<Self>) {
        let plan = self.core.borrow_mut().as_mut().map(|s| s.on_tick(super::now()));
        if let Some(p) = plan {
            self.apply(p);
        }
    }

    /// Page hide: the lease goes back by `sendBeacon`. The relay keeps it for a grace, so the next
    /// page of this tab may identify from the cache if it comes within the grace (less the margin).
    fn hide(self: &Rc<Self>) {
        let now = super::now();
        let taken = self.core.borrow_mut().as_mut().map(|s| (s.lease_until(), s.page_hide()));
        let Some((until, mut p)) = taken else { return };
        let until = until.map(|u| u.min(now + RELEASE_GRACE_MS));
        if let Some(lease) = p.release_lease.take() {
            relay::release(&self.o.relay_url, &lease, true);
        }
        self.apply(p);
        let ticket = self.ticket.borrow().clone();
        if let (Some(mut t), Some(u)) = (ticket, until) {
            t.lease_until_local = Some(u);
            self.cache_put(Some(&t));
        }
        // Entries still held would die with the page: the next page of this tab sends them, after
        // consent there. So do entries a previous page left that this one has not passed on yet
        // (it went away before consent or the relay's first answer). They are handed over: kept
        // here too, a page back from the back-forward cache would send them a second time.
        let keep: Array = self.restored.borrow().iter().chain(self.held.borrow().iter()).filter(|e| Array::is_array(e)).collect();
        if keep.length() > 0 && self.o.storage != Storage::None {
            let json = js_sys::JSON::stringify(&keep).ok().and_then(|s| s.as_string());
            if json.is_some_and(|j| storage::set(self.o.storage, HELD_KEY, &j)) {
                self.held.borrow_mut().clear();
                self.restored.borrow_mut().clear();
            }
        }
    }

    /// `begin` in one spawned task (one copy of its state machine, not one inlined into each
    /// caller's); the future ends when the first decision is settled.
    fn begin_spawned(self: &Rc<Self>) -> JsFuture {
        let mut resolve: Option<Function> = None;
        let p = Promise::new(&mut |res: Function, _: Function| resolve = Some(res));
        let hs = self.clone();
        spawn_local(async move {
            hs.begin().await;
            if let Some(r) = resolve {
                let _ = r.call0(&JsValue::UNDEFINED);
            }
        });
        JsFuture::from(p)
    }

    /// Consent given (or not needed): the first decision, then the relay.
    async fn begin(self: Rc<Self>) {
        self.consented.set(true);
        self.settling.set(true);
        if self.core.borrow().is_none() {
            return;
        }
        let c = self.cache_get();
        let cached = c.as_ref().and_then(|c| {
            let (id, state) = (c.id.clone().filter(|s| !s.is_empty())?, State::parse(c.state.as_deref()?)?);
            let email = c.email.clone().filter(|s| !s.is_empty());
            Some(ticket::Ticket {
                lease_id: c.lease_id.clone().filter(|s| !s.is_empty()),
                lease_until_local: c.lease_until_local,
                ..ticket::Ticket::new(id, state, email)
            })
        });
        let plan = self.core.borrow_mut().as_mut().map(|s| s.begin(cached, super::now()));
        let Some(plan) = plan else { return };
        let from_cache = matches!(plan.identify, Some(Some(_)));
        if from_cache {
            *self.ticket.borrow_mut() = c;
        }
        self.apply(plan);
        if from_cache {
            self.settling.set(false);
        }
        // What the previous page of this tab held, then what this page held waiting for consent.
        let waited: Vec<JsValue> = self.held.borrow_mut().drain(..).collect();
        let restored: Vec<JsValue> = self.restored.borrow_mut().drain(..).collect();
        for e in restored.into_iter().chain(waited) {
            self.push(e);
        }
        self.watch_leave();
        if from_cache {
            return self.insert_tracker(); // the renewal is scheduled
        }
        // The tracker and held entries (and an anonymous chat, if the email is not confirmed by
        // then) wait for the relay's first answer or the timeout; `start` waits too unless
        // consent came later.
        let asking = self.clone();
        race(self.o.timeout_ms, async move { asking.ask().await }).await;
        self.settling.set(false);
        self.flush();
        self.insert_tracker();
        if self.o.chat && self.chat_as.borrow().is_none() {
            *self.chat_as.borrow_mut() = Some(None);
            tracker::load_chat(None, None, false);
        }
    }

    /// One relay call: the ticket it answered, or why there is none.
    async fn ask_once(&self, lease: Option<String>) -> Result<Ticket, String> {
        let got = match self.token() {
            Ok(p) => JsFuture::from(p).await,
            Err(e) => Err(e),
        };
        let assertion = self.token_checked(got)?;
        let utk = cookies::hubspot_utk();
        let body = to_json(&AskBody { assertion: &assertion, utk: utk.as_deref(), lease_id: lease.as_deref() }).unwrap_or_default();
        let res = relay::post(&self.o.relay_url, body, self.o.timeout_ms).await?;
        match res.body {
            Some(t) if res.status == 200 && t.id.is_some() && t.state.is_some() => Ok(t),
            t => {
                let mut m = String::from("the relay answered ");
                m.push_str(&super::number_text(res.status.into()));
                if let Some(msg) = t.and_then(|t| t.message).filter(|m| !m.is_empty()) {
                    m.push_str(": ");
                    m.push_str(&msg);
                }
                Err(m)
            }
        }
    }

    /// Asks the relay for a ticket and applies the answer; one ask at a time.
    async fn ask(self: Rc<Self>) {
        if self.asking.get() {
            self.again.set(true);
            return;
        }
        self.asking.set(true);
        loop {
            self.again.set(false);
            let generation = self.generation.get();
            let lease = match self.core.borrow().as_ref() {
                None => break,
                Some(s) => s.lease_id().map(String::from),
            };
            let answer = self.ask_once(lease).await;
            // Reset or another user meanwhile: the answer is for a session that is gone.
            if self.generation.get() == generation {
                let now = super::now();
                let plan = {
                    let mut core = self.core.borrow_mut();
                    let Some(s) = core.as_mut() else { break };
                    match &answer {
                        Err(why) => s.on_relay_error(why, now),
                        Ok(t) => match State::parse(t.state.as_deref().unwrap_or_default()) {
                            None => s.on_relay_error("the relay answered a ticket with an unknown state", now),
                            Some(state) => {
                                let chat = t.chat.as_ref().and_then(|c| match (&c.email, &c.token) {
                                    (Some(e), Some(k)) if !e.is_empty() && !k.is_empty() => {
                                        Some(ticket::Chat { email: e.clone(), token: k.clone(), exp: 0.0 })
                                    }
                                    _ => None,
                                });
                                let mut k = ticket::Ticket {
                                    lease_id: t.lease_id.clone().filter(|s| !s.is_empty()),
                                    rotate_utk: t.rotate_utk.unwrap_or(false),
                                    chat,
                                    ..ticket::Ticket::new(t.id.clone().unwrap_or_default(), state, t.email.clone().filter(|s| !s.is_empty()))
                                };
                                k.email_valid_until = t.email_valid_until;
                                k.anchor(now, t.now);
                                s.on_ticket(k, now)
                            }
                        },
                    }
                };
                if let Ok(t) = &answer {
                    let same = self.core.borrow().as_ref().is_some_and(|s| t.id.as_deref() == Some(s.sub.as_str()));
                    if same {
                        *self.ticket.borrow_mut() = Some(t.clone());
                    }
                }
                self.apply(plan);
            }
            if !self.again.get() {
                break;
            }
        }
        self.asking.set(false);
    }

    fn identity(&self) -> JsValue {
        match self.ticket.borrow().as_ref() {
            None => JsValue::NULL,
            Some(t) => {
                let mut t = t.clone();
                t.lease_until_local = None;
                to_js(&t)
            }
        }
    }

    fn track_page_view(self: &Rc<Self>, path: JsValue) -> Result<(), JsValue> {
        if !path.is_undefined() {
            match path.as_string() {
                Some(p) if p.starts_with('/') => self.push(super::entry("setPath", &path)),
                _ => {
                    return Err(super::type_error(
                        "hsq-identity: trackPageView(path): path must be a string starting with / or left out",
                    ))
                }
            }
        }
        self.push(Array::of1(&"trackPageView".into()).into());
        Ok(())
    }

    fn track(self: &Rc<Self>, name: JsValue, properties: JsValue) -> Result<(), JsValue> {
        if !name.as_string().is_some_and(|n| !n.is_empty()) {
            return Err(super::type_error("hsq-identity: track(name, properties): name must be a non-empty string"));
        }
        let props = if properties.is_undefined() {
            Object::new().into()
        } else if properties.is_object() && !Array::is_array(&properties) {
            properties
        } else {
            return Err(super::type_error(
                "hsq-identity: track(name, properties): properties must be an object or left out",
            ));
        };
        let arg = Object::new();
        super::set(&arg, "name", &name);
        super::set(&arg, "properties", &props);
        self.push(super::entry("trackCustomBehavioralEvent", &arg));
        Ok(())
    }

    async fn refresh(self: Rc<Self>, assertion: JsValue) -> Result<JsValue, JsValue> {
        if !assertion.is_undefined() {
            match assertion.as_string() {
                Some(a) if is_jws(&a) => *self.token_value.borrow_mut() = a,
                _ => {
                    return Err(super::type_error(
                        "hsq-identity: refresh(assertion): expected a compact JWS string, or nothing to ask the assertion function",
                    ))
                }
            }
        }
        let got = match self.token() {
            Ok(p) => JsFuture::from(p).await,
            Err(e) => Err(e),
        };
        let token = self.token_checked(got).map_err(|m| JsValue::from(js_sys::Error::new(&m)))?;
        let c = claims(&token)
            .ok_or_else(|| super::type_error("hsq-identity: refresh(assertion): its payload has no sub and email claims"))?;
        if self.core.borrow().is_none() {
            self.new_core(&c);
            let _ = self.begin_spawned().await;
            return Ok(self.identity());
        }
        let plan = {
            let mut core = self.core.borrow_mut();
            let Some(s) = core.as_mut() else { return Ok(self.identity()) };
            if c.sub != s.sub {
                *self.ticket.borrow_mut() = None;
            }
            s.refresh(&c.sub, &c.email)
        };
        self.apply(plan);
        let hs = self.clone();
        race(self.o.timeout_ms, async move { hs.ask().await }).await;
        Ok(self.identity())
    }

    fn reset(self: &Rc<Self>) {
        let plan = self.core.borrow_mut().as_mut().map(Session::reset);
        if let Some(p) = plan {
            self.apply(p);
            *self.core.borrow_mut() = None;
            self.generation.set(self.generation.get().wrapping_add(1));
        }
        super::clear_timeout(self.ask_timer.get());
        super::clear_timeout(self.tick_timer.get());
        *self.ticket.borrow_mut() = None;
        self.cache_put(None);
        cookies::delete_hubspot();
        // Held hits waited for an email; the visitor is reset, so they go without one.
        self.flush();
        let had_chat = self.chat_as.borrow_mut().take().is_some();
        if had_chat {
            tracker::clear_chat();
        }
        self.emit(&[PageEvent::of("reset")]);
    }
}

/// Identify this page's visitor to HubSpot by a stable id, never racing an email change.
#[wasm_bindgen(skip_typescript)]
#[derive(Debug)]
pub struct StableIdentity(Rc<Shell>);

#[wasm_bindgen]
impl StableIdentity {
    /// Starts identifying the page's visitor. Rejects only for bad options, naming the option.
    pub async fn start(options: JsValue) -> Result<StableIdentity, JsValue> {
        Shell::start(options).await.map(StableIdentity)
    }

    /// The current ticket (a copy), or null.
    #[wasm_bindgen(getter)]
    pub fn identity(&self) -> JsValue {
        self.0.identity()
    }

    /// `setPath(path)` (when given) then `trackPageView`, for single-page apps.
    #[wasm_bindgen(js_name = trackPageView)]
    pub fn track_page_view(&self, path: JsValue) -> Result<(), JsValue> {
        self.0.track_page_view(path)
    }

    /// `trackCustomBehavioralEvent({name, properties})`.
    pub fn track(&self, name: JsValue, properties: JsValue) -> Result<(), JsValue> {
        self.0.track(name, properties)
    }

    /// After the app changed the user's email, or a new login. Resolves with the new ticket, or
    /// null when the relay has not answered in `timeoutMs` (it keeps trying).
    pub fn refresh(&self, assertion: JsValue) -> Promise {
        wasm_bindgen_futures::future_to_promise(self.0.clone().refresh(assertion))
    }

    /// Logout: forgets the ticket, gives the lease back, clears the tracker's visitor and
    /// HubSpot's cookies, and resets the chat widget.
    pub fn reset(&self) {
        self.0.reset()
    }
}
