//! Test-only endpoints under `/__sim/`: what the account holds, hits, chat events, switches, faults.

use crate::error::{HsError, HsResult};
use crate::gate::Fault;
use crate::world::{secondary_emails, World};
use crate::{AppState, Switches};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/__sim/contacts", get(contacts).post(make_contact))
        .route("/__sim/hits", get(hits))
        .route("/__sim/chat", get(chat))
        .route("/__sim/chat/event", get(crate::scripts::chat_event))
        .route("/__sim/stats", get(stats))
        .route("/__sim/reset", post(reset))
        .route("/__sim/config", get(config).post(set_config))
        .route("/__sim/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/__sim/contacts/{id}/restore", post(restore))
        .route("/__sim/webhooks", get(webhooks))
        .route("/__sim/forms", get(crate::forms::list))
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            HsError::method_not_allowed(&method, uri.path())
        })
        .layer(axum::middleware::from_fn(cors))
}

/// Demo pages on another origin read these endpoints.
async fn cors(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    res.headers_mut().insert("access-control-allow-origin", HeaderValue::from_static("*"));
    res
}

fn contact_view(w: &World, id: u64) -> Value {
    let c = &w.contacts[&id];
    let views: Vec<Value> = w
        .hits
        .iter()
        .filter(|h| h.contact_id == Some(id))
        .map(|h| json!({ "seq": h.seq, "kind": h.kind, "path": h.path, "url": h.url, "utk": h.utk, "at": h.at }))
        .collect();
    json!({
        "id": id.to_string(),
        "email": c.props.get("email"),
        "additionalEmails": secondary_emails(c),
        "properties": c.props,
        "ids": c.ext_ids,
        "utks": c.utks,
        "mergedFrom": c.merged_from,
        "pageViews": views.iter().filter(|v| v["kind"] == "pageview").count(),
        "hits": views,
    })
}

/// `GET /__sim/contacts`: every contact with its emails, external ids, utks and hits.
async fn contacts(State(sim): State<AppState>) -> Json<Value> {
    let w = sim.world();
    let list: Vec<Value> = w.contacts.keys().map(|id| contact_view(&w, *id)).collect();
    let anonymous = w.hits.iter().filter(|h| h.contact_id.is_none()).count();
    Json(json!({ "total": list.len(), "contacts": list, "anonymousHits": anonymous }))
}

/// `POST /__sim/contacts` `{properties, source}`: a contact made the way `source` makes one
/// (`hs_object_source`: `FORM`, `IMPORT`, `CRM_UI`, `ANALYTICS`, ...), standing in for what the
/// API cannot do: a form submission, an import, a salesperson in HubSpot's UI. 201 with its id.
async fn make_contact(State(sim): State<AppState>, body: Bytes) -> HsResult<(StatusCode, Json<Value>)> {
    let body: Value = serde_json::from_slice(&body).map_err(HsError::bad_json)?;
    let name = body["source"].as_str().unwrap_or("");
    let source = crate::world::Source::parse(name)
        .ok_or_else(|| HsError::validation(format!("source {name:?} is not a record source the simulator knows (FORM, IMPORT, CRM_UI, ANALYTICS, ...)")))?;
    let Some(props) = body["properties"].as_object() else { return Err(HsError::validation("properties must be an object")) };
    let lag = sim.switches().search_lag_ms;
    let mut w = sim.world();
    let values = w.check_write(None, props)?;
    let id = w.create_from(values, lag, source);
    Ok((StatusCode::CREATED, Json(contact_view(&w, id))))
}

/// `GET /__sim/hits`: every hit the collector received, in order.
async fn hits(State(sim): State<AppState>) -> Json<Value> {
    Json(json!({ "hits": sim.world().hits }))
}

/// `GET /__sim/chat`: chat widget events, with whom each load identified.
async fn chat(State(sim): State<AppState>) -> Json<Value> {
    Json(json!({ "events": sim.world().chat_events }))
}

/// `GET /__sim/stats`: API calls by method, route and status.
async fn stats(State(sim): State<AppState>) -> Json<Value> {
    let g = sim.gate();
    let total: u64 = g.calls.values().sum();
    Json(json!({ "apiCalls": total, "calls": g.calls }))
}

/// `POST /__sim/reset`: forget every contact, hit, token, fault and count; switches stay.
async fn reset(State(sim): State<AppState>) -> StatusCode {
    *sim.world() = World::new();
    let mut g = sim.gate();
    g.calls.clear();
    g.release();
    g.reset_limits();
    StatusCode::NO_CONTENT
}

/// The switches as JSON, with the webhook secret hidden.
fn switches_view(s: &Switches) -> Value {
    let mut v = json!(s);
    if s.webhook_secret.is_some() {
        v["webhookSecret"] = json!("[set]");
    }
    v
}

async fn config(State(sim): State<AppState>) -> Json<Value> {
    Json(json!({ "portalId": sim.portal_id, "switches": switches_view(&sim.switches()) }))
}

/// `POST /__sim/contacts/{id}/restore`: what restoring from HubSpot's recycle bin does.
async fn restore(State(sim): State<AppState>, axum::extract::Path(id): axum::extract::Path<String>) -> HsResult<StatusCode> {
    let id: u64 = id.parse().map_err(|_| HsError::validation("the contact id must be a number"))?;
    sim.world().restore(id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /__sim/webhooks`: webhook deliveries, attempts and their outcomes.
async fn webhooks(State(sim): State<AppState>) -> Json<Value> {
    Json(sim.webhooks.log.lock().unwrap_or_else(|e| e.into_inner()).view())
}

/// `POST /__sim/config` with some switches (camelCase): changes them at once.
async fn set_config(State(sim): State<AppState>, body: Bytes) -> HsResult<Json<Value>> {
    let mut current = serde_json::to_value(sim.switches()).unwrap_or_default();
    let patch: Value = serde_json::from_slice(&body).map_err(HsError::bad_json)?;
    let Some(patch) = patch.as_object() else { return Err(HsError::validation("expected a JSON object of switches")) };
    for (k, v) in patch {
        if current.get(k).is_none() {
            return Err(HsError::validation(format!("unknown switch {k:?}")));
        }
        current[k] = v.clone();
    }
    let next: Switches = serde_json::from_value(current).map_err(|e| HsError::validation(format!("bad switch value: {e}")))?;
    next.validate().map_err(HsError::validation)?;
    *sim.switches.write().unwrap_or_else(|e| e.into_inner()) = next.clone();
    Ok(Json(json!({ "portalId": sim.portal_id, "switches": switches_view(&next) })))
}

async fn list_faults(State(sim): State<AppState>) -> Json<Value> {
    Json(json!({ "faults": sim.gate().faults }))
}

/// `POST /__sim/faults` `{path, method?, status?, latencyMs?, drop?, hold?, count?}`
async fn add_fault(State(sim): State<AppState>, body: Bytes) -> HsResult<(StatusCode, Json<Value>)> {
    let f: Fault = serde_json::from_slice(&body).map_err(HsError::bad_json)?;
    if f.status.is_some_and(|s| !(400..600).contains(&s)) {
        return Err(HsError::validation("status must be an error status (400..=599)"));
    }
    if f.count == 0 || !f.path.starts_with('/') {
        return Err(HsError::validation("count must be at least 1 and path must start with /"));
    }
    sim.gate().faults.push(f.clone());
    Ok((StatusCode::CREATED, Json(json!(f))))
}

/// `DELETE /__sim/faults`: clears the faults and lets held requests go on.
async fn clear_faults(State(sim): State<AppState>) -> StatusCode {
    sim.gate().release();
    StatusCode::NO_CONTENT
}
