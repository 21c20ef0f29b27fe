use crate::helpers::*;
use serde_json::json;

async fn hubspot_email(app: &TestApp, sub: &str) -> Option<String> {
    app.contacts().await.iter().find(|c| c["properties"]["hsq_user_id"] == sub).and_then(|c| c["email"].as_str().map(str::to_string))
}

#[tokio::test]
async fn a_changed_email_is_pending_until_applied_by_contact_id_then_confirmed() {
    let app = spawn_app(&[], &[]).await;
    let t = app.identity("u_1", "a@x.io", None, None).await;
    app.release(t["leaseId"].as_str().unwrap()).await;

    // The next page renders with the new email before anything else knows (a second later: two
    // assertions of one second with different emails keep the first until a newer one or a PUT).
    let next = mint_claims(json!({"sub": "u_1", "email": "b@x.io", "aud": "hsq-relay", "iat": now() + 1, "exp": now() + 300}));
    let p = app.identity_raw(json!({"assertion": next})).await.expect(200);
    assert_eq!(p["state"], "pending");
    assert_eq!(p["email"], serde_json::Value::Null);
    eventually("the change applied", 10, || async { hubspot_email(&app, "u_1").await.as_deref() == Some("b@x.io") }).await;
    let next = mint_claims(json!({"sub": "u_1", "email": "b@x.io", "aud": "hsq-relay", "iat": now() + 1, "exp": now() + 300}));
    let c = app.identity_raw(json!({"assertion": next})).await.expect(200);
    assert_eq!(c["state"], "confirmed");
    assert_eq!(c["email"], "b@x.io");
    assert_eq!(app.contacts().await.len(), 1, "never a second contact");
    assert_eq!(app.calls("idProperty=email").await, 0, "HubSpot is never updated by email");

    // A stale tab's assertion with the old email cannot turn it back.
    let mut stale = json!({"sub": "u_1", "email": "a@x.io", "aud": "hsq-relay", "iat": now() - 120, "exp": now() + 60});
    let s = app.identity_raw(json!({"assertion": mint_claims(stale.take())})).await.expect(200);
    assert_eq!(s["state"], "pending");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(hubspot_email(&app, "u_1").await.as_deref(), Some("b@x.io"));
}

#[tokio::test]
async fn no_change_while_either_of_two_tabs_holds_a_lease_and_applied_right_after_both_release() {
    let app = spawn_app(&[], &[]).await;
    let tab1 = app.identity("u_2", "old@x.io", Some(&utk(1)), None).await;
    let tab2 = app.identity("u_2", "old@x.io", Some(&utk(1)), None).await;
    let (l1, l2) = (tab1["leaseId"].as_str().unwrap().to_string(), tab2["leaseId"].as_str().unwrap().to_string());
    assert_ne!(l1, l2);

    // The app's worker reports the change.
    let r = app.put_user("u_2", json!({"email": "new@x.io"})).await.expect(202);
    assert_eq!(r["queued"], true);
    // Renewals now answer pending, with no email (the tab's assertion was minted before the PUT:
    // one minted in a later second would state the old email after the app's report).
    let before = mint_claims(json!({"sub": "u_2", "email": "old@x.io", "aud": "hsq-relay", "iat": now() - 60, "exp": now() + 300}));
    let renew = app.identity_raw(json!({"assertion": before, "utk": utk(1), "leaseId": l1})).await.expect(200);
    assert_eq!(renew["state"], "pending");
    assert_eq!(renew["email"], serde_json::Value::Null);

    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(hubspot_email(&app, "u_2").await.as_deref(), Some("old@x.io"), "two leases live");
    assert_eq!(app.get_user("u_2").await["pendingJobs"][0]["toEmail"], "new@x.io");
    assert_eq!(app.release(&l1).await, 204);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(hubspot_email(&app, "u_2").await.as_deref(), Some("old@x.io"), "one lease still live");

    // The second tab goes away: its sendBeacon release leaves a grace (10 s) for a next page of
    // that tab to take the lease over; then the change goes.
    let beacon = app.http.post(format!("{}/v1/leases/{l2}/release", app.url)).header("content-type", "text/plain").body("").send().await.unwrap();
    assert_eq!(beacon.status(), 204);
    let released = std::time::Instant::now();
    eventually("the change applied after both releases", 20, || async { hubspot_email(&app, "u_2").await.as_deref() == Some("new@x.io") }).await;
    assert!(released.elapsed() >= std::time::Duration::from_secs(9), "not before the grace ended");
    // The outbox records the outcome just after HubSpot answered.
    eventually("the job finished", 10, || async { app.get_user("u_2").await["pendingJobs"].as_array().unwrap().is_empty() }).await;
    assert_eq!(app.contacts().await.len(), 1);
}

#[tokio::test]
async fn a_conflict_is_flagged_and_a_merge_policy_merges_an_unlinked_holder() {
    for (policy, expect_state) in [("flag", "conflict"), ("merge", "confirmed")] {
        let app = spawn_app(&[], &["--conflict-policy", policy]).await;
        let t = app.identity("u_m", "a@x.io", None, None).await;
        app.release(t["leaseId"].as_str().unwrap()).await;
        // Someone (a form, an import) already made a contact with the new email, linked to no user.
        let holder = app.sim_post("/crm/v3/objects/contacts", json!({"properties": {"email": "b@x.io"}})).await.expect(201);
        app.put_user("u_m", json!({"email": "b@x.io"})).await.expect(202);
        eventually("the change to end", 10, || async {
            let u = app.get_user("u_m").await;
            u["pendingJobs"].as_array().unwrap().is_empty()
        })
        .await;
        let t = app.identity("u_m", "b@x.io", None, None).await;
        assert_eq!(t["state"], expect_state, "policy {policy}");
        if policy == "flag" {
            let u = app.get_user("u_m").await;
            assert_eq!(u["conflict"]["contactId"], holder["id"]);
            assert_eq!(app.contacts().await.len(), 2);
        } else {
            assert_eq!(t["email"], "b@x.io");
            let contacts = app.contacts().await;
            assert_eq!(contacts.len(), 1, "merged into one");
            assert_eq!(contacts[0]["properties"]["hsq_user_id"], "u_m");
        }
    }
}

#[tokio::test]
async fn a_merge_policy_never_merges_another_users_contact() {
    let app = spawn_app(&[], &["--conflict-policy", "merge"]).await;
    let t = app.identity("u_1", "one@x.io", None, None).await;
    app.release(t["leaseId"].as_str().unwrap()).await;
    let t2 = app.identity("u_2", "two@x.io", None, None).await;
    app.release(t2["leaseId"].as_str().unwrap()).await;
    app.put_user("u_1", json!({"email": "two@x.io"})).await.expect(202);
    eventually("the change to end", 10, || async { app.get_user("u_1").await["pendingJobs"].as_array().unwrap().is_empty() }).await;
    assert_eq!(app.identity("u_1", "two@x.io", None, None).await["state"], "conflict");
    assert_eq!(app.contacts().await.len(), 2);
}

