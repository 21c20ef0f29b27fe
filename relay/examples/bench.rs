//! Run with `cargo run --release -p hsq-relay --example bench [--skip-sync]`.
//!
//! Measures, against hubspot-sim on this machine (client, relay and simulator share its cores):
//! `/v1/identity` throughput and latency with a warm cache for 1,000 users; HubSpot calls per
//! 1,000 identity requests from 100 users, cold and warm; and `sync` of 40,000 users against
//! the Free/Starter rate limit (100 calls per 10 s: the floor for 400 calls is 40 s).

mod common;

use clap::Parser;
use common::{mint, pct, sim, temp};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn relay(sim_url: &str, rate: &str) -> (String, Arc<hsq_relay::relay::Relay>) {
    common::relay(sim_url, &temp("db").display().to_string(), rate).await
}

/// Sends `assertions` (cycled `total` times) with `conc` concurrent clients; answers latencies.
async fn drive(url: &str, assertions: Arc<Vec<String>>, total: usize, conc: usize) -> (Vec<Duration>, Duration) {
    let http = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (http, url, a, next) = (http.clone(), format!("{url}/v1/identity"), assertions.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let body = format!("{{\"assertion\":\"{}\"}}", a[i % a.len()]);
                let t = Instant::now();
                let r = http.post(&url).header("content-type", "application/json").body(body).send().await.unwrap();
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["state"], "confirmed", "{v}");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, start.elapsed())
}

#[tokio::main]
async fn main() {
    let skip_sync = std::env::args().any(|a| a == "--skip-sync");
    println!("| measure | value |\n|---|---|");

    // Warm throughput: 1,000 users, each seen once, then 20,000 requests.
    let s = sim("0").await;
    let (url, _r) = relay(&s.url, "100000").await;
    let users: Arc<Vec<String>> = Arc::new((0..1000).map(|i| mint(&format!("w{i}"), &format!("w{i}@bench.test"))).collect());
    drive(&url, users.clone(), 1000, 32).await;
    let (mut lat, wall) = drive(&url, users.clone(), 20_000, 32).await;
    println!("| /v1/identity, warm cache, 1,000 users, 32 connections | {:.0} requests/s |", lat.len() as f64 / wall.as_secs_f64());
    println!("| /v1/identity latency p50 / p99 | {:.2} ms / {:.2} ms |", pct(&mut lat, 0.50), pct(&mut lat, 0.99));

    // HubSpot calls per 1,000 identity requests from 100 users (10 each), cold then warm.
    let s = sim("0").await;
    let (url, relay_state) = relay(&s.url, "100000").await;
    let hundred: Arc<Vec<String>> = Arc::new((0..100).map(|i| mint(&format!("c{i}"), &format!("c{i}@bench.test"))).collect());
    let before = relay_state.metrics.hubspot_total();
    drive(&url, hundred.clone(), 1000, 32).await;
    let cold = relay_state.metrics.hubspot_total() - before;
    let before = relay_state.metrics.hubspot_total();
    drive(&url, hundred.clone(), 1000, 32).await;
    let warm = relay_state.metrics.hubspot_total() - before;
    println!("| HubSpot calls per 1,000 identity requests, 100 new users (cold) | {cold} |");
    println!("| HubSpot calls per 1,000 identity requests, same users (warm) | {warm} |");

    if skip_sync {
        return;
    }
    // sync of 40,000 users at HubSpot's Free/Starter limit.
    let s = sim("100").await;
    let file = temp("csv");
    let mut csv = String::from("sub,email,firstname\n");
    for i in 0..40_000 {
        csv.push_str(&format!("s{i},s{i}@bench.test,F{i}\n"));
    }
    std::fs::write(&file, csv).unwrap();
    let db = temp("db");
    let argv = [
        "hsq-relay", "sync", "--hubspot-access-token", "T", "--hubspot-api-base", &s.url, "--db", &db.display().to_string(), "--no-progress",
        &file.display().to_string(),
    ];
    let hsq_relay::config::Command::Sync(args) = hsq_relay::config::Cli::parse_from(argv).command else { unreachable!() };
    let sum = hsq_relay::sync::sync(&args).await.unwrap();
    println!(
        "| sync of 40,000 users at 100 calls per 10 s | {} calls, {} answered 429, {:.1} s (floor: 400 calls = 40 s at the limit, {} already spent on setup) |",
        sum.calls, sum.rate_limited, sum.seconds, 1
    );
    let _ = std::fs::remove_file(file);
}
