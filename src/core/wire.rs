//! The narrow interface between the JS shell and the wasm core: plain strings and numbers, so
//! the wasm needs no JS object plumbing (and stays small). Fields are separated by U+001F,
//! records by U+001E, parts of an event by U+001D.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use super::options::{self, AssertionSource, Consent, Storage, Val};
use super::session::{Event, Plan};

pub const FIELD: char = '\u{1f}';
pub const RECORD: char = '\u{1e}';
pub const PART: char = '\u{1d}';
const FIELD_STR: &str = "\u{1f}";
const RECORD_STR: &str = "\u{1e}";

/// Whole milliseconds as decimal text (integer formatting only: no float formatting in wasm).
pub fn int(n: f64) -> String {
    let neg = n < 0.0;
    // Rounds half away from zero without f64::round (not in core).
    let v = if n.is_finite() { (if neg { -n } else { n }) + 0.5 } else { 0.0 };
    let mut digits = Vec::new();
    let mut x = v as u64;
    loop {
        digits.push(b'0' + (x % 10) as u8);
        x /= 10;
        if x == 0 {
            break;
        }
    }
    if neg {
        digits.push(b'-');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

fn event(e: &Event) -> String {
    let mut s = String::new();
    match e {
        Event::Identified { state, email, cached } => {
            s.push_str("identified");
            s.push(PART);
            s.push_str(state.as_str());
            s.push(PART);
            s.push_str(email.as_deref().unwrap_or(""));
            s.push(PART);
            s.push_str(if *cached { "1" } else { "0" });
        }
        Event::Hold => s.push_str("hold"),
        Event::Release => s.push_str("release"),
        Event::LeaseReleased => s.push_str("lease-released"),
        Event::RotateUtk => s.push_str("rotate-utk"),
        Event::RelayError(m) => {
            s.push_str("relay-error");
            s.push(PART);
            s.push_str(m);
        }
    }
    s
}

/// `identify, resetVisitor, releaseHeld, renewAt, pollIn, releaseLease, rotateUtk, chatEmail,
/// chatToken, events`. `identify` is empty (nothing), `-` (`{id}`) or the email.
pub fn plan(p: &Plan) -> String {
    let flag = |b: bool| if b { "1" } else { "" };
    let fields: [String; 10] = [
        match &p.identify {
            None => String::new(),
            Some(None) => "-".into(),
            Some(Some(e)) => e.clone(),
        },
        flag(p.reset_visitor).into(),
        flag(p.release_held).into(),
        p.renew_at.map(int).unwrap_or_default(),
        p.poll_in.map(int).unwrap_or_default(),
        p.release_lease.clone().unwrap_or_default(),
        flag(p.rotate_utk).into(),
        p.chat.as_ref().map(|c| c.email.clone()).unwrap_or_default(),
        p.chat.as_ref().map(|c| c.token.clone()).unwrap_or_default(),
        p.events.iter().map(event).collect::<Vec<_>>().join(RECORD_STR),
    ];
    fields.join(FIELD_STR)
}

/// Validates options sent as records of `key FIELD kind FIELD text`, where kind is `string`,
/// `number` (text = `String(n)`), `boolean`, `function` or another `typeof`-like word. Answers
/// `!message`, or the normalized options as records of `key FIELD value`.
pub fn options(spec: &str, has_meta: bool) -> String {
    let mut fields = Vec::new();
    for rec in spec.split(RECORD).filter(|r| !r.is_empty()) {
        let mut it = rec.split(FIELD);
        let (key, kind, text) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
        let val = match kind {
            "string" => Val::Str(text.into()),
            "number" => match options::whole_number(text) {
                Some(n) => Val::Num(n),
                None => Val::Other("a number that is not a whole non-negative number"),
            },
            "boolean" => Val::Bool(text == "true"),
            "function" => Val::Func,
            "undefined" => Val::Undefined,
            "null" => Val::Other("null"),
            "array" => Val::Other("an array"),
            _ => Val::Other("an object"),
        };
        fields.push((key.to_string(), val));
    }
    match options::validate(&fields, has_meta) {
        Err(m) => {
            let mut s = String::from("!");
            s.push_str(&m);
            s
        }
        Ok(o) => {
            let rec = |k: &str, v: &str| {
                let mut s = String::from(k);
                s.push(FIELD);
                s.push_str(v);
                s
            };
            let b = |x: bool| if x { "true" } else { "false" };
            [
                rec("relayUrl", &o.relay_url),
                rec("assertion", match &o.assertion {
                    AssertionSource::Token(_) => "token",
                    AssertionSource::Function => "function",
                    AssertionSource::Meta => "meta",
                }),
                rec("portalId", o.portal_id.as_deref().unwrap_or("")),
                rec("trackerUrl", o.tracker_url.as_deref().unwrap_or("")),
                rec("guard", b(o.guard)),
                rec("chat", b(o.chat)),
                rec("consent", if o.consent == Consent::HubSpot { "hubspot" } else { "granted" }),
                rec("storage", match o.storage {
                    Storage::Session => "session",
                    Storage::Local => "local",
                    Storage::None => "none",
                }),
                rec("timeoutMs", &int(o.timeout_ms)),
            ]
            .join(RECORD_STR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ticket::Chat;

    #[test]
    fn integers_format_without_float_formatting() {
        assert_eq!(int(0.0), "0");
        assert_eq!(int(1_790_000_600_123.4), "1790000600123");
        assert_eq!(int(-42.0), "-42");
        assert_eq!(int(f64::NAN), "0");
    }

    #[test]
    fn plans_encode_in_field_order() {
        let p = Plan {
            identify: Some(Some("a@x.io".into())),
            release_held: true,
            renew_at: Some(1500.0),
            chat: Some(Chat { email: "a@x.io".into(), token: "t".into(), exp: 1.0 }),
            events: vec![Event::Hold, Event::RelayError("down: 503".into())],
            ..Plan::default()
        };
        let encoded = plan(&p);
        let f: Vec<&str> = encoded.split(FIELD).collect();
        assert_eq!(&f[..9], &["a@x.io", "", "1", "1500", "", "", "", "a@x.io", "t"]);
        assert_eq!(f[9], "hold\u{1e}relay-error\u{1d}down: 503");
        assert_eq!(plan(&Plan { identify: Some(None), ..Plan::default() }).split(FIELD).next(), Some("-"));
    }

    #[test]
    fn options_normalize_or_name_the_bad_one() {
        let spec = ["relayUrl\u{1f}string\u{1f}/r", "assertion\u{1f}string\u{1f}a.b.c", "portalId\u{1f}number\u{1f}1234567"].join("\u{1e}");
        let out = options(&spec, false);
        assert!(out.contains("portalId\u{1f}1234567"), "{out}");
        assert!(out.contains("timeoutMs\u{1f}3000"));
        let bad = options("relayUrl\u{1f}string\u{1f}/r\u{1e}assertion\u{1f}function\u{1f}\u{1e}timeoutMs\u{1f}number\u{1f}2.5", false);
        assert!(bad.starts_with("!") && bad.contains("`timeoutMs`"), "{bad}");
    }
}
