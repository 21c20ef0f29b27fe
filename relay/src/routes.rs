//! HTTP routes: the page API (`/v1/identity`, `/v1/leases`), the app's server-to-server API
//! (`/v1/users`), `/healthz` and `/metrics`.

use crate::assertion::{valid_email, SKEW_SECS};
use crate::error::{ApiError, ApiResult};
use crate::openapi::ErrorBody;
use crate::store::Job;
use serde::Serialize;
use utoipa::ToSchema;
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
use serde_json::{Map, Value};
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
        .route("/openapi.json", get(openapi_json))
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

/// `POST /v1/identity`: the page's assertion, its `hubspotutk` and the lease it holds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityBody {
    /// The app's signed identity assertion (HS256 compact JWS with `kid`).
    #[schema(max_length = 8192)]
    assertion: String,
    /// The `hubspotutk` cookie: 32 lowercase hex digits.
    #[serde(default)]
    #[schema(pattern = "^[0-9a-f]{32}$")]
    utk: Option<String>,
    /// A lease this relay issued, to renew.
    #[serde(default)]
    #[schema(pattern = "^l_[0-9a-f]{32}$")]
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

/// Verifies the assertion and answers the page's ticket.
#[utoipa::path(post, path = "/v1/identity", tag = "page", request_body = IdentityBody,
    responses(
        (status = 200, description = "The ticket", body = Ticket),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "The assertion is missing, bad or expired", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 429, description = "Too many requests from this client", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, description = "HubSpot is unavailable, or the request timed out", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds"))),
    ))]
pub async fn identity(
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
#[utoipa::path(delete, path = "/v1/leases/{id}", tag = "page",
    params(("id" = String, Path, description = "The leaseId", pattern = "^l_[0-9a-f]{32}$")),
    responses(
        (status = 204, description = "Released (also when unknown or already released)"),
        (status = 400, description = "Not a leaseId this relay issues", body = ErrorBody),
        (status = 429, description = "Too many requests from this client", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds"))),
    ))]
pub async fn release(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let id = lease_path(&s, peer, &headers, id)?;
    s.relay.release(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/leases/{id}/release`, the `sendBeacon` form a page sends on hide: the lease ends
/// after the release grace (the next page of the tab may take it over). 204.
#[utoipa::path(post, path = "/v1/leases/{id}/release", tag = "page",
    params(("id" = String, Path, description = "The leaseId", pattern = "^l_[0-9a-f]{32}$")),
    responses(
        (status = 204, description = "The lease ends after the release grace"),
        (status = 400, description = "Not a leaseId this relay issues", body = ErrorBody),
        (status = 429, description = "Too many requests from this client", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds"))),
    ))]
pub async fn release_on_hide(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let id = lease_path(&s, peer, &headers, id)?;
    s.relay.release_after_grace(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The lease endpoints' common checks: the client's rate limit, then a `leaseId` this relay issues.
fn lease_path(s: &AppState, peer: SocketAddr, headers: &HeaderMap, id: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    limit(s, peer, headers)?;
    let id = path(id)?;
    if !valid_lease_id(&id) {
        return Err(ApiError::BadRequest("not a leaseId this relay issues".into()));
    }
    Ok(id)
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

/// `PUT /v1/users/{sub}`: the user's current email, and contact properties to set with it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PutUser {
    email: String,
    /// Contact properties of the account (strings, numbers, booleans); not identity, read-only
    /// or calculated ones.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    properties: Option<Map<String, Value>>,
}

/// What a `PUT /v1/users/{sub}` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct PutUserAnswer {
    sub: String,
    email: String,
    /// Whether a change was queued for HubSpot.
    queued: bool,
    /// Why nothing was queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Another contact holds the user's app email.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConflictView {
    email: String,
    contact_id: Option<String>,
}

/// `GET /v1/users/{sub}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    sub: String,
    contact_id: Option<String>,
    hubspot_email: Option<String>,
    app_email: Option<String>,
    conflict: Option<ConflictView>,
    pending_jobs: Vec<Job>,
    last_job: Option<Job>,
    last_error: Option<String>,
    /// HubSpot deleted the user's contact for privacy: no contact is made again until the app PUTs the user.
    erased: bool,
    /// Contacts the tracker made with an email leased to this user, and what the relay did with
    /// each (merged into the user's contact, refused, left with repair off), newest first.
    repairs: Vec<crate::store::Repair>,
    /// The user's leases kept by the relay (live, or ended within the hour), latest first: which
    /// email each page was allowed to send, and when.
    leases: Vec<crate::store::LeaseView>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    status: String,
    outbox_depth: i64,
}

/// `PUT /v1/users/{sub}` `{email, properties?}`: the app reports a user's current email. 202.
#[utoipa::path(put, path = "/v1/users/{sub}", tag = "app", security(("admin" = [])), request_body = PutUser,
    params(("sub" = String, Path, description = "The app's user id (1 to 128 characters)", min_length = 1, max_length = 128)),
    responses(
        (status = 202, description = "Accepted", body = PutUserAnswer),
        (status = 400, description = "Malformed body, invalid email or property", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
    ))]
pub async fn put_user(
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
    let user = relay.store.note_app_email(&sub, &email, now + SKEW_SECS * 1000, None, None).await?;
    // Checked and queued in the user's transaction: relays sharing the database see one order.
    let mut tx = relay.store.begin_user(&sub).await?;
    // The app states the user again: a contact may be made again after a privacy deletion.
    tx.set_erased(None).await?;
    let job = tx.job().await?;
    let stale_job = job.as_ref().is_some_and(|j| j.state == "pending" && j.to_email != email);
    let reason = if user.hubspot_email.as_deref() == Some(email.as_str()) && props.is_empty() && !stale_job {
        Some("HubSpot already has this email for the user's contact")
    } else {
        None
    };
    if reason.is_none() {
        // An explicit report always queues again, also after a failed or conflicting attempt.
        tx.put_job(&email, &Value::Object(props.clone()).to_string(), now).await?;
    }
    tx.commit().await?;
    if reason.is_none() {
        relay.outbox_wake.notify_one();
    }
    Ok((StatusCode::ACCEPTED, Json(PutUserAnswer { sub, email, queued: reason.is_none(), reason: reason.map(str::to_string) })))
}

/// `GET /v1/users/{sub}`: contact id, HubSpot email, pending change, last error.
#[utoipa::path(get, path = "/v1/users/{sub}", tag = "app", security(("admin" = [])),
    params(("sub" = String, Path, description = "The app's user id (1 to 128 characters)", min_length = 1, max_length = 128)),
    responses(
        (status = 200, description = "What the relay knows of the user", body = UserView),
        (status = 400, description = "Invalid sub", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such user has been seen", body = ErrorBody),
    ))]
pub async fn get_user(State(s): State<AppState>, sub: Result<Path<String>, PathRejection>, headers: HeaderMap) -> ApiResult<Json<UserView>> {
    admin(&s, &headers)?;
    let sub = path(sub)?;
    check_sub(&sub)?;
    let user = s.relay.store.user(&sub).await?.ok_or_else(|| ApiError::NotFound(format!("no user {sub:?} has been seen")))?;
    let job = s.relay.store.job(&sub).await?;
    Ok(Json(UserView {
        sub: user.sub,
        contact_id: user.contact_id,
        hubspot_email: user.hubspot_email,
        app_email: user.app_email,
        conflict: user.conflict_email.map(|email| ConflictView { email, contact_id: user.conflict_with }),
        pending_jobs: job.iter().filter(|j| j.state == "pending").cloned().collect(),
        last_job: job,
        last_error: user.last_error,
        erased: s.relay.store.erased(&sub).await?,
        repairs: s.relay.store.repairs(&sub).await?,
        leases: s.relay.store.leases_of(&sub).await?,
    }))
}

#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz(State(s): State<AppState>) -> ApiResult<Json<Health>> {
    let depth = s.relay.store.outbox_depth().await?;
    Ok(Json(Health { status: "ok".into(), outbox_depth: depth }))
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Counters and gauges", body = String, content_type = "text/plain")))]
pub async fn metrics(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    let depth = s.relay.store.outbox_depth().await?;
    let leases = s.relay.store.live_leases(now_ms()).await?;
    Ok(([("content-type", "text/plain; version=0.0.4")], s.relay.metrics.render(depth, leases)))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> impl IntoResponse {
    ([("content-type", "application/json")], crate::openapi::document())
}
