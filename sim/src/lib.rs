//! `hubspot-sim`: an offline HubSpot that follows shared/hubspot-behavior.md.
//!
//! It serves CRM v3 contacts, the properties API, the legacy v1 contact endpoints of the seed
//! documents, visitor identification tokens, a tracker script implementing the `_hsq` queue, the
//! collector that tracker sends hits to, and a chat widget script; plus test-only endpoints under
//! `/__sim/`. The relay talks to it over real HTTP exactly as it would to HubSpot.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = hubspot_sim::spawn(hubspot_sim::Cli::default_for_tests()).await?;
//! println!("simulator at {}", sim.url);
//! # Ok(()) }
//! ```
#![deny(missing_debug_implementations)]

pub mod config;
mod crm;
pub mod error;
pub mod forms;
mod gate;
mod legacy;
mod properties;
mod scripts;
mod admin;
pub mod webhooks;
pub mod world;

pub use config::{Cli, Switches};

use axum::routing::{get, post};
use axum::Router;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

/// The simulator's shared state.
#[derive(Debug)]
pub struct Sim {
    pub portal_id: u64,
    pub token: String,
    pub switches: RwLock<Switches>,
    pub world: Mutex<world::World>,
    pub gate: Mutex<gate::Gate>,
    /// The webhook emitter's in-flight slots and log.
    pub webhooks: webhooks::Emitter,
}

/// Handlers share one `Arc<Sim>`.
pub type AppState = Arc<Sim>;

impl Sim {
    pub fn new(cli: &Cli) -> Self {
        Sim {
            portal_id: cli.portal_id,
            token: cli.token.clone(),
            switches: RwLock::new(cli.switches.clone()),
            world: Mutex::new(world::World::new()),
            gate: Mutex::new(gate::Gate::default()),
            webhooks: webhooks::Emitter::default(),
        }
    }

    /// A copy of the current switches.
    pub fn switches(&self) -> Switches {
        self.switches.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The world, even if a previous holder panicked (a handler panic must not wedge the simulator).
    pub fn world(&self) -> std::sync::MutexGuard<'_, world::World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn gate(&self) -> std::sync::MutexGuard<'_, gate::Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Cli {
    /// Defaults with port 0 and rate limiting as HubSpot's Free/Starter tier.
    pub fn default_for_tests() -> Self {
        <Cli as clap::Parser>::parse_from(["hubspot-sim"])
    }
}

/// The whole router: HubSpot's APIs behind auth and rate limits, the public tracker side, `/__sim/`.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/crm/v3/objects/contacts", get(crm::list).post(crm::create))
        .route("/crm/v3/objects/contacts/search", post(crm::search))
        .route("/crm/v3/objects/contacts/merge", post(crm::merge))
        .route("/crm/v3/objects/contacts/gdpr-delete", post(crm::gdpr_delete))
        .route("/crm/v3/objects/contacts/batch/{op}", post(crm::batch))
        .route("/crm/v3/objects/contacts/{id}", get(crm::read).patch(crm::update).delete(crm::archive))
        .route("/crm/v3/properties/{object_type}", get(properties::list).post(properties::create))
        .route(
            "/crm/v3/properties/{object_type}/{name}",
            get(properties::read).patch(properties::update).delete(properties::archive),
        )
        .route("/crm/v3/properties/{object_type}/groups", get(properties::list_groups).post(properties::create_group))
        .route(
            "/crm/v3/properties/{object_type}/groups/{name}",
            get(properties::read_group).patch(properties::update_group).delete(properties::archive_group),
        )
        .route("/contacts/v1/contact/createOrUpdate/email/{email}", post(legacy::create_or_update))
        .route("/contacts/v1/contact/email/{email}/profile", get(legacy::read_by_email).post(legacy::update_by_email))
        .route("/contacts/v1/contact/vid/{vid}/profile", get(legacy::read_by_vid).post(legacy::update_by_vid))
        .route("/visitor-identification/v3/tokens/create", post(scripts::create_chat_token))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate::api_gate));
    let public = Router::new()
        .route("/__ptq.gif", get(scripts::collect_page_view))
        .route("/__ptbe.gif", get(scripts::collect_event))
        .route("/conversations-embed.js", get(scripts::chat_script))
        .route("/collectedforms.js", get(scripts::collected_forms_script))
        .route("/collected-forms/submit/form", post(forms::submit).options(forms::preflight))
        .route("/{file}", get(scripts::tracker_script))
        .method_not_allowed_fallback(method_not_allowed);
    api.merge(public)
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate::faults))
        .merge(admin::router())
        .fallback(|| async { error::HsError::not_found() })
        .with_state(state)
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> error::HsError {
    error::HsError::method_not_allowed(&method, uri.path())
}

/// A running simulator.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// `http://HOST:PORT`
    pub url: String,
    pub state: AppState,
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds `cli.addr` and serves in a background task (tests use this with port 0).
pub async fn spawn(cli: Cli) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(cli.addr).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(Sim::new(&cli));
    let router = app(state.clone());
    let emitter = tokio::spawn(webhooks::run(state.clone()));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("hubspot-sim: server stopped: {e}");
        }
        emitter.abort();
    });
    Ok(Running { addr, url: format!("http://{addr}"), state, task })
}

/// Reads a query string into a map (later keys win), never failing.
pub(crate) fn query_map(raw: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned().collect()
}
