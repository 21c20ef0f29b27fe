-- Changes made on HubSpot's side (webhooks and reconciliation, see webhooks.rs). The same SQL runs
-- on SQLite and PostgreSQL.
-- Webhook events name contacts by id: find their users without a scan.
CREATE INDEX IF NOT EXISTS users_by_contact ON users(contact_id);
-- Received webhook events, stored before the answer and applied by a worker. `key` is the event's
-- content without its delivery fields, so a duplicate delivery adds nothing; `received_at` and
-- `pos` (its place in the request) keep the order received. `next_at` is when it is due, NULL once
-- processed.
CREATE TABLE webhook_events (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    pos BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX webhook_events_due ON webhook_events(next_at, received_at, pos);
CREATE INDEX webhook_events_received ON webhook_events(received_at);
-- Users whose contact HubSpot deleted for privacy: no contact is made for them again until the app
-- states their email.
CREATE TABLE erased_users (sub TEXT PRIMARY KEY, at BIGINT NOT NULL);
-- The user a deleted contact was linked to, so a later event about it still finds the user.
CREATE TABLE dropped_links (contact_id TEXT PRIMARY KEY, sub TEXT NOT NULL, at BIGINT NOT NULL);
