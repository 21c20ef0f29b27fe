//! A HubSpot write whose answer never came lands later than a newer one: HubSpot completes a
//! request whose client gave up, and the simulator does too (issue 25, part 1). Both stores: run
//! with and without HSQ_TEST_DB=postgres.

use crate::crash::start_relay_with;
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SUB: &str = "u_late";

/// What the sampler saw.
#[derive(Debug, Default)]
struct Seen {
    samples: u64,
    confirmed: u64,
    /// Confirmed answers whose leased email HubSpot did not hold right after.
    violations: Vec<String>,
}

/// The page side, every ~50 ms: asks the relay for a ticket with the app's current email and,
/// when it answers `confirmed`, checks that HubSpot holds that email at that moment, then gives
/// the lease back (so it never holds a change up). Its assertions are signed a minute before the
/// test, so they never outrank the app's reports.
struct Sampler {
    relay: Arc<Mutex<String>>,
    email: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Seen>,
}

impl Sampler {
    fn start(relay_url: &str, sim_url: &str, email: &str) -> Sampler {
        let relay = Arc::new(Mutex::new(relay_url.to_string()));
        let email = Arc::new(Mutex::new(email.to_string()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, e, s, sim) = (relay.clone(), email.clone(), stop.clone(), sim_url.to_string());
        let iat = now() - 60;
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            let mut seen = Seen::default();
            while !s.load(Ordering::SeqCst) {
                let (url, email) = (r.lock().unwrap().clone(), e.lock().unwrap().clone());
                let assertion = mint_claims(json!({"sub": SUB, "email": email, "aud": "hsq-relay", "iat": iat, "exp": iat + 800}));
                let answer = http.post(format!("{url}/v1/identity")).json(&json!({"assertion": assertion})).send().await;
                // A relay being restarted does not answer: nothing to check then.
                if let Ok(res) = answer {
                    let t: Value = res.json().await.unwrap_or_default();
                    seen.samples += 1;
                    if t["state"] == "confirmed" {
                        seen.confirmed += 1;
                        let held = hubspot_email(&http, &sim).await;
                        if held.as_deref() != t["email"].as_str() {
                            seen.violations.push(format!("confirmed {} leased until {} while HubSpot holds {held:?}", t["email"], t["emailValidUntil"]));
                        }
                        let lease = t["leaseId"].as_str().unwrap_or_default();
                        let _ = http.delete(format!("{url}/v1/leases/{lease}")).send().await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen
        });
        Sampler { relay, email, stop, task }
    }

    fn set_email(&self, email: &str) {
        *self.email.lock().unwrap() = email.to_string();
    }

    fn set_relay(&self, url: &str) {
        *self.relay.lock().unwrap() = url.to_string();
    }

    async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

async fn hubspot_email(http: &reqwest::Client, sim: &str) -> Option<String> {
    let c: Value = http.get(format!("{sim}/__sim/contacts")).send().await.ok()?.json().await.ok()?;
    c["contacts"].as_array()?.iter().find(|c| c["properties"]["hsq_user_id"] == SUB).and_then(|c| c["email"].as_str().map(str::to_string))
}

async fn ticket(http: &reqwest::Client, relay: &str, email: &str) -> Value {
    let iat = now() - 60;
    let assertion = mint_claims(json!({"sub": SUB, "email": email, "aud": "hsq-relay", "iat": iat, "exp": iat + 800}));
    send(http, Method::POST, format!("{relay}/v1/identity"), Some(json!({"assertion": assertion})), None).await.expect(200)
}

async fn put_email(http: &reqwest::Client, relay: &str, email: &str) {
    send(http, Method::PUT, format!("{relay}/v1/users/{SUB}"), Some(json!({"email": email})), Some(ADMIN)).await.expect(202);
}

/// Waits (up to `secs`) until the relay answers `confirmed c` and HubSpot holds `c`, then a second
/// more, and answers whether it did.
async fn ends_confirmed_on(http: &reqwest::Client, relay: &Mutex<String>, sim: &str, email: &str, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let url = relay.lock().unwrap().clone();
        let t = ticket(http, &url, email).await;
        if t["state"] == "confirmed" && hubspot_email(http, sim).await.as_deref() == Some(email) {
            let lease = t["leaseId"].as_str().unwrap_or_default();
            let _ = http.delete(format!("{url}/v1/leases/{lease}")).send().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Until the simulator has taken the one injected fault (the request it delays is inside "HubSpot").
async fn fault_taken(http: &reqwest::Client, sim: &str) {
    eventually("the slow PATCH reached HubSpot", 10, || async {
        let f: Value = http.get(format!("{sim}/__sim/faults")).send().await.unwrap().json().await.unwrap();
        f["faults"].as_array().is_some_and(|f| f.is_empty())
    })
    .await;
}

async fn report(what: &str, sampler: Sampler, http: &reqwest::Client, sim: &str, ended: bool, started: Instant) {
    let seen = sampler.finish().await;
    let patches = crate::crash::stats(http, sim, "PATCH").await;
    let held = hubspot_email(http, sim).await;
    println!(
        "{what}: {} samples, {} confirmed, {} confirmed on an email HubSpot did not hold; {patches} PATCHes; HubSpot ends on {held:?} after {:.1} s",
        seen.samples,
        seen.confirmed,
        seen.violations.len(),
        started.elapsed().as_secs_f64()
    );
    for v in seen.violations.iter().take(5) {
        println!("  {v}");
    }
    assert!(seen.violations.is_empty(), "{what}: the relay leased an email HubSpot did not hold: {:?}", seen.violations.first());
    assert!(seen.confirmed > 0, "{what}: the sampler saw confirmed tickets (it checks something)");
    assert!(ended, "{what}: the relay ends confirmed on c@x.io with HubSpot holding it (HubSpot holds {held:?})");
    assert_eq!(held.as_deref(), Some("c@x.io"));
}

#[tokio::test]
async fn a_write_that_timed_out_and_lands_after_a_newer_one_is_never_leased_over_and_is_written_again() {
    // The first PATCH takes 3 s; the relay gives up on it after 1 s and retries (applied at once);
    // the app then changes the email again, before the abandoned PATCH lands.
    let app = spawn_app(&[], &["--hubspot-timeout-ms", "1000", "--hubspot-late-write-ms", "4000", "--reconcile-secs", "0"]).await;
    let http = reqwest::Client::new();
    let t = ticket(&http, &app.url, "a@x.io").await;
    assert_eq!(t["state"], "confirmed");
    app.release(t["leaseId"].as_str().unwrap()).await;

    let started = Instant::now();
    let sampler = Sampler::start(&app.url, &app.sim.url, "a@x.io");
    app.fault(json!({"path": "/crm/v3/objects/contacts/", "method": "PATCH", "latencyMs": 3000})).await;
    sampler.set_email("b@x.io");
    put_email(&http, &app.url, "b@x.io").await;
    eventually("the retried PATCH applied b", 10, || async { hubspot_email(&http, &app.sim.url).await.as_deref() == Some("b@x.io") }).await;
    sampler.set_email("c@x.io");
    put_email(&http, &app.url, "c@x.io").await;
    // Past the abandoned PATCH's landing (3 s after it was sent).
    while started.elapsed() < Duration::from_millis(3500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ended = ends_confirmed_on(&http, &sampler.relay, &app.sim.url, "c@x.io", 15).await;
    report("timeout", sampler, &http, &app.sim.url, ended, started).await;
    assert_eq!(app.contacts().await.len(), 1, "one contact");
}

#[tokio::test]
async fn a_write_left_in_hubspot_by_a_sigkilled_relay_is_never_leased_over_and_is_written_again() {
    let sim = start_sim(&[]).await;
    let db = temp_db();
    let http = reqwest::Client::new();
    // On PostgreSQL the restarted relay waits for the dead one's claim to run out (5 s): the
    // abandoned PATCH must still be inside HubSpot after that to land after a newer write.
    let (latency, late) = if on_postgres() { ("7000", "8000") } else { ("3000", "4000") };
    let env = [("HSQ_OUTBOX_CLAIM_SECS", "5"), ("HSQ_HUBSPOT_TIMEOUT_MS", "1000"), ("HSQ_HUBSPOT_LATE_WRITE_MS", late), ("HSQ_RECONCILE_SECS", "0")];
    let (mut relay, url) = start_relay_with(&sim.url, &db, &env);
    let t = ticket(&http, &url, "a@x.io").await;
    assert_eq!(t["state"], "confirmed");
    send(&http, Method::DELETE, format!("{url}/v1/leases/{}", t["leaseId"].as_str().unwrap()), None, None).await.expect(204);

    let started = Instant::now();
    let sampler = Sampler::start(&url, &sim.url, "a@x.io");
    send(&http, Method::POST, format!("{}/__sim/faults", sim.url), Some(json!({"path": "/crm/v3/objects/contacts/", "method": "PATCH", "latencyMs": latency.parse::<u64>().unwrap()})), None)
        .await
        .expect(201);
    sampler.set_email("b@x.io");
    put_email(&http, &url, "b@x.io").await;
    fault_taken(&http, &sim.url).await;
    relay.kill().unwrap(); // SIGKILL, while its PATCH is inside HubSpot
    relay.wait().unwrap();

    let killed = started.elapsed();
    let (_relay, url) = start_relay_with(&sim.url, &db, &env);
    sampler.set_relay(&url);
    // The restarted relay has had time to act on the change it found (and a SQLite one, which
    // clears its claims at start, to write it again) before the app changes the email again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampler.set_email("c@x.io");
    put_email(&http, &url, "c@x.io").await;
    println!("sigkill: killed at {:.2} s, restarted and c@x.io reported at {:.2} s", killed.as_secs_f64(), started.elapsed().as_secs_f64());
    while started.elapsed() < Duration::from_millis(latency.parse::<u64>().unwrap() + 500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ended = ends_confirmed_on(&http, &sampler.relay, &sim.url, "c@x.io", 25).await;
    report("sigkill", sampler, &http, &sim.url, ended, started).await;
    let c: Value = http.get(format!("{}/__sim/contacts", sim.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(c["total"], 1, "one contact");
    remove_db(&db);
}
