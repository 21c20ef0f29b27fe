//! The relay against hubspot-sim over real HTTP, with real SQLite (or PostgreSQL with
//! `HSQ_TEST_DB=postgres`; `multi_relay` always runs on PostgreSQL). One test binary.

mod batch_create;
mod burst;
mod connections;
mod crash;
mod db_outage;
mod email_change;
mod faults;
mod fuzz;
mod hardening;
mod helpers;
mod hubspot_changes;
mod identity;
mod input;
mod lease_release;
mod late_writes;
mod multi_relay;
mod openapi;
mod pg;
mod plans;
mod repair;
mod startup;
mod sync;
