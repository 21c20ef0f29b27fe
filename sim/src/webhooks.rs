//! HubSpot's contact webhooks (hubspot-behavior.md section 9): the world records each contact
//! change (`World::emit`); this emitter takes them every [`TICK`], batches up to 100 events per
//! POST as a JSON array, signs each request (v3 and v1), and retries failed or slow deliveries on
//! HubSpot's schedule (scaled by `webhookRetryScale`), with at most 10 requests in flight.
//! Switches add duplicate and out-of-order delivery.

use crate::world::now_ms;
use crate::AppState;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::seq::SliceRandom;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How often changes are gathered into deliveries.
pub const TICK: Duration = Duration::from_millis(50);
/// Events per delivery (HubSpot: up to 100).
pub const BATCH_MAX: usize = 100;
/// Requests in flight at once (HubSpot: 10 per account).
pub const IN_FLIGHT: usize = 10;
/// Retries after the first attempt (HubSpot: up to 10 over 24 hours).
pub const RETRIES: u32 = 10;
/// The app id and the subscription ids events carry (made up; a real app has its own).
pub const APP_ID: u64 = 1_160_452;

/// Seconds before retry `n` (1-based), before scaling and jitter: doubling from one minute, so
/// the ten retries span about 17 hours, inside HubSpot's 24 [guess: HubSpot publishes only "up
/// to 10 times over 24 hours, randomised"].
pub fn retry_delay_secs(n: u32) -> f64 {
    60.0 * f64::from(1u32 << (n.clamp(1, RETRIES) - 1))
}

/// The v3 signature: base64 of HMAC-SHA256(secret, method + uri + body + timestamp).
pub fn signature_v3(secret: &str, method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(method.as_bytes());
    mac.update(uri.as_bytes());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The v1 signature: hex SHA-256 of secret + body.
pub fn signature_v1(secret: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(secret.as_bytes());
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One delivery attempt, as `GET /__sim/webhooks` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub delivery: u64,
    pub attempt: u32,
    pub events: usize,
    pub at: i64,
    /// The HTTP status, or None when the connection failed or the answer was too slow.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub ms: u64,
}

/// What the emitter did, for tests and the bench.
#[derive(Debug, Default)]
pub struct Log {
    pub attempts: VecDeque<Attempt>,
    pub events_emitted: u64,
    pub deliveries: u64,
    pub delivered: u64,
    pub failed_attempts: u64,
    pub gave_up: u64,
    next_event_id: u64,
    next_delivery: u64,
}

impl Log {
    fn push(&mut self, a: Attempt) {
        if self.attempts.len() >= 2000 {
            self.attempts.pop_front();
        }
        if a.status.is_some_and(|s| (200..300).contains(&s)) {
            self.delivered += 1;
        } else {
            self.failed_attempts += 1;
        }
        self.attempts.push_back(a);
    }

    /// The log as JSON.
    pub fn view(&self) -> Value {
        json!({
            "eventsEmitted": self.events_emitted,
            "deliveries": self.deliveries,
            "delivered": self.delivered,
            "failedAttempts": self.failed_attempts,
            "gaveUp": self.gave_up,
            "attempts": self.attempts,
        })
    }
}

/// The emitter's shared parts.
#[derive(Debug)]
pub struct Emitter {
    pub log: Mutex<Log>,
    slots: Semaphore,
    http: reqwest::Client,
}

impl Default for Emitter {
    fn default() -> Self {
        Emitter { log: Mutex::new(Log::default()), slots: Semaphore::new(IN_FLIGHT), http: reqwest::Client::new() }
    }
}

impl Emitter {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn subscription_id(kind: &str) -> u64 {
    // A stable id per subscription type, as an app's settings would show.
    1_000_000 + kind.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) % 1_000_000
}

/// Runs for the simulator's lifetime: every tick, takes the world's changes and delivers them.
pub async fn run(sim: AppState) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let changes = std::mem::take(&mut sim.world().changes);
        if changes.is_empty() {
            continue;
        }
        let sw = sim.switches();
        let (Some(url), Some(secret)) = (sw.webhook_url.clone(), sw.webhook_secret.clone()) else {
            continue; // no app subscribed: HubSpot sends nothing
        };
        let mut events: Vec<Value> = {
            let mut log = sim.webhooks.log();
            log.events_emitted += changes.len() as u64;
            changes
                .into_iter()
                .map(|mut e| {
                    log.next_event_id += 1;
                    let kind = e["subscriptionType"].as_str().unwrap_or("").to_string();
                    e["eventId"] = json!(log.next_event_id);
                    e["subscriptionId"] = json!(subscription_id(&kind));
                    e["portalId"] = json!(sim.portal_id);
                    e["appId"] = json!(APP_ID);
                    e
                })
                .collect()
        };
        let mut batches: Vec<Vec<Value>> = Vec::new();
        if sw.webhook_shuffle {
            // Out of order: shuffled, and cut into batches of random size that race each other.
            events.shuffle(&mut rand::rng());
            while !events.is_empty() {
                let n = rand::random_range(1..=events.len().min(BATCH_MAX));
                batches.push(events.drain(..n).collect());
            }
        } else {
            while !events.is_empty() {
                let n = events.len().min(BATCH_MAX);
                batches.push(events.drain(..n).collect());
            }
        }
        for batch in batches {
            let copies = if sw.webhook_duplicates { 2 } else { 1 };
            let batch = Arc::new(batch);
            for copy in 0..copies {
                let (sim, url, secret, batch) = (sim.clone(), url.clone(), secret.clone(), batch.clone());
                tokio::spawn(async move {
                    if copy > 0 {
                        tokio::time::sleep(Duration::from_millis(rand::random_range(0..200))).await;
                    }
                    deliver(sim, url, secret, batch).await;
                });
            }
            if !sw.webhook_shuffle {
                // In order: one delivery after the other (an in-order sender; HubSpot promises no order).
                tokio::task::yield_now().await;
            }
        }
    }
}

/// One delivery: the first attempt and its retries.
async fn deliver(sim: AppState, url: String, secret: String, batch: Arc<Vec<Value>>) {
    let delivery = {
        let mut log = sim.webhooks.log();
        log.next_delivery += 1;
        log.deliveries += 1;
        log.next_delivery
    };
    for attempt in 0..=RETRIES {
        let sw = sim.switches();
        let events: Vec<Value> = batch
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e["attemptNumber"] = json!(attempt);
                e
            })
            .collect();
        let body = serde_json::to_vec(&events).unwrap_or_default();
        let timestamp = now_ms().to_string();
        let started = std::time::Instant::now();
        let result = {
            let _slot = sim.webhooks.slots.acquire().await;
            sim.webhooks
                .http
                .post(&url)
                .header("content-type", "application/json")
                .header("user-agent", "HubSpot Connect 2.0 (http://dev.hubspot.com/) (namespace: webhooks-nio)")
                .header("x-hubspot-signature-v3", signature_v3(&secret, "POST", &url, &body, &timestamp))
                .header("x-hubspot-request-timestamp", &timestamp)
                .header("x-hubspot-signature", signature_v1(&secret, &body))
                .header("x-hubspot-signature-version", "v1")
                .timeout(Duration::from_millis(sw.webhook_timeout_ms.max(1)))
                .body(body)
                .send()
                .await
        };
        let ms = started.elapsed().as_millis() as u64;
        let (status, error) = match result {
            Ok(res) => (Some(res.status().as_u16()), None),
            Err(e) if e.is_timeout() => (None, Some(format!("no answer within {} ms", sw.webhook_timeout_ms))),
            Err(e) => (None, Some(format!("connection failed: {e}"))),
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        sim.webhooks.log().push(Attempt { delivery, attempt, events: batch.len(), at: now_ms(), status, error, ms });
        if ok {
            return;
        }
        if attempt == RETRIES {
            break;
        }
        let jitter = 0.5 + rand::random::<f64>();
        let wait = retry_delay_secs(attempt + 1) * sw.webhook_retry_scale.max(0.0) * jitter;
        tokio::time::sleep(Duration::from_secs_f64(wait.min(86_400.0))).await;
    }
    sim.webhooks.log().gave_up += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_hubspots_test_vectors() {
        // hubspot-behavior.md section 9 (the SDKs' own tests).
        let (secret, uri, body) = ("yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy", "https://www.example.com/webhook_uri", b"{'example_field':'example_value'}");
        assert_eq!(signature_v3(secret, "POST", uri, body, "15000000"), "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=");
        assert_eq!(signature_v3(secret, "POST", uri, body, "1693657560000"), "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=");
        assert_ne!(signature_v3(secret, "GET", uri, body, "15000000"), "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=");
    }

    #[test]
    fn v1_is_the_hex_sha256_of_secret_and_body() {
        // sha256("") is well known; secret + body = "" + "".
        assert_eq!(signature_v1("", b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(signature_v1("ab", b"c"), signature_v1("a", b"bc"));
    }

    #[test]
    fn ten_retries_double_from_a_minute_and_stay_inside_a_day() {
        assert_eq!(retry_delay_secs(1), 60.0);
        assert_eq!(retry_delay_secs(2), 120.0);
        let total: f64 = (1..=RETRIES).map(retry_delay_secs).sum();
        assert!(total * 1.5 < 86_400.0 * 1.1, "with the widest jitter the schedule stays near 24 h: {total}");
    }
}
