//! The durable outbox: queued email changes, applied to HubSpot by contact id (never by email)
//! once no lease on another email of the user is live; retried with backoff; a 409 sets
//! `conflict` (or merges, under the `merge` policy).

use crate::config::ConflictPolicy;
use crate::hubspot::{HubSpotError, Retry};
use crate::relay::{now_ms, Relay};
use crate::store::Job;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// Runs until the relay stops: applies due jobs, then sleeps until the next is due or it is woken.
pub async fn run(relay: Arc<Relay>) {
    loop {
        let now = now_ms();
        let jobs = match relay.store.due_jobs(now, 50) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "outbox: cannot read due jobs");
                Vec::new()
            }
        };
        let busy = !jobs.is_empty();
        let mut tasks = Vec::new();
        for job in jobs {
            let r = relay.clone();
            tasks.push(tokio::spawn(async move { apply(&r, job).await }));
        }
        for t in tasks {
            let _ = t.await;
        }
        if busy {
            continue;
        }
        let next = relay.store.next_job_at().ok().flatten();
        let sleep = next.map(|n| (n - now_ms()).clamp(0, 30_000)).unwrap_or(30_000);
        tokio::select! {
            _ = relay.outbox_wake.notified() => {},
            _ = tokio::time::sleep(Duration::from_millis(sleep as u64)) => {},
        }
    }
}

fn backoff_ms(attempts: i64) -> i64 {
    (1000i64 << attempts.clamp(0, 8)).min(300_000)
}

/// Applies one job; every outcome is written to the store before the user lock is released.
async fn apply(relay: &Relay, job: Job) {
    let lock = relay.user_lock(&job.sub);
    let guard = lock.lock().await;
    let now = now_ms();
    let store = &relay.store;
    // A live lease on another email means a page may still send that email: wait for it.
    match store.live_lease_until(&job.sub, &job.to_email, now) {
        Ok(Some(until)) => {
            let _ = store.defer_job(&job.sub, job.version, until + 1);
            return;
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "outbox: lease check");
            return;
        }
    }
    let user = store.user(&job.sub).ok().flatten().unwrap_or_default();
    let contact_id = match user.contact_id.clone() {
        Some(id) => Some(id),
        None => match relay.hubspot.read_by(relay.hubspot.id_property(), &job.sub).await {
            Ok(c) => c.map(|c| c.id),
            Err(e) => {
                let _ = store.retry_job(&job.sub, job.version, now + backoff_ms(job.attempts), &e.to_string());
                return;
            }
        },
    };
    let Some(contact_id) = contact_id else {
        // No contact yet: it is created with the app's current email at the user's next page.
        let _ = store.finish_job(&job.sub, job.version, "done", Some("no HubSpot contact yet"), now);
        return;
    };
    if user.hubspot_email.as_deref() == Some(job.to_email.as_str()) && job.properties == "{}" {
        let _ = store.finish_job(&job.sub, job.version, "done", None, now);
        return;
    }
    relay.set_applying(&job.sub, true);
    drop(guard);

    let mut props: Map<String, Value> = serde_json::from_str(&job.properties).unwrap_or_default();
    let extra = !props.is_empty();
    props.insert("email".into(), json!(job.to_email));
    let mut result = relay.hubspot.update(&contact_id, Value::Object(props.clone()), Retry::background()).await;
    // A property HubSpot refuses (deleted or made read-only since the PUT was checked) never
    // blocks the email: apply the email alone and report the property.
    let mut dropped = None;
    if extra {
        if let Err(e @ HubSpotError::Status { status: 400, .. }) = &result {
            tracing::warn!(sub = %job.sub, error = %e, "HubSpot refused the change's properties; applying the email alone");
            dropped = Some(format!("the properties were not applied: {e}"));
            props = Map::from_iter([("email".to_string(), json!(job.to_email))]);
            result = relay.hubspot.update(&contact_id, Value::Object(props.clone()), Retry::background()).await;
        }
    }
    let result = match result {
        Err(e) if e.status() == Some(409) && relay.config.conflict_policy == ConflictPolicy::Merge => {
            merge(relay, &job, &contact_id, props, e).await
        }
        other => other.map(|c| (c.id, c.email)),
    };

    let _guard = lock.lock().await;
    relay.set_applying(&job.sub, false);
    let now = now_ms();
    match result {
        Ok((id, email)) => {
            let _ = store.save_contact(&job.sub, &id, email.as_deref(), now);
            let _ = store.set_conflict(&job.sub, None, None);
            let _ = store.set_error(&job.sub, dropped.as_deref());
            let _ = store.finish_job(&job.sub, job.version, "done", dropped.as_deref(), now);
            tracing::info!(sub = %job.sub, contact = %id, "email change applied");
        }
        Err(e) if e.status() == Some(409) => {
            let other = e.existing_id();
            let _ = store.set_conflict(&job.sub, Some(&job.to_email), other.as_deref());
            let _ = store.finish_job(&job.sub, job.version, "conflict", Some(&e.to_string()), now);
            tracing::warn!(sub = %job.sub, other = ?other, "another contact holds the new email");
        }
        Err(e) if e.status() == Some(404) => {
            // The contact was merged away or deleted: forget it and find the user's contact again.
            let _ = store.forget_contact(&job.sub);
            let _ = store.retry_job(&job.sub, job.version, now, &e.to_string());
        }
        Err(e) if matches!(e.status(), Some(401) | Some(403)) => {
            // The access token is wrong, expired or lacks a scope: an operator must fix it, and
            // the change waits for that (retried with backoff) instead of being dropped.
            relay.metrics.alarm("hubspot_auth");
            let msg = format!("HubSpot refused the relay's access token ({e}); retrying until HUBSPOT_ACCESS_TOKEN is fixed");
            let _ = store.set_error(&job.sub, Some(&msg));
            let _ = store.retry_job(&job.sub, job.version, now + backoff_ms(job.attempts), &msg);
            tracing::error!(sub = %job.sub, error = %e, "ALARM: HubSpot refused the access token; the email change will be retried");
        }
        Err(e @ HubSpotError::Status { .. }) if !matches!(e.status(), Some(429) | Some(500..=599)) => {
            let _ = store.set_error(&job.sub, Some(&e.to_string()));
            let _ = store.finish_job(&job.sub, job.version, "failed", Some(&e.to_string()), now);
            tracing::error!(sub = %job.sub, error = %e, "email change refused by HubSpot");
        }
        Err(e) => {
            let _ = store.retry_job(&job.sub, job.version, now + backoff_ms(job.attempts), &e.to_string());
            tracing::warn!(sub = %job.sub, error = %e, "email change will be retried");
        }
    }
}

/// Under the `merge` policy: merge the contact holding the new email into the user's contact, when
/// no other user is linked to it, then set the email on the survivor.
async fn merge(
    relay: &Relay,
    job: &Job,
    contact_id: &str,
    props: Map<String, Value>,
    conflict: HubSpotError,
) -> Result<(String, Option<String>), HubSpotError> {
    let Some(other) = conflict.existing_id() else { return Err(conflict) };
    let holder = relay.hubspot.read_id(&other, Retry::background()).await?;
    if holder.as_ref().is_some_and(|h| h.sub.as_deref().is_some_and(|s| s != job.sub)) {
        return Err(conflict); // another user's contact: never merged automatically
    }
    let survivor = relay.hubspot.merge(contact_id, &other, Retry::background()).await?;
    let c = relay.hubspot.update(&survivor, Value::Object(props), Retry::background()).await?;
    tracing::info!(sub = %job.sub, merged = %other, into = %survivor, "merged the contact holding the new email");
    Ok((c.id, c.email))
}
