//! The relay's one error type, answered as `{"error": "<code>", "message": "..."}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; the message names what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// 401: the assertion (or admin token) is missing, bad or expired.
    #[error("{0}")]
    Unauthorized(String),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 414: the request target is over the limit.
    #[error("the request target is longer than {0} bytes")]
    UriTooLong(usize),
    /// 413: the body is over the limit.
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// 413: a webhook delivery holds more events than HubSpot sends in one request.
    #[error("the delivery holds {0} events; at most {1} are accepted per request (HubSpot sends up to {1})")]
    TooManyEvents(usize, usize),
    /// 429: this client sends too fast; retry after the given seconds.
    #[error("too many requests; retry in {0} s")]
    RateLimited(u64),
    /// 503: HubSpot cannot be called now; retry after the given seconds.
    #[error("HubSpot is unavailable; retry in {0} s")]
    Unavailable(u64),
    /// 503: the database is busy or unavailable (see `StoreError::is_unavailable`).
    #[error("the relay's database is busy; retry in {0} s")]
    StoreBusy(u64),
    /// 503: the request took longer than the relay answers in; retry after the given seconds.
    #[error("the request took longer than {0} s; retry shortly")]
    Timeout(u64),
    /// 500: logged in full, answered with a generic message.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            // The database is busy or unavailable for now, not broken: no connection came free
            // in time (a burst larger than the pool), none could be opened (the server is down or
            // restarting), the connection closed under the statement, or SQLite's file stayed
            // locked by another process past the busy timeout. The page asks again in a second.
            // Anything else (a wrong password, a missing database, a bad statement) is an
            // internal error, logged as one.
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "the database is unavailable");
                ApiError::StoreBusy(1)
            }
            e => ApiError::Internal(anyhow::Error::new(e).context("store")),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, retry) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None),
            ApiError::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long", None),
            ApiError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout", Some(1)),
            ApiError::TooLarge(_) | ApiError::TooManyEvents(..) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None),
            ApiError::RateLimited(s) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", Some(*s)),
            ApiError::Unavailable(s) => (StatusCode::SERVICE_UNAVAILABLE, "hubspot_unavailable", Some(*s)),
            ApiError::StoreBusy(s) => (StatusCode::SERVICE_UNAVAILABLE, "store_busy", Some(*s)),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        };
        let message = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "internal error; see the relay's log".to_string()
            }
            ApiError::Unavailable(_) | ApiError::StoreBusy(_) | ApiError::Timeout(_) => {
                tracing::warn!(error = %self, "answering 503");
                self.to_string()
            }
            other => other.to_string(),
        };
        let mut res = (status, Json(json!({ "error": code, "message": message }))).into_response();
        if let Some(s) = retry {
            if let Ok(v) = HeaderValue::from_str(&s.max(1).to_string()) {
                res.headers_mut().insert("retry-after", v);
            }
        }
        res
    }
}

/// The `error` code of a status the relay's own handlers did not produce (axum's rejections,
/// 405 from the router): every error response carries `{"error", "message"}`.
pub fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        503 => "unavailable",
        500..=599 => "internal",
        _ => "error",
    }
}
