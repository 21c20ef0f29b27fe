//! `TestApp`: a relay on port 0 in front of a fresh hubspot-sim, with a fresh database: a SQLite
//! file, or with `HSQ_TEST_DB=postgres` a fresh database in a temporary PostgreSQL cluster that
//! this test binary starts once (see `pg.rs`).

use clap::Parser;
use hsq_relay::config::{Cli, Command, ServeArgs};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
pub const ADMIN: &str = "admin-token-0123456789";

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Whether this run puts the relay on PostgreSQL (`HSQ_TEST_DB=postgres`) instead of SQLite.
pub fn on_postgres() -> bool {
    std::env::var("HSQ_TEST_DB").is_ok_and(|v| v == "postgres")
}

/// A fresh database for one test: `HSQ_DB` as the relay takes it.
pub fn temp_db() -> String {
    if on_postgres() { crate::pg::fresh_database() } else { temp_sqlite() }
}

/// A fresh SQLite file, whatever the run's store.
pub fn temp_sqlite() -> String {
    let r: u64 = rand::random();
    std::env::temp_dir().join(format!("hsq-relay-test-{r:016x}.db")).display().to_string()
}

/// Deletes a SQLite database's files (a PostgreSQL one goes with its cluster).
pub fn remove_db(db: &str) {
    if !db.starts_with("postgres") {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{db}{ext}"));
        }
    }
}

/// Signs an assertion as the app's backend would.
pub fn mint(sub: &str, email: &str) -> String {
    mint_claims(json!({"sub": sub, "email": email, "aud": "hsq-relay", "iat": now(), "exp": now() + 300}))
}

pub fn mint_claims(claims: Value) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

pub fn utk(n: u32) -> String {
    format!("{n:032x}")
}

pub struct Res {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Res {
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self.body
    }
}

pub struct Sim {
    pub url: String,
    pub _running: hubspot_sim::Running,
}

pub async fn start_sim(extra: &[&str]) -> Sim {
    let mut argv = vec!["hubspot-sim", "--token", "T"];
    if !extra.contains(&"--rate-limit") {
        argv.extend(["--rate-limit", "0"]);
    }
    argv.extend_from_slice(extra);
    let running = hubspot_sim::spawn(<hubspot_sim::Cli as Parser>::parse_from(argv)).await.unwrap();
    let url = running.url.clone();
    // What `hsq-relay init` does: the unique property.
    reqwest::Client::new()
        .post(format!("{url}/crm/v3/properties/contacts"))
        .bearer_auth("T")
        .json(&json!({"name": "hsq_user_id", "label": "App user id", "type": "string", "fieldType": "text", "groupName": "contactinformation", "hasUniqueValue": true}))
        .send()
        .await
        .unwrap();
    Sim { url, _running: running }
}

pub fn serve_args(sim_url: &str, db: &str, extra: &[&str]) -> ServeArgs {
    let mut argv = vec![
        "hsq-relay".to_string(),
        "serve".into(),
        "--hubspot-access-token".into(),
        "T".into(),
        "--hubspot-api-base".into(),
        sim_url.into(),
        "--addr".into(),
        "127.0.0.1:0".into(),
        "--assertion-secrets".into(),
        format!("k1:{SECRET}"),
        "--admin-token".into(),
        ADMIN.into(),
        "--db".into(),
        db.to_string(),
        "--allowed-origins".into(),
        "http://app.test".into(),
    ];
    if !extra.contains(&"--rate-limit-per-ip") {
        argv.extend(["--rate-limit-per-ip".into(), "0".into()]);
    }
    argv.extend(extra.iter().map(|s| s.to_string()));
    match Cli::parse_from(argv).command {
        Command::Serve(a) => a,
        _ => unreachable!(),
    }
}

pub struct TestApp {
    pub url: String,
    pub sim: Sim,
    pub http: reqwest::Client,
    pub db: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        remove_db(&self.db);
    }
}

pub async fn spawn_app(sim_args: &[&str], relay_args: &[&str]) -> TestApp {
    let sim = start_sim(sim_args).await;
    let db = temp_db();
    let app = hsq_relay::Application::build(serve_args(&sim.url, &db, relay_args)).await.unwrap();
    let url = format!("http://{}", app.addr);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp { url, sim, http: reqwest::Client::new(), db, stop: Some(tx) }
}

pub async fn send(http: &reqwest::Client, method: Method, url: String, body: Option<Value>, bearer: Option<&str>) -> Res {
    let mut req = http.request(method, url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let res = req.send().await.expect("request reaches the server");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap_or_default();
    Res { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

impl TestApp {
    pub async fn identity_raw(&self, body: Value) -> Res {
        send(&self.http, Method::POST, format!("{}/v1/identity", self.url), Some(body), None).await
    }
    pub async fn identity(&self, sub: &str, email: &str, utk: Option<&str>, lease: Option<&str>) -> Value {
        self.identity_raw(json!({"assertion": mint(sub, email), "utk": utk, "leaseId": lease})).await.expect(200)
    }
    pub async fn put_user(&self, sub: &str, body: Value) -> Res {
        send(&self.http, Method::PUT, format!("{}/v1/users/{sub}", self.url), Some(body), Some(ADMIN)).await
    }
    pub async fn get_user(&self, sub: &str) -> Value {
        send(&self.http, Method::GET, format!("{}/v1/users/{sub}", self.url), None, Some(ADMIN)).await.expect(200)
    }
    pub async fn release(&self, lease: &str) -> StatusCode {
        send(&self.http, Method::DELETE, format!("{}/v1/leases/{lease}", self.url), None, None).await.status
    }
    pub async fn sim_get(&self, path: &str) -> Value {
        self.http.get(format!("{}{path}", self.sim.url)).send().await.unwrap().json().await.unwrap()
    }
    pub async fn sim_post(&self, path: &str, body: Value) -> Res {
        send(&self.http, Method::POST, format!("{}{path}", self.sim.url), Some(body), Some("T")).await
    }
    pub async fn contacts(&self) -> Vec<Value> {
        self.sim_get("/__sim/contacts").await["contacts"].as_array().cloned().unwrap_or_default()
    }
    pub async fn calls(&self, key_part: &str) -> u64 {
        let s = self.sim_get("/__sim/stats").await;
        s["calls"].as_object().unwrap().iter().filter(|(k, _)| k.contains(key_part)).map(|(_, v)| v.as_u64().unwrap()).sum()
    }
    pub async fn fault(&self, f: Value) {
        send(&self.http, Method::POST, format!("{}/__sim/faults", self.sim.url), Some(f), None).await.expect(201);
    }
}

/// Polls until `f` is true (waiting for the outbox, not timing it).
pub async fn eventually<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}
