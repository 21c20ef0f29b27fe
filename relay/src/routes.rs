//! HTTP routes: the page API (`/v1/identity`, `/v1/leases`), the app's server-to-server API
//! (`/v1/users`), `/healthz` and `/metrics`.

use crate::assertion::{valid_email, SKEW_SECS};
use crate::error::{ApiError, ApiResult};
use crate::relay::{now_ms, valid_lease_id, valid_utk, Relay, Ticket};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use crate::config::{canonical, TrustedProxies};
use forwarded_header_value::ForwardedHeaderValue;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Request bodies are at most this large.
pub const BODY_LIMIT: usize = 16 * 1024;

/// Handler state.
#[derive(Clone, Debug)]
pub struct AppState {
    pub relay: Arc<Relay>,
    pub limiter: Arc<IpLimiter>,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/identity", post(identity))
        .route("/v1/leases/{id}", axum::routing::delete(release))
        .route("/v1/leases/{id}/release", post(release_on_hide))
        .route("/v1/users/{sub}", put(put_user).get(get_user))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// Reads a JSON body, naming what is wrong with it.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(BODY_LIMIT)
        } else {
            ApiError::BadRequest(format!("cannot read the body: {e}"))
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("body is not the JSON expected: {e}")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityBody {
    assertion: String,
    #[serde(default)]
    utk: Option<String>,
    #[serde(default)]
    lease_id: Option<String>,
}

/// Per-client-address token bucket for the page API.
#[derive(Debug)]
pub struct IpLimiter {
    per_sec: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl IpLimiter {
    pub fn new(per_sec: u32) -> Self {
        IpLimiter { per_sec: per_sec as f64, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `ip`, or answers how many seconds to wait.
    fn take(&self, ip: IpAddr) -> Result<(), u64> {
        if self.per_sec <= 0.0 {
            return Ok(());
        }
        let burst = self.per_sec * 2.0;
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() > 100_000 {
            b.retain(|_, (_, t)| now.duration_since(*t).as_secs() < 60);
        }
        let (tokens, last) = b.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.per_sec).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil() as u64)
        }
    }
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy; then the last address
/// in `Forwarded` (else `X-Forwarded-For`) that is not a trusted proxy. Headers from an untrusted
/// peer are ignored, so a client cannot pick its own rate-limit bucket.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    // Several header lines of one name are one list (RFC 9110 section 5.3).
    let joined = |name: &str| {
        let v: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        (!v.is_empty()).then(|| v.join(","))
    };
    let parsed = match (joined("forwarded"), joined("x-forwarded-for")) {
        (Some(f), _) => ForwardedHeaderValue::from_forwarded(&f).ok(),
        (None, Some(x)) => ForwardedHeaderValue::from_x_forwarded_for(&x).ok(),
        (None, None) => None,
    };
    let Some(chain) = parsed else { return peer };
    let mut client = peer;
    for hop in chain.iter().rev() {
        // An `unknown` or obfuscated hop ends what can be known: the last known hop it is.
        let Some(ip) = hop.forwarded_for_ip().map(canonical) else { return client };
        client = ip;
        if !trusted.contains(ip) {
            return ip;
        }
    }
    client
}

fn limit(s: &AppState, peer: SocketAddr, headers: &HeaderMap) -> ApiResult<()> {
    s.limiter.take(client_ip(peer.ip(), headers, &s.relay.config.trusted_proxies)).map_err(ApiError::RateLimited)
}

/// A path parameter, or 400 naming what is wrong with it (e.g. invalid UTF-8).
fn path(p: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    p.map(|Path(v)| v).map_err(|e| ApiError::BadRequest(format!("the path is invalid: {}", e.body_text())))
}

async fn identity(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Ticket>> {
    limit(&s, peer, &headers)?;
    let b: IdentityBody = parse(body)?;
    if let Some(u) = b.utk.as_deref() {
        if !valid_utk(u) {
            return Err(ApiError::BadRequest("utk must be the hubspotutk cookie: 32 lowercase hex digits, or null".into()));
        }
    }
    if let Some(l) = b.lease_id.as_deref() {
        if !valid_lease_id(l) {
            return Err(ApiError::BadRequest("leaseId must be a leaseId this relay issued, or null".into()));
        }
    }
    Ok(Json(s.relay.identify(&b.assertion, b.utk.as_deref(), b.lease_id.as_deref()).await?))
}

/// `DELETE /v1/leases/{id}`: ends the lease at once. 204, also for a lease already released or
/// unknown, so a retried release is harmless.
async fn release(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    limit(&s, peer, &headers)?;
    let id = path(id)?;
    if !valid_lease_id(&id) {
        return Err(ApiError::BadRequest("not a leaseId this relay issues".into()));
    }
    s.relay.release(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/leases/{id}/release`, the `sendBeacon` form a page sends on hide: the lease ends
/// after the release grace (the next page of the tab may take it over). 204.
async fn release_on_hide(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    limit(&s, peer, &headers)?;
    let id = path(id)?;
    if !valid_lease_id(&id) {
        return Err(ApiError::BadRequest("not a leaseId this relay issues".into()));
    }
    s.relay.release_after_grace(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

fn admin(s: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    let want = s.relay.config.admin_token.expose().as_bytes();
    // Constant time in the token's length.
    let same = given.len() == want.len() && given.bytes().zip(want.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if same { Ok(()) } else { Err(ApiError::Unauthorized("this endpoint needs Authorization: Bearer $HSQ_ADMIN_TOKEN".into())) }
}

fn check_sub(sub: &str) -> ApiResult<()> {
    let n = sub.chars().count();
    if n == 0 || n > 128 {
        return Err(ApiError::BadRequest(format!("sub must be 1 to 128 characters, got {n}")));
    }
    Ok(())
}

#[derive(Deserialize)]
struct PutUser {
    email: String,
    #[serde(default)]
    properties: Option<Map<String, Value>>,
}

/// `PUT /v1/users/{sub}` `{email, properties?}`: the app reports a user's current email. 202.
async fn put_user(
    State(s): State<AppState>,
    sub: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    admin(&s, &headers)?;
    let sub = path(sub)?;
    check_sub(&sub)?;
    let b: PutUser = parse(body)?;
    let email = b.email.trim().to_ascii_lowercase();
    if !valid_email(&email) {
        return Err(ApiError::BadRequest(format!("email {:?} is not a valid email address", b.email)));
    }
    let props = b.properties.unwrap_or_default();
    let relay = &s.relay;
    relay.check_properties(&props).await?;
    let lock = relay.user_lock(&sub);
    let _g = lock.lock().await;
    let now = now_ms();
    // The app's own report ranks as late as any assertion signed up to the allowed skew after it,
    // so a page's assertion with a clock running ahead cannot turn it back.
    let user = relay.store.note_app_email(&sub, &email, now + SKEW_SECS * 1000, None, None)?;
    // The app states the user again: a contact may be made again after a privacy deletion.
    relay.store.set_erased(&sub, None)?;
    let job = relay.store.job(&sub)?;
    let stale_job = job.as_ref().is_some_and(|j| j.state == "pending" && j.to_email != email);
    let reason = if user.hubspot_email.as_deref() == Some(email.as_str()) && props.is_empty() && !stale_job {
        Some("HubSpot already has this email for the user's contact")
    } else {
        None
    };
    if reason.is_none() {
        // An explicit report always queues again, also after a failed or conflicting attempt.
        relay.store.put_job(&sub, &email, &Value::Object(props.clone()).to_string(), now)?;
        relay.outbox_wake.notify_one();
    }
    let mut out = json!({ "sub": sub, "email": email, "queued": reason.is_none() });
    if let Some(r) = reason {
        out["reason"] = json!(r);
    }
    Ok((StatusCode::ACCEPTED, Json(out)))
}

/// `GET /v1/users/{sub}`: contact id, HubSpot email, pending change, last error.
async fn get_user(State(s): State<AppState>, sub: Result<Path<String>, PathRejection>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&s, &headers)?;
    let sub = path(sub)?;
    check_sub(&sub)?;
    let user = s.relay.store.user(&sub)?.ok_or_else(|| ApiError::NotFound(format!("no user {sub:?} has been seen")))?;
    let job = s.relay.store.job(&sub)?;
    Ok(Json(json!({
        "sub": user.sub,
        "contactId": user.contact_id,
        "hubspotEmail": user.hubspot_email,
        "appEmail": user.app_email,
        "conflict": user.conflict_email.as_ref().map(|e| json!({ "email": e, "contactId": user.conflict_with })),
        "pendingJobs": job.iter().filter(|j| j.state == "pending").collect::<Vec<_>>(),
        "lastJob": job,
        "lastError": user.last_error,
        "erased": s.relay.store.erased(&sub)?,
    })))
}

async fn healthz(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let depth = s.relay.store.outbox_depth()?;
    Ok(Json(json!({ "status": "ok", "outboxDepth": depth })))
}

async fn metrics(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    let depth = s.relay.store.outbox_depth()?;
    let leases = s.relay.store.live_leases(now_ms())?;
    Ok(([("content-type", "text/plain; version=0.0.4")], s.relay.metrics.render(depth, leases)))
}
