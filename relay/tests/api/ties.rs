//! utk ties: the ticket's `tiedUtk` says HubSpot has tied the page's `hubspotutk` to the user's
//! contact, as HubSpot's own read by user token answers; the tie follows HubSpot, not the page.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

const HOOK_SECRET: &str = "hubspot-app-client-secret-0123";

/// A hit reaching HubSpot's collector from the browser `utk`, with the identity `identity`.
async fn hit(app: &TestApp, utk: &str, identity: &str) {
    let r = app
        .http
        .get(format!("{}/__ptq.gif", app.sim.url))
        .query(&[("k", "1"), ("a", "1234567"), ("vi", utk), ("pu", "http://app.test/"), ("i", identity)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn hubspot(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Res {
    send(&app.http, method, format!("{}{path}", app.sim.url), body, Some("T")).await
}

#[tokio::test]
async fn a_utk_is_tied_once_hubspot_says_so_and_not_for_a_lost_hit_or_another_cookie() {
    let app = spawn_app(&[], &[]).await;
    let (u1, u2) = (utk(0x71), utk(0x72));
    let t = app.identity("u_t1", "t1@x.io", Some(&u1), None).await;
    assert_eq!(t["state"], "confirmed");
    assert_eq!(t["tiedUtk"], Value::Null, "no identify with the email has reached HubSpot yet");
    // The page's hit carrying the email is lost: HubSpot ties nothing, and the relay does not guess.
    let t = app.identity("u_t1", "t1@x.io", Some(&u1), None).await;
    assert_eq!(t["tiedUtk"], Value::Null, "a lost hit ties nothing");

    // The hit arrives: HubSpot ties the utk to the contact.
    hit(&app, &u1, "email=t1%40x.io&id=u_t1").await;
    let t = app.identity("u_t1", "t1@x.io", Some(&u1), None).await;
    assert_eq!(t["tiedUtk"], u1.as_str(), "HubSpot's read by user token names the user's contact");
    // Recorded: a renewal on the warm path says so without asking HubSpot.
    let calls = app.calls("/contacts/v1/contact/utk/").await;
    let lease = t["leaseId"].as_str().unwrap().to_string();
    let w = app.identity("u_t1", "t1@x.io", Some(&u1), Some(&lease)).await;
    assert_eq!(w["tiedUtk"], u1.as_str());
    let t = app.identity("u_t1", "t1@x.io", Some(&u1), None).await;
    assert_eq!(t["tiedUtk"], u1.as_str());
    assert_eq!(app.calls("/contacts/v1/contact/utk/").await, calls, "a recorded tie is not asked again");

    // The cookie changed (reset(), rotateUtk, a cleared browser): that utk is not tied.
    let t = app.identity("u_t1", "t1@x.io", Some(&u2), None).await;
    assert_eq!(t["tiedUtk"], Value::Null);
    // Without a utk: nothing to tie.
    assert_eq!(app.identity("u_t1", "t1@x.io", None, None).await["tiedUtk"], Value::Null);
    println!("utk read calls: {}", app.calls("/contacts/v1/contact/utk/").await);
}

#[tokio::test]
async fn a_tie_to_another_users_contact_is_not_this_users() {
    let app = spawn_app(&[], &[]).await;
    let u = utk(0x73);
    app.identity("u_a", "a@x.io", Some(&u), None).await;
    hit(&app, &u, "email=a%40x.io&id=u_a").await;
    // Another user on the same browser: the relay answers rotateUtk, and no tie.
    let t = app.identity("u_b", "b@x.io", Some(&u), None).await;
    assert_eq!(t["rotateUtk"], true);
    assert_eq!(t["tiedUtk"], Value::Null);
}

#[tokio::test]
async fn a_tie_ends_with_its_contact_and_follows_the_survivor_of_a_merge() {
    let app = spawn_app(&[], &["--hubspot-client-secret", HOOK_SECRET]).await;
    let url = format!("{}/v1/hubspot/webhooks", app.url);
    send(&app.http, Method::POST, format!("{}/__sim/config", app.sim.url), Some(json!({"webhookUrl": url, "webhookSecret": HOOK_SECRET, "webhookRetryScale": 0.001})), None)
        .await
        .expect(200);
    let u = utk(0x74);
    let t = app.identity("u_m", "m@x.io", Some(&u), None).await;
    let first = t["contactId"].as_str().unwrap().to_string();
    hit(&app, &u, "email=m%40x.io&id=u_m").await;
    assert_eq!(app.identity("u_m", "m@x.io", Some(&u), None).await["tiedUtk"], u.as_str());

    // A marketer merges a lead into the user's contact: HubSpot makes a new id and moves the
    // utk's history with it; the relay follows the user there and finds the tie there too.
    let lead = hubspot(&app, Method::POST, "/crm/v3/objects/contacts", Some(json!({"properties": {"email": "lead@x.io"}}))).await.expect(201);
    hubspot(&app, Method::POST, "/crm/v3/objects/contacts/merge", Some(json!({"primaryObjectId": first, "objectIdToMerge": lead["id"]}))).await.expect(200);
    let mut merged = Value::Null;
    eventually("the user followed the merge", 20, || {
        let app = &app;
        let first = first.clone();
        async move { app.get_user("u_m").await["contactId"].as_str().is_some_and(|c| c != first) }
    })
    .await;
    for _ in 0..50 {
        merged = app.identity("u_m", "m@x.io", Some(&u), None).await;
        if merged["state"] == "confirmed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_ne!(merged["contactId"], first.as_str());
    assert_eq!(merged["tiedUtk"], u.as_str(), "the survivor holds the utk's tie: {merged}");

    // The contact is deleted: the tie goes with it; the user's next contact is tied again only
    // once a hit with the email reaches HubSpot.
    let id = merged["contactId"].as_str().unwrap().to_string();
    hubspot(&app, Method::DELETE, &format!("/crm/v3/objects/contacts/{id}"), None).await;
    eventually("the link dropped", 20, || async { app.get_user("u_m").await["contactId"].as_str() != Some(id.as_str()) }).await;
    let mut again = Value::Null;
    for _ in 0..50 {
        again = app.identity("u_m", "m@x.io", Some(&u), None).await;
        if again["state"] == "confirmed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_ne!(again["contactId"], id.as_str(), "a new contact: {again}");
    assert_eq!(again["tiedUtk"], Value::Null, "no tie to the new contact yet: {again}");
}
