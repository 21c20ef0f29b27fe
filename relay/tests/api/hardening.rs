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
    // The outbox records the outcome just after HubSpot answered.
    eventually("the job finished", 10, || async { app.get_user("u_a").await["lastJob"]["state"] == "done" }).await;
    let u = app.get_user("u_a").await;
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
    // The outbox records the outcome just after HubSpot answered.
    eventually("the job finished", 10, || async { app.get_user("u_q").await["lastJob"]["state"] == "done" }).await;
    let u = app.get_user("u_q").await;
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
    eventually("the job finished", 10, || async { app.get_user("u_r").await["lastJob"]["state"] == "done" }).await;
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

// Finding 6: behind a reverse proxy every visitor shared one rate-limit bucket.

async fn identity_from(app: &TestApp, header: Option<(&str, &str)>) -> u16 {
    let mut req = app.http.post(format!("{}/v1/identity", app.url)).header("content-type", "application/json").body("{\"assertion\": \"x\"}");
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn f6_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let app = spawn_app(&[], &["--rate-limit-per-ip", "1", "--trusted-proxies", "127.0.0.0/8, ::1"]).await;
    let a = Some(("x-forwarded-for", "203.0.113.1"));
    let statuses: Vec<u16> = [identity_from(&app, a).await, identity_from(&app, a).await, identity_from(&app, a).await].into();
    assert!(statuses.contains(&429), "one client is limited: {statuses:?}");
    assert_eq!(identity_from(&app, Some(("x-forwarded-for", "198.51.100.2, 127.0.0.1"))).await, 401, "another client is not");
    assert_eq!(identity_from(&app, Some(("forwarded", "for=198.51.100.3;proto=https"))).await, 401, "Forwarded is read too");
    assert_eq!(identity_from(&app, Some(("forwarded", "for=\"[2001:db8::1]:4711\""))).await, 401);

    // Without trusted proxies the headers are ignored: a client cannot pick its bucket.
    let app = spawn_app(&[], &["--rate-limit-per-ip", "1"]).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(identity_from(&app, Some(("x-forwarded-for", &format!("203.0.113.{i}")))).await);
    }
    assert!(statuses.contains(&429), "spoofed X-Forwarded-For is ignored: {statuses:?}");
}

// Finding 7: secrets were printed at start-up.

fn run_relay(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hsq-relay"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

const GOOD_SECRET: &str = "GOOD-secret-value-0123456789abcdefXYZ";

#[tokio::test]
async fn f7_a_malformed_setting_never_prints_a_secret() {
    let base = [("HUBSPOT_ACCESS_TOKEN", "pat-na1-TOKENVALUE"), ("HSQ_ADMIN_TOKEN", "admin-token-0123456789"), ("HSQ_ADDR", "127.0.0.1:0")];
    let cases: [(&str, &str, &str); 4] = [
        ("HSQ_ASSERTION_SECRETS", "k1:GOOD-secret-value-0123456789abcdefXYZ,k2short", "GOOD-secret"),
        ("HSQ_ASSERTION_SECRETS", "k1:GOOD-secret-value-0123456789abcdefXYZ,k2:tooShortSecretValue", "tooShortSecret"),
        ("HSQ_ADMIN_TOKEN", "shortADMINtok", "shortADMINtok"),
        ("HUBSPOT_ACCESS_TOKEN", "   ", "pat-na1"),
    ];
    for (name, value, secret) in cases {
        let mut env: Vec<(&str, &str)> = base.iter().copied().filter(|(k, _)| *k != name).collect();
        env.push((name, value));
        if name != "HSQ_ASSERTION_SECRETS" {
            env.push(("HSQ_ASSERTION_SECRETS", "k1:GOOD-secret-value-0123456789abcdefXYZ"));
        }
        let (code, out) = run_relay(&env);
        assert_eq!(code, Some(2), "{name}: {out}");
        assert!(out.contains(name), "the setting is named: {out}");
        assert!(!out.contains(secret) && !out.contains(GOOD_SECRET), "{name}: a secret was printed: {out}");
    }
}

// Finding 9: errors without a JSON body.

#[tokio::test]
async fn f9_every_error_is_typed_json() {
    let app = spawn_app(&[], &[]).await;
    let check = |r: Res, status: u16, code: &str| {
        assert_eq!(r.status.as_u16(), status, "{}", r.body);
        assert_eq!(r.body["error"], code, "{}", r.body);
        assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.body);
    };
    let r = send(&app.http, Method::GET, format!("{}/v1/identity", app.url), None, None).await;
    assert!(r.headers.get("allow").is_some(), "405 keeps Allow");
    check(r, 405, "method_not_allowed");
    check(send(&app.http, Method::PATCH, format!("{}/v1/users/u", app.url), None, Some(ADMIN)).await, 405, "method_not_allowed");
    check(send(&app.http, Method::GET, format!("{}/v1/users/{}", app.url, "x".repeat(9000)), None, Some(ADMIN)).await, 414, "uri_too_long");
    check(send(&app.http, Method::GET, format!("{}/v1/users/%FF%FE", app.url), None, Some(ADMIN)).await, 400, "bad_request");
    check(send(&app.http, Method::DELETE, format!("{}/v1/leases/%C3%28", app.url), None, None).await, 400, "bad_request");

    // A request that outlives the request timeout: 503 `timeout` with Retry-After.
    let app = spawn_app(&[], &["--hubspot-budget-ms", "2000", "--request-timeout-ms", "300"]).await;
    app.fault(json!({"path": "/crm", "latencyMs": 5000, "count": 10})).await;
    let r = app.identity_raw(json!({"assertion": mint("u_t", "t@x.io")})).await;
    assert!(r.headers.get("retry-after").is_some());
    check(r, 503, "timeout");
    let m = metrics(&app).await;
    assert_eq!(metric(&m, "hsq_requests_total{route=\"/v1/identity\",status=\"503\"}"), 1, "counted: {m}");
}

// Finding 10: header rules.

#[tokio::test]
async fn f10_a_token_without_kid_or_with_crit_is_refused() {
    let app = spawn_app(&[], &[]).await;
    let claims = json!({"sub": "u_h", "email": "h@x.io", "aud": "hsq-relay", "iat": now(), "exp": now() + 300});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let no_kid = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some("k1".into());
    h.crit = Some(vec!["exp".into()]);
    let crit = jsonwebtoken::encode(&h, &claims, &key).unwrap();
    for (token, word) in [(no_kid, "kid"), (crit, "crit")] {
        let r = app.identity_raw(json!({"assertion": token})).await;
        assert_eq!(r.status, 401, "{word}: {}", r.body);
        assert!(r.body["message"].as_str().unwrap().contains(word), "{}", r.body);
    }
    assert!(app.contacts().await.is_empty());
}

// Finding 11: a start-up panic on a non-ASCII origin.

#[tokio::test]
async fn f11_no_setting_makes_the_relay_panic() {
    let origins = hsq_relay::config::parse_origins("http://é.example, https://bücher.example:8443").unwrap();
    assert_eq!(origins.0, vec!["http://xn--9ca.example", "https://xn--bcher-kva.example:8443"], "kept as browsers send them");
    for (name, value) in [
        ("HSQ_ALLOWED_ORIGINS", "http://é/ü"),
        ("HSQ_ALLOWED_ORIGINS", "http://ééééé"),
        ("HSQ_ALLOWED_ORIGINS", "https://"),
        ("HSQ_HUBSPOT_BUDGET_MS", "18446744073709551615"),
        ("HSQ_CACHE_SECS", "18446744073709551615"),
        ("HSQ_HUBSPOT_TIMEOUT_MS", "18446744073709551615"),
        ("HSQ_TRUSTED_PROXIES", "10.0.0.0/99"),
    ] {
        let mut env = vec![
            ("HUBSPOT_ACCESS_TOKEN", "T"),
            ("HSQ_ADMIN_TOKEN", "admin-token-0123456789"),
            ("HSQ_ASSERTION_SECRETS", "k1:GOOD-secret-value-0123456789abcdefXYZ"),
            ("HSQ_ADDR", "127.0.0.1:0"),
            ("HSQ_DB", "/nonexistent-dir/x.db"),
        ];
        env.push((name, value));
        let (code, out) = run_relay(&env);
        assert!(!out.contains("panicked"), "{name}={value}: {out}");
        assert_ne!(code, Some(101), "{name}={value}: {out}");
        let flag = format!("--{}", name.trim_start_matches("HSQ_").to_ascii_lowercase().replace('_', "-"));
        assert!(out.contains(name) || out.contains(&flag) || out.contains("HSQ_DB"), "a setting is named: {name}={value}: {out}");
    }
}

// Finding 12: lease endpoints were not rate limited.

#[tokio::test]
async fn f12_lease_endpoints_are_rate_limited_per_client() {
    let app = spawn_app(&[], &["--rate-limit-per-ip", "1"]).await;
    let mut statuses = Vec::new();
    for i in 0..4u32 {
        let id = format!("l_{:032x}", i);
        statuses.push(send(&app.http, Method::DELETE, format!("{}/v1/leases/{id}", app.url), None, None).await.status.as_u16());
        statuses.push(send(&app.http, Method::POST, format!("{}/v1/leases/{id}/release", app.url), None, None).await.status.as_u16());
    }
    assert!(statuses.contains(&204) && statuses.contains(&429), "{statuses:?}");
}

// Finding 8: leases and utk bindings were never deleted; /metrics scanned every lease.

#[tokio::test]
async fn f8_dead_leases_and_stale_utk_bindings_are_pruned_and_live_leases_are_counted_by_index() {
    use hsq_relay::store::{Retention, LEASE_KEEP_MS, UTK_KEEP_MS};
    let db = temp_sqlite();
    let s = hsq_relay::store::open(&db, 2).await.unwrap();
    let now = 1_800_000_000_000i64;
    let mut tx = s.begin_user("u").await.unwrap();
    tx.issue_lease("l_live", "a@x.io", now + 60_000).await.unwrap();
    tx.issue_lease("l_released", "a@x.io", now + 60_000).await.unwrap();
    tx.issue_lease("l_old", "a@x.io", now - LEASE_KEEP_MS - 1).await.unwrap();
    tx.issue_lease("l_recent", "a@x.io", now - 1000).await.unwrap();
    tx.commit().await.unwrap();
    s.release_lease("l_released", now).await.unwrap();
    s.bind_utk(&utk(1), "u", now - UTK_KEEP_MS - 1).await.unwrap();
    s.bind_utk(&utk(2), "u", now - 1000).await.unwrap();
    let p = s.prune(now, Retention::default()).await.unwrap();
    // The released lease is kept, like an expired one, until an hour after its end (repair.rs
    // reads who held an email then).
    assert_eq!((p.leases, p.utk_bindings), (1, 1), "{p:?}");
    assert_eq!(s.live_leases(now).await.unwrap(), 1);
    let mut tx = s.begin_user("u").await.unwrap();
    assert!(tx.renew_lease("l_live", "a@x.io", now, now + 120_000).await.unwrap(), "a live lease survives");
    tx.commit().await.unwrap();
    assert_eq!(s.bind_utk(&utk(1), "v", now).await.unwrap(), None, "the stale binding is gone");
    assert_eq!(s.bind_utk(&utk(2), "v", now).await.unwrap().as_deref(), Some("u"), "a recent binding stays");

    // What /metrics and the prune ask for is answered from an index, not a scan of every lease.
    let c = rusqlite::Connection::open(&db).unwrap();
    let plan = |sql: &str| -> String {
        let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        st.query_map([], |r| r.get::<_, String>(3)).unwrap().map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
    };
    for sql in ["SELECT COUNT(*) FROM leases WHERE released = 0 AND expires_at > 5", "SELECT rowid FROM utk_bindings WHERE at < 5"] {
        let p = plan(sql);
        assert!(p.contains("USING") && p.contains("INDEX"), "{sql}: {p}");
    }
    drop(s);
    remove_db(&db);
}

// Issue 25, part 6: a signed privacy deletion was trusted without reading HubSpot.

#[tokio::test]
async fn a_privacy_deletion_of_a_contact_hubspot_still_holds_erases_nobody() {
    const HOOK_SECRET: &str = "hubspot-app-client-secret-0123";
    let app = spawn_app(&[], &["--hubspot-client-secret", HOOK_SECRET]).await;
    let held = app.identity("u_held", "held@x.io", None, None).await;
    let gone = app.identity("u_gone", "gone@x.io", None, None).await;
    let (held_id, gone_id) = (held["contactId"].as_str().unwrap().to_string(), gone["contactId"].as_str().unwrap().to_string());
    // HubSpot deletes u_gone's contact for privacy; u_held's it still holds. The simulator sends
    // no webhooks here: the test delivers both events itself, u_held's (wrong) first.
    app.sim_post("/crm/v3/objects/contacts/gdpr-delete", json!({"objectId": gone_id})).await.expect(204);
    let ms = now() * 1000;
    let body = json!([
        {"eventId": 1, "subscriptionType": "contact.privacyDeletion", "objectId": held_id.parse::<u64>().unwrap(), "occurredAt": ms, "attemptNumber": 0, "portalId": 1},
        {"eventId": 2, "subscriptionType": "contact.privacyDeletion", "objectId": gone_id.parse::<u64>().unwrap(), "occurredAt": ms, "attemptNumber": 0, "portalId": 1},
    ])
    .to_string();
    let ts = ms.to_string();
    let sig = hubspot_sim::webhooks::signature_v3(HOOK_SECRET, "POST", &format!("{}/v1/hubspot/webhooks", app.url), body.as_bytes(), &ts);
    let r = app
        .http
        .post(format!("{}/v1/hubspot/webhooks", app.url))
        .header("content-type", "application/json")
        .header("x-hubspot-signature-v3", sig)
        .header("x-hubspot-request-timestamp", ts)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Events are applied in the order received: once u_gone is erased, u_held's event was applied.
    eventually("u_gone erased", 10, || async { app.get_user("u_gone").await["erased"] == true }).await;
    let u = app.get_user("u_held").await;
    println!("u_held after a privacy deletion of the contact HubSpot holds: {u}");
    assert_eq!(u["erased"], false, "{u}");
    assert_eq!(u["contactId"], held_id.as_str(), "{u}");
    let t = app.identity("u_held", "held@x.io", None, None).await;
    assert_eq!((t["state"].as_str(), t["email"].as_str()), (Some("confirmed"), Some("held@x.io")), "{t}");
    let t = app.identity("u_gone", "gone@x.io", None, None).await;
    assert_eq!(t["state"], "unknown", "the person HubSpot erased stays erased: {t}");
}
