//! `hsq-relay`: verifies the app's signed identity assertion, reads and updates HubSpot by contact
//! id (never by email), and hands the page a ticket whose email is safe to send.
//!
//! `main.rs` is a thin CLI over this library; tests build an [`Application`] on port 0.
#![deny(missing_debug_implementations)]

pub mod assertion;
pub mod config;
pub mod error;
pub mod hubspot;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod relay;
pub mod routes;
pub mod store;
pub mod sync;
pub mod webhooks;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use config::ServeArgs;
use metrics::Metrics;
use relay::Relay;
use routes::{AppState, IpLimiter};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// A relay bound to its port, ready to serve.
#[derive(Debug)]
pub struct Application {
    pub addr: SocketAddr,
    pub relay: Arc<Relay>,
    listener: tokio::net::TcpListener,
    router: axum::Router,
}

async fn count(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "other".into());
    let res = next.run(req).await;
    m.request(&route, res.status().as_u16());
    res
}

/// The longest request target (path and query) the relay reads; longer ones get 414.
pub const URI_LIMIT: usize = 8 * 1024;

/// The relay's answers are bounded in time and size, and every error is typed JSON.
async fn guard(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map(|p| p.as_str().len()).unwrap_or(0);
    if target > URI_LIMIT {
        return error::ApiError::UriTooLong(URI_LIMIT).into_response();
    }
    let res = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => return error::ApiError::Timeout(timeout.as_secs_f64().ceil() as u64).into_response(),
    };
    json_errors(res).await
}

/// Turns an error response that is not JSON (axum's own rejections, the router's 405) into
/// `{"error", "message"}`, keeping its status and headers (`Allow`, `Retry-After`).
async fn json_errors(res: Response) -> Response {
    let status = res.status();
    let is_json = res.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.ok().and_then(|b| String::from_utf8(b.to_vec()).ok()).unwrap_or_default();
    let message = if text.trim().is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text.trim().to_string() };
    let body = serde_json::json!({ "error": error::code_for(status), "message": message }).to_string();
    parts.headers.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The router for a relay (tests can drive it without a socket).
pub fn app(relay: Arc<Relay>) -> axum::Router {
    let config = relay.config.clone();
    let origins: Vec<HeaderValue> = config.allowed_origins.0.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST, Method::DELETE])
        .allow_headers([axum::http::header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600));
    let state = AppState { limiter: Arc::new(IpLimiter::new(config.rate_limit_per_ip)), relay: relay.clone() };
    routes::router()
        .merge(webhooks::router())
        .with_state(state)
        .fallback(|| async { error::ApiError::NotFound("no such endpoint".into()) })
        .layer(axum::middleware::from_fn_with_state(Duration::from_millis(config.request_timeout_ms), guard))
        .layer(axum::middleware::from_fn_with_state(relay.metrics.clone(), count))
        .layer(axum::extract::DefaultBodyLimit::max(routes::BODY_LIMIT))
        .layer(cors)
}

impl Application {
    /// Opens the store, builds the HubSpot client, binds the listener and starts the outbox.
    pub async fn build(config: ServeArgs) -> anyhow::Result<Self> {
        use anyhow::Context;
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());
        let store = store::open(&config.db, config.db_pool as usize)
            .await
            .with_context(|| format!("cannot open HSQ_DB ({}) and apply its migrations", store::describe(&config.db)))?;
        if store.kind() == "sqlite" {
            // One relay owns a SQLite file: claims left by a crash of this relay are its own.
            store.clear_claims().await.context("cannot reset the outbox's claims")?;
        }
        let hubspot = hubspot::HubSpot::new(&config.hubspot, metrics.clone(), Duration::from_millis(config.hubspot_budget_ms))?;
        let relay = Arc::new(Relay::new(store, hubspot, config.clone(), metrics));
        let listener = tokio::net::TcpListener::bind(config.addr).await.with_context(|| format!("cannot listen on HSQ_ADDR {}", config.addr))?;
        let addr = listener.local_addr()?;
        tokio::spawn(outbox::run(relay.clone()));
        tokio::spawn(webhooks::run(relay.clone()));
        tokio::spawn(webhooks::reconcile(relay.clone()));
        tokio::spawn(outbox::prune(relay.clone()));
        Ok(Application { addr, router: app(relay.clone()), relay, listener })
    }

    /// Serves until `stop` resolves, then finishes the requests in flight.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        axum::serve(self.listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stop)
            .await
    }
}
