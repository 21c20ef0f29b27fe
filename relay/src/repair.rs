//! Repair of what still slips through: a contact HubSpot's tracking code made with an email the
//! relay had leased to a user's page, carrying no id property, is that user's duplicate, and is
//! merged into the user's contact (which stays primary; HubSpot moves its page views with it).
//!
//! How it happens: a page carries its leased email on every hit; when HubSpot's copy of the email
//! changes (a marketer's edit), the page keeps sending the old one until it learns the lease ended,
//! and HubSpot's tracker makes a new contact with it. Found by the `contact.creation` webhook (the
//! contact is read by id) and, without webhooks, by reconciliation, which looks up by email each
//! email leased lately ([`scan`]).
//!
//! The rule refuses whatever is not provably the tracker's (each refusal is recorded and counted):
//! - the contact carries the id property: it is a user's, not a stray;
//! - its record source (`hs_object_source`, set by HubSpot, not editable) is not `ANALYTICS`,
//!   HubSpot's "created by web analytics … or by an interaction with the HubSpot tracking code":
//!   a form submission (`FORM`), an import (`IMPORT`), a salesperson (`CRM_UI`), an integration;
//! - its original source (`hs_analytics_source`) is `OFFLINE` (imports, the API, by hand);
//! - it was not made while the email was leased to exactly one user (the lease's span, released or
//!   not, within [`MARGIN_MS`]): leases are kept an hour after they end (store.rs, `LEASE_KEEP_MS`).
//!
//! Exactly once across relays: the repair is claimed in the user's transaction (the `repairs` row
//! of the duplicate), merged outside it under the claim, and finished in the user's transaction; a
//! relay that dies mid-merge leaves a claim that runs out, and the next one reads the duplicate
//! again first (merged already: it records the survivor). `HSQ_REPAIR_DUPLICATES=false` records
//! what it finds (`off`) and merges nothing.

use crate::hubspot::{encode, HubSpotError, Retry};
use crate::relay::{now_ms, Relay};
use crate::store::RepairClaim;
use serde_json::Value;
use std::time::Duration;

/// HubSpot's record source for a contact made by its tracking code ("Analytics").
pub const TRACKER_SOURCE: &str = "ANALYTICS";
/// The original source of a contact first added offline (import, API, integration, by hand).
const OFFLINE: &str = "OFFLINE";
/// Slack around a lease's span: the hit leaves the page before its lease ends and reaches HubSpot,
/// whose clock stamps `createdate`, a little later.
pub const MARGIN_MS: i64 = 30_000;
/// How long one relay holds a repair's claim while it merges.
const CLAIM_MS: i64 = 60_000;

/// A contact as the rule needs it.
#[derive(Debug, Clone)]
struct Found {
    id: String,
    email: Option<String>,
    sub: Option<String>,
    source: Option<String>,
    analytics_source: Option<String>,
    created: Option<i64>,
}

/// What a check of one contact came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not made with a leased email, or a user's own contact: nothing to do.
    NotDuplicate,
    /// Recorded before (merged, refused, gone or found while off).
    Known,
    /// Made with a leased email but not provably by the tracker (why).
    Refused(String),
    /// A duplicate, left alone: `HSQ_REPAIR_DUPLICATES=false`.
    Off,
    /// Another relay is merging it.
    Busy,
    /// Merged into the user's contact; the survivor's id.
    Merged(String),
}

fn millis(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Reads a contact by id with what the rule looks at (merged ids resolve to the survivor).
async fn read(relay: &Relay, id: &str) -> Result<Option<Found>, HubSpotError> {
    let idp = relay.hubspot.id_property();
    let path = format!(
        "/crm/v3/objects/contacts/{}?properties=email,{idp},hs_object_source,hs_analytics_source,createdate",
        encode(id)
    );
    let v = match relay.hubspot.call(reqwest::Method::GET, &path, None, Retry::background()).await {
        Ok((_, v)) => v,
        Err(HubSpotError::Status { status: 404, .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let p = &v["properties"];
    let t = |k: &str| p[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let Some(id) = v["id"].as_str() else { return Ok(None) };
    Ok(Some(Found {
        id: id.to_string(),
        email: t("email").map(|e| e.to_ascii_lowercase()),
        sub: t(idp),
        source: t("hs_object_source"),
        analytics_source: t("hs_analytics_source"),
        created: millis(&p["createdate"]).or_else(|| millis(&v["createdAt"])),
    }))
}

/// Why a contact made with a leased email is not provably the tracker's; None when it is.
fn refusal(f: &Found) -> Option<String> {
    if f.source.as_deref() != Some(TRACKER_SOURCE) {
        return Some(format!(
            "its record source (hs_object_source) is {}, not the tracking code's {TRACKER_SOURCE}",
            f.source.as_deref().unwrap_or("unset")
        ));
    }
    if f.analytics_source.as_deref() == Some(OFFLINE) {
        return Some("its original source (hs_analytics_source) is OFFLINE".into());
    }
    None
}

/// Checks the contact `id` (a `contact.creation` webhook, or found by [`scan`]) and merges it into
/// its user's contact when it is that user's duplicate. An error means: try again later.
pub async fn check(relay: &Relay, id: &str) -> Result<Outcome, String> {
    let err = |e: crate::store::StoreError| e.to_string();
    // The relay's own contacts (it links them as it makes them) need no read.
    if !relay.store.users_by_contact(&[id.to_string()]).await.map_err(err)?.is_empty() {
        return Ok(Outcome::NotDuplicate);
    }
    if relay.store.repair_of(id).await.map_err(err)?.is_some_and(|r| r.state != "merging") {
        return Ok(Outcome::Known);
    }
    let Some(f) = read(relay, id).await.map_err(|e| e.to_string())? else { return Ok(Outcome::NotDuplicate) };
    let (Some(email), None, Some(created)) = (f.email.clone(), f.sub.as_ref(), f.created) else { return Ok(Outcome::NotDuplicate) };
    let lessees = relay.store.lessees(&email, created, MARGIN_MS).await.map_err(err)?;
    let Some((sub, lease)) = lessees.first().cloned() else { return Ok(Outcome::NotDuplicate) };
    let why = match refusal(&f) {
        Some(why) => Some(why),
        None if lessees.len() > 1 => Some(format!("the email was leased to {} users when it was made", lessees.len())),
        None => None,
    };
    if let Some(why) = why {
        tracing::info!(%sub, contact = %f.id, reason = %why, "a contact made with a leased email is not the tracker's duplicate; left alone");
        record(relay, &sub, &f.id, &email, &lease, "refused", Some(&why)).await?;
        relay.metrics.repair("refused");
        return Ok(Outcome::Refused(why));
    }
    if !relay.config.repair_duplicates {
        tracing::warn!(%sub, contact = %f.id, "the tracker made a duplicate of the user's contact; left alone (HSQ_REPAIR_DUPLICATES=false)");
        record(relay, &sub, &f.id, &email, &lease, "off", None).await?;
        relay.metrics.repair("off");
        return Ok(Outcome::Off);
    }
    merge_into(relay, &sub, &f.id, &email, &lease).await
}

/// Records a finding that needs no merge (refused, off), once.
async fn record(relay: &Relay, sub: &str, dup: &str, email: &str, lease: &str, state: &str, why: Option<&str>) -> Result<(), String> {
    let err = |e: crate::store::StoreError| e.to_string();
    let now = now_ms();
    let mut tx = relay.store.begin_user(sub).await.map_err(err)?;
    let primary = tx.user().await.map_err(err)?.and_then(|u| u.contact_id).unwrap_or_default();
    let claim = RepairClaim { duplicate: dup, email, lease_id: Some(lease), primary: &primary, owner: &relay.instance };
    if tx.claim_repair(&claim, now, now).await.map_err(err)? {
        tx.finish_repair(dup, state, None, why, now).await.map_err(err)?;
    }
    tx.commit().await.map_err(err)
}

/// Merges the duplicate `dup` into `sub`'s contact, once across relays.
async fn merge_into(relay: &Relay, sub: &str, dup: &str, email: &str, lease: &str) -> Result<Outcome, String> {
    let err = |e: crate::store::StoreError| e.to_string();
    let store = &relay.store;
    let lock = relay.user_lock(sub);
    let _g = lock.lock().await;
    let now = now_ms();
    let mut tx = store.begin_user(sub).await.map_err(err)?;
    let Some(primary) = tx.user().await.map_err(err)?.and_then(|u| u.contact_id) else {
        // The user's contact is not known (being resolved again): merge once it is.
        return Err("the user has no contact to merge the duplicate into yet".into());
    };
    if primary == dup {
        return Ok(Outcome::NotDuplicate);
    }
    let claim = RepairClaim { duplicate: dup, email, lease_id: Some(lease), primary: &primary, owner: &relay.instance };
    if !tx.claim_repair(&claim, now, now + CLAIM_MS).await.map_err(err)? {
        let known = tx.repair(dup).await.map_err(err)?.is_some_and(|r| r.state != "merging");
        tx.commit().await.map_err(err)?;
        return Ok(if known { Outcome::Known } else { Outcome::Busy });
    }
    tx.commit().await.map_err(err)?;

    // Under the claim. A relay that died after merging left it to run out: the duplicate then
    // reads as the survivor (another id) or not at all.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(CLAIM_MS as u64 * 8 / 10);
    let retry = Retry { attempts: Retry::background().attempts, deadline: Some(deadline) };
    let result = match relay.hubspot.read_id(dup, retry).await {
        Ok(None) => Ok(None),
        Ok(Some(c)) if c.id != dup => Ok(Some(c.id)),
        // The user's contact as HubSpot answers for it now (a merge HubSpot made meanwhile gave
        // it a new id the relay may not have followed yet).
        Ok(Some(_)) => match relay.hubspot.read_id(&primary, retry).await {
            Ok(Some(p)) if p.id != dup && p.sub.as_deref().is_none_or(|s| s == sub) => relay.hubspot.merge(&p.id, dup, retry).await.map(Some),
            Ok(_) => Err(HubSpotError::Unreachable("the user's contact is gone or is another user's; the user is resolved again first".into())),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };

    let now = now_ms();
    let mut tx = store.begin_user(sub).await.map_err(err)?;
    let survivor = match result {
        Ok(Some(survivor)) => survivor,
        Ok(None) => {
            tx.finish_repair(dup, "gone", None, Some("HubSpot no longer had the duplicate"), now).await.map_err(err)?;
            tx.commit().await.map_err(err)?;
            return Ok(Outcome::NotDuplicate);
        }
        Err(e) => {
            // The claim is let go at once: the next attempt (a webhook retry, a later scan) merges.
            tx.finish_repair(dup, "merging", None, Some(&e.to_string()), now).await.map_err(err)?;
            tx.commit().await.map_err(err)?;
            relay.metrics.repair("failed");
            tracing::warn!(%sub, duplicate = %dup, error = %e, "could not merge the tracker's duplicate; trying again later");
            return Err(e.to_string());
        }
    };
    tx.finish_repair(dup, "merged", Some(&survivor), None, now).await.map_err(err)?;
    let current = tx.user().await.map_err(err)?.unwrap_or_default();
    if current.contact_id.as_deref() == Some(primary.as_str()) {
        // The primary's values win the merge, so its email stays; the next ticket reads it again.
        tx.save_contact(&survivor, current.hubspot_email.as_deref(), now, true).await.map_err(err)?;
        tx.invalidate_contact().await.map_err(err)?;
    }
    // The app's email may have been refused because the duplicate held it: it is the survivor's
    // secondary email now, and goes to the user's contact again.
    let mut queued = false;
    if let Some(app) = current.app_email.as_deref() {
        if current.conflict_email.as_deref() == Some(app) && (current.conflict_with.as_deref() == Some(dup) || app == email) {
            tx.set_conflict(None, None).await.map_err(err)?;
            tx.put_job(app, "{}", now).await.map_err(err)?;
            queued = true;
        }
    }
    tx.commit().await.map_err(err)?;
    if queued {
        relay.outbox_wake.notify_one();
    }
    relay.metrics.repair("merged");
    tracing::info!(%sub, duplicate = %dup, into = %primary, survivor = %survivor, "merged the tracker's duplicate into the user's contact");
    Ok(Outcome::Merged(survivor))
}

/// Without webhooks: looks up by email each email leased lately (live, or ended within twice the
/// reconcile period and the margin), through the client's read batching (100 per `batch/read`),
/// and checks each contact holding one that is not linked to a user. Answers how many were read.
pub async fn scan(relay: &Relay) -> Result<usize, String> {
    let now = now_ms();
    let window = relay.config.reconcile_secs as i64 * 2000 + MARGIN_MS;
    let pairs = relay.store.repair_suspects(now - window, 1000).await.map_err(|e| e.to_string())?;
    let mut emails: Vec<String> = pairs.into_iter().map(|(_, e)| e).collect();
    emails.sort();
    emails.dedup();
    let mut reads = tokio::task::JoinSet::new();
    for e in emails.clone() {
        let hubspot = relay.hubspot.clone();
        reads.spawn(async move { hubspot.read_by("email", &e).await });
    }
    let mut strays = Vec::new();
    while let Some(r) = reads.join_next().await {
        match r {
            Ok(Ok(Some(c))) if c.sub.is_none() => strays.push(c.id),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(e.to_string()),
        }
    }
    for id in strays {
        check(relay, &id).await?;
    }
    Ok(emails.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(source: Option<&str>, analytics: Option<&str>) -> Found {
        Found {
            id: "7".into(),
            email: Some("a@x.io".into()),
            sub: None,
            source: source.map(str::to_string),
            analytics_source: analytics.map(str::to_string),
            created: Some(1),
        }
    }

    #[test]
    fn only_the_tracking_codes_record_source_passes() {
        assert_eq!(refusal(&found(Some("ANALYTICS"), Some("DIRECT_TRAFFIC"))), None);
        for s in ["FORM", "IMPORT", "CRM_UI", "INTEGRATION"] {
            assert!(refusal(&found(Some(s), Some("DIRECT_TRAFFIC"))).unwrap().contains(s), "{s}");
        }
        assert!(refusal(&found(None, None)).unwrap().contains("unset"));
        assert!(refusal(&found(Some("ANALYTICS"), Some("OFFLINE"))).unwrap().contains("OFFLINE"));
    }

    #[test]
    fn createdate_is_read_as_hubspot_writes_it() {
        assert_eq!(millis(&Value::from("2018-05-14T11:47:27.715Z")), Some(1_526_298_447_715));
        assert_eq!(millis(&Value::from("1526298447715")), Some(1_526_298_447_715));
        assert_eq!(millis(&Value::from("yesterday")), None);
    }
}
