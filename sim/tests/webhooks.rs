//! The simulator's webhook deliveries, received by a real HTTP endpoint on port 0: what each
//! contact change sends, the signatures, batching, retries, the in-flight bound, and the
//! duplicate and out-of-order switches.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hubspot_sim::webhooks::{signature_v1, signature_v3};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "client-secret-0123456789";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<Got>>,
    /// Answer this status to the first `fail_first` requests (0: none).
    fail_first: AtomicUsize,
    fail_status: AtomicUsize,
    /// Sleep this long (ms) before answering.
    delay_ms: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    // Recorded on arrival: a delivery the sender gives up on (too slow) still arrived.
    r.got.lock().unwrap().push(Got { headers, body });
    let now = r.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    r.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let delay = r.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    r.in_flight.fetch_sub(1, Ordering::SeqCst);
    let fail = r.fail_first.load(Ordering::SeqCst) > 0 && r.fail_first.fetch_sub(1, Ordering::SeqCst) > 0;
    if fail {
        StatusCode::from_u16(r.fail_status.load(Ordering::SeqCst) as u16).unwrap()
    } else {
        StatusCode::NO_CONTENT
    }
}

struct Setup {
    sim: String,
    hook: String,
    rx: Arc<Receiver>,
    http: reqwest::Client,
    _running: hubspot_sim::Running,
}

/// A simulator, and a receiver whose URL is given to the simulator at run time (as the relay's is).
async fn setup(sim_args: &[&str]) -> Setup {
    let mut argv = vec!["hubspot-sim", "--token", "T", "--rate-limit", "0"];
    argv.extend_from_slice(sim_args);
    let running = hubspot_sim::spawn(<hubspot_sim::Cli as clap::Parser>::parse_from(argv)).await.unwrap();
    let rx = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hooks/hubspot?x=1", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hooks/hubspot", axum::routing::post(receive)).with_state(rx.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let s = Setup { sim: running.url.clone(), hook, rx, http: reqwest::Client::new(), _running: running };
    let r = s.config(json!({ "webhookUrl": s.hook, "webhookSecret": SECRET, "webhookRetryScale": 0.0005 })).await;
    assert_eq!(r["switches"]["webhookSecret"], "[set]", "the secret is not shown back");
    s
}

impl Setup {
    async fn config(&self, patch: Value) -> Value {
        let r = self.http.post(format!("{}/__sim/config", self.sim)).body(patch.to_string()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.sim)).bearer_auth("T");
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, serde_json::from_str(&res.text().await.unwrap()).unwrap_or(Value::Null))
    }
    async fn create(&self, email: &str) -> String {
        let (s, b) = self.api(reqwest::Method::POST, "/crm/v3/objects/contacts", Some(json!({"properties": {"email": email}}))).await;
        assert_eq!(s, 201, "{b}");
        b["id"].as_str().unwrap().to_string()
    }
    /// Every event received so far, in arrival order.
    fn events(&self) -> Vec<Value> {
        self.rx.got.lock().unwrap().iter().flat_map(|g| serde_json::from_slice::<Vec<Value>>(&g.body).unwrap()).collect()
    }
    async fn wait_for(&self, what: &str, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..200 {
            let ev = self.events();
            if f(&ev) {
                return ev;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}; got {:?}", self.events());
    }
}

fn of<'a>(ev: &'a [Value], kind: &str, id: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["subscriptionType"] == kind && e["objectId"].to_string() == id).collect()
}

#[tokio::test]
async fn every_contact_change_is_delivered_as_hubspots_signed_events() {
    let s = setup(&[]).await;
    // Arrange: changes through the CRM API, v1, a merge, a deletion, a restore and a GDPR delete.
    let a = s.create("a@x.io").await;
    let (st, _) = s.api(reqwest::Method::PATCH, &format!("/crm/v3/objects/contacts/{a}"), Some(json!({"properties": {"email": "a2@x.io"}}))).await;
    assert_eq!(st, 200);
    let (st, v1) = s.api(reqwest::Method::POST, "/contacts/v1/contact/createOrUpdate/email/v@x.io", Some(json!({"properties": []}))).await;
    assert_eq!(st, 200);
    let v = v1["vid"].to_string();
    let b = s.create("b@x.io").await;
    let (st, merged) = s.api(reqwest::Method::POST, "/crm/v3/objects/contacts/merge", Some(json!({"primaryObjectId": a, "objectIdToMerge": b}))).await;
    assert_eq!(st, 200);
    let m = merged["id"].as_str().unwrap().to_string();
    let (st, _) = s.api(reqwest::Method::DELETE, &format!("/crm/v3/objects/contacts/{v}"), None).await;
    assert_eq!(st, 204);
    let r = s.http.post(format!("{}/__sim/contacts/{v}/restore", s.sim)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (st, _) = s.api(reqwest::Method::POST, "/crm/v3/objects/contacts/gdpr-delete", Some(json!({"objectId": v}))).await;
    assert_eq!(st, 204);

    // Assert: the events, with HubSpot's fields.
    let ev = s.wait_for("the privacy deletion", |ev| !of(ev, "contact.privacyDeletion", &v).is_empty()).await;
    assert_eq!(of(&ev, "contact.creation", &a).len(), 1);
    let email_changes: Vec<&Value> = of(&ev, "contact.propertyChange", &a).into_iter().filter(|e| e["propertyName"] == "email").collect();
    assert_eq!(email_changes.iter().map(|e| e["propertyValue"].as_str().unwrap()).collect::<Vec<_>>(), ["a@x.io", "a2@x.io"]);
    assert_eq!(of(&ev, "contact.creation", &v).len(), 1, "v1 createOrUpdate creates");
    let merge = of(&ev, "contact.merge", &a);
    assert_eq!(merge.len(), 1);
    assert_eq!(merge[0]["primaryObjectId"].to_string(), a);
    assert_eq!(merge[0]["mergedObjectIds"], json!([b.parse::<u64>().unwrap()]));
    assert_eq!(merge[0]["newObjectId"].to_string(), m);
    assert_eq!(of(&ev, "contact.deletion", &a).len() + of(&ev, "contact.deletion", &b).len(), 2, "both merged-away ids are deleted");
    assert!(of(&ev, "contact.propertyChange", &m).is_empty(), "a merge sends no propertyChange");
    assert_eq!(of(&ev, "contact.deletion", &v).len(), 2, "the archive, then the GDPR delete");
    assert_eq!(of(&ev, "contact.restore", &v).len(), 1);
    for e in &ev {
        for k in ["eventId", "subscriptionId", "portalId", "appId", "occurredAt", "attemptNumber", "objectId", "changeSource"] {
            assert!(!e[k].is_null(), "{k} missing from {e}");
        }
        assert_eq!(e["portalId"], 1234567);
        assert_eq!(e["attemptNumber"], 0);
    }

    // Every request carries v3 and v1 signatures over the exact URL called and the body.
    for g in s.rx.got.lock().unwrap().iter() {
        let ts = g.headers["x-hubspot-request-timestamp"].to_str().unwrap();
        assert_eq!(g.headers["x-hubspot-signature-v3"].to_str().unwrap(), signature_v3(SECRET, "POST", &s.hook, &g.body, ts));
        assert_eq!(g.headers["x-hubspot-signature"].to_str().unwrap(), signature_v1(SECRET, &g.body));
        assert_ne!(signature_v3("another secret", "POST", &s.hook, &g.body, ts), signature_v3(SECRET, "POST", &s.hook, &g.body, ts));
    }
}

#[tokio::test]
async fn batches_hold_at_most_100_events_and_collector_contacts_are_announced() {
    let s = setup(&[]).await;
    let inputs: Vec<Value> = (0..100).map(|i| json!({"properties": {"email": format!("u{i}@x.io")}})).collect();
    let (st, _) = s.api(reqwest::Method::POST, "/crm/v3/objects/contacts/batch/create", Some(json!({"inputs": inputs}))).await;
    assert_eq!(st, 201);
    // A contact the tracker's identify creates is announced too.
    let hit = format!("{}/__ptq.gif?k=1&a=1234567&vi={:032x}&pu=http%3A%2F%2Fapp.test%2F&i=email%3Dt%2540x.io", s.sim, 7);
    assert_eq!(s.http.get(hit).send().await.unwrap().status(), 200);
    let ev = s.wait_for("200 creations and email changes", |ev| ev.len() >= 202).await;
    assert_eq!(ev.iter().filter(|e| e["subscriptionType"] == "contact.creation").count(), 101);
    let got = s.rx.got.lock().unwrap().clone();
    assert!(got.len() >= 3, "202 events need at least three deliveries");
    assert!(got.iter().all(|g| serde_json::from_slice::<Vec<Value>>(&g.body).unwrap().len() <= 100));
}

#[tokio::test]
async fn a_failed_or_slow_delivery_is_retried_with_the_same_events_and_a_higher_attempt_number() {
    let s = setup(&[]).await;
    s.config(json!({ "webhookTimeoutMs": 300 })).await;
    s.rx.fail_first.store(2, Ordering::SeqCst);
    s.rx.fail_status.store(503, Ordering::SeqCst);
    let a = s.create("r@x.io").await;
    let ev = s.wait_for("the third attempt", |ev| ev.iter().any(|e| e["attemptNumber"] == 2)).await;
    let creations = of(&ev, "contact.creation", &a);
    assert_eq!(creations.iter().map(|e| e["attemptNumber"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(creations.windows(2).all(|w| w[0]["eventId"] == w[1]["eventId"]), "a retry repeats the same event");

    // Slow: an answer after the timeout counts as a failure.
    s.rx.delay_ms.store(600, Ordering::SeqCst);
    let b = s.create("slow@x.io").await;
    s.wait_for("a retry of the slow delivery", |ev| of(ev, "contact.creation", &b).len() >= 2).await;
    s.rx.delay_ms.store(0, Ordering::SeqCst);
    let log: Value = s.http.get(format!("{}/__sim/webhooks", s.sim)).send().await.unwrap().json().await.unwrap();
    assert!(log["attempts"].as_array().unwrap().iter().any(|a| a["error"].as_str().is_some_and(|e| e.contains("no answer within 300 ms"))), "{log}");
    assert!(log["attempts"].as_array().unwrap().iter().any(|a| a["status"] == 503));
}

#[tokio::test]
async fn at_most_ten_deliveries_are_in_flight() {
    let s = setup(&[]).await;
    s.rx.delay_ms.store(1500, Ordering::SeqCst);
    for i in 0..16 {
        s.create(&format!("f{i}@x.io")).await;
        tokio::time::sleep(Duration::from_millis(70)).await;
    }
    s.wait_for("every creation", |ev| ev.iter().filter(|e| e["subscriptionType"] == "contact.creation").count() >= 16).await;
    let max = s.rx.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 10, "{max} deliveries were in flight at once");
    assert!(max >= 2, "deliveries do overlap ({max})");
}

#[tokio::test]
async fn the_duplicate_and_shuffle_switches_repeat_and_reorder_events() {
    let s = setup(&["--webhook-duplicates", "--webhook-shuffle"]).await;
    let inputs: Vec<Value> = (0..100).map(|i| json!({"properties": {"email": format!("d{i}@x.io")}})).collect();
    s.api(reqwest::Method::POST, "/crm/v3/objects/contacts/batch/create", Some(json!({"inputs": inputs}))).await;
    let ev = s.wait_for("every event twice", |ev| ev.len() >= 400).await;
    let mut ids: Vec<u64> = ev.iter().map(|e| e["eventId"].as_u64().unwrap()).collect();
    let arrival = ids.clone();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "each of 200 events arrives twice");
    let first_copy: Vec<u64> = {
        let mut seen = std::collections::HashSet::new();
        arrival.into_iter().filter(|i| seen.insert(*i)).collect()
    };
    assert!(first_copy.windows(2).any(|w| w[0] > w[1]), "events arrive out of order");
}
