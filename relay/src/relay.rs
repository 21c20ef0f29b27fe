//! The relay's decisions: which HubSpot contact a user is, whether the page may send an email,
//! leases on confirmed emails, and queuing email changes (DESIGN.md sections 2 and 5).

use crate::assertion::{Claims, Verifier};
use crate::config::ServeArgs;
use crate::error::{ApiError, ApiResult};
use crate::hubspot::{Contact, HubSpot, HubSpotError, Retry};
use crate::metrics::Metrics;
use crate::store::{Misses, Store, User, UserTx};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A utk binding is noted again (its `at` refreshed, for pruning) at most this often.
const UTK_NOTE_MS: i64 = 3_600_000;
/// Visitor identification tokens live 12 h; the relay reuses one for at most 11 h.
const CHAT_TOKEN_REUSE_MS: i64 = 11 * 3600 * 1000;

/// The chat part of a ticket.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Chat {
    pub email: String,
    pub token: String,
    pub exp: i64,
}

/// What the page gets back (DESIGN.md section 5).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    pub id: String,
    pub contact_id: Option<String>,
    pub email: Option<String>,
    /// `confirmed`, `pending`, `conflict` or `unknown`.
    #[schema(value_type = String)]
    pub state: &'static str,
    pub lease_id: Option<String>,
    pub email_valid_until: Option<i64>,
    pub exp: i64,
    pub rotate_utk: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat: Option<Chat>,
    /// The relay's clock (s) when it answered, so the page counts the lease on its own clock.
    /// (An addition to DESIGN.md's ticket.)
    pub now: i64,
}

/// Shared state of a running relay.
pub struct Relay {
    pub store: Arc<dyn Store>,
    pub hubspot: HubSpot,
    pub verifier: Verifier,
    pub config: Arc<ServeArgs>,
    pub metrics: Arc<Metrics>,
    /// Wakes the outbox worker (a change was queued or a lease released).
    pub outbox_wake: Notify,
    /// Wakes the worker that applies HubSpot-side changes (webhook events were stored).
    pub hubspot_wake: Notify,
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// This relay process, as it names itself on the outbox jobs it claims.
    pub instance: String,
    /// The last failed HubSpot read per user and when it ended: requests that were waiting for the
    /// user's lock while it ran share its outcome instead of calling HubSpot again (single flight).
    read_failures: Mutex<HashMap<String, (tokio::time::Instant, HubSpotError)>>,
    /// The account's contact properties, as last read from HubSpot, and when.
    properties: tokio::sync::Mutex<Option<(tokio::time::Instant, HashMap<String, PropertyInfo>)>>,
}

/// What the relay needs to know of one of the account's contact properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropertyInfo {
    /// `modificationMetadata.readOnlyValue` or `calculated`: HubSpot refuses writes to it.
    pub read_only: bool,
}

/// Contact properties that identify the contact: `PUT /v1/users` never sets them from
/// `properties` (the email comes from `email`, the link to the user from the relay).
const IDENTITY_PROPERTIES: &[&str] =
    &["email", "hs_object_id", "hs_additional_emails", "hs_merged_object_ids", "hubspotutk", "hs_email_domain"];

/// How long a note that HubSpot found no contact for a new user (by id, or by the app's email) is
/// trusted by the next try (see `Relay::contact_for`): retries after a 503 come within seconds.
const MISS_TRUST_MS: i64 = 60_000;

/// What a resolution knows of HubSpot's "no contact" answers: those the claim noted (when this
/// request holds one), and those this try saw.
#[derive(Default)]
struct Notes {
    noted: Option<Misses>,
    seen: Misses,
}

/// The outcome of [`Relay::claim_resolution`].
enum Claim {
    /// This request resolves the contact; what HubSpot last answered for the user.
    Mine(Misses),
    /// Another relay resolved it and stored this contact.
    Stored(Contact),
    /// The store could not say: resolve without a claim.
    Unclaimed,
}

/// How long the account's property list is trusted.
const PROPERTIES_TTL: Duration = Duration::from_secs(300);
/// A request waiting for its user's lock gets this much longer than the HubSpot budget, so that it
/// can take the outcome of the read it waited for.
const LOCK_GRACE: Duration = Duration::from_millis(500);

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("hubspot", &self.hubspot).field("config", &self.config).finish()
    }
}

fn random_id(prefix: &str) -> String {
    let b: [u8; 16] = rand::random();
    let mut s = String::with_capacity(prefix.len() + 32);
    s.push_str(prefix);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// `l_` and 32 lowercase hex digits.
pub fn valid_lease_id(s: &str) -> bool {
    s.len() == 34 && s.starts_with("l_") && s[2..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// HubSpot's usertoken: 32 lowercase hex digits.
pub fn valid_utk(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Relay {
    pub fn new(store: Arc<dyn Store>, hubspot: HubSpot, config: Arc<ServeArgs>, metrics: Arc<Metrics>) -> Self {
        Relay {
            verifier: Verifier::new(&config.assertion_secrets),
            store,
            hubspot,
            config,
            metrics,
            outbox_wake: Notify::new(),
            hubspot_wake: Notify::new(),
            locks: Mutex::new(HashMap::new()),
            instance: random_id("r_"),
            read_failures: Mutex::new(HashMap::new()),
            properties: tokio::sync::Mutex::new(None),
        }
    }

    /// One async lock per user: deciding a ticket and checking leases before an email change
    /// never interleave for the same user.
    pub fn user_lock(&self, sub: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = locks.get(sub).and_then(Weak::upgrade) {
            return l;
        }
        if locks.len() > 10_000 {
            locks.retain(|_, w| w.strong_count() > 0);
        }
        let l = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(sub.to_string(), Arc::downgrade(&l));
        l
    }

    fn budget(&self) -> Duration {
        Duration::from_millis(self.config.hubspot_budget_ms)
    }

    fn shared_failure(&self, sub: &str, since: tokio::time::Instant) -> Option<HubSpotError> {
        let f = self.read_failures.lock().unwrap_or_else(|e| e.into_inner());
        f.get(sub).filter(|(at, _)| *at >= since).map(|(_, e)| e.clone())
    }

    fn note_read(&self, sub: &str, failure: Option<&HubSpotError>) {
        let mut f = self.read_failures.lock().unwrap_or_else(|e| e.into_inner());
        match failure {
            Some(e) => {
                let now = tokio::time::Instant::now();
                if f.len() > 10_000 {
                    f.retain(|_, (at, _)| now.duration_since(*at) < Duration::from_secs(60));
                }
                f.insert(sub.to_string(), (now, e.clone()));
            }
            None => {
                f.remove(sub);
            }
        }
    }

    /// `POST /v1/identity`: verifies the assertion and answers the page's ticket.
    ///
    /// Every caller is answered within the HubSpot budget (plus a short grace while it waits for
    /// its user's lock): requests for one user wait for the one HubSpot read in flight and share
    /// its outcome, rather than reading again one after another.
    pub async fn identify(&self, assertion: &str, utk: Option<&str>, lease_id: Option<&str>) -> ApiResult<Ticket> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.budget();
        let now = now_ms();
        let claims = self.verifier.verify(assertion, now / 1000).map_err(|e| ApiError::Unauthorized(e.0))?;
        let lock = self.user_lock(&claims.sub);
        let Ok(_guard) = tokio::time::timeout_at(deadline + LOCK_GRACE, lock.lock()).await else {
            tracing::warn!(sub = %claims.sub, "identity: the user's previous request still holds it past the budget; answering 503");
            return Err(ApiError::Unavailable(1));
        };
        let now = now_ms();
        if let Some(lease_id) = lease_id {
            if let Some((mut ticket, user)) = self.warm_ticket(&claims, utk, lease_id, now).await? {
                if self.config.chat {
                    ticket.chat = self.chat_for(&claims.email, &user, now, deadline).await;
                }
                self.metrics.ticket(ticket.state);
                return Ok(ticket);
            }
        }
        // An assertion never ranks later than the relay's clock: a skewed `iat` cannot outrank a
        // report the relay received after it (the app's PUT ranks at its arrival plus the skew).
        let user = self.store.note_app_email(
            &claims.sub,
            &claims.email,
            claims.iat.saturating_mul(1000).min(now),
            claims.firstname.as_deref(),
            claims.lastname.as_deref(),
        ).await?;
        let desired = user.app_email.clone().unwrap_or_else(|| claims.email.clone());
        let rotate_utk = match utk {
            Some(u) => self.store.bind_utk(u, &claims.sub, now).await?.is_some(),
            None => false,
        };
        let mut ticket = Ticket {
            id: claims.sub.clone(),
            contact_id: None,
            email: None,
            state: "unknown",
            lease_id: None,
            email_valid_until: None,
            exp: now / 1000 + self.config.ticket_secs as i64,
            rotate_utk,
            chat: None,
            now: now / 1000,
        };
        if self.store.erased(&claims.sub).await? {
            // HubSpot deleted this user's contact for privacy: make none again (see webhooks.rs).
            self.metrics.ticket("unknown");
            return Ok(ticket);
        }
        let fresh = user.contact_id.is_some() && user.fetched_at.is_some_and(|at| now - at < self.config.cache_secs as i64 * 1000);
        let outcome = match self.shared_failure(&claims.sub, started) {
            // The read this request waited for failed just now: share its outcome.
            Some(e) if !fresh => Err(e),
            _ => {
                let r = self.contact_for(&user, &claims, &desired, now, deadline).await;
                self.note_read(&claims.sub, r.as_ref().err());
                r
            }
        };
        let contact = match outcome {
            Ok(c) => c,
            Err(HubSpotError::Busy(wait)) => return Err(ApiError::Unavailable(wait.as_secs().max(1))),
            Err(e) => {
                if matches!(e.status(), Some(401) | Some(403)) {
                    self.metrics.alarm("hubspot_auth");
                    tracing::error!(sub = %claims.sub, error = %e, "ALARM: HubSpot refused the access token");
                }
                tracing::warn!(sub = %claims.sub, error = %e, "HubSpot could not be read; answering unknown");
                self.store.set_error(&claims.sub, Some(&e.to_string())).await?;
                self.metrics.ticket("unknown");
                return Ok(ticket);
            }
        };
        // The decision is made in one transaction holding the user's lock in the database, so
        // relays sharing it decide one at a time per user, as one relay did in memory.
        let mut tx = self.store.begin_user(&claims.sub).await?;
        let current = tx.user().await?.unwrap_or_else(|| user.clone());
        let desired = current.app_email.clone().unwrap_or(desired);
        let job = tx.job().await?;
        // A relay is writing this user's email to HubSpot right now, or a write whose answer never
        // came may still land (or has not been read back since): nothing is confirmed.
        let applying = job.as_ref().is_some_and(|j| {
            (j.state == "pending" && j.claimed_until > now && j.claimed_by.as_deref().is_some_and(|b| b.starts_with("applying:")))
                || j.uncertain_until > 0
        });
        // The outbox wrote this contact since our read: what it stored is newer than what we read.
        let (contact_id, hub_email) = if current.gen != user.gen {
            (current.contact_id.clone().unwrap_or(contact.id), current.hubspot_email.clone())
        } else {
            (contact.id, contact.email)
        };
        ticket.contact_id = Some(contact_id);
        let mut queued = false;
        if hub_email.as_deref() == Some(desired.as_str()) && desired == claims.email && !applying {
            // Confirmed: HubSpot holds the app's current email for this contact. Lease it.
            let until = now + self.config.lease_secs as i64 * 1000;
            let renewed = match lease_id {
                Some(l) => tx.renew_lease(l, &desired, now, until).await?,
                None => false,
            };
            let id = match lease_id {
                Some(l) if renewed => l.to_string(),
                _ => {
                    let id = random_id("l_");
                    tx.issue_lease_at(&id, &desired, now, until).await?;
                    id
                }
            };
            ticket.state = "confirmed";
            ticket.email = Some(desired.clone());
            ticket.lease_id = Some(id);
            ticket.email_valid_until = Some(until / 1000);
        } else if current.conflict_email.as_deref() == Some(desired.as_str()) {
            ticket.state = "conflict";
        } else {
            ticket.state = "pending";
            if hub_email.as_deref() != Some(desired.as_str()) {
                queued = queue_in(&mut tx, job.as_ref(), &desired, None, now).await?;
            }
        }
        tx.commit().await?;
        if queued {
            self.outbox_wake.notify_one();
        }
        if ticket.state == "confirmed" && self.config.chat {
            ticket.chat = self.chat_for(&desired, &current, now, deadline).await;
        }
        self.metrics.ticket(ticket.state);
        Ok(ticket)
    }

    /// The warm path: a page renewing a confirmed ticket whose state needs no write. One read
    /// (a consistent snapshot, [`Store::warm_view`]) answers it when the app's email and names are
    /// as stored and no newer, the contact is cached and holds that email, no change of it is
    /// being applied, the utk is this user's and was noted within the hour, and the page's lease is
    /// live with at least 90% of its length left. The lease is then not extended: the ticket
    /// carries its stored end, so every relay's view of it stays exact, and it is written again
    /// once a tenth of it has passed. Anything else takes the full path, which writes.
    async fn warm_ticket(&self, claims: &Claims, utk: Option<&str>, lease_id: &str, now: i64) -> ApiResult<Option<(Ticket, User)>> {
        let Some(w) = self.store.warm_view(&claims.sub, lease_id, utk).await? else { return Ok(None) };
        let u = &w.user;
        let email = claims.email.as_str();
        let at = claims.iat.saturating_mul(1000).min(now);
        let app_same = u.app_email.as_deref() == Some(email) && u.app_email_at.is_some_and(|a| a >= at);
        let names_same = [(&claims.firstname, &u.firstname), (&claims.lastname, &u.lastname)]
            .iter()
            .all(|(given, stored)| given.is_none() || given == stored);
        let utk_noted = utk.is_none_or(|_| w.utk.as_ref().is_some_and(|(sub, at)| *sub == claims.sub && now - at < UTK_NOTE_MS));
        let cached = u.fetched_at.is_some_and(|at| now - at < self.config.cache_secs as i64 * 1000);
        let applying = w.job.as_ref().is_some_and(|(state, until, by, uncertain)| {
            (state == "pending" && *until > now && by.as_deref().is_some_and(|b| b.starts_with("applying:"))) || *uncertain > 0
        });
        let lease_ms = self.config.lease_secs as i64 * 1000;
        let lease_until = w.lease.as_ref().and_then(|(e, until, released)| {
            (e == email && !released && until - now >= lease_ms - lease_ms / 10).then_some(*until)
        });
        let (Some(contact_id), Some(until)) = (u.contact_id.as_ref(), lease_until) else { return Ok(None) };
        if !(app_same && names_same && utk_noted && cached && !w.erased && !applying && u.hubspot_email.as_deref() == Some(email)) {
            return Ok(None);
        }
        let ticket = Ticket {
            id: claims.sub.clone(),
            contact_id: Some(contact_id.clone()),
            email: Some(email.to_string()),
            state: "confirmed",
            lease_id: Some(lease_id.to_string()),
            email_valid_until: Some(until / 1000),
            exp: now / 1000 + self.config.ticket_secs as i64,
            rotate_utk: false,
            chat: None,
            now: now / 1000,
        };
        Ok(Some((ticket, w.user)))
    }

    /// Checks the `properties` of a `PUT /v1/users/{sub}` before anything is queued, so that a bad
    /// property is answered 400 naming it and never blocks the email: identity properties (any
    /// case), names HubSpot cannot have, values that are not scalars, and, against the account's
    /// property list, unknown, read-only and calculated properties. When HubSpot cannot be asked,
    /// the names pass and the outbox applies the email alone if HubSpot refuses one of them.
    pub async fn check_properties(&self, props: &Map<String, Value>) -> ApiResult<()> {
        let idp = self.hubspot.id_property();
        for (k, v) in props {
            let lower = k.to_ascii_lowercase();
            if lower == idp || IDENTITY_PROPERTIES.contains(&lower.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "properties.{k} is an identity property of the contact; the relay sets it (the email from `email`)"
                )));
            }
            let syntax = k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && k.len() <= 100
                && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !syntax {
                return Err(ApiError::BadRequest(format!(
                    "properties: {k:?} is not a HubSpot property name (lowercase letters, digits and _, starting with a letter)"
                )));
            }
            if !(v.is_string() || v.is_number() || v.is_boolean()) {
                return Err(ApiError::BadRequest(format!("properties.{k} must be a string, number or boolean")));
            }
        }
        if props.is_empty() {
            return Ok(());
        }
        let Some(known) = self.account_properties(props.keys()).await else { return Ok(()) };
        for k in props.keys() {
            match known.get(k) {
                None => return Err(ApiError::BadRequest(format!("properties.{k} is not a contact property of this HubSpot account"))),
                Some(p) if p.read_only => {
                    return Err(ApiError::BadRequest(format!("properties.{k} is read-only or calculated in HubSpot; it cannot be set")))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The account's contact properties (cached for 5 minutes; read again sooner when a name is
    /// missing, at most every 10 s). None when HubSpot cannot be read and nothing is cached.
    async fn account_properties<'a>(&self, names: impl Iterator<Item = &'a String>) -> Option<HashMap<String, PropertyInfo>> {
        let mut cache = self.properties.lock().await;
        let now = tokio::time::Instant::now();
        let names: Vec<&String> = names.collect();
        if let Some((at, map)) = cache.as_ref() {
            let age = now.duration_since(*at);
            if age < PROPERTIES_TTL && (names.iter().all(|n| map.contains_key(*n)) || age < Duration::from_secs(10)) {
                return Some(map.clone());
            }
        }
        let retry = Retry::interactive(self.budget());
        match self.hubspot.call(reqwest::Method::GET, "/crm/v3/properties/contacts", None, retry).await {
            Ok((_, v)) => {
                let mut map = HashMap::new();
                for p in v["results"].as_array().into_iter().flatten() {
                    let Some(name) = p["name"].as_str() else { continue };
                    let read_only = p["modificationMetadata"]["readOnlyValue"].as_bool() == Some(true) || p["calculated"].as_bool() == Some(true);
                    map.insert(name.to_string(), PropertyInfo { read_only });
                }
                *cache = Some((now, map.clone()));
                Some(map)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the account's contact properties; properties are checked by HubSpot when applied");
                cache.as_ref().map(|(_, m)| m.clone())
            }
        }
    }

    /// Queues a change of the user's HubSpot email to `email`, unless that change is already
    /// queued or has ended in a conflict.
    pub async fn queue_change(&self, sub: &str, email: &str, properties: Option<&Map<String, Value>>, now: i64) -> ApiResult<()> {
        let mut tx = self.store.begin_user(sub).await?;
        let job = tx.job().await?;
        let queued = queue_in(&mut tx, job.as_ref(), email, properties, now).await?;
        tx.commit().await?;
        if queued {
            self.outbox_wake.notify_one();
        }
        Ok(())
    }

    /// The user's contact: from the cache while it is fresh, else read by the unique id property;
    /// else the contact holding the app's email, linked unless another user has it; else created.
    ///
    /// A user whose contact the store does not know is resolved by one relay at a time: relays
    /// sharing the database take a claim on it there ([`Store::claim_resolution`]), and a relay
    /// that finds another's claim waits for the contact it stores rather than reading and creating
    /// again (a burst of sign-ups on N relays costs what it costs on one). What HubSpot answered is
    /// noted with the claim: a retry within [`MISS_TRUST_MS`] skips a read by id that found
    /// nothing, and a read by email that found nothing for the same email. Skipping them is safe
    /// while the store holds no contact for the user: a contact with the user's id can only have
    /// been made since by a create of this user (which stores it at once, and ends the notes), and
    /// the create that follows is by the unique id, which finds such a contact instead of making a
    /// second one, and answers 409 for an email another contact took meanwhile (linked as below).
    async fn contact_for(&self, user: &User, claims: &Claims, desired: &str, now: i64, deadline: tokio::time::Instant) -> Result<Contact, HubSpotError> {
        let sub = &claims.sub;
        if let (Some(id), Some(at)) = (&user.contact_id, user.fetched_at) {
            if now - at < self.config.cache_secs as i64 * 1000 {
                return Ok(Contact { id: id.clone(), email: user.hubspot_email.clone(), sub: Some(sub.clone()) });
            }
        }
        if user.contact_id.is_some() {
            return self.resolve(user, claims, desired, now, deadline, &mut Notes::default()).await;
        }
        let misses = match self.claim_resolution(sub, deadline).await? {
            Claim::Stored(c) => return Ok(c),
            Claim::Mine(m) => Some(m),
            Claim::Unclaimed => None,
        };
        let claimed = misses.is_some();
        let mut notes = Notes { noted: misses, seen: Misses::default() };
        let r = self.resolve(user, claims, desired, now, deadline, &mut notes).await;
        if claimed {
            // What HubSpot answered is noted only for a try that did not end with a contact (one
            // write per new user in the usual case, where the claim's end deletes it).
            let unresolved = r.is_err().then_some(&notes.seen);
            if let Err(e) = self.store.end_resolution(sub, &self.instance, unresolved, now_ms()).await {
                tracing::warn!(%sub, error = %e, "could not end the claim on resolving the contact; it runs out by itself");
            }
        }
        r
    }

    /// Takes the claim on resolving `sub`'s contact, or waits while another relay holds it: for
    /// the contact it stores (answered as `Stored`), or for its claim to end without one (then
    /// takes it). Past `deadline` the page is answered 503 with a short `Retry-After`, as when the
    /// user's previous request on this relay still holds it. When the store cannot say, the
    /// contact is resolved without a claim, as before claims existed (it costs calls, not contacts).
    async fn claim_resolution(&self, sub: &str, deadline: tokio::time::Instant) -> Result<Claim, HubSpotError> {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now()) + LOCK_GRACE;
        let until = now_ms() + left.as_millis() as i64;
        let waiting_since = now_ms();
        let mut pause = Duration::from_millis(20);
        loop {
            match self.store.claim_resolution(sub, &self.instance, now_ms(), until).await {
                Ok(Some(m)) => return Ok(Claim::Mine(m)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%sub, error = %e, "cannot claim the contact's resolution; resolving without it");
                    return Ok(Claim::Unclaimed);
                }
            }
            // Another relay is resolving this user: wait for what it stores.
            loop {
                if tokio::time::Instant::now() + pause > deadline {
                    return Err(HubSpotError::Busy(Duration::from_secs(1)));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
                let stored = match self.store.user(sub).await {
                    Ok(u) => u,
                    Err(_) => return Ok(Claim::Unclaimed),
                };
                if let Some(u) = stored {
                    let cache_ms = self.config.cache_secs as i64 * 1000;
                    if let (Some(id), Some(at)) = (u.contact_id, u.fetched_at) {
                        if at >= waiting_since || now_ms() - at < cache_ms {
                            return Ok(Claim::Stored(Contact { id, email: u.hubspot_email, sub: Some(sub.to_string()) }));
                        }
                    }
                }
                match self.store.resolution_claimed(sub, now_ms()).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(_) => return Ok(Claim::Unclaimed),
                }
            }
        }
    }

    /// Reads (and if need be links or creates) the user's contact in HubSpot, skipping the reads
    /// `notes` says found nothing lately; the reads that find nothing go into `notes.seen`.
    async fn resolve(&self, user: &User, claims: &Claims, desired: &str, now: i64, deadline: tokio::time::Instant, notes: &mut Notes) -> Result<Contact, HubSpotError> {
        let (misses, seen) = (notes.noted.take(), &mut notes.seen);
        let sub = &claims.sub;
        let budget = Retry { attempts: 4, deadline: Some(deadline) };
        let read_by = |prop: String, value: String| async move { self.hubspot.read_by_until(&prop, &value, deadline).await };
        let trusted = |at: i64| now - at < MISS_TRUST_MS;
        let idp = self.hubspot.id_property().to_string();
        let id_missed = misses.as_ref().and_then(|m| m.id_at).is_some_and(trusted);
        if !id_missed {
            if let Some(c) = read_by(idp.clone(), sub.clone()).await? {
                self.save(user, &c).await;
                return Ok(c);
            }
            seen.id_at = Some(now_ms());
        }
        let mut names = Map::new();
        for (k, v) in [("firstname", &user.firstname), ("lastname", &user.lastname)] {
            if let Some(v) = v {
                names.insert(k.into(), json!(v));
            }
        }
        let email_missed = misses.as_ref().and_then(|m| m.email.as_ref()).is_some_and(|(e, at)| e == desired && trusted(*at));
        let mut existing = None;
        if !email_missed {
            existing = read_by("email".into(), desired.to_string()).await?;
            if existing.is_none() {
                seen.email = Some((desired.to_string(), now_ms()));
            }
        }
        for _ in 0..2 {
            match existing.take() {
                Some(e) if e.sub.as_deref() == Some(sub.as_str()) => {
                    // Already linked to this user (another relay made it since the read by id).
                    self.save(user, &e).await;
                    return Ok(e);
                }
                Some(e) if e.sub.is_none() => {
                    let linked = self.hubspot.update(&e.id, json!({ idp.clone(): sub }), budget).await?;
                    self.save(user, &linked).await;
                    return Ok(linked);
                }
                Some(e) => {
                    // The app's email belongs to another user's contact: make this user's contact
                    // without it, and flag the conflict for an operator.
                    tracing::warn!(%sub, other = %e.id, "the app's email is held by another user's contact");
                    let _ = self.store.set_conflict(sub, Some(desired), Some(&e.id)).await;
                    let c = self.create_or_existing(sub, names.clone(), deadline, budget).await?;
                    self.save(user, &c).await;
                    return Ok(c);
                }
                None => {
                    let mut props = names.clone();
                    props.insert("email".into(), json!(desired));
                    match self.hubspot.create_for(sub, props, deadline).await {
                        Ok(c) => {
                            self.save(user, &c).await;
                            return Ok(c);
                        }
                        Err(err) => {
                            // 409: someone created the email (or this user) meanwhile: look again.
                            let Some(id) = err.existing_id() else { return Err(err) };
                            let found = self.hubspot.read_id(&id, budget).await?;
                            if let Some(f) = found.as_ref().filter(|f| f.sub.as_deref() == Some(sub.as_str())) {
                                self.save(user, f).await;
                                return Ok(f.clone());
                            }
                            existing = found;
                            if existing.is_none() {
                                return Err(err);
                            }
                        }
                    }
                }
            }
        }
        Err(HubSpotError::Unreachable("the contact kept changing while it was being linked".into()))
    }

    async fn create_or_existing(&self, sub: &str, props: Map<String, Value>, deadline: tokio::time::Instant, budget: Retry) -> Result<Contact, HubSpotError> {
        match self.hubspot.create_for(sub, props, deadline).await {
            Ok(c) => Ok(c),
            Err(e) => match e.existing_id() {
                Some(id) => self.hubspot.read_id(&id, budget).await?.ok_or(e),
                None => Err(e),
            },
        }
    }

    /// Caches what was read, unless the outbox wrote the contact since `user` was read.
    async fn save(&self, user: &User, c: &Contact) {
        if let Err(e) = self.store.save_contact_if(&user.sub, user.gen, &c.id, c.email.as_deref(), now_ms()).await {
            tracing::error!(sub = %user.sub, error = %e, "could not cache the contact");
        }
    }

    async fn chat_for(&self, email: &str, user: &User, now: i64, deadline: tokio::time::Instant) -> Option<Chat> {
        let budget = Retry { attempts: 4, deadline: Some(deadline) };
        match self.store.chat_token(email, now + 60_000).await {
            Ok(Some((token, exp))) => return Some(Chat { email: email.into(), token, exp: exp / 1000 }),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "chat token cache"),
        }
        match self.hubspot.chat_token(email, user.firstname.as_deref(), user.lastname.as_deref(), budget).await {
            Ok(token) => {
                let exp = now + CHAT_TOKEN_REUSE_MS;
                let _ = self.store.save_chat_token(email, &token, exp).await;
                Some(Chat { email: email.into(), token, exp: exp / 1000 })
            }
            Err(e) => {
                // A 403 means the account's subscription has no visitor identification.
                tracing::warn!(error = %e, "no chat token; the chat stays anonymous");
                None
            }
        }
    }

    /// The `sendBeacon` release on page hide: the lease ends after the grace period, so the next
    /// page of the same tab can renew it and identify from its cache in the meantime.
    pub async fn release_after_grace(&self, lease_id: &str) -> ApiResult<bool> {
        let now = now_ms();
        // The store wakes the user's job in the user's transaction (see `Store::release_lease`).
        match self.store.shorten_lease(lease_id, now, now + self.config.release_grace_secs as i64 * 1000).await? {
            Some(_) => {
                self.outbox_wake.notify_one();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// `DELETE /v1/leases/{id}`: releases a lease, so a waiting email change can go at once.
    pub async fn release(&self, lease_id: &str) -> ApiResult<bool> {
        let now = now_ms();
        // The store wakes the user's job in the user's transaction (see `Store::release_lease`).
        match self.store.release_lease(lease_id, now).await? {
            Some(_) => {
                self.outbox_wake.notify_one();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Queues the change in the user's transaction unless the same change is already queued or ended
/// in a conflict (or was refused); answers whether it queued.
pub(crate) async fn queue_in(tx: &mut UserTx, job: Option<&crate::store::Job>, email: &str, properties: Option<&Map<String, Value>>, now: i64) -> ApiResult<bool> {
    if properties.is_none() {
        if let Some(job) = job {
            let same = job.to_email == email;
            if same && (job.state == "pending" || job.state == "conflict" || job.state == "failed") {
                return Ok(false);
            }
        }
    }
    let props = properties.map(|p| Value::Object(p.clone()).to_string()).unwrap_or_else(|| "{}".into());
    tx.put_job(email, &props, now).await?;
    Ok(true)
}
