//! Property-based fuzzing on stable Rust (proptest; cargo-fuzz needs nightly) of assertion
//! parsing and of request bodies through the whole router. `npm test` runs a bounded number of
//! cases; `scripts/fuzz.sh [SECONDS]` runs for as long as asked and prints executions and crashes.
//!
//! Properties: nothing panics; a verified assertion satisfies every claim rule; no body makes the
//! relay answer 5xx (HubSpot is unreachable here, which the relay must survive too); every error
//! is `{"error", "message"}` JSON.

use crate::helpers::SECRET;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hsq_relay::assertion::{Verifier, MAX_LIFETIME_SECS, SKEW_SECS};
use hsq_relay::config::parse_keys;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const NOW: i64 = 1_790_000_000;

/// Runs `test` over `strategy`: `HSQ_FUZZ_SECS` seconds of rounds when set, else one round of
/// `cases`. Prints executions and failures; fails if any case failed.
fn fuzz<S: Strategy>(name: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let secs: Option<u64> = std::env::var("HSQ_FUZZ_SECS").ok().and_then(|s| s.parse().ok());
    let end = Instant::now() + Duration::from_secs(secs.unwrap_or(0));
    let runs = AtomicU64::new(0);
    let mut crashes = Vec::new();
    let mut round = 0u64;
    loop {
        let mut runner = TestRunner::new(Config { cases: if secs.is_some() { 2000 } else { cases }, failure_persistence: None, ..Config::default() });
        let r = runner.run(&strategy, |v| {
            runs.fetch_add(1, Ordering::Relaxed);
            test(v)
        });
        if let Err(e) = r {
            crashes.push(e.to_string());
        }
        round += 1;
        if secs.is_none() || Instant::now() >= end {
            break;
        }
    }
    println!("fuzz {name}: {} executions in {round} rounds, {} crashes", runs.load(Ordering::Relaxed), crashes.len());
    assert!(crashes.is_empty(), "{name}: {crashes:#?}");
}

fn int() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        (-2000i64..2000).prop_map(|d| json!(NOW + d)),
        Just(json!(i64::MIN)),
        Just(json!(i64::MAX)),
        Just(json!(u64::MAX)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(|s| json!(s)),
        Just(Value::Null),
    ]
}

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        ".{0,40}".prop_map(|s| json!(s)),
        "[a-z]{1,8}@[a-z]{1,8}\\.[a-z]{2,3}".prop_map(|s| json!(s)),
        Just(json!("x".repeat(200))),
        any::<i32>().prop_map(|n| json!(n)),
        Just(Value::Null),
    ]
}

/// A signed token whose header and claims vary: the signature verifies, so every later check is
/// reached.
fn signed_token() -> impl Strategy<Value = String> {
    let kid = prop_oneof![Just(Some("k1".to_string())), Just(None), ".{0,8}".prop_map(Some)];
    let crit = prop_oneof![Just(None), Just(Some(vec![])), Just(Some(vec!["exp".to_string()])), Just(Some(vec!["b64".to_string()]))];
    let aud = prop_oneof![Just(json!("hsq-relay")), Just(json!(["hsq-relay", "x"])), text()];
    (kid, crit, text(), text(), aud, int(), int(), text(), any::<bool>()).prop_map(|(kid, crit, sub, email, aud, iat, exp, first, drop_iat)| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = kid;
        h.crit = crit;
        let mut claims = json!({"sub": sub, "email": email, "aud": aud, "iat": iat, "exp": exp, "firstname": first});
        if drop_iat {
            claims.as_object_mut().unwrap().remove("iat");
        }
        jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    })
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,300}",
        "[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,60}",
        signed_token(),
        // A valid token with one character changed.
        (signed_token(), any::<prop::sample::Index>(), "[A-Za-z0-9_.-]").prop_map(|(t, i, c)| {
            let mut b = t.into_bytes();
            let at = i.index(b.len());
            b[at] = c.as_bytes()[0];
            String::from_utf8(b).unwrap()
        }),
    ]
}

/// Debug builds of proptest's nested strategies and of the router's futures are deep: give the
/// fuzz loops a large stack.
fn big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(256 << 20).spawn(f).unwrap().join().unwrap_or_else(|e| std::panic::resume_unwind(e));
}

#[test]
fn fuzz_assertion_parsing() {
    big_stack(fuzz_assertion_parsing_inner);
}

fn fuzz_assertion_parsing_inner() {
    let v = Verifier::new(&parse_keys(&format!("k1:{SECRET}")).unwrap());
    fuzz("assertion", 3000, token(), |t| {
        if let Ok(c) = v.verify(&t, NOW) {
            prop_assert!(c.iat <= NOW + SKEW_SECS && c.exp >= NOW - SKEW_SECS, "{c:?}");
            prop_assert!(c.exp > c.iat && c.exp - c.iat <= MAX_LIFETIME_SECS, "{c:?}");
            prop_assert!(c.iat >= 0 && c.iat.checked_mul(1000).is_some(), "{c:?}");
            prop_assert!((1..=128).contains(&c.sub.chars().count()), "{c:?}");
            prop_assert!(hsq_relay::assertion::valid_email(&c.email) && c.email == c.email.to_ascii_lowercase(), "{c:?}");
        }
        Ok(())
    });
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        "{", "}", "[", "]", ":", ",", "\"assertion\"", "\"utk\"", "\"leaseId\"", "\"email\"", "\"properties\"", "\"firstname\"",
        "\"hsq_user_id\"", "\"EMAIL\"", "null", "1e999", "-0", "\"\\u0000\"", "\"\\ud800\"", "true", "\"x\"", "\"a@x.io\"",
        "\"00000000000000000000000000000000\"", "\"l_00000000000000000000000000000000\"", "{}", "[]",
    ]);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(pieces, 0..16).prop_map(|p| p.concat().into_bytes()),
        (token(), text(), text()).prop_map(|(t, u, l)| json!({"assertion": t, "utk": u, "leaseId": l}).to_string().into_bytes()),
        (text(), prop::collection::btree_map(".{0,12}", text(), 0..4))
            .prop_map(|(e, p)| json!({"email": e, "properties": p}).to_string().into_bytes()),
    ]
}

#[test]
fn fuzz_request_bodies_through_the_router() {
    big_stack(fuzz_request_bodies_inner);
}

fn fuzz_request_bodies_inner() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let db = crate::helpers::temp_db();
    // HubSpot at a port where nothing listens, with short budgets: the relay must answer anyway.
    let args = crate::helpers::serve_args("http://127.0.0.1:9", &db, &["--hubspot-budget-ms", "100", "--hubspot-timeout-ms", "100"]);
    let router = rt.block_on(async {
        let metrics = std::sync::Arc::new(hsq_relay::metrics::Metrics::default());
        let store = hsq_relay::store::open(&db, 4).await.unwrap();
        let hubspot = hsq_relay::hubspot::HubSpot::new(&args.hubspot, metrics.clone(), Duration::from_millis(100)).unwrap();
        let relay = hsq_relay::relay::Relay::new(store, hubspot, std::sync::Arc::new(args), metrics);
        hsq_relay::app(std::sync::Arc::new(relay))
    });
    let routes = prop::sample::select(vec![
        ("POST", "/v1/identity"),
        ("PUT", "/v1/users/u_1"),
        ("PUT", "/v1/users/%FF"),
        ("POST", "/v1/leases/l_00000000000000000000000000000000/release"),
        ("DELETE", "/v1/leases/l_0"),
        ("GET", "/v1/identity"),
    ]);
    fuzz("request bodies", 400, (routes, body()), |((method, path), body)| {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", crate::helpers::ADMIN))
            .extension(ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 4000))))
            .body(Body::from(body))
            .unwrap();
        let (status, bytes) = rt.block_on(async {
            let res = router.clone().oneshot(req).await.unwrap();
            let status = res.status();
            (status, axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap())
        });
        prop_assert!(status.as_u16() < 500 || status.as_u16() == 503, "{method} {path} -> {status}");
        if status.as_u16() >= 400 {
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(format!("{status} not JSON: {e}")))?;
            prop_assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
        }
        Ok(())
    });
    drop(router);
    rt.shutdown_background();
    crate::helpers::remove_db(&db);
}
