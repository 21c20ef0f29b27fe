//! A lease release racing the outbox's lease check (issue 25, part 2). Both stores: run with and
//! without HSQ_TEST_DB=postgres (the race was PostgreSQL's: on SQLite the one writer serializes).

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SUB: &str = "u_release";

async fn hubspot_email(http: &reqwest::Client, sim: &str) -> Option<String> {
    let c: Value = http.get(format!("{sim}/__sim/contacts")).send().await.ok()?.json().await.ok()?;
    c["contacts"].as_array()?.iter().find(|c| c["properties"]["hsq_user_id"] == SUB).and_then(|c| c["email"].as_str().map(str::to_string))
}

#[tokio::test]
async fn a_lease_released_between_the_outboxs_lease_check_and_its_defer_still_lets_the_change_go() {
    let sim = start_sim(&[]).await;
    let db = temp_db();
    let app = hsq_relay::Application::build(serve_args(&sim.url, &db, &[])).await.unwrap();
    let relay = app.relay.clone();
    let url = format!("http://{}", app.addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let t = send(&http, Method::POST, format!("{url}/v1/identity"), Some(json!({"assertion": mint(SUB, "a@x.io")})), None).await.expect(200);
    assert_eq!(t["state"], "confirmed");
    let lease = t["leaseId"].as_str().unwrap().to_string();
    send(&http, Method::PUT, format!("{url}/v1/users/{SUB}"), Some(json!({"email": "b@x.io"})), Some(ADMIN)).await.expect(202);
    // The outbox found the page's lease live and put the change off to the lease's end.
    eventually("the change waits for the lease", 10, || async {
        relay.store.job(SUB).await.unwrap().is_some_and(|j| j.next_at > hsq_relay::relay::now_ms() + 60_000)
    })
    .await;

    // The outbox's next look, step by step as outbox.rs takes it, with the page's release arriving
    // between its lease check and its defer.
    let mut tx = relay.store.begin_user(SUB).await.unwrap();
    let job = tx.job().await.unwrap().unwrap();
    let until = tx.live_lease_until("b@x.io", hsq_relay::relay::now_ms()).await.unwrap().expect("the lease is live when checked");
    let r = relay.clone();
    let mut release = tokio::spawn(async move { r.release(&lease).await });
    let released_meanwhile = tokio::time::timeout(Duration::from_secs(1), &mut release).await.is_ok();
    tx.defer_job(job.version, until + 1).await.unwrap();
    tx.commit().await.unwrap();
    if !released_meanwhile {
        assert!(release.await.unwrap().unwrap(), "the release ends a live lease");
    }
    println!("the release {} while the outbox's transaction held the user's lock", if released_meanwhile { "finished" } else { "waited" });

    let mut applied = false;
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && !applied {
        applied = hubspot_email(&http, &sim.url).await.as_deref() == Some("b@x.io");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = relay.store.job(SUB).await.unwrap().unwrap();
    println!("after the release: job {} with nextAt {} ms from now; HubSpot on b@x.io: {applied}", job.state, job.next_at - hsq_relay::relay::now_ms());
    assert!(applied, "the change is applied once the lease is released, not left waiting for the lease's end");
    let _ = stop.send(());
    remove_db(&db);
}
