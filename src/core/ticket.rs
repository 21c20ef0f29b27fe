//! The relay's ticket (DESIGN.md section 5) and what the page may do with a cached one.

use alloc::string::String;
/// The ticket's `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// HubSpot holds the app's email as this contact's primary email; it is leased to the page.
    Confirmed,
    /// The app's email differs and an update is queued.
    Pending,
    /// Another contact holds the app's email.
    Conflict,
    /// HubSpot could not be read.
    Unknown,
}

impl State {
    pub fn parse(s: &str) -> Option<State> {
        match s {
            "confirmed" => Some(State::Confirmed),
            "pending" => Some(State::Pending),
            "conflict" => Some(State::Conflict),
            "unknown" => Some(State::Unknown),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            State::Confirmed => "confirmed",
            State::Pending => "pending",
            State::Conflict => "conflict",
            State::Unknown => "unknown",
        }
    }
}

/// The chat part of a ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct Chat {
    pub email: String,
    pub token: String,
    pub exp: f64,
}

/// A ticket, with the lease's end on the page's own clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub id: String,
    pub contact_id: Option<String>,
    pub email: Option<String>,
    pub state: State,
    pub lease_id: Option<String>,
    /// The relay's `emailValidUntil` (seconds, the relay's clock).
    pub email_valid_until: Option<f64>,
    /// The relay's `exp` (seconds).
    pub exp: f64,
    pub rotate_utk: bool,
    pub chat: Option<Chat>,
    /// When the lease ends on the page's clock (ms): the relay's lease length counted from when
    /// the answer arrived, so a skewed page clock does not stretch a lease.
    pub lease_until_local: Option<f64>,
}

impl Ticket {
    /// A ticket with only what every ticket has; the rest is none.
    pub fn new(id: String, state: State, email: Option<String>) -> Ticket {
        Ticket {
            id,
            contact_id: None,
            email,
            state,
            lease_id: None,
            email_valid_until: None,
            exp: 0.0,
            rotate_utk: false,
            chat: None,
            lease_until_local: None,
        }
    }

    /// Sets `lease_until_local` from the answer's arrival. `server_now` is the relay's clock (s)
    /// when it answered, if it said; otherwise the page's clock is taken as the relay's.
    pub fn anchor(&mut self, arrived_local_ms: f64, server_now: Option<f64>) {
        self.lease_until_local = self.email_valid_until.map(|until| {
            let now = server_now.unwrap_or(arrived_local_ms / 1000.0);
            arrived_local_ms + (until - now) * 1000.0
        });
    }

    /// A confirmed ticket whose lease is still live at `now` (ms, page clock) with `margin` to spare.
    pub fn live_email(&self, now: f64, margin: f64) -> Option<&str> {
        match (self.state, self.email.as_deref(), self.lease_until_local) {
            (State::Confirmed, Some(e), Some(until)) if until - margin > now => Some(e),
            _ => None,
        }
    }
}

/// Whether a cached ticket lets the page identify with an email before any network call: the same
/// user, the same email as the app's assertion, and a live lease.
pub fn cache_usable(t: &Ticket, sub: &str, app_email: &str, now: f64, margin: f64) -> bool {
    t.id == sub && t.live_email(now, margin).is_some_and(|e| e.eq_ignore_ascii_case(app_email))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn confirmed(email: &str, lease_ms: f64, now: f64) -> Ticket {
        Ticket {
            id: "u_1".into(),
            contact_id: Some("101".into()),
            email: Some(email.into()),
            state: State::Confirmed,
            lease_id: Some("l_1".into()),
            email_valid_until: Some((now + lease_ms) / 1000.0),
            exp: now / 1000.0 + 300.0,
            rotate_utk: false,
            chat: None,
            lease_until_local: Some(now + lease_ms),
        }
    }

    #[test]
    fn the_lease_is_counted_on_the_pages_clock_from_the_answer() {
        let mut t = confirmed("a@x.io", 0.0, 0.0);
        t.email_valid_until = Some(1_000_600.0);
        // The relay's clock says 1_000_000 s; the page's clock is 5 minutes behind.
        t.anchor(999_700_000.0, Some(1_000_000.0));
        assert_eq!(t.lease_until_local, Some(999_700_000.0 + 600_000.0));
    }

    #[test]
    fn a_cached_ticket_is_used_only_for_the_same_user_email_and_a_live_lease() {
        let now = 1_000_000.0;
        let t = confirmed("a@x.io", 60_000.0, now);
        assert!(cache_usable(&t, "u_1", "A@x.io", now, 5_000.0));
        assert!(!cache_usable(&t, "u_2", "a@x.io", now, 5_000.0), "another user");
        assert!(!cache_usable(&t, "u_1", "b@x.io", now, 5_000.0), "the app's email changed");
        assert!(!cache_usable(&t, "u_1", "a@x.io", now + 56_000.0, 5_000.0), "the lease is about to end");
        let mut p = t.clone();
        p.state = State::Pending;
        assert!(!cache_usable(&p, "u_1", "a@x.io", now, 5_000.0));
    }
}
