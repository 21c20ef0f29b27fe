//! `hsq-identity`: identify visitors to HubSpot by a stable, server-issued id and the `hubspotutk`
//! cookie, sending an email only when HubSpot already holds it for that contact (DESIGN.md).
//!
//! - [`core`]: the decisions, pure Rust, tested natively.
//! - [`wasm`]: the exports the JS shell calls (`js/index.js`, the npm entry, which reads and
//!   writes the page: `_hsq`, cookies, storage, fetch, tracker and chat loading).
#![deny(missing_debug_implementations)]
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
// SAFETY: a wasm32-unknown-unknown module runs on one thread.
static ALLOC: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

/// A panic in the module traps: the JS shell catches the error, and the page goes on.
#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &::core::panic::PanicInfo) -> ! {
    ::core::arch::wasm32::unreachable()
}

pub mod core;
pub mod wasm;
