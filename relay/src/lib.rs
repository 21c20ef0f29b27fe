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
pub mod repair;
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
    ///
    /// At most `HSQ_MAX_CONNECTIONS` connections are served at once: past that, new ones wait in
    /// the listen queue (not in the relay's memory or open files) until one closes. A connection's
    /// request head must arrive within `HSQ_HEADER_TIMEOUT_MS` of when the relay began waiting
    /// for it (hyper's header read timeout), and one on which no request is in flight and no byte
    /// moved for `HSQ_IDLE_TIMEOUT_MS` is closed, so neither a slow nor a silent client holds a
    /// connection.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let config = self.relay.config.clone();
        let max = config.max_connections.max(1);
        let slots = Arc::new(tokio::sync::Semaphore::new(max as usize));
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let conn = Connection {
            router: self.router,
            idle: Duration::from_millis(config.idle_timeout_ms),
            header: Duration::from_millis(config.header_timeout_ms),
        };
        tokio::pin!(stop);
        loop {
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
                _ = &mut stop => break,
            };
            let (stream, peer) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        accept_error(e).await;
                        continue;
                    }
                },
                _ = &mut stop => break,
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(conn.clone().serve(stream, peer, slot, stopped.clone()));
        }
        drop(self.listener);
        let _ = stopping.send(true);
        // Every connection holds a slot until it ends.
        let _all = slots.acquire_many(max).await;
        Ok(())
    }
}

/// An accept that failed: a client that gave up is skipped; anything else (out of open files) is
/// logged and waited out, as hyper's and axum's servers do.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; waiting a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// How one client connection is served.
#[derive(Debug, Clone)]
struct Connection {
    router: axum::Router,
    idle: Duration,
    header: Duration,
}

/// When bytes last moved on a connection and how many of its requests are in flight.
#[derive(Debug)]
struct Activity {
    start: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    in_flight: std::sync::atomic::AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    /// How long the connection has been idle: None while a request is in flight.
    fn idle_for(&self) -> Option<Duration> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.in_flight.load(Relaxed) > 0 {
            return None;
        }
        let now = self.start.elapsed().as_millis() as u64;
        Some(Duration::from_millis(now.saturating_sub(self.last_ms.load(Relaxed))))
    }
}

/// A request in flight on a connection; ending, it counts as activity.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(a: Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The client's socket, noting each read or write that moves bytes.
struct Tracked {
    io: tokio::net::TcpStream,
    activity: Arc<Activity>,
}

impl tokio::io::AsyncRead for Tracked {
    fn poll_read(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl tokio::io::AsyncWrite for Tracked {
    fn poll_write(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }
    fn poll_write_vectored(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Connection {
    /// Serves one connection until it ends, the idle timeout closes it, or the relay stops (then
    /// its request in flight is finished first).
    async fn serve(
        self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        _slot: tokio::sync::OwnedSemaphorePermit,
        mut stopped: tokio::sync::watch::Receiver<bool>,
    ) {
        let activity = Arc::new(Activity {
            start: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
        });
        let router = hyper_util::service::TowerToHyperService::new(self.router);
        let counted = activity.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let guard = InFlight::new(counted.clone());
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            let call = hyper::service::Service::call(&router, req);
            async move {
                let res = call.await;
                drop(guard);
                res
            }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(self.header);
        let io = hyper_util::rt::TokioIo::new(Tracked { io: stream, activity: activity.clone() });
        let conn = http.serve_connection(io, service);
        tokio::pin!(conn);
        let mut stopping = *stopped.borrow();
        if stopping {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            let wait = match activity.idle_for() {
                Some(d) if d >= self.idle => {
                    tracing::debug!(%peer, "closing an idle connection");
                    return;
                }
                Some(d) => self.idle - d,
                None => self.idle,
            };
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                    return;
                }
                changed = stopped.changed(), if !stopping => {
                    stopping = true;
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
            }
        }
    }
}
