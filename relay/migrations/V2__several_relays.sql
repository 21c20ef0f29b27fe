-- Several relays on one database.
-- users.gen counts the outbox's writes to a user's contact (claim and finish): a ticket decided on
-- a HubSpot read made before the latest write is not trusted (see relay.rs, `identify`).
ALTER TABLE users ADD COLUMN gen BIGINT NOT NULL DEFAULT 0;
-- A job being applied is claimed until `claimed_until` (ms) by `claimed_by`; a claim that runs out
-- (its relay died) lets another relay take the job.
ALTER TABLE outbox ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
-- Pruning and the live-lease count read these ranges instead of the whole table.
CREATE INDEX leases_by_expiry ON leases(expires_at);
CREATE INDEX utk_bindings_by_at ON utk_bindings(at);
CREATE INDEX outbox_by_finish ON outbox(state, updated_at);
