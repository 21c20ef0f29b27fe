//! Collected forms (hubspot-behavior.md section 10): the submissions of a page's own `<form>`s
//! that the tracker's collected-forms script (`/collectedforms.js`, standing in for
//! `js.hscollectedforms.net/collectedforms.js`) sends to `POST /collected-forms/submit/form`
//! (HubSpot: `forms.hscollectedforms.net`), and how HubSpot applies them: utk first, then email
//! (section 2). A browser whose `hubspotutk` is tied to a contact and that submits an email
//! HubSpot does not know rewrites that contact's email; an email HubSpot knows updates its
//! contact, and the browser's analytics stay where they were.

use crate::error::{HsError, HsResult};
use crate::world::{now_ms, valid_email, World, WriteRules};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The script the tracker loads when collected forms are on.
pub const SCRIPT_JS: &str = include_str!("../assets/collectedforms.js");

/// What the collected-forms script posts (the shape of a captured HubSpot request; the
/// simulator reads the fields it applies and keeps the rest as sent).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Body {
    #[serde(default)]
    pub contact_fields: BTreeMap<String, Value>,
    #[serde(default)]
    pub form_selector_id: String,
    #[serde(default)]
    pub page_url: String,
    pub portal_id: Option<Value>,
    #[serde(default)]
    pub utk: String,
    #[serde(default)]
    pub uuid: String,
}

/// One applied submission, as `GET /__sim/forms` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Submission {
    pub uuid: String,
    pub utk: Option<String>,
    pub email: String,
    pub page_url: String,
    pub form_selector_id: String,
    /// `email-replaced` (the utk's contact took the new email), `updated` (the email's contact),
    /// `created`, or `ignored` (collected forms are off).
    pub outcome: String,
    pub contact_id: Option<u64>,
    /// The email the contact had before, when the submission replaced it.
    pub previous_email: Option<String>,
    pub at: i64,
}

/// The contact properties a submission may fill besides the email: those the account defines
/// and the API may write.
fn extra_fields(w: &World, fields: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    fields
        .iter()
        .filter(|(k, _)| *k != "email" && w.properties.get(*k).is_some_and(|d| !d.read_only))
        .filter_map(|(k, v)| v.as_str().filter(|v| !v.trim().is_empty()).map(|v| (k.clone(), v.trim().to_string())))
        .collect()
}

/// Ties `utk` to contact `id` and moves its anonymous history there (the identify rule).
fn tie(w: &mut World, utk: &str, id: u64) {
    w.utk_owner.insert(utk.to_string(), id);
    if let Some(c) = w.contacts.get_mut(&id) {
        if !c.utks.iter().any(|u| u == utk) {
            c.utks.push(utk.to_string());
        }
    }
    for h in w.hits.iter_mut().filter(|h| h.contact_id.is_none() && h.utk.as_deref() == Some(utk)) {
        h.contact_id = Some(id);
    }
}

/// Applies a submission with HubSpot's form dedupe (hubspot-behavior.md section 2), utk first:
/// - the email is some contact's (primary; secondary too with `secondary`): that contact is
///   updated; the utk is tied to it only when it was tied to none (analytics stay);
/// - else the utk is tied to a contact: the submission is written into it, replacing its email
///   (the old one kept as a secondary email under `old_email_kept`);
/// - else a contact is created with the email and the utk is tied to it.
///
/// Email changes go through `World::update`, so they send the `contact.propertyChange` webhook an
/// edit in HubSpot sends.
pub fn apply(w: &mut World, body: &Body, email: &str, secondary: bool, old_email_kept: bool, lag: u64) -> Submission {
    let utk = Some(body.utk.trim().to_ascii_lowercase()).filter(|u| !u.is_empty());
    let mut values = extra_fields(w, &body.contact_fields);
    let by_utk = utk.as_ref().and_then(|u| w.utk_owner.get(u).copied()).and_then(|id| w.resolve(id));
    let rules = WriteRules { old_email_kept };
    let (outcome, id, previous) = match (w.by_email(email, secondary), by_utk) {
        (Some(id), _) => {
            if !values.is_empty() {
                w.update(id, values, rules, lag);
            }
            if let (Some(u), None) = (&utk, by_utk) {
                tie(w, u, id);
            }
            ("updated", id, None)
        }
        (None, Some(id)) => {
            let previous = w.contacts.get(&id).and_then(|c| c.props.get("email").cloned());
            values.insert("email".into(), email.to_string());
            w.update(id, values, rules, lag);
            ("email-replaced", id, previous)
        }
        (None, None) => {
            values.insert("email".into(), email.to_string());
            // A collected form's record source is taken to be a form's (sim/README.md).
            let id = w.create_from(values, lag, crate::world::Source::Form);
            if let Some(u) = &utk {
                tie(w, u, id);
            }
            ("created", id, None)
        }
    };
    submission(body, utk, email, outcome, Some(id), previous)
}

fn submission(body: &Body, utk: Option<String>, email: &str, outcome: &str, id: Option<u64>, previous: Option<String>) -> Submission {
    Submission {
        uuid: body.uuid.clone(),
        utk,
        email: email.to_string(),
        page_url: body.page_url.clone(),
        form_selector_id: body.form_selector_id.clone(),
        outcome: outcome.into(),
        contact_id: id,
        previous_email: previous,
        at: now_ms(),
    }
}

fn cors(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
    res
}

/// `OPTIONS /collected-forms/submit/form`: the browser's preflight for a JSON body.
pub async fn preflight() -> Response {
    cors(StatusCode::NO_CONTENT.into_response())
}

/// `POST /collected-forms/submit/form`: one submission (any content type; the body is JSON).
/// A uuid seen before is not applied again (the script sends a stored submission until it is
/// answered, so one may arrive twice).
pub async fn submit(State(sim): State<AppState>, body: Bytes) -> Response {
    cors(match receive(&sim, &body) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    })
}

fn receive(sim: &AppState, raw: &[u8]) -> HsResult<()> {
    let body: Body = serde_json::from_slice(raw).map_err(HsError::bad_json)?;
    let portal = body.portal_id.as_ref().map(|p| p.as_str().map(str::to_string).unwrap_or_else(|| p.to_string()));
    if portal.as_deref() != Some(sim.portal_id.to_string().as_str()) {
        return Err(HsError::validation(format!("portalId must be {}, got {}", sim.portal_id, portal.unwrap_or_else(|| "none".into()))));
    }
    let email = match body.contact_fields.get("email").and_then(Value::as_str) {
        Some(e) => e.trim().to_ascii_lowercase(),
        None => return Err(HsError::validation("contactFields.email is required: a submission without an email creates nothing")),
    };
    if !valid_email(&email) {
        return Err(HsError::validation(format!("Email address {email} is invalid")));
    }
    if body.uuid.trim().is_empty() {
        return Err(HsError::validation("uuid is required"));
    }
    let sw = sim.switches();
    let mut w = sim.world();
    if w.form_submissions.iter().any(|s| s.uuid == body.uuid) {
        return Ok(());
    }
    let s = if sw.collected_forms {
        apply(&mut w, &body, &email, sw.secondary_email_lookup, sw.old_email_kept, sw.search_lag_ms)
    } else {
        let utk = Some(body.utk.clone()).filter(|u| !u.is_empty());
        submission(&body, utk, &email, "ignored", None, None)
    };
    w.form_submissions.push(s);
    Ok(())
}

/// `GET /__sim/forms`: every submission received, in order, with what it did.
pub async fn list(State(sim): State<AppState>) -> axum::Json<Value> {
    let w = sim.world();
    let mut by: Map<String, Value> = Map::new();
    for s in &w.form_submissions {
        let n = by.get(&s.outcome).and_then(Value::as_u64).unwrap_or(0);
        by.insert(s.outcome.clone(), json!(n + 1));
    }
    axum::Json(json!({ "total": w.form_submissions.len(), "byOutcome": by, "submissions": w.form_submissions }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(utk: &str, email: &str, uuid: &str) -> Body {
        Body {
            contact_fields: BTreeMap::from([("email".to_string(), json!(email)), ("firstname".to_string(), json!("Ann"))]),
            form_selector_id: "#email-form".into(),
            page_url: "http://app.test/settings".into(),
            portal_id: Some(json!(1)),
            utk: utk.into(),
            uuid: uuid.into(),
        }
    }

    fn view(w: &mut World, utk: &str, email: Option<&str>) {
        let identity: Vec<(&str, &str)> = email.map(|e| ("email", e)).into_iter().collect();
        w.collect(crate::world::tests::hit(utk, &identity), false, 0);
    }

    #[test]
    fn a_new_email_from_a_tied_browser_replaces_the_contacts_email() {
        let mut w = World::new();
        view(&mut w, "utk1", Some("old@x.io"));
        let id = w.by_email("old@x.io", false).unwrap();
        w.changes.clear();
        let s = apply(&mut w, &body("utk1", "new@x.io", "u1"), "new@x.io", false, false, 0);
        assert_eq!((s.outcome.as_str(), s.contact_id, s.previous_email.as_deref()), ("email-replaced", Some(id), Some("old@x.io")));
        assert_eq!(w.contacts.len(), 1, "no contact created");
        assert_eq!(w.contacts[&id].props["email"], "new@x.io");
        assert_eq!(w.contacts[&id].props["firstname"], "Ann");
        assert_eq!(w.by_email("old@x.io", false), None, "the old email is free: an identify with it makes a new contact");
        let change = w.changes.iter().find(|c| c["propertyName"] == "email").expect("a propertyChange for the email");
        assert_eq!((change["subscriptionType"].as_str(), change["propertyValue"].as_str()), (Some("contact.propertyChange"), Some("new@x.io")));
    }

    #[test]
    fn an_email_held_by_another_contact_updates_that_contact_and_analytics_stay() {
        let mut w = World::new();
        view(&mut w, "utk1", Some("a@x.io"));
        view(&mut w, "utk2", Some("b@x.io"));
        let (a, b) = (w.by_email("a@x.io", false).unwrap(), w.by_email("b@x.io", false).unwrap());
        let s = apply(&mut w, &body("utk1", "b@x.io", "u1"), "b@x.io", false, false, 0);
        assert_eq!((s.outcome.as_str(), s.contact_id), ("updated", Some(b)));
        assert_eq!(w.contacts[&a].props["email"], "a@x.io", "the browser's contact keeps its email");
        assert_eq!(w.utk_owner["utk1"], a, "the browser's analytics stay on its contact");
        assert_eq!(w.contacts[&b].props["firstname"], "Ann");
    }

    #[test]
    fn an_untied_browser_creates_the_contact_and_its_history_moves_there() {
        let mut w = World::new();
        view(&mut w, "utk9", None);
        let s = apply(&mut w, &body("utk9", "c@x.io", "u1"), "c@x.io", false, false, 0);
        assert_eq!(s.outcome, "created");
        let c = w.by_email("c@x.io", false).unwrap();
        assert_eq!(w.utk_owner["utk9"], c);
        assert_eq!(w.hits[0].contact_id, Some(c), "the anonymous view moved to the new contact");
    }

    #[test]
    fn with_old_email_kept_the_replaced_email_stays_as_a_secondary() {
        let mut w = World::new();
        view(&mut w, "utk1", Some("old@x.io"));
        let id = w.by_email("old@x.io", false).unwrap();
        apply(&mut w, &body("utk1", "new@x.io", "u1"), "new@x.io", false, true, 0);
        assert_eq!(w.contacts[&id].props["hs_additional_emails"], "old@x.io");
    }
}
