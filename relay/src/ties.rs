//! utk ties: whether HubSpot has tied this browser's `hubspotutk` to the user's contact.
//!
//! HubSpot ties a usertoken to a contact when one identify carrying the email reaches it; after
//! that, hits carrying the utk land on that contact with no identity at all (HubSpot staff, seed
//! 001; hubspot-behavior.md 1.3 and 10). So once the tie holds, the browser's pages send `{id}`
//! only and the email never leaves that browser again.
//!
//! The relay does not infer the tie from what a page says it sent (a hit may be lost on the way,
//! or cancelled with its page): it asks HubSpot, with the legacy contacts API's read by user token
//! (`GET /contacts/v1/contact/utk/{utk}/profile`), on an identify that would confirm an email for
//! a page that sent its utk, and records the tie per (utk, contact) once HubSpot's answer is the
//! user's contact. A lost hit tied nothing, HubSpot answers so, and the next page sends the email
//! again, under a lease. The ticket says so in `tiedUtk`.
//!
//! A tie ends by itself when the key changes: a new utk (`reset()`, `rotateUtk`, a new cookie) or
//! a new contact (a merge moves the user to the survivor, whose tie HubSpot is asked for again: it
//! moves the utk's history with the merge; a deleted contact's user gets another contact). The
//! user's recorded ties are deleted with the contact link (deleted, merged away, privacy-deleted).

use crate::hubspot::{HubSpotError, Retry};
use crate::relay::{now_ms, Relay};
use reqwest::Method;

/// Whether HubSpot ties `utk` to `contact_id` (the contact of `sub`): from the store, else asked
/// of HubSpot within `deadline` and recorded when it does. Any failure answers false: the page
/// then sends the email under its lease, as without ties.
pub async fn tied(relay: &Relay, utk: &str, sub: &str, contact_id: &str, deadline: tokio::time::Instant) -> bool {
    match relay.store.tied(utk, contact_id).await {
        Ok(true) => return true,
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(%sub, error = %e, "utk ties: cannot read the store; the page sends the email");
            return false;
        }
    }
    // utk is 32 lowercase hex digits (checked by the route): nothing to encode.
    let path = format!("/contacts/v1/contact/utk/{utk}/profile");
    let call = relay.hubspot.call(Method::GET, &path, None, Retry { attempts: 2, deadline: Some(deadline) });
    let profile = match tokio::time::timeout_at(deadline, call).await {
        Ok(Ok((_, v))) => v,
        Ok(Err(HubSpotError::Status { status: 404, .. })) => return false,
        Ok(Err(e)) => {
            tracing::debug!(%sub, error = %e, "utk ties: HubSpot could not say; the page sends the email");
            return false;
        }
        Err(_) => return false,
    };
    let vid = profile["canonical-vid"].as_u64().or_else(|| profile["vid"].as_u64()).map(|v| v.to_string());
    if vid.as_deref() != Some(contact_id) {
        // Tied to another contact (the browser was someone else's), or to none yet.
        return false;
    }
    if let Err(e) = relay.store.save_tie(utk, contact_id, sub, now_ms()).await {
        tracing::warn!(%sub, error = %e, "utk ties: cannot record the tie; HubSpot is asked again next time");
    }
    true
}
