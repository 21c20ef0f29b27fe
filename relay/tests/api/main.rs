//! The relay against hubspot-sim over real HTTP, with real SQLite. One test binary.

mod crash;
mod email_change;
mod faults;
mod fuzz;
mod hardening;
mod helpers;
mod hubspot_changes;
mod identity;
mod input;
mod openapi;
mod sync;
