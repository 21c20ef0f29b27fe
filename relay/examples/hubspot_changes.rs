//! Run with `cargo run --release -p hsq-relay --example hubspot_changes [USERS] [DELIVERIES]`.
//!
//! Measures, against hubspot-sim on this machine (simulator, relay and client share its cores):
//! 1. the time from an email edited in HubSpot to the relay no longer leasing the old email, with
//!    webhooks (the simulator's real deliveries) and with reconciliation only (`HSQ_RECONCILE_SECS=2`);
//! 2. how many signed webhook deliveries per second `POST /v1/hubspot/webhooks` absorbs (10 in
//!    flight, as HubSpot sends at most), and how fast the worker applies the stored events.

use clap::Parser;
use hsq_relay::relay::now_ms;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";
const HOOK: &str = "bench-client-secret";

fn mint(sub: &str, email: &str) -> String {
    let now = now_ms() / 1000;
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let c = json!({"sub": sub, "email": email, "aud": "hsq-relay", "iat": now, "exp": now + 900});
    jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

struct Stack {
    sim: hubspot_sim::Running,
    url: String,
    relay: Arc<hsq_relay::relay::Relay>,
    http: reqwest::Client,
    db: std::path::PathBuf,
}

async fn stack(relay_extra: &[&str]) -> Stack {
    let sim = hubspot_sim::spawn(<hubspot_sim::Cli as Parser>::parse_from(["s", "--token", "T", "--rate-limit", "0"])).await.unwrap();
    let http = reqwest::Client::new();
    http.post(format!("{}/crm/v3/properties/contacts", sim.url))
        .bearer_auth("T")
        .json(&json!({"name": "hsq_user_id", "label": "id", "type": "string", "fieldType": "text", "groupName": "contactinformation", "hasUniqueValue": true}))
        .send()
        .await
        .unwrap();
    let db = std::env::temp_dir().join(format!("hsq-changes-{:016x}.db", rand::random::<u64>()));
    let mut argv: Vec<String> = ["hsq-relay", "serve", "--hubspot-access-token", "T", "--hubspot-api-base", &sim.url, "--addr", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.extend(["--assertion-secrets".into(), format!("k1:{SECRET}"), "--admin-token".into(), "admin-token-0123456789".into()]);
    argv.extend(["--db".into(), db.display().to_string(), "--rate-limit-per-ip".into(), "0".into(), "--hubspot-rate-limit".into(), "100000".into()]);
    argv.extend(relay_extra.iter().map(|s| s.to_string()));
    let hsq_relay::config::Command::Serve(args) = hsq_relay::config::Cli::parse_from(argv).command else { unreachable!() };
    let app = hsq_relay::Application::build(args).await.unwrap();
    let url = format!("http://{}", app.addr);
    let relay = app.relay.clone();
    tokio::spawn(app.run_until(std::future::pending()));
    Stack { sim, url, relay, http, db }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", self.db.display()));
        }
    }
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!("median {:.0} ms, max {:.0} ms (n={})", v[v.len() / 2], v[v.len() - 1], v.len())
}

/// Edits each user's email in HubSpot in turn and times until the relay holds no live lease for
/// that user any more (the lease on the old email ended).
async fn edit_to_lease_end(s: &Stack, users: usize, tag: &str) -> Vec<f64> {
    let mut ids = Vec::new();
    for i in 0..users {
        let (sub, email) = (format!("{tag}{i}"), format!("{tag}{i}@x.io"));
        let t: Value = s.http.post(format!("{}/v1/identity", s.url)).json(&json!({"assertion": mint(&sub, &email)})).send().await.unwrap().json().await.unwrap();
        assert_eq!(t["state"], "confirmed", "{t}");
        ids.push((sub, t["contactId"].as_str().unwrap().to_string()));
    }
    let mut times = Vec::new();
    for (i, (sub, id)) in ids.iter().enumerate() {
        let started = Instant::now();
        let r = s
            .http
            .patch(format!("{}/crm/v3/objects/contacts/{id}", s.sim.url))
            .bearer_auth("T")
            .json(&json!({"properties": {"email": format!("{tag}{i}-edited@x.io")}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        loop {
            let mut tx = s.relay.store.begin_user(sub).await.unwrap();
            let live = tx.live_lease_until("", now_ms()).await.unwrap();
            drop(tx);
            if live.is_none() {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                panic!("{sub}: the old lease never ended");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let users: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let deliveries: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);

    // 1a. Webhooks: the simulator delivers to the relay.
    let s = stack(&["--hubspot-client-secret", HOOK, "--reconcile-secs", "0"]).await;
    let hook = format!("{}/v1/hubspot/webhooks", s.url);
    s.http.post(format!("{}/__sim/config", s.sim.url)).body(json!({"webhookUrl": hook, "webhookSecret": HOOK}).to_string()).send().await.unwrap();
    println!("edit in HubSpot -> old email no longer leased, webhooks: {}", stats(edit_to_lease_end(&s, users, "w").await));

    // 2. Deliveries per second: signed batches of 10 events (HubSpot's typical small batch) and of
    // 100, about contacts no user is linked to, 10 requests in flight.
    for per in [10usize, 100] {
        let n = if per == 100 { deliveries / 5 } else { deliveries };
        let base = rand::random::<u32>() as i64 * 1000;
        let bodies: Vec<String> = (0..n)
            .map(|d| {
                let evs: Vec<Value> = (0..per)
                    .map(|e| json!({"eventId": d * per + e, "subscriptionId": 1, "portalId": 1234567, "appId": 1, "occurredAt": base + (d * per + e) as i64,
                        "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 900_000 + d, "propertyName": "email",
                        "propertyValue": format!("p{d}-{e}@x.io"), "changeSource": "CRM"}))
                    .collect();
                serde_json::to_string(&evs).unwrap()
            })
            .collect();
        let bodies = Arc::new(bodies);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (bodies, next, http, hook) = (bodies.clone(), next.clone(), s.http.clone(), hook.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(body) = bodies.get(i) else { break };
                    let ts = now_ms().to_string();
                    let sig = hubspot_sim::webhooks::signature_v3(HOOK, "POST", &hook, body.as_bytes(), &ts);
                    let r = http
                        .post(&hook)
                        .header("content-type", "application/json")
                        .header("x-hubspot-signature-v3", sig)
                        .header("x-hubspot-request-timestamp", ts)
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let took = started.elapsed().as_secs_f64();
        // Claimed events are due again once their claim would run out: wait for none left.
        while !s.relay.store.due_webhook_events(now_ms() + 3_600_000, 1).await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let drained = started.elapsed().as_secs_f64();
        println!(
            "webhook deliveries of {per} events absorbed: {:.0}/s ({:.0} events/s); all {} events applied after {:.2} s ({:.0} events/s)",
            n as f64 / took,
            (n * per) as f64 / took,
            n * per,
            drained,
            (n * per) as f64 / drained
        );
    }
    drop(s);

    // 1b. Reconciliation only, every 2 s.
    let s = stack(&["--reconcile-secs", "2"]).await;
    println!("edit in HubSpot -> old email no longer leased, reconciliation every 2 s: {}", stats(edit_to_lease_end(&s, users.min(10), "r").await));
}
