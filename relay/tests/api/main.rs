//! The relay against hubspot-sim over real HTTP, with real SQLite. One test binary.

mod crash;
mod email_change;
mod faults;
mod hardening;
mod helpers;
mod hubspot_changes;
mod identity;
mod input;
mod sync;
