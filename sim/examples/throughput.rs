//! Run with `cargo run --release -p hubspot-sim --example throughput [SECONDS] [CONCURRENCY]`.
//!
//! Measures the simulator's API throughput with rate limiting off, so later benchmarks know it is
//! not their bottleneck. Client and server share this machine's cores, so the number is a floor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let conc: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let cli = <hubspot_sim::Cli as clap::Parser>::parse_from(["hubspot-sim", "--token", "T", "--rate-limit", "0"]);
    let sim = hubspot_sim::spawn(cli).await.expect("simulator starts");
    let http = reqwest::Client::new();
    // 1,000 contacts to read and update.
    for chunk in 0..10 {
        let inputs: Vec<_> = (0..100)
            .map(|i| serde_json::json!({"properties": {"email": format!("u{}@bench.test", chunk * 100 + i)}}))
            .collect();
        http.post(format!("{}/crm/v3/objects/contacts/batch/create", sim.url))
            .bearer_auth("T")
            .body(serde_json::json!({ "inputs": inputs }).to_string())
            .send()
            .await
            .expect("seed");
    }
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for t in 0..conc {
        let (http, url, done, failed) = (http.clone(), sim.url.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut n: u64 = t as u64;
            while Instant::now() < end {
                n += 1;
                let id = 101 + n % 1000;
                // Three reads to one write, the relay's mix.
                let res = if n % 4 == 0 {
                    http.patch(format!("{url}/crm/v3/objects/contacts/{id}"))
                        .bearer_auth("T")
                        .body(format!("{{\"properties\":{{\"firstname\":\"n{n}\"}}}}"))
                        .send()
                        .await
                } else {
                    http.get(format!("{url}/crm/v3/objects/contacts/{id}?properties=email")).bearer_auth("T").send().await
                };
                match res {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "hubspot-sim throughput: {} requests/s ({} ok, {} failed, {} s, {} concurrent, 3 GET : 1 PATCH)",
        n / secs,
        n,
        failed.load(Ordering::Relaxed),
        secs,
        conc
    );
}
