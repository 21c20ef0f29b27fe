//! The wasm exports: [`Core`] (a [`Session`] behind plain strings and numbers) and two helpers.
//! The JS shell (`js/index.js`) calls these; see [`crate::core::wire`] for the encoding.

use alloc::string::{String, ToString};
use crate::core::session::Session;
use crate::core::ticket::{Chat, State, Ticket};
use crate::core::{jws, wire};
use wasm_bindgen::prelude::*;

fn opt_num(n: f64) -> Option<f64> {
    if n.is_finite() { Some(n) } else { None }
}

/// Validates `StableIdentity.start` options (see [`wire::options`]).
#[wasm_bindgen(js_name = checkOptions)]
pub fn check_options(spec: &str, has_meta: bool) -> String {
    wire::options(spec, has_meta)
}

/// The payload text of a compact JWS, unverified.
#[wasm_bindgen(js_name = jwsPayload)]
pub fn jws_payload(token: &str) -> Option<String> {
    jws::payload(token)
}

/// One page's identity state machine. Every method answers an encoded plan ([`wire::plan`]).
#[wasm_bindgen]
#[derive(Debug)]
pub struct Core {
    s: Session,
}

#[wasm_bindgen]
impl Core {
    #[wasm_bindgen(constructor)]
    pub fn new(sub: String, email: String) -> Core {
        Core { s: Session::new(sub, email) }
    }

    pub fn sub(&self) -> String {
        self.s.sub.clone()
    }

    /// The first decision, with the cached ticket's fields if there is one.
    pub fn begin(&mut self, id: Option<String>, email: Option<String>, state: Option<String>, lease_id: Option<String>, lease_until_local: f64, now: f64) -> String {
        let cached = match (id, state.as_deref().and_then(State::parse)) {
            (Some(id), Some(state)) => Some(Ticket {
                id,
                contact_id: None,
                email,
                state,
                lease_id,
                email_valid_until: None,
                exp: 0.0,
                rotate_utk: false,
                chat: None,
                lease_until_local: opt_num(lease_until_local),
            }),
            _ => None,
        };
        wire::plan(&self.s.begin(cached, now))
    }

    /// A ticket from the relay. `server_now` (the relay's clock, s) is NaN when it did not say.
    #[allow(clippy::too_many_arguments)]
    pub fn ticket(
        &mut self,
        id: String,
        email: Option<String>,
        state: &str,
        lease_id: Option<String>,
        email_valid_until: f64,
        rotate_utk: bool,
        chat_email: Option<String>,
        chat_token: Option<String>,
        server_now: f64,
        now: f64,
    ) -> String {
        let Some(state) = State::parse(state) else {
            return wire::plan(&self.s.on_relay_error("the relay answered a ticket with an unknown state", now));
        };
        let chat = match (chat_email, chat_token) {
            (Some(email), Some(token)) => Some(Chat { email, token, exp: 0.0 }),
            _ => None,
        };
        let mut t = Ticket {
            id,
            contact_id: None,
            email,
            state,
            lease_id,
            email_valid_until: opt_num(email_valid_until),
            exp: 0.0,
            rotate_utk,
            chat,
            lease_until_local: None,
        };
        t.anchor(now, opt_num(server_now));
        wire::plan(&self.s.on_ticket(t, now))
    }

    /// The relay could not be asked or answered badly.
    pub fn error(&mut self, why: &str, now: f64) -> String {
        wire::plan(&self.s.on_relay_error(why, now))
    }

    pub fn tick(&mut self, now: f64) -> String {
        wire::plan(&self.s.on_tick(now))
    }

    pub fn refresh(&mut self, sub: &str, email: &str) -> String {
        wire::plan(&self.s.refresh(sub, email))
    }

    pub fn hide(&mut self) -> String {
        wire::plan(&self.s.page_hide())
    }

    pub fn reset(&mut self) -> String {
        wire::plan(&self.s.reset())
    }

    pub fn holding(&self, now: f64) -> bool {
        self.s.holding(now)
    }

    #[wasm_bindgen(js_name = safeEmail)]
    pub fn safe_email(&self, now: f64) -> Option<String> {
        self.s.safe_email(now).map(str::to_string)
    }

    #[wasm_bindgen(js_name = leaseId)]
    pub fn lease_id(&self) -> Option<String> {
        self.s.lease_id().map(str::to_string)
    }

    /// When the lease ends on the page's clock (ms), or NaN.
    #[wasm_bindgen(js_name = leaseUntil)]
    pub fn lease_until(&self) -> f64 {
        self.s.lease_until().unwrap_or(f64::NAN)
    }
}
