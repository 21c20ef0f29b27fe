//! The browser side: the per-portal tracker script, the collector it sends hits to, the chat
//! widget script, and visitor identification tokens.

use crate::crm::parse;
use crate::error::{HsError, HsResult};
use crate::world::{now_ms, ChatEvent, ChatToken, Hit, CHAT_TOKEN_MS};
use crate::{query_map, AppState};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const TRACKER_JS: &str = include_str!("../assets/tracker.js");
const CHAT_JS: &str = include_str!("../assets/chat.js");

/// A 1x1 transparent GIF, what the collector answers.
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

pub(crate) fn gif() -> Response {
    ([(header::CONTENT_TYPE, "image/gif"), (header::CACHE_CONTROL, "no-store")], GIF).into_response()
}

/// The origin the page reached the simulator at (scripts send their hits back there).
fn origin(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}")
}

fn js(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], body)
        .into_response()
}

/// `GET /{portalId}.js`: the file a page includes instead of `//js.hs-scripts.com/{portalId}.js`.
pub async fn tracker_script(State(sim): State<AppState>, Path(file): Path<String>, headers: HeaderMap) -> Response {
    if file != format!("{}.js", sim.portal_id) {
        return HsError::not_found().into_response();
    }
    let sw = sim.switches();
    js(TRACKER_JS
        .replace("__PORTAL_ID__", &sim.portal_id.to_string())
        .replace("__ORIGIN__", &origin(&headers))
        .replace("__CONSENT_BANNER__", if sw.consent_banner { "true" } else { "false" })
        .replace("__CHAT_WIDGET__", if sw.chat_widget { "true" } else { "false" })
        .replace("__COLLECTED_FORMS__", if sw.collected_forms { "true" } else { "false" }))
}

/// `GET /collectedforms.js`: the collected-forms script (HubSpot's
/// `js.hscollectedforms.net/collectedforms.js`), which the tracker loads when the switch is on.
pub async fn collected_forms_script(State(sim): State<AppState>, headers: HeaderMap) -> Response {
    js(crate::forms::SCRIPT_JS.replace("__PORTAL_ID__", &sim.portal_id.to_string()).replace("__ORIGIN__", &origin(&headers)))
}

/// `GET /conversations-embed.js`: the chat widget.
pub async fn chat_script(State(sim): State<AppState>, headers: HeaderMap) -> Response {
    js(CHAT_JS.replace("__PORTAL_ID__", &sim.portal_id.to_string()).replace("__ORIGIN__", &origin(&headers)))
}

fn record(sim: &AppState, kind: &str, q: BTreeMap<String, String>) -> Response {
    let identity = q.get("i").map(|i| form_urlencoded::parse(i.as_bytes()).into_owned().collect::<BTreeMap<_, _>>());
    let url = q.get("pu").cloned().unwrap_or_default();
    let path = q
        .get("po")
        .filter(|p| !p.is_empty())
        .cloned()
        .unwrap_or_else(|| url.splitn(4, '/').nth(3).map(|p| format!("/{}", p.split(['?', '#']).next().unwrap_or(""))).unwrap_or("/".into()));
    let event_properties: BTreeMap<String, String> =
        q.iter().filter_map(|(k, v)| k.strip_prefix('_').map(|k| (k.to_string(), v.clone()))).collect();
    let hit = Hit {
        seq: 0,
        kind: kind.into(),
        portal_id: q.get("a").cloned().unwrap_or_default(),
        utk: q.get("vi").filter(|v| !v.is_empty()).cloned(),
        url,
        path,
        identity,
        contact_id: None,
        created_contact: None,
        event_name: q.get("n").cloned(),
        event_properties,
        reset_visitor: q.get("rv").is_some_and(|v| v == "1"),
        at: now_ms(),
    };
    let sw = sim.switches();
    let honour_id = sw.identify_id == crate::config::IdentifyId::Honoured;
    sim.world().collect_with(hit, sw.secondary_email_lookup, sw.search_lag_ms, honour_id);
    gif()
}

/// `GET /__ptq.gif?k=1&a=&vi=&u=&b=&pu=&po=&i=...`: page views (`k=1`) and legacy events (`k=3`).
pub async fn collect_page_view(State(sim): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let q = query_map(q.as_deref());
    let kind = if q.get("k").is_some_and(|k| k == "3") { "legacy-event" } else { "pageview" };
    record(&sim, kind, q)
}

/// `GET /__ptbe.gif?n=&_prop=...`: custom behavioral events.
pub async fn collect_event(State(sim): State<AppState>, RawQuery(q): RawQuery) -> Response {
    record(&sim, "event", query_map(q.as_deref()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenBody {
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
}

/// `POST /visitor-identification/v3/tokens/create`: `{token}`; 403 on a Starter subscription.
pub async fn create_chat_token(State(sim): State<AppState>, body: Bytes) -> HsResult<Json<Value>> {
    if sim.switches().chat_tier == "starter" {
        // The status is documented; the body's wording is a guess.
        return Err(HsError::new(
            StatusCode::FORBIDDEN,
            "MISSING_SCOPES",
            "The visitor identification API requires a Professional or Enterprise subscription.",
        ));
    }
    let body: TokenBody = parse(&body)?;
    let email = body.email.filter(|e| !e.is_empty()).ok_or_else(|| HsError::validation("email is required"))?;
    if !crate::world::valid_email(&email) {
        return Err(HsError::validation(format!("Email address {email} is invalid")));
    }
    let r: [u8; 24] = rand::random();
    let token: String = r.iter().map(|b| format!("{b:02x}")).collect();
    sim.world().chat_tokens.insert(
        token.clone(),
        ChatToken {
            email: email.to_ascii_lowercase(),
            first_name: body.first_name,
            last_name: body.last_name,
            expires: now_ms() + CHAT_TOKEN_MS,
        },
    );
    Ok(Json(json!({ "token": token })))
}

/// `GET /__sim/chat/event?kind=&email=&token=&messagesUtk=&resetWidget=`: what the simulated chat
/// widget reports (standing in for HubSpot's chat backend).
pub async fn chat_event(State(sim): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let q = query_map(q.as_deref());
    let ev = ChatEvent {
        seq: 0,
        kind: q.get("kind").cloned().unwrap_or_default(),
        identified_email: None,
        refused: None,
        contact_id: None,
        messages_utk: q.get("messagesUtk").filter(|v| !v.is_empty()).cloned(),
        reset_widget: q.get("resetWidget").is_some_and(|v| v == "1"),
        at: now_ms(),
    };
    let lag = sim.switches().search_lag_ms;
    sim.world().chat_event(ev, q.get("email").map(String::as_str), q.get("token").map(String::as_str), lag);
    gif()
}
