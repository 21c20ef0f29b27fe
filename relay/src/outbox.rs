//! The durable outbox: queued email changes, applied to HubSpot by contact id (never by email)
//! once no lease on another email of the user is live; retried with backoff; a 409 sets
//! `conflict` (or merges, under the `merge` policy).

use crate::config::ConflictPolicy;
use crate::hubspot::{HubSpotError, Retry};
use crate::relay::{now_ms, Relay};
use crate::store::{Job, Retention, StoreError};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs until the relay stops: claims due jobs (jobs another relay holds are skipped), applies
/// them, then sleeps until the next is due, it is woken, or (on PostgreSQL) the poll interval
/// passes, since another relay may have queued or unblocked a change.
pub async fn run(relay: Arc<Relay>) {
    let claim_ms = relay.config.outbox_claim_secs as i64 * 1000;
    let max_sleep = if relay.store.kind() == "postgres" { relay.config.outbox_poll_ms as i64 } else { 30_000 };
    loop {
        let now = now_ms();
        let jobs = match relay.store.claim_jobs(now, 50, &relay.instance, now + claim_ms).await {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "outbox: cannot claim due jobs");
                Vec::new()
            }
        };
        let busy = !jobs.is_empty();
        let mut tasks = Vec::new();
        for job in jobs {
            let r = relay.clone();
            tasks.push(tokio::spawn(async move {
                let sub = job.sub.clone();
                if let Err(e) = apply(&r, job).await {
                    // The claim runs out and the job is tried again.
                    tracing::error!(%sub, error = %e, "outbox: the store failed while applying a change");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        if busy {
            continue;
        }
        let next = relay.store.next_job_at().await.ok().flatten();
        let sleep = next.map(|n| (n - now_ms()).clamp(0, max_sleep)).unwrap_or(max_sleep);
        tokio::select! {
            _ = relay.outbox_wake.notified() => {},
            _ = tokio::time::sleep(Duration::from_millis(sleep.max(1) as u64)) => {},
        }
    }
}

/// Every minute: deletes ended leases, old utk bindings, old applied jobs and expired chat tokens.
pub async fn prune(relay: Arc<Relay>) {
    let keep = Retention { utk_ms: relay.config.utk_retention_days as i64 * 86_400_000, ..Retention::default() };
    loop {
        match relay.store.prune(now_ms(), keep).await {
            Ok(p) => {
                if p != Default::default() {
                    tracing::debug!(?p, "pruned");
                }
            }
            Err(e) => tracing::warn!(error = %e, "prune failed; trying again in a minute"),
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

fn backoff_ms(attempts: i64) -> i64 {
    (1000i64 << attempts.clamp(0, 8)).min(300_000)
}

/// The longest a HubSpot write may still land after it was sent (`HSQ_HUBSPOT_LATE_WRITE_MS`, at
/// least the call's own timeout).
fn late_write_ms(relay: &Relay) -> i64 {
    relay.config.hubspot_late_write_ms.max(relay.config.hubspot.timeout_ms) as i64
}

/// Applies one claimed job. Two short transactions hold the user's lock: the first checks that no
/// lease on another email is live and marks the job as being applied (tickets answer `pending`
/// from then on); the second records the outcome. HubSpot is called between them, under the
/// claim, so a relay that dies there leaves a claim that runs out and another relay applies the
/// job (the write sets the same email again: harmless).
///
/// A write whose answer never came may still land, later than a newer write (HubSpot completes a
/// request whose client gave up). So before writing, the first transaction records until when
/// this relay's attempts may land (`uncertain_until`: the last attempt's start plus
/// `HSQ_HUBSPOT_LATE_WRITE_MS`), which a relay that dies here leaves behind; an answered write
/// clears it, an attempt of unknown outcome keeps it (from the call's end). While it is set no
/// email of the user is leased and no change is written or finished: the job waits for it to
/// pass, then the contact is read back, and what HubSpot then holds is the truth (written again
/// if it is not the change).
async fn apply(relay: &Relay, job: Job) -> Result<(), StoreError> {
    let store = &relay.store;
    let started = Instant::now();
    let started_ms = now_ms();
    let claim = Duration::from_secs(relay.config.outbox_claim_secs);
    let user = store.user(&job.sub).await?.unwrap_or_default();
    // A user without a cached contact: find it first (outside the transaction).
    let contact_id = match user.contact_id.clone() {
        Some(id) => Some(id),
        None => match relay.hubspot.read_by(relay.hubspot.id_property(), &job.sub).await {
            Ok(c) => c.map(|c| c.id),
            Err(e) => {
                let mut tx = store.begin_user(&job.sub).await?;
                tx.retry_job(job.version, now_ms() + backoff_ms(job.attempts), &e.to_string()).await?;
                return tx.commit().await;
            }
        },
    };

    // An earlier write may have landed or still land until `uncertain_until`: once that passed,
    // read back what HubSpot holds (outside the transaction) before anything is decided.
    let uncertain = job.uncertain_until;
    let verified = match &contact_id {
        Some(id) if uncertain > 0 && uncertain <= now_ms() => match relay.hubspot.read_id(id, Retry::interactive(claim.mul_f32(0.5))).await {
            Ok(c) => Some(c),
            Err(e) => {
                let mut tx = store.begin_user(&job.sub).await?;
                tx.retry_job(job.version, now_ms() + backoff_ms(job.attempts), &format!("reading back a write of unknown outcome: {e}")).await?;
                return tx.commit().await;
            }
        },
        _ => None,
    };

    let mut tx = store.begin_user(&job.sub).await?;
    let now = now_ms();
    let current = tx.job().await?;
    let ours = current.as_ref().is_some_and(|j| {
        j.version == job.version && j.state == "pending" && j.claimed_by.as_deref() == Some(relay.instance.as_str()) && j.claimed_until > now
    });
    if !ours {
        // A newer change replaced it (it is claimed afresh), or the claim ran out.
        tx.unclaim_job(&relay.instance).await?;
        return tx.commit().await;
    }
    let recorded = current.as_ref().map_or(0, |j| j.uncertain_until);
    if recorded > now {
        // A write of unknown outcome may still land (this relay's, or one of a relay that died
        // or restarted while writing): nothing is written until it no longer can.
        tx.defer_job(job.version, recorded).await?;
        return tx.commit().await;
    }
    if recorded > 0 {
        // What HubSpot holds once no earlier attempt can land any more is final.
        match (&contact_id, verified) {
            // No contact to land on: nothing to read back.
            (None, _) => tx.settle_uncertain(recorded).await?,
            (Some(_), Some(read)) if recorded == uncertain => {
                tx.settle_uncertain(recorded).await?;
                let Some(c) = read else {
                    // The contact is gone (deleted or merged away): find the user's contact again.
                    tx.forget_contact().await?;
                    tx.retry_job(job.version, now, "the contact was not found when read back").await?;
                    return tx.commit().await;
                };
                tx.save_contact(&c.id, c.email.as_deref(), now, true).await?;
                tracing::info!(sub = %job.sub, contact = %c.id, "read back the contact after a write of unknown outcome");
            }
            _ => {
                // Not read back yet (or recorded again since the claim): read it on the next claim.
                tx.defer_job(job.version, now).await?;
                return tx.commit().await;
            }
        }
    }
    // A live lease on another email means a page may still send that email: wait for it.
    if let Some(until) = tx.live_lease_until(&job.to_email, now).await? {
        tx.defer_job(job.version, until + 1).await?;
        return tx.commit().await;
    }
    let Some(contact_id) = contact_id else {
        // No contact yet: it is created with the app's current email at the user's next page.
        tx.finish_job(job.version, "done", Some("no HubSpot contact yet"), now).await?;
        return tx.commit().await;
    };
    let user = tx.user().await?.unwrap_or(user);
    if user.hubspot_email.as_deref() == Some(job.to_email.as_str()) && job.properties == "{}" {
        tx.finish_job(job.version, "done", None, now).await?;
        return tx.commit().await;
    }
    tx.mark_applying(job.version, &format!("applying:{}", relay.instance)).await?;
    // Written ahead: if this relay dies while writing, its attempts (none starts after the call's
    // deadline below) may land until this.
    let ahead = started_ms + claim.mul_f32(0.8).as_millis() as i64 + late_write_ms(relay);
    tx.hold_uncertain(ahead).await?;
    // Tickets decided on a read from before this write are not trusted, and the cached read is
    // dropped: if this relay dies mid-write, the next ticket reads HubSpot again.
    tx.bump_gen().await?;
    tx.invalidate_contact().await?;
    tx.commit().await?;

    let mut props: Map<String, Value> = serde_json::from_str(&job.properties).unwrap_or_default();
    let extra = !props.is_empty();
    props.insert("email".into(), json!(job.to_email));
    // Finish (or give up) well inside the claim, so no other relay takes the job meanwhile.
    let deadline = tokio::time::Instant::from_std(started) + claim.mul_f32(0.8);
    let retry = Retry { attempts: Retry::background().attempts, deadline: Some(deadline) };
    let mut unknown = false;
    let mut result = relay.hubspot.update_noting(&contact_id, Value::Object(props.clone()), retry, &mut unknown).await;
    // A property HubSpot refuses (deleted or made read-only since the PUT was checked) never
    // blocks the email: apply the email alone and report the property.
    let mut dropped = None;
    if extra {
        if let Err(e @ HubSpotError::Status { status: 400, .. }) = &result {
            tracing::warn!(sub = %job.sub, error = %e, "HubSpot refused the change's properties; applying the email alone");
            dropped = Some(format!("the properties were not applied: {e}"));
            props = Map::from_iter([("email".to_string(), json!(job.to_email))]);
            result = relay.hubspot.update_noting(&contact_id, Value::Object(props.clone()), retry, &mut unknown).await;
        }
    }
    let result = match result {
        Err(e) if e.status() == Some(409) && relay.config.conflict_policy == ConflictPolicy::Merge => {
            merge(relay, &job, &contact_id, props, e, retry, &mut unknown).await
        }
        other => other.map(|c| (c.id, c.email)),
    };

    let mut tx = store.begin_user(&job.sub).await?;
    let now = now_ms();
    tx.bump_gen().await?;
    // A newer change that replaced this one meanwhile is not held by this claim until it runs out
    // (the outcome below is recorded only on this version).
    tx.unclaim_job(&format!("applying:{}", relay.instance)).await?;
    if unknown {
        // An attempt got no answer, or a 5xx: it may still land, possibly after a newer write.
        // The job stays pending until it no longer can, then the contact is read back.
        let until = now + late_write_ms(relay);
        tx.settle_uncertain(ahead).await?;
        tx.hold_uncertain(until).await?;
        match &result {
            Ok((id, email)) => {
                tx.save_contact(id, email.as_deref(), now, false).await?;
                tx.defer_job(job.version, until).await?;
            }
            Err(e) => tx.retry_job(job.version, until, &e.to_string()).await?,
        }
        tracing::warn!(sub = %job.sub, answered = result.is_ok(), "a HubSpot write's outcome is unknown; the contact is read back once it can no longer land");
        return tx.commit().await;
    }
    // Every attempt was answered: nothing of this write can land any more.
    tx.settle_uncertain(ahead).await?;
    match result {
        Ok((id, email)) => {
            tx.save_contact(&id, email.as_deref(), now, false).await?;
            tx.set_conflict(None, None).await?;
            tx.set_error(dropped.as_deref()).await?;
            tx.finish_job(job.version, "done", dropped.as_deref(), now).await?;
            tracing::info!(sub = %job.sub, contact = %id, "email change applied");
        }
        Err(e) if e.status() == Some(409) => {
            let other = e.existing_id();
            tx.set_conflict(Some(&job.to_email), other.as_deref()).await?;
            tx.finish_job(job.version, "conflict", Some(&e.to_string()), now).await?;
            tracing::warn!(sub = %job.sub, other = ?other, "another contact holds the new email");
        }
        Err(e) if e.status() == Some(404) => {
            // The contact was merged away or deleted: forget it and find the user's contact again.
            tx.forget_contact().await?;
            tx.retry_job(job.version, now, &e.to_string()).await?;
        }
        Err(e) if matches!(e.status(), Some(401) | Some(403)) => {
            // The access token is wrong, expired or lacks a scope: an operator must fix it, and
            // the change waits for that (retried with backoff) instead of being dropped.
            relay.metrics.alarm("hubspot_auth");
            let msg = format!("HubSpot refused the relay's access token ({e}); retrying until HUBSPOT_ACCESS_TOKEN is fixed");
            tx.set_error(Some(&msg)).await?;
            tx.retry_job(job.version, now + backoff_ms(job.attempts), &msg).await?;
            tracing::error!(sub = %job.sub, error = %e, "ALARM: HubSpot refused the access token; the email change will be retried");
        }
        Err(e @ HubSpotError::Status { .. }) if !matches!(e.status(), Some(429) | Some(500..=599)) => {
            tx.set_error(Some(&e.to_string())).await?;
            tx.finish_job(job.version, "failed", Some(&e.to_string()), now).await?;
            tracing::error!(sub = %job.sub, error = %e, "email change refused by HubSpot");
        }
        Err(HubSpotError::Busy(wait)) => {
            // The rate limit is spent (HubSpot's limit is per account, shared by every relay):
            // come back when it has room, without counting an attempt.
            tx.defer_job(job.version, now + wait.as_millis() as i64).await?;
        }
        Err(e) => {
            tx.retry_job(job.version, now + backoff_ms(job.attempts), &e.to_string()).await?;
            tracing::warn!(sub = %job.sub, error = %e, "email change will be retried");
        }
    }
    tx.commit().await
}

/// Under the `merge` policy: merge the contact holding the new email into the user's contact, when
/// no other user is linked to it, then set the email on the survivor.
async fn merge(
    relay: &Relay,
    job: &Job,
    contact_id: &str,
    props: Map<String, Value>,
    conflict: HubSpotError,
    retry: Retry,
    unknown: &mut bool,
) -> Result<(String, Option<String>), HubSpotError> {
    let Some(other) = conflict.existing_id() else { return Err(conflict) };
    let holder = relay.hubspot.read_id(&other, retry).await?;
    if holder.as_ref().is_some_and(|h| h.sub.as_deref().is_some_and(|s| s != job.sub)) {
        return Err(conflict); // another user's contact: never merged automatically
    }
    let survivor = relay.hubspot.merge(contact_id, &other, retry).await?;
    let c = relay.hubspot.update_noting(&survivor, Value::Object(props), retry, unknown).await?;
    tracing::info!(sub = %job.sub, merged = %other, into = %survivor, "merged the contact holding the new email");
    Ok((c.id, c.email))
}
