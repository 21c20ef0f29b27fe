//! Run with `cargo run --release -p hsq-relay --example bench_scale [-- [--million] [--only=warm|burst|million]]`.
//!
//! Prints markdown rows (`| measure | value |`), all measured in one run on this machine (the load
//! generator, relays, simulator and PostgreSQL share its cores):
//! - `/v1/identity` with a warm cache, 1,000 users, 32 connections: requests/s and p50/p99 for a
//!   bare axum handler that parses the same body and answers a fixed ticket (the ceiling), the
//!   relay on SQLite, on PostgreSQL, and two relays on one PostgreSQL with the load split between
//!   them; each as a ratio to the ceiling;
//! - 1,000 users HubSpot has never seen arriving at once, at the Free/Starter rate limit (100
//!   calls per 10 s): the time until every page holds a confirmed ticket, and the HubSpot calls;
//!   then with 5 pages each, on one SQLite relay and on two relays on one PostgreSQL (sharing the
//!   limit, and at a hard split of 50 calls per 10 s each), with the ratios to one relay;
//! - with `--million`: throughput on a fresh SQLite store against after 1M identity requests
//!   (100k requests each, and each 100k of the million, to show a trend through the noise).
//!
//! PostgreSQL: a temporary cluster started as the API tests start theirs (`tests/api/pg.rs`).

#[path = "../tests/api/pg.rs"]
#[allow(dead_code)]
mod pg;

mod common;

use common::{mint, pct, relay, sim, temp};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 32;
const WARM_REQUESTS: usize = 30_000;

/// The ceiling: an axum handler that parses the same JSON body and answers a fixed ticket.
async fn bare() -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        assertion: String,
        utk: Option<String>,
        lease_id: Option<String>,
    }
    async fn identity(axum::Json(b): axum::Json<Body>) -> axum::Json<Value> {
        std::hint::black_box(&b);
        axum::Json(json!({
            "id": "u1", "contactId": "101", "email": "u1@bench.test", "state": "confirmed", "leaseId": "l_00000000000000000000000000000000",
            "emailValidUntil": 1_790_000_600, "exp": 1_790_000_300, "rotateUtk": false, "now": 1_790_000_000
        }))
    }
    let app = axum::Router::new().route("/v1/identity", axum::routing::post(identity));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Sends `total` requests over `CONNECTIONS` connections (connection `i` to `urls[i % n]`), each
/// body the next of `assertions` with the lease its user got last (as a page renews); answers
/// latencies and wall time.
async fn drive(urls: &[String], assertions: &Arc<Vec<String>>, leases: &Arc<Vec<std::sync::Mutex<Option<String>>>>, total: usize) -> (Vec<Duration>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        // One client per connection: exactly CONNECTIONS keep-alive connections.
        let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
        let (url, a, leases, next) = (format!("{}/v1/identity", urls[c % urls.len()]), assertions.clone(), leases.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total / CONNECTIONS + 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let u = i % a.len();
                let lease = leases[u].lock().unwrap().clone();
                let body = match lease {
                    Some(l) => format!("{{\"assertion\":\"{}\",\"leaseId\":\"{l}\"}}", a[u]),
                    None => format!("{{\"assertion\":\"{}\"}}", a[u]),
                };
                let t = Instant::now();
                let r = http.post(&url).header("content-type", "application/json").body(body).send().await.unwrap();
                let v: Value = r.json().await.unwrap();
                lat.push(t.elapsed());
                assert_eq!(v["state"], "confirmed", "{v}");
                if let Some(l) = v["leaseId"].as_str() {
                    *leases[u].lock().unwrap() = Some(l.to_string());
                }
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, start.elapsed())
}

struct Warm {
    rps: f64,
    p50: f64,
    p99: f64,
}

/// Warm `/v1/identity` for 1,000 users on `urls`: every user seen once, then `WARM_REQUESTS`.
async fn warm(urls: &[String]) -> Warm {
    let users: Arc<Vec<String>> = Arc::new((0..1000).map(|i| mint(&format!("w{i}"), &format!("w{i}@bench.test"))).collect());
    let leases = Arc::new((0..1000).map(|_| std::sync::Mutex::new(None)).collect::<Vec<_>>());
    drive(urls, &users, &leases, 2000).await;
    let (mut lat, wall) = drive(urls, &users, &leases, WARM_REQUESTS).await;
    Warm { rps: lat.len() as f64 / wall.as_secs_f64(), p50: pct(&mut lat, 0.50), p99: pct(&mut lat, 0.99) }
}

fn row(what: &str, w: &Warm, ceiling: Option<&Warm>) {
    let ratio = ceiling.map(|c| format!(", {:.2}x the ceiling", w.rps / c.rps)).unwrap_or_default();
    println!("| /v1/identity warm, 1,000 users, {CONNECTIONS} connections: {what} | {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms{ratio} |", w.rps, w.p50, w.p99);
}

/// Throughput on a fresh SQLite store, then after 1M identity requests on it.
async fn million() {
    let s = sim("0").await;
    let db = temp("db").display().to_string();
    let (url, _r) = relay(&s.url, &db, "100000").await;
    let urls = [url];
    let users: Arc<Vec<String>> = Arc::new((0..1000).map(|i| mint(&format!("m{i}"), &format!("m{i}@bench.test"))).collect());
    let leases = Arc::new((0..1000).map(|_| std::sync::Mutex::new(None)).collect::<Vec<_>>());
    drive(&urls, &users, &leases, 2000).await;
    // 100k requests (several seconds) per measure: 30k-request windows varied by a third here.
    let (lat, wall) = drive(&urls, &users, &leases, 100_000).await;
    let fresh = lat.len() as f64 / wall.as_secs_f64();
    let mut wall = Duration::ZERO;
    let mut chunks = Vec::new();
    for _ in 0..10 {
        let (_, w) = drive(&urls, &users, &leases, 100_000).await;
        chunks.push(format!("{:.0}", 100_000.0 / w.as_secs_f64()));
        wall += w;
    }
    let bulk = 1_000_000.0 / wall.as_secs_f64();
    let (lat, wall) = drive(&urls, &users, &leases, 100_000).await;
    let after = lat.len() as f64 / wall.as_secs_f64();
    println!(
        "| /v1/identity warm on SQLite, fresh store vs after 1M requests (100k each) | {fresh:.0} vs {after:.0} requests/s ({:+.1}%; the 1M ran at {bulk:.0}/s, by 100k: {}) |",
        (after / fresh - 1.0) * 100.0,
        chunks.join(", ")
    );
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{db}{ext}"));
    }
}

/// A sign-up burst's outcome.
struct Burst {
    confirmed: usize,
    secs: f64,
    calls: u64,
    creates: u64,
    not_found: u64,
    throttled: u64,
    unavailable: usize,
    duplicated: usize,
    /// Calls by method, route and status (printed with `BENCH_DETAIL=1`).
    detail: Vec<(String, u64)>,
}

/// Gives up on a burst after this long (and says how many users were confirmed by then).
const BURST_CAP: Duration = Duration::from_secs(150);

/// `users` new users at once, each with `pages` pages asking at the same moment, page `j` of user
/// `i` on `urls[(i * pages + j) % urls.len()]`: each page asks until its ticket is confirmed,
/// waiting out a 503's `Retry-After` (or 1 s after another answer), as the module does. Counted
/// from the simulator's `/__sim/stats`: every HubSpot call, those creating contacts, single reads
/// answering 404 and 429s.
async fn burst_on(sim_url: &str, urls: &[String], users: usize, pages: usize) -> Burst {
    let http = reqwest::Client::new();
    let stats = || async { http.get(format!("{sim_url}/__sim/stats")).send().await.unwrap().json::<Value>().await.unwrap() };
    let count = |v: &Value, f: &dyn Fn(&str) -> bool| -> u64 {
        v["calls"].as_object().unwrap().iter().filter(|(k, _)| f(k)).map(|(_, n)| n.as_u64().unwrap_or(0)).sum()
    };
    let creates = |k: &str| k.starts_with("POST /crm/v3/objects/contacts ") || k.starts_with("POST /crm/v3/objects/contacts/batch/upsert ");
    let not_found = |k: &str| k.starts_with("GET /crm/v3/objects/contacts/{id} ") && k.ends_with(" 404");
    let throttled = |k: &str| k.ends_with(" 429");
    let all = |_: &str| true;
    let before = stats().await;
    let unavailable = Arc::new(AtomicUsize::new(0));
    let others = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..users {
        let body = json!({ "assertion": mint(&format!("n{i}"), &format!("n{i}@bench.test")) });
        for j in 0..pages {
            let url = format!("{}/v1/identity", urls[(i * pages + j) % urls.len()]);
            let (http, body, unavailable, others) = (http.clone(), body.clone(), unavailable.clone(), others.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let res = http.post(&url).json(&body).send().await.unwrap();
                    let status = res.status();
                    let wait = res.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
                    let v: Value = res.json().await.unwrap();
                    if status == 200 && v["state"] == "confirmed" {
                        return (i, start.elapsed());
                    }
                    if status == 503 {
                        unavailable.fetch_add(1, Ordering::Relaxed);
                    } else {
                        *others.lock().unwrap().entry(format!("{status} {}", v["state"].as_str().unwrap_or("?"))).or_default() += 1;
                    }
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
            }));
        }
    }
    // Each user is confirmed once all of its pages are.
    let mut done: Vec<usize> = vec![0; users];
    let mut last = Duration::ZERO;
    let cap = tokio::time::Instant::now() + BURST_CAP;
    for t in &mut tasks {
        if let Ok(Ok((i, at))) = tokio::time::timeout_at(cap, t).await {
            done[i] += 1;
            last = last.max(at);
        }
    }
    // Pages still asking at the cap stop asking.
    for t in &tasks {
        t.abort();
    }
    let confirmed = done.iter().filter(|n| **n == pages).count();
    let secs = if confirmed == users { last.as_secs_f64() } else { start.elapsed().as_secs_f64() };
    let after = stats().await;
    let contacts: Value = http.get(format!("{sim_url}/__sim/contacts")).send().await.unwrap().json().await.unwrap();
    let mut per_user = std::collections::HashMap::<String, usize>::new();
    for c in contacts["contacts"].as_array().into_iter().flatten() {
        *per_user.entry(c["properties"]["hsq_user_id"].as_str().unwrap_or("").to_string()).or_default() += 1;
    }
    let answered = others.lock().unwrap().clone();
    let delta = |f: &dyn Fn(&str) -> bool| count(&after, f) - count(&before, f);
    Burst {
        confirmed,
        secs,
        calls: delta(&all),
        creates: delta(&creates),
        not_found: delta(&not_found),
        throttled: delta(&throttled),
        unavailable: unavailable.load(Ordering::Relaxed),
        duplicated: per_user.values().filter(|n| **n > 1).count(),
        detail: after["calls"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0) - before["calls"][k].as_u64().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .chain(answered.into_iter().map(|(k, n)| (format!("answered {k}"), n as u64)))
            .collect(),
    }
}

fn burst_row(what: &str, b: &Burst, users: usize, base: Option<&Burst>) {
    let until = if b.confirmed == users { format!("{:.1} s until every ticket is confirmed", b.secs) } else { format!("{} of {users} users confirmed after {:.1} s", b.confirmed, b.secs) };
    let ratio = base.map(|o| format!("; {:.2}x the time and {:.2}x the calls of one relay", b.secs / o.secs, b.calls as f64 / o.calls as f64)).unwrap_or_default();
    println!(
        "| {what} | {until}; {} HubSpot calls ({} creating contacts, {} single reads answering 404, {} answered 429); {} answers 503; {} users with two contacts{ratio} |",
        b.calls, b.creates, b.not_found, b.throttled, b.unavailable, b.duplicated
    );
    if std::env::var_os("BENCH_DETAIL").is_some() {
        eprintln!("{what}: {:?}", b.detail);
    }
}

/// 1,000 new users at once against HubSpot's Free/Starter limit (100 calls per 10 s, simulator
/// and relays alike): one page each on one SQLite relay; then five pages each (5,000 requests at
/// once) on one SQLite relay, and on two relays on one PostgreSQL, each counting 100 calls per
/// 10 s (sharing the account's limit through HubSpot's headers) or 50 (the README's hard split),
/// with the pages spread over both.
async fn burst() {
    let users = 1000;
    // BURST_ROWS=1,3 runs only those rows (1: one page each; 2: one relay; 3 and 4: two relays).
    let rows = std::env::var("BURST_ROWS").unwrap_or_else(|_| "1,2,3,4".into());
    let row_on = |n: &str| rows.split(',').any(|r| r.trim() == n);
    if row_on("1") {
        let s = sim("100").await;
        let db = temp("db").display().to_string();
        let (url, _r) = relay(&s.url, &db, "100").await;
        let b = burst_on(&s.url, &[url], users, 1).await;
        burst_row("1,000 new users at once, HubSpot at 100 calls per 10 s (Free/Starter)", &b, users, None);
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{db}{ext}"));
        }
    }

    let s = sim("100").await;
    let db = temp("db").display().to_string();
    let (url, _r) = relay(&s.url, &db, "100").await;
    let one = burst_on(&s.url, &[url], users, 5).await;
    burst_row("1,000 new users at once, 5 pages each, HubSpot at 100 calls per 10 s: one relay on SQLite", &one, users, None);
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{db}{ext}"));
    }

    for (row, rate, what) in [("3", "100", "each counting 100 calls per 10 s"), ("4", "50", "hard split, 50 calls per 10 s each")] {
        if !row_on(row) {
            continue;
        }
        let s = sim("100").await;
        let db = pg::fresh_database();
        let (a, _ra) = relay(&s.url, &db, rate).await;
        let (b, _rb) = relay(&s.url, &db, rate).await;
        let two = burst_on(&s.url, &[a, b], users, 5).await;
        burst_row(&format!("the same on two relays on one PostgreSQL, {what}"), &two, users, Some(&one));
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let only = |name: &str| args.iter().any(|a| a == &format!("--only={name}"));
    let any_only = args.iter().any(|a| a.starts_with("--only="));
    println!("| measure | value |\n|---|---|");

    if !any_only || only("warm") {
        let ceiling = warm(&[bare().await]).await;
        row("bare axum handler, fixed ticket (the ceiling)", &ceiling, None);

        let s = sim("0").await;
        let db = temp("db").display().to_string();
        let (url, _r) = relay(&s.url, &db, "100000").await;
        row("relay on SQLite", &warm(&[url]).await, Some(&ceiling));
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{db}{ext}"));
        }

        let s = sim("0").await;
        let db = pg::fresh_database();
        let (url, _r) = relay(&s.url, &db, "100000").await;
        row("relay on PostgreSQL", &warm(&[url]).await, Some(&ceiling));

        let s = sim("0").await;
        let db = pg::fresh_database();
        let (a, _ra) = relay(&s.url, &db, "100000").await;
        let (b, _rb) = relay(&s.url, &db, "100000").await;
        row("two relays on one PostgreSQL, load split", &warm(&[a, b]).await, Some(&ceiling));
    }
    if !any_only || only("burst") {
        burst().await;
    }
    if args.iter().any(|a| a == "--million") || only("million") {
        million().await;
    }
}
