//! Validation of the options of `StableIdentity.start`. A bad option rejects `start` with a message
//! that names the option and what was expected.

use alloc::string::{String, ToString};
/// An option value as the shell saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Undefined,
    Str(String),
    Num(f64),
    Bool(bool),
    Func,
    /// Anything else, with its `typeof` (or "null", "array").
    Other(&'static str),
}

impl Val {
    fn kind(&self) -> &'static str {
        match self {
            Val::Undefined => "undefined",
            Val::Str(_) => "a string",
            Val::Num(_) => "a number",
            Val::Bool(_) => "a boolean",
            Val::Func => "a function",
            Val::Other(k) => k,
        }
    }
}

/// Where the assertion comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AssertionSource {
    Token(String),
    Function,
    /// `<meta name="hsq-assertion" content="...">`
    Meta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// Wait for HubSpot's privacy-consent listener to report analytics consent.
    HubSpot,
    Granted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Session,
    Local,
    None,
}

/// Validated options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub relay_url: String,
    pub assertion: AssertionSource,
    pub portal_id: Option<String>,
    pub tracker_url: Option<String>,
    pub guard: bool,
    pub chat: bool,
    pub consent: Consent,
    pub storage: Storage,
    pub timeout_ms: f64,
    pub on_event: bool,
}

/// Reads a JS number the shell sent as `String(n)`: whole numbers only (no float parsing in wasm).
pub fn whole_number(s: &str) -> Option<f64> {
    if s.is_empty() || s.len() > 15 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0f64, |n, b| n * 10.0 + (b - b'0') as f64))
}

/// The option names `start` takes.
pub const KEYS: [&str; 10] =
    ["relayUrl", "assertion", "portalId", "trackerUrl", "guard", "chat", "consent", "storage", "timeoutMs", "onEvent"];

fn bad(key: &str, expected: &str, got: &Val) -> String {
    let mut m = String::from("hsq-identity: option `");
    m.push_str(key);
    m.push_str("` must be ");
    m.push_str(expected);
    m.push_str(", got ");
    match got {
        Val::Str(s) => {
            m.push('"');
            m.push_str(&s.chars().take(40).collect::<String>());
            m.push('"');
        }
        other => m.push_str(other.kind()),
    }
    m
}

fn get<'a>(fields: &'a [(String, Val)], key: &str) -> &'a Val {
    fields.iter().find(|(k, _)| k == key).map(|(_, v)| v).unwrap_or(&Val::Undefined)
}

fn flag(fields: &[(String, Val)], key: &str, default: bool) -> Result<bool, String> {
    match get(fields, key) {
        Val::Undefined => Ok(default),
        Val::Bool(b) => Ok(*b),
        other => Err(bad(key, "true or false", other)),
    }
}

/// Checks every option; `has_meta` says whether the page has an assertion `<meta>` tag.
pub fn validate(fields: &[(String, Val)], has_meta: bool) -> Result<Options, String> {
    if let Some((k, _)) = fields.iter().find(|(k, _)| !KEYS.contains(&k.as_str())) {
        let mut m = String::from("hsq-identity: unknown option `");
        m.push_str(k);
        m.push_str("`; known options: ");
        m.push_str(&KEYS.join(", "));
        return Err(m);
    }
    let relay_url = match get(fields, "relayUrl") {
        Val::Str(s) if !s.trim().is_empty() => s.trim().to_string(),
        other => return Err(bad("relayUrl", "the relay's identity URL, e.g. \"/hsq/v1/identity\"", other)),
    };
    let assertion = match get(fields, "assertion") {
        Val::Str(s) if s.split('.').count() == 3 => AssertionSource::Token(s.clone()),
        Val::Func => AssertionSource::Function,
        Val::Undefined if has_meta => AssertionSource::Meta,
        other => {
            return Err(bad(
                "assertion",
                "a compact JWS string, or a function returning one (or put it in <meta name=\"hsq-assertion\">)",
                other,
            ))
        }
    };
    let portal_id = match get(fields, "portalId") {
        Val::Undefined => None,
        Val::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Some(s.clone()),
        Val::Num(n) if *n >= 1.0 && *n < 1e15 && *n == (*n as u64) as f64 => Some(super::wire::int(*n)),
        other => return Err(bad("portalId", "your HubSpot account id (digits)", other)),
    };
    let tracker_url = match get(fields, "trackerUrl") {
        Val::Undefined => None,
        Val::Str(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        other => return Err(bad("trackerUrl", "a script URL", other)),
    };
    let consent = match get(fields, "consent") {
        Val::Undefined => Consent::HubSpot,
        Val::Str(s) if s == "hubspot" => Consent::HubSpot,
        Val::Str(s) if s == "granted" => Consent::Granted,
        other => return Err(bad("consent", "\"hubspot\" or \"granted\"", other)),
    };
    let storage = match get(fields, "storage") {
        Val::Undefined => Storage::Session,
        Val::Str(s) if s == "session" => Storage::Session,
        Val::Str(s) if s == "local" => Storage::Local,
        Val::Str(s) if s == "none" => Storage::None,
        other => return Err(bad("storage", "\"session\", \"local\" or \"none\"", other)),
    };
    let timeout_ms = match get(fields, "timeoutMs") {
        Val::Undefined => 3000.0,
        Val::Num(n) if *n >= 1.0 && *n <= 60_000.0 => *n,
        other => return Err(bad("timeoutMs", "a number of milliseconds from 1 to 60000", other)),
    };
    let on_event = match get(fields, "onEvent") {
        Val::Undefined => false,
        Val::Func => true,
        other => return Err(bad("onEvent", "a function", other)),
    };
    Ok(Options {
        relay_url,
        assertion,
        portal_id,
        tracker_url,
        guard: flag(fields, "guard", true)?,
        chat: flag(fields, "chat", false)?,
        consent,
        storage,
        timeout_ms,
        on_event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, Val)]) -> Vec<(String, Val)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let o = validate(&f(&[("relayUrl", Val::Str("/hsq/v1/identity".into())), ("assertion", Val::Str("a.b.c".into()))]), false).unwrap();
        assert_eq!((o.guard, o.chat, o.consent, o.storage, o.timeout_ms), (true, false, Consent::HubSpot, Storage::Session, 3000.0));
        assert_eq!(o.assertion, AssertionSource::Token("a.b.c".into()));
    }

    #[test]
    fn each_bad_option_is_named_with_what_was_expected() {
        let base = || vec![("relayUrl".to_string(), Val::Str("/r".into())), ("assertion".to_string(), Val::Func)];
        let cases: Vec<(&str, Val, &str)> = vec![
            ("relayUrl", Val::Num(3.0), "`relayUrl` must be the relay's identity URL"),
            ("assertion", Val::Str("nope".into()), "`assertion` must be a compact JWS"),
            ("portalId", Val::Str("12ab".into()), "`portalId` must be your HubSpot account id (digits), got \"12ab\""),
            ("guard", Val::Str("yes".into()), "`guard` must be true or false"),
            ("chat", Val::Num(1.0), "`chat` must be true or false, got a number"),
            ("consent", Val::Str("maybe".into()), "`consent` must be \"hubspot\" or \"granted\""),
            ("storage", Val::Str("cookie".into()), "`storage` must be \"session\", \"local\" or \"none\""),
            ("timeoutMs", Val::Num(-5.0), "`timeoutMs` must be a number of milliseconds"),
            ("onEvent", Val::Str("x".into()), "`onEvent` must be a function"),
            ("relyUrl", Val::Str("/r".into()), "unknown option `relyUrl`"),
        ];
        for (key, val, want) in cases {
            let mut fields = base();
            fields.retain(|(k, _)| k != key);
            fields.push((key.to_string(), val));
            let err = validate(&fields, false).unwrap_err();
            assert!(err.contains(want), "{key}: {err}");
        }
        let err = validate(&f(&[("relayUrl", Val::Str("/r".into()))]), false).unwrap_err();
        assert!(err.contains("`assertion`"), "{err}");
        assert_eq!(validate(&f(&[("relayUrl", Val::Str("/r".into()))]), true).unwrap().assertion, AssertionSource::Meta);
        assert_eq!(validate(&f(&[("relayUrl", Val::Str("/r".into())), ("assertion", Val::Func), ("portalId", Val::Num(1234567.0))]), false).unwrap().portal_id.as_deref(), Some("1234567"));
    }
}
