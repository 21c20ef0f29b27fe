//! What stands in front of the handlers: bearer-token auth, HubSpot's rate limits and headers,
//! per-route call counts, and injected faults.

use crate::error::HsError;
use crate::world::now_ms;
use crate::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

const INTERVAL_MS: i64 = 10_000;
const DAY_MS: i64 = 86_400_000;

/// Rate-limit windows, call counts and pending faults.
#[derive(Debug, Default)]
pub struct Gate {
    window: VecDeque<i64>,
    search_window: VecDeque<i64>,
    day: i64,
    day_count: u32,
    /// "METHOD /route status" -> count, for API calls.
    pub calls: BTreeMap<String, u64>,
    pub faults: Vec<Fault>,
    /// Requests held by a `hold` fault wait for this; clearing the faults wakes them.
    pub released: Arc<tokio::sync::Notify>,
    /// How many times the faults were cleared.
    pub releases: u64,
}

impl Gate {
    /// Clears the faults and lets every held request go on.
    pub fn release(&mut self) {
        self.faults.clear();
        self.releases += 1;
        self.released.notify_waiters();
    }
}

/// A fault injected through `POST /__sim/faults`, applied to the next `count` matching requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// A path prefix (`/crm/v3/objects/contacts` matches every contacts call).
    pub path: String,
    /// Only this method, if set.
    #[serde(default)]
    pub method: Option<String>,
    /// Answer with this status (429 with HubSpot's rate-limit body; others with an error body).
    #[serde(default)]
    pub status: Option<u16>,
    /// Wait this long first.
    #[serde(default)]
    pub latency_ms: u64,
    /// Drop the connection instead of answering.
    #[serde(default)]
    pub drop: bool,
    /// Hold the request until the faults are cleared (`DELETE /__sim/faults`), then serve it.
    #[serde(default)]
    pub hold: bool,
    /// How many requests it applies to.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

impl Gate {
    pub fn reset_limits(&mut self) {
        self.window.clear();
        self.search_window.clear();
        self.day_count = 0;
    }
}

fn rate_limited(policy: &str, message: &str, retry_after: Option<i64>) -> HsError {
    // HubSpot's documented 429 body (hubspot-behavior.md 3.1). `groupName` is a guess at its form.
    let e = HsError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITS", message)
        .with("errorType", "RATE_LIMIT".into())
        .with("policyName", policy.into())
        .with("groupName", "publicapi:private-app".into());
    let mut e = e;
    e.body.remove("category");
    match retry_after {
        Some(ms) => e.header("retry-after", ((ms + 999) / 1000).max(1).to_string()),
        None => e,
    }
}

/// Reads and drops a request's body before answering without the handler, so the client's
/// keep-alive connection stays usable (an unread body makes the server close it, which HubSpot's
/// SDKs then see as "connection closed without response" on their next call).
async fn drain(req: Request) {
    let _ = axum::body::to_bytes(req.into_body(), 16 << 20).await;
}

/// The search API's own per-second limit (hubspot-behavior.md section 9): its 429 message is
/// HubSpot's; `policyName` and `groupName` are guesses in the documented form.
fn search_limited(retry_after: Option<i64>) -> HsError {
    rate_limited("SECONDLY", "You have reached your secondly limit.", retry_after)
}

/// Auth, rate limits and headers for HubSpot's APIs.
pub async fn api_gate(State(sim): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_default();
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == sim.token);
    let response = if !authorized {
        drain(req).await;
        HsError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )
        .header("x-hubspot-auth-failure", "401 Unauthorized")
        .into_response()
    } else {
        let sw = sim.switches();
        let now = now_ms();
        let verdict = {
            let mut g = sim.gate();
            if now / DAY_MS != g.day {
                g.day = now / DAY_MS;
                g.day_count = 0;
            }
            while g.window.front().is_some_and(|t| *t <= now - INTERVAL_MS) {
                g.window.pop_front();
            }
            while g.search_window.front().is_some_and(|t| *t <= now - 1000) {
                g.search_window.pop_front();
            }
            let is_search = route.ends_with("/search");
            let limited = sw.rate_limit > 0;
            let verdict = if limited && g.day_count >= sw.daily_limit {
                Err(rate_limited("DAILY", "You have reached your daily limit.", sw.retry_after.then_some(DAY_MS - now % DAY_MS)))
            } else if limited && g.window.len() as u32 >= sw.rate_limit {
                let wait = g.window.front().map(|t| t + INTERVAL_MS - now).unwrap_or(INTERVAL_MS);
                Err(rate_limited(
                    "TEN_SECONDLY_ROLLING",
                    "You have reached your ten_secondly_rolling limit.",
                    sw.retry_after.then_some(wait),
                ))
            } else if limited && is_search && sw.search_rate_limit > 0 && g.search_window.len() as u32 >= sw.search_rate_limit {
                let wait = g.search_window.front().map(|t| t + 1000 - now).unwrap_or(1000);
                Err(search_limited(sw.retry_after.then_some(wait)))
            } else {
                if limited {
                    g.window.push_back(now);
                    if is_search {
                        g.search_window.push_back(now);
                    }
                }
                g.day_count += 1;
                Ok(())
            };
            let headers = (
                sw.rate_limit,
                sw.rate_limit.saturating_sub(g.window.len() as u32),
                sw.daily_limit,
                sw.daily_limit.saturating_sub(g.day_count),
            );
            (verdict, headers)
        };
        let (verdict, (max, remaining, daily, daily_remaining)) = verdict;
        let mut res = match verdict {
            Ok(()) => next.run(req).await,
            Err(e) => {
                drain(req).await;
                e.into_response()
            }
        };
        let h = res.headers_mut();
        let mut put = |name: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(name, v);
            }
        };
        put("x-hubspot-ratelimit-daily", daily.to_string());
        put("x-hubspot-ratelimit-daily-remaining", daily_remaining.to_string());
        if max > 0 {
            put("x-hubspot-ratelimit-interval-milliseconds", INTERVAL_MS.to_string());
            put("x-hubspot-ratelimit-max", max.to_string());
            put("x-hubspot-ratelimit-remaining", remaining.to_string());
        }
        res
    };
    response
}

/// Counts API calls by route and status, around `apply_faults`.
pub async fn faults(State(sim): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let api = route.as_deref().filter(|r| {
        r.starts_with("/crm/") || r.starts_with("/contacts/") || r.starts_with("/visitor-identification/")
    });
    // A batch call is counted by its operation (`batch/read`, `batch/upsert`, ...), not `{op}`.
    let op = req.uri().path().rsplit('/').next().unwrap_or_default();
    let key = api.map(|r| format!("{} {}", req.method(), r.replace("{op}", op)));
    // HubSpot completes a request whose client went away (hubspot-behavior.md section 10): each
    // request runs in a task of its own, so a client that gives up while it waits (a latency or
    // hold fault, a slow handler) does not cancel it, and its write lands late, as it would there.
    // Run inside the connection's future, hyper would drop it when the client disconnects.
    let task = tokio::spawn(async move {
        let res = apply_faults(&sim, req, next).await;
        if let Some(k) = key {
            *sim.gate().calls.entry(format!("{k} {}", res.status().as_u16())).or_default() += 1;
        }
        res
    });
    match task.await {
        Ok(res) => res,
        Err(e) => HsError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", format!("the simulator failed: {e}")).into_response(),
    }
}

/// Applies injected faults to every route outside `/__sim/`.
async fn apply_faults(sim: &AppState, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().as_str().to_string();
    let fault = {
        let mut g = sim.gate();
        let found = g.faults.iter().position(|f| {
            path.starts_with(&f.path) && f.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(&method))
        });
        found.map(|i| {
            let f = g.faults[i].clone();
            g.faults[i].count -= 1;
            if g.faults[i].count == 0 {
                g.faults.remove(i);
            }
            (f, g.released.clone(), g.releases)
        })
    };
    let Some((f, released, releases)) = fault else { return next.run(req).await };
    if f.hold {
        loop {
            // Made before the check, so a release in between still wakes it.
            let woken = released.notified();
            if sim.gate().releases != releases {
                break;
            }
            woken.await;
        }
    }
    if f.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
    }
    if f.drop {
        // Headers go out, then the body fails: hyper aborts the connection mid-response, which a
        // client sees as a dropped connection.
        let stream = futures_util::stream::once(async {
            Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "dropped by fault"))
        });
        let mut res = Response::new(Body::from_stream(stream));
        res.headers_mut().insert("content-length", HeaderValue::from_static("64"));
        return res;
    }
    let status = f.status.and_then(|s| StatusCode::from_u16(s).ok());
    let Some(status) = status else { return next.run(req).await };
    drain(req).await;
    match status {
        // A 429 injected on the search path answers as the search limit does.
        StatusCode::TOO_MANY_REQUESTS if path.ends_with("/search") => {
            search_limited(sim.switches().retry_after.then_some(1000)).into_response()
        }
        StatusCode::TOO_MANY_REQUESTS => {
            let retry = sim.switches().retry_after.then_some(1000);
            rate_limited("TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit.", retry).into_response()
        }
        status => HsError::new(status, "INTERNAL_ERROR", format!("Injected fault: {}", status.as_u16())).into_response(),
    }
}
