//! `hsq-identity`: identify visitors to HubSpot by a stable, server-issued id.
//!
//! The browser module is built in a later step (see DESIGN.md section 6); this crate is the
//! workspace root so that the wasm build and its pinned `wasm-bindgen` are in place from the start.
#![deny(missing_docs)]
