//! The relay call: `POST` the request with gloo-net, a timeout by `AbortController`, and the body
//! read with `Response::json()` into the serde [`Ticket`] through serde-wasm-bindgen. And the
//! lease release (`sendBeacon`, else a keepalive `DELETE`).

use super::types::{from_js, Ticket};
use gloo_net::http::Request;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, RequestCredentials};

/// The relay's answer: the HTTP status and the body as a ticket (none when it is not JSON of that
/// shape).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Option<Ticket>,
}

fn abort_error(e: &JsValue) -> bool {
    super::get(e, "name").as_string().as_deref() == Some("AbortError")
}

/// POSTs `body` (JSON) to `url`, giving up after `timeout_ms`. Errors are a sentence saying why:
/// the timeout, or the network error's message.
pub async fn post(url: &str, body: String, timeout_ms: f64) -> Result<Answer, String> {
    let late = || {
        let mut m = String::from("the relay did not answer in ");
        m.push_str(&super::number_text(timeout_ms));
        m.push_str(" ms");
        m
    };
    let ctl = AbortController::new().map_err(|e| super::message_of(&e))?;
    // Cleared on every way out (one async fn, not two: each state machine costs kilobytes).
    let _timer = {
        let ctl = ctl.clone();
        Timer(super::set_timeout(timeout_ms, move || ctl.abort()))
    };
    let req = Request::post(url)
        .header("content-type", "application/json")
        .credentials(RequestCredentials::SameOrigin)
        .abort_signal(Some(&ctl.signal()))
        .body(body)
        .map_err(|_| String::from("the request could not be built"))?;
    let res = match req.send().await {
        Ok(r) => r,
        Err(gloo_net::Error::JsError(e)) if e.name == "AbortError" => return Err(late()),
        Err(gloo_net::Error::JsError(e)) => return Err(e.message),
        Err(_) => return Err(String::from("the request failed")),
    };
    let status = res.status();
    let json = match web_sys::Response::from(res).json() {
        Ok(p) => JsFuture::from(p).await,
        Err(e) => Err(e),
    };
    match json {
        Ok(v) => Ok(Answer { status, body: from_js(v) }),
        Err(e) if abort_error(&e) => Err(late()),
        // Not JSON: an answer without a body we can read.
        Err(_) => Ok(Answer { status, body: None }),
    }
}

/// A timer cleared when dropped.
struct Timer(f64);

impl Drop for Timer {
    fn drop(&mut self) {
        super::clear_timeout(self.0);
    }
}

/// `.../v1/identity` -> `.../v1/leases/{lease}`.
pub fn lease_url(relay_url: &str, lease: &str) -> String {
    let cut = relay_url.rfind('/').unwrap_or(relay_url.len().saturating_sub(1));
    let mut u = String::from(relay_url.get(..cut).unwrap_or_default());
    u.push_str("/leases/");
    u.push_str(lease);
    u
}

/// Gives a lease back: by `sendBeacon` to `.../release` when `beacon` (page hide), else (or when
/// the beacon is refused) by a keepalive `DELETE`, whose failure is dropped.
pub fn release(relay_url: &str, lease: &str, beacon: bool) {
    let url = lease_url(relay_url, lease);
    let Some(w) = web_sys::window() else { return };
    if beacon {
        let mut b = url.clone();
        b.push_str("/release");
        if w.navigator().send_beacon_with_opt_str(&b, Some("")).unwrap_or(false) {
            return;
        }
    }
    // gloo-net's builder has no `keepalive`, which lets the request outlive the page.
    let init = web_sys::RequestInit::new();
    init.set_method("DELETE");
    super::set(&init, "keepalive", &JsValue::TRUE); // not among web-sys's stable setters
    init.set_credentials(RequestCredentials::SameOrigin);
    let p = w.fetch_with_str_and_init(&url, &init);
    let ignore: Closure<dyn FnMut(JsValue)> = Closure::new(|_: JsValue| {});
    let _ = p.catch(&ignore);
    ignore.forget();
}
