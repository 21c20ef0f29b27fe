//! Lease streams (`GET /v1/leases/{id}/events`): a lease the relay ends reaches the page's open
//! stream as an `ended` event, also when it ended on another relay sharing the database.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

const HOOK_SECRET: &str = "hubspot-app-client-secret-0123";

/// Points the simulator's webhooks at the relay at `relay_url`.
async fn hook_to(http: &reqwest::Client, sim_url: &str, relay_url: &str) {
    let url = format!("{relay_url}/v1/hubspot/webhooks");
    send(http, Method::POST, format!("{sim_url}/__sim/config"), Some(json!({"webhookUrl": url, "webhookSecret": HOOK_SECRET, "webhookRetryScale": 0.001})), None)
        .await
        .expect(200);
}

/// An open stream, read as it comes.
struct Stream {
    res: reqwest::Response,
    seen: String,
}

async fn open_stream(http: &reqwest::Client, relay_url: &str, lease: &str) -> Stream {
    let res = http.get(format!("{relay_url}/v1/leases/{lease}/events")).send().await.unwrap();
    assert_eq!(res.status(), 200, "the stream opens");
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    Stream { res, seen: String::new() }
}

impl Stream {
    /// Reads until `ended` came and the stream closed (true), or `secs` passed (false): a guard
    /// against hanging, not a measure of speed.
    async fn ended(&mut self, secs: u64) -> bool {
        let read = async {
            while let Ok(Some(chunk)) = self.res.chunk().await {
                self.seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        };
        tokio::time::timeout(Duration::from_secs(secs), read).await.is_ok() && self.seen.contains("event: ended")
    }

    /// Reads for `ms` and answers whether `ended` came meanwhile.
    async fn ended_within(&mut self, ms: u64) -> bool {
        let _ = tokio::time::timeout(Duration::from_millis(ms), async {
            while let Ok(Some(chunk)) = self.res.chunk().await {
                self.seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await;
        self.seen.contains("event: ended")
    }
}

async fn edit_email_in_hubspot(http: &reqwest::Client, sim_url: &str, id: &str, email: &str) {
    send(http, Method::PATCH, format!("{sim_url}/crm/v3/objects/contacts/{id}"), Some(json!({"properties": {"email": email}})), Some("T"))
        .await
        .expect(200);
}

async fn metric(http: &reqwest::Client, relay_url: &str, name: &str) -> u64 {
    let text = http.get(format!("{relay_url}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' '))).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn an_email_edited_in_hubspot_ends_the_pages_lease_stream() {
    let app = spawn_app(&[], &["--hubspot-client-secret", HOOK_SECRET]).await;
    hook_to(&app.http, &app.sim.url, &app.url).await;
    let t = app.identity("u_s1", "a@x.io", Some(&utk(1)), None).await;
    let (id, lease) = (t["contactId"].as_str().unwrap().to_string(), t["leaseId"].as_str().unwrap().to_string());
    let mut stream = open_stream(&app.http, &app.url, &lease).await;
    // A stream on a live lease stays open: nothing ended yet.
    assert!(!stream.ended_within(600).await, "no event while the lease lives: {:?}", stream.seen);
    assert_eq!(metric(&app.http, &app.url, "hsq_lease_streams").await, 1);

    edit_email_in_hubspot(&app.http, &app.sim.url, &id, "typo@x.io").await;

    assert!(stream.ended(20).await, "the stream said ended and closed: {:?}", stream.seen);
    assert!(stream.seen.contains(&format!("data: {lease}")), "{:?}", stream.seen);
    println!("stream saw {:?}", stream.seen);
    eventually("the stream is counted closed", 5, || async { metric(&app.http, &app.url, "hsq_lease_streams").await == 0 }).await;
}

#[tokio::test]
async fn the_apps_email_change_and_a_release_end_the_stream_and_an_unknown_lease_ends_at_once() {
    let app = spawn_app(&[], &[]).await;
    let t = app.identity("u_s2", "a@x.io", None, None).await;
    let lease = t["leaseId"].as_str().unwrap().to_string();
    let mut stream = open_stream(&app.http, &app.url, &lease).await;
    assert!(!stream.ended_within(400).await);
    // The app reports another email: the lease cannot be renewed, the page must hold now.
    app.put_user("u_s2", json!({"email": "b@x.io"})).await.expect(202);
    assert!(stream.ended(20).await, "an app change ends the stream: {:?}", stream.seen);

    // A released lease.
    let t = app.identity("u_s3", "c@x.io", None, None).await;
    let lease = t["leaseId"].as_str().unwrap().to_string();
    let mut stream = open_stream(&app.http, &app.url, &lease).await;
    assert_eq!(app.release(&lease).await, 204);
    assert!(stream.ended(20).await, "a release ends the stream: {:?}", stream.seen);

    // A lease already ended, or one the relay never issued: told at once.
    let mut again = open_stream(&app.http, &app.url, &lease).await;
    assert!(again.ended(20).await, "{:?}", again.seen);
    let mut unknown = open_stream(&app.http, &app.url, &format!("l_{}", "0".repeat(32))).await;
    assert!(unknown.ended(20).await, "{:?}", unknown.seen);

    // Not a lease id: 400 naming it.
    let r = send(&app.http, Method::GET, format!("{}/v1/leases/nope/events", app.url), None, None).await;
    assert_eq!(r.expect(400)["error"], "bad_request");
}

#[tokio::test]
async fn past_the_stream_limit_the_relay_answers_503_streams_full_and_takes_new_ones_once_one_closed() {
    let app = spawn_app(&[], &["--max-streams", "2"]).await;
    let t = app.identity("u_s4", "a@x.io", None, None).await;
    let lease = t["leaseId"].as_str().unwrap().to_string();
    let a = open_stream(&app.http, &app.url, &lease).await;
    let _b = open_stream(&app.http, &app.url, &lease).await;
    let r = send(&app.http, Method::GET, format!("{}/v1/leases/{lease}/events", app.url), None, None).await;
    assert_eq!(r.status, 503);
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(r.body["error"], "streams_full");
    assert!(r.body["message"].as_str().unwrap().contains("HSQ_MAX_STREAMS"), "{}", r.body);
    println!("third stream: {} {}", r.status, r.body);
    // A page closes its stream: its place is free again.
    drop(a);
    eventually("a closed stream frees its place", 10, || async {
        let res = app.http.get(format!("{}/v1/leases/{lease}/events", app.url)).send().await.unwrap();
        res.status() == 200
    })
    .await;
}

/// A relay (in this process) on `db`, sharing `sim`, with webhooks on.
async fn relay_on(sim_url: &str, db: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let args = serve_args(sim_url, db, &["--outbox-poll-ms", "100", "--hubspot-budget-ms", "10000", "--hubspot-client-secret", HOOK_SECRET]);
    let app = hsq_relay::Application::build(args).await.unwrap();
    let url = format!("http://{}", app.addr);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    (url, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_ended_by_a_webhook_on_relay_a_ends_the_stream_open_on_relay_b() {
    // Two relays on one PostgreSQL; HubSpot's webhooks reach relay A only.
    let sim = start_sim(&[]).await;
    let db = crate::pg::fresh_database();
    let (a, _stop_a) = relay_on(&sim.url, &db).await;
    let (b, stop_b) = relay_on(&sim.url, &db).await;
    let http = reqwest::Client::new();
    hook_to(&http, &sim.url, &a).await;
    let t = send(&http, Method::POST, format!("{b}/v1/identity"), Some(json!({"assertion": mint("u_s5", "a@x.io")})), None).await.expect(200);
    let (id, lease) = (t["contactId"].as_str().unwrap().to_string(), t["leaseId"].as_str().unwrap().to_string());
    let mut stream = open_stream(&http, &b, &lease).await;
    assert!(!stream.ended_within(500).await);

    edit_email_in_hubspot(&http, &sim.url, &id, "typo@x.io").await;

    assert!(stream.ended(20).await, "relay B's stream learnt it from the database: {:?}", stream.seen);
    assert!(metric(&http, &b, "hsq_lease_stream_checks_total").await > 0);
    println!("relay B: {} store checks, {} streams ended", metric(&http, &b, "hsq_lease_stream_checks_total").await, metric(&http, &b, "hsq_lease_streams_ended_total").await);

    // A relay that stops ends its open streams (without `ended`), so its shutdown finishes.
    let t = send(&http, Method::POST, format!("{b}/v1/identity"), Some(json!({"assertion": mint("u_s6", "c@x.io")})), None).await.expect(200);
    let mut open = open_stream(&http, &b, t["leaseId"].as_str().unwrap()).await;
    let _ = stop_b.send(());
    let closed = tokio::time::timeout(Duration::from_secs(20), async { while let Ok(Some(_)) = open.res.chunk().await {} }).await;
    assert!(closed.is_ok(), "the stream closed with the relay");
    assert!(!open.seen.contains("ended"));
}

#[tokio::test]
async fn a_stream_outlives_the_relays_idle_timeout_by_its_keep_alive() {
    // A connection whose response is streaming counts as idle while no byte moves: the stream's
    // keep-alive comes at half the idle timeout, so the relay does not close it.
    let app = spawn_app(&[], &["--idle-timeout-ms", "400"]).await;
    let t = app.identity("u_s7", "a@x.io", None, None).await;
    let lease = t["leaseId"].as_str().unwrap().to_string();
    let mut stream = open_stream(&app.http, &app.url, &lease).await;
    assert!(!stream.ended_within(1500).await);
    let keep_alives = stream.seen.matches(':').count();
    assert_eq!(app.release(&lease).await, 204);
    assert!(stream.ended(20).await, "still open after 1.5 s, and told: {:?}", stream.seen);
    println!("{keep_alives} keep-alive comments in 1.5 s at a 400 ms idle timeout");
    assert!(keep_alives >= 2, "{:?}", stream.seen);
}
