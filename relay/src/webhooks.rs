//! Changes made on HubSpot's side: `POST /v1/hubspot/webhooks` receives HubSpot's contact
//! webhooks (signature v3, 5-minute window), stores the events durably and answers at once; a
//! background worker applies them. Without webhooks, [`reconcile`] re-reads the contacts of users
//! that hold a live lease, in batches, on a period.
//!
//! Events only say *that* a contact changed; the worker decides from the contact's current state
//! (read again by id, which follows merges), so duplicates and any delivery order give the same
//! result. What it does (README, "Changes made in HubSpot"):
//! - email changed: leases on any other email end at once (renewals answer `pending`); the app
//!   is where users change their email, so the app's email is written back by contact id;
//! - merge: the user follows the surviving record (`newObjectId`); nothing is created;
//! - deletion: the link is dropped; the next identify resolves the user again;
//! - restore: a user left without a contact is linked to the restored record again;
//! - privacy deletion: the link is dropped and no contact is made for that user again until the
//!   app states the user's email with `PUT /v1/users/{sub}`;
//! - creation: a contact the tracker made with an email leased to a user is merged into that
//!   user's contact (repair.rs); without webhooks, reconciliation finds it.

use crate::error::{ApiError, ApiResult};
use crate::hubspot::{Contact, HubSpotError, Retry};
use crate::relay::{now_ms, Relay};
use crate::routes::AppState;
use crate::store::User;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::Uri;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

/// HubSpot sends up to 100 events per request, about 26 KiB; the body is bounded at well over
/// that, and the events per request at HubSpot's 100, so one delivery cannot hold the relay's
/// memory or the database's write lock for long.
pub const BODY_LIMIT: usize = 64 * 1024;
pub const MAX_EVENTS: usize = 100;
/// Requests signed longer ago than this are refused (HubSpot's advice).
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/hubspot/webhooks", post(receive).layer(DefaultBodyLimit::max(BODY_LIMIT)))
}

/// HubSpot's documentation decodes these in the URI before signing; its SDK helpers do not. Both
/// forms are accepted.
fn hubspot_decoded(uri: &str) -> String {
    let mut out = uri.to_string();
    for (enc, dec) in [
        ("%3A", ":"), ("%2F", "/"), ("%3F", "?"), ("%40", "@"), ("%21", "!"), ("%24", "$"), ("%27", "'"),
        ("%28", "("), ("%29", ")"), ("%2A", "*"), ("%2C", ","), ("%3B", ";"),
    ] {
        out = out.replace(enc, dec).replace(&enc.to_ascii_lowercase(), dec);
    }
    out
}

/// Checks a v3 signature in constant time: base64 HMAC-SHA256(secret, method + uri + body +
/// timestamp), and that the timestamp is within 5 minutes of `now` (ms).
pub fn verify_v3(secret: &str, method: &str, uri: &str, body: &[u8], timestamp: &str, signature: &str, now: i64) -> Result<(), String> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| "X-HubSpot-Request-Timestamp is not a number of milliseconds".to_string())?;
    if (now - ts).abs() > MAX_AGE_MS {
        return Err("the request is older than 5 minutes (X-HubSpot-Request-Timestamp)".into());
    }
    let given = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| "X-HubSpot-Signature-v3 is not base64".to_string())?;
    let decoded = hubspot_decoded(uri);
    let candidates: &[&str] = if decoded == uri { &[uri] } else { &[uri, &decoded] };
    for u in candidates {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| "bad key".to_string())?;
        mac.update(method.as_bytes());
        mac.update(u.as_bytes());
        mac.update(body);
        mac.update(timestamp.as_bytes());
        if mac.verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err("X-HubSpot-Signature-v3 does not match (check HSQ_HUBSPOT_CLIENT_SECRET and HSQ_PUBLIC_URL)".into())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What makes two events the same event: HubSpot's `eventId` is not guaranteed unique, so the
/// key is the event's content, without the delivery fields (`attemptNumber`).
fn event_key(e: &Value) -> String {
    let f = |k: &str| text(&e[k]).unwrap_or_default();
    let merged = e["mergedObjectIds"].as_array().map(|a| a.iter().filter_map(text).collect::<Vec<_>>().join(",")).unwrap_or_default();
    format!(
        "{}|{}|{}|{}|{}|{}|{}",
        f("subscriptionType"), f("objectId"), f("occurredAt"), f("propertyName"), f("propertyValue"), f("newObjectId"), merged
    )
}

/// `POST /v1/hubspot/webhooks`: verifies, stores the events, answers 200 `{received, new}`.
#[utoipa::path(post, path = "/v1/hubspot/webhooks", tag = "hubspot",
    params(
        ("X-HubSpot-Signature-v3" = String, Header, description = "base64 HMAC-SHA256 of method + URI + body + timestamp, keyed with the app's client secret"),
        ("X-HubSpot-Request-Timestamp" = String, Header, description = "milliseconds; older than 5 minutes is refused"),
    ),
    responses(
        (status = 200, description = "The events are stored (`{received, new}`; duplicates are not new)"),
        (status = 400, description = "The body is not a JSON array of events", body = crate::openapi::ErrorBody),
        (status = 401, description = "Missing or wrong signature, or older than 5 minutes", body = crate::openapi::ErrorBody),
        (status = 404, description = "Webhooks are off (no HSQ_HUBSPOT_CLIENT_SECRET)", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is over 64 KiB, or holds more than 100 events", body = crate::openapi::ErrorBody),
    ))]
pub async fn receive(State(s): State<AppState>, uri: Uri, headers: HeaderMap, req: axum::extract::Request) -> ApiResult<Json<Value>> {
    // What can be refused from the head is refused before any of the body is read: webhooks off,
    // no signature headers, a declared length over the limit.
    let relay = &s.relay;
    let Some(secret) = relay.config.hubspot_client_secret.as_ref() else {
        return Err(ApiError::NotFound("webhooks are off: set HSQ_HUBSPOT_CLIENT_SECRET to the HubSpot app's client secret".into()));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(ts), Some(sig)) = (header("x-hubspot-request-timestamp"), header("x-hubspot-signature-v3")) else {
        return Err(ApiError::Unauthorized("X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required".into()));
    };
    if header("content-length").and_then(|l| l.trim().parse::<u64>().ok()).is_some_and(|l| l > BODY_LIMIT as u64) {
        return Err(ApiError::TooLarge(BODY_LIMIT));
    }
    let body = <Bytes as axum::extract::FromRequest<AppState>>::from_request(req, &s).await.map_err(|e: BytesRejection| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(BODY_LIMIT)
        } else {
            ApiError::BadRequest(format!("cannot read the body: {e}"))
        }
    })?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let base = match &relay.config.public_url {
        Some(p) => p.clone(),
        None => format!("http://{}", header("host").unwrap_or("localhost")),
    };
    // The public URL may carry the prefix a proxy strips: HubSpot signed base + our path.
    verify_v3(secret.expose(), "POST", &format!("{base}{path}"), &body, ts, sig, now_ms()).map_err(ApiError::Unauthorized)?;
    let events: Vec<Value> = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("the body is not a JSON array of events: {e}")))?;
    if events.len() > MAX_EVENTS {
        return Err(ApiError::TooManyEvents(events.len(), MAX_EVENTS));
    }
    let mut rows = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        if e["subscriptionType"].as_str().is_none() || text(&e["objectId"]).is_none() {
            return Err(ApiError::BadRequest(format!("event {i} has no subscriptionType or objectId")));
        }
        rows.push((event_key(e), e.to_string()));
    }
    let new = relay.store.put_webhook_events(&rows, now_ms()).await?;
    relay.metrics.webhook_events(events.len() as u64, new as u64);
    if new > 0 {
        relay.hubspot_wake.notify_one();
    }
    Ok(Json(json!({ "received": events.len(), "new": new })))
}

/// Events claimed per round, and for how long (their HubSpot reads may wait for the rate limit).
const CLAIM_BATCH: i64 = 20;
const CLAIM_MS: i64 = 120_000;

fn backoff_ms(attempts: i64) -> i64 {
    (1000i64 << attempts.clamp(0, 8)).min(300_000)
}

/// The worker: applies stored events in the order received, retrying those that need HubSpot
/// while it cannot be read.
pub async fn run(relay: Arc<Relay>) {
    loop {
        let now = now_ms();
        // Claimed, so relays sharing the database do not apply the same events at once; a relay
        // that dies leaves its claim to run out.
        let due = relay.store.claim_webhook_events(now, CLAIM_BATCH, now + CLAIM_MS).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "webhooks: cannot read stored events");
            Vec::new()
        });
        let busy = !due.is_empty();
        let mut stalled = false;
        for (key, body, attempts) in due {
            let ev: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let outcome = process(&relay, &ev).await;
            let r = match outcome {
                Ok(()) => relay.store.finish_webhook_event(&key, None, None).await,
                Err(e) if attempts >= 30 => {
                    tracing::error!(error = %e, event = %body, "webhooks: giving up on an event");
                    relay.store.finish_webhook_event(&key, None, Some(&e)).await
                }
                Err(e) => relay.store.finish_webhook_event(&key, Some(now_ms() + backoff_ms(attempts)), Some(&e)).await,
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "webhooks: cannot record an event's outcome");
                // The event stays due: wait rather than spin on it.
                stalled = true;
            }
        }
        if busy && !stalled {
            continue;
        }
        tokio::select! {
            _ = relay.hubspot_wake.notified() => {},
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
    }
}

/// Applies one event.
async fn process(relay: &Relay, ev: &Value) -> Result<(), String> {
    let kind = ev["subscriptionType"].as_str().unwrap_or("");
    let Some(object) = text(&ev["objectId"]) else { return Ok(()) };
    let store = &relay.store;
    let mut ids = vec![object.clone()];
    match kind {
        "contact.restore" => return restore(relay, &object).await,
        "contact.merge" => {
            ids.extend(text(&ev["primaryObjectId"]));
            ids.extend(ev["mergedObjectIds"].as_array().into_iter().flatten().filter_map(text));
            ids.extend(text(&ev["newObjectId"]));
        }
        "contact.propertyChange" | "contact.deletion" | "contact.privacyDeletion" => {}
        // A new contact is linked by the relay when it makes or finds it; one the tracker made
        // with a leased email is a user's duplicate.
        "contact.creation" => return crate::repair::check(relay, &object).await.map(|_| ()),
        _ => return Ok(()),
    }
    let err = |e: crate::store::StoreError| e.to_string();
    let mut users = store.users_by_contact(&ids).await.map_err(err)?;
    // A privacy deletion is acted on as HubSpot holds the contact now, as every other event is:
    // while HubSpot still answers for it (a misdirected or stale delivery), nobody is erased and
    // the linked users are read again like after any change.
    let mut erase = kind == "contact.privacyDeletion";
    if erase && relay.hubspot.read_id(&object, Retry::background()).await.map_err(|e| e.to_string())?.is_some() {
        tracing::warn!(contact = %object, "a privacy deletion of a contact HubSpot still holds: nobody is erased; reading it again");
        erase = false;
    }
    if erase && users.is_empty() {
        // The deletion may have come first and dropped the link already.
        if let Some(sub) = store.dropped_link(&object).await.map_err(err)? {
            users.extend(store.user(&sub).await.map_err(err)?);
        }
    }
    for user in users {
        if kind == "contact.propertyChange" {
            let name = ev["propertyName"].as_str().unwrap_or("");
            let value = text(&ev["propertyValue"]);
            if name == "email" {
                let value = value.map(|v| v.to_ascii_lowercase());
                if value == user.hubspot_email {
                    continue; // what the relay already knows (often its own write)
                }
                // No page may keep an email HubSpot may no longer hold: end those leases now,
                // before the read that settles what HubSpot holds (in the user's transaction,
                // unless the relay meanwhile learnt this email is HubSpot's).
                let mut tx = store.begin_user(&user.sub).await.map_err(err)?;
                let current = tx.user().await.map_err(err)?;
                if current.is_some_and(|c| c.hubspot_email == value) {
                    continue;
                }
                let ended = tx.end_leases(value.as_deref(), now_ms()).await.map_err(err)?;
                tx.commit().await.map_err(err)?;
                relay.metrics.leases_ended(ended);
            } else if name == relay.hubspot.id_property() {
                if value.as_deref() == Some(user.sub.as_str()) {
                    continue;
                }
            } else {
                continue;
            }
        }
        if erase {
            let lock = relay.user_lock(&user.sub);
            let g = lock.lock().await;
            let mut tx = store.begin_user(&user.sub).await.map_err(err)?;
            tx.set_erased(Some(now_ms())).await.map_err(err)?;
            let linked = tx.user().await.map_err(err)?.is_some_and(|u| u.contact_id.as_deref() == Some(object.as_str()));
            if !linked {
                // Already unlinked (or linked anew in between): the person asked to be forgotten.
                tx.forget_contact().await.map_err(err)?;
                let ended = tx.end_leases(None, now_ms()).await.map_err(err)?;
                tx.commit().await.map_err(err)?;
                relay.metrics.leases_ended(ended);
                continue;
            }
            tx.commit().await.map_err(err)?;
            drop(g);
        }
        refresh(relay, &user.sub).await?;
    }
    Ok(())
}

/// Reads the user's contact again by id and applies what HubSpot holds now.
pub async fn refresh(relay: &Relay, sub: &str) -> Result<(), String> {
    // In this relay, one read per user at a time; across relays, `apply` checks in the user's
    // transaction that the user is still as read.
    let lock = relay.user_lock(sub);
    let _g = lock.lock().await;
    // Another relay or the outbox may change the user while HubSpot is read (the outbox counts its
    // claims in `gen`): read both again at once, rather than put the event off with a backoff.
    for _ in 0..5 {
        let Some(user) = relay.store.user(sub).await.map_err(|e| e.to_string())? else { return Ok(()) };
        let Some(id) = user.contact_id.clone() else { return Ok(()) };
        let contact = relay.hubspot.read_id(&id, Retry::background()).await.map_err(|e| e.to_string())?;
        if apply(relay, &user, contact, false).await.map_err(|e| e.to_string())? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("the user kept changing while HubSpot was read; read again later".into())
}

/// Applies a contact as HubSpot holds it now to a user read before HubSpot was (the caller holds
/// the user's lock in this relay). Runs in the user's transaction, and only if the user's link and
/// the outbox's writes (and with `same_read`, the last read too) are still as in `user`: answers
/// false, changing nothing, when they are not.
pub async fn apply(relay: &Relay, user: &User, contact: Option<Contact>, same_read: bool) -> ApiResult<bool> {
    let (sub, now) = (user.sub.as_str(), now_ms());
    let mut tx = relay.store.begin_user(sub).await?;
    let current = tx.user().await?.unwrap_or_default();
    if current.contact_id != user.contact_id || current.gen != user.gen || (same_read && current.fetched_at != user.fetched_at) {
        return Ok(false);
    }
    let contact = contact.filter(|c| {
        let other = c.sub.as_deref().is_some_and(|s| s != sub);
        if other {
            // Merged into another user's contact: this user is someone else; resolve again.
            tracing::warn!(%sub, contact = %c.id, "the user's contact now belongs to another user; dropping the link");
        }
        !other
    });
    let Some(c) = contact else {
        if let Some(old) = user.contact_id.as_deref() {
            tx.note_dropped_link(old, now).await?;
        }
        tx.forget_contact().await?;
        let ended = tx.end_leases(None, now).await?;
        tx.commit().await?;
        relay.metrics.leases_ended(ended);
        relay.metrics.hubspot_change("unlinked");
        return Ok(true);
    };
    if user.contact_id.as_deref() != Some(c.id.as_str()) {
        relay.metrics.hubspot_change("merged");
    }
    if user.hubspot_email != c.email {
        relay.metrics.hubspot_change("email");
    }
    tx.save_contact(&c.id, c.email.as_deref(), now, false).await?;
    let ended = tx.end_leases(c.email.as_deref(), now).await?;
    // The app is where users change their email: when HubSpot holds another, the app's goes back
    // (by contact id, through the outbox, once no page holds a lease on another email).
    let mut queued = false;
    if let Some(app) = current.app_email.as_deref() {
        if c.email.as_deref() != Some(app) && current.conflict_email.as_deref() != Some(app) {
            let job = tx.job().await?;
            queued = crate::relay::queue_in(&mut tx, job.as_ref(), app, None, now).await?;
        }
    }
    tx.commit().await?;
    relay.metrics.leases_ended(ended);
    if queued {
        relay.outbox_wake.notify_one();
    }
    Ok(true)
}

/// A restored contact: link it again to its user if that user has no contact now.
async fn restore(relay: &Relay, id: &str) -> Result<(), String> {
    let Some(c) = relay.hubspot.read_id(id, Retry::background()).await.map_err(|e| e.to_string())? else { return Ok(()) };
    let Some(sub) = c.sub.clone() else { return Ok(()) };
    let lock = relay.user_lock(&sub);
    let _g = lock.lock().await;
    let Some(user) = relay.store.user(&sub).await.map_err(|e| e.to_string())? else { return Ok(()) };
    if user.contact_id.is_some() || relay.store.erased(&sub).await.map_err(|e| e.to_string())? {
        return Ok(());
    }
    // Linked meanwhile (by an identify on another relay): nothing to restore.
    if apply(relay, &user, Some(c), false).await.map_err(|e| e.to_string())? {
        relay.metrics.hubspot_change("restored");
    }
    Ok(())
}

/// Reads up to 100 contacts by record id in one batch call. Ids HubSpot does not answer for
/// (merged away or deleted) are read one by one, which follows merges.
async fn read_ids(relay: &Relay, ids: &[String]) -> Result<Vec<(String, Option<Contact>)>, HubSpotError> {
    let idp = relay.hubspot.id_property().to_string();
    let body = json!({ "properties": ["email", idp], "inputs": ids.iter().map(|i| json!({ "id": i })).collect::<Vec<_>>() });
    let found: Vec<Contact> = match relay.hubspot.call(reqwest::Method::POST, "/crm/v3/objects/contacts/batch/read", Some(&body), Retry::background()).await {
        Ok((_, v)) => v["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let p = &r["properties"];
                let t = |k: &str| p[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
                Some(Contact { id: r["id"].as_str()?.to_string(), email: t("email").map(|e| e.to_ascii_lowercase()), sub: t(&idp) })
            })
            .collect(),
        Err(HubSpotError::Status { status: 404, .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match found.iter().find(|c| &c.id == id) {
            Some(c) => out.push((id.clone(), Some(c.clone()))),
            None => out.push((id.clone(), relay.hubspot.read_id(id, Retry::background()).await?)),
        }
    }
    Ok(out)
}

/// Reconciliation without webhooks: every quarter of `HSQ_RECONCILE_SECS`, re-reads the contacts
/// of users holding a live lease whose contact was not read for `HSQ_RECONCILE_SECS`, 100 per
/// batch call and at most 10 calls per round, through the rate-limited client. Every
/// `HSQ_RECONCILE_SECS` it also looks for the tracker's duplicates ([`crate::repair::scan`]).
pub async fn reconcile(relay: Arc<Relay>) {
    let secs = relay.config.reconcile_secs;
    if secs == 0 {
        return;
    }
    let tick = Duration::from_millis((secs * 250).max(250));
    let mut scanned = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        if let Err(e) = reconcile_round(&relay).await {
            tracing::warn!(error = %e, "reconcile: round stopped early");
        }
        if scanned.elapsed() >= Duration::from_secs(secs) {
            scanned = tokio::time::Instant::now();
            match crate::repair::scan(&relay).await {
                Ok(n) => relay.metrics.hubspot_change_reads(n as u64),
                Err(e) => tracing::warn!(error = %e, "reconcile: the scan for the tracker's duplicates stopped early"),
            }
        }
    }
}

/// One round; returns how many users were read.
pub async fn reconcile_round(relay: &Relay) -> Result<usize, String> {
    let now = now_ms();
    let older = now - relay.config.reconcile_secs as i64 * 1000;
    let due = relay.store.reconcile_due(now, older, 1000).await.map_err(|e| e.to_string())?;
    for chunk in due.chunks(100) {
        let ids: Vec<String> = chunk.iter().filter_map(|u| u.contact_id.clone()).collect();
        let read = read_ids(relay, &ids).await.map_err(|e| e.to_string())?;
        relay.metrics.hubspot_change_reads(ids.len() as u64);
        for (id, contact) in read {
            for u in chunk.iter().filter(|u| u.contact_id.as_deref() == Some(id.as_str())) {
                let lock = relay.user_lock(&u.sub);
                let _g = lock.lock().await;
                // Only if nothing changed the user meanwhile (the outbox, a webhook, a page): a
                // user that changed is read again in a later round.
                apply(relay, u, contact.clone(), true).await.map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const URI: &str = "https://www.example.com/webhook_uri";
    const BODY: &[u8] = b"{'example_field':'example_value'}";

    #[test]
    fn hubspots_test_vectors_verify_and_a_change_to_any_part_does_not() {
        let sig = "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=";
        assert_eq!(verify_v3(SECRET, "POST", URI, BODY, "15000000", sig, 15_000_000), Ok(()));
        let sig2 = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=";
        assert_eq!(verify_v3(SECRET, "POST", URI, BODY, "1693657560000", sig2, 1_693_657_560_000 + 60_000), Ok(()));
        for (secret, uri, body) in [("other", URI, BODY), (SECRET, "https://www.example.com/other", BODY), (SECRET, URI, &b"{}"[..])] {
            assert!(verify_v3(secret, "POST", uri, body, "15000000", sig, 15_000_000).unwrap_err().contains("does not match"));
        }
        assert!(verify_v3(SECRET, "POST", URI, BODY, "15000000", "not base64!", 15_000_000).unwrap_err().contains("base64"));
    }

    #[test]
    fn a_request_older_than_five_minutes_is_refused() {
        let sig = "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=";
        let err = verify_v3(SECRET, "POST", URI, BODY, "15000000", sig, 15_000_000 + MAX_AGE_MS + 1).unwrap_err();
        assert!(err.contains("older than 5 minutes"), "{err}");
        assert!(verify_v3(SECRET, "POST", URI, BODY, "soon", sig, 15_000_000).unwrap_err().contains("milliseconds"));
    }

    #[test]
    fn the_decoded_uri_form_of_hubspots_docs_is_accepted_too() {
        assert_eq!(hubspot_decoded("https://a.io/h?x=a%3Ab%2Cc"), "https://a.io/h?x=a:b,c");
    }

    #[test]
    fn the_event_key_ignores_delivery_fields() {
        let a = json!({"subscriptionType": "contact.propertyChange", "objectId": 5, "occurredAt": 9, "propertyName": "email", "propertyValue": "b@x.io", "attemptNumber": 0, "eventId": 1});
        let mut b = a.clone();
        b["attemptNumber"] = json!(3);
        b["eventId"] = json!(77);
        assert_eq!(event_key(&a), event_key(&b));
        b["propertyValue"] = json!("c@x.io");
        assert_ne!(event_key(&a), event_key(&b));
    }
}
