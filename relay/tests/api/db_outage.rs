//! A database outage answers 503 `store_busy` with `Retry-After`, never 500 (issue 25, part 3):
//! PostgreSQL behind a TCP proxy the test cuts (the shared test cluster keeps running for the
//! other tests), and a SQLite file another process holds locked.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A relay in this process on `db` (whatever `HSQ_TEST_DB` says), in front of `sim`.
async fn relay_on(sim_url: &str, db: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let app = hsq_relay::Application::build(serve_args(sim_url, db, &["--hubspot-budget-ms", "10000"])).await.unwrap();
    let url = format!("http://{}", app.addr);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    (url, tx)
}

/// A TCP proxy to `target` on a port of its own. `cut` closes every connection through it and
/// refuses new ones (the port stops listening), as a stopped server does; `restore` listens again.
struct Proxy {
    port: u16,
    target: u16,
    state: Arc<Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    accept: Option<tokio::task::JoinHandle<()>>,
    pipes: Vec<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let p = Proxy { port, target, state: Arc::default() };
        p.restore().await;
        p
    }

    async fn restore(&self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(format!("127.0.0.1:{}", self.port).parse().unwrap()).unwrap();
        let listener = socket.listen(128).unwrap();
        let (target, state) = (self.target, self.state.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut s = state.lock().unwrap();
                s.pipes.retain(|p| !p.is_finished());
                s.pipes.push(pipe);
            }
        });
        self.state.lock().unwrap().accept = Some(accept);
    }

    fn cut(&self) {
        let mut s = self.state.lock().unwrap();
        if let Some(a) = s.accept.take() {
            a.abort();
        }
        for p in s.pipes.drain(..) {
            p.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Counts answers by endpoint and status (with the `error` code), and whether every 503 carried
/// `Retry-After`.
#[derive(Default, Debug)]
struct Tally {
    by: BTreeMap<String, u64>,
    without_retry_after: u64,
}

impl Tally {
    fn note(&mut self, what: &str, r: &Res) {
        let code = r.body["error"].as_str().unwrap_or("");
        *self.by.entry(format!("{what} {} {code}", r.status.as_u16())).or_default() += 1;
        if r.status == 503 && r.headers.get("retry-after").is_none() {
            self.without_retry_after += 1;
        }
    }
    fn count(&self, pred: impl Fn(&str) -> bool) -> u64 {
        self.by.iter().filter(|(k, _)| pred(k)).map(|(_, v)| v).sum()
    }
}

/// The requests a page, the app and operations send, one round.
async fn round(http: &reqwest::Client, url: &str, i: u32, tally: &mut Tally) {
    let r = send(http, Method::POST, format!("{url}/v1/identity"), Some(json!({"assertion": mint("u_warm", "w@x.io")})), None).await;
    tally.note("identify(warm)", &r);
    let r = send(http, Method::POST, format!("{url}/v1/identity"), Some(json!({"assertion": mint(&format!("u_new{i}"), &format!("n{i}@x.io"))})), None).await;
    tally.note("identify(new)", &r);
    let r = send(http, Method::PUT, format!("{url}/v1/users/u_warm"), Some(json!({"email": format!("w{i}@x.io")})), Some(ADMIN)).await;
    tally.note("PUT user", &r);
    let r = send(http, Method::GET, format!("{url}/v1/users/u_warm"), None, Some(ADMIN)).await;
    tally.note("GET user", &r);
    let r = send(http, Method::GET, format!("{url}/healthz"), None, None).await;
    tally.note("healthz", &r);
}

#[tokio::test]
async fn postgres_going_away_answers_503_store_busy_with_retry_after_and_recovers() {
    let sim = start_sim(&[]).await;
    let db = crate::pg::fresh_database();
    let (head, rest) = db.rsplit_once('/').unwrap();
    let port: u16 = head.rsplit_once(':').unwrap().1.parse().unwrap();
    let proxy = Proxy::start(port).await;
    let proxied = format!("postgres://postgres@127.0.0.1:{}/{rest}", proxy.port);
    let (url, _stop) = relay_on(&sim.url, &proxied).await;
    let http = reqwest::Client::new();
    let t = send(&http, Method::POST, format!("{url}/v1/identity"), Some(json!({"assertion": mint("u_warm", "w@x.io")})), None).await.expect(200);
    assert_eq!(t["state"], "confirmed");

    proxy.cut();
    let mut outage = Tally::default();
    let end = Instant::now() + Duration::from_secs(3);
    let mut i = 0;
    while Instant::now() < end {
        round(&http, &url, i, &mut outage).await;
        i += 1;
    }
    println!("PostgreSQL cut, {i} rounds: {:#?}", outage);
    let total = outage.count(|_| true);
    assert!(total >= 5, "the relay answered during the outage: {total}");
    assert_eq!(outage.count(|k| k.contains(" 500 ")), 0, "no 500 while the database is away: {outage:?}");
    assert_eq!(outage.count(|k| k.ends_with(" 503 store_busy")), total, "every answer is 503 store_busy: {outage:?}");
    assert_eq!(outage.without_retry_after, 0, "every 503 carries Retry-After");

    proxy.restore().await;
    let mut after = Tally::default();
    eventually("the relay answers again once PostgreSQL is back", 20, || async {
        let r = send(&http, Method::GET, format!("{url}/healthz"), None, None).await;
        r.status == 200
    })
    .await;
    round(&http, &url, 10_000, &mut after).await;
    println!("PostgreSQL back: {:#?}", after);
    assert_eq!(after.count(|k| k.contains(" 503 ") || k.contains(" 500 ")), 0, "{after:?}");
}

#[tokio::test]
async fn a_sqlite_file_locked_by_another_process_answers_503_store_busy_not_500() {
    let sim = start_sim(&[]).await;
    let db = temp_sqlite();
    let (url, _stop) = relay_on(&sim.url, &db).await;
    let http = reqwest::Client::new();
    send(&http, Method::POST, format!("{url}/v1/identity"), Some(json!({"assertion": mint("u_warm", "w@x.io")})), None).await.expect(200);

    // Another process's connection takes the write lock and keeps it past the relay's 5 s busy
    // timeout (in WAL mode readers carry on).
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut locked = Tally::default();
    let r = send(&http, Method::POST, format!("{url}/v1/identity"), Some(json!({"assertion": mint("u_new", "n@x.io")})), None).await;
    locked.note("identify(new)", &r);
    let r = send(&http, Method::PUT, format!("{url}/v1/users/u_warm"), Some(json!({"email": "w2@x.io"})), Some(ADMIN)).await;
    locked.note("PUT user", &r);
    let r = send(&http, Method::GET, format!("{url}/healthz"), None, None).await;
    locked.note("healthz", &r);
    println!("SQLite locked by another process: {locked:#?}");
    other.execute_batch("ROLLBACK").unwrap();
    drop(other);
    assert_eq!(locked.count(|k| k.contains(" 500 ")), 0, "{locked:?}");
    assert_eq!(locked.count(|k| k.starts_with("identify(new) 503 store_busy") || k.starts_with("PUT user 503 store_busy")), 2, "{locked:?}");
    assert_eq!(locked.without_retry_after, 0);
    assert_eq!(locked.count(|k| k.starts_with("healthz 200")), 1, "reads go on: {locked:?}");

    // The lock gone, the same writes go through.
    let t = send(&http, Method::POST, format!("{url}/v1/identity"), Some(json!({"assertion": mint("u_new", "n@x.io")})), None).await.expect(200);
    assert_eq!(t["state"], "confirmed");
    send(&http, Method::PUT, format!("{url}/v1/users/u_warm"), Some(json!({"email": "w2@x.io"})), Some(ADMIN)).await.expect(202);
    remove_db(&db);
}
