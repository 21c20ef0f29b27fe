//! The serde types that cross between Rust and JS through serde-wasm-bindgen: the relay's ticket
//! (also the cached ticket and `identity`), the relay request, the assertion's claims and the
//! events given to `onEvent`.

use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;

/// The ticket's chat part (DESIGN.md section 5).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Chat {
    pub email: Option<String>,
    pub token: Option<String>,
    pub exp: Option<f64>,
}

/// The relay's ticket as it answered it (every field may be missing or null), also cached between
/// pages with `leaseUntilLocal`, and copied out as `identity`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Ticket {
    pub id: Option<String>,
    pub contact_id: Option<String>,
    pub email: Option<String>,
    pub state: Option<String>,
    pub lease_id: Option<String>,
    pub email_valid_until: Option<f64>,
    pub exp: Option<f64>,
    pub rotate_utk: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat: Option<Chat>,
    /// The relay's clock when it answered (s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub now: Option<f64>,
    /// In the cache only: when the lease ends on the page's clock (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_until_local: Option<f64>,
    /// An error answer's message (`{"error", "message"}`); never written back.
    #[serde(skip_serializing)]
    pub message: Option<String>,
    /// The assertion's subject: the claims are read as this type too (one derived deserializer
    /// less: each keeps kilobytes of serde and number formatting code); never written back.
    #[serde(skip_serializing)]
    pub sub: Option<String>,
}

/// The body of `POST /v1/identity`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AskBody<'a> {
    pub assertion: &'a str,
    pub utk: Option<&'a str>,
    pub lease_id: Option<&'a str>,
}

/// The claims the page reads from the assertion (unverified: the relay verifies), read through
/// `Ticket`'s deserializer.
#[derive(Debug)]
pub struct Claims {
    pub sub: String,
    pub email: String,
}

/// What `onEvent` receives: `{type, ...}` with only the fields its type has. One flat struct, not
/// an internally tagged enum: serde derives one serializer per variant (2.6 KB of code for 12).
#[derive(Debug, Default, Serialize)]
pub struct PageEvent<'a> {
    /// identified, pending, conflict, unknown, relay-error, guard, hold, release, lease-released,
    /// rotate-utk, consent, reset.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// identified (confirmed), pending, conflict, unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// identified: the confirmed email; guard: the email other code gave (or null).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Option<&'a str>>,
    /// identified: from the cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
    /// relay-error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
    /// guard: the email sent instead (or null).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<Option<&'a str>>,
    /// release: how many held entries went out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// consent: whether analytics is allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analytics: Option<bool>,
}

impl PageEvent<'_> {
    /// An event with its type only.
    pub fn of(kind: &'static str) -> Self {
        PageEvent { kind, ..Default::default() }
    }
}

/// A serde value as a plain JS value (none as null, maps as objects), the way JSON has it.
pub fn to_js<T: Serialize>(v: &T) -> JsValue {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).unwrap_or(JsValue::NULL)
}

/// A JS value as `T`, or none when it does not have `T`'s shape.
pub fn from_js<T: for<'de> Deserialize<'de>>(v: JsValue) -> Option<T> {
    serde_wasm_bindgen::from_value(v).ok()
}

/// `JSON.stringify` of a serde value (no serde_json in the package).
pub fn to_json<T: Serialize>(v: &T) -> Option<String> {
    js_sys::JSON::stringify(&to_js(v)).ok().and_then(|s| s.as_string())
}

/// `JSON.parse(text)` as `T`, or none.
pub fn from_json<T: for<'de> Deserialize<'de>>(text: &str) -> Option<T> {
    from_js(js_sys::JSON::parse(text).ok()?)
}
