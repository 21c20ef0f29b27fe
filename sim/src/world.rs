//! The simulated account: contacts, properties, the tracker's identity bindings and page views.
//!
//! Pure state and rules (hubspot-behavior.md sections 1.3, 2 and 3); the HTTP layers in `crm`,
//! `legacy`, `tracker` and `chat` call into it while holding the one lock.

use crate::error::{HsError, HsResult};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// ISO 8601 with milliseconds in UTC, as HubSpot writes `createdAt` (`2019-10-30T03:30:17.883Z`).
pub fn iso(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// HubSpot validates emails; this is a plain shape check (local@domain.tld, no spaces).
pub fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.len() <= 254
}

/// A contact property definition (the properties API). Serialized as HubSpot's `Property`, whose
/// SDK models require `description` and `options` (hubspot-behavior.md section 9).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyDef {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub field_type: String,
    pub group_name: String,
    pub description: String,
    pub options: Vec<Value>,
    pub display_order: i64,
    pub has_unique_value: bool,
    pub hidden: bool,
    pub form_field: bool,
    pub calculated: bool,
    pub external_options: bool,
    #[serde(skip)]
    pub read_only: bool,
    pub hubspot_defined: bool,
    pub archived: bool,
    pub modification_metadata: Value,
    pub created_at: String,
    pub updated_at: String,
}

impl PropertyDef {
    /// A definition with HubSpot's defaults for everything but the required fields.
    pub fn new(name: &str, label: &str, kind: &str, field_type: &str, group_name: &str) -> Self {
        let now = iso(now_ms());
        let mut p = PropertyDef {
            name: name.into(),
            label: label.into(),
            kind: kind.into(),
            field_type: field_type.into(),
            group_name: group_name.into(),
            description: String::new(),
            options: Vec::new(),
            display_order: -1,
            has_unique_value: false,
            hidden: false,
            form_field: false,
            calculated: false,
            external_options: false,
            read_only: false,
            hubspot_defined: false,
            archived: false,
            modification_metadata: Value::Null,
            created_at: now.clone(),
            updated_at: now,
        };
        p.refresh_metadata();
        p
    }

    /// `modificationMetadata` follows from who defined the property and whether its value is writable.
    pub fn refresh_metadata(&mut self) {
        self.modification_metadata = json!({
            "archivable": !self.hubspot_defined,
            "readOnlyDefinition": self.hubspot_defined,
            "readOnlyValue": self.read_only,
        });
    }
}

/// A property group (the properties API's groups).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyGroup {
    pub name: String,
    pub label: String,
    pub display_order: i64,
    pub archived: bool,
}

/// One contact record.
#[derive(Debug, Clone)]
pub struct Contact {
    pub id: u64,
    pub props: BTreeMap<String, String>,
    pub created: i64,
    pub updated: i64,
    /// What search sees: (the time it becomes visible, the properties it sees) in order.
    pub search_versions: Vec<(i64, BTreeMap<String, String>)>,
    /// External ids (`identify({id})`) tied to this contact by the tracker.
    pub ext_ids: Vec<String>,
    /// Browser usertokens (`hubspotutk`) tied to this contact.
    pub utks: Vec<String>,
    /// Ids this record was merged from.
    pub merged_from: Vec<u64>,
}

/// One hit received by the collector.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hit {
    pub seq: u64,
    /// `pageview`, `event` (custom behavioral) or `legacy-event`.
    pub kind: String,
    pub portal_id: String,
    pub utk: Option<String>,
    pub url: String,
    pub path: String,
    /// The identity the hit carried (`i`), or None when identify was never called on that page.
    pub identity: Option<BTreeMap<String, String>>,
    pub contact_id: Option<u64>,
    /// The contact this hit made (an identify with an email no contact held), as it was made:
    /// merges move `contact_id`, never this.
    pub created_contact: Option<u64>,
    pub event_name: Option<String>,
    pub event_properties: BTreeMap<String, String>,
    pub reset_visitor: bool,
    pub at: i64,
}

/// A chat widget event reported by the simulated widget.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatEvent {
    pub seq: u64,
    /// `load`, `remove`, `refresh` or `clear`.
    pub kind: String,
    /// The email the chat was identified with: set only for a valid, unexpired token issued for it.
    pub identified_email: Option<String>,
    /// Why an identification was refused, if it was.
    pub refused: Option<String>,
    pub contact_id: Option<u64>,
    pub messages_utk: Option<String>,
    pub reset_widget: bool,
    pub at: i64,
}

/// A visitor identification token.
#[derive(Debug, Clone)]
pub struct ChatToken {
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub expires: i64,
}

/// Visitor identification tokens expire after 12 hours.
pub const CHAT_TOKEN_MS: i64 = 12 * 3600 * 1000;

/// Everything the account holds.
#[derive(Debug)]
pub struct World {
    next_id: u64,
    next_seq: u64,
    pub contacts: BTreeMap<u64, Contact>,
    /// Merged-away ids and the id they now resolve to.
    pub redirects: HashMap<u64, u64>,
    pub properties: BTreeMap<String, PropertyDef>,
    /// For `email` and every `hasUniqueValue` property: value -> contact id.
    unique: HashMap<String, HashMap<String, u64>>,
    pub utk_owner: HashMap<String, u64>,
    pub ext_id_owner: HashMap<String, u64>,
    pub hits: Vec<Hit>,
    pub chat_tokens: HashMap<String, ChatToken>,
    pub chat_events: Vec<ChatEvent>,
    /// Archived contacts and when they were archived (`GET ?archived=true` reads them).
    pub archived: BTreeMap<u64, (Contact, i64)>,
    pub property_groups: BTreeMap<String, PropertyGroup>,
    /// Contact changes not yet taken by the webhook emitter (see `webhooks`).
    pub changes: Vec<Value>,
    /// Collected-form submissions received, with what each did (`forms`).
    pub form_submissions: Vec<crate::forms::Submission>,
}

/// What made a contact: HubSpot's record source (`hs_object_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The tracking code (an identify with a new email).
    Analytics,
    /// The CRM API, one record (a private app).
    Integration,
    /// A batch API endpoint.
    BatchUpdate,
    /// The legacy contacts API.
    Api,
    /// The chat widget's identified visitor.
    Conversations,
    /// A form submission.
    Form,
    /// An import.
    Import,
    /// A user of the account, by hand.
    CrmUi,
}

impl Source {
    pub fn record_source(self) -> &'static str {
        match self {
            Source::Analytics => "ANALYTICS",
            Source::Integration => "INTEGRATION",
            Source::BatchUpdate => "BATCH_UPDATE",
            Source::Api => "API",
            Source::Conversations => "CONVERSATIONS",
            Source::Form => "FORM",
            Source::Import => "IMPORT",
            Source::CrmUi => "CRM_UI",
        }
    }

    /// The original source a new record gets: the sim knows no referrer or campaign, so what came
    /// from a page is direct traffic.
    pub fn original_source(self) -> &'static str {
        match self {
            Source::Analytics | Source::Form | Source::Conversations => "DIRECT_TRAFFIC",
            _ => "OFFLINE",
        }
    }

    /// The record sources `POST /__sim/contacts` accepts (what a test stands in for).
    pub fn parse(s: &str) -> Option<Source> {
        [Source::Analytics, Source::Integration, Source::BatchUpdate, Source::Api, Source::Conversations, Source::Form, Source::Import, Source::CrmUi]
            .into_iter()
            .find(|x| x.record_source() == s)
    }
}

/// What a property write may do to the email.
#[derive(Debug, Clone, Copy)]
pub struct WriteRules {
    /// Keep an old email in `hs_additional_emails` when the email changes.
    pub old_email_kept: bool,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

fn normalize(name: &str, value: &str) -> String {
    if name == "email" { value.trim().to_ascii_lowercase() } else { value.to_string() }
}

impl World {
    pub fn new() -> Self {
        let mut w = World {
            next_id: 101,
            next_seq: 1,
            contacts: BTreeMap::new(),
            redirects: HashMap::new(),
            properties: BTreeMap::new(),
            unique: HashMap::new(),
            utk_owner: HashMap::new(),
            ext_id_owner: HashMap::new(),
            hits: Vec::new(),
            chat_tokens: HashMap::new(),
            chat_events: Vec::new(),
            archived: BTreeMap::new(),
            property_groups: BTreeMap::new(),
            changes: Vec::new(),
            form_submissions: Vec::new(),
        };
        w.property_groups.insert(
            "contactinformation".into(),
            PropertyGroup { name: "contactinformation".into(), label: "Contact information".into(), display_order: -1, archived: false },
        );
        // A few of HubSpot's default contact properties. Read-only ones cannot be written by the API.
        for (name, label, field, ro) in [
            ("email", "Email", "text", false),
            ("firstname", "First Name", "text", false),
            ("lastname", "Last Name", "text", false),
            ("phone", "Phone Number", "phonenumber", false),
            ("company", "Company Name", "text", false),
            ("website", "Website URL", "text", false),
            ("jobtitle", "Job Title", "text", false),
            ("city", "City", "text", false),
            ("lifecyclestage", "Lifecycle Stage", "radio", false),
            ("hs_object_id", "Record ID", "number", true),
            ("createdate", "Create Date", "date", true),
            ("lastmodifieddate", "Last Modified Date", "date", true),
            // Read-only through v3 [unverified]: secondary emails are managed by the v1 endpoints.
            ("hs_additional_emails", "Additional email addresses", "textarea", true),
            ("hs_merged_object_ids", "Merged record IDs", "text", true),
            // How the record was made (HubSpot sets it; it "cannot be manually edited"), and the
            // original source, which a user may edit (see `create_from`). HubSpot's are
            // enumerations; their options are not modelled, so they are text here.
            ("hs_object_source", "Record source", "text", true),
            ("hs_analytics_source", "Original Source", "text", false),
        ] {
            let kind = if field == "number" { "number" } else if field == "date" { "datetime" } else { "string" };
            let mut def = PropertyDef::new(name, label, kind, field, "contactinformation");
            def.read_only = ro;
            def.hubspot_defined = true;
            def.form_field = !ro;
            def.refresh_metadata();
            w.properties.insert(name.into(), def);
        }
        w.unique.insert("email".into(), HashMap::new());
        w
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// Records a contact change for the webhook emitter: `subscriptionType`, `objectId`,
    /// `occurredAt` and the event's own fields (`extra`). The emitter adds the delivery fields.
    pub fn emit(&mut self, kind: &str, object_id: u64, extra: Value) {
        // Nobody drains the list when no emitter runs (unit tests): keep it bounded.
        if self.changes.len() >= 100_000 {
            self.changes.drain(..50_000);
        }
        let mut ev = json!({ "subscriptionType": kind, "objectId": object_id, "occurredAt": now_ms(), "changeSource": "CRM" });
        if let (Some(e), Value::Object(x)) = (ev.as_object_mut(), extra) {
            e.extend(x);
        }
        self.changes.push(ev);
    }

    fn emit_property(&mut self, id: u64, name: &str, value: &str) {
        // Computed properties change on every write, and the sources are set with the record;
        // HubSpot does not send them [guess].
        if !matches!(name, "hs_object_id" | "createdate" | "lastmodifieddate" | "hs_object_source" | "hs_analytics_source") {
            self.emit("contact.propertyChange", id, json!({ "propertyName": name, "propertyValue": value }));
        }
    }

    /// Follows merge redirects to the id that answers for `id` now.
    pub fn resolve(&self, id: u64) -> Option<u64> {
        let mut id = id;
        for _ in 0..256 {
            if self.contacts.contains_key(&id) {
                return Some(id);
            }
            id = *self.redirects.get(&id)?;
        }
        None
    }

    /// The contact whose primary email is `email` (or, when `secondary`, a secondary email).
    pub fn by_email(&self, email: &str, secondary: bool) -> Option<u64> {
        let e = email.trim().to_ascii_lowercase();
        if let Some(id) = self.unique.get("email").and_then(|m| m.get(&e)) {
            return Some(*id);
        }
        if secondary {
            return self.contacts.values().find(|c| secondary_emails(c).iter().any(|s| *s == e)).map(|c| c.id);
        }
        None
    }

    /// The contact holding `value` in the unique property `prop` (`email` included).
    pub fn by_unique(&self, prop: &str, value: &str, secondary: bool) -> Option<u64> {
        if prop == "email" {
            return self.by_email(value, secondary);
        }
        self.unique.get(prop)?.get(value).copied()
    }

    /// Looks a record up the way `GET /contacts/{idOrValue}?idProperty=` does.
    pub fn lookup(&self, key: &str, id_property: Option<&str>, secondary: bool) -> HsResult<u64> {
        match id_property {
            None | Some("hs_object_id") => {
                let id: u64 = key.parse().map_err(|_| {
                    HsError::new(
                        axum::http::StatusCode::NOT_FOUND,
                        "OBJECT_NOT_FOUND",
                        "Object not found.  objectId are usually numeric.",
                    )
                })?;
                self.resolve(id).ok_or_else(HsError::not_found)
            }
            Some(prop) => {
                let def = self.properties.get(prop).ok_or_else(|| {
                    HsError::validation(format!("Property \"{prop}\" does not exist"))
                })?;
                if prop != "email" && !def.has_unique_value {
                    return Err(HsError::validation(format!(
                        "Property \"{prop}\" is not a unique identifier property (hasUniqueValue is false)"
                    )));
                }
                self.by_unique(prop, key, secondary).ok_or_else(HsError::not_found)
            }
        }
    }

    /// Checks a property write against the definitions (unknown, read-only, invalid email,
    /// a unique value held by another record). Returns the normalized values.
    pub fn check_write(&self, id: Option<u64>, props: &Map<String, Value>) -> HsResult<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (name, value) in props {
            let Some(def) = self.properties.get(name) else {
                return Err(HsError::invalid_property(
                    name,
                    "PROPERTY_DOESNT_EXIST",
                    &format!("Property \"{name}\" does not exist"),
                ));
            };
            if def.read_only {
                return Err(HsError::invalid_property(
                    name,
                    "READ_ONLY_VALUE",
                    &format!("{name} is a read only property; its value cannot be set."),
                ));
            }
            let text = match value {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(HsError::invalid_property(
                        name,
                        "INVALID_OPTION",
                        &format!("{other} was not a valid value for {name}"),
                    ))
                }
            };
            let text = normalize(name, &text);
            if name == "email" && !text.is_empty() && !valid_email(&text) {
                return Err(HsError::invalid_property(name, "INVALID_EMAIL", &format!("Email address {text} is invalid")));
            }
            if !text.is_empty() {
                if let Some(holder) = self.unique.get(name.as_str()).and_then(|m| m.get(&text)) {
                    if Some(*holder) != id {
                        // Email: HubSpot's documented 409. Other unique properties: a guess (409 in the
                        // same form), see the README.
                        return Err(HsError::contact_exists(*holder));
                    }
                }
            }
            out.insert(name.clone(), text);
        }
        Ok(out)
    }

    fn index(&mut self, id: u64, name: &str, old: Option<&str>, new: Option<&str>) {
        if let Some(map) = self.unique.get_mut(name) {
            if let Some(o) = old {
                if map.get(o) == Some(&id) {
                    map.remove(o);
                }
            }
            if let Some(n) = new.filter(|n| !n.is_empty()) {
                map.insert(n.to_string(), id);
            }
        }
    }

    /// Creates a contact after `check_write`, as the CRM API does for a private app
    /// (`hs_object_source` `INTEGRATION`). Returns its id.
    pub fn create(&mut self, values: BTreeMap<String, String>, search_lag_ms: u64) -> u64 {
        self.create_from(values, search_lag_ms, Source::Integration)
    }

    /// Creates a contact as `source` makes it: HubSpot's record source (`hs_object_source`) and
    /// original source (`hs_analytics_source`: offline for imports, the API and contacts made by
    /// hand; a web source for what came from a page) [guess: the internal values, see the README].
    pub fn create_from(&mut self, mut values: BTreeMap<String, String>, search_lag_ms: u64, source: Source) -> u64 {
        values.insert("hs_object_source".into(), source.record_source().into());
        values.entry("hs_analytics_source".into()).or_insert_with(|| source.original_source().into());
        let id = self.next_id;
        self.next_id += 1;
        let now = now_ms();
        let mut props = BTreeMap::new();
        for (k, v) in values {
            if !v.is_empty() {
                self.index(id, &k, None, Some(&v));
                props.insert(k, v);
            }
        }
        props.insert("hs_object_id".into(), id.to_string());
        props.insert("createdate".into(), iso(now));
        props.insert("lastmodifieddate".into(), iso(now));
        let snapshot = props.clone();
        self.contacts.insert(
            id,
            Contact {
                id,
                props,
                created: now,
                updated: now,
                search_versions: vec![(now + search_lag_ms as i64, snapshot)],
                ext_ids: Vec::new(),
                utks: Vec::new(),
                merged_from: Vec::new(),
            },
        );
        self.emit("contact.creation", id, json!({}));
        let set: Vec<(String, String)> = self.contacts[&id].props.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, v) in set {
            self.emit_property(id, &k, &v);
        }
        id
    }

    /// Applies checked values to an existing contact (`""` clears a property).
    pub fn update(&mut self, id: u64, values: BTreeMap<String, String>, rules: WriteRules, search_lag_ms: u64) {
        let now = now_ms();
        let Some(mut c) = self.contacts.remove(&id) else { return };
        for (k, v) in values {
            let old = c.props.get(&k).cloned();
            if old.as_deref() == Some(v.as_str()) || (old.is_none() && v.is_empty()) {
                continue;
            }
            self.emit_property(id, &k, &v);
            self.index(id, &k, old.as_deref(), Some(&v));
            if k == "email" && rules.old_email_kept {
                if let Some(o) = old.as_deref().filter(|o| !o.is_empty()) {
                    let mut extra = secondary_emails(&c);
                    extra.retain(|e| e != &v);
                    if !extra.iter().any(|e| e == o) {
                        extra.push(o.to_string());
                    }
                    c.props.insert("hs_additional_emails".into(), extra.join(";"));
                }
            }
            if v.is_empty() {
                c.props.remove(&k);
            } else {
                c.props.insert(k, v);
            }
        }
        c.updated = now;
        c.props.insert("lastmodifieddate".into(), iso(now));
        c.search_versions.push((now + search_lag_ms as i64, c.props.clone()));
        self.contacts.insert(id, c);
    }

    /// Merges `other` into `primary`. Primary values win; the merged-away email stays attached as a
    /// secondary email. With `new_id` the result is a new record and both old ids resolve to it.
    pub fn merge(&mut self, primary: u64, other: u64, new_id: bool, search_lag_ms: u64) -> HsResult<u64> {
        if primary == other {
            return Err(HsError::validation("Cannot merge a record with itself"));
        }
        let p = self.contacts.remove(&primary).ok_or_else(HsError::not_found)?;
        let Some(o) = self.contacts.remove(&other) else {
            self.contacts.insert(primary, p);
            return Err(HsError::not_found());
        };
        // Take both records out of the unique indexes; the survivor's values go back in.
        for c in [&p, &o] {
            for (k, v) in &c.props {
                self.index(c.id, k, Some(v), None);
            }
        }
        let id = if new_id {
            self.next_id += 1;
            self.next_id - 1
        } else {
            primary
        };
        let now = now_ms();
        let mut props = o.props.clone();
        for (k, v) in &p.props {
            props.insert(k.clone(), v.clone());
        }
        let mut extra = secondary_emails(&p);
        for e in secondary_emails(&o).into_iter().chain(o.props.get("email").cloned()) {
            if !extra.contains(&e) && Some(&e) != p.props.get("email") {
                extra.push(e);
            }
        }
        if !extra.is_empty() {
            props.insert("hs_additional_emails".into(), extra.join(";"));
        }
        let mut merged_from: Vec<u64> = p.merged_from.iter().chain(o.merged_from.iter()).copied().collect();
        merged_from.extend([primary, other]);
        merged_from.retain(|m| *m != id);
        props.insert(
            "hs_merged_object_ids".into(),
            merged_from.iter().map(u64::to_string).collect::<Vec<_>>().join(";"),
        );
        props.insert("hs_object_id".into(), id.to_string());
        props.insert("lastmodifieddate".into(), iso(now));
        for (k, v) in props.clone() {
            self.index(id, &k, None, Some(&v));
        }
        let mut ext_ids = p.ext_ids.clone();
        ext_ids.extend(o.ext_ids.iter().cloned());
        let mut utks = p.utks.clone();
        utks.extend(o.utks.iter().cloned());
        for old in [primary, other] {
            if old != id {
                self.redirects.insert(old, id);
            }
        }
        for owner in self.utk_owner.values_mut().chain(self.ext_id_owner.values_mut()) {
            if *owner == primary || *owner == other {
                *owner = id;
            }
        }
        for h in &mut self.hits {
            if h.contact_id == Some(primary) || h.contact_id == Some(other) {
                h.contact_id = Some(id);
            }
        }
        self.contacts.insert(
            id,
            Contact {
                id,
                search_versions: vec![(now + search_lag_ms as i64, props.clone())],
                props,
                created: p.created.min(o.created),
                updated: now,
                ext_ids,
                utks,
                merged_from,
            },
        );
        // HubSpot sends the merge and a deletion for each merged-away record, and no
        // propertyChange for what the merge changed (hubspot-behavior.md section 9).
        let moved = o.props.keys().filter(|k| !p.props.contains_key(*k)).count();
        self.emit(
            "contact.merge",
            primary,
            json!({ "primaryObjectId": primary, "mergedObjectIds": [other], "newObjectId": id, "numberOfPropertiesMoved": moved }),
        );
        for old in [primary, other] {
            if old != id {
                self.emit("contact.deletion", old, json!({}));
            }
        }
        Ok(id)
    }

    /// Archives (deletes) a contact. It stays readable with `archived=true` (HubSpot keeps it
    /// restorable for 90 days); its email and unique values are free for other records.
    pub fn archive(&mut self, id: u64) -> bool {
        let Some(c) = self.contacts.remove(&id) else { return false };
        for (k, v) in &c.props {
            self.index(id, k, Some(v), None);
        }
        self.utk_owner.retain(|_, o| *o != id);
        self.ext_id_owner.retain(|_, o| *o != id);
        self.archived.insert(id, (c, now_ms()));
        self.emit("contact.deletion", id, json!({}));
        true
    }

    /// Restores an archived contact under its id (as from HubSpot's recycle bin). Refused with
    /// 409 when another contact now holds its email or a unique value [guess].
    pub fn restore(&mut self, id: u64) -> HsResult<()> {
        let (c, _) = self.archived.get(&id).ok_or_else(HsError::not_found)?;
        for (k, v) in &c.props {
            if let Some(holder) = self.unique.get(k.as_str()).and_then(|m| m.get(v)) {
                return Err(HsError::contact_exists(*holder));
            }
        }
        let (c, _) = self.archived.remove(&id).ok_or_else(HsError::not_found)?;
        for (k, v) in &c.props {
            self.index(id, k, None, Some(v));
        }
        self.contacts.insert(id, c);
        self.emit("contact.restore", id, json!({}));
        Ok(())
    }

    /// GDPR delete: the record, live or archived, is gone for good, with the hits tied to it.
    pub fn purge(&mut self, id: u64) -> bool {
        let live = self.archive(id);
        let gone = self.archived.remove(&id).is_some();
        self.hits.retain(|h| h.contact_id != Some(id));
        self.redirects.retain(|_, to| *to != id);
        if live || gone {
            // With the deletion `archive` sent for a live record (HubSpot: both, in any order).
            self.emit("contact.privacyDeletion", id, json!({}));
        }
        live || gone
    }

    /// An archived record by id, or by the value of `id_property` (what `GET ?archived=true` reads).
    pub fn lookup_archived(&self, key: &str, id_property: Option<&str>) -> HsResult<u64> {
        let found = match id_property {
            None | Some("hs_object_id") => key.parse::<u64>().ok().filter(|id| self.archived.contains_key(id)),
            Some(prop) => {
                let want = normalize(prop, key);
                self.archived.values().find(|(c, _)| c.props.get(prop) == Some(&want)).map(|(c, _)| c.id)
            }
        };
        found.ok_or_else(HsError::not_found)
    }

    /// The properties search sees for a contact at `now` (None: not yet in the index).
    pub fn searchable(&self, c: &Contact, now: i64) -> Option<BTreeMap<String, String>> {
        c.search_versions.iter().rev().find(|(at, _)| *at <= now).map(|(_, p)| p.clone())
    }

    /// The JSON of a contact in v3 form, with `wanted` properties (HubSpot's defaults when empty).
    /// With `archived`, the record is read from the archived ones and carries `archivedAt`.
    pub fn contact_json(&self, id: u64, wanted: &[String], archived: bool) -> Value {
        let (c, archived_at) = if archived {
            match self.archived.get(&id) {
                Some((c, at)) => (c, Some(*at)),
                None => return Value::Null,
            }
        } else {
            match self.contacts.get(&id) {
                Some(c) => (c, None),
                None => return Value::Null,
            }
        };
        let default = ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"];
        let mut props = Map::new();
        let names: Vec<&str> =
            if wanted.is_empty() { default.to_vec() } else { wanted.iter().map(String::as_str).collect() };
        for n in names {
            // Requested properties that are unset come back as null; unknown ones are left out.
            if self.properties.contains_key(n) {
                props.insert(n.to_string(), c.props.get(n).map(|v| json!(v)).unwrap_or(Value::Null));
            }
        }
        let mut out = json!({
            "id": c.id.to_string(),
            "properties": props,
            "createdAt": iso(c.created),
            "updatedAt": iso(c.updated),
            "archived": archived,
        });
        if let Some(at) = archived_at {
            out["archivedAt"] = json!(iso(at));
        }
        out
    }

    /// Records a collector hit and applies HubSpot's identify rules (hubspot-behavior.md 1.3):
    /// an email ties the utk (and an `id` sent with it) to the contact holding that email,
    /// creating one when none does; email wins over `id`; `id` alone creates nothing and lands on
    /// the contact the id was tied to; the utk's anonymous history moves to the contact it is tied to.
    pub fn collect(&mut self, hit: Hit, secondary: bool, search_lag_ms: u64) -> u64 {
        self.collect_with(hit, secondary, search_lag_ms, true)
    }

    /// `collect`, where `honour_id: false` drops the identity's `id` (the `identify-id ignored`
    /// switch): the hit is recorded as sent, but lands by its email or its utk only.
    pub fn collect_with(&mut self, mut hit: Hit, secondary: bool, search_lag_ms: u64, honour_id: bool) -> u64 {
        let identity = hit.identity.clone().unwrap_or_default();
        let email = identity.get("email").map(|e| e.trim().to_ascii_lowercase()).filter(|e| valid_email(e));
        let ext_id = identity.get("id").filter(|i| honour_id && !i.is_empty()).cloned();
        let mut contact = None;
        if let Some(email) = email {
            let id = match self.by_email(&email, secondary) {
                Some(id) => id,
                None => {
                    let mut values = BTreeMap::new();
                    values.insert("email".to_string(), email.clone());
                    let id = self.create_from(values, search_lag_ms, Source::Analytics);
                    hit.created_contact = Some(id);
                    id
                }
            };
            // Other identify keys that are contact properties fill in values; identify cannot
            // change an existing contact's email.
            let extra: BTreeMap<String, String> = identity
                .iter()
                .filter(|(k, v)| {
                    !matches!(k.as_str(), "email" | "id") && !v.is_empty() && self.properties.get(*k).is_some_and(|d| !d.read_only)
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !extra.is_empty() {
                self.update(id, extra, WriteRules { old_email_kept: false }, search_lag_ms);
            }
            if let Some(x) = &ext_id {
                // Once tied, an id stays on the contact it was first tied to, even when a later
                // identify pairs it with another email (HubSpot staff, hubspot-behavior.md 1.3).
                if !self.ext_id_owner.contains_key(x) {
                    self.ext_id_owner.insert(x.clone(), id);
                    if let Some(c) = self.contacts.get_mut(&id) {
                        c.ext_ids.push(x.clone());
                    }
                }
            }
            contact = Some(id);
        } else if let Some(x) = &ext_id {
            contact = self.ext_id_owner.get(x).copied();
        }
        if contact.is_none() {
            contact = hit.utk.as_ref().and_then(|u| self.utk_owner.get(u)).copied();
        }
        if let (Some(id), Some(utk)) = (contact, hit.utk.clone()) {
            if self.utk_owner.get(&utk) != Some(&id) {
                self.utk_owner.insert(utk.clone(), id);
                if let Some(c) = self.contacts.get_mut(&id) {
                    if !c.utks.contains(&utk) {
                        c.utks.push(utk.clone());
                    }
                }
                for h in self.hits.iter_mut().filter(|h| h.contact_id.is_none() && h.utk.as_ref() == Some(&utk)) {
                    h.contact_id = Some(id);
                }
            }
        }
        hit.seq = self.seq();
        hit.contact_id = contact;
        let seq = hit.seq;
        self.hits.push(hit);
        seq
    }

    /// Records a chat event. A valid token issued for the email identifies the visitor; the
    /// contact with that email is found or created (names fill only unknown values).
    pub fn chat_event(&mut self, mut ev: ChatEvent, email: Option<&str>, token: Option<&str>, lag: u64) -> ChatEvent {
        if ev.kind == "load" {
            match (email.filter(|e| !e.is_empty()), token.filter(|t| !t.is_empty())) {
                (Some(e), Some(t)) => {
                    let e = e.trim().to_ascii_lowercase();
                    match self.chat_tokens.get(t).cloned() {
                        None => ev.refused = Some("unknown identificationToken".into()),
                        Some(tok) if tok.expires <= now_ms() => ev.refused = Some("identificationToken expired".into()),
                        Some(tok) if tok.email != e => {
                            ev.refused = Some(format!("token was issued for {} not {e}", tok.email))
                        }
                        Some(tok) => {
                            let id = match self.by_email(&e, false) {
                                Some(id) => id,
                                None => self.create_from(BTreeMap::from([("email".to_string(), e.clone())]), lag, Source::Conversations),
                            };
                            let mut names = BTreeMap::new();
                            for (k, v) in [("firstname", &tok.first_name), ("lastname", &tok.last_name)] {
                                if let Some(v) = v {
                                    if self.contacts.get(&id).is_some_and(|c| !c.props.contains_key(k)) {
                                        names.insert(k.to_string(), v.clone());
                                    }
                                }
                            }
                            if !names.is_empty() {
                                self.update(id, names, WriteRules { old_email_kept: false }, lag);
                            }
                            ev.identified_email = Some(e);
                            ev.contact_id = Some(id);
                        }
                    }
                }
                (Some(_), None) => ev.refused = Some("identificationEmail without identificationToken".into()),
                (None, Some(_)) => ev.refused = Some("identificationToken without identificationEmail".into()),
                (None, None) => {}
            }
        }
        ev.seq = self.seq();
        self.chat_events.push(ev.clone());
        ev
    }

    /// Creates a property (the properties API).
    pub fn create_property(&mut self, def: PropertyDef) -> HsResult<()> {
        if self.properties.contains_key(&def.name) {
            return Err(HsError::new(
                axum::http::StatusCode::CONFLICT,
                "OBJECT_ALREADY_EXISTS",
                format!("A property named '{}' already exists.", def.name),
            ));
        }
        if def.has_unique_value {
            let mut map = HashMap::new();
            for c in self.contacts.values() {
                if let Some(v) = c.props.get(&def.name) {
                    map.insert(v.clone(), c.id);
                }
            }
            self.unique.insert(def.name.clone(), map);
        }
        self.properties.insert(def.name.clone(), def);
        Ok(())
    }

    /// Archives a property: reads and writes no longer know it and its unique index goes.
    pub fn archive_property(&mut self, name: &str) {
        self.properties.remove(name);
        self.unique.remove(name);
    }
}

/// The contact's secondary emails (`hs_additional_emails`, `;`-separated).
pub fn secondary_emails(c: &Contact) -> Vec<String> {
    c.props
        .get("hs_additional_emails")
        .map(|s| s.split(';').filter(|e| !e.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A page view from `utk` carrying `identity` (none when empty), as the collector builds one.
    pub(crate) fn hit(utk: &str, identity: &[(&str, &str)]) -> Hit {
        Hit {
            seq: 0,
            kind: "pageview".into(),
            portal_id: "1".into(),
            utk: Some(utk.into()),
            url: "http://app.test/".into(),
            path: "/".into(),
            identity: if identity.is_empty() {
                None
            } else {
                Some(identity.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
            },
            contact_id: None,
            created_contact: None,
            event_name: None,
            event_properties: BTreeMap::new(),
            reset_visitor: false,
            at: 0,
        }
    }

    #[test]
    fn iso_formats_known_instants() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_526_298_447_715), "2018-05-14T11:47:27.715Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn email_change_then_identify_with_new_email_makes_a_duplicate() {
        let mut w = World::new();
        w.collect(hit("utk1", &[("email", "a@x.io"), ("id", "u1")]), false, 0);
        assert_eq!(w.contacts.len(), 1);
        w.collect(hit("utk1", &[("email", "b@x.io"), ("id", "u1")]), false, 0);
        assert_eq!(w.contacts.len(), 2, "email wins over id: a new email makes a new contact");
        // The id stays on the first contact.
        let first = w.by_email("a@x.io", false).unwrap();
        assert_eq!(w.ext_id_owner["u1"], first);
    }

    #[test]
    fn id_alone_creates_nothing_and_lands_on_the_tied_contact() {
        let mut w = World::new();
        w.collect(hit("utk9", &[("id", "u1")]), false, 0);
        assert!(w.contacts.is_empty());
        assert_eq!(w.hits[0].contact_id, None);
        w.collect(hit("utk1", &[("email", "a@x.io"), ("id", "u1")]), false, 0);
        w.collect(hit("utk2", &[("id", "u1")]), false, 0);
        let a = w.by_email("a@x.io", false).unwrap();
        assert_eq!(w.hits[2].contact_id, Some(a));
        assert_eq!(w.contacts.len(), 1);
    }

    #[test]
    fn an_ignored_id_ties_nothing_and_id_only_hits_land_by_utk() {
        let mut w = World::new();
        w.collect_with(hit("utk1", &[("email", "a@x.io"), ("id", "u1")]), false, 0, false);
        let a = w.by_email("a@x.io", false).unwrap();
        assert!(w.ext_id_owner.is_empty() && w.contacts[&a].ext_ids.is_empty());
        // Same browser: the utk carries the id-only hit to the contact.
        w.collect_with(hit("utk1", &[("id", "u1")]), false, 0, false);
        assert_eq!(w.hits[1].contact_id, Some(a));
        // Another browser: the id alone finds nothing; the hit stays anonymous.
        w.collect_with(hit("utk2", &[("id", "u1")]), false, 0, false);
        assert_eq!(w.hits[2].contact_id, None);
        assert_eq!(w.hits[2].identity.as_ref().unwrap()["id"], "u1", "the hit is recorded as sent");
        assert_eq!(w.contacts.len(), 1);
    }

    #[test]
    fn anonymous_history_moves_to_the_contact_the_utk_is_tied_to() {
        let mut w = World::new();
        w.collect(hit("utk1", &[]), false, 0);
        w.collect(hit("utk1", &[("email", "a@x.io")]), false, 0);
        let a = w.by_email("a@x.io", false).unwrap();
        assert!(w.hits.iter().all(|h| h.contact_id == Some(a)));
    }

    #[test]
    fn secondary_lookup_only_with_its_switch() {
        let mut w = World::new();
        let id = w.create(BTreeMap::from([("email".into(), "a@x.io".into())]), 0);
        w.update(id, BTreeMap::from([("email".into(), "b@x.io".into())]), WriteRules { old_email_kept: true }, 0);
        assert_eq!(w.by_email("a@x.io", false), None);
        assert_eq!(w.by_email("a@x.io", true), Some(id));
        assert_eq!(w.by_email("B@X.io", false), Some(id));
    }

    #[test]
    fn merge_makes_a_new_id_that_both_old_ids_resolve_to() {
        let mut w = World::new();
        let a = w.create(BTreeMap::from([("email".into(), "a@x.io".into()), ("firstname".into(), "A".into())]), 0);
        let b = w.create(BTreeMap::from([("email".into(), "b@x.io".into()), ("lastname".into(), "B".into())]), 0);
        let m = w.merge(a, b, true, 0).unwrap();
        assert!(m != a && m != b);
        assert_eq!((w.resolve(a), w.resolve(b)), (Some(m), Some(m)));
        let c = &w.contacts[&m];
        assert_eq!(c.props["email"], "a@x.io");
        assert_eq!(c.props["lastname"], "B");
        assert_eq!(c.props["hs_additional_emails"], "b@x.io");
        assert_eq!(w.by_email("a@x.io", false), Some(m));
        assert_eq!(w.by_email("b@x.io", false), None);
    }
}
