//! The one narrow interface between the JS shell and the wasm core: a call is a string in and a
//! string out ([`Host::call`]), so the wasm needs no JS object plumbing and wasm-bindgen generates
//! one small function of glue. Fields are separated by U+001F, records by U+001E, parts of an
//! event by U+001D; the shell removes those characters from the values it sends.
//!
//! A call is `op FIELD arg FIELD arg ...`. Numbers are whole milliseconds as decimal digits; an
//! empty field is "none". The ops, with `h` a session handle from `n`:
//!
//! | op | args | answers |
//! |---|---|---|
//! | `o` | has-meta (`1` or empty), then the option records | the options ([`options`]) |
//! | `n` | sub, app email | a new session's handle |
//! | `b` | h, cached id, email, state, lease id, lease end (page clock), now | a plan |
//! | `t` | h, id, email, state, lease id, emailValidUntil, rotateUtk, chat email, chat token, relay now, now | a plan |
//! | `e` | h, why, now | a plan (the relay failed) |
//! | `k` | h, now | a plan (a timer) |
//! | `r` | h, sub, app email | a plan (`refresh`) |
//! | `p` / `z` | h | a plan (page hide / `reset`) |
//! | `q` | h, now | `holding, safe email, lease id, lease end, sub` |
//! | `x` | h | nothing; the session is dropped |
//!
//! A plan is `identify, resetVisitor, releaseHeld, renewAt, pollIn, releaseLease, rotateUtk,
//! chatEmail, chatToken, events` ([`plan`]). A call the core cannot read answers `!` and why.

use alloc::string::String;
use alloc::vec::Vec;
use super::options::{self, AssertionSource, Consent, Storage, Val};
use super::session::{Event, Plan, Session};
use super::ticket::{Chat, State, Ticket};

pub const FIELD: char = '\u{1f}';
pub const RECORD: char = '\u{1e}';
pub const PART: char = '\u{1d}';

/// The pieces of a text between an ASCII separator, found byte by byte: no UTF-8 decoding (an
/// ASCII byte never occurs inside a multi-byte character) and none of `str::split`'s searchers.
#[derive(Debug)]
struct Split<'a> {
    rest: Option<&'a str>,
    sep: char,
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let r = self.rest?;
        match r.bytes().position(|b| b as char == self.sep) {
            Some(i) => {
                self.rest = r.get(i + 1..);
                r.get(..i)
            }
            None => self.rest.take(),
        }
    }
}

fn split(s: &str, sep: char) -> Split<'_> {
    Split { rest: Some(s), sep }
}

/// Appends `parts` with `sep` between them.
fn join(out: &mut String, sep: char, parts: &[&str]) {
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        out.push_str(part);
    }
}

/// Whole milliseconds as decimal text (integer formatting only: no float formatting in wasm).
pub fn int(n: f64) -> String {
    let neg = n < 0.0;
    // Rounds half away from zero without f64::round (not in core).
    let mut x = if n.is_finite() { ((if neg { -n } else { n }) + 0.5) as u64 } else { 0 };
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (x % 10) as u8;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    for d in &digits[i..] {
        s.push(*d as char);
    }
    s
}

fn event(s: &mut String, e: &Event) {
    match e {
        Event::Identified { state, email, cached } => {
            join(s, PART, &["identified", state.as_str(), email.as_deref().unwrap_or(""), if *cached { "1" } else { "0" }]);
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
}

/// `identify, resetVisitor, releaseHeld, renewAt, pollIn, releaseLease, rotateUtk, chatEmail,
/// chatToken, events`. `identify` is empty (nothing), `-` (`{id}`) or the email.
pub fn plan(p: &Plan) -> String {
    let mut s = String::new();
    let flag = |b: bool| if b { "1" } else { "" };
    let (renew, poll) = (p.renew_at.map(int).unwrap_or_default(), p.poll_in.map(int).unwrap_or_default());
    join(&mut s, FIELD, &[
        match &p.identify {
            None => "",
            Some(None) => "-",
            Some(Some(e)) => e,
        },
        flag(p.reset_visitor),
        flag(p.release_held),
        &renew,
        &poll,
        p.release_lease.as_deref().unwrap_or(""),
        flag(p.rotate_utk),
        p.chat.as_ref().map_or("", |c| &c.email),
        p.chat.as_ref().map_or("", |c| &c.token),
        "",
    ]);
    for (i, e) in p.events.iter().enumerate() {
        if i > 0 {
            s.push(RECORD);
        }
        event(&mut s, e);
    }
    s
}

/// Validates options sent as records of `key FIELD kind FIELD text`, where kind is `string`,
/// `number` (text = `String(n)`), `boolean`, `function` or another `typeof`-like word. Answers
/// `!message`, or the normalized options as records of `key FIELD value`.
pub fn options(spec: &str, has_meta: bool) -> String {
    let mut fields = Vec::new();
    for rec in split(spec, RECORD).filter(|r| !r.is_empty()) {
        let mut it = split(rec, FIELD);
        let (key, kind, text) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
        let val = match kind {
            "string" => Val::Str(text),
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
        fields.push((key, val));
    }
    let mut s = String::new();
    match options::validate(&fields, has_meta) {
        Err(m) => {
            s.push('!');
            s.push_str(&m);
        }
        Ok(o) => {
            let b = |x: bool| if x { "true" } else { "false" };
            let timeout = int(o.timeout_ms);
            for (i, (k, v)) in [
                ("relayUrl", o.relay_url),
                ("assertion", match &o.assertion {
                    AssertionSource::Token => "token",
                    AssertionSource::Function => "function",
                    AssertionSource::Meta => "meta",
                }),
                ("portalId", o.portal_id.as_deref().unwrap_or("")),
                ("trackerUrl", o.tracker_url.unwrap_or("")),
                ("guard", b(o.guard)),
                ("chat", b(o.chat)),
                ("consent", if o.consent == Consent::HubSpot { "hubspot" } else { "granted" }),
                ("storage", match o.storage {
                    Storage::Session => "session",
                    Storage::Local => "local",
                    Storage::None => "none",
                }),
                ("timeoutMs", &timeout),
            ]
            .into_iter()
            .enumerate()
            {
                if i > 0 {
                    s.push(RECORD);
                }
                join(&mut s, FIELD, &[k, v]);
            }
        }
    }
    s
}

/// The fields of a call, read in order; a field left out reads as empty.
struct Args<'a>(Split<'a>);

impl<'a> Args<'a> {
    fn text(&mut self) -> &'a str {
        self.0.next().unwrap_or("")
    }
    fn opt(&mut self) -> Option<String> {
        Some(self.text()).filter(|s| !s.is_empty()).map(String::from)
    }
    fn ms(&mut self) -> Option<f64> {
        options::whole_number(self.text())
    }
    /// The page's clock; a call without one is refused by [`Host::call`].
    fn now(&mut self) -> Result<f64, &'static str> {
        self.ms().ok_or("a call needs the page's clock (whole ms)")
    }
}

/// The sessions of one page (usually one), behind handles, and the dispatch of calls.
#[derive(Debug, Default)]
pub struct Host {
    sessions: Vec<Option<Session>>,
}

impl Host {
    /// Carries out one call (see the module docs). Never panics on any input.
    pub fn call(&mut self, input: &str) -> String {
        match self.dispatch(input) {
            Ok(s) => s,
            Err(why) => {
                let mut s = String::from("!hsq-identity: ");
                s.push_str(why);
                s
            }
        }
    }

    fn dispatch(&mut self, input: &str) -> Result<String, &'static str> {
        let mut a = Args(split(input, FIELD));
        let op = a.text();
        if op == "o" {
            let has_meta = !a.text().is_empty();
            // The option records come whole, separators and all, after the second field.
            return Ok(options(a.0.rest.unwrap_or(""), has_meta));
        }
        if op == "n" {
            let s = Session::new(a.text(), a.text());
            let slot = self.sessions.iter().position(Option::is_none).unwrap_or(self.sessions.len());
            match self.sessions.get_mut(slot) {
                Some(free) => *free = Some(s),
                None => self.sessions.push(Some(s)),
            }
            return Ok(int(slot as f64));
        }
        let h = a.ms().map(|h| h as usize).ok_or("a call needs a session handle")?;
        let slot = self.sessions.get_mut(h).ok_or("no session has that handle")?;
        if op == "x" {
            *slot = None;
            return Ok(String::new());
        }
        let s = slot.as_mut().ok_or("no session has that handle")?;
        let p = match op {
            "b" => {
                let (id, email, state, lease_id, lease_until) = (a.opt(), a.opt(), State::parse(a.text()), a.opt(), a.ms());
                let cached = match (id, state) {
                    (Some(id), Some(state)) => Some(Ticket { lease_id, lease_until_local: lease_until, ..Ticket::new(id, state, email) }),
                    _ => None,
                };
                s.begin(cached, a.now()?)
            }
            "t" => {
                let (id, email, state, lease_id) = (a.text(), a.opt(), State::parse(a.text()), a.opt());
                let (valid_until, rotate) = (a.ms(), !a.text().is_empty());
                let chat = match (a.opt(), a.opt()) {
                    (Some(email), Some(token)) => Some(Chat { email, token, exp: 0.0 }),
                    _ => None,
                };
                let (server_now, now) = (a.ms(), a.now()?);
                match state {
                    None => s.on_relay_error("the relay answered a ticket with an unknown state", now),
                    Some(state) => {
                        let mut t = Ticket { lease_id, rotate_utk: rotate, chat, ..Ticket::new(id.into(), state, email) };
                        t.email_valid_until = valid_until.map(|ms| ms / 1000.0);
                        t.anchor(now, server_now.map(|ms| ms / 1000.0));
                        s.on_ticket(t, now)
                    }
                }
            }
            "e" => {
                let why = a.text();
                s.on_relay_error(why, a.now()?)
            }
            "k" => s.on_tick(a.now()?),
            "r" => s.refresh(a.text(), a.text()),
            "p" => s.page_hide(),
            "z" => s.reset(),
            "q" => {
                let now = a.now()?;
                let mut out = String::new();
                let until = s.lease_until().map(int).unwrap_or_default();
                join(&mut out, FIELD, &[
                    if s.holding(now) { "1" } else { "" },
                    s.safe_email(now).unwrap_or(""),
                    s.lease_id().unwrap_or(""),
                    &until,
                    &s.sub,
                ]);
                return Ok(out);
            }
            _ => return Err("unknown call"),
        };
        Ok(plan(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ticket::Chat;

    fn call(host: &mut Host, fields: &[&str]) -> String {
        host.call(&fields.join("\u{1f}"))
    }

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
        let identified = Event::Identified { state: State::Confirmed, email: Some("a@x.io".into()), cached: true };
        assert_eq!(plan(&Plan { events: vec![identified], ..Plan::default() }).split(FIELD).nth(9), Some("identified\u{1d}confirmed\u{1d}a@x.io\u{1d}1"));
    }

    #[test]
    fn options_normalize_or_name_the_bad_one() {
        let spec = ["relayUrl\u{1f}string\u{1f} /r ", "assertion\u{1f}string\u{1f}a.b.c", "portalId\u{1f}number\u{1f}1234567"].join("\u{1e}");
        let out = options(&spec, false);
        assert!(out.starts_with("relayUrl\u{1f}/r\u{1e}assertion\u{1f}token\u{1e}"), "{out}");
        assert!(out.contains("portalId\u{1f}1234567"), "{out}");
        assert!(out.ends_with("timeoutMs\u{1f}3000"), "{out}");
        let bad = options("relayUrl\u{1f}string\u{1f}/r\u{1e}assertion\u{1f}function\u{1f}\u{1e}timeoutMs\u{1f}number\u{1f}2.5", false);
        assert!(bad.starts_with("!") && bad.contains("`timeoutMs`"), "{bad}");
    }

    #[test]
    fn a_session_is_driven_through_calls_and_dropped() {
        let mut host = Host::default();
        // The option records keep their own separators through the call.
        let opts = call(&mut host, &["o", "", "relayUrl\u{1f}string\u{1f}/r\u{1e}assertion\u{1f}function\u{1f}"]);
        assert!(opts.starts_with("relayUrl\u{1f}/r\u{1e}assertion\u{1f}function"), "{opts}");
        assert!(call(&mut host, &["o", "1", "relayUrl\u{1f}string\u{1f}/r"]).contains("assertion\u{1f}meta"));

        assert_eq!(call(&mut host, &["n", "u_1", "a@x.io"]), "0");
        assert_eq!(call(&mut host, &["n", "u_2", "b@x.io"]), "1");
        let begin = call(&mut host, &["b", "0", "", "", "", "", "", "1000"]);
        assert_eq!(begin.split(FIELD).next(), Some("-"), "no cache: the id alone");
        // The relay confirms a@x.io until 1_600 s on its clock, which reads 1_000 s.
        let t = call(&mut host, &["t", "0", "u_1", "a@x.io", "confirmed", "l_1", "1600000", "", "", "", "1000000", "2000"]);
        let f: Vec<&str> = t.split(FIELD).collect();
        assert_eq!((f[0], f[2]), ("a@x.io", "1"), "{t}");
        assert_eq!(call(&mut host, &["q", "0", "3000"]), "\u{1f}a@x.io\u{1f}l_1\u{1f}602000\u{1f}u_1");
        assert_eq!(call(&mut host, &["q", "0", "598000"]).split(FIELD).next(), Some("1"), "5 s before the lease ends, hits wait");
        let hide = call(&mut host, &["p", "0"]);
        assert_eq!(hide.split(FIELD).nth(5), Some("l_1"));

        // A cached ticket from the previous page identifies at once.
        let cached = call(&mut host, &["b", "1", "u_2", "b@x.io", "confirmed", "l_2", "90000", "1000"]);
        assert_eq!(cached.split(FIELD).next(), Some("b@x.io"), "{cached}");

        assert_eq!(call(&mut host, &["x", "0"]), "");
        assert!(call(&mut host, &["q", "0", "1"]).starts_with("!hsq-identity: no session"));
        assert_eq!(call(&mut host, &["n", "u_3", "c@x.io"]), "0", "a dropped handle is reused");
    }

    #[test]
    fn no_input_makes_a_call_panic() {
        // Calls of every op with fields drawn from pieces that matter to the parser (handles,
        // separators, states, multi-byte text, long digit runs), by a fixed pseudo-random sequence.
        let ops = ["o", "n", "b", "t", "e", "k", "r", "p", "z", "q", "x", "w", ""];
        let pieces = [
            "0", "1", "2", "", "\u{1e}", "\u{1d}", "é", "confirmed", "pending", "u_1", "a@x.io", "1000", "999999999999999",
            "1234567890123456789", "-5", "2.5", "relayUrl\u{1f}string\u{1f}/r", "timeoutMs\u{1f}number\u{1f}",
        ];
        let mut host = Host::default();
        let (mut seed, mut driven): (u64, u32) = (0x9e37_79b9_7f4a_7c15, 0);
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % n
        };
        for _ in 0..20_000 {
            let op = ops[next(ops.len())];
            let mut input = String::from(op);
            for _ in 0..next(13) {
                input.push(FIELD);
                input.push_str(pieces[next(pieces.len())]);
            }
            let out = host.call(&input);
            if !out.starts_with('!') && !matches!(op, "o" | "n" | "x") {
                driven += 1;
            }
        }
        assert!(driven > 500, "the sequence drove sessions, not only refusals: {driven}");
    }

    #[test]
    fn calls_the_core_cannot_read_are_refused_with_why() {
        let mut host = Host::default();
        call(&mut host, &["n", "u_1", "a@x.io"]);
        for (fields, why) in [
            (&["w", "0"][..], "unknown call"),
            (&["k"][..], "session handle"),
            (&["k", "7", "1"][..], "no session has that handle"),
            (&["k", "0", "soon"][..], "the page's clock"),
            (&[""][..], "session handle"),
        ] {
            let out = call(&mut host, fields);
            assert!(out.starts_with("!") && out.contains(why), "{fields:?}: {out}");
        }
        let t = call(&mut host, &["t", "0", "u_1", "", "weird", "", "", "", "", "", "", "5"]);
        assert!(t.contains("relay-error\u{1d}the relay answered a ticket with an unknown state"), "{t}");
    }
}
