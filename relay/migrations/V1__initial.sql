-- The schema of the first relay (SQLite only then). `IF NOT EXISTS` lets a database made before
-- versioned migrations adopt this history as is. The same SQL runs on SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS users (
    sub TEXT PRIMARY KEY,
    contact_id TEXT,
    hubspot_email TEXT,
    fetched_at BIGINT,
    app_email TEXT,
    app_email_at BIGINT,
    firstname TEXT,
    lastname TEXT,
    conflict_email TEXT,
    conflict_with TEXT,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS utk_bindings (utk TEXT PRIMARY KEY, sub TEXT NOT NULL, at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    sub TEXT NOT NULL,
    email TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    released BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS leases_by_sub ON leases(sub, expires_at);
CREATE TABLE IF NOT EXISTS outbox (
    sub TEXT PRIMARY KEY,
    to_email TEXT NOT NULL,
    properties TEXT NOT NULL DEFAULT '{}',
    version BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    last_error TEXT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_at);
CREATE TABLE IF NOT EXISTS chat_tokens (email TEXT PRIMARY KEY, token TEXT NOT NULL, exp BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS sync_progress (
    key TEXT PRIMARY KEY, line BIGINT NOT NULL, created BIGINT NOT NULL, updated BIGINT NOT NULL,
    conflicts BIGINT NOT NULL, invalid BIGINT NOT NULL
);
