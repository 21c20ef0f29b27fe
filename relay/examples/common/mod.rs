//! What the relay's benchmarks share: the assertion they sign, temporary files, and a simulator
//! with the unique id property.

use clap::Parser;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";

/// An assertion for `sub`, valid for the 15 minutes the relay allows.
pub fn mint(sub: &str, email: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let c = json!({"sub": sub, "email": email, "aud": "hsq-relay", "iat": now, "exp": now + 900});
    jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

pub fn temp(ext: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("hsq-bench-{:016x}.{ext}", rand::random::<u64>()))
}

pub async fn sim(rate: &str) -> hubspot_sim::Running {
    let s = hubspot_sim::spawn(<hubspot_sim::Cli as Parser>::parse_from(["s", "--token", "T", "--rate-limit", rate])).await.unwrap();
    reqwest::Client::new()
        .post(format!("{}/crm/v3/properties/contacts", s.url))
        .bearer_auth("T")
        .json(&json!({"name": "hsq_user_id", "label": "id", "type": "string", "fieldType": "text", "groupName": "contactinformation", "hasUniqueValue": true}))
        .send()
        .await
        .unwrap();
    s
}

/// The `p` quantile of latencies `l` (sorted in place), in ms.
pub fn pct(l: &mut [Duration], p: f64) -> f64 {
    l.sort();
    l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1000.0
}

/// A relay serving on a free port against the simulator at `sim_url`, on the store `db`, with
/// HubSpot's rate limit `rate` calls per 10 s and no per-client limit: its URL and state.
pub async fn relay(sim_url: &str, db: &str, rate: &str) -> (String, std::sync::Arc<hsq_relay::relay::Relay>) {
    let argv = [
        "hsq-relay", "serve", "--hubspot-access-token", "T", "--hubspot-api-base", sim_url, "--addr", "127.0.0.1:0",
        "--assertion-secrets", &format!("k1:{SECRET}"), "--admin-token", "bench-admin-token-0000", "--db", db,
        "--rate-limit-per-ip", "0", "--hubspot-rate-limit", rate,
    ];
    let hsq_relay::config::Command::Serve(args) = hsq_relay::config::Cli::parse_from(argv).command else { unreachable!() };
    let app = hsq_relay::Application::build(args).await.unwrap();
    let url = format!("http://{}", app.addr);
    let r = app.relay.clone();
    tokio::spawn(app.run_until(std::future::pending()));
    (url, r)
}
