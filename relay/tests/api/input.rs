use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn bad_assertions_are_refused_with_401_naming_the_problem() {
    let app = spawn_app(&[], &[]).await;
    let good = mint("u_1", "a@x.io");
    let forged = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("k1".into());
        let claims = json!({"sub": "admin", "email": "a@x.io", "aud": "hsq-relay", "iat": now(), "exp": now() + 60});
        jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_secret(b"someone-elses-secret-0123456789abcdef")).unwrap()
    };
    let mut spliced: Vec<&str> = good.split('.').collect();
    spliced[1] = forged.split('.').nth(1).unwrap();
    let spliced = spliced.join(".");
    let cases = [
        (forged.clone(), "signature"),
        (spliced, "signature"),
        (mint_claims(json!({"sub": "u", "email": "a@x.io", "aud": "hsq-relay", "iat": now() - 1000, "exp": now() - 100})), "expired"),
        (mint_claims(json!({"sub": "u", "email": "a@x.io", "aud": "other", "iat": now(), "exp": now() + 60})), "aud"),
        (mint_claims(json!({"sub": "u", "email": "a@x.io", "aud": "hsq-relay", "iat": now(), "exp": now() + 3600})), "lifetime"),
        (format!("eyJhbGciOiJub25lIiwia2lkIjoiazEifQ.{}.", good.split('.').nth(1).unwrap()), "header"),
        (format!("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.{}.{}", good.split('.').nth(1).unwrap(), good.split('.').nth(2).unwrap()), "alg"),
        ({
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            h.kid = Some("k9".into());
            jsonwebtoken::encode(&h, &json!({"sub": "u", "email": "a@x.io", "aud": "hsq-relay", "iat": now(), "exp": now() + 60}), &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
        }, "kid"),
        ("not a jws".to_string(), "header"),
    ];
    for (assertion, word) in cases {
        let r = app.identity_raw(json!({"assertion": assertion})).await;
        assert_eq!(r.status, 401, "{word}: {}", r.body);
        assert_eq!(r.body["error"], "unauthorized");
        assert!(r.body["message"].as_str().unwrap().contains(word), "{word}: {}", r.body);
    }
    assert!(app.contacts().await.is_empty());
}

#[tokio::test]
async fn malformed_oversized_and_mistyped_bodies_get_clear_errors() {
    let app = spawn_app(&[], &[]).await;
    let raw = |body: String, ct: &'static str| {
        let http = app.http.clone();
        let url = format!("{}/v1/identity", app.url);
        async move {
            let r = http.post(url).header("content-type", ct).body(body).send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (s, b) = raw("{\"assertion\": ".into(), "application/json").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("bad_request")));
    assert!(b["message"].as_str().unwrap().contains("JSON"));
    let (s, b) = raw(format!("{{\"assertion\": \"{}\"}}", "x".repeat(17 * 1024)), "application/json").await;
    assert_eq!((s, b["error"].as_str()), (413, Some("payload_too_large")));
    let (s, b) = raw("{\"assertion\": 5}".into(), "application/json").await;
    assert_eq!(s, 400);
    assert!(b["message"].as_str().unwrap().contains("invalid type: integer `5`, expected a string"), "{b}");
    let (s, b) = raw(json!({"assertion": mint("u", "a@x.io"), "utk": "ABC"}).to_string(), "application/json").await;
    assert_eq!(s, 400);
    assert!(b["message"].as_str().unwrap().contains("utk"));
    let (s, b) = raw(json!({"assertion": mint("u", "a@x.io"), "leaseId": "nope"}).to_string(), "application/json").await;
    assert_eq!(s, 400);
    assert!(b["message"].as_str().unwrap().contains("leaseId"));
    let (s, _) = raw(json!({"utk": null}).to_string(), "application/json").await;
    assert_eq!(s, 400, "missing assertion");
    let r = send(&app.http, Method::GET, format!("{}/nope", app.url), None, None).await;
    assert_eq!((r.status.as_u16(), r.body["error"].as_str()), (404, Some("not_found")));
    assert_eq!(app.release("l_short").await, 400);
}

#[tokio::test]
async fn the_admin_api_needs_its_token_and_a_valid_email() {
    let app = spawn_app(&[], &[]).await;
    let r = send(&app.http, Method::PUT, format!("{}/v1/users/u", app.url), Some(json!({"email": "a@x.io"})), Some("wrong-token-000000")).await;
    assert_eq!(r.status, 401);
    let r = send(&app.http, Method::PUT, format!("{}/v1/users/u", app.url), Some(json!({"email": "a@x.io"})), None).await;
    assert_eq!(r.status, 401);
    let r = app.put_user("u", json!({"email": "nope"})).await;
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().contains("nope"));
    let r = app.put_user("u", json!({"email": "a@x.io", "properties": {"email": "x"}})).await;
    assert_eq!(r.status, 400);
    let r = send(&app.http, Method::GET, format!("{}/v1/users/unknown", app.url), None, Some(ADMIN)).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn cors_answers_only_the_allowed_origins() {
    let app = spawn_app(&[], &[]).await;
    for (origin, allowed) in [("http://app.test", true), ("http://evil.test", false)] {
        let r = app
            .http
            .request(Method::OPTIONS, format!("{}/v1/identity", app.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        let acao = r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(acao.as_deref() == Some(origin), allowed, "{origin}");
    }
}

#[tokio::test]
async fn the_page_api_limits_each_client_address() {
    let app = spawn_app(&[], &["--rate-limit-per-ip", "2"]).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(app.identity_raw(json!({"assertion": "x"})).await.status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

/// A fuzz of the page API's body parsing: random bytes and random JSON never make it answer 5xx.
#[tokio::test]
async fn random_bodies_never_make_the_relay_answer_5xx() {
    let app = spawn_app(&[], &[]).await;
    let pieces = ["{", "}", "[", "]", "\"assertion\"", "\"utk\"", "\"leaseId\"", ":", ",", "null", "1e999", "\"\\u0000\"", "true", "\"x\"", &mint("f", "f@x.io")];
    for i in 0..400u32 {
        let body: String = if i % 4 == 0 {
            (0..(i % 64)).map(|_| rand::random::<u8>() as char).collect()
        } else {
            (0..(1 + i % 12)).map(|_| pieces[rand::random_range(0..pieces.len())]).collect()
        };
        let r = app.http.post(format!("{}/v1/identity", app.url)).body(body.clone()).send().await.unwrap();
        assert!(r.status().as_u16() < 500, "{body:?} -> {}", r.status());
    }
}
