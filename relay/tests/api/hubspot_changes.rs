//! Changes made on HubSpot's side: the simulator's real webhook deliveries to
//! `POST /v1/hubspot/webhooks`, and reconciliation when webhooks are off.

use crate::helpers::*;
use hubspot_sim::webhooks::signature_v3;
use reqwest::Method;
use serde_json::{json, Value};

const HOOK_SECRET: &str = "hubspot-app-client-secret-0123";

/// A relay with webhooks on, and the simulator pointed at it (its port is known only now).
async fn hooked(sim_args: &[&str], relay_args: &[&str]) -> TestApp {
    let mut args = vec!["--hubspot-client-secret", HOOK_SECRET];
    args.extend_from_slice(relay_args);
    let app = spawn_app(sim_args, &args).await;
    let url = format!("{}/v1/hubspot/webhooks", app.url);
    let r = send(&app.http, Method::POST, format!("{}/__sim/config", app.sim.url), Some(json!({"webhookUrl": url, "webhookSecret": HOOK_SECRET, "webhookRetryScale": 0.001})), None).await;
    r.expect(200);
    app
}

impl TestApp {
    async fn hubspot(&self, method: Method, path: &str, body: Option<Value>) -> Res {
        send(&self.http, method, format!("{}{path}", self.sim.url), body, Some("T")).await
    }
    async fn edit_email_in_hubspot(&self, id: &str, email: &str) {
        self.hubspot(Method::PATCH, &format!("/crm/v3/objects/contacts/{id}"), Some(json!({"properties": {"email": email}}))).await.expect(200);
    }
    async fn sim_email(&self, id: &str) -> Option<String> {
        self.contacts().await.iter().find(|c| c["id"] == id).and_then(|c| c["email"].as_str().map(str::to_string))
    }
    async fn metric(&self, kind: &str) -> u64 {
        let text = self.http.get(format!("{}/metrics", self.url)).send().await.unwrap().text().await.unwrap();
        let key = format!("hsq_hubspot_changes_total{{kind=\"{kind}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&key)).and_then(|n| n.parse().ok()).unwrap_or(0)
    }
    async fn post_hook(&self, path_base: &str, body: &str, ts: i64, secret: &str) -> Res {
        let uri = format!("{path_base}/v1/hubspot/webhooks");
        let sig = signature_v3(secret, "POST", &uri, body.as_bytes(), &ts.to_string());
        let res = self
            .http
            .post(format!("{}/v1/hubspot/webhooks", self.url))
            .header("content-type", "application/json")
            .header("x-hubspot-signature-v3", sig)
            .header("x-hubspot-request-timestamp", ts.to_string())
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        Res { status, headers, body: res.json().await.unwrap_or(Value::Null) }
    }
}

fn ms() -> i64 {
    now() * 1000
}

#[tokio::test]
async fn an_email_edited_in_hubspot_ends_the_old_lease_at_once_and_the_apps_email_goes_back() {
    let app = hooked(&[], &[]).await;
    let t = app.identity("u_e", "a@x.io", Some(&utk(1)), None).await;
    assert_eq!(t["state"], "confirmed");
    let (id, lease) = (t["contactId"].as_str().unwrap().to_string(), t["leaseId"].as_str().unwrap().to_string());

    // A marketer edits the email in HubSpot.
    app.edit_email_in_hubspot(&id, "typo@x.io").await;

    // The lease on a@x.io ends: a renewal gets a new lease, never the old one.
    eventually("the old lease ended", 10, || async { app.metric("leases_ended").await >= 1 }).await;
    // The app is where users change their email: a@x.io goes back to the contact, by id.
    eventually("the app's email written back", 10, || async { app.sim_email(&id).await.as_deref() == Some("a@x.io") }).await;
    let r = app.identity("u_e", "a@x.io", Some(&utk(1)), Some(&lease)).await;
    assert_eq!(r["state"], "confirmed");
    assert_ne!(r["leaseId"], lease.as_str(), "the old lease was ended, not renewed");
    assert_eq!(r["contactId"], id.as_str());
    assert_eq!(app.contacts().await.len(), 1);
    assert_eq!(app.calls("POST /crm/v3/objects/contacts 201").await, 1, "nothing created after the first");
}

#[tokio::test]
async fn without_webhooks_or_reconciliation_the_old_email_stays_leased() {
    // The problem this issue removes, shown against the same simulator.
    let app = spawn_app(&[], &["--reconcile-secs", "0"]).await;
    let t = app.identity("u_n", "a@x.io", None, None).await;
    let (id, lease) = (t["contactId"].as_str().unwrap().to_string(), t["leaseId"].as_str().unwrap().to_string());
    app.edit_email_in_hubspot(&id, "other@x.io").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let r = app.identity("u_n", "a@x.io", None, Some(&lease)).await;
    assert_eq!((r["state"].as_str(), r["leaseId"].as_str(), r["email"].as_str()), (Some("confirmed"), Some(lease.as_str()), Some("a@x.io")));
}

#[tokio::test]
async fn a_merge_delivered_out_of_order_and_twice_moves_the_user_to_the_new_record_and_creates_nothing() {
    let app = hooked(&["--webhook-shuffle", "--webhook-duplicates"], &[]).await;
    let t = app.identity("u_m", "m@x.io", None, None).await;
    let id = t["contactId"].as_str().unwrap().to_string();
    let other = app.hubspot(Method::POST, "/crm/v3/objects/contacts", Some(json!({"properties": {"email": "dup@x.io"}}))).await.expect(201);
    let merged = app
        .hubspot(Method::POST, "/crm/v3/objects/contacts/merge", Some(json!({"primaryObjectId": id, "objectIdToMerge": other["id"]})))
        .await
        .expect(200);
    let new_id = merged["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id, "the simulator's merge makes a new record id");

    eventually("the user follows newObjectId", 10, || async { app.get_user("u_m").await["contactId"] == new_id.as_str() }).await;
    let r = app.identity("u_m", "m@x.io", None, None).await;
    assert_eq!((r["state"].as_str(), r["contactId"].as_str()), (Some("confirmed"), Some(new_id.as_str())));
    assert_eq!(app.contacts().await.len(), 1);
    assert_eq!(app.calls("POST /crm/v3/objects/contacts 201").await, 2, "the relay's first and the one merged in; none after");
    // The shuffled deliveries need not all have arrived when the user followed the merge.
    eventually("at least two deliveries", 10, || async { app.sim_get("/__sim/webhooks").await["delivered"].as_u64().unwrap_or(0) >= 2 }).await;
    eventually("duplicates arrived and were ignored", 10, || async {
        app.metric("webhook_events_received").await > app.metric("webhook_events_new").await
    })
    .await;
}

#[tokio::test]
async fn a_deleted_contact_drops_the_link_and_the_next_identify_resolves_again_without_a_duplicate() {
    let app = hooked(&[], &[]).await;
    let t = app.identity("u_d", "d@x.io", None, None).await;
    let id = t["contactId"].as_str().unwrap().to_string();
    app.hubspot(Method::DELETE, &format!("/crm/v3/objects/contacts/{id}"), None).await.expect(204);
    eventually("the link dropped", 10, || async { app.get_user("u_d").await["contactId"].is_null() }).await;
    let renewal = app.identity("u_d", "d@x.io", None, t["leaseId"].as_str()).await;
    assert_eq!(renewal["state"], "confirmed");
    assert_ne!(renewal["contactId"], id.as_str());
    assert_ne!(renewal["leaseId"], t["leaseId"]);
    assert_eq!(app.contacts().await.len(), 1, "one live contact: the new one");
}

#[tokio::test]
async fn a_restore_links_the_user_again_and_a_privacy_deletion_makes_no_contact_until_the_app_says_so() {
    // Shuffled: the privacy deletion and its deletion arrive in either order.
    let app = hooked(&["--webhook-shuffle"], &[]).await;
    let t = app.identity("u_r", "r@x.io", None, None).await;
    let id = t["contactId"].as_str().unwrap().to_string();
    app.hubspot(Method::DELETE, &format!("/crm/v3/objects/contacts/{id}"), None).await.expect(204);
    eventually("the link dropped", 10, || async { app.get_user("u_r").await["contactId"].is_null() }).await;
    send(&app.http, Method::POST, format!("{}/__sim/contacts/{id}/restore", app.sim.url), None, None).await.expect(204);
    eventually("linked to the restored record", 10, || async { app.get_user("u_r").await["contactId"] == id.as_str() }).await;

    app.hubspot(Method::POST, "/crm/v3/objects/contacts/gdpr-delete", Some(json!({"objectId": id}))).await.expect(204);
    eventually("the user erased", 10, || async {
        let u = app.get_user("u_r").await;
        u["contactId"].is_null() && u["erased"] == true
    })
    .await;
    let after = app.identity("u_r", "r@x.io", None, None).await;
    assert_eq!((after["state"].as_str(), after["email"].as_str(), after["contactId"].as_str()), (Some("unknown"), None, None));
    assert_eq!(app.contacts().await.len(), 0, "no contact is made again for an erased person");

    app.put_user("u_r", json!({"email": "r@x.io"})).await.expect(202);
    let back = app.identity("u_r", "r@x.io", None, None).await;
    assert_eq!(back["state"], "confirmed", "the app stated the user again");
}

#[tokio::test]
async fn the_endpoint_checks_the_signature_the_age_and_the_body_and_ignores_duplicates() {
    let app = hooked(&[], &["--public-url", "https://relay.example.com/hsq"]).await;
    let body = json!([{"eventId": 1, "subscriptionType": "contact.creation", "objectId": 5, "occurredAt": ms(), "attemptNumber": 0, "portalId": 1}]).to_string();
    // Signed over the public URL (a proxy in front, with a path prefix): accepted once.
    let r = app.post_hook("https://relay.example.com/hsq", &body, ms(), HOOK_SECRET).await;
    assert_eq!(r.expect(200), json!({"received": 1, "new": 1}));
    let again = app.post_hook("https://relay.example.com/hsq", &body, ms(), HOOK_SECRET).await.expect(200);
    assert_eq!(again["new"], 0, "a duplicate is stored once");
    // Signed over the URL the relay listens on: not what HubSpot called.
    let r = app.post_hook(&app.url, &body, ms(), HOOK_SECRET).await;
    assert_eq!(r.status, 401);
    let r = app.post_hook("https://relay.example.com/hsq", &body, ms(), "another-secret").await;
    assert!(r.expect(401)["message"].as_str().unwrap().contains("does not match"));
    let r = app.post_hook("https://relay.example.com/hsq", &body, ms() - 6 * 60 * 1000, HOOK_SECRET).await;
    assert!(r.expect(401)["message"].as_str().unwrap().contains("older than 5 minutes"));
    let r = app.post_hook("https://relay.example.com/hsq", "{\"not\": \"an array\"}", ms(), HOOK_SECRET).await;
    assert!(r.expect(400)["message"].as_str().unwrap().contains("array"));
    let unsigned = send(&app.http, Method::POST, format!("{}/v1/hubspot/webhooks", app.url), Some(json!([])), None).await;
    assert_eq!(unsigned.status, 401);

    // Without a client secret the endpoint is off and says how to turn it on.
    let off = spawn_app(&[], &[]).await;
    let r = send(&off.http, Method::POST, format!("{}/v1/hubspot/webhooks", off.url), Some(json!([])), None).await;
    assert!(r.expect(404)["message"].as_str().unwrap().contains("HSQ_HUBSPOT_CLIENT_SECRET"));
}

#[tokio::test]
async fn reconciliation_without_webhooks_ends_the_old_lease_within_its_period_in_batch_reads() {
    let app = spawn_app(&[], &["--reconcile-secs", "1", "--hubspot-rate-limit", "100000"]).await;
    let mut tickets = Vec::new();
    for i in 0..120 {
        tickets.push(app.identity(&format!("u_{i}"), &format!("c{i}@x.io"), None, None).await);
    }
    let id = tickets[7]["contactId"].as_str().unwrap().to_string();
    let lease = tickets[7]["leaseId"].as_str().unwrap().to_string();
    app.edit_email_in_hubspot(&id, "edited@x.io").await;
    let reads_before = app.calls("POST /crm/v3/objects/contacts/batch/read").await;
    let gets_before = app.calls("GET /crm/v3/objects/contacts/{id}").await;
    let read_before = app.metric("reconcile_reads").await;
    eventually("the app's email written back", 15, || async { app.sim_email(&id).await.as_deref() == Some("c7@x.io") }).await;
    let r = app.identity("u_7", "c7@x.io", None, Some(&lease)).await;
    assert_eq!(r["state"], "confirmed");
    assert_ne!(r["leaseId"], lease.as_str(), "the lease on the old state ended");
    // 120 users with live leases are read 100 per call.
    eventually("every user read again", 15, || async { app.metric("reconcile_reads").await >= read_before + 120 }).await;
    let reads = app.calls("POST /crm/v3/objects/contacts/batch/read").await - reads_before;
    assert!(reads >= 2, "{reads} batch reads");
    let gets = app.calls("GET /crm/v3/objects/contacts/{id}").await - gets_before;
    assert!(gets < 10, "not one read per user: {gets}");
}
