use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn a_hubspot_that_keeps_failing_gives_unknown_and_the_next_request_recovers() {
    let app = spawn_app(&[], &["--hubspot-budget-ms", "800"]).await;
    app.fault(json!({"path": "/crm", "status": 500, "count": 1000})).await;
    let t = app.identity("u_1", "a@x.io", None, None).await;
    assert_eq!(t["state"], "unknown");
    assert_eq!(t["email"], serde_json::Value::Null);
    assert_eq!(app.get_user("u_1").await["lastError"].as_str().map(|e| e.contains("500")), Some(true));
    app.http.delete(format!("{}/__sim/faults", app.sim.url)).send().await.unwrap();
    assert_eq!(app.identity("u_1", "a@x.io", None, None).await["state"], "confirmed");
}

#[tokio::test]
async fn injected_429s_500s_timeouts_and_dropped_connections_are_retried() {
    let app = spawn_app(&[], &["--hubspot-timeout-ms", "400"]).await;
    let cases = [
        json!({"path": "/crm", "status": 429, "count": 2}),
        json!({"path": "/crm", "status": 502, "count": 2}),
        json!({"path": "/crm", "latencyMs": 1500, "count": 1}),
        json!({"path": "/crm", "drop": true, "count": 2}),
    ];
    for (i, f) in cases.into_iter().enumerate() {
        app.fault(f.clone()).await;
        let t = app.identity(&format!("f{i}"), &format!("f{i}@x.io"), None, None).await;
        assert_eq!(t["state"], "confirmed", "after {f}");
    }
    assert_eq!(app.contacts().await.len(), 4, "retries created nothing twice");
    let m = reqwest::get(format!("{}/metrics", app.url)).await.unwrap().text().await.unwrap();
    for status in ["429", "502", "timeout", "error"] {
        assert!(m.contains(&format!("hsq_hubspot_calls_total{{status=\"{status}\"}}")), "{status} counted: {m}");
    }
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_long_one_answers_503_with_retry_after() {
    // The budget covers all of a request's HubSpot calls (the 1 s wait and three calls here).
    let app = spawn_app(&["--retry-after"], &["--hubspot-budget-ms", "3000"]).await;
    // The simulator's injected 429 says Retry-After: 1; the relay waits and succeeds.
    app.fault(json!({"path": "/crm", "status": 429, "count": 1})).await;
    assert_eq!(app.identity("r1", "r1@x.io", None, None).await["state"], "confirmed");

    // A real rate limit: 3 calls per 10 s with Retry-After. A new user takes three (read by id,
    // read by email, create), so the next one has to wait longer than a page may.
    // (The simulator's limit is one more: creating the unique property spent one call.)
    let app = spawn_app(&["--rate-limit", "4", "--retry-after"], &["--hubspot-budget-ms", "1500", "--hubspot-rate-limit", "3"]).await;
    app.identity("r2", "r2@x.io", None, None).await; // spends the window
    let r = app.identity_raw(json!({"assertion": mint("r3", "r3@x.io")})).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"], "hubspot_unavailable");
    assert!(r.headers.get("retry-after").is_some());
}

#[tokio::test]
async fn a_429_storm_during_an_email_change_delays_it_but_applies_it_once() {
    let app = spawn_app(&["--retry-after"], &[]).await;
    let t = app.identity("u_s", "a@x.io", None, None).await;
    app.release(t["leaseId"].as_str().unwrap()).await;
    app.fault(json!({"path": "/crm/v3/objects/contacts/", "method": "PATCH", "status": 429, "count": 3})).await;
    app.put_user("u_s", json!({"email": "b@x.io"})).await.expect(202);
    eventually("the change applied through the storm", 20, || async {
        app.contacts().await.iter().any(|c| c["email"] == "b@x.io")
    })
    .await;
    assert_eq!(app.calls("PATCH /crm/v3/objects/contacts/{id} 429").await, 3);
    assert_eq!(app.calls("PATCH /crm/v3/objects/contacts/{id} 200").await, 1, "the change, once");
    assert_eq!(app.contacts().await.len(), 1);
}
