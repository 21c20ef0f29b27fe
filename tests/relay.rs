//! The relay call and the whole module against a real relay and simulator, in headless Chromium
//! (wasm-bindgen-test, `run_in_browser`). `scripts/test-wasm.mjs` starts the servers and a small
//! config server whose URL reaches the tests at build time (`HSQ_TEST_CONFIG`); it answers the
//! relay's URL, a fresh assertion, and endpoints that answer garbage, slowly, or an error.
#![cfg(target_arch = "wasm32")]

use hsq_identity::web::relay;
use hsq_identity::StableIdentity;
use js_sys::{Array, Function, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn js(code: &str) -> JsValue {
    Function::new_no_args(code).call0(&JsValue::UNDEFINED).expect(code)
}

fn get(v: &JsValue, k: &str) -> JsValue {
    Reflect::get(v, &k.into()).unwrap()
}

fn text(v: &JsValue, k: &str) -> String {
    get(v, k).as_string().unwrap_or_else(|| panic!("{k} in {:?}", js_sys::JSON::stringify(v)))
}

/// The config server's answer: `relay`, `assertion`, `sub`, `email`, `garbage`, `slow`, `error`, `down`.
async fn config() -> JsValue {
    let url = option_env!("HSQ_TEST_CONFIG").expect("run through scripts/test-wasm.mjs, which sets HSQ_TEST_CONFIG");
    let res = gloo_fetch(url).await;
    JsFuture::from(res.json().unwrap()).await.unwrap()
}

async fn gloo_fetch(url: &str) -> web_sys::Response {
    let res = gloo_net::http::Request::get(url).send().await.expect("the config server answers");
    res.into()
}

fn ask_body(assertion: &str) -> String {
    format!(r#"{{"assertion":"{assertion}","utk":null,"leaseId":null}}"#)
}

#[wasm_bindgen_test]
async fn the_relay_answers_a_ticket_for_the_assertions_user() {
    let c = config().await;
    let answer = relay::post(&text(&c, "relay"), ask_body(&text(&c, "assertion")), 5000.0).await.expect("an answer");
    assert_eq!(answer.status, 200);
    let t = answer.body.expect("a ticket");
    assert_eq!(t.id.as_deref(), Some(text(&c, "sub").as_str()));
    assert_eq!(t.state.as_deref(), Some("confirmed"), "a new user's email is confirmed: {t:?}");
    assert_eq!(t.email.as_deref(), Some(text(&c, "email").as_str()));
    assert!(t.lease_id.is_some() && t.email_valid_until.is_some() && t.now.is_some(), "{t:?}");
}

#[wasm_bindgen_test]
async fn a_bad_assertion_is_answered_with_the_relays_error() {
    let c = config().await;
    let answer = relay::post(&text(&c, "relay"), ask_body("a.b.c"), 5000.0).await.expect("an answer");
    assert_eq!(answer.status, 401);
    let body = answer.body.expect("a JSON error body");
    assert!(body.id.is_none() && body.message.is_some(), "{body:?}");
}

#[wasm_bindgen_test]
async fn garbage_slow_and_unreachable_relays_are_reported_not_thrown() {
    let c = config().await;
    let garbage = relay::post(&text(&c, "garbage"), "{}".into(), 5000.0).await.expect("an answer");
    assert_eq!((garbage.status, garbage.body.is_none()), (200, true), "a body that is not JSON reads as none");
    let wrong = relay::post(&text(&c, "error"), "{}".into(), 5000.0).await.expect("an answer");
    assert_eq!(wrong.status, 503);
    assert_eq!(wrong.body.and_then(|b| b.message).as_deref(), Some("HubSpot is down"));
    let slow = relay::post(&text(&c, "slow"), "{}".into(), 300.0).await;
    assert_eq!(slow.unwrap_err(), "the relay did not answer in 300 ms");
    let down = relay::post(&text(&c, "down"), "{}".into(), 5000.0).await;
    assert!(down.is_err_and(|e| !e.is_empty()));
}

#[wasm_bindgen_test]
fn lease_urls_sit_beside_the_identity_url() {
    assert_eq!(relay::lease_url("/hsq/v1/identity", "l_1"), "/hsq/v1/leases/l_1");
    assert_eq!(relay::lease_url("https://r.example/v1/identity", "l_2"), "https://r.example/v1/leases/l_2");
}

/// Starts the module with `extra` options over the defaults (granted consent, no storage) and
/// answers its events.
async fn start(relay_url: &str, assertion: &str, extra: &str) -> (StableIdentity, Array) {
    js("delete window._hsq; window.hsqEvents = [];");
    let opts = js(&format!(
        r#"return Object.assign({{ relayUrl: {relay_url:?}, assertion: {assertion:?}, consent: "granted", storage: "none",
            onEvent: (e) => window.hsqEvents.push(e) }}, {extra});"#
    ));
    let hs = StableIdentity::start(opts).await.expect("start resolves");
    (hs, js("return window.hsqEvents;").into())
}

fn queued() -> Vec<String> {
    Array::from(&js("return Array.from(window._hsq);")).iter().map(|e| js_sys::JSON::stringify(&e).unwrap().into()).collect()
}

#[wasm_bindgen_test]
async fn start_identifies_with_the_confirmed_email_through_the_relay() {
    let c = config().await;
    let (sub, email) = (text(&c, "sub"), text(&c, "email"));
    let (hs, events) = start(&text(&c, "relay"), &text(&c, "assertion"), "{}").await;
    let identified = events.iter().find(|e| text(e, "type") == "identified").expect("identified");
    assert_eq!((text(&identified, "state"), text(&identified, "email")), ("confirmed".into(), email.clone()));
    assert_eq!(get(&identified, "cached").as_bool(), Some(false));
    let q = queued();
    assert_eq!(q.first().map(String::as_str), Some(format!(r#"["identify",{{"id":"{sub}"}}]"#).as_str()), "{q:?}");
    assert!(q.contains(&format!(r#"["identify",{{"id":"{sub}","email":"{email}"}}]"#)), "{q:?}");
    let identity = hs.identity();
    assert_eq!(text(&identity, "email"), email);
    assert!(get(&identity, "leaseUntilLocal").is_undefined(), "the page-clock field stays inside");
    // Held views wait for nothing now: a view goes straight to the queue, with the path.
    hs.track_page_view("/next".into()).unwrap();
    let q = queued();
    assert_eq!(&q[q.len() - 2..], [r#"["setPath","/next"]"#, r#"["trackPageView"]"#]);
    assert!(hs.track_page_view("no-slash".into()).is_err());
    assert!(hs.track("".into(), JsValue::UNDEFINED).is_err());
    hs.reset();
    assert!(hs.identity().is_null());
}

#[wasm_bindgen_test]
async fn a_relay_answering_garbage_leaves_the_page_on_id_only() {
    let c = config().await;
    let sub = text(&c, "sub");
    let (hs, events) = start(&text(&c, "garbage"), &text(&c, "assertion"), "{ timeoutMs: 2000 }").await;
    let errors: Vec<String> = events.iter().filter(|e| text(e, "type") == "relay-error").map(|e| text(&e, "message")).collect();
    assert_eq!(errors.first().map(String::as_str), Some("the relay answered 200"), "{errors:?}");
    assert_eq!(queued(), [format!(r#"["identify",{{"id":"{sub}"}}]"#)]);
    assert!(hs.identity().is_null());
    hs.reset();
}

#[wasm_bindgen_test]
async fn a_slow_relay_lets_start_resolve_after_the_timeout() {
    let c = config().await;
    let (hs, _) = start(&text(&c, "slow"), &text(&c, "assertion"), "{ timeoutMs: 300 }").await;
    let sub = text(&c, "sub");
    assert_eq!(queued(), [format!(r#"["identify",{{"id":"{sub}"}}]"#)], "identified by id while the relay is out");
    hs.reset();
}
