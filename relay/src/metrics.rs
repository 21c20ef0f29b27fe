//! Counters for `/metrics` (Prometheus text format). Labels never carry secrets or user data.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    hubspot: Mutex<BTreeMap<String, u64>>,
    states: Mutex<BTreeMap<&'static str, u64>>,
    /// HubSpot-side changes: webhook events received / new, leases ended, changes applied.
    changes: Mutex<BTreeMap<&'static str, u64>>,
    alarms: Mutex<BTreeMap<&'static str, u64>>,
    /// The tracker's duplicates: merged, refused (not provably the tracker's), failed, found off.
    repairs: Mutex<BTreeMap<&'static str, u64>>,
    /// New users whose contact is waiting for a create call or in one.
    creating: AtomicI64,
}

/// Counts a new user as waiting for its contact while alive.
#[derive(Debug)]
pub struct Creating<'a>(&'a Metrics);

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        self.0.creating.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((route.to_string(), status)).or_default() += 1;
    }

    /// One HubSpot call, by status code (or `timeout` / `error`).
    pub fn hubspot_call(&self, status: &str) {
        *self.hubspot.lock().unwrap_or_else(|e| e.into_inner()).entry(status.to_string()).or_default() += 1;
    }

    /// Something an operator must fix (e.g. `hubspot_auth`: HubSpot refuses the access token).
    pub fn alarm(&self, name: &'static str) {
        *self.alarms.lock().unwrap_or_else(|e| e.into_inner()).entry(name).or_default() += 1;
    }

    /// A new user's contact is being created until the answer is dropped.
    pub fn creating(&self) -> Creating<'_> {
        self.creating.fetch_add(1, Ordering::Relaxed);
        Creating(self)
    }

    pub fn ticket(&self, state: &'static str) {
        *self.states.lock().unwrap_or_else(|e| e.into_inner()).entry(state).or_default() += 1;
    }

    fn change(&self, key: &'static str, n: u64) {
        *self.changes.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default() += n;
    }

    /// Webhook events received, and how many of them were not duplicates.
    pub fn webhook_events(&self, received: u64, new: u64) {
        self.change("webhook_events_received", received);
        self.change("webhook_events_new", new);
    }

    /// Leases ended because HubSpot no longer holds their email for the user.
    pub fn leases_ended(&self, n: u64) {
        self.change("leases_ended", n);
    }

    /// A HubSpot-side change applied to a user: `email`, `merged`, `unlinked` or `restored`.
    pub fn hubspot_change(&self, kind: &'static str) {
        self.change(kind, 1);
    }

    /// Contacts read again by reconciliation.
    pub fn hubspot_change_reads(&self, n: u64) {
        self.change("reconcile_reads", n);
    }

    /// A contact checked as a possible duplicate (repair.rs), by outcome: `merged`, `refused`
    /// (made with a leased email, but not provably by the tracker), `failed` (HubSpot refused
    /// the merge; tried again), `off` (found with `HSQ_REPAIR_DUPLICATES=false`).
    pub fn repair(&self, outcome: &'static str) {
        *self.repairs.lock().unwrap_or_else(|e| e.into_inner()).entry(outcome).or_default() += 1;
    }

    /// Repairs so far by outcome (tests, the bench).
    pub fn repair_count(&self, outcome: &str) -> u64 {
        self.repairs.lock().unwrap_or_else(|e| e.into_inner()).get(outcome).copied().unwrap_or(0)
    }

    /// A HubSpot-side change counter by name (tests, the bench).
    pub fn change_count(&self, key: &str) -> u64 {
        self.changes.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied().unwrap_or(0)
    }

    /// HubSpot calls so far that ended with `status`.
    pub fn hubspot_count(&self, status: &str) -> u64 {
        self.hubspot.lock().unwrap_or_else(|e| e.into_inner()).get(status).copied().unwrap_or(0)
    }

    /// Total HubSpot calls so far.
    pub fn hubspot_total(&self) -> u64 {
        self.hubspot.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }

    pub fn render(&self, outbox_depth: i64, live_leases: i64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP hsq_requests_total Relay requests by route and status.\n# TYPE hsq_requests_total counter");
        for ((route, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "hsq_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP hsq_hubspot_calls_total HubSpot API calls by status.\n# TYPE hsq_hubspot_calls_total counter");
        for (status, n) in self.hubspot.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "hsq_hubspot_calls_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP hsq_tickets_total Tickets issued by state.\n# TYPE hsq_tickets_total counter");
        for (state, n) in self.states.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "hsq_tickets_total{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP hsq_hubspot_changes_total HubSpot-side changes: webhook events, leases ended, changes applied, reconcile reads.\n# TYPE hsq_hubspot_changes_total counter");
        for (kind, n) in self.changes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "hsq_hubspot_changes_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP hsq_alarms_total Conditions an operator must fix, by alarm (hubspot_auth: HubSpot refuses the access token).\n# TYPE hsq_alarms_total counter");
        let alarms = self.alarms.lock().unwrap_or_else(|e| e.into_inner());
        for name in ["hubspot_auth"] {
            let _ = writeln!(out, "hsq_alarms_total{{alarm=\"{name}\"}} {}", alarms.get(name).copied().unwrap_or(0));
        }
        drop(alarms);
        let _ = writeln!(out, "# HELP hsq_duplicate_repairs_total Contacts the tracker made with an email leased to a user: merged into the user's contact, refused (not provably the tracker's), failed merges, or left (repair off).\n# TYPE hsq_duplicate_repairs_total counter");
        let repairs = self.repairs.lock().unwrap_or_else(|e| e.into_inner());
        for outcome in ["merged", "refused", "failed", "off"] {
            let _ = writeln!(out, "hsq_duplicate_repairs_total{{outcome=\"{outcome}\"}} {}", repairs.get(outcome).copied().unwrap_or(0));
        }
        drop(repairs);
        let _ = writeln!(out, "# HELP hsq_outbox_depth Email changes waiting to be applied.\n# TYPE hsq_outbox_depth gauge\nhsq_outbox_depth {outbox_depth}");
        let _ = writeln!(
            out,
            "# HELP hsq_contacts_awaiting_creation New users whose contact waits for a (batched) create call.\n# TYPE hsq_contacts_awaiting_creation gauge\nhsq_contacts_awaiting_creation {}",
            self.creating.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP hsq_live_leases Leases on confirmed emails that are live.\n# TYPE hsq_live_leases gauge\nhsq_live_leases {live_leases}");
        out
    }
}
