//! The one wasm export, [`call`]: a string in, a string out ([`crate::core::wire`] has the
//! encoding and the calls). The JS shell (`js/index.js`) is its only caller.

use alloc::string::String;
use core::cell::UnsafeCell;
use crate::core::wire::Host;
use wasm_bindgen::prelude::*;

/// The page's sessions. A wasm32-unknown-unknown module runs on one thread and [`call`] never
/// calls back into JS, so one call at a time holds the only reference.
struct Page(UnsafeCell<Option<Host>>);

// SAFETY: see above; nothing else in the module touches `PAGE`.
unsafe impl Sync for Page {}

static PAGE: Page = Page(UnsafeCell::new(None));

/// Carries out one call of the shell (see [`Host::call`]).
#[wasm_bindgen]
pub fn call(input: &str) -> String {
    // SAFETY: one thread, no re-entry (see `Page`): this is the only live reference.
    let host = unsafe { &mut *PAGE.0.get() };
    host.get_or_insert_with(Host::default).call(input)
}
