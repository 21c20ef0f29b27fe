//! Durable state: the contact cache, utk bindings, leases, the outbox, chat tokens, sync progress.
//!
//! [`Store`] is the seam where a server database can replace SQLite when several relays share
//! state; [`SqliteStore`] is the default (WAL, `synchronous=NORMAL`: a committed write survives a
//! crash of the process; the last transactions may be lost on power loss).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;
use std::sync::Mutex;

pub type StoreResult<T> = Result<T, rusqlite::Error>;

/// What the relay knows about one app user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub sub: String,
    pub contact_id: Option<String>,
    /// HubSpot's primary email for the contact, as last read or written by the relay.
    pub hubspot_email: Option<String>,
    /// When the contact was last read from or written to HubSpot (ms).
    pub fetched_at: Option<i64>,
    /// The app's current email for the user, and when the app said so (ms).
    pub app_email: Option<String>,
    pub app_email_at: Option<i64>,
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    /// The app email another contact holds, and that contact's id.
    pub conflict_email: Option<String>,
    pub conflict_with: Option<String>,
    pub last_error: Option<String>,
}

/// A queued email change (one row per user: a newer change replaces an unapplied one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub sub: String,
    pub to_email: String,
    /// Other contact properties to set with the email (JSON object).
    pub properties: String,
    pub version: i64,
    /// `pending`, `done`, `conflict` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
}

/// What a [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub leases: usize,
    pub utk_bindings: usize,
}

/// Leases released, or expired this long ago, are deleted by [`Store::prune`].
pub const LEASE_KEEP_MS: i64 = 3_600_000;
/// A utk binding not seen for this long (HubSpot's cookie lives 13 months) is deleted.
pub const UTK_KEEP_MS: i64 = 400 * 86_400_000;

/// Progress of one CSV sync, so an interrupted run resumes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncProgress {
    pub line: i64,
    pub created: i64,
    pub updated: i64,
    pub conflicts: i64,
    pub invalid: i64,
}

/// Where the relay keeps what must survive a restart.
pub trait Store: Send + Sync + std::fmt::Debug {
    fn user(&self, sub: &str) -> StoreResult<Option<User>>;
    /// Records the contact and its HubSpot email as just read or written.
    fn save_contact(&self, sub: &str, contact_id: &str, hubspot_email: Option<&str>, now: i64) -> StoreResult<()>;
    /// Forgets the cached contact (it was merged away or deleted).
    fn forget_contact(&self, sub: &str) -> StoreResult<()>;
    /// Records the app's email for a user if `at` is newer than what is stored. Returns the user.
    fn note_app_email(&self, sub: &str, email: &str, at: i64, first: Option<&str>, last: Option<&str>) -> StoreResult<User>;
    fn set_conflict(&self, sub: &str, email: Option<&str>, with: Option<&str>) -> StoreResult<()>;
    fn set_error(&self, sub: &str, error: Option<&str>) -> StoreResult<()>;
    /// Binds `utk` to `sub`; when it is bound to another sub, leaves it and returns that sub.
    fn bind_utk(&self, utk: &str, sub: &str, now: i64) -> StoreResult<Option<String>>;
    fn issue_lease(&self, id: &str, sub: &str, email: &str, expires: i64) -> StoreResult<()>;
    /// Extends a live, unreleased lease of `sub` on `email`; false when there is none.
    fn renew_lease(&self, id: &str, sub: &str, email: &str, now: i64, expires: i64) -> StoreResult<bool>;
    /// Releases a lease; returns its sub when it existed and was live.
    fn release_lease(&self, id: &str) -> StoreResult<Option<String>>;
    /// Shortens a live lease to end by `until`; returns its sub when it existed and was live.
    fn shorten_lease(&self, id: &str, now: i64, until: i64) -> StoreResult<Option<String>>;
    /// The latest expiry of the live leases of `sub` on any email other than `except`.
    fn live_lease_until(&self, sub: &str, except: &str, now: i64) -> StoreResult<Option<i64>>;
    fn live_leases(&self, now: i64) -> StoreResult<i64>;
    /// Deletes leases released or expired more than [`LEASE_KEEP_MS`] before `now`, and utk
    /// bindings not renewed for [`UTK_KEEP_MS`]; in batches, so others wait at most one batch.
    fn prune(&self, now: i64) -> StoreResult<Pruned>;
    /// Queues (or replaces the unapplied) email change of `sub`.
    fn put_job(&self, sub: &str, to_email: &str, properties: &str, now: i64) -> StoreResult<()>;
    fn job(&self, sub: &str) -> StoreResult<Option<Job>>;
    fn due_jobs(&self, now: i64, limit: i64) -> StoreResult<Vec<Job>>;
    fn next_job_at(&self) -> StoreResult<Option<i64>>;
    /// Finishes a job if it is still at `version` (a newer change keeps it pending).
    fn finish_job(&self, sub: &str, version: i64, state: &str, error: Option<&str>, now: i64) -> StoreResult<bool>;
    fn retry_job(&self, sub: &str, version: i64, next_at: i64, error: &str) -> StoreResult<()>;
    /// Puts a pending job off until `next_at` without counting an attempt (it waits for a lease).
    fn defer_job(&self, sub: &str, version: i64, next_at: i64) -> StoreResult<()>;
    /// Makes the user's pending job due now (a lease it waited for was released).
    fn wake_job(&self, sub: &str, now: i64) -> StoreResult<()>;
    fn outbox_depth(&self) -> StoreResult<i64>;
    fn chat_token(&self, email: &str, now: i64) -> StoreResult<Option<(String, i64)>>;
    fn save_chat_token(&self, email: &str, token: &str, exp: i64) -> StoreResult<()>;
    fn sync_progress(&self, key: &str) -> StoreResult<SyncProgress>;
    fn save_sync_progress(&self, key: &str, p: SyncProgress) -> StoreResult<()>;

    // HubSpot-side changes (webhooks and reconciliation).
    /// The users linked to any of these contact ids.
    fn users_by_contact(&self, contact_ids: &[String]) -> StoreResult<Vec<User>>;
    /// Ends at once the live leases of `sub` on any email but `keep` (all of them when None).
    /// Returns how many ended.
    fn end_leases(&self, sub: &str, keep: Option<&str>, now: i64) -> StoreResult<usize>;
    /// Stores received webhook events `(key, JSON)`; a key seen before is ignored. Returns how
    /// many were new.
    fn put_webhook_events(&self, events: &[(String, String)], now: i64) -> StoreResult<usize>;
    /// Up to `limit` stored events due for processing: `(seq, JSON, attempts)`, oldest first.
    fn due_webhook_events(&self, now: i64, limit: i64) -> StoreResult<Vec<(i64, String, i64)>>;
    /// Marks an event processed (`next_at` None) or puts it off until `next_at`.
    fn finish_webhook_event(&self, seq: i64, next_at: Option<i64>, error: Option<&str>) -> StoreResult<()>;
    /// Users with a contact and a live lease whose contact was last read before `older_than`.
    fn reconcile_due(&self, now: i64, older_than: i64, limit: i64) -> StoreResult<Vec<User>>;
    /// Marks (or clears) a user whose contact HubSpot deleted for privacy: no contact is made again.
    fn set_erased(&self, sub: &str, at: Option<i64>) -> StoreResult<()>;
    fn erased(&self, sub: &str) -> StoreResult<bool>;
    /// Remembers that `sub` was linked to `contact_id` when HubSpot deleted that contact, so a
    /// later event about it (a privacy deletion after the deletion) still finds the user.
    fn note_dropped_link(&self, contact_id: &str, sub: &str, at: i64) -> StoreResult<()>;
    fn dropped_link(&self, contact_id: &str) -> StoreResult<Option<String>>;
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    sub TEXT PRIMARY KEY,
    contact_id TEXT,
    hubspot_email TEXT,
    fetched_at INTEGER,
    app_email TEXT,
    app_email_at INTEGER,
    firstname TEXT,
    lastname TEXT,
    conflict_email TEXT,
    conflict_with TEXT,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS utk_bindings (utk TEXT PRIMARY KEY, sub TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    sub TEXT NOT NULL,
    email TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    released INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS leases_by_sub ON leases(sub, expires_at);
CREATE INDEX IF NOT EXISTS leases_live ON leases(released, expires_at);
CREATE INDEX IF NOT EXISTS utk_bindings_at ON utk_bindings(at);
CREATE TABLE IF NOT EXISTS outbox (
    sub TEXT PRIMARY KEY,
    to_email TEXT NOT NULL,
    properties TEXT NOT NULL DEFAULT '{}',
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    last_error TEXT,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_at);
CREATE TABLE IF NOT EXISTS chat_tokens (email TEXT PRIMARY KEY, token TEXT NOT NULL, exp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sync_progress (
    key TEXT PRIMARY KEY, line INTEGER NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL,
    conflicts INTEGER NOT NULL, invalid INTEGER NOT NULL
);
PRAGMA user_version = 1;
";

/// Tables for HubSpot-side changes, applied after [`SCHEMA`] (idempotent).
const HUBSPOT_CHANGES_SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS users_by_contact ON users(contact_id);
CREATE TABLE IF NOT EXISTS webhook_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    next_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS webhook_events_due ON webhook_events(next_at);
CREATE TABLE IF NOT EXISTS erased_users (sub TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dropped_links (contact_id TEXT PRIMARY KEY, sub TEXT NOT NULL, at INTEGER NOT NULL);
";

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn user_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        sub: row.get(0)?,
        contact_id: row.get(1)?,
        hubspot_email: row.get(2)?,
        fetched_at: row.get(3)?,
        app_email: row.get(4)?,
        app_email_at: row.get(5)?,
        firstname: row.get(6)?,
        lastname: row.get(7)?,
        conflict_email: row.get(8)?,
        conflict_with: row.get(9)?,
        last_error: row.get(10)?,
    })
}

fn job_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        sub: row.get(0)?,
        to_email: row.get(1)?,
        properties: row.get(2)?,
        version: row.get(3)?,
        state: row.get(4)?,
        attempts: row.get(5)?,
        next_at: row.get(6)?,
        last_error: row.get(7)?,
    })
}

const USER_COLS: &str = "sub, contact_id, hubspot_email, fetched_at, app_email, app_email_at, firstname, lastname, conflict_email, conflict_with, last_error";
const JOB_COLS: &str = "sub, to_email, properties, version, state, attempts, next_at, last_error";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies the schema.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(HUBSPOT_CHANGES_SCHEMA)?;
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn)
    }

    fn ensure_user(conn: &Connection, sub: &str) -> StoreResult<()> {
        conn.execute("INSERT OR IGNORE INTO users (sub) VALUES (?1)", [sub])?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn user(&self, sub: &str) -> StoreResult<Option<User>> {
        self.with(|c| {
            c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE sub = ?1"))?.query_row([sub], user_from).optional()
        })
    }

    fn save_contact(&self, sub: &str, contact_id: &str, hubspot_email: Option<&str>, now: i64) -> StoreResult<()> {
        self.with(|c| {
            Self::ensure_user(c, sub)?;
            c.prepare_cached("UPDATE users SET contact_id = ?2, hubspot_email = ?3, fetched_at = ?4 WHERE sub = ?1")?
                .execute(params![sub, contact_id, hubspot_email, now])?;
            Ok(())
        })
    }

    fn forget_contact(&self, sub: &str) -> StoreResult<()> {
        self.with(|c| {
            c.execute("UPDATE users SET contact_id = NULL, hubspot_email = NULL, fetched_at = NULL WHERE sub = ?1", [sub])?;
            Ok(())
        })
    }

    fn note_app_email(&self, sub: &str, email: &str, at: i64, first: Option<&str>, last: Option<&str>) -> StoreResult<User> {
        self.with(|c| {
            Self::ensure_user(c, sub)?;
            // Only a newer statement of the app's email replaces the stored one: a stale page's
            // assertion must never turn a changed email back.
            c.prepare_cached(
                "UPDATE users SET app_email = ?2, app_email_at = ?3 WHERE sub = ?1 AND (app_email_at IS NULL OR app_email_at < ?3)",
            )?
            .execute(params![sub, email, at])?;
            c.prepare_cached(
                "UPDATE users SET firstname = COALESCE(?2, firstname), lastname = COALESCE(?3, lastname) WHERE sub = ?1",
            )?
            .execute(params![sub, first, last])?;
            c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE sub = ?1"))?.query_row([sub], user_from)
        })
    }

    fn set_conflict(&self, sub: &str, email: Option<&str>, with: Option<&str>) -> StoreResult<()> {
        self.with(|c| {
            Self::ensure_user(c, sub)?;
            c.execute("UPDATE users SET conflict_email = ?2, conflict_with = ?3 WHERE sub = ?1", params![sub, email, with])?;
            Ok(())
        })
    }

    fn set_error(&self, sub: &str, error: Option<&str>) -> StoreResult<()> {
        self.with(|c| {
            Self::ensure_user(c, sub)?;
            c.prepare_cached("UPDATE users SET last_error = ?2 WHERE sub = ?1")?.execute(params![sub, error])?;
            Ok(())
        })
    }

    fn bind_utk(&self, utk: &str, sub: &str, now: i64) -> StoreResult<Option<String>> {
        self.with(|c| {
            let other: Option<String> =
                c.prepare_cached("SELECT sub FROM utk_bindings WHERE utk = ?1")?.query_row([utk], |r| r.get(0)).optional()?;
            match other {
                Some(o) if o != sub => Ok(Some(o)),
                _ => {
                    c.prepare_cached("INSERT OR REPLACE INTO utk_bindings (utk, sub, at) VALUES (?1, ?2, ?3)")?
                        .execute(params![utk, sub, now])?;
                    Ok(None)
                }
            }
        })
    }

    fn issue_lease(&self, id: &str, sub: &str, email: &str, expires: i64) -> StoreResult<()> {
        self.with(|c| {
            c.prepare_cached("INSERT INTO leases (id, sub, email, expires_at) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![id, sub, email, expires])?;
            Ok(())
        })
    }

    fn renew_lease(&self, id: &str, sub: &str, email: &str, now: i64, expires: i64) -> StoreResult<bool> {
        self.with(|c| {
            let n = c
                .prepare_cached(
                    "UPDATE leases SET expires_at = ?5 WHERE id = ?1 AND sub = ?2 AND email = ?3 AND released = 0 AND expires_at > ?4",
                )?
                .execute(params![id, sub, email, now, expires])?;
            Ok(n == 1)
        })
    }

    fn release_lease(&self, id: &str) -> StoreResult<Option<String>> {
        self.with(|c| {
            let sub: Option<String> = c
                .prepare_cached("UPDATE leases SET released = 1 WHERE id = ?1 AND released = 0 RETURNING sub")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            Ok(sub)
        })
    }

    fn shorten_lease(&self, id: &str, now: i64, until: i64) -> StoreResult<Option<String>> {
        self.with(|c| {
            c.prepare_cached(
                "UPDATE leases SET expires_at = MIN(expires_at, ?3) WHERE id = ?1 AND released = 0 AND expires_at > ?2 RETURNING sub",
            )?
            .query_row(params![id, now, until], |r| r.get(0))
            .optional()
        })
    }

    fn live_lease_until(&self, sub: &str, except: &str, now: i64) -> StoreResult<Option<i64>> {
        self.with(|c| {
            c.prepare_cached("SELECT MAX(expires_at) FROM leases WHERE sub = ?1 AND email != ?2 AND released = 0 AND expires_at > ?3")?
                .query_row(params![sub, except, now], |r| r.get(0))
        })
    }

    fn live_leases(&self, now: i64) -> StoreResult<i64> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM leases WHERE released = 0 AND expires_at > ?1", [now], |r| r.get(0)))
    }

    fn prune(&self, now: i64) -> StoreResult<Pruned> {
        let mut p = Pruned::default();
        loop {
            let n = self.with(|c| {
                c.prepare_cached(
                    "DELETE FROM leases WHERE rowid IN (SELECT rowid FROM leases WHERE released = 1 UNION ALL
                     SELECT rowid FROM leases WHERE released = 0 AND expires_at < ?1 LIMIT 5000)",
                )?
                .execute([now - LEASE_KEEP_MS])
            })?;
            p.leases += n;
            if n < 5000 {
                break;
            }
        }
        loop {
            let n = self.with(|c| {
                c.prepare_cached("DELETE FROM utk_bindings WHERE rowid IN (SELECT rowid FROM utk_bindings WHERE at < ?1 LIMIT 5000)")?
                    .execute([now - UTK_KEEP_MS])
            })?;
            p.utk_bindings += n;
            if n < 5000 {
                break;
            }
        }
        Ok(p)
    }

    fn put_job(&self, sub: &str, to_email: &str, properties: &str, now: i64) -> StoreResult<()> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO outbox (sub, to_email, properties, version, state, attempts, next_at, updated_at)
                 VALUES (?1, ?2, ?3, 1, 'pending', 0, ?4, ?4)
                 ON CONFLICT(sub) DO UPDATE SET
                   to_email = excluded.to_email, properties = excluded.properties, version = outbox.version + 1,
                   state = 'pending', attempts = 0, next_at = excluded.next_at, last_error = NULL, updated_at = excluded.updated_at",
            )?
            .execute(params![sub, to_email, properties, now])?;
            Ok(())
        })
    }

    fn job(&self, sub: &str) -> StoreResult<Option<Job>> {
        self.with(|c| c.prepare_cached(&format!("SELECT {JOB_COLS} FROM outbox WHERE sub = ?1"))?.query_row([sub], job_from).optional())
    }

    fn due_jobs(&self, now: i64, limit: i64) -> StoreResult<Vec<Job>> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {JOB_COLS} FROM outbox WHERE state = 'pending' AND next_at <= ?1 ORDER BY next_at LIMIT ?2"
            ))?;
            let rows = st.query_map(params![now, limit], job_from)?;
            rows.collect()
        })
    }

    fn next_job_at(&self) -> StoreResult<Option<i64>> {
        self.with(|c| c.query_row("SELECT MIN(next_at) FROM outbox WHERE state = 'pending'", [], |r| r.get(0)))
    }

    fn finish_job(&self, sub: &str, version: i64, state: &str, error: Option<&str>, now: i64) -> StoreResult<bool> {
        self.with(|c| {
            let n = c
                .prepare_cached("UPDATE outbox SET state = ?3, last_error = ?4, updated_at = ?5 WHERE sub = ?1 AND version = ?2")?
                .execute(params![sub, version, state, error, now])?;
            Ok(n == 1)
        })
    }

    fn retry_job(&self, sub: &str, version: i64, next_at: i64, error: &str) -> StoreResult<()> {
        self.with(|c| {
            c.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?3, last_error = ?4 WHERE sub = ?1 AND version = ?2 AND state = 'pending'",
            )?
            .execute(params![sub, version, next_at, error])?;
            Ok(())
        })
    }

    fn defer_job(&self, sub: &str, version: i64, next_at: i64) -> StoreResult<()> {
        self.with(|c| {
            c.prepare_cached("UPDATE outbox SET next_at = ?3 WHERE sub = ?1 AND version = ?2 AND state = 'pending'")?
                .execute(params![sub, version, next_at])?;
            Ok(())
        })
    }

    fn wake_job(&self, sub: &str, now: i64) -> StoreResult<()> {
        self.with(|c| {
            c.prepare_cached("UPDATE outbox SET next_at = ?2 WHERE sub = ?1 AND state = 'pending' AND next_at > ?2")?
                .execute(params![sub, now])?;
            Ok(())
        })
    }

    fn outbox_depth(&self) -> StoreResult<i64> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", [], |r| r.get(0)))
    }

    fn chat_token(&self, email: &str, now: i64) -> StoreResult<Option<(String, i64)>> {
        self.with(|c| {
            c.prepare_cached("SELECT token, exp FROM chat_tokens WHERE email = ?1 AND exp > ?2")?
                .query_row(params![email, now], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
    }

    fn save_chat_token(&self, email: &str, token: &str, exp: i64) -> StoreResult<()> {
        self.with(|c| {
            c.prepare_cached("INSERT OR REPLACE INTO chat_tokens (email, token, exp) VALUES (?1, ?2, ?3)")?
                .execute(params![email, token, exp])?;
            Ok(())
        })
    }

    fn sync_progress(&self, key: &str) -> StoreResult<SyncProgress> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT line, created, updated, conflicts, invalid FROM sync_progress WHERE key = ?1",
                [key],
                |r| Ok(SyncProgress { line: r.get(0)?, created: r.get(1)?, updated: r.get(2)?, conflicts: r.get(3)?, invalid: r.get(4)? }),
            )
            .optional()?
            .unwrap_or_default())
        })
    }

    fn save_sync_progress(&self, key: &str, p: SyncProgress) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO sync_progress (key, line, created, updated, conflicts, invalid) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key, p.line, p.created, p.updated, p.conflicts, p.invalid],
            )?;
            Ok(())
        })
    }

    fn users_by_contact(&self, contact_ids: &[String]) -> StoreResult<Vec<User>> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE contact_id = ?1"))?;
            let mut out: Vec<User> = Vec::new();
            for id in contact_ids {
                for u in st.query_map([id], user_from)? {
                    let u = u?;
                    if !out.iter().any(|o| o.sub == u.sub) {
                        out.push(u);
                    }
                }
            }
            Ok(out)
        })
    }

    fn end_leases(&self, sub: &str, keep: Option<&str>, now: i64) -> StoreResult<usize> {
        self.with(|c| {
            Ok(c.prepare_cached(
                "UPDATE leases SET released = 1 WHERE sub = ?1 AND released = 0 AND expires_at > ?3 AND (?2 IS NULL OR email != ?2)",
            )?
            .execute(params![sub, keep, now])?)
        })
    }

    fn put_webhook_events(&self, events: &[(String, String)], now: i64) -> StoreResult<usize> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let mut n = 0;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR IGNORE INTO webhook_events (key, body, received_at, next_at) VALUES (?1, ?2, ?3, ?3)",
                )?;
                for (key, body) in events {
                    n += st.execute(params![key, body, now])?;
                }
            }
            tx.commit()?;
            Ok(n)
        })
    }

    fn due_webhook_events(&self, now: i64, limit: i64) -> StoreResult<Vec<(i64, String, i64)>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT seq, body, attempts FROM webhook_events WHERE next_at IS NOT NULL AND next_at <= ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = st.query_map(params![now, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }

    fn finish_webhook_event(&self, seq: i64, next_at: Option<i64>, error: Option<&str>) -> StoreResult<()> {
        self.with(|c| {
            c.prepare_cached(
                "UPDATE webhook_events SET next_at = ?2, last_error = ?3, attempts = attempts + (?2 IS NOT NULL) WHERE seq = ?1",
            )?
            .execute(params![seq, next_at, error])?;
            Ok(())
        })
    }

    fn reconcile_due(&self, now: i64, older_than: i64, limit: i64) -> StoreResult<Vec<User>> {
        self.with(|c| {
            let cols = USER_COLS.split(", ").map(|k| format!("u.{k}")).collect::<Vec<_>>().join(", ");
            let mut st = c.prepare_cached(&format!(
                "SELECT {cols} FROM users u WHERE u.contact_id IS NOT NULL AND COALESCE(u.fetched_at, 0) < ?2
                 AND EXISTS (SELECT 1 FROM leases l WHERE l.sub = u.sub AND l.released = 0 AND l.expires_at > ?1)
                 ORDER BY u.fetched_at LIMIT ?3"
            ))?;
            let rows = st.query_map(params![now, older_than, limit], user_from)?;
            rows.collect()
        })
    }

    fn set_erased(&self, sub: &str, at: Option<i64>) -> StoreResult<()> {
        self.with(|c| {
            match at {
                Some(at) => c.execute("INSERT OR REPLACE INTO erased_users (sub, at) VALUES (?1, ?2)", params![sub, at])?,
                None => c.execute("DELETE FROM erased_users WHERE sub = ?1", [sub])?,
            };
            Ok(())
        })
    }

    fn note_dropped_link(&self, contact_id: &str, sub: &str, at: i64) -> StoreResult<()> {
        self.with(|c| {
            c.prepare_cached("INSERT OR REPLACE INTO dropped_links (contact_id, sub, at) VALUES (?1, ?2, ?3)")?
                .execute(params![contact_id, sub, at])?;
            Ok(())
        })
    }

    fn dropped_link(&self, contact_id: &str) -> StoreResult<Option<String>> {
        self.with(|c| c.prepare_cached("SELECT sub FROM dropped_links WHERE contact_id = ?1")?.query_row([contact_id], |r| r.get(0)).optional())
    }

    fn erased(&self, sub: &str) -> StoreResult<bool> {
        self.with(|c| {
            Ok(c.prepare_cached("SELECT 1 FROM erased_users WHERE sub = ?1")?.query_row([sub], |_| Ok(())).optional()?.is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_events_are_stored_once_per_key_and_leave_the_queue_when_finished() {
        let s = store();
        assert_eq!(s.put_webhook_events(&[("k1".into(), "{}".into()), ("k1".into(), "{}".into()), ("k2".into(), "[]".into())], 5).unwrap(), 2);
        assert_eq!(s.put_webhook_events(&[("k2".into(), "[]".into())], 6).unwrap(), 0, "a duplicate delivery adds nothing");
        let due = s.due_webhook_events(10, 10).unwrap();
        assert_eq!(due.len(), 2);
        s.finish_webhook_event(due[0].0, None, None).unwrap();
        s.finish_webhook_event(due[1].0, Some(100), Some("HubSpot down")).unwrap();
        assert!(s.due_webhook_events(10, 10).unwrap().is_empty());
        assert_eq!(s.due_webhook_events(100, 10).unwrap()[0].2, 1, "one attempt counted");
    }

    #[test]
    fn ending_leases_keeps_the_one_on_the_email_hubspot_holds() {
        let s = store();
        s.issue_lease("l1", "u", "a@x.io", 100).unwrap();
        s.issue_lease("l2", "u", "b@x.io", 100).unwrap();
        s.save_contact("u", "7", Some("b@x.io"), 1).unwrap();
        assert_eq!(s.reconcile_due(50, 2, 10).unwrap().len(), 1);
        assert_eq!(s.users_by_contact(&["7".into(), "8".into()]).unwrap()[0].sub, "u");
        assert_eq!(s.end_leases("u", Some("b@x.io"), 50).unwrap(), 1);
        assert!(!s.renew_lease("l1", "u", "a@x.io", 50, 200).unwrap());
        assert!(s.renew_lease("l2", "u", "b@x.io", 50, 200).unwrap());
        assert_eq!(s.end_leases("u", None, 50).unwrap(), 1);
        assert!(s.reconcile_due(50, 2, 10).unwrap().is_empty(), "no live lease, nothing to reconcile");
    }

    fn store() -> SqliteStore {
        SqliteStore::open(Path::new(":memory:")).unwrap()
    }

    #[test]
    fn only_a_newer_app_email_replaces_the_stored_one() {
        let s = store();
        assert_eq!(s.note_app_email("u", "b@x.io", 2000, None, None).unwrap().app_email.as_deref(), Some("b@x.io"));
        let u = s.note_app_email("u", "a@x.io", 1000, Some("A"), None).unwrap();
        assert_eq!(u.app_email.as_deref(), Some("b@x.io"), "an older assertion does not turn the email back");
        assert_eq!(u.firstname.as_deref(), Some("A"));
        assert_eq!(s.note_app_email("u", "c@x.io", 3000, None, None).unwrap().app_email.as_deref(), Some("c@x.io"));
    }

    #[test]
    fn a_utk_stays_with_its_first_user() {
        let s = store();
        assert_eq!(s.bind_utk("t1", "a", 1).unwrap(), None);
        assert_eq!(s.bind_utk("t1", "a", 2).unwrap(), None);
        assert_eq!(s.bind_utk("t1", "b", 3).unwrap().as_deref(), Some("a"));
    }

    #[test]
    fn leases_renew_only_while_live_and_unreleased() {
        let s = store();
        s.issue_lease("l1", "u", "a@x.io", 100).unwrap();
        assert!(s.renew_lease("l1", "u", "a@x.io", 50, 200).unwrap());
        assert!(!s.renew_lease("l1", "u", "b@x.io", 50, 200).unwrap(), "another email");
        assert!(!s.renew_lease("l1", "v", "a@x.io", 50, 200).unwrap(), "another user");
        assert_eq!(s.live_lease_until("u", "b@x.io", 150).unwrap(), Some(200));
        assert_eq!(s.live_lease_until("u", "a@x.io", 150).unwrap(), None, "a lease on the target email does not block");
        assert_eq!(s.release_lease("l1").unwrap().as_deref(), Some("u"));
        assert_eq!(s.release_lease("l1").unwrap(), None);
        assert!(!s.renew_lease("l1", "u", "a@x.io", 50, 300).unwrap());
        assert_eq!(s.live_lease_until("u", "b@x.io", 150).unwrap(), None);
    }

    #[test]
    fn a_newer_change_replaces_the_queued_one_and_keeps_it_pending() {
        let s = store();
        s.put_job("u", "b@x.io", "{}", 10).unwrap();
        let j = s.due_jobs(10, 10).unwrap().remove(0);
        s.put_job("u", "c@x.io", "{}", 11).unwrap();
        assert!(!s.finish_job("u", j.version, "done", None, 12).unwrap(), "the applied version is stale");
        let j2 = s.job("u").unwrap().unwrap();
        assert_eq!((j2.to_email.as_str(), j2.state.as_str()), ("c@x.io", "pending"));
        assert_eq!(s.outbox_depth().unwrap(), 1);
        assert!(s.finish_job("u", j2.version, "done", None, 13).unwrap());
        assert_eq!(s.outbox_depth().unwrap(), 0);
    }
}
