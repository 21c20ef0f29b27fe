//! HTTP tests of hubspot-sim's HubSpot APIs, over real HTTP against a simulator on port 0.

use hubspot_sim::Cli;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Sim {
    url: String,
    http: reqwest::Client,
    _running: hubspot_sim::Running,
}

struct Res {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Res {
    #[track_caller]
    fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self.body
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn sim_with(args: &[&str]) -> Sim {
    let mut argv = vec!["hubspot-sim", "--token", "T"];
    argv.extend_from_slice(args);
    let cli = <Cli as clap::Parser>::parse_from(argv);
    let running = hubspot_sim::spawn(cli).await.expect("simulator starts");
    Sim { url: running.url.clone(), http: reqwest::Client::new(), _running: running }
}

/// A simulator with rate limiting off, so tests that are not about it never meet a 429.
async fn sim() -> Sim {
    sim_with(&["--rate-limit", "0"]).await
}

impl Sim {
    async fn call(&self, method: Method, path: &str, body: Option<Value>, token: Option<&str>) -> Res {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let res = req.send().await.expect("request reaches the simulator");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Res { status, headers, body }
    }
    async fn get(&self, path: &str) -> Res {
        self.call(Method::GET, path, None, Some("T")).await
    }
    async fn post(&self, path: &str, body: Value) -> Res {
        self.call(Method::POST, path, Some(body), Some("T")).await
    }
    async fn patch(&self, path: &str, body: Value) -> Res {
        self.call(Method::PATCH, path, Some(body), Some("T")).await
    }
    async fn raw(&self, method: Method, path: &str, body: &'static str) -> Res {
        let res = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth("T")
            .body(body)
            .send()
            .await
            .expect("request reaches the simulator");
        let status = res.status();
        let headers = res.headers().clone();
        let body = serde_json::from_str(&res.text().await.unwrap_or_default()).unwrap_or(Value::Null);
        Res { status, headers, body }
    }
    async fn create(&self, props: Value) -> String {
        let b = self.post("/crm/v3/objects/contacts", json!({ "properties": props })).await.expect(201);
        b["id"].as_str().expect("id is a string").to_string()
    }
    async fn admin(&self, path: &str, body: Value) -> Value {
        self.http
            .post(format!("{}{path}", self.url))
            .body(body.to_string())
            .send()
            .await
            .expect("admin call")
            .json()
            .await
            .unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn create_answers_201_and_a_second_contact_with_the_same_email_gets_hubspots_409() {
    let s = sim().await;
    let b = s.post("/crm/v3/objects/contacts", json!({"properties": {"email": "Ann@Example.com", "firstname": "Ann"}})).await.expect(201);
    let id = b["id"].as_str().unwrap();
    assert_eq!(b["properties"]["email"], "ann@example.com", "emails are stored lowercased");
    assert_eq!(b["properties"]["firstname"], "Ann");
    assert_eq!(b["archived"], false);
    assert!(b["createdAt"].as_str().unwrap().ends_with('Z'));

    let e = s.post("/crm/v3/objects/contacts", json!({"properties": {"email": "ann@example.com"}})).await.expect(409);
    assert_eq!(e["status"], "error");
    assert_eq!(e["category"], "CONFLICT");
    assert_eq!(e["message"], format!("Contact already exists. Existing ID: {id}"));
    assert_eq!(e["correlationId"].as_str().unwrap().len(), 36);
}

#[tokio::test]
async fn a_contact_reads_by_id_by_email_and_by_a_unique_property() {
    let s = sim().await;
    s.post(
        "/crm/v3/properties/contacts",
        json!({"name": "hsq_user_id", "label": "App user id", "type": "string", "fieldType": "text",
               "groupName": "contactinformation", "hasUniqueValue": true}),
    )
    .await
    .expect(201);
    let id = s.create(json!({"email": "a@x.io", "hsq_user_id": "u_1"})).await;

    let by_id = s.get(&format!("/crm/v3/objects/contacts/{id}?properties=email,hsq_user_id,phone")).await.expect(200);
    assert_eq!(by_id["properties"]["hsq_user_id"], "u_1");
    assert_eq!(by_id["properties"]["phone"], Value::Null, "requested but unset properties are null");
    assert_eq!(s.get("/crm/v3/objects/contacts/A@X.io?idProperty=email").await.expect(200)["id"], id.as_str());
    assert_eq!(s.get("/crm/v3/objects/contacts/u_1?idProperty=hsq_user_id").await.expect(200)["id"], id.as_str());

    s.get("/crm/v3/objects/contacts/u_2?idProperty=hsq_user_id").await.expect(404);
    s.get("/crm/v3/objects/contacts/99999").await.expect(404);
    let e = s.get("/crm/v3/objects/contacts/a%2540x.io").await.expect(404);
    assert_eq!(e["message"], "Object not found.  objectId are usually numeric.");
    // A property without hasUniqueValue is no id property.
    s.get("/crm/v3/objects/contacts/Ann?idProperty=firstname").await.expect(400);

    // The unique property refuses a second contact with the same value.
    let e = s.post("/crm/v3/objects/contacts", json!({"properties": {"email": "b@x.io", "hsq_user_id": "u_1"}})).await.expect(409);
    assert_eq!(e["message"], format!("Contact already exists. Existing ID: {id}"));
    let props = s.get("/crm/v3/properties/contacts/hsq_user_id").await.expect(200);
    assert_eq!(props["hasUniqueValue"], true);
}

#[tokio::test]
async fn patch_updates_by_id_or_id_property_and_refuses_an_email_another_contact_holds() {
    let s = sim().await;
    let a = s.create(json!({"email": "a@x.io"})).await;
    let b = s.create(json!({"email": "b@x.io"})).await;
    let r = s.patch(&format!("/crm/v3/objects/contacts/{a}"), json!({"properties": {"email": "a2@x.io", "lastname": "Z"}})).await.expect(200);
    assert_eq!(r["properties"]["email"], "a2@x.io");
    assert_eq!(r["properties"]["lastname"], "Z");
    s.patch("/crm/v3/objects/contacts/a2@x.io?idProperty=email", json!({"properties": {"lastname": ""}})).await.expect(200);
    let read = s.get(&format!("/crm/v3/objects/contacts/{a}?properties=lastname")).await.expect(200);
    assert_eq!(read["properties"]["lastname"], Value::Null, "\"\" clears a value");

    let e = s.patch(&format!("/crm/v3/objects/contacts/{a}"), json!({"properties": {"email": "B@x.io"}})).await.expect(409);
    assert_eq!(e["message"], format!("Contact already exists. Existing ID: {b}"));
    s.patch("/crm/v3/objects/contacts/a@x.io?idProperty=email", json!({"properties": {"lastname": "Q"}})).await.expect(404);
    s.patch("/crm/v3/objects/contacts/424242", json!({"properties": {"lastname": "Q"}})).await.expect(404);
}

#[tokio::test]
async fn bad_input_gets_hubspots_error_json_and_never_a_500() {
    let s = sim().await;
    let id = s.create(json!({"email": "a@x.io"})).await;
    let e = s.patch(&format!("/crm/v3/objects/contacts/{id}"), json!({"properties": {"nosuch": "1"}})).await.expect(400);
    assert_eq!(e["category"], "VALIDATION_ERROR");
    assert!(e["message"].as_str().unwrap().contains("Property \\\"nosuch\\\" does not exist"), "{e}");
    let e = s.patch(&format!("/crm/v3/objects/contacts/{id}"), json!({"properties": {"hs_object_id": "1"}})).await.expect(400);
    assert!(e["message"].as_str().unwrap().contains("READ_ONLY_VALUE"));
    let e = s.post("/crm/v3/objects/contacts", json!({"properties": {"email": "not an email"}})).await.expect(400);
    assert!(e["message"].as_str().unwrap().contains("INVALID_EMAIL"));
    let e = s.raw(Method::POST, "/crm/v3/objects/contacts", "{\"properties\": ").await.expect(400);
    assert_eq!(e["category"], "VALIDATION_ERROR");
    assert!(e["message"].as_str().unwrap().starts_with("Invalid input JSON"));
    s.raw(Method::POST, "/crm/v3/objects/contacts", "{\"properties\": []}").await.expect(400);

    // Every endpoint, fed garbage of several kinds: answers are 4xx, never 5xx.
    let garbage = ["", "null", "[]", "{}", "{\"inputs\": 5}", "{\"inputs\": [{}]}", "\u{0}\u{1}", "{\"properties\": {\"email\": {}}}",
        "{\"filterGroups\": [{\"filters\": [{\"propertyName\": \"email\", \"operator\": \"NOPE\"}]}]}"];
    let targets = [
        (Method::POST, "/crm/v3/objects/contacts"),
        (Method::PATCH, "/crm/v3/objects/contacts/101"),
        (Method::POST, "/crm/v3/objects/contacts/batch/read"),
        (Method::POST, "/crm/v3/objects/contacts/batch/update"),
        (Method::POST, "/crm/v3/objects/contacts/batch/upsert"),
        (Method::POST, "/crm/v3/objects/contacts/batch/create"),
        (Method::POST, "/crm/v3/objects/contacts/batch/nope"),
        (Method::POST, "/crm/v3/objects/contacts/search"),
        (Method::POST, "/crm/v3/objects/contacts/merge"),
        (Method::POST, "/crm/v3/properties/contacts"),
        (Method::POST, "/contacts/v1/contact/createOrUpdate/email/a@x.io"),
        (Method::POST, "/contacts/v1/contact/email/a@x.io/profile"),
        (Method::POST, "/visitor-identification/v3/tokens/create"),
    ];
    for (m, path) in targets {
        for g in garbage {
            let r = s.raw(m.clone(), path, g).await;
            assert!(r.status.is_client_error() || r.status.is_success(), "{m} {path} {g:?} -> {} {}", r.status, r.body);
        }
    }
}

#[tokio::test]
async fn every_api_call_needs_the_bearer_token_and_gets_hubspots_401() {
    let s = sim().await;
    for token in [None, Some("wrong")] {
        let r = s.call(Method::GET, "/crm/v3/objects/contacts", None, token).await;
        assert_eq!(r.status, 401);
        assert!(r.header("x-hubspot-auth-failure").is_some());
        assert_eq!(r.body["category"], "INVALID_AUTHENTICATION");
        assert!(r.body["message"].as_str().unwrap().starts_with("Authentication credentials not found"));
    }
}

#[tokio::test]
async fn the_ten_second_limit_answers_hubspots_429_with_rate_limit_headers() {
    let s = sim_with(&["--rate-limit", "5"]).await;
    for left in (0..5).rev() {
        let r = s.get("/crm/v3/objects/contacts").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-hubspot-ratelimit-max"), Some("5"));
        assert_eq!(r.header("x-hubspot-ratelimit-remaining"), Some(left.to_string().as_str()));
        assert_eq!(r.header("x-hubspot-ratelimit-interval-milliseconds"), Some("10000"));
        assert!(r.header("x-hubspot-ratelimit-daily-remaining").is_some());
    }
    let r = s.get("/crm/v3/objects/contacts").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-hubspot-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("retry-after"), None, "Retry-After is not documented; only with its switch");
    assert_eq!(r.body["status"], "error");
    assert_eq!(r.body["message"], "You have reached your ten_secondly_rolling limit.");
    assert_eq!(r.body["errorType"], "RATE_LIMIT");
    assert_eq!(r.body["policyName"], "TEN_SECONDLY_ROLLING");
    assert!(r.body["correlationId"].is_string());

    s.admin("/__sim/config", json!({"retryAfter": true})).await;
    let r = s.get("/crm/v3/objects/contacts").await;
    assert_eq!(r.status, 429);
    let secs: u64 = r.header("retry-after").expect("Retry-After with the switch on").parse().unwrap();
    assert!((1..=10).contains(&secs));
}

#[tokio::test]
async fn search_is_limited_to_five_requests_a_second() {
    let s = sim_with(&["--rate-limit", "100"]).await;
    let q = json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "a@x.io"}]}]});
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(s.post("/crm/v3/objects/contacts/search", q.clone()).await.status.as_u16());
    }
    assert_eq!(&statuses[..5], &[200, 200, 200, 200, 200]);
    let fast: Vec<u16> = futures_join(&s, q.clone(), 8).await;
    assert!(fast.contains(&429), "8 concurrent searches exceed 5 per second: {fast:?}");
    // The search limit's body, also for a 429 injected on the search path (hubspot-behavior.md 9).
    let s2 = sim().await;
    s2.admin("/__sim/faults", json!({"path": "/crm/v3/objects/contacts/search", "status": 429})).await;
    let r = s2.post("/crm/v3/objects/contacts/search", q).await;
    assert_eq!(r.status.as_u16(), 429);
    assert_eq!(r.body["message"], "You have reached your secondly limit.");
}

async fn futures_join(s: &Sim, q: Value, n: usize) -> Vec<u16> {
    let mut handles = Vec::new();
    for _ in 0..n {
        let http = s.http.clone();
        let url = format!("{}/crm/v3/objects/contacts/search", s.url);
        let body = q.to_string();
        handles.push(tokio::spawn(async move {
            http.post(url).bearer_auth("T").body(body).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn batch_calls_take_at_most_100_inputs_and_answer_207_on_mixed_results() {
    let s = sim().await;
    let a = s.create(json!({"email": "a@x.io"})).await;
    let b = s.create(json!({"email": "b@x.io"})).await;
    let inputs: Vec<Value> = (0..101).map(|i| json!({"id": i.to_string()})).collect();
    s.post("/crm/v3/objects/contacts/batch/read", json!({"inputs": inputs})).await.expect(400);

    let r = s.post("/crm/v3/objects/contacts/batch/read", json!({"inputs": [{"id": a}, {"id": b}], "properties": ["email"]})).await.expect(200);
    assert_eq!(r["status"], "COMPLETE");
    assert_eq!(r["results"].as_array().unwrap().len(), 2);
    let r = s.post("/crm/v3/objects/contacts/batch/read", json!({"inputs": [{"id": a}, {"id": "77777"}]})).await.expect(207);
    assert_eq!(r["numErrors"], 1);
    assert_eq!(r["errors"][0]["context"]["ids"][0], "77777");
    let r = s
        .post("/crm/v3/objects/contacts/batch/read", json!({"idProperty": "email", "inputs": [{"id": "b@x.io"}], "properties": ["email"]}))
        .await
        .expect(200);
    assert_eq!(r["results"][0]["id"], b.as_str());
    let hist: Vec<Value> = (0..51).map(|_| json!({"id": a})).collect();
    s.post("/crm/v3/objects/contacts/batch/read", json!({"inputs": hist, "propertiesWithHistory": ["email"]})).await.expect(400);

    // Update: one good input and one that would take b's email.
    let r = s
        .post(
            "/crm/v3/objects/contacts/batch/update",
            json!({"inputs": [{"id": a, "properties": {"firstname": "A"}}, {"id": a, "properties": {"email": "b@x.io"}}]}),
        )
        .await
        .expect(207);
    assert_eq!(r["results"][0]["properties"]["firstname"], "A");
    assert_eq!(r["errors"][0]["category"], "CONFLICT");

    // Upsert by email: one existing, one new.
    let r = s
        .post(
            "/crm/v3/objects/contacts/batch/upsert",
            json!({"inputs": [{"id": "a@x.io", "idProperty": "email", "properties": {"lastname": "L"}},
                             {"id": "c@x.io", "idProperty": "email", "properties": {"firstname": "C"}}]}),
        )
        .await
        .expect(200);
    let news: Vec<bool> = r["results"].as_array().unwrap().iter().map(|x| x["new"].as_bool().unwrap()).collect();
    assert_eq!(news, vec![false, true]);
    assert_eq!(s.get("/crm/v3/objects/contacts/c@x.io?idProperty=email&properties=firstname").await.expect(200)["properties"]["firstname"], "C");

    // Create is all or nothing and reports the first conflict.
    let e = s
        .post("/crm/v3/objects/contacts/batch/create", json!({"inputs": [{"properties": {"email": "d@x.io"}}, {"properties": {"email": "a@x.io"}}]}))
        .await
        .expect(409);
    assert_eq!(e["message"], format!("Contact already exists. Existing ID: {a}"));
    s.get("/crm/v3/objects/contacts/d@x.io?idProperty=email").await.expect(404);
}

#[tokio::test]
async fn search_filters_pages_and_limits_its_filters() {
    let s = sim().await;
    for i in 0..25 {
        s.create(json!({"email": format!("p{i}@x.io"), "company": if i % 2 == 0 { "Even" } else { "Odd" }})).await;
    }
    let q = |filters: Value, after: Option<&str>| {
        let mut b = json!({"filterGroups": [{"filters": filters}], "limit": 10, "properties": ["email", "company"]});
        if let Some(a) = after {
            b["after"] = json!(a);
        }
        b
    };
    let r = s.post("/crm/v3/objects/contacts/search", q(json!([{"propertyName": "email", "operator": "EQ", "value": "P3@x.io"}]), None)).await.expect(200);
    assert_eq!(r["total"], 1);
    assert_eq!(r["results"][0]["properties"]["email"], "p3@x.io");

    let even = json!([{"propertyName": "company", "operator": "EQ", "value": "Even"}]);
    let first = s.post("/crm/v3/objects/contacts/search", q(even.clone(), None)).await.expect(200);
    assert_eq!(first["total"], 13);
    let after = first["paging"]["next"]["after"].as_str().unwrap().to_string();
    let second = s.post("/crm/v3/objects/contacts/search", q(even, Some(&after))).await.expect(200);
    assert_eq!(second["results"].as_array().unwrap().len(), 3);
    assert!(second.get("paging").is_none());

    // Groups are OR'd.
    let r = s
        .post(
            "/crm/v3/objects/contacts/search",
            json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "p1@x.io"}]},
                                    {"filters": [{"propertyName": "email", "operator": "EQ", "value": "p2@x.io"}]}]}),
        )
        .await
        .expect(200);
    assert_eq!(r["total"], 2);
    let six: Vec<Value> = (0..6).map(|_| json!({"filters": []})).collect();
    s.post("/crm/v3/objects/contacts/search", json!({"filterGroups": six})).await.expect(400);
}

#[tokio::test]
async fn search_lags_behind_writes_when_the_lag_switch_is_set() {
    let s = sim_with(&["--rate-limit", "0", "--search-lag-ms", "400"]).await;
    s.create(json!({"email": "lag@x.io"})).await;
    let q = json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "lag@x.io"}]}]});
    assert_eq!(s.post("/crm/v3/objects/contacts/search", q.clone()).await.expect(200)["total"], 0);
    // ...while create already refuses the email, as users see in HubSpot.
    s.post("/crm/v3/objects/contacts", json!({"properties": {"email": "lag@x.io"}})).await.expect(409);
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert_eq!(s.post("/crm/v3/objects/contacts/search", q).await.expect(200)["total"], 1);
}

#[tokio::test]
async fn merge_creates_a_new_id_and_both_old_ids_resolve_to_it() {
    let s = sim().await;
    let a = s.create(json!({"email": "a@x.io", "firstname": "A"})).await;
    let b = s.create(json!({"email": "b@x.io", "lastname": "B"})).await;
    let m = s.post("/crm/v3/objects/contacts/merge", json!({"primaryObjectId": a, "objectIdToMerge": b})).await.expect(200);
    let id = m["id"].as_str().unwrap().to_string();
    assert!(id != a && id != b);
    for old in [&a, &b] {
        let r = s.get(&format!("/crm/v3/objects/contacts/{old}?properties=email,firstname,lastname,hs_additional_emails,hs_merged_object_ids")).await.expect(200);
        assert_eq!(r["id"], id.as_str());
        assert_eq!(r["properties"]["email"], "a@x.io", "the primary's email is kept");
        assert_eq!(r["properties"]["lastname"], "B");
        assert_eq!(r["properties"]["hs_additional_emails"], "b@x.io", "the merged-away email stays attached");
        assert_eq!(r["properties"]["hs_merged_object_ids"], format!("{a};{b}"));
    }

    // With merge-new-id off the primary's id survives.
    s.admin("/__sim/config", json!({"mergeNewId": false})).await;
    let c = s.create(json!({"email": "c@x.io"})).await;
    let m = s.post("/crm/v3/objects/contacts/merge", json!({"primaryObjectId": c, "objectIdToMerge": id})).await.expect(200);
    assert_eq!(m["id"], c.as_str());
}

#[tokio::test]
async fn legacy_v1_create_or_update_and_update_by_email_follow_the_seed_documents() {
    let s = sim().await;
    let r = s.post("/contacts/v1/contact/createOrUpdate/email/old@x.io", json!({"properties": [{"property": "firstname", "value": "O"}]})).await.expect(200);
    assert_eq!(r["isNew"], true);
    let vid = r["vid"].as_u64().unwrap();
    let r = s.post("/contacts/v1/contact/createOrUpdate/email/old@x.io", json!({"properties": [{"property": "lastname", "value": "L"}]})).await.expect(200);
    assert_eq!((r["isNew"].as_bool(), r["vid"].as_u64()), (Some(false), Some(vid)));
    s.create(json!({"email": "taken@x.io"})).await;
    let e = s.post("/contacts/v1/contact/createOrUpdate/email/old@x.io", json!({"properties": [{"property": "email", "value": "taken@x.io"}]})).await.expect(409);
    assert_eq!(e["error"], "CONTACT_EXISTS");

    // Update by email: 204 with no body, 404 when nobody has that email, 400 for bad data.
    let r = s.post("/contacts/v1/contact/email/old@x.io/profile", json!({"properties": [{"property": "email", "value": "new@x.io"}]})).await;
    assert_eq!(r.status, 204);
    s.post("/contacts/v1/contact/email/old@x.io/profile", json!({"properties": [{"property": "lastname", "value": "M"}]})).await.expect(404);
    s.post("/contacts/v1/contact/email/new@x.io/profile", json!({"properties": [{"property": "nosuch", "value": "1"}]})).await.expect(400);
    s.post("/contacts/v1/contact/email/new@x.io/profile", json!({"properties": [{"property": "email", "value": "taken@x.io"}]})).await.expect(409);
    let r = s.post(&format!("/contacts/v1/contact/vid/{vid}/profile"), json!({"properties": [{"property": "lastname", "value": "V"}]})).await;
    assert_eq!(r.status, 204);

    let p = s.get("/contacts/v1/contact/email/new@x.io/profile").await.expect(200);
    assert_eq!(p["vid"].as_u64(), Some(vid));
    assert_eq!(p["properties"]["lastname"]["value"], "V");
    assert_eq!(p["identity-profiles"][0]["identities"][0]["value"], "new@x.io");
    assert_eq!(s.get(&format!("/contacts/v1/contact/vid/{vid}/profile")).await.expect(200)["canonical-vid"].as_u64(), Some(vid));
    s.get("/contacts/v1/contact/email/old@x.io/profile").await.expect(404);
}

#[tokio::test]
async fn old_email_kept_and_secondary_lookup_switches_change_what_the_old_email_finds() {
    let s = sim().await;
    let id = s.create(json!({"email": "a@x.io"})).await;
    s.patch(&format!("/crm/v3/objects/contacts/{id}"), json!({"properties": {"email": "b@x.io"}})).await.expect(200);
    s.get("/crm/v3/objects/contacts/a@x.io?idProperty=email").await.expect(404);

    s.admin("/__sim/config", json!({"oldEmailKept": true, "secondaryEmailLookup": true})).await;
    s.patch(&format!("/crm/v3/objects/contacts/{id}"), json!({"properties": {"email": "c@x.io"}})).await.expect(200);
    let r = s.get("/crm/v3/objects/contacts/b@x.io?idProperty=email&properties=email,hs_additional_emails").await.expect(200);
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["properties"]["hs_additional_emails"], "b@x.io");
}

#[tokio::test]
async fn visitor_identification_tokens_are_refused_on_starter() {
    let s = sim().await;
    let r = s.post("/visitor-identification/v3/tokens/create", json!({"email": "a@x.io", "firstName": "A"})).await.expect(200);
    assert!(r["token"].as_str().unwrap().len() >= 32);
    s.post("/visitor-identification/v3/tokens/create", json!({"firstName": "A"})).await.expect(400);
    let cfg = s.admin("/__sim/config", json!({"chatTier": "starter"})).await;
    assert_eq!(cfg["switches"]["chatTier"], "starter");
    s.post("/visitor-identification/v3/tokens/create", json!({"email": "a@x.io"})).await.expect(403);
    let bad = s.admin("/__sim/config", json!({"chatTier": "gold"})).await;
    assert_eq!(bad["category"], "VALIDATION_ERROR");
}

#[tokio::test]
async fn injected_faults_answer_a_status_wait_or_drop_the_connection_then_stop() {
    let s = sim().await;
    s.admin("/__sim/faults", json!({"path": "/crm/v3/objects/contacts", "status": 500, "count": 2})).await;
    s.get("/crm/v3/objects/contacts").await.expect(500);
    s.get("/crm/v3/objects/contacts").await.expect(500);
    s.get("/crm/v3/objects/contacts").await.expect(200);

    s.admin("/__sim/faults", json!({"path": "/crm", "status": 429})).await;
    let r = s.get("/crm/v3/objects/contacts").await;
    assert_eq!((r.status.as_u16(), r.body["policyName"].as_str()), (429, Some("TEN_SECONDLY_ROLLING")));

    s.admin("/__sim/faults", json!({"path": "/crm", "latencyMs": 300})).await;
    let t = std::time::Instant::now();
    s.get("/crm/v3/objects/contacts").await.expect(200);
    assert!(t.elapsed() >= std::time::Duration::from_millis(300), "the latency fault delays the answer");

    s.admin("/__sim/faults", json!({"path": "/crm", "drop": true})).await;
    let dropped = async { s.http.get(format!("{}/crm/v3/objects/contacts", s.url)).bearer_auth("T").send().await?.text().await }.await;
    assert!(dropped.is_err(), "a dropped connection is an error for the client");
    s.get("/crm/v3/objects/contacts").await.expect(200);

    // Calls are counted by route and status, injected failures included.
    let stats: Value = s.http.get(format!("{}/__sim/stats", s.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["calls"]["GET /crm/v3/objects/contacts 500"], 2);
}

#[tokio::test]
async fn a_write_whose_client_gave_up_is_still_applied_late_as_hubspot_does() {
    let s = sim().await;
    let id = s.create(json!({"email": "a@x.io"})).await;
    let email = || async { s.get(&format!("/crm/v3/objects/contacts/{id}")).await.expect(200)["properties"]["email"].as_str().map(str::to_string) };
    s.admin("/__sim/faults", json!({"path": "/crm/v3/objects/contacts/", "method": "PATCH", "latencyMs": 800})).await;
    // The client gives up long before the answer, and closes its connection.
    let impatient = reqwest::Client::builder().timeout(std::time::Duration::from_millis(150)).build().unwrap();
    let sent = std::time::Instant::now();
    let r = impatient
        .patch(format!("{}/crm/v3/objects/contacts/{id}", s.url))
        .bearer_auth("T")
        .json(&json!({"properties": {"email": "b@x.io"}}))
        .send()
        .await;
    assert!(r.is_err_and(|e| e.is_timeout()), "the client timed out");
    drop(impatient);
    assert_eq!(email().await.as_deref(), Some("a@x.io"), "not applied while it waits");
    let mut seen = None;
    while sent.elapsed() < std::time::Duration::from_secs(5) {
        if email().await.as_deref() == Some("b@x.io") {
            seen = Some(sent.elapsed());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    println!("the abandoned PATCH landed {seen:?} after it was sent (latency 800 ms, client gave up at 150 ms)");
    let landed = seen.expect("the abandoned write lands");
    assert!(landed >= std::time::Duration::from_millis(800), "after its latency, not before");
    let stats: Value = s.http.get(format!("{}/__sim/stats", s.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["calls"]["PATCH /crm/v3/objects/contacts/{id} 200"], 1, "counted as HubSpot served it");
}

#[tokio::test]
async fn repeated_properties_archived_reads_merged_ids_and_unserved_methods() {
    let s = sim().await;
    let id = s.create(json!({"email": "a@x.io", "firstname": "A", "lastname": "L"})).await;
    // HubSpot's SDKs repeat the parameter; the comma form works too.
    for q in ["properties=firstname&properties=lastname", "properties=firstname,lastname"] {
        let b = s.get(&format!("/crm/v3/objects/contacts/{id}?{q}")).await.expect(200);
        assert_eq!((b["properties"]["firstname"].as_str(), b["properties"]["lastname"].as_str()), (Some("A"), Some("L")), "{q}");
    }
    // A merged-away id answers 200 with the surviving record.
    let other = s.create(json!({"email": "b@x.io"})).await;
    let merged = s.post("/crm/v3/objects/contacts/merge", json!({"primaryObjectId": id, "objectIdToMerge": other})).await.expect(200);
    let via_old = s.get(&format!("/crm/v3/objects/contacts/{other}")).await.expect(200);
    assert_eq!(via_old["id"], merged["id"]);
    // Archived records read with archived=true, and carry archivedAt.
    let gone = s.create(json!({"email": "c@x.io"})).await;
    s.call(Method::DELETE, &format!("/crm/v3/objects/contacts/{gone}"), None, Some("T")).await.expect(204);
    s.get(&format!("/crm/v3/objects/contacts/{gone}")).await.expect(404);
    let a = s.get(&format!("/crm/v3/objects/contacts/{gone}?archived=true")).await.expect(200);
    assert_eq!(a["archived"], true);
    assert!(a["archivedAt"].is_string());
    // A method a served path does not take: HubSpot's error JSON, not an empty 405.
    let r = s.call(Method::PUT, &format!("/crm/v3/objects/contacts/{id}"), Some(json!({})), Some("T")).await;
    assert_eq!(r.status.as_u16(), 405);
    assert_eq!(r.body["status"], "error");
    assert!(r.body["message"].as_str().is_some_and(|m| m.contains("PUT")));
}

#[tokio::test]
async fn a_collected_form_submission_is_applied_once_and_bad_ones_get_a_400_never_a_500() {
    let s = sim_with(&["--rate-limit", "0", "--portal-id", "77"]).await;
    let form = |email: &str, uuid: &str| {
        json!({ "contactFields": { "email": email }, "formSelectorId": "#f", "pageUrl": "http://app.test/", "portalId": 77, "type": "SCRAPED", "utk": "", "uuid": uuid })
    };
    let path = "/collected-forms/submit/form";
    for (body, want) in [
        (json!([1, 2]), "invalid"),
        (json!({ "portalId": 77, "uuid": "x" }), "contactFields.email is required"),
        (form("not-an-email", "x"), "is invalid"),
        (json!({ "contactFields": { "email": "a@x.io" }, "portalId": 78, "uuid": "x" }), "portalId must be 77"),
        (json!({ "contactFields": { "email": "a@x.io" }, "portalId": "77" }), "uuid is required"),
    ] {
        let b = s.post(path, body.clone()).await.expect(400);
        assert!(b["message"].as_str().unwrap_or_default().contains(want), "{body}: {b}");
    }
    assert_eq!(s.raw(Method::POST, path, "{not json").await.status, StatusCode::BAD_REQUEST);
    // A browser with no usertoken: the email's contact is created; the same uuid again does nothing.
    for _ in 0..2 {
        let r = s.call(Method::POST, path, Some(form("New@X.io", "u-1")), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    }
    let log = s.get("/__sim/forms").await.expect(200);
    assert_eq!((log["total"].as_u64(), log["byOutcome"]["created"].as_u64()), (Some(1), Some(1)), "{log}");
    assert_eq!(log["submissions"][0]["email"], "new@x.io");
    let all = s.get("/__sim/contacts").await.expect(200);
    assert_eq!(all["total"], 1);
    // Turned off, a submission is recorded and changes nothing.
    s.admin("/__sim/config", json!({ "collectedForms": false })).await;
    s.call(Method::POST, path, Some(form("off@x.io", "u-2")), None).await;
    let log = s.get("/__sim/forms").await.expect(200);
    assert_eq!(log["byOutcome"]["ignored"], 1, "{log}");
    assert_eq!(s.get("/__sim/contacts").await.expect(200)["total"], 1);
}
