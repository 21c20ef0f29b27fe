//! New users' contacts are created in `batch/upsert` calls of up to 100 (by the unique id
//! property), as reads are batched: a burst of sign-ups costs a call per 100 users, not per user.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Patient enough for a busy machine: a slow answer is not what these tests are about.
const PATIENT: &[&str] = &["--hubspot-budget-ms", "60000", "--request-timeout-ms", "120000", "--hubspot-timeout-ms", "120000"];

/// The relay's `hsq_contacts_awaiting_creation` gauge.
async fn awaiting_creation(app: &TestApp) -> u64 {
    let text = app.http.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix("hsq_contacts_awaiting_creation ")).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Every user's first identity request at once; answers each user's ticket (the status added).
async fn new_users(url: &str, users: Vec<(String, String)>) -> HashMap<String, Value> {
    let mut tasks = Vec::new();
    for (sub, email) in users {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let body = json!({"assertion": mint(&sub, &email)});
            let res = reqwest::Client::new().post(format!("{url}/v1/identity")).json(&body).send().await.unwrap();
            let status = res.status();
            let mut body = res.json::<Value>().await.unwrap();
            body["status"] = json!(status.as_u16());
            (sub, body)
        }));
    }
    let mut out = HashMap::new();
    for t in tasks {
        let (sub, ticket) = t.await.unwrap();
        out.insert(sub, ticket);
    }
    out
}

/// Contacts by the user they are linked to.
async fn by_user(app: &TestApp) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for c in app.contacts().await {
        let sub = c["properties"]["hsq_user_id"].as_str().unwrap_or("").to_string();
        out.entry(sub).or_default().push(c);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_users_arriving_while_a_create_is_in_flight_are_created_100_per_batch_call() {
    // Arrange: HubSpot holds the first POST (the first new user's lone create) until released.
    let app = spawn_app(&[], PATIENT).await;
    app.fault(json!({"path": "/crm/v3/objects/contacts", "method": "POST", "hold": true})).await;
    let first = {
        let url = app.url.clone();
        tokio::spawn(async move {
            let body = json!({"assertion": mint("first", "first@x.io")});
            reqwest::Client::new().post(format!("{url}/v1/identity")).json(&body).send().await.unwrap().json::<Value>().await.unwrap()
        })
    };
    eventually("the first user's create is held", 60, || async { awaiting_creation(&app).await == 1 }).await;

    // Act: 250 users HubSpot has never seen, at once; HubSpot lets the held call go once all of
    // them wait for their contact.
    let n = 250;
    let all = {
        let app_url = app.url.clone();
        let users: Vec<_> = (0..n).map(|i| (format!("b{i}"), format!("b{i}@x.io"))).collect();
        tokio::spawn(async move { new_users(&app_url, users).await })
    };
    eventually("every new user waits for its contact", 120, || async { awaiting_creation(&app).await == n as u64 + 1 }).await;
    send(&app.http, reqwest::Method::DELETE, format!("{}/__sim/faults", app.sim.url), None, None).await.expect(204);
    let tickets = all.await.unwrap();
    assert_eq!(first.await.unwrap()["state"], "confirmed");

    // Assert: ceil(250 / 100) = 3 upsert calls besides the first user's lone create; one contact
    // per user, with the user's email, named in the user's ticket.
    assert_eq!(app.calls("POST /crm/v3/objects/contacts/batch/upsert 200").await, 3);
    assert_eq!(app.calls("POST /crm/v3/objects/contacts 201").await, 1, "only the first user was created alone");
    let contacts = by_user(&app).await;
    assert_eq!(contacts.values().map(Vec::len).sum::<usize>(), n + 1);
    for (sub, ticket) in &tickets {
        let mine = &contacts[sub];
        assert_eq!(mine.len(), 1, "{sub} has one contact");
        assert_eq!(mine[0]["email"], format!("{sub}@x.io"));
        assert_eq!((ticket["status"].as_u64(), ticket["state"].as_str()), (Some(200), Some("confirmed")), "{sub}: {ticket}");
        assert_eq!(ticket["contactId"], mine[0]["id"], "{sub}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_creation_survives_429s_and_two_new_users_with_one_email_get_one_contact_each() {
    // Arrange: HubSpot answers the first two create batches 429.
    let app = spawn_app(&[], PATIENT).await;
    app.fault(json!({"path": "/crm/v3/objects/contacts/batch/upsert", "status": 429, "count": 2})).await;
    let mut users: Vec<(String, String)> = (0..150).map(|i| (format!("r{i}"), format!("r{i}@x.io"))).collect();
    users.push(("twin1".into(), "shared@x.io".into()));
    users.push(("twin2".into(), "shared@x.io".into()));

    // Act
    let tickets = new_users(&app.url, users).await;

    // Assert: the 429s were met and retried; every user has exactly one contact; the shared email
    // is on one contact only: one twin is confirmed on it, the other's is a conflict.
    assert_eq!(app.calls("POST /crm/v3/objects/contacts/batch/upsert 429").await, 2);
    let contacts = by_user(&app).await;
    assert_eq!(contacts.values().map(Vec::len).sum::<usize>(), 152);
    for (sub, ticket) in &tickets {
        assert_eq!(contacts[sub].len(), 1, "{sub} has one contact");
        assert_eq!(ticket["status"], 200, "{sub}: {ticket}");
        assert_eq!(ticket["contactId"], contacts[sub][0]["id"], "{sub}");
        if sub.starts_with('r') {
            assert_eq!(ticket["state"], "confirmed", "{sub}: {ticket}");
        }
    }
    let shared: Vec<_> = app.contacts().await.into_iter().filter(|c| c["email"] == "shared@x.io").collect();
    assert_eq!(shared.len(), 1, "{shared:?}");
    let mut states = vec![tickets["twin1"]["state"].as_str().unwrap(), tickets["twin2"]["state"].as_str().unwrap()];
    states.sort();
    assert_eq!(states, ["confirmed", "conflict"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_as_a_whole_is_split_in_halves_not_sent_one_user_at_a_time() {
    // Arrange: HubSpot refuses the first create batch as a whole with 409 (as it may for one
    // input's email; the simulator itself answers per input).
    let app = spawn_app(&[], PATIENT).await;
    app.fault(json!({"path": "/crm/v3/objects/contacts/batch/upsert", "status": 409, "count": 1})).await;
    let users: Vec<(String, String)> = (0..120).map(|i| (format!("h{i}"), format!("h{i}@x.io"))).collect();

    // Act
    let tickets = new_users(&app.url, users).await;

    // Assert: every user confirmed on one contact of their own; the refused batch was retried
    // as two halves (a few more calls), not as one create per user.
    assert_eq!(app.calls("POST /crm/v3/objects/contacts/batch/upsert 409").await, 1);
    let creates_alone = app.calls("POST /crm/v3/objects/contacts 201").await;
    assert!(creates_alone < 5, "{creates_alone} users were created one call each");
    let contacts = by_user(&app).await;
    for (sub, ticket) in &tickets {
        assert_eq!(contacts[sub].len(), 1, "{sub} has one contact");
        assert_eq!((ticket["status"].as_u64(), ticket["state"].as_str()), (Some(200), Some("confirmed")), "{sub}: {ticket}");
    }
}
