//! The OpenAPI 3.1 document of the relay's API, generated from the handlers' annotations
//! (utoipa) and served at `GET /openapi.json`. `relay/openapi.json` is a checked-in copy that a
//! test keeps equal to what the code generates.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error: a code (`bad_request`, `unauthorized`, `not_found`, `method_not_allowed`,
/// `payload_too_large`, `uri_too_long`, `rate_limited`, `hubspot_unavailable`, `store_busy`,
/// `timeout`, `internal`) and a message that names what is wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

struct AdminAuth;

impl Modify for AdminAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme("admin", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("HSQ_ADMIN_TOKEN")).build()));
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "hsq-relay", description = "The relay between a web app, its pages and HubSpot: stable identity, leases, durable outbox (see README.md)."),
    paths(
        crate::routes::identity,
        crate::routes::release,
        crate::routes::release_on_hide,
        crate::routes::put_user,
        crate::routes::get_user,
        crate::routes::healthz,
        crate::routes::metrics,
        crate::routes::openapi_json,
        crate::webhooks::receive,
    ),
    components(schemas(ErrorBody)),
    modifiers(&AdminAuth)
)]
pub struct ApiDoc;

/// The document as served and checked in.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.info.license = None;
    doc.to_pretty_json().unwrap_or_else(|_| "{}".into()) + "\n"
}
