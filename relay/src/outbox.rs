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

/// Applies one claimed job. Two short transactions hold the user's lock: the first checks that no
/// lease on another email is live and marks the job as being applied (tickets answer `pending`
/// from then on); the second records the outcome. HubSpot is called between them, under the
/// claim, so a relay that dies there leaves a claim that runs out and another relay applies the
/// job (the write sets the same email again: harmless).
async fn apply(relay: &Relay, job: Job) -> Result<(), StoreError> {
    let store = &relay.store;
    let started = Instant::now();
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
    let mut result = relay.hubspot.update(&contact_id, Value::Object(props.clone()), retry).await;
    // A property HubSpot refuses (deleted or made read-only since the PUT was checked) never
    // blocks the email: apply the email alone and report the property.
    let mut dropped = None;
    if extra {
        if let Err(e @ HubSpotError::Status { status: 400, .. }) = &result {
            tracing::warn!(sub = %job.sub, error = %e, "HubSpot refused the change's properties; applying the email alone");
            dropped = Some(format!("the properties were not applied: {e}"));
            props = Map::from_iter([("email".to_string(), json!(job.to_email))]);
            result = relay.hubspot.update(&contact_id, Value::Object(props.clone()), retry).await;
        }
    }
    let result = match result {
        Err(e) if e.status() == Some(409) && relay.config.conflict_policy == ConflictPolicy::Merge => {
            merge(relay, &job, &contact_id, props, e, retry).await
        }
        other => other.map(|c| (c.id, c.email)),
    };

    let mut tx = store.begin_user(&job.sub).await?;
    let now = now_ms();
    tx.bump_gen().await?;
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
) -> Result<(String, Option<String>), HubSpotError> {
    let Some(other) = conflict.existing_id() else { return Err(conflict) };
    let holder = relay.hubspot.read_id(&other, retry).await?;
    if holder.as_ref().is_some_and(|h| h.sub.as_deref().is_some_and(|s| s != job.sub)) {
        return Err(conflict); // another user's contact: never merged automatically
    }
    let survivor = relay.hubspot.merge(contact_id, &other, retry).await?;
    let c = relay.hubspot.update(&survivor, Value::Object(props), retry).await?;
    tracing::info!(sub = %job.sub, merged = %other, into = %survivor, "merged the contact holding the new email");
    Ok((c.id, c.email))
}
