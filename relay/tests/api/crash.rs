//! The relay killed with SIGKILL while the outbox holds changes, then restarted on the same file.

use crate::helpers::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub fn start_relay(sim_url: &str, db: &str) -> (RelayProcess, String) {
    // On PostgreSQL the restarted relay cannot tell the claims it held when it died from another
    // relay's: they run out, after 5 s here (30 s by default).
    start_relay_with(sim_url, db, &[("HSQ_OUTBOX_CLAIM_SECS", "5")])
}

/// A relay process the test started: killed when dropped, so a test that fails half-way leaves
/// no relay running behind it.
pub struct RelayProcess(Child);

impl std::ops::Deref for RelayProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for RelayProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The relay binary with more settings from the environment.
pub fn start_relay_with(sim_url: &str, db: &str, env: &[(&str, &str)]) -> (RelayProcess, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hsq-relay"))
        .envs(env.iter().copied())
        .arg("serve")
        .env("HUBSPOT_ACCESS_TOKEN", "T")
        .env("HUBSPOT_API_BASE", sim_url)
        .env("HSQ_ADDR", "127.0.0.1:0")
        .env("HSQ_ASSERTION_SECRETS", format!("k1:{SECRET}"))
        .env("HSQ_ADMIN_TOKEN", ADMIN)
        .env("HSQ_DB", db)
        .env("HSQ_RATE_LIMIT_PER_IP", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the relay binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("hsq-relay listening on ").expect("first line says where it listens").to_string();
    (RelayProcess(child), url)
}

#[tokio::test]
async fn changes_queued_before_a_sigkill_are_applied_once_after_restart() {
    let sim = start_sim(&[]).await;
    let db = temp_db();
    let http = reqwest::Client::new();
    let (mut relay, url) = start_relay(&sim.url, &db);
    let post = |url: String, body: Value| {
        let http = http.clone();
        async move { http.post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // Five users with live leases, then the app reports a change for each.
    let mut leases = Vec::new();
    for i in 0..5 {
        let t = post(format!("{url}/v1/identity"), json!({"assertion": mint(&format!("k{i}"), &format!("k{i}@x.io"))})).await;
        assert_eq!(t["state"], "confirmed");
        leases.push(t["leaseId"].as_str().unwrap().to_string());
        let r = http.put(format!("{url}/v1/users/k{i}")).bearer_auth(ADMIN).json(&json!({"email": format!("k{i}-new@x.io")})).send().await.unwrap();
        assert_eq!(r.status(), 202);
    }
    relay.kill().unwrap(); // SIGKILL
    relay.wait().unwrap();
    let patches_before: u64 = stats(&http, &sim.url, "PATCH").await;

    let (mut relay, url) = start_relay(&sim.url, &db);
    for l in &leases {
        assert_eq!(http.delete(format!("{url}/v1/leases/{l}")).send().await.unwrap().status(), 204);
    }
    eventually("all five changes applied", 15, || async {
        let c: Value = http.get(format!("{}/__sim/contacts", sim.url)).send().await.unwrap().json().await.unwrap();
        c["contacts"].as_array().unwrap().iter().filter(|c| c["email"].as_str().unwrap_or("").ends_with("-new@x.io")).count() == 5
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(stats(&http, &sim.url, "PATCH").await - patches_before, 5, "each change applied exactly once");
    let c: Value = http.get(format!("{}/__sim/contacts", sim.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(c["total"], 5, "no duplicate contact");
    let _ = relay.kill();
    let _ = relay.wait();
    remove_db(&db);
}

pub async fn stats(http: &reqwest::Client, sim: &str, method: &str) -> u64 {
    let s: Value = http.get(format!("{sim}/__sim/stats")).send().await.unwrap().json().await.unwrap();
    s["calls"].as_object().unwrap().iter().filter(|(k, _)| k.starts_with(method)).map(|(_, v)| v.as_u64().unwrap()).sum()
}
