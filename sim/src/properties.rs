//! The CRM properties API for contacts: properties (create, read, list, update, archive) and
//! property groups (hubspot-behavior.md sections 3 and 9). `{objectType}` is `contacts` or `0-1`.

use crate::crm::parse;
use crate::error::{HsError, HsResult};
use crate::world::{iso, now_ms, PropertyDef, PropertyGroup};
use crate::{query_map, AppState};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// The simulator holds contacts only.
fn check_object_type(object_type: &str) -> HsResult<()> {
    if matches!(object_type, "contacts" | "contact" | "0-1") {
        Ok(())
    } else {
        Err(HsError::new(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            format!("Unable to infer object type from: {object_type}"),
        ))
    }
}

fn property_not_found(name: &str) -> HsError {
    HsError::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", format!("Property {name} does not exist"))
}

fn group_not_found(name: &str) -> HsError {
    HsError::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", format!("Property group {name} does not exist"))
}

/// `GET /crm/v3/properties/{objectType}`: `{results}`.
pub async fn list(State(sim): State<AppState>, Path(object_type): Path<String>, RawQuery(q): RawQuery) -> HsResult<Json<Value>> {
    check_object_type(&object_type)?;
    let archived = query_map(q.as_deref()).get("archived").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let w = sim.world();
    // Archived properties are deleted here, so `archived=true` lists none (a guess, see the README).
    let results: Vec<&PropertyDef> = if archived { Vec::new() } else { w.properties.values().collect() };
    Ok(Json(json!({ "results": results })))
}

/// `GET /crm/v3/properties/{objectType}/{propertyName}`
pub async fn read(State(sim): State<AppState>, Path((object_type, name)): Path<(String, String)>) -> HsResult<Json<Value>> {
    check_object_type(&object_type)?;
    let w = sim.world();
    let def = w.properties.get(&name).ok_or_else(|| property_not_found(&name))?;
    Ok(Json(json!(def)))
}

/// An enumeration option as sent (`label`, `value`, optional `description`, `displayOrder`, `hidden`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OptionInput {
    label: String,
    value: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    display_order: Option<i64>,
    #[serde(default)]
    hidden: bool,
}

fn options_json(options: Vec<OptionInput>) -> Vec<Value> {
    options
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            json!({
                "label": o.label, "value": o.value, "description": o.description.unwrap_or_default(),
                "displayOrder": o.display_order.unwrap_or(i as i64), "hidden": o.hidden,
            })
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewProperty {
    name: Option<String>,
    label: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    field_type: Option<String>,
    group_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    options: Vec<OptionInput>,
    #[serde(default)]
    display_order: Option<i64>,
    #[serde(default)]
    has_unique_value: bool,
    #[serde(default)]
    hidden: bool,
    #[serde(default)]
    form_field: bool,
}

/// `POST /crm/v3/properties/{objectType}`: 201; 409 when the name is taken; 400 for a missing field,
/// a bad name or a group that does not exist.
pub async fn create(State(sim): State<AppState>, Path(object_type): Path<String>, body: Bytes) -> HsResult<Response> {
    check_object_type(&object_type)?;
    let p: NewProperty = parse(&body)?;
    let mut missing = Vec::new();
    for (field, v) in [("name", &p.name), ("label", &p.label), ("type", &p.kind), ("fieldType", &p.field_type), ("groupName", &p.group_name)] {
        if v.as_deref().is_none_or(str::is_empty) {
            missing.push(field);
        }
    }
    if !missing.is_empty() {
        return Err(HsError::validation(format!("Missing required fields: {}", missing.join(", "))));
    }
    let name = p.name.unwrap_or_default();
    if !name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(HsError::validation(format!(
            "Property name {name:?} is invalid: use lowercase letters, digits and underscores, starting with a letter"
        )));
    }
    let group = p.group_name.unwrap_or_default();
    let mut def = PropertyDef::new(&name, &p.label.unwrap_or_default(), &p.kind.unwrap_or_default(), &p.field_type.unwrap_or_default(), &group);
    def.description = p.description.unwrap_or_default();
    def.options = options_json(p.options);
    def.display_order = p.display_order.unwrap_or(-1);
    def.has_unique_value = p.has_unique_value;
    def.hidden = p.hidden;
    def.form_field = p.form_field;
    let mut w = sim.world();
    if !w.property_groups.contains_key(&group) {
        return Err(HsError::validation(format!("Property group {group} does not exist")));
    }
    w.create_property(def.clone())?;
    Ok((StatusCode::CREATED, Json(json!(def))).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PropertyUpdate {
    label: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    field_type: Option<String>,
    group_name: Option<String>,
    description: Option<String>,
    options: Option<Vec<OptionInput>>,
    display_order: Option<i64>,
    hidden: Option<bool>,
    form_field: Option<bool>,
    calculation_formula: Option<String>,
}

/// `PATCH /crm/v3/properties/{objectType}/{propertyName}`: 200 with the property. HubSpot's own
/// (read-only definition) properties refuse it.
pub async fn update(
    State(sim): State<AppState>,
    Path((object_type, name)): Path<(String, String)>,
    body: Bytes,
) -> HsResult<Json<Value>> {
    check_object_type(&object_type)?;
    let u: PropertyUpdate = parse(&body)?;
    let mut w = sim.world();
    if let Some(g) = u.group_name.as_deref() {
        if !w.property_groups.contains_key(g) {
            return Err(HsError::validation(format!("Property group {g} does not exist")));
        }
    }
    let def = w.properties.get_mut(&name).ok_or_else(|| property_not_found(&name))?;
    if def.hubspot_defined {
        return Err(HsError::validation(format!("{name} is a HubSpot defined property; its definition cannot be changed")));
    }
    let _ = u.calculation_formula;
    if let Some(v) = u.label {
        def.label = v;
    }
    if let Some(v) = u.kind {
        def.kind = v;
    }
    if let Some(v) = u.field_type {
        def.field_type = v;
    }
    if let Some(v) = u.group_name {
        def.group_name = v;
    }
    if let Some(v) = u.description {
        def.description = v;
    }
    if let Some(v) = u.options {
        def.options = options_json(v);
    }
    if let Some(v) = u.display_order {
        def.display_order = v;
    }
    if let Some(v) = u.hidden {
        def.hidden = v;
    }
    if let Some(v) = u.form_field {
        def.form_field = v;
    }
    def.updated_at = iso(now_ms());
    Ok(Json(json!(def)))
}

/// `DELETE /crm/v3/properties/{objectType}/{propertyName}`: 204. HubSpot's own properties cannot
/// be archived.
pub async fn archive(State(sim): State<AppState>, Path((object_type, name)): Path<(String, String)>) -> HsResult<StatusCode> {
    check_object_type(&object_type)?;
    let mut w = sim.world();
    let def = w.properties.get(&name).ok_or_else(|| property_not_found(&name))?;
    if def.hubspot_defined {
        return Err(HsError::validation(format!("{name} is a HubSpot defined property and cannot be archived")));
    }
    w.archive_property(&name);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /crm/v3/properties/{objectType}/groups`: `{results}`.
pub async fn list_groups(State(sim): State<AppState>, Path(object_type): Path<String>) -> HsResult<Json<Value>> {
    check_object_type(&object_type)?;
    let w = sim.world();
    Ok(Json(json!({ "results": w.property_groups.values().collect::<Vec<_>>() })))
}

/// `GET /crm/v3/properties/{objectType}/groups/{groupName}`
pub async fn read_group(State(sim): State<AppState>, Path((object_type, name)): Path<(String, String)>) -> HsResult<Json<Value>> {
    check_object_type(&object_type)?;
    let w = sim.world();
    Ok(Json(json!(w.property_groups.get(&name).ok_or_else(|| group_not_found(&name))?)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupInput {
    name: Option<String>,
    label: Option<String>,
    display_order: Option<i64>,
}

/// `POST /crm/v3/properties/{objectType}/groups` `{name, label, displayOrder?}`: 201; 409 when taken.
pub async fn create_group(State(sim): State<AppState>, Path(object_type): Path<String>, body: Bytes) -> HsResult<Response> {
    check_object_type(&object_type)?;
    let g: GroupInput = parse(&body)?;
    let (Some(name), Some(label)) = (g.name.filter(|n| !n.is_empty()), g.label.filter(|l| !l.is_empty())) else {
        return Err(HsError::validation("Missing required fields: name and label"));
    };
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(HsError::validation(format!("Property group name {name:?} is invalid: use lowercase letters, digits and underscores")));
    }
    let mut w = sim.world();
    if w.property_groups.contains_key(&name) {
        return Err(HsError::new(
            StatusCode::CONFLICT,
            "OBJECT_ALREADY_EXISTS",
            format!("A property group named '{name}' already exists."),
        ));
    }
    let group = PropertyGroup { name: name.clone(), label, display_order: g.display_order.unwrap_or(-1), archived: false };
    w.property_groups.insert(name, group.clone());
    Ok((StatusCode::CREATED, Json(json!(group))).into_response())
}

/// `PATCH /crm/v3/properties/{objectType}/groups/{groupName}` `{label?, displayOrder?}`: 200.
pub async fn update_group(
    State(sim): State<AppState>,
    Path((object_type, name)): Path<(String, String)>,
    body: Bytes,
) -> HsResult<Json<Value>> {
    check_object_type(&object_type)?;
    let g: GroupInput = parse(&body)?;
    if g.name.as_deref().is_some_and(|n| n != name) {
        return Err(HsError::validation("A property group's name cannot be changed"));
    }
    let mut w = sim.world();
    let group = w.property_groups.get_mut(&name).ok_or_else(|| group_not_found(&name))?;
    if let Some(l) = g.label.filter(|l| !l.is_empty()) {
        group.label = l;
    }
    if let Some(d) = g.display_order {
        group.display_order = d;
    }
    Ok(Json(json!(group)))
}

/// `DELETE /crm/v3/properties/{objectType}/groups/{groupName}`: 204. A group that still holds
/// properties is refused (a guess, see the README).
pub async fn archive_group(State(sim): State<AppState>, Path((object_type, name)): Path<(String, String)>) -> HsResult<StatusCode> {
    check_object_type(&object_type)?;
    let mut w = sim.world();
    if !w.property_groups.contains_key(&name) {
        return Err(group_not_found(&name));
    }
    if w.properties.values().any(|p| p.group_name == name) {
        return Err(HsError::validation(format!("Property group {name} still holds properties; move or archive them first")));
    }
    w.property_groups.remove(&name);
    Ok(StatusCode::NO_CONTENT)
}
