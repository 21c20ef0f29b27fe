//! HubSpot's cookies through `document.cookie` (web-sys). Reading or writing cookies throws in a
//! sandboxed document; then there is no cookie and nothing is written.

use wasm_bindgen::JsCast;
use web_sys::HtmlDocument;

/// HubSpot's tracking cookies, deleted on `reset()` and when the relay says `rotateUtk`.
pub const HUBSPOT_COOKIES: [&str; 4] = ["hubspotutk", "__hstc", "__hssc", "__hssrc"];

fn document() -> Option<HtmlDocument> {
    web_sys::window()?.document()?.dyn_into::<HtmlDocument>().ok()
}

/// The value of cookie `name` (URI-decoded), or none (also when cookies cannot be read).
pub fn read(name: &str) -> Option<String> {
    let all = document()?.cookie().ok()?;
    // "a=1; b=2": split at each ';' and drop the space after it (a char, not a &str pattern: the
    // substring searcher costs kilobytes of wasm).
    let raw = all.split(';').map(|p| p.trim_start_matches(' ')).find_map(|p| p.split_once('=').filter(|(k, _)| *k == name))?.1;
    js_sys::decode_uri_component(raw).ok().map(String::from)
}

/// `hubspotutk` when it has HubSpot's format (32 lowercase hex digits), for the relay.
pub fn hubspot_utk() -> Option<String> {
    read("hubspotutk").filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Deletes HubSpot's tracking cookies on this host and each parent domain they may be set on.
pub fn delete_hubspot() {
    let Some(doc) = document() else { return };
    let host = web_sys::window().and_then(|w| w.location().hostname().ok()).unwrap_or_default();
    // "" (this host), then "; domain=.a.b.c", "; domain=.b.c", "; domain=.c" for host "a.b.c" minus
    // the last (a bare top-level domain takes no cookies).
    let mut domains = vec![String::new()];
    let mut rest = host.as_str();
    while let Some((_, tail)) = rest.split_once('.') {
        domains.push(String::from("; domain=.") + rest);
        rest = tail;
    }
    for name in HUBSPOT_COOKIES {
        for d in &domains {
            let _ = doc.set_cookie(&(String::from(name) + "=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT" + d));
        }
    }
}
