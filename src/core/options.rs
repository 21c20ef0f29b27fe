//! Validation of the options of `StableIdentity.start`. A bad option rejects `start` with a message
//! that names the option and what was expected.

use alloc::string::String;
/// An option value as the shell saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Undefined,
    Str(&'a str),
    Num(f64),
    Bool(bool),
    Func,
    /// Anything else, with its `typeof` (or "null", "array").
    Other(&'static str),
}

impl Val<'_> {
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

/// Where the assertion comes from (the shell keeps the token itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionSource {
    Token,
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

/// Which of the page's forms HubSpot's collected forms may capture (`collectForms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectForms<'a> {
    /// `false` (the default): every form is marked `data-hs-do-not-collect="true"`.
    None,
    /// `true`: the module leaves the page's forms alone.
    All,
    /// A CSS selector: the forms it matches are left to HubSpot, the others are marked.
    Matching(&'a str),
}

/// Validated options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options<'a> {
    pub relay_url: &'a str,
    pub assertion: AssertionSource,
    pub portal_id: Option<String>,
    pub tracker_url: Option<&'a str>,
    pub guard: bool,
    pub chat: bool,
    pub consent: Consent,
    pub storage: Storage,
    pub timeout_ms: f64,
    pub on_event: bool,
    pub collect_forms: CollectForms<'a>,
}

/// An option's JS number as [`Val`]: whole non-negative numbers below 10^15 only.
pub fn number<'a>(n: f64) -> Val<'a> {
    if n >= 0.0 && n < 1e15 && n == (n as u64) as f64 {
        Val::Num(n)
    } else {
        Val::Other("a number that is not a whole non-negative number")
    }
}

/// The option names `start` takes.
pub const KEYS: [&str; 11] = [
    "relayUrl", "assertion", "portalId", "trackerUrl", "guard", "chat", "consent", "storage", "timeoutMs", "onEvent",
    "collectForms",
];
const KEY_LIST: &str = "relayUrl, assertion, portalId, trackerUrl, guard, chat, consent, storage, timeoutMs, onEvent, collectForms";

const COLLECT_FORMS: &str = "true, false, or a CSS selector of the forms HubSpot may collect";

/// The message for a `collectForms` selector the browser cannot parse.
pub fn bad_selector(selector: &str) -> String {
    bad("collectForms", "a CSS selector the browser can parse", &Val::Str(selector))
}

fn bad(key: &str, expected: &str, got: &Val) -> String {
    let mut m = String::from("hsq-identity: option `");
    m.push_str(key);
    m.push_str("` must be ");
    m.push_str(expected);
    m.push_str(", got ");
    match got {
        Val::Str(s) => {
            // At most 40 bytes of it, cut at a character boundary.
            let mut end = s.len().min(40);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            m.push('"');
            m.push_str(s.get(..end).unwrap_or_default());
            m.push('"');
        }
        other => m.push_str(other.kind()),
    }
    m
}

fn get<'a, 'v>(fields: &'a [(&str, Val<'v>)], key: &str) -> &'a Val<'v> {
    fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v).unwrap_or(&Val::Undefined)
}

fn flag(fields: &[(&str, Val)], key: &str, default: bool) -> Result<bool, String> {
    match get(fields, key) {
        Val::Undefined => Ok(default),
        Val::Bool(b) => Ok(*b),
        other => Err(bad(key, "true or false", other)),
    }
}

/// Checks every option; `has_meta` says whether the page has an assertion `<meta>` tag.
pub fn validate<'v>(fields: &[(&str, Val<'v>)], has_meta: bool) -> Result<Options<'v>, String> {
    if let Some((k, _)) = fields.iter().find(|(k, _)| !KEYS.contains(k)) {
        let mut m = String::from("hsq-identity: unknown option `");
        m.push_str(k);
        m.push_str("`; known options: ");
        m.push_str(KEY_LIST);
        return Err(m);
    }
    let relay_url = match get(fields, "relayUrl") {
        Val::Str(s) if !s.trim_ascii().is_empty() => s.trim_ascii(),
        other => return Err(bad("relayUrl", "the relay's identity URL, e.g. \"/hsq/v1/identity\"", other)),
    };
    let assertion = match get(fields, "assertion") {
        Val::Str(s) if s.bytes().filter(|b| *b == b'.').count() == 2 => AssertionSource::Token,
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
        Val::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Some(String::from(*s)),
        Val::Num(n) if *n >= 1.0 && *n < 1e15 && *n == (*n as u64) as f64 => Some(alloc::string::ToString::to_string(&(*n as u64))),
        other => return Err(bad("portalId", "your HubSpot account id (digits)", other)),
    };
    let tracker_url = match get(fields, "trackerUrl") {
        Val::Undefined => None,
        Val::Str(s) if !s.trim_ascii().is_empty() => Some(s.trim_ascii()),
        other => return Err(bad("trackerUrl", "a script URL", other)),
    };
    let consent = match get(fields, "consent") {
        Val::Undefined => Consent::HubSpot,
        Val::Str("hubspot") => Consent::HubSpot,
        Val::Str("granted") => Consent::Granted,
        other => return Err(bad("consent", "\"hubspot\" or \"granted\"", other)),
    };
    let storage = match get(fields, "storage") {
        Val::Undefined => Storage::Session,
        Val::Str("session") => Storage::Session,
        Val::Str("local") => Storage::Local,
        Val::Str("none") => Storage::None,
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
    let collect_forms = match get(fields, "collectForms") {
        Val::Undefined | Val::Bool(false) => CollectForms::None,
        Val::Bool(true) => CollectForms::All,
        Val::Str(s) if !s.trim_ascii().is_empty() => CollectForms::Matching(s.trim_ascii()),
        other => return Err(bad("collectForms", COLLECT_FORMS, other)),
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
        collect_forms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f<'a>(pairs: &[(&'a str, Val<'a>)]) -> Vec<(&'a str, Val<'a>)> {
        pairs.to_vec()
    }

    #[test]
    fn the_key_list_in_messages_names_every_key() {
        assert_eq!(KEYS.join(", "), KEY_LIST);
    }

    #[test]
    fn a_long_value_is_cut_at_a_character_boundary() {
        let long = "ééééééééééééééééééééééééé"; // 25 two-byte characters
        let m = bad("trackerUrl", "a script URL", &Val::Str(long));
        assert!(m.ends_with(&format!("got \"{}\"", &long[..40])), "{m}");
        let odd = "aéééééééééééééééééééééééé"; // byte 40 falls inside a character
        assert!(bad("trackerUrl", "a script URL", &Val::Str(odd)).ends_with(&format!("got \"{}\"", &odd[..39])));
    }

    #[test]
    fn only_whole_non_negative_numbers_read_as_numbers() {
        assert_eq!(number(3000.0), Val::Num(3000.0));
        assert_eq!(number(0.0), Val::Num(0.0));
        for n in [2.5, -1.0, 1e15, f64::NAN, f64::INFINITY] {
            assert_eq!(number(n), Val::Other("a number that is not a whole non-negative number"), "{n}");
        }
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let o = validate(&f(&[("relayUrl", Val::Str("/hsq/v1/identity")), ("assertion", Val::Str("a.b.c"))]), false).unwrap();
        assert_eq!((o.guard, o.chat, o.consent, o.storage, o.timeout_ms), (true, false, Consent::HubSpot, Storage::Session, 3000.0));
        assert_eq!(o.assertion, AssertionSource::Token);
        assert_eq!(o.collect_forms, CollectForms::None, "forms are guarded unless the app says otherwise");
    }

    #[test]
    fn collect_forms_is_a_flag_or_a_selector() {
        let with = |v: Val<'static>| validate(&[("relayUrl", Val::Str("/r")), ("assertion", Val::Func), ("collectForms", v)], false);
        assert_eq!(with(Val::Bool(false)).unwrap().collect_forms, CollectForms::None);
        assert_eq!(with(Val::Bool(true)).unwrap().collect_forms, CollectForms::All);
        assert_eq!(with(Val::Str(" form.newsletter ")).unwrap().collect_forms, CollectForms::Matching("form.newsletter"));
        for v in [Val::Str("  "), Val::Num(1.0), Val::Other("an object")] {
            let err = with(v).unwrap_err();
            assert!(err.contains("`collectForms` must be true, false, or a CSS selector of the forms HubSpot may collect"), "{err}");
        }
        assert!(bad_selector("form[").ends_with("`collectForms` must be a CSS selector the browser can parse, got \"form[\""), "{}", bad_selector("form["));
    }

    #[test]
    fn each_bad_option_is_named_with_what_was_expected() {
        let base = || vec![("relayUrl", Val::Str("/r")), ("assertion", Val::Func)];
        let cases: Vec<(&str, Val, &str)> = vec![
            ("relayUrl", Val::Num(3.0), "`relayUrl` must be the relay's identity URL"),
            ("assertion", Val::Str("nope"), "`assertion` must be a compact JWS"),
            ("portalId", Val::Str("12ab"), "`portalId` must be your HubSpot account id (digits), got \"12ab\""),
            ("guard", Val::Str("yes"), "`guard` must be true or false"),
            ("chat", Val::Num(1.0), "`chat` must be true or false, got a number"),
            ("consent", Val::Str("maybe"), "`consent` must be \"hubspot\" or \"granted\""),
            ("storage", Val::Str("cookie"), "`storage` must be \"session\", \"local\" or \"none\""),
            ("timeoutMs", Val::Num(-5.0), "`timeoutMs` must be a number of milliseconds"),
            ("onEvent", Val::Str("x"), "`onEvent` must be a function"),
            ("collectForms", Val::Str(""), "`collectForms` must be true, false, or a CSS selector"),
            ("relyUrl", Val::Str("/r"), "unknown option `relyUrl`"),
        ];
        for (key, val, want) in cases {
            let mut fields = base();
            fields.retain(|(k, _)| *k != key);
            fields.push((key, val));
            let err = validate(&fields, false).unwrap_err();
            assert!(err.contains(want), "{key}: {err}");
        }
        let err = validate(&f(&[("relayUrl", Val::Str("/r"))]), false).unwrap_err();
        assert!(err.contains("`assertion`"), "{err}");
        assert_eq!(validate(&f(&[("relayUrl", Val::Str("/r"))]), true).unwrap().assertion, AssertionSource::Meta);
        assert_eq!(validate(&f(&[("relayUrl", Val::Str("/r")), ("assertion", Val::Func), ("portalId", Val::Num(1234567.0))]), false).unwrap().portal_id.as_deref(), Some("1234567"));
    }
}
