//! `hsq-identity`: identify visitors to HubSpot by a stable, server-issued id and the `hubspotutk`
//! cookie, sending an email only when HubSpot already holds it for that contact (DESIGN.md).
//!
//! - [`core`]: the decisions, pure Rust, tested natively (`cargo test`).
//! - `web` (wasm32 only): the web shell on web-sys, js-sys and gloo-net: the `_hsq` hook,
//!   cookies, storage, the relay call, tracker, chat and consent, and the page's session.
//! - `StableIdentity` (wasm32 only): the class the npm package exports (DESIGN.md section 6).
#![deny(missing_debug_implementations)]

extern crate alloc;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
// SAFETY: a wasm32-unknown-unknown module runs on one thread.
static ALLOC: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

pub mod core;
#[cfg(target_arch = "wasm32")]
pub mod web;

#[cfg(target_arch = "wasm32")]
pub use web::shell::StableIdentity;
