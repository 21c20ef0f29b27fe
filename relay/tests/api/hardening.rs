//! The findings of the adversarial review of issue 14, one test (or more) each.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn hubspot_email(app: &TestApp, sub: &str) -> Option<String> {
    app.contacts().await.iter().find(|c| c["properties"]["hsq_user_id"] == sub).and_then(|c| c["email"].as_str().map(str::to_string))
}

async fn metrics(app: &TestApp) -> String {
    reqwest::get(format!("{}/metrics", app.url)).await.unwrap().text().await.unwrap()
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines().filter(|l| l.starts_with(line_start)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

/// A user with a contact and no live lease, so a change goes at once.
async fn confirmed_user(app: &TestApp, sub: &str, email: &str) {
    let t = app.identity(sub, email, None, None).await;
    assert_eq!(t["state"], "confirmed");
    app.release(t["leaseId"].as_str().unwrap()).await;
}

// Finding 1: a change HubSpot refused once was lost for good.

#[tokio::test]
async fn f1_a_401_on_the_email_write_is_retried_alarmed_and_applied_later() {
    let app = spawn_app(&[], &[]).await;
    confirmed_user(&app, "u_a", "a@x.io").await;
    app.fault(json!({"path": "/crm/v3/objects/contacts/", "method": "PATCH", "status": 401, "count": 2})).await;
    app.put_user("u_a", json!({"email": "b@x.io"})).await.expect(202);
    eventually("the user shows the auth error", 10, || async {
        app.get_user("u_a").await["lastError"].as_str().is_some_and(|e| e.contains("access token"))
    })
    .await;
    let m = metrics(&app).await;
    assert!(metric(&m, "hsq_alarms_total{alarm=\"hubspot_auth\"}") >= 1, "{m}");
    eventually("the change applied once the token works again", 20, || async {
        hubspot_email(&app, "u_a").await.as_deref() == Some("b@x.io")
    })
    .await;
    let u = app.get_user("u_a").await;
    assert_eq!(u["lastJob"]["state"], "done", "{u}");
    assert_eq!(u["lastError"], Value::Null, "{u}");
}

#[tokio::test]
async fn f1_unknown_and_read_only_properties_are_refused_up_front_naming_them() {
    let app = spawn_app(&[], &[]).await;
    confirmed_user(&app, "u_p", "a@x.io").await;
    for (prop, word) in [("no_such_property", "not a contact property"), ("createdate", "read-only"), ("lastmodifieddate", "read-only")] {
        let r = app.put_user("u_p", json!({"email": "b@x.io", "properties": {prop: "x"}})).await;
        assert_eq!(r.status, 400, "{prop}: {}", r.body);
        let msg = r.body["message"].as_str().unwrap();
        assert!(msg.contains(prop) && msg.contains(word), "{prop}: {msg}");
    }
    assert_eq!(app.get_user("u_p").await["lastJob"], Value::Null, "nothing was queued");
    // A good property goes with the email.
    app.put_user("u_p", json!({"email": "b@x.io", "properties": {"firstname": "Bea"}})).await.expect(202);
    eventually("the change applied", 10, || async { hubspot_email(&app, "u_p").await.as_deref() == Some("b@x.io") }).await;
    let c = app.contacts().await;
    assert_eq!(c[0]["properties"]["firstname"], "Bea");
}

#[tokio::test]
async fn f1_a_property_hubspot_refuses_when_applied_never_blocks_the_email() {
    let app = spawn_app(&[], &[]).await;
    confirmed_user(&app, "u_q", "a@x.io").await;
    // HubSpot refuses the first write (as it would a property deleted since the PUT was checked).
    app.fault(json!({"path": "/crm/v3/objects/contacts/", "method": "PATCH", "status": 400, "count": 1})).await;
    app.put_user("u_q", json!({"email": "b@x.io", "properties": {"firstname": "Bea"}})).await.expect(202);
    eventually("the email applied alone", 10, || async { hubspot_email(&app, "u_q").await.as_deref() == Some("b@x.io") }).await;
    let u = app.get_user("u_q").await;
    assert_eq!(u["lastJob"]["state"], "done", "{u}");
    assert!(u["lastError"].as_str().is_some_and(|e| e.contains("properties were not applied")), "{u}");
}

#[tokio::test]
async fn f1_a_put_after_a_refused_change_queues_it_again_and_says_so() {
    let app = spawn_app(&[], &[]).await;
    confirmed_user(&app, "u_r", "a@x.io").await;
    app.fault(json!({"path": "/crm/v3/objects/contacts/", "method": "PATCH", "status": 400, "count": 1})).await;
    app.put_user("u_r", json!({"email": "b@x.io"})).await.expect(202);
    eventually("the change failed", 10, || async { app.get_user("u_r").await["lastJob"]["state"] == "failed" }).await;
    let r = app.put_user("u_r", json!({"email": "b@x.io"})).await.expect(202);
    assert_eq!(r["queued"], true, "{r}");
    eventually("the change applied", 10, || async { hubspot_email(&app, "u_r").await.as_deref() == Some("b@x.io") }).await;
    assert_eq!(app.get_user("u_r").await["lastJob"]["state"], "done");
    let r = app.put_user("u_r", json!({"email": "b@x.io"})).await.expect(202);
    assert_eq!(r["queued"], false, "{r}");
    assert!(r["reason"].as_str().is_some_and(|s| s.contains("already")), "a PUT that queues nothing says why: {r}");
}

// Finding 2: `properties` could overwrite identity fields.

#[tokio::test]
async fn f2_identity_properties_in_any_case_are_refused_naming_them() {
    let app = spawn_app(&[], &[]).await;
    confirmed_user(&app, "u_i", "a@x.io").await;
    for prop in ["hsq_user_id", "HSQ_USER_ID", "hs_object_id", "EMAIL", "Email", "email", "hs_additional_emails", "hubspotutk"] {
        let r = app.put_user("u_i", json!({"email": "b@x.io", "properties": {prop: "u_other"}})).await;
        assert_eq!(r.status, 400, "{prop}: {}", r.body);
        assert!(r.body["message"].as_str().unwrap().contains(prop), "{prop}: {}", r.body);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let c = app.contacts().await;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["properties"]["hsq_user_id"], "u_i", "still linked");
    assert_eq!(c[0]["email"], "a@x.io");
}

// Finding 3: integer wrap-around in the assertion checks.

#[tokio::test]
async fn f3_iat_and_exp_out_of_range_are_refused_without_wrapping() {
    let app = spawn_app(&[], &[]).await;
    let n = now();
    for (iat, exp) in [(json!(i64::MIN), json!(n + 300)), (json!(-1), json!(n + 300)), (json!(n), json!(i64::MAX)), (json!(i64::MIN), json!(i64::MAX))] {
        let a = mint_claims(json!({"sub": "u_w", "email": "w@x.io", "aud": "hsq-relay", "iat": iat, "exp": exp}));
        let r = app.identity_raw(json!({"assertion": a})).await;
        assert_eq!(r.status, 401, "iat {iat} exp {exp}: {}", r.body);
    }
    assert!(app.contacts().await.is_empty());
    let r = send(&app.http, Method::GET, format!("{}/v1/users/u_w", app.url), None, Some(ADMIN)).await;
    assert_eq!(r.status, 404, "no app email was pinned: {}", r.body);
}

// Finding 4: a future iat (inside the skew) outranked a later PUT.

#[tokio::test]
async fn f4_an_assertion_with_a_skewed_future_iat_does_not_undo_a_later_put() {
    let app = spawn_app(&[], &[]).await;
    confirmed_user(&app, "u_k", "a@x.io").await;
    // The page's assertion, signed by a server whose clock runs 50 s ahead, before the change.
    let skewed = mint_claims(json!({"sub": "u_k", "email": "a@x.io", "aud": "hsq-relay", "iat": now() + 50, "exp": now() + 300}));
    app.put_user("u_k", json!({"email": "b@x.io"})).await.expect(202);
    eventually("the change applied", 10, || async { hubspot_email(&app, "u_k").await.as_deref() == Some("b@x.io") }).await;
    let t = app.identity_raw(json!({"assertion": skewed})).await.expect(200);
    assert_ne!(t["state"], "confirmed", "{t}");
    assert_eq!(app.get_user("u_k").await["appEmail"], "b@x.io");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(hubspot_email(&app, "u_k").await.as_deref(), Some("b@x.io"), "HubSpot is not turned back");
}

// Finding 5: same-user requests piled up behind a slow HubSpot.

#[tokio::test]
async fn f5_concurrent_identities_of_one_user_share_one_hubspot_read_and_all_get_json() {
    let app = spawn_app(&[], &["--hubspot-budget-ms", "1000"]).await;
    app.fault(json!({"path": "/crm", "method": "GET", "latencyMs": 10000, "count": 100})).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (http, url) = (app.http.clone(), app.url.clone());
        tasks.push(tokio::spawn(async move {
            send(&http, Method::POST, format!("{url}/v1/identity"), Some(json!({"assertion": mint("u_slow", "slow@x.io")})), None).await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => assert_eq!(r.body["state"], "unknown", "{}", r.body),
            503 => {
                assert_eq!(r.body["error"], "hubspot_unavailable", "{}", r.body);
                assert!(r.headers.get("retry-after").is_some());
            }
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    eventually("the one read is counted", 10, || async { metric(&metrics(&app).await, "hsq_hubspot_calls_total") >= 1 }).await;
    let m = metrics(&app).await;
    assert_eq!(metric(&m, "hsq_hubspot_calls_total"), 1, "one HubSpot read for ten waiting requests: {m}");
    assert_eq!(metric(&m, "hsq_requests_total{route=\"/v1/identity\""), 10, "every answer counted: {m}");
}
