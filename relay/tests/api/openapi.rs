use crate::helpers::*;

/// relay/openapi.json is what the code generates; `HSQ_UPDATE_OPENAPI=1 cargo test -p hsq-relay
/// --test api openapi` writes it after an API change.
#[tokio::test]
async fn the_checked_in_openapi_document_is_what_the_code_generates_and_serves() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let generated = hsq_relay::openapi::document();
    if std::env::var("HSQ_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(checked_in == generated, "relay/openapi.json is stale: run HSQ_UPDATE_OPENAPI=1 cargo test -p hsq-relay --test api openapi");
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for p in ["/v1/identity", "/v1/leases/{id}", "/v1/leases/{id}/release", "/v1/users/{sub}", "/healthz", "/metrics", "/openapi.json"] {
        assert!(doc["paths"][p].is_object(), "{p} is described");
    }
    let app = spawn_app(&[], &[]).await;
    let served = reqwest::get(format!("{}/openapi.json", app.url)).await.unwrap();
    assert_eq!(served.headers()["content-type"], "application/json");
    assert_eq!(served.text().await.unwrap(), generated);
}
