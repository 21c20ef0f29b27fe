//! The pure core: no web-sys, no JS; the web shell (`crate::web`) drives it; unit-tested natively with `cargo test`.
//!
//! - [`options`]: validation of `StableIdentity.start` options.
//! - [`ticket`]: the relay's ticket and the ticket cache rules.
//! - [`session`]: the rule of DESIGN.md section 2 as a state machine: which identity to push, when
//!   to hold hits and release them, when to renew, poll and release leases.

pub mod options;
pub mod session;
pub mod ticket;
