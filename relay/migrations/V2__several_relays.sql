-- Several relays on one database.
-- users.gen counts the outbox's writes to a user's contact (claim and finish): a ticket decided on
-- a HubSpot read made before the latest write is not trusted (see relay.rs, `identify`).
ALTER TABLE users ADD COLUMN gen BIGINT NOT NULL DEFAULT 0;
-- A job being applied is claimed until `claimed_until` (ms) by `claimed_by`; a claim that runs out
-- (its relay died) lets another relay take the job.
ALTER TABLE outbox ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
-- Pruning and the live-lease count read these ranges instead of the whole table (`IF NOT
-- EXISTS`: a SQLite file from before versioned migrations may have the first two already).
CREATE INDEX IF NOT EXISTS leases_live ON leases(released, expires_at);
CREATE INDEX IF NOT EXISTS utk_bindings_at ON utk_bindings(at);
-- A user's live leases (checked on every email change): all three columns, so no planner prefers
-- the global range of leases_live for it.
DROP INDEX IF EXISTS leases_by_sub;
CREATE INDEX leases_of_user ON leases(sub, released, expires_at);
CREATE INDEX outbox_by_finish ON outbox(state, updated_at);
