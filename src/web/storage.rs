//! The ticket cache and held entries in `sessionStorage` or `localStorage` (web-sys). Storage
//! may be disabled or full, and its getters throw then: every call answers none or false instead.

use crate::core::options::Storage as Kind;

fn store(kind: Kind) -> Option<web_sys::Storage> {
    let w = web_sys::window()?;
    match kind {
        Kind::Session => w.session_storage().ok()?,
        Kind::Local => w.local_storage().ok()?,
        Kind::None => None,
    }
}

/// The item under `key`, or none (also when storage fails).
pub fn get(kind: Kind, key: &str) -> Option<String> {
    store(kind)?.get_item(key).ok()?
}

/// Stores `value` under `key`; false when storage failed (disabled, full).
pub fn set(kind: Kind, key: &str, value: &str) -> bool {
    store(kind).is_some_and(|s| s.set_item(key, value).is_ok())
}

/// Removes `key`.
pub fn remove(kind: Kind, key: &str) {
    if let Some(s) = store(kind) {
        let _ = s.remove_item(key);
    }
}
