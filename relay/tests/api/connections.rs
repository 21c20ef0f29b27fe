//! What a client can hold (issue 25, part 5): slow-header and idle connections are closed, the
//! connections served at once are capped, and webhook deliveries are refused before their body
//! is read when the head already says no, and bounded in size and events.

use crate::helpers::*;
use hubspot_sim::webhooks::signature_v3;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOOK_SECRET: &str = "hubspot-app-client-secret-0123";

fn host(app: &TestApp) -> String {
    app.url.trim_start_matches("http://").to_string()
}

/// Waits (up to `secs`) for the relay to close the connection; answers whether it did. What it
/// may have sent before (a 408, nothing) is skipped.
async fn closed_by_relay(s: &mut TcpStream, secs: u64) -> bool {
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Reads one response's status line and headers (up to `secs`): the status, or None when none came.
async fn status_of(s: &mut TcpStream, secs: u64) -> Option<u16> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&got);
    text.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok())
}

#[tokio::test]
async fn connections_trickling_their_headers_are_closed_after_the_header_timeout() {
    // Idle timeout short, but bytes keep arriving: only the header timeout can close these.
    let app = spawn_app(&[], &["--header-timeout-ms", "1000", "--idle-timeout-ms", "400"]).await;
    let mut conns = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(host(&app)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        conns.push(s);
    }
    // A header line every 100 ms, for up to 8 s: a client that never finishes its head.
    let mut closed = vec![false; conns.len()];
    for tick in 0..80 {
        for (i, s) in conns.iter_mut().enumerate() {
            if !closed[i] && s.write_all(format!("x-slow-{tick}: 1\r\n").as_bytes()).await.is_err() {
                closed[i] = true;
            }
        }
        if closed.iter().all(|c| *c) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, s) in conns.iter_mut().enumerate() {
        if !closed[i] {
            closed[i] = closed_by_relay(s, 1).await;
        }
    }
    let n = closed.iter().filter(|c| **c).count();
    println!("slow-header connections closed by the relay: {n} of {}", conns.len());
    assert_eq!(n, conns.len());
    // The relay still serves.
    send(&app.http, Method::GET, format!("{}/healthz", app.url), None, None).await.expect(200);
}

#[tokio::test]
async fn idle_connections_are_closed_and_a_request_in_flight_is_not() {
    let app = spawn_app(&[], &["--idle-timeout-ms", "500", "--header-timeout-ms", "60000"]).await;
    // Connections that never send a byte, and kept-alive ones after a response.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(host(&app)).await.unwrap());
    }
    let mut kept = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(host(&app)).await.unwrap();
        s.write_all(format!("GET /healthz HTTP/1.1\r\nhost: {}\r\n\r\n", host(&app)).as_bytes()).await.unwrap();
        assert_eq!(status_of(&mut s, 5).await, Some(200));
        kept.push(s);
    }
    let mut closed = 0;
    for s in silent.iter_mut().chain(kept.iter_mut()) {
        closed += closed_by_relay(s, 8).await as usize;
    }
    println!("idle connections closed by the relay: {closed} of 25");
    assert_eq!(closed, 25);

    // A request that takes longer than the idle timeout (HubSpot answers after 1.5 s) is answered.
    app.fault(json!({"path": "/crm/v3/objects/contacts", "latencyMs": 1500, "count": 1})).await;
    let t = send(&app.http, Method::POST, format!("{}/v1/identity", app.url), Some(json!({"assertion": mint("u_slow", "s@x.io")})), None).await;
    assert_eq!(t.status, 200, "{}", t.body);
}

#[tokio::test]
async fn past_the_connection_cap_a_new_client_waits_until_a_connection_closes() {
    let app = spawn_app(&[], &["--max-connections", "2", "--idle-timeout-ms", "60000", "--header-timeout-ms", "60000"]).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(host(&app)).await.unwrap();
        s.write_all(format!("GET /healthz HTTP/1.1\r\nhost: {}\r\n\r\n", host(&app)).as_bytes()).await.unwrap();
        assert_eq!(status_of(&mut s, 5).await, Some(200), "the first two are served");
        held.push(s);
    }
    let mut third = TcpStream::connect(host(&app)).await.unwrap();
    third.write_all(format!("GET /healthz HTTP/1.1\r\nhost: {}\r\n\r\n", host(&app)).as_bytes()).await.unwrap();
    let early = status_of(&mut third, 2).await;
    println!("the third connection while two are held: {early:?}");
    assert_eq!(early, None, "a third connection is not served while two are held");
    drop(held.pop());
    let later = status_of(&mut third, 10).await;
    println!("the third connection once one closed: {later:?}");
    assert_eq!(later, Some(200));
}

/// Sends a webhook request head declaring a 1 MiB body, and only 10 bytes of it: answers the
/// status the relay sent without waiting for the rest (None if it waited).
async fn head_only(app: &TestApp, signed: bool) -> Option<u16> {
    let mut s = TcpStream::connect(host(app)).await.unwrap();
    let sig = if signed { format!("x-hubspot-signature-v3: AAAA\r\nx-hubspot-request-timestamp: {}\r\n", now() * 1000) } else { String::new() };
    let head = format!(
        "POST /v1/hubspot/webhooks HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 1048576\r\n{sig}\r\n[{{\"a\":1}},",
        host(app)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    status_of(&mut s, 5).await
}

async fn post_signed(app: &TestApp, body: &str) -> Res {
    let ts = (now() * 1000).to_string();
    let sig = signature_v3(HOOK_SECRET, "POST", &format!("{}/v1/hubspot/webhooks", app.url), body.as_bytes(), &ts);
    let res = app
        .http
        .post(format!("{}/v1/hubspot/webhooks", app.url))
        .header("content-type", "application/json")
        .header("x-hubspot-signature-v3", sig)
        .header("x-hubspot-request-timestamp", ts)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    Res { status, headers, body: res.json().await.unwrap_or_default() }
}

#[tokio::test]
async fn webhook_deliveries_are_refused_from_their_head_before_the_body_is_read() {
    let off = spawn_app(&[], &[]).await;
    let r = head_only(&off, true).await;
    println!("webhooks off, 1 MiB declared: {r:?}");
    assert_eq!(r, Some(404));

    let on = spawn_app(&[], &["--hubspot-client-secret", HOOK_SECRET]).await;
    let r = head_only(&on, false).await;
    println!("no signature headers, 1 MiB declared: {r:?}");
    assert_eq!(r, Some(401));
    let r = head_only(&on, true).await;
    println!("signature headers, 1 MiB declared: {r:?}");
    assert_eq!(r, Some(413));
}

#[tokio::test]
async fn a_signed_delivery_is_bounded_to_hubspots_100_events() {
    let app = spawn_app(&[], &["--hubspot-client-secret", HOOK_SECRET]).await;
    let events = |n: u64| {
        let v: Vec<_> = (0..n)
            .map(|i| json!({"eventId": i, "subscriptionType": "contact.creation", "objectId": 1000 + i, "occurredAt": now() * 1000, "attemptNumber": 0, "portalId": 1}))
            .collect();
        serde_json::Value::Array(v).to_string()
    };
    let hundred = events(100);
    println!("100 events: {} bytes", hundred.len());
    let r = post_signed(&app, &hundred).await;
    assert_eq!(r.body["received"], 100, "{}", r.body);
    let r = post_signed(&app, &events(101)).await;
    println!("101 events: {} {}", r.status, r.body);
    assert_eq!(r.status, 413);
    assert!(r.body["message"].as_str().unwrap().contains("101 events"), "{}", r.body);
    // A body over the limit (the review's 16,000 events are 1.5 MB) is refused by its declared
    // length before it is read: see the test above.
}
