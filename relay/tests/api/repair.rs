//! Repair of the tracker's duplicates (repair.rs): a contact HubSpot's tracking code made with an
//! email the relay had leased to a user, without the id property, is merged into the user's
//! contact, once; a contact a form, an import or a salesperson made with that email is not; the
//! switch off merges nothing. The duplicate is made as in the race: a marketer edits the user's
//! email in HubSpot, and the page, still holding its lease on the old email, sends a hit with it.

use crate::helpers::*;
use hubspot_sim::webhooks::signature_v3;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const HOOK_SECRET: &str = "hubspot-app-client-secret-0123";

/// Points the simulator's webhooks at `url` (a relay's base URL).
async fn hook_to(http: &reqwest::Client, sim: &str, url: &str) {
    let body = json!({"webhookUrl": format!("{url}/v1/hubspot/webhooks"), "webhookSecret": HOOK_SECRET, "webhookRetryScale": 0.001});
    send(http, Method::POST, format!("{sim}/__sim/config"), Some(body), None).await.expect(200);
}

async fn hooked(relay_args: &[&str]) -> TestApp {
    let mut args = vec!["--hubspot-client-secret", HOOK_SECRET, "--reconcile-secs", "0"];
    args.extend_from_slice(relay_args);
    let app = spawn_app(&[], &args).await;
    hook_to(&app.http, &app.sim.url, &app.url).await;
    app
}

/// A page view the tracker sends for `utk`, its identity carrying `email` and the id `sub`.
async fn hit(http: &reqwest::Client, sim: &str, utk: &str, sub: &str, email: &str, path: &str) {
    let identity: String = url::form_urlencoded::Serializer::new(String::new()).append_pair("email", email).append_pair("id", sub).finish();
    let r = http
        .get(format!("{sim}/__ptq.gif"))
        .query(&[("k", "1"), ("a", "1234567"), ("vi", utk), ("pu", &format!("http://app.test{path}")), ("po", path), ("i", &identity)])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "the collector took the hit: {}", r.status());
}

async fn contacts_of(http: &reqwest::Client, sim: &str) -> Vec<Value> {
    let v: Value = http.get(format!("{sim}/__sim/contacts")).send().await.unwrap().json().await.unwrap();
    v["contacts"].as_array().cloned().unwrap_or_default()
}

async fn calls_of(http: &reqwest::Client, sim: &str, key_part: &str) -> u64 {
    let s: Value = http.get(format!("{sim}/__sim/stats")).send().await.unwrap().json().await.unwrap();
    s["calls"].as_object().unwrap().iter().filter(|(k, _)| k.contains(key_part)).map(|(_, v)| v.as_u64().unwrap()).sum()
}

async fn repair_metric(http: &reqwest::Client, relay: &str, outcome: &str) -> u64 {
    let text = http.get(format!("{relay}/metrics")).send().await.unwrap().text().await.unwrap();
    let key = format!("hsq_duplicate_repairs_total{{outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&key)).and_then(|n| n.parse().ok()).expect("the repair counter is in /metrics")
}

async fn user_of(http: &reqwest::Client, relay: &str, sub: &str) -> Value {
    send(http, Method::GET, format!("{relay}/v1/users/{sub}"), None, Some(ADMIN)).await.expect(200)
}

/// The user `sub` identifies with `email` on relay `relay` (a page holding a lease on it) and its
/// browser's first hit ties the utk and id to the user's contact; then a marketer edits the email
/// in HubSpot, the relay's write-back of the app's email is held, and the page's next hit, which
/// still carries the old email, makes the duplicate. Answers the user's contact id and the lease.
async fn make_duplicate(http: &reqwest::Client, sim: &str, relay: &str, sub: &str, email: &str, n: u32) -> (String, String) {
    let t = send(http, Method::POST, format!("{relay}/v1/identity"), Some(json!({"assertion": mint(sub, email), "utk": utk(n)})), None).await.expect(200);
    assert_eq!(t["state"], "confirmed", "{t}");
    let (id, lease) = (t["contactId"].as_str().unwrap().to_string(), t["leaseId"].as_str().unwrap().to_string());
    hit(http, sim, &utk(n), sub, email, "/app/").await;
    send(http, Method::PATCH, format!("{sim}/crm/v3/objects/contacts/{id}"), Some(json!({"properties": {"email": format!("edited-{n}@x.io")}})), Some("T"))
        .await
        .expect(200);
    // The relay writes the app's email back once it learns of the edit: hold that write, so the
    // page's hit finds no contact with its email (what happens when the hit wins the race).
    let f = json!({"path": format!("/crm/v3/objects/contacts/{id}"), "method": "PATCH", "hold": true, "count": 5});
    send(http, Method::POST, format!("{sim}/__sim/faults"), Some(f), None).await.expect(201);
    hit(http, sim, &utk(n), sub, email, "/app/reports").await;
    let made = contacts_of(http, sim).await;
    let dup = made.iter().find(|c| c["email"] == email).expect("the tracker made a contact with the old email");
    assert_eq!(dup["properties"]["hs_object_source"], "ANALYTICS", "{dup}");
    assert!(dup["properties"]["hsq_user_id"].is_null(), "no id property on it: {dup}");
    println!("{sub}: the tracker made {} ({} page views) beside the user's {id}", dup["id"], dup["pageViews"]);
    (id, lease)
}

/// What `sub` ends with: the contacts holding its id property, old email or page views.
async fn settle_one_contact(http: &reqwest::Client, sim: &str, sub: &str, email: &str) -> Value {
    let mut last = Vec::new();
    for _ in 0..200 {
        last = contacts_of(http, sim).await;
        let mine: Vec<&Value> = last
            .iter()
            .filter(|c| c["properties"]["hsq_user_id"] == sub || c["email"] == email || c["ids"].as_array().is_some_and(|i| i.iter().any(|x| x == sub)))
            .collect();
        if mine.len() == 1 && mine[0]["email"] == email && mine[0]["properties"]["hsq_user_id"] == sub {
            return mine[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{sub}: not one contact with {email}: {last:#?}");
}

#[tokio::test]
async fn the_trackers_duplicate_found_by_its_creation_webhook_is_merged_into_the_users_contact_with_its_views() {
    let app = hooked(&[]).await;
    let (id, lease) = make_duplicate(&app.http, &app.sim.url, &app.url, "u_r", "a@x.io", 1).await;

    eventually("the duplicate merged", 15, || async { app.get_user("u_r").await["repairs"][0]["state"] == "merged" }).await;
    // The write-back may go now: its email is the survivor's secondary, or, if it got there
    // first and met the duplicate, it is queued again after the merge.
    send(&app.http, Method::DELETE, format!("{}/__sim/faults", app.sim.url), None, None).await;
    let one = settle_one_contact(&app.http, &app.sim.url, "u_r", "a@x.io").await;
    let u = app.get_user("u_r").await;
    let r = &u["repairs"][0];
    println!("u_r after the repair: {u}");
    assert_eq!((r["email"].as_str(), r["leaseId"].as_str(), r["primaryId"].as_str()), (Some("a@x.io"), Some(lease.as_str()), Some(id.as_str())));
    assert_eq!(r["survivorId"], one["id"], "the user follows the survivor of the merge");
    assert_eq!(u["contactId"], one["id"]);
    assert_eq!(one["pageViews"], 2, "both page views on the user's one contact: {one}");
    assert_eq!(app.contacts().await.len(), 1, "no other contact left");
    assert_eq!(app.calls("POST /crm/v3/objects/contacts/merge").await, 1, "merged once");
    assert_eq!(repair_metric(&app.http, &app.url, "merged").await, 1);
    // A page identifying now gets the user's one contact, confirmed.
    let t = app.identity("u_r", "a@x.io", Some(&utk(1)), None).await;
    assert_eq!((t["state"].as_str(), t["contactId"].as_str()), (Some("confirmed"), one["id"].as_str()));
}

#[tokio::test]
async fn contacts_a_form_an_import_or_a_salesperson_made_with_a_leased_email_are_not_merged() {
    let app = hooked(&[]).await;
    let mut made = Vec::new();
    for (n, source) in [(1, "FORM"), (2, "IMPORT"), (3, "CRM_UI")] {
        let (sub, email) = (format!("u_{source}"), format!("{}@x.io", source.to_ascii_lowercase()));
        let t = app.identity(&sub, &email, Some(&utk(n)), None).await;
        let id = t["contactId"].as_str().unwrap().to_string();
        app.hubspot_patch(&id, json!({"email": format!("edited-{n}@x.io")})).await;
        // Hold the relay's write-back of the app's email, so the email is free for the contact.
        app.fault(json!({"path": format!("/crm/v3/objects/contacts/{id}"), "method": "PATCH", "hold": true, "count": 5})).await;
        // Made while the lease on the email is live, by something other than the tracker.
        let c = app.sim_post("/__sim/contacts", json!({"properties": {"email": email}, "source": source})).await.expect(201);
        assert_eq!(c["properties"]["hs_object_source"], source);
        made.push((sub, c["id"].as_str().unwrap().to_string()));
    }
    for (sub, dup) in &made {
        eventually(&format!("{sub}: the contact refused"), 15, || async { app.get_user(sub).await["repairs"][0]["state"] == "refused" }).await;
        let r = &app.get_user(sub).await["repairs"][0];
        println!("{sub}: {r}");
        assert_eq!(r["duplicateId"], dup.as_str());
        assert!(r["lastError"].as_str().unwrap().contains("hs_object_source"), "{r}");
    }
    assert_eq!(repair_metric(&app.http, &app.url, "refused").await, 3);
    assert_eq!(repair_metric(&app.http, &app.url, "merged").await, 0);
    assert_eq!(app.calls("POST /crm/v3/objects/contacts/merge").await, 0, "nothing merged");
    assert_eq!(app.contacts().await.len(), 6, "each user's contact and the other contact with its email");
    send(&app.http, Method::DELETE, format!("{}/__sim/faults", app.sim.url), None, None).await;
}

#[tokio::test]
async fn with_repair_off_the_duplicate_is_recorded_and_left_alone() {
    let app = hooked(&["--repair-duplicates", "false"]).await;
    make_duplicate(&app.http, &app.sim.url, &app.url, "u_off", "off@x.io", 1).await;
    eventually("the duplicate recorded", 15, || async { app.get_user("u_off").await["repairs"][0]["state"] == "off" }).await;
    send(&app.http, Method::DELETE, format!("{}/__sim/faults", app.sim.url), None, None).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.calls("POST /crm/v3/objects/contacts/merge").await, 0, "nothing merged");
    assert_eq!(app.contacts().await.len(), 2, "the duplicate is left");
    assert_eq!((repair_metric(&app.http, &app.url, "off").await, repair_metric(&app.http, &app.url, "merged").await), (1, 0));
}

/// A relay (in this process) on `db`, sharing `sim`.
async fn relay_on(sim_url: &str, db: &str, extra: &[&str]) -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut args = vec!["--outbox-poll-ms", "100", "--hubspot-budget-ms", "10000"];
    args.extend_from_slice(extra);
    let app = hsq_relay::Application::build(serve_args(sim_url, db, &args)).await.unwrap();
    let url = format!("http://{}", app.addr);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    (url, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_that_both_find_the_duplicate_merge_it_once() {
    // Two relays on one PostgreSQL, both reconciling every second (each finds the duplicate by
    // its email), and both told of its creation by a webhook delivery.
    let sim = start_sim(&[]).await;
    let db = crate::pg::fresh_database();
    let both = ["--reconcile-secs", "1", "--hubspot-client-secret", HOOK_SECRET];
    let (a, _stop_a) = relay_on(&sim.url, &db, &both).await;
    let (b, _stop_b) = relay_on(&sim.url, &db, &both).await;
    let http = reqwest::Client::new();
    let (id, _) = make_duplicate(&http, &sim.url, &a, "u_two", "two@x.io", 1).await;
    let dup = contacts_of(&http, &sim.url).await.into_iter().find(|c| c["email"] == "two@x.io").unwrap()["id"].as_str().unwrap().to_string();
    // A slow merge keeps the first relay's merge in flight while the other finds the duplicate.
    let slow = json!({"path": "/crm/v3/objects/contacts/merge", "latencyMs": 2500, "count": 3});
    send(&http, Method::POST, format!("{}/__sim/faults", sim.url), Some(slow), None).await.expect(201);
    let event = json!([{"subscriptionType": "contact.creation", "objectId": dup.parse::<u64>().unwrap(), "occurredAt": now() * 1000, "portalId": 1, "eventId": 1, "attemptNumber": 0}]).to_string();
    let deliveries = [&a, &b].map(|relay| {
        let (http, event, relay) = (http.clone(), event.clone(), relay.to_string());
        tokio::spawn(async move {
            let ts = (now() * 1000).to_string();
            let sig = signature_v3(HOOK_SECRET, "POST", &format!("{relay}/v1/hubspot/webhooks"), event.as_bytes(), &ts);
            let r = http
                .post(format!("{relay}/v1/hubspot/webhooks"))
                .header("x-hubspot-signature-v3", sig)
                .header("x-hubspot-request-timestamp", ts)
                .body(event)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        })
    });
    for d in deliveries {
        d.await.unwrap();
    }
    for _ in 0..400 {
        if user_of(&http, &a, "u_two").await["repairs"][0]["state"] == "merged" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let u = user_of(&http, &a, "u_two").await;
    assert_eq!(u["repairs"][0]["state"], "merged", "{u}");
    send(&http, Method::DELETE, format!("{}/__sim/faults", sim.url), None, None).await;
    let one = settle_one_contact(&http, &sim.url, "u_two", "two@x.io").await;
    // Both relays keep scanning meanwhile: give them a few more rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let merges = calls_of(&http, &sim.url, "POST /crm/v3/objects/contacts/merge").await;
    let (ma, mb) = (repair_metric(&http, &a, "merged").await, repair_metric(&http, &b, "merged").await);
    println!("two relays: {merges} merge calls; merged by A {ma}, by B {mb}; the user's contact {id} -> {}", one["id"]);
    assert_eq!(merges, 1, "one merge call in all");
    assert_eq!(ma + mb, 1, "one relay merged it");
    assert_eq!(one["pageViews"], 2, "{one}");
    assert_eq!(contacts_of(&http, &sim.url).await.len(), 1);
    let u = user_of(&http, &b, "u_two").await;
    assert_eq!(u["repairs"].as_array().unwrap().len(), 1, "one repair recorded: {u}");
    assert_eq!(u["contactId"], one["id"]);
}

#[tokio::test]
async fn without_webhooks_reconciliation_finds_the_duplicate_by_its_email_and_merges_it() {
    let app = spawn_app(&[], &["--reconcile-secs", "1"]).await;
    make_duplicate(&app.http, &app.sim.url, &app.url, "u_rec", "rec@x.io", 1).await;
    eventually("the duplicate merged", 15, || async { app.get_user("u_rec").await["repairs"][0]["state"] == "merged" }).await;
    send(&app.http, Method::DELETE, format!("{}/__sim/faults", app.sim.url), None, None).await;
    let one = settle_one_contact(&app.http, &app.sim.url, "u_rec", "rec@x.io").await;
    assert_eq!(one["pageViews"], 2, "{one}");
    assert_eq!(app.calls("POST /crm/v3/objects/contacts/merge").await, 1);
    assert_eq!(app.contacts().await.len(), 1);
}

impl TestApp {
    async fn hubspot_patch(&self, id: &str, props: Value) {
        send(&self.http, Method::PATCH, format!("{}/crm/v3/objects/contacts/{id}", self.sim.url), Some(json!({"properties": props})), Some("T"))
            .await
            .expect(200);
    }
}
