//! The lease stream: an `EventSource` on the relay's `GET /v1/leases/{id}/events`, open while
//! the page carries an email under a lease (see `Session::watched_lease`). Its one event,
//! `ended`, makes the page hold its hits at once instead of at its next renewal. A stream that
//! fails (a relay past `HSQ_MAX_STREAMS`, a proxy that refuses streams) stays closed and the page
//! keeps to its renewal timer; a stream that drops is reopened by the browser itself.

use web_sys::EventSource;
use wasm_bindgen::JsCast;

/// Opens the stream of `lease`, with `listener` on its `ended` event. None when the browser has
/// no `EventSource` or refuses the URL.
pub fn open(relay_url: &str, lease: &str, listener: &wasm_bindgen::JsValue) -> Option<EventSource> {
    let mut url = super::relay::lease_url(relay_url, lease);
    url.push_str("/events");
    let es = EventSource::new(&url).ok()?;
    let _ = es.add_event_listener_with_callback("ended", listener.unchecked_ref());
    Some(es)
}
