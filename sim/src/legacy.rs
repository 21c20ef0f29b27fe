//! Legacy Contacts v1: create-or-update by email (seed 002), update by email or vid (seed 003), and
//! reads by email or vid (hubspot-behavior.md section 4). Integrators still sync by email with these.

use crate::crm::parse;
use crate::error::{HsError, HsResult};
use crate::world::{secondary_emails, WriteRules};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V1Body {
    properties: Vec<V1Property>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V1Property {
    property: String,
    value: Value,
}

fn to_map(body: V1Body) -> Map<String, Value> {
    body.properties.into_iter().map(|p| (p.property, p.value)).collect()
}

/// v1's 409: the body names the record that holds the email (its exact v1 shape is a guess).
fn v1_conflict(e: HsError, w: &crate::world::World) -> HsError {
    if e.status != StatusCode::CONFLICT {
        return e;
    }
    let existing = e.body["message"].as_str().and_then(|m| m.rsplit(": ").next()).and_then(|n| n.parse::<u64>().ok());
    let mut out = HsError::new(StatusCode::CONFLICT, "CONFLICT", "Contact already exists").with("error", json!("CONTACT_EXISTS"));
    if let Some(c) = existing.and_then(|id| w.contacts.get(&id)) {
        out = out.with(
            "identityProfile",
            json!({ "vid": c.id, "identity": [{ "value": c.props.get("email"), "type": "EMAIL", "timestamp": c.created, "isPrimary": true }] }),
        );
    }
    out
}

fn v1_not_found() -> HsError {
    HsError::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "contact does not exist")
}

/// `POST /contacts/v1/contact/createOrUpdate/email/{email}`: 200 `{vid, isNew}`; 409 when the body
/// changes the email to one another record has.
pub async fn create_or_update(State(sim): State<AppState>, Path(email): Path<String>, body: Bytes) -> HsResult<Json<Value>> {
    let props = to_map(parse(&body)?);
    let sw = sim.switches();
    let mut w = sim.world();
    match w.by_email(&email, sw.secondary_email_lookup) {
        Some(id) => {
            let values = w.check_write(Some(id), &props).map_err(|e| v1_conflict(e, &w))?;
            w.update(id, values, WriteRules { old_email_kept: sw.old_email_kept }, sw.search_lag_ms);
            Ok(Json(json!({ "vid": id, "isNew": false })))
        }
        None => {
            let mut props = props;
            props.entry("email".to_string()).or_insert(Value::String(email));
            let values = w.check_write(None, &props).map_err(|e| v1_conflict(e, &w))?;
            let id = w.create_from(values, sw.search_lag_ms, crate::world::Source::Api);
            Ok(Json(json!({ "vid": id, "isNew": true })))
        }
    }
}

fn update_profile(sim: &AppState, id: Option<u64>, body: &[u8]) -> HsResult<Response> {
    let props = to_map(parse(body)?);
    let sw = sim.switches();
    let mut w = sim.world();
    let id = id.ok_or_else(v1_not_found)?;
    let values = w.check_write(Some(id), &props).map_err(|e| v1_conflict(e, &w))?;
    w.update(id, values, WriteRules { old_email_kept: sw.old_email_kept }, sw.search_lag_ms);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /contacts/v1/contact/email/{email}/profile`: 204; 400 bad data; 404 no contact with that
/// (current) email; 409 when the new email belongs to another contact.
pub async fn update_by_email(State(sim): State<AppState>, Path(email): Path<String>, body: Bytes) -> HsResult<Response> {
    let id = sim.world().by_email(&email, sim.switches().secondary_email_lookup);
    update_profile(&sim, id, &body)
}

/// `POST /contacts/v1/contact/vid/{vid}/profile`: as by email.
pub async fn update_by_vid(State(sim): State<AppState>, Path(vid): Path<String>, body: Bytes) -> HsResult<Response> {
    let id = vid.parse::<u64>().ok().and_then(|v| sim.world().resolve(v));
    update_profile(&sim, id, &body)
}

fn profile(w: &crate::world::World, id: u64, portal: u64) -> Value {
    let Some(c) = w.contacts.get(&id) else { return Value::Null };
    let props: Map<String, Value> = c
        .props
        .iter()
        .map(|(k, v)| (k.clone(), json!({ "value": v, "versions": [{ "value": v, "timestamp": c.updated }] })))
        .collect();
    let mut identities: Vec<Value> = Vec::new();
    if let Some(e) = c.props.get("email") {
        identities.push(json!({ "type": "EMAIL", "value": e, "timestamp": c.created, "is-primary": true }));
    }
    for e in secondary_emails(c) {
        identities.push(json!({ "type": "EMAIL", "value": e, "timestamp": c.updated }));
    }
    identities.push(json!({ "type": "LEAD_GUID", "value": format!("{:032x}", c.id), "timestamp": c.created }));
    json!({
        "vid": c.id,
        "canonical-vid": c.id,
        "merged-vids": c.merged_from,
        "portal-id": portal,
        "is-contact": true,
        "properties": props,
        "identity-profiles": [{ "vid": c.id, "identities": identities }],
    })
}

/// `GET /contacts/v1/contact/email/{email}/profile` (by the current `email` property).
pub async fn read_by_email(State(sim): State<AppState>, Path(email): Path<String>) -> HsResult<Json<Value>> {
    let w = sim.world();
    let id = w.by_email(&email, sim.switches().secondary_email_lookup).ok_or_else(v1_not_found)?;
    Ok(Json(profile(&w, id, sim.portal_id)))
}

/// `GET /contacts/v1/contact/vid/{vid}/profile`
pub async fn read_by_vid(State(sim): State<AppState>, Path(vid): Path<String>) -> HsResult<Json<Value>> {
    let w = sim.world();
    let id = vid.parse::<u64>().ok().and_then(|v| w.resolve(v)).ok_or_else(v1_not_found)?;
    Ok(Json(profile(&w, id, sim.portal_id)))
}
