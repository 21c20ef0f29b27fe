//! Two relays on one PostgreSQL database (always PostgreSQL, whatever `HSQ_TEST_DB` says): what
//! one relay decided alone before is serialized in the database.

use crate::crash::{start_relay_with, stats};
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// A relay (in this process) on `db`, sharing `sim`; polls the outbox often so tests are quick.
async fn relay_on(sim_url: &str, db: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    // A generous HubSpot budget: this machine may be busy, and "unknown" is not what is tested.
    let args = serve_args(sim_url, db, &["--outbox-poll-ms", "100", "--hubspot-budget-ms", "10000"]);
    let app = hsq_relay::Application::build(args).await.unwrap();
    let url = format!("http://{}", app.addr);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    (url, tx)
}

async fn ident(http: &reqwest::Client, url: &str, sub: &str, email: &str, lease: Option<&str>) -> Value {
    ident_with(http, url, &mint(sub, email), lease).await
}

async fn ident_with(http: &reqwest::Client, url: &str, assertion: &str, lease: Option<&str>) -> Value {
    send(http, Method::POST, format!("{url}/v1/identity"), Some(json!({"assertion": assertion, "leaseId": lease})), None).await.expect(200)
}

async fn contact_emails(http: &reqwest::Client, sim: &str) -> Vec<(String, String)> {
    let c: Value = http.get(format!("{sim}/__sim/contacts")).send().await.unwrap().json().await.unwrap();
    c["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["properties"]["hsq_user_id"].as_str().unwrap_or("").to_string(), c["email"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_on_relay_a_holds_a_change_sent_to_relay_b_until_released_on_b() {
    // Arrange: two relays, one database, one HubSpot.
    let sim = start_sim(&[]).await;
    let db = crate::pg::fresh_database();
    let (a, _stop_a) = relay_on(&sim.url, &db).await;
    let (b, _stop_b) = relay_on(&sim.url, &db).await;
    let http = reqwest::Client::new();
    // The page's assertion, minted before the change.
    let page = mint_claims(json!({"sub": "u1", "email": "old@x.io", "aud": "hsq-relay", "iat": now() - 60, "exp": now() + 300}));
    let t = ident_with(&http, &a, &page, None).await;
    assert_eq!(t["state"], "confirmed");
    let lease = t["leaseId"].as_str().unwrap().to_string();

    // Act: the app reports the change to relay B.
    send(&http, Method::PUT, format!("{b}/v1/users/u1"), Some(json!({"email": "new@x.io"})), Some(ADMIN)).await.expect(202);

    // Assert: the lease relay A gave holds it, however long both outboxes look (each polls every
    // 100 ms); relay B answers a renewal on the old email with pending and no email.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(contact_emails(&http, &sim.url).await, vec![("u1".to_string(), "old@x.io".to_string())]);
    let user = send(&http, Method::GET, format!("{b}/v1/users/u1"), None, Some(ADMIN)).await.expect(200);
    assert_eq!(user["pendingJobs"].as_array().unwrap().len(), 1, "{user}");
    let renewed = ident_with(&http, &b, &page, Some(&lease)).await;
    assert_eq!((renewed["state"].as_str(), renewed["email"].as_str()), (Some("pending"), None), "{renewed}");

    // Releasing the lease on relay B lets the change through, once.
    assert_eq!(send(&http, Method::DELETE, format!("{b}/v1/leases/{lease}"), None, None).await.status, 204);
    eventually("the change reaches HubSpot", 15, || async { contact_emails(&http, &sim.url).await == vec![("u1".into(), "new@x.io".into())] })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stats(&http, &sim.url, "PATCH").await, 1, "applied exactly once by the two relays");
    let t = ident(&http, &a, "u1", "new@x.io", None).await;
    assert_eq!((t["state"].as_str(), t["email"].as_str()), (Some("confirmed"), Some("new@x.io")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_sigkilled_after_accepting_a_change_loses_nothing_and_the_other_applies_it_once() {
    // Arrange: two relay processes on one database; pages on relay A hold leases.
    let sim = start_sim(&[]).await;
    let db = crate::pg::fresh_database();
    // A claim relay A held when it died runs out after 10 s (30 s by default).
    let env = [("HSQ_OUTBOX_CLAIM_SECS", "10"), ("HSQ_OUTBOX_POLL_MS", "100")];
    let (mut relay_a, a) = start_relay_with(&sim.url, &db, &env);
    let (mut relay_b, b) = start_relay_with(&sim.url, &db, &env);
    let http = reqwest::Client::new();
    let mut leases = Vec::new();
    for i in 0..5 {
        let t = ident(&http, &a, &format!("k{i}"), &format!("k{i}@x.io"), None).await;
        assert_eq!(t["state"], "confirmed");
        leases.push(t["leaseId"].as_str().unwrap().to_string());
        // Act: relay A accepts a change for each user ...
        send(&http, Method::PUT, format!("{a}/v1/users/k{i}"), Some(json!({"email": format!("k{i}-new@x.io")})), Some(ADMIN)).await.expect(202);
    }
    // ... and dies at once.
    relay_a.kill().unwrap(); // SIGKILL
    relay_a.wait().unwrap();

    // Assert: the pages release their leases on relay B, and relay B applies every change once.
    for l in &leases {
        assert_eq!(send(&http, Method::DELETE, format!("{b}/v1/leases/{l}"), None, None).await.status, 204);
    }
    eventually("all five changes applied by relay B", 60, || async {
        contact_emails(&http, &sim.url).await.iter().filter(|(_, e)| e.ends_with("-new@x.io")).count() == 5
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stats(&http, &sim.url, "PATCH").await, 5, "each change applied exactly once");
    assert_eq!(contact_emails(&http, &sim.url).await.len(), 5, "no duplicate contact");
    let _ = relay_b.kill();
    let _ = relay_b.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_new_users_hitting_both_relays_at_once_get_one_contact_each() {
    // Arrange: two relays on one database; 10 users HubSpot has never seen.
    let sim = start_sim(&[]).await;
    let db = crate::pg::fresh_database();
    let (a, _stop_a) = relay_on(&sim.url, &db).await;
    let (b, _stop_b) = relay_on(&sim.url, &db).await;
    let http = reqwest::Client::new();

    // Act: each user's first page asks both relays at the same moment.
    let mut calls = Vec::new();
    for i in 0..10 {
        for url in [&a, &b] {
            let (http, url) = (http.clone(), url.clone());
            calls.push(tokio::spawn(async move { (i, ident(&http, &url, &format!("n{i}"), &format!("n{i}@x.io"), None).await) }));
        }
    }
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }

    // Assert: one contact per user, and every answer names it.
    let contacts = contact_emails(&http, &sim.url).await;
    assert_eq!(contacts.len(), 10, "{contacts:?}");
    for i in 0..10 {
        let sub = format!("n{i}");
        assert_eq!(contacts.iter().filter(|(s, _)| *s == sub).count(), 1, "{sub} has one contact");
        let ids: std::collections::HashSet<_> = answers.iter().filter(|(j, _)| *j == i).map(|(_, t)| t["contactId"].clone()).collect();
        assert_eq!(ids.len(), 1, "both relays answer {sub}'s one contact: {ids:?}");
    }
    assert!(answers.iter().all(|(_, t)| t["state"] == "confirmed"), "a new user's own email is confirmed at once");
}
