//! `hsq-identity`: identify visitors to HubSpot by a stable, server-issued id and the `hubspotutk`
//! cookie, sending an email only when HubSpot already holds it for that contact (DESIGN.md).
//!
//! - [`core`]: the decisions, pure Rust, tested natively.
//! - [`wasm`]: the exports the JS shell calls (`js/index.js`, the npm entry, which reads and
//!   writes the page: `_hsq`, cookies, storage, fetch, tracker and chat loading).
#![deny(missing_debug_implementations)]

pub mod core;
pub mod wasm;
