use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_new_user_gets_a_contact_keyed_by_their_id_and_a_confirmed_leased_email() {
    let app = spawn_app(&[], &[]).await;
    let t = app.identity("u_1", "Ann@X.io", Some(&utk(1)), None).await;
    assert_eq!(t["state"], "confirmed");
    assert_eq!(t["id"], "u_1");
    assert_eq!(t["email"], "ann@x.io");
    assert!(t["leaseId"].as_str().unwrap().starts_with("l_"));
    let valid = t["emailValidUntil"].as_i64().unwrap();
    assert!((now() + 590..=now() + 610).contains(&valid), "a 10-minute lease");
    assert_eq!(t["rotateUtk"], false);
    assert!(t.get("chat").is_none(), "chat is off by default");

    let contacts = app.contacts().await;
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["properties"]["hsq_user_id"], "u_1");
    assert_eq!(contacts[0]["id"], t["contactId"]);

    // A renewal keeps the lease id and extends it; the cache answers without calling HubSpot.
    let before = app.calls("").await;
    let r = app.identity("u_1", "ann@x.io", Some(&utk(1)), t["leaseId"].as_str()).await;
    assert_eq!(r["leaseId"], t["leaseId"]);
    assert_eq!(app.calls("").await, before, "a warm identity makes no HubSpot call");
}

#[tokio::test]
async fn an_existing_contact_with_the_email_is_linked_not_duplicated() {
    let app = spawn_app(&[], &[]).await;
    let made = app.sim_post("/crm/v3/objects/contacts", json!({"properties": {"email": "old@x.io", "firstname": "O"}})).await.expect(201);
    let t = app.identity("u_2", "old@x.io", None, None).await;
    assert_eq!(t["state"], "confirmed");
    assert_eq!(t["contactId"], made["id"]);
    let contacts = app.contacts().await;
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["properties"]["hsq_user_id"], "u_2");
}

#[tokio::test]
async fn an_email_that_another_users_contact_holds_is_a_conflict_and_never_sent() {
    let app = spawn_app(&[], &[]).await;
    app.identity("u_a", "shared@x.io", None, None).await;
    let t = app.identity("u_b", "shared@x.io", None, None).await;
    assert_eq!(t["state"], "conflict");
    assert_eq!(t["email"], serde_json::Value::Null);
    assert_eq!(t["leaseId"], serde_json::Value::Null);
    let contacts = app.contacts().await;
    assert_eq!(contacts.len(), 2, "u_b has its own contact, without the email");
    let u = app.get_user("u_b").await;
    assert_eq!(u["conflict"]["email"], "shared@x.io");
}

#[tokio::test]
async fn a_browser_last_used_by_another_user_is_told_to_rotate_its_utk() {
    let app = spawn_app(&[], &[]).await;
    let shared = utk(7);
    assert_eq!(app.identity("u_a", "a@x.io", Some(&shared), None).await["rotateUtk"], false);
    assert_eq!(app.identity("u_a", "a@x.io", Some(&shared), None).await["rotateUtk"], false);
    assert_eq!(app.identity("u_b", "b@x.io", Some(&shared), None).await["rotateUtk"], true);
    assert_eq!(app.identity("u_b", "b@x.io", Some(&utk(8)), None).await["rotateUtk"], false, "a fresh utk is bound to u_b");
}

#[tokio::test]
async fn chat_tokens_come_with_confirmed_emails_only_and_are_reused() {
    let app = spawn_app(&[], &["--chat"]).await;
    let t = app.identity("u_c", "c@x.io", None, None).await;
    assert_eq!(t["chat"]["email"], "c@x.io");
    let token = t["chat"]["token"].as_str().unwrap().to_string();
    assert!(t["chat"]["exp"].as_i64().unwrap() > now() + 10 * 3600);
    let again = app.identity("u_c", "c@x.io", None, None).await;
    assert_eq!(again["chat"]["token"], token.as_str(), "cached under 12 h");
    assert_eq!(app.calls("tokens/create").await, 1);

    // A pending email gets no chat.
    let p = app.identity("u_c", "c2@x.io", None, None).await;
    assert_eq!(p["state"], "pending");
    assert!(p.get("chat").is_none());
}

#[tokio::test]
async fn without_visitor_identification_the_ticket_is_confirmed_without_chat() {
    let app = spawn_app(&["--chat-tier", "starter"], &["--chat"]).await;
    let t = app.identity("u_s", "s@x.io", None, None).await;
    assert_eq!(t["state"], "confirmed");
    assert!(t.get("chat").is_none());
}

#[tokio::test]
async fn concurrent_reads_of_different_users_are_coalesced_and_the_same_user_is_read_once() {
    let app = spawn_app(&[], &[]).await;
    // 40 users that HubSpot already knows by id (as after `hsq-relay sync`).
    let inputs: Vec<_> = (0..40).map(|i| json!({"id": format!("s{i}"), "idProperty": "hsq_user_id", "properties": {"email": format!("s{i}@x.io")}})).collect();
    app.sim_post("/crm/v3/objects/contacts/batch/upsert", json!({"inputs": inputs})).await.expect(200);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let url = app.url.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"assertion": mint(&format!("s{i}"), &format!("s{i}@x.io"))});
            reqwest::Client::new().post(format!("{url}/v1/identity")).json(&body).send().await.unwrap().json::<serde_json::Value>().await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap()["state"], "confirmed");
    }
    let reads = app.calls("batch/read").await + app.calls("GET /crm/v3/objects/contacts/{id}").await;
    assert!(reads < 40, "40 cold reads took {reads} HubSpot calls");

    // Ten tabs of one new user at once: one contact, created once.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let url = app.url.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"assertion": mint("same", "same@x.io")});
            reqwest::Client::new().post(format!("{url}/v1/identity")).json(&body).send().await.unwrap().json::<serde_json::Value>().await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap()["state"], "confirmed");
    }
    assert_eq!(app.calls("POST /crm/v3/objects/contacts 201").await, 1);
    assert_eq!(app.contacts().await.iter().filter(|c| c["email"] == "same@x.io").count(), 1);
}

#[tokio::test]
async fn health_and_metrics_report_without_secrets() {
    let app = spawn_app(&[], &[]).await;
    app.identity("u_m", "m@x.io", None, None).await;
    let h = reqwest::get(format!("{}/healthz", app.url)).await.unwrap();
    assert_eq!(h.status(), 200);
    let m = reqwest::get(format!("{}/metrics", app.url)).await.unwrap().text().await.unwrap();
    assert!(m.contains("hsq_requests_total{route=\"/v1/identity\",status=\"200\"} 1"), "{m}");
    assert!(m.contains("hsq_live_leases 1"));
    assert!(m.contains("hsq_outbox_depth 0"));
    assert!(m.contains("hsq_hubspot_calls_total{status=\"201\"}"));
    assert!(!m.contains(SECRET) && !m.contains(ADMIN) && !m.contains("Bearer"));
}

#[tokio::test]
async fn a_renewal_that_changes_nothing_writes_nothing_and_a_change_still_ends_confirmation() {
    // Arrange: a page's confirmed ticket; its assertion is reused, as a page renews.
    let app = spawn_app(&[], &[]).await;
    let page = mint("u_w", "w@x.io");
    let renew = |lease: &str| json!({"assertion": page, "utk": utk(1), "leaseId": lease});
    let first = app.identity_raw(json!({"assertion": page, "utk": utk(1)})).await.expect(200);
    let lease = first["leaseId"].as_str().unwrap().to_string();

    // Act: a second later (a write would move the lease's end by at least a second), the renewal
    // is answered from one read: same lease, same stored end (600 s leases are written again
    // only after 60 s).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = app.identity_raw(renew(&lease)).await.expect(200);
    assert_eq!((again["state"].as_str(), again["leaseId"].as_str()), (Some("confirmed"), Some(lease.as_str())), "{again}");
    assert_eq!(again["emailValidUntil"], first["emailValidUntil"], "the lease was not written again");
    assert!(again["exp"].as_i64() > first["exp"].as_i64(), "the ticket itself is new: {again}");

    // The app changes the email: the same renewal is no longer confirmed (the full path runs).
    app.put_user("u_w", json!({"email": "w2@x.io"})).await.expect(202);
    let after = app.identity_raw(renew(&lease)).await.expect(200);
    assert_eq!((after["state"].as_str(), after["email"].as_str()), (Some("pending"), None), "{after}");
}

#[tokio::test]
async fn a_lease_is_extended_once_a_tenth_of_it_has_passed() {
    let app = spawn_app(&[], &["--lease-secs", "10"]).await;
    let page = mint("u_t", "t@x.io");
    let first = app.identity_raw(json!({"assertion": page})).await.expect(200);
    let lease = first["leaseId"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = app.identity_raw(json!({"assertion": page, "leaseId": lease})).await.expect(200);
    assert_eq!(later["leaseId"].as_str(), Some(lease));
    assert!(later["emailValidUntil"].as_i64() > first["emailValidUntil"].as_i64(), "{first} then {later}");
}
