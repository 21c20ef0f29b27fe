-- Repair of the tracker's duplicates (see repair.rs). The same SQL runs on SQLite and PostgreSQL.
-- When a lease began: a contact the tracker made with a leased email is the lessee's duplicate only
-- if it was made while the lease was held. Leases from before this migration count from 0.
ALTER TABLE leases ADD COLUMN issued_at BIGINT NOT NULL DEFAULT 0;
-- Who held a lease on an email, and when (the duplicate's creation names only its email).
CREATE INDEX leases_by_email ON leases(email, expires_at);
-- One row per duplicate found: claimed by one relay (`claimed_until`, `claimed_by`) while it merges,
-- so relays sharing the database merge each duplicate once. `state`: `merging`, `merged` (into
-- `survivor_id`), `refused` (not provably the tracker's), `off` (repair switched off) or `gone`.
CREATE TABLE repairs (
    duplicate_id TEXT PRIMARY KEY,
    sub TEXT NOT NULL,
    email TEXT NOT NULL,
    lease_id TEXT,
    primary_id TEXT,
    state TEXT NOT NULL,
    survivor_id TEXT,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    claimed_by TEXT,
    found_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_error TEXT
);
CREATE INDEX repairs_of_user ON repairs(sub, found_at);
