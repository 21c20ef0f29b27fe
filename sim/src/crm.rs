//! CRM v3 contacts and the contact properties API (hubspot-behavior.md section 3).

use crate::error::{HsError, HsResult};
use crate::world::{iso, now_ms, WriteRules};
use crate::{query_map, AppState};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Inputs per batch call (seed document 004; the simulator enforces it).
pub const BATCH_MAX: usize = 100;
/// Inputs per batch read that asks for `propertiesWithHistory`.
pub const BATCH_HISTORY_MAX: usize = 50;
/// Search never pages past this many results.
pub const SEARCH_CAP: usize = 10_000;

/// Parses a JSON body, answering HubSpot's 400 when it is not the JSON the endpoint takes.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> HsResult<T> {
    serde_json::from_slice(body).map_err(HsError::bad_json)
}

/// Every value of a list parameter: HubSpot's SDKs repeat it (`?properties=a&properties=b`), and the
/// comma form (`?properties=a,b`) works too (hubspot-behavior.md section 9).
fn props_list(raw: Option<&str>, key: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if k == key {
            for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                if !out.iter().any(|o| o == p) {
                    out.push(p.to_string());
                }
            }
        }
    }
    out
}

/// `archived=true` (HubSpot's Python SDK writes `True`).
fn archived_flag(q: &std::collections::BTreeMap<String, String>) -> bool {
    q.get("archived").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn rules(sim: &AppState) -> (WriteRules, u64, bool) {
    let s = sim.switches();
    (WriteRules { old_email_kept: s.old_email_kept }, s.search_lag_ms, s.secondary_email_lookup)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertiesBody {
    properties: Map<String, Value>,
    #[serde(default)]
    #[allow(dead_code)]
    associations: Option<Value>,
}

/// `GET /crm/v3/objects/contacts/{id}?properties=&idProperty=`
/// A merged-away id answers 200 with the surviving record and its id (hubspot-behavior.md section 9);
/// `archived=true` reads only archived records.
pub async fn read(State(sim): State<AppState>, Path(key): Path<String>, RawQuery(raw): RawQuery) -> HsResult<Json<Value>> {
    let q = query_map(raw.as_deref());
    let (_, _, secondary) = rules(&sim);
    let w = sim.world();
    let wanted = props_list(raw.as_deref(), "properties");
    let id_property = q.get("idProperty").map(String::as_str);
    if archived_flag(&q) {
        let id = w.lookup_archived(&key, id_property)?;
        return Ok(Json(w.contact_json(id, &wanted, true)));
    }
    let id = w.lookup(&key, id_property, secondary)?;
    Ok(Json(w.contact_json(id, &wanted, false)))
}

/// `GET /crm/v3/objects/contacts?limit=&after=&properties=&archived=`
pub async fn list(State(sim): State<AppState>, RawQuery(raw): RawQuery) -> HsResult<Json<Value>> {
    let q = query_map(raw.as_deref());
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10).clamp(1, 100);
    let after: u64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let wanted = props_list(raw.as_deref(), "properties");
    let archived = archived_flag(&q);
    let w = sim.world();
    let ids: Vec<u64> = if archived {
        w.archived.range(after..).map(|(id, _)| *id).take(limit + 1).collect()
    } else {
        w.contacts.range(after..).map(|(id, _)| *id).take(limit + 1).collect()
    };
    let results: Vec<Value> = ids.iter().take(limit).map(|id| w.contact_json(*id, &wanted, archived)).collect();
    let mut body = json!({ "results": results });
    if ids.len() > limit {
        body["paging"] = json!({ "next": { "after": ids[limit].to_string() } });
    }
    Ok(Json(body))
}

/// `POST /crm/v3/objects/contacts`: 201, or 409 "Contact already exists. Existing ID: N".
pub async fn create(State(sim): State<AppState>, body: Bytes) -> HsResult<Response> {
    let body: PropertiesBody = parse(&body)?;
    let (_, lag, _) = rules(&sim);
    let mut w = sim.world();
    let values = w.check_write(None, &body.properties)?;
    let wanted: Vec<String> = values.keys().cloned().collect();
    let id = w.create(values, lag);
    let mut json = w.contact_json(id, &[], false);
    let extra = w.contact_json(id, &wanted, false);
    merge_props(&mut json, &extra);
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

fn merge_props(into: &mut Value, from: &Value) {
    if let (Some(a), Some(b)) = (into["properties"].as_object_mut(), from["properties"].as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
}

/// `PATCH /crm/v3/objects/contacts/{id}[?idProperty=]`: 200, 404, or 409 when the new email is taken.
pub async fn update(
    State(sim): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> HsResult<Json<Value>> {
    let q = query_map(q.as_deref());
    let body: PropertiesBody = parse(&body)?;
    let (rules, lag, secondary) = rules(&sim);
    let mut w = sim.world();
    let id = w.lookup(&key, q.get("idProperty").map(String::as_str), secondary)?;
    let values = w.check_write(Some(id), &body.properties)?;
    let wanted: Vec<String> = values.keys().cloned().collect();
    w.update(id, values, rules, lag);
    let mut json = w.contact_json(id, &[], false);
    merge_props(&mut json, &w.contact_json(id, &wanted, false));
    Ok(Json(json))
}

/// `DELETE /crm/v3/objects/contacts/{id}`: 204 (HubSpot answers 204 for a missing id too).
pub async fn archive(State(sim): State<AppState>, Path(key): Path<String>) -> StatusCode {
    if let Ok(id) = key.parse::<u64>() {
        let mut w = sim.world();
        if let Some(id) = w.resolve(id) {
            w.archive(id);
        }
    }
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GdprBody {
    object_id: Value,
    #[serde(default)]
    id_property: Option<String>,
}

/// `POST /crm/v3/objects/contacts/gdpr-delete` `{objectId, idProperty?}`: 204. The record (live or
/// archived) and its hits are deleted for good. An email nobody holds answers 204 as well (HubSpot
/// blocklists it); an unknown record id answers 404.
pub async fn gdpr_delete(State(sim): State<AppState>, body: Bytes) -> HsResult<StatusCode> {
    let body: GdprBody = parse(&body)?;
    let key = text(&body.object_id);
    let mut w = sim.world();
    let idp = body.id_property.as_deref().filter(|p| *p != "hs_object_id");
    let id = w.lookup(&key, idp, false).ok().or_else(|| w.lookup_archived(&key, idp).ok());
    match (id, idp) {
        (Some(id), _) => {
            w.purge(id);
            Ok(StatusCode::NO_CONTENT)
        }
        (None, Some("email")) => Ok(StatusCode::NO_CONTENT),
        (None, _) => Err(HsError::not_found()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchBody {
    inputs: Vec<BatchInput>,
    #[serde(default)]
    properties: Vec<String>,
    #[serde(default)]
    properties_with_history: Vec<String>,
    #[serde(default)]
    id_property: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInput {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    id_property: Option<String>,
    #[serde(default)]
    properties: Option<Map<String, Value>>,
}

fn id_text(v: &Option<Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// A BatchResponse: 200 when every input succeeded, 207 Multi-Status when results and errors mix.
/// With no result at all, the first error answers for the whole call (a guess, see the README).
fn batch_response(started: i64, results: Vec<Value>, errors: Vec<(HsError, Vec<String>)>) -> Response {
    if results.is_empty() {
        if let Some((e, _)) = errors.first() {
            return e.clone().into_response();
        }
    }
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": iso(started),
        "completedAt": iso(now_ms()),
    });
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors.into_iter().map(|(e, ids)| e.into_batch_error(&ids)).collect());
        StatusCode::MULTI_STATUS
    };
    (status, Json(body)).into_response()
}

/// `POST /crm/v3/objects/contacts/batch/{read|update|upsert|create|archive}`
pub async fn batch(State(sim): State<AppState>, Path(op): Path<String>, body: Bytes) -> HsResult<Response> {
    let started = now_ms();
    let body: BatchBody = parse(&body)?;
    if body.inputs.len() > BATCH_MAX {
        return Err(HsError::validation(format!(
            "Batch input limit exceeded: {} inputs were sent, at most {BATCH_MAX} are allowed",
            body.inputs.len()
        )));
    }
    let (rules, lag, secondary) = rules(&sim);
    let mut w = sim.world();
    let mut results = Vec::new();
    let mut errors: Vec<(HsError, Vec<String>)> = Vec::new();
    match op.as_str() {
        "read" => {
            if !body.properties_with_history.is_empty() && body.inputs.len() > BATCH_HISTORY_MAX {
                return Err(HsError::validation(format!(
                    "Batch read with propertiesWithHistory allows at most {BATCH_HISTORY_MAX} inputs"
                )));
            }
            let mut missing = Vec::new();
            for input in &body.inputs {
                let key = id_text(&input.id).ok_or_else(|| HsError::validation("inputs[].id is required"))?;
                match w.lookup(&key, body.id_property.as_deref(), secondary) {
                    Ok(id) => results.push(w.contact_json(id, &body.properties, false)),
                    Err(_) => missing.push(key),
                }
            }
            if !missing.is_empty() {
                let e = HsError::new(
                    StatusCode::NOT_FOUND,
                    "OBJECT_NOT_FOUND",
                    "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
                );
                // Batch read answers 207 with the missing ids, even when none was found.
                if results.is_empty() {
                    let body = json!({
                        "status": "COMPLETE", "results": [], "numErrors": 1,
                        "errors": [e.into_batch_error(&missing)],
                        "startedAt": iso(started), "completedAt": iso(now_ms()),
                    });
                    return Ok((StatusCode::MULTI_STATUS, Json(body)).into_response());
                }
                errors.push((e, missing));
            }
        }
        "update" => {
            for input in &body.inputs {
                let key = id_text(&input.id).ok_or_else(|| HsError::validation("inputs[].id is required"))?;
                let props = input.properties.clone().ok_or_else(|| HsError::validation("inputs[].properties is required"))?;
                let idp = input.id_property.as_deref().or(body.id_property.as_deref());
                let done = w.lookup(&key, idp, secondary).and_then(|id| {
                    let values = w.check_write(Some(id), &props)?;
                    let wanted: Vec<String> = values.keys().cloned().collect();
                    w.update(id, values, rules, lag);
                    let mut json = w.contact_json(id, &[], false);
                    merge_props(&mut json, &w.contact_json(id, &wanted, false));
                    Ok(json)
                });
                match done {
                    Ok(j) => results.push(j),
                    Err(e) => errors.push((e, vec![key])),
                }
            }
        }
        "upsert" => {
            for input in &body.inputs {
                let key = id_text(&input.id).ok_or_else(|| HsError::validation("inputs[].id is required"))?;
                let idp = input
                    .id_property
                    .clone()
                    .or(body.id_property.clone())
                    .ok_or_else(|| HsError::validation("inputs[].idProperty is required for upsert"))?;
                let props = input.properties.clone().unwrap_or_default();
                let done = match w.lookup(&key, Some(&idp), secondary) {
                    Ok(id) => w.check_write(Some(id), &props).map(|values| {
                        let wanted: Vec<String> = values.keys().cloned().collect();
                        w.update(id, values, rules, lag);
                        (id, false, wanted)
                    }),
                    Err(e) if e.status == StatusCode::NOT_FOUND => {
                        let mut props = props.clone();
                        props.insert(idp.clone(), Value::String(key.clone()));
                        w.check_write(None, &props).map(|values| {
                            let wanted: Vec<String> = values.keys().cloned().collect();
                            (w.create_from(values, lag, crate::world::Source::BatchUpdate), true, wanted)
                        })
                    }
                    Err(e) => Err(e),
                };
                match done {
                    Ok((id, new, wanted)) => {
                        let mut json = w.contact_json(id, &[], false);
                        merge_props(&mut json, &w.contact_json(id, &wanted, false));
                        json["new"] = json!(new);
                        results.push(json);
                    }
                    Err(e) => errors.push((e, vec![key])),
                }
            }
        }
        "create" => {
            // All or nothing; only the first conflict is reported (hubspot-api-python #51).
            let mut checked = Vec::new();
            let mut seen = std::collections::HashMap::new();
            for input in &body.inputs {
                let props = input.properties.clone().ok_or_else(|| HsError::validation("inputs[].properties is required"))?;
                let values = w.check_write(None, &props)?;
                if let Some(e) = values.get("email").filter(|e| !e.is_empty()) {
                    if seen.insert(e.clone(), ()).is_some() {
                        return Err(HsError::validation(format!("Duplicate email {e} in the batch")));
                    }
                }
                checked.push(values);
            }
            for values in checked {
                let wanted: Vec<String> = values.keys().cloned().collect();
                let id = w.create_from(values, lag, crate::world::Source::BatchUpdate);
                let mut json = w.contact_json(id, &[], false);
                merge_props(&mut json, &w.contact_json(id, &wanted, false));
                results.push(json);
            }
            drop(w);
            let mut res = batch_response(started, results, errors);
            *res.status_mut() = StatusCode::CREATED;
            return Ok(res);
        }
        "archive" => {
            for input in &body.inputs {
                if let Some(id) = id_text(&input.id).and_then(|k| k.parse::<u64>().ok()).and_then(|id| w.resolve(id)) {
                    w.archive(id);
                }
            }
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        other => return Err(HsError::not_found().with("message", json!(format!("Unknown batch operation {other:?}")))),
    }
    drop(w);
    Ok(batch_response(started, results, errors))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchBody {
    #[serde(default)]
    filter_groups: Vec<FilterGroup>,
    #[serde(default)]
    properties: Vec<String>,
    #[serde(default)]
    sorts: Vec<Value>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    after: Option<Value>,
    #[serde(default)]
    query: Option<String>,
}

#[derive(Deserialize)]
pub struct FilterGroup {
    #[serde(default)]
    filters: Vec<Filter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    property_name: String,
    operator: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    values: Option<Vec<Value>>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.to_lowercase().cmp(&b.to_lowercase()),
    }
}

fn matches(f: &Filter, props: &std::collections::BTreeMap<String, String>, secondary: bool) -> HsResult<bool> {
    let have = props.get(&f.property_name);
    let want = f.value.as_ref().map(text).unwrap_or_default();
    let eq = |v: &str| {
        have.is_some_and(|h| h.eq_ignore_ascii_case(v))
            || (secondary
                && f.property_name == "email"
                && props
                    .get("hs_additional_emails")
                    .is_some_and(|s| s.split(';').any(|e| e.eq_ignore_ascii_case(v))))
    };
    Ok(match f.operator.as_str() {
        "EQ" => eq(&want),
        "NEQ" => !eq(&want),
        "HAS_PROPERTY" => have.is_some(),
        "NOT_HAS_PROPERTY" => have.is_none(),
        "LT" => have.is_some_and(|h| compare(h, &want).is_lt()),
        "LTE" => have.is_some_and(|h| compare(h, &want).is_le()),
        "GT" => have.is_some_and(|h| compare(h, &want).is_gt()),
        "GTE" => have.is_some_and(|h| compare(h, &want).is_ge()),
        "CONTAINS_TOKEN" => have.is_some_and(|h| h.to_lowercase().contains(&want.to_lowercase().replace('*', ""))),
        "IN" | "NOT_IN" => {
            let vals = f.values.as_ref().ok_or_else(|| HsError::validation("IN and NOT_IN need `values`"))?;
            let hit = vals.iter().any(|v| eq(&text(v)));
            hit == (f.operator == "IN")
        }
        other => return Err(HsError::validation(format!("Unsupported filter operator {other:?}"))),
    })
}

/// `POST /crm/v3/objects/contacts/search`: filter groups OR'd, filters AND'd; 5 groups, 10 filters
/// per group and 25 in all; results capped at 10,000; what search sees lags by `search-lag-ms`.
pub async fn search(State(sim): State<AppState>, body: Bytes) -> HsResult<Json<Value>> {
    let body: SearchBody = parse(&body)?;
    let total_filters: usize = body.filter_groups.iter().map(|g| g.filters.len()).sum();
    if body.filter_groups.len() > 5 || body.filter_groups.iter().any(|g| g.filters.len() > 10) || total_filters > 25 {
        return Err(HsError::validation(format!(
            "Too many filters: {} filter groups and {total_filters} filters; at most 5 groups, 10 filters per group and 25 in all",
            body.filter_groups.len()
        )));
    }
    let limit = body.limit.unwrap_or(10);
    if limit > 200 {
        return Err(HsError::validation("limit must be at most 200"));
    }
    let after: usize = body.after.as_ref().map(text).and_then(|a| a.parse().ok()).unwrap_or(0);
    if after + limit > SEARCH_CAP {
        return Err(HsError::validation(format!("Search results are capped at {SEARCH_CAP}")));
    }
    let secondary = sim.switches().secondary_email_lookup;
    let w = sim.world();
    let now = now_ms();
    let mut found = Vec::new();
    for c in w.contacts.values() {
        let Some(props) = w.searchable(c, now) else { continue };
        let mut ok = body.filter_groups.is_empty();
        for g in &body.filter_groups {
            let mut all = true;
            for f in &g.filters {
                if !matches(f, &props, secondary)? {
                    all = false;
                    break;
                }
            }
            if all {
                ok = true;
                break;
            }
        }
        if let (true, Some(q)) = (ok, body.query.as_deref().filter(|q| !q.is_empty())) {
            let q = q.to_lowercase();
            ok = ["email", "firstname", "lastname", "phone", "company"]
                .iter()
                .any(|k| props.get(*k).is_some_and(|v| v.to_lowercase().contains(&q)));
        }
        if ok {
            found.push((c.id, props));
        }
    }
    if let Some(sort) = body.sorts.first() {
        let (name, desc) = match sort {
            Value::String(s) => (s.trim_start_matches('-').to_string(), s.starts_with('-')),
            other => (
                other["propertyName"].as_str().unwrap_or("hs_object_id").to_string(),
                other["direction"].as_str() == Some("DESCENDING"),
            ),
        };
        found.sort_by(|a, b| {
            let o = compare(a.1.get(&name).map_or("", |s| s), b.1.get(&name).map_or("", |s| s));
            if desc { o.reverse() } else { o }
        });
    }
    let total = found.len().min(SEARCH_CAP);
    let wanted = if body.properties.is_empty() {
        ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"].map(String::from).to_vec()
    } else {
        body.properties.clone()
    };
    let results: Vec<Value> = found
        .iter()
        .skip(after)
        .take(limit)
        .map(|(id, props)| {
            let mut j = w.contact_json(*id, &[], false);
            let p: Map<String, Value> = wanted
                .iter()
                .filter(|n| w.properties.contains_key(*n))
                .map(|n| (n.clone(), props.get(n).map(|v| json!(v)).unwrap_or(Value::Null)))
                .collect();
            j["properties"] = Value::Object(p);
            j
        })
        .collect();
    let mut out = json!({ "total": total, "results": results });
    if after + limit < total {
        out["paging"] = json!({ "next": { "after": (after + limit).to_string() } });
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeBody {
    primary_object_id: Value,
    object_id_to_merge: Value,
}

/// `POST /crm/v3/objects/contacts/merge`: 200 with the merged record.
pub async fn merge(State(sim): State<AppState>, body: Bytes) -> HsResult<Json<Value>> {
    let body: MergeBody = parse(&body)?;
    let sw = sim.switches();
    let mut w = sim.world();
    let id_of = |v: &Value| text(v).parse::<u64>().ok().and_then(|id| w.resolve(id)).ok_or_else(HsError::not_found);
    let (p, o) = (id_of(&body.primary_object_id)?, id_of(&body.object_id_to_merge)?);
    let id = w.merge(p, o, sw.merge_new_id, sw.search_lag_ms)?;
    Ok(Json(w.contact_json(id, &[], false)))
}

