//! The rule of DESIGN.md section 2, as a state machine the web shell drives:
//!
//! > Every hit the tracker sends carries either no email, or an email that HubSpot holds as the
//! > primary email of this user's contact and that the relay has leased to this page. The page
//! > always sends the app's stable user id as `id`.
//!
//! The tracker keeps an identify's email on every later hit of the page, so once an email is
//! pushed ("carried") the page must hold its hits whenever that email has no live lease, until
//! the relay confirms the next email.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use super::ticket::{cache_usable, Chat, State, Ticket};

/// Hits stop this long before a lease ends, for the time a hit takes to reach HubSpot.
pub const HOLD_MARGIN_MS: f64 = 5_000.0;

/// Something to tell the page's `onEvent`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A ticket arrived (or a cached one was used): its state and the email the page may send.
    Identified { state: State, email: Option<String>, cached: bool },
    /// Hits are held: the tracker carries an email whose lease is not live.
    Hold,
    /// The held hits go out: the new email is confirmed.
    Release,
    /// This page gave its lease back.
    LeaseReleased,
    /// The browser's HubSpot cookies belonged to another user and are deleted.
    RotateUtk,
    /// The relay could not be asked or answered badly; retried in the background.
    RelayError(String),
}

/// What the shell does after an event. Empty by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Push `identify`: `Some(None)` is `{id}`, `Some(Some(e))` is `{id, email: e}`.
    pub identify: Option<Option<String>>,
    /// Clear the tracker's visitor and identity first (another user on this page).
    pub reset_visitor: bool,
    /// Let held hits go, in order.
    pub release_held: bool,
    /// Ask the relay again at this time (page clock, ms), to renew the lease.
    pub renew_at: Option<f64>,
    /// Ask the relay again in this many ms (pending, unknown, errors).
    pub poll_in: Option<f64>,
    /// Give this lease back to the relay.
    pub release_lease: Option<String>,
    /// Delete the HubSpot cookies (before the tracker loads).
    pub rotate_utk: bool,
    /// Identify the chat widget with this.
    pub chat: Option<Chat>,
    pub events: Vec<Event>,
}

/// One page's identity for one user.
#[derive(Debug, Clone)]
pub struct Session {
    pub sub: String,
    /// The email in the app's assertion.
    pub app_email: String,
    pub ticket: Option<Ticket>,
    /// The email the tracker carries on this page (an identify with it was pushed).
    carried: Option<String>,
    /// The lease covering `carried`: (lease id, end on the page clock in ms).
    lease: Option<(String, f64)>,
    pushed_id: bool,
    polls: u32,
}

/// When to renew a lease ending at `until`: a third of its usable span (hits stop `HOLD_MARGIN_MS`
/// before the end) before that, at least 30 s before, never earlier than half-way. A short lease
/// (one from the cache of the previous page, kept for a grace) is renewed before hits would stop.
pub fn renew_time(now: f64, until: f64) -> f64 {
    let usable = until - HOLD_MARGIN_MS;
    let span = (usable - now).max(0.0);
    usable - (span / 3.0).max(30_000.0).min(span / 2.0)
}

/// Polling delay after `n` answers without a confirmed email: 0.5 s growing to 15 s.
pub fn poll_delay(n: u32, state: State) -> f64 {
    if state == State::Conflict {
        return 60_000.0;
    }
    let mut d: f64 = 500.0;
    for _ in 1..n.min(13) {
        d *= 1.6;
    }
    d.min(15_000.0)
}

impl Session {
    pub fn new(sub: impl Into<String>, app_email: impl Into<String>) -> Self {
        Session { sub: sub.into(), app_email: app_email.into(), ticket: None, carried: None, lease: None, pushed_id: false, polls: 0 }
    }

    pub fn lease_id(&self) -> Option<&str> {
        self.lease.as_ref().map(|(id, _)| id.as_str())
    }

    /// When the lease ends (page clock, ms).
    pub fn lease_until(&self) -> Option<f64> {
        self.lease.as_ref().map(|(_, until)| *until)
    }

    pub fn carried(&self) -> Option<&str> {
        self.carried.as_deref()
    }

    /// Whether hits must wait: the tracker carries an email without a live lease.
    pub fn holding(&self, now: f64) -> bool {
        self.carried.is_some() && !self.lease.as_ref().is_some_and(|(_, until)| until - HOLD_MARGIN_MS > now)
    }

    /// The email a rewritten identify may carry now (the guard's answer), if any.
    pub fn safe_email(&self, now: f64) -> Option<&str> {
        if self.holding(now) { None } else { self.carried.as_deref() }
    }

    fn push_id(&mut self, plan: &mut Plan) {
        if !self.pushed_id {
            self.pushed_id = true;
            plan.identify = Some(None);
        }
    }

    /// The first decision, before any network call: a usable cached ticket identifies with its
    /// email at once; otherwise the id alone. A cached lease on an email the app no longer has is
    /// given back.
    pub fn begin(&mut self, cached: Option<Ticket>, now: f64) -> Plan {
        let mut plan = Plan::default();
        match cached {
            Some(t) if cache_usable(&t, &self.sub, &self.app_email, now, HOLD_MARGIN_MS) => {
                return self.confirmed(t, now, true);
            }
            Some(t) if t.id == self.sub => {
                if let (State::Confirmed, Some(l)) = (t.state, t.lease_id) {
                    plan.release_lease = Some(l);
                }
            }
            _ => {}
        }
        self.push_id(&mut plan);
        plan
    }

    fn confirmed(&mut self, t: Ticket, now: f64, cached: bool) -> Plan {
        let mut plan = Plan::default();
        let (Some(email), Some(lease_id), Some(until)) = (t.email.clone(), t.lease_id.clone(), t.lease_until_local) else {
            return self.unconfirmed(t, now);
        };
        let was_holding = self.holding(now);
        if self.carried.as_deref() != Some(email.as_str()) || !self.pushed_id {
            plan.identify = Some(Some(email.clone()));
            self.pushed_id = true;
            self.carried = Some(email.clone());
        }
        self.lease = Some((lease_id, until));
        self.polls = 0;
        plan.release_held = true;
        if was_holding {
            plan.events.push(Event::Release);
        }
        plan.renew_at = Some(renew_time(now, until));
        plan.chat = t.chat.clone();
        plan.events.push(Event::Identified { state: State::Confirmed, email: Some(email), cached });
        self.ticket = Some(t);
        plan
    }

    fn unconfirmed(&mut self, t: Ticket, now: f64) -> Plan {
        let mut plan = Plan::default();
        self.push_id(&mut plan);
        self.polls += 1;
        let mut delay = poll_delay(self.polls, t.state);
        // While the lease lives, ask again before it ends.
        if let Some((_, until)) = &self.lease {
            if *until - HOLD_MARGIN_MS > now {
                delay = delay.min((until - HOLD_MARGIN_MS - now).max(500.0));
            }
        }
        plan.poll_in = Some(delay);
        plan.events.push(Event::Identified { state: t.state, email: None, cached: false });
        if self.holding(now) {
            plan.events.push(Event::Hold);
        }
        self.ticket = Some(t);
        plan
    }

    /// A ticket from the relay.
    pub fn on_ticket(&mut self, t: Ticket, now: f64) -> Plan {
        if t.id != self.sub {
            return self.on_relay_error("the relay answered for another user", now);
        }
        let rotate = t.rotate_utk;
        let mut plan = if t.state == State::Confirmed && t.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(&self.app_email)) {
            self.confirmed(t, now, false)
        } else {
            self.unconfirmed(t, now)
        };
        if rotate {
            plan.rotate_utk = true;
            plan.events.push(Event::RotateUtk);
        }
        plan
    }

    /// The relay failed (network, timeout, 5xx, garbage): identify by id and try again later.
    pub fn on_relay_error(&mut self, why: &str, now: f64) -> Plan {
        let mut plan = Plan::default();
        self.push_id(&mut plan);
        self.polls += 1;
        plan.poll_in = Some(poll_delay(self.polls, State::Unknown).max(1000.0));
        plan.events.push(Event::RelayError(why.to_string()));
        if self.holding(now) {
            plan.events.push(Event::Hold);
        }
        plan
    }

    /// A timer: did the lease just run out? Then hits are held from now on.
    pub fn on_tick(&mut self, now: f64) -> Plan {
        let mut plan = Plan::default();
        if self.holding(now) {
            plan.events.push(Event::Hold);
            plan.poll_in = Some(0.0);
        }
        plan
    }

    /// `refresh(assertion)`: a new login (another `sub`) or the app changed the user's email.
    pub fn refresh(&mut self, sub: &str, app_email: &str) -> Plan {
        let mut plan = Plan::default();
        if sub != self.sub {
            plan.release_lease = self.lease.take().map(|(id, _)| id);
            plan.reset_visitor = true;
            *self = Session::new(sub, app_email);
            self.push_id(&mut plan);
        } else if !app_email.eq_ignore_ascii_case(&self.app_email) {
            self.app_email = app_email.to_string();
            // The old email's lease goes back at once so the relay can apply the change; the
            // tracker still carries the old email, so hits wait for the new one.
            plan.release_lease = self.lease.take().map(|(id, _)| id);
            if self.carried.is_some() {
                plan.events.push(Event::Hold);
            }
        }
        if plan.release_lease.is_some() {
            plan.events.push(Event::LeaseReleased);
        }
        self.polls = 0;
        plan
    }

    /// The page is hidden (maybe for good): give the lease back. If the page comes back from the
    /// back-forward cache, hits wait for a new lease.
    pub fn page_hide(&mut self) -> Plan {
        let mut plan = Plan::default();
        plan.release_lease = self.lease.take().map(|(id, _)| id);
        if plan.release_lease.is_some() {
            plan.events.push(Event::LeaseReleased);
        }
        plan
    }

    /// `reset()`: logout. The lease goes back and the tracker's visitor and identity are cleared.
    pub fn reset(&mut self) -> Plan {
        let mut plan = self.page_hide();
        plan.reset_visitor = true;
        self.carried = None;
        self.ticket = None;
        self.pushed_id = false;
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ticket::tests::confirmed;

    fn pending() -> Ticket {
        let mut t = confirmed("x@x.io", 0.0, 0.0);
        t.state = State::Pending;
        t.email = None;
        t.lease_id = None;
        t.email_valid_until = None;
        t.lease_until_local = None;
        t
    }

    #[test]
    fn a_short_lease_is_renewed_before_hits_would_stop() {
        let mut s = Session::new("u_1", "a@x.io");
        // A cached lease with 9 s left: hits stop at 4 s, so the renewal comes before that.
        let p = s.begin(Some(confirmed("a@x.io", 9_000.0, 0.0)), 0.0);
        let renew = p.renew_at.unwrap();
        assert!(renew > 0.0 && renew < 4_000.0, "renews at {renew}");
        assert!(!s.holding(renew), "hits still flow when the renewal goes");
    }

    #[test]
    fn without_a_cache_the_id_goes_first_and_the_email_when_confirmed() {
        let mut s = Session::new("u_1", "a@x.io");
        let p = s.begin(None, 0.0);
        assert_eq!(p.identify, Some(None));
        let p = s.on_ticket(confirmed("a@x.io", 600_000.0, 1000.0), 1000.0);
        assert_eq!(p.identify, Some(Some("a@x.io".into())));
        let renew = p.renew_at.unwrap();
        assert!(renew > 1000.0 && renew <= 601_000.0 - 30_000.0, "renews before the end: {renew}");
        assert_eq!(s.safe_email(2000.0), Some("a@x.io"));
        // A renewal of the same email pushes nothing again.
        let p = s.on_ticket(confirmed("a@x.io", 600_000.0, 400_000.0), 400_000.0);
        assert_eq!(p.identify, None);
        assert!(!s.holding(900_000.0), "the renewal extended the lease");
    }

    #[test]
    fn a_usable_cached_ticket_identifies_with_its_email_before_any_network_call() {
        let mut s = Session::new("u_1", "a@x.io");
        let p = s.begin(Some(confirmed("a@x.io", 60_000.0, 0.0)), 1000.0);
        assert_eq!(p.identify, Some(Some("a@x.io".into())));
        assert!(matches!(p.events[0], Event::Identified { cached: true, .. }));

        // The app's email changed since: id only, and the old lease goes back.
        let mut s = Session::new("u_1", "b@x.io");
        let p = s.begin(Some(confirmed("a@x.io", 60_000.0, 0.0)), 1000.0);
        assert_eq!(p.identify, Some(None));
        assert_eq!(p.release_lease.as_deref(), Some("l_1"));
    }

    #[test]
    fn a_pending_renewal_keeps_the_email_until_the_lease_ends_then_holds_until_the_new_one() {
        let mut s = Session::new("u_1", "a@x.io");
        s.begin(None, 0.0);
        s.on_ticket(confirmed("a@x.io", 60_000.0, 0.0), 0.0);
        // The user changed their email on another device: the renewal answers pending.
        s.app_email = "b@x.io".into();
        let p = s.on_ticket(pending(), 30_000.0);
        assert_eq!(p.identify, None, "nothing to push: the tracker keeps a@x.io");
        assert!(!s.holding(30_000.0));
        assert!(p.poll_in.unwrap() <= 25_000.0, "asks again before the lease ends");
        assert!(s.holding(55_001.0), "5 s before the lease ends, hits wait");
        assert_eq!(s.safe_email(56_000.0), None, "the guard adds no email while holding");
        assert_eq!(s.on_tick(56_000.0).events, vec![Event::Hold]);
        let p = s.on_ticket(confirmed("b@x.io", 60_000.0, 70_000.0), 70_000.0);
        assert_eq!(p.identify, Some(Some("b@x.io".into())));
        assert!(p.release_held);
        assert!(p.events.contains(&Event::Release));
        assert!(!s.holding(70_000.0));
    }

    #[test]
    fn refresh_after_an_email_change_gives_the_lease_back_and_holds_at_once() {
        let mut s = Session::new("u_1", "a@x.io");
        s.begin(None, 0.0);
        s.on_ticket(confirmed("a@x.io", 600_000.0, 0.0), 0.0);
        let p = s.refresh("u_1", "b@x.io");
        assert_eq!(p.release_lease.as_deref(), Some("l_1"));
        assert!(s.holding(1.0));
        // A confirmed ticket for the old email (a stale answer) does not end the hold.
        s.on_ticket(confirmed("a@x.io", 600_000.0, 2.0), 2.0);
        assert!(s.holding(3.0));
        s.on_ticket(confirmed("b@x.io", 600_000.0, 4.0), 4.0);
        assert!(!s.holding(5.0));
    }

    #[test]
    fn another_user_on_the_same_page_starts_a_fresh_visitor() {
        let mut s = Session::new("u_1", "a@x.io");
        s.begin(None, 0.0);
        s.on_ticket(confirmed("a@x.io", 600_000.0, 0.0), 0.0);
        let p = s.refresh("u_2", "b@x.io");
        assert!(p.reset_visitor);
        assert_eq!(p.identify, Some(None));
        assert_eq!(p.release_lease.as_deref(), Some("l_1"));
        assert_eq!((s.sub.as_str(), s.carried()), ("u_2", None));
    }

    #[test]
    fn page_hide_and_reset_give_the_lease_back() {
        let mut s = Session::new("u_1", "a@x.io");
        s.begin(None, 0.0);
        s.on_ticket(confirmed("a@x.io", 600_000.0, 0.0), 0.0);
        assert_eq!(s.page_hide().release_lease.as_deref(), Some("l_1"));
        assert!(s.holding(1.0), "back from the back-forward cache, hits wait for a new lease");
        let p = s.reset();
        assert!(p.reset_visitor);
        assert!(!s.holding(1.0));
    }

    #[test]
    fn errors_and_pending_answers_poll_with_growing_delays() {
        let mut s = Session::new("u_1", "a@x.io");
        assert_eq!(s.begin(None, 0.0).identify, Some(None));
        let d: Vec<f64> = (0..4).map(|_| s.on_relay_error("down", 0.0).poll_in.unwrap()).collect();
        assert!(d.windows(2).all(|w| w[1] >= w[0]), "{d:?}");
        assert!(d.iter().all(|x| *x <= 15_000.0));
        let p = s.on_relay_error("down", 0.0);
        assert_eq!(p.identify, None, "the id was pushed once");
        let mut c = pending();
        c.state = State::Conflict;
        assert_eq!(s.on_ticket(c, 0.0).poll_in, Some(60_000.0));
    }
}
