//! Durable state: the contact cache, utk bindings, leases, the outbox, chat tokens, sync progress.
//!
//! [`Store`] is async and sits on a pool. `HSQ_DB` picks the database: a `postgres://` (or
//! `postgresql://`) URL puts every relay on one PostgreSQL; anything else is a SQLite file, the
//! embedded default for one relay. Both run the same embedded, versioned migrations
//! (`relay/migrations`, applied at start by refinery) and the same SQL: the statements below are
//! written once in the dialect both accept (`$n` parameters, `ON CONFLICT`, `RETURNING`).
//!
//! - SQLite: rusqlite on `spawn_blocking` (r2d2 pool; WAL, `synchronous=NORMAL`: a committed write
//!   survives a crash of the process). Writes pass one async gate, so they queue in tokio rather
//!   than in SQLite's sleeping busy handler; reads run in parallel.
//! - PostgreSQL: tokio-postgres on a deadpool pool. A user's decisions run in a [`UserTx`], a
//!   transaction holding `pg_advisory_xact_lock` on the user, so relays sharing the database
//!   serialize them as one relay did in memory; outbox jobs are claimed with
//!   `FOR UPDATE SKIP LOCKED` and a claim that runs out when its relay dies.

use async_trait::async_trait;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

mod resolutions;
pub use resolutions::Misses;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("SQLite pool: {0}")]
    SqlitePool(#[from] r2d2::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL pool: {0}")]
    PostgresPool(String),
    /// No connection to PostgreSQL could be opened because the server is not reachable now.
    #[error("PostgreSQL is unavailable: {0}")]
    PostgresUnavailable(String),
    /// No connection came free within the pool's wait (a burst larger than the pool).
    #[error("no database connection came free in time")]
    PoolTimeout,
    #[error("migrations: {0}")]
    Migration(#[from] refinery::Error),
    #[error("the database task stopped: {0}")]
    Task(String),
}

impl StoreError {
    /// Whether the database is unavailable for now rather than the statement wrong: no connection
    /// came free or could be opened (refused, reset), the connection closed under the statement
    /// (the server stopped or restarted), PostgreSQL refuses connections while it starts or stops,
    /// or SQLite's file is locked by another process past the busy timeout. The request can be
    /// asked again; a wrong password or a missing database is not this.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::PoolTimeout | StoreError::SqlitePool(_) => true,
            StoreError::Sqlite(e) => sqlite_unavailable(e),
            StoreError::Postgres(e) => pg_unavailable(e),
            StoreError::PostgresPool(_) | StoreError::Migration(_) | StoreError::Task(_) => false,
            StoreError::PostgresUnavailable(_) => true,
        }
    }
}

impl StoreError {
    /// Whether the error is `HSQ_DB`'s fault, so start-up stops as for any malformed setting: a
    /// SQLite file that cannot be opened (a missing directory, no permission, not a database) or
    /// a PostgreSQL URL that does not parse.
    pub fn is_bad_setting(&self) -> bool {
        use rusqlite::ErrorCode;
        match self {
            StoreError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::NotADatabase | ErrorCode::ReadOnly)
            ),
            StoreError::Postgres(e) => e.to_string().starts_with("invalid connection string"),
            _ => false,
        }
    }
}

fn sqlite_unavailable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

fn pg_unavailable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    // An I/O error talking to the server (connection refused, reset, broken pipe).
    if std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()) {
        return true;
    }
    match e.code() {
        // 08: connection exceptions.
        Some(c) if c.code().starts_with("08") => true,
        Some(c) => [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW, SqlState::TOO_MANY_CONNECTIONS].contains(c),
        None => false,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

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
    /// Bumped by the outbox when it claims and when it finishes a change of this user's contact.
    #[serde(skip)]
    pub gen: i64,
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
    /// While a relay holds the job: until when its claim holds (ms); 0 when unclaimed.
    #[serde(skip)]
    pub claimed_until: i64,
    /// The claiming relay; `applying:<relay>` once it passed the lease check and writes to HubSpot.
    #[serde(skip)]
    pub claimed_by: Option<String>,
    /// Until when (ms) a HubSpot write of this user's contact whose outcome is unknown may still
    /// land; 0 when none may. While it is not 0 nothing of the user is confirmed (see outbox.rs).
    #[serde(skip)]
    pub uncertain_until: i64,
}

/// What a warm `POST /v1/identity` needs, read in one statement (one consistent snapshot): the
/// user, whether HubSpot erased them, their outbox job, the lease the page holds and the binding of
/// its utk. See `Relay::identify`: when nothing in it needs a write, the ticket is answered from it.
#[derive(Debug, Clone, Default)]
pub struct WarmView {
    pub user: User,
    pub erased: bool,
    /// The job's state, claim end, claimant and `uncertain_until`, when the user has a job.
    pub job: Option<(String, i64, Option<String>, i64)>,
    /// The lease's email, end (ms) and whether it was released, when it is this user's.
    pub lease: Option<(String, i64, bool)>,
    /// Whom the utk is bound to, and when that was last noted (ms).
    pub utk: Option<(String, i64)>,
}

/// A duplicate contact found for a user and what became of it (repair.rs; `GET /v1/users/{sub}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Repair {
    /// The contact the tracker made with the user's leased email.
    pub duplicate_id: String,
    pub email: String,
    /// The lease the email was held under when the contact was made.
    pub lease_id: Option<String>,
    /// The user's contact it was merged into (it stays primary).
    pub primary_id: Option<String>,
    /// `merging`, `merged`, `refused` (not provably the tracker's: `lastError` says why), `off`
    /// (left alone: `HSQ_REPAIR_DUPLICATES=false`) or `gone` (HubSpot no longer had it).
    pub state: String,
    /// The record HubSpot's merge answered (may be a new id).
    pub survivor_id: Option<String>,
    pub found_at: i64,
    pub updated_at: i64,
    /// Why it was refused, or why the last merge failed.
    pub last_error: Option<String>,
}

/// One of a user's leases, as `GET /v1/users/{sub}` shows it (the history repair.rs reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaseView {
    pub id: String,
    pub email: String,
    /// When it was issued (ms; 0 for leases from before the relay recorded it).
    pub issued_at: i64,
    /// When it ends or ended (ms).
    pub expires_at: i64,
    /// Ended early: released by its page, or ended by the relay (the email changed).
    pub released: bool,
}

/// What [`UserTx::claim_repair`] records.
#[derive(Debug, Clone, Copy)]
pub struct RepairClaim<'a> {
    pub duplicate: &'a str,
    pub email: &'a str,
    pub lease_id: Option<&'a str>,
    pub primary: &'a str,
    pub owner: &'a str,
}

const REPAIR_ONE: &str =
    "SELECT duplicate_id, email, lease_id, primary_id, state, survivor_id, found_at, updated_at, last_error FROM repairs WHERE duplicate_id = $1";
const REPAIRS_OF_USER: &str = "SELECT duplicate_id, email, lease_id, primary_id, state, survivor_id, found_at, updated_at, last_error
    FROM repairs WHERE sub = $1 ORDER BY found_at DESC LIMIT 20";

fn repair_from(r: &Row) -> Repair {
    Repair {
        duplicate_id: r[0].text().unwrap_or_default(),
        email: r[1].text().unwrap_or_default(),
        lease_id: r[2].text(),
        primary_id: r[3].text(),
        state: r[4].text().unwrap_or_default(),
        survivor_id: r[5].text(),
        found_at: r[6].int().unwrap_or(0),
        updated_at: r[7].int().unwrap_or(0),
        last_error: r[8].text(),
    }
}

/// Progress of one CSV sync, so an interrupted run resumes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncProgress {
    pub line: i64,
    pub created: i64,
    pub updated: i64,
    pub conflicts: i64,
    pub invalid: i64,
}

/// Leases that ended (expired, or released, counted from the end they had) this long ago are
/// deleted by [`Store::prune`]. Until then they are the history [`Store::lessees`] reads: who held
/// an email when the tracker made a contact with it (repair.rs).
pub const LEASE_KEEP_MS: i64 = 3_600_000;
/// A utk binding not seen for this long (HubSpot's cookie lives 13 months) is deleted.
pub const UTK_KEEP_MS: i64 = 400 * 86_400_000;
/// Applied (`done`) outbox jobs are kept this long for `GET /v1/users/{sub}`.
pub const JOB_KEEP_MS: i64 = 7 * 86_400_000;

/// Processed webhook events are kept this long, so a delivery HubSpot retries (for up to a day)
/// is still recognised as a duplicate; dropped links as long, for a late privacy deletion.
pub const WEBHOOK_KEEP_MS: i64 = 3 * 86_400_000;
/// A new user's resolution notes are kept this long after its last claim ended without a contact.
pub const RESOLUTION_KEEP_MS: i64 = 3_600_000;

/// How long pruned rows are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Released leases are deleted at once; expired ones this long after they ended.
    pub leases_ms: i64,
    /// utk bindings not seen for this long are deleted.
    pub utk_ms: i64,
    /// Applied (`done`) outbox jobs older than this are deleted.
    pub jobs_ms: i64,
    /// Processed webhook events and dropped links older than this are deleted.
    pub webhooks_ms: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { leases_ms: LEASE_KEEP_MS, utk_ms: UTK_KEEP_MS, jobs_ms: JOB_KEEP_MS, webhooks_ms: WEBHOOK_KEEP_MS }
    }
}

/// What one prune deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub leases: u64,
    pub utk_bindings: u64,
    pub jobs: u64,
    pub chat_tokens: u64,
    /// Processed webhook events and dropped links.
    pub webhook_events: u64,
    /// Resolution notes of users who got no contact, an hour after the last try.
    pub resolutions: u64,
}

/// Where the relay keeps what must survive a restart.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;
    async fn user(&self, sub: &str) -> StoreResult<Option<User>>;
    /// Records the contact and its HubSpot email as just read or written.
    async fn save_contact(&self, sub: &str, contact_id: &str, hubspot_email: Option<&str>, now: i64) -> StoreResult<()>;
    /// Like `save_contact`, unless the outbox wrote the user's contact since `gen` was read: a read
    /// made before that write must not replace it. Answers whether it saved.
    async fn save_contact_if(&self, sub: &str, gen: i64, contact_id: &str, hubspot_email: Option<&str>, now: i64) -> StoreResult<bool>;
    /// The warm-path snapshot of `sub` (None when the user is unknown), with the lease `lease_id`
    /// if it is theirs and the binding of `utk`.
    async fn warm_view(&self, sub: &str, lease_id: &str, utk: Option<&str>) -> StoreResult<Option<WarmView>>;
    /// Records the app's email for a user if `at` is newer than what is stored. Returns the user.
    async fn note_app_email(&self, sub: &str, email: &str, at: i64, first: Option<&str>, last: Option<&str>) -> StoreResult<User>;
    async fn set_conflict(&self, sub: &str, email: Option<&str>, with: Option<&str>) -> StoreResult<()>;
    async fn set_error(&self, sub: &str, error: Option<&str>) -> StoreResult<()>;
    /// Binds `utk` to `sub`; when it is bound to another sub, leaves it and returns that sub.
    async fn bind_utk(&self, utk: &str, sub: &str, now: i64) -> StoreResult<Option<String>>;
    /// Releases a lease and makes its user's pending job due; returns its sub when it existed and
    /// was live. Both happen in the user's transaction ([`Store::begin_user`]): the outbox checks
    /// the live leases and defers the job to their end under that lock, so a release can never
    /// fall between its check and its defer (which would leave the job waiting for a lease
    /// already gone).
    async fn release_lease(&self, id: &str, now: i64) -> StoreResult<Option<String>>;
    /// Shortens a live lease to end by `until` and makes its user's pending job due (in the
    /// user's transaction, as `release_lease`); returns its sub when it existed and was live.
    async fn shorten_lease(&self, id: &str, now: i64, until: i64) -> StoreResult<Option<String>>;
    async fn live_leases(&self, now: i64) -> StoreResult<i64>;
    async fn job(&self, sub: &str) -> StoreResult<Option<Job>>;
    /// Claims up to `limit` due, unclaimed jobs for `owner` until `until` (ms). Jobs another relay
    /// holds are skipped, not waited for.
    async fn claim_jobs(&self, now: i64, limit: i64, owner: &str, until: i64) -> StoreResult<Vec<Job>>;
    /// When the next pending job is due (its claim's end, when claimed).
    async fn next_job_at(&self) -> StoreResult<Option<i64>>;
    async fn outbox_depth(&self) -> StoreResult<i64>;
    async fn chat_token(&self, email: &str, now: i64) -> StoreResult<Option<(String, i64)>>;
    async fn save_chat_token(&self, email: &str, token: &str, exp: i64) -> StoreResult<()>;
    async fn sync_progress(&self, key: &str) -> StoreResult<SyncProgress>;
    async fn save_sync_progress(&self, key: &str, p: SyncProgress) -> StoreResult<()>;
    /// Deletes ended leases, old utk bindings, old applied jobs, expired chat tokens, and old
    /// processed webhook events and dropped links, in bounded batches.
    async fn prune(&self, now: i64, keep: Retention) -> StoreResult<Pruned>;
    /// Begins a transaction that holds the user's lock (on PostgreSQL an advisory lock every
    /// relay sees; on SQLite the database's one writer). Dropped without `commit`, it rolls back.
    async fn begin_user(&self, sub: &str) -> StoreResult<UserTx>;
    /// Drops every claim on outbox jobs. Only for a database one relay owns (SQLite): after a
    /// crash its own claims would otherwise hold jobs until they run out.
    async fn clear_claims(&self) -> StoreResult<u64>;

    // HubSpot-side changes (webhooks and reconciliation, see webhooks.rs). What changes a user's
    // state is also on [`UserTx`], to run inside the user's transaction.
    /// The users linked to any of these contact ids.
    async fn users_by_contact(&self, contact_ids: &[String]) -> StoreResult<Vec<User>>;
    /// Ends at once the live leases of `sub` on any email but `keep` (all of them when None).
    /// Returns how many ended.
    async fn end_leases(&self, sub: &str, keep: Option<&str>, now: i64) -> StoreResult<u64>;
    /// Stores received webhook events `(key, JSON)` in one transaction; a key seen before is
    /// ignored. Returns how many were new.
    async fn put_webhook_events(&self, events: &[(String, String)], now: i64) -> StoreResult<u64>;
    /// Up to `limit` stored events due for processing: `(key, JSON, attempts)`, in the order received.
    async fn due_webhook_events(&self, now: i64, limit: i64) -> StoreResult<Vec<(String, String, i64)>>;
    /// Claims up to `limit` due events until `until` (ms) and returns them like
    /// `due_webhook_events`. Events another relay holds are skipped; a claim that runs out (its
    /// relay died) makes the event due again.
    async fn claim_webhook_events(&self, now: i64, limit: i64, until: i64) -> StoreResult<Vec<(String, String, i64)>>;
    /// Marks an event processed (`next_at` None) or puts it off until `next_at`.
    async fn finish_webhook_event(&self, key: &str, next_at: Option<i64>, error: Option<&str>) -> StoreResult<()>;
    /// Users with a contact and a live lease whose contact was last read before `older_than`.
    async fn reconcile_due(&self, now: i64, older_than: i64, limit: i64) -> StoreResult<Vec<User>>;
    /// Marks (or clears) a user whose contact HubSpot deleted for privacy: no contact is made again.
    async fn set_erased(&self, sub: &str, at: Option<i64>) -> StoreResult<()>;
    async fn erased(&self, sub: &str) -> StoreResult<bool>;
    /// Remembers that `sub` was linked to `contact_id` when HubSpot deleted that contact, so a
    /// later event about it (a privacy deletion after the deletion) still finds the user.
    async fn note_dropped_link(&self, contact_id: &str, sub: &str, at: i64) -> StoreResult<()>;
    async fn dropped_link(&self, contact_id: &str) -> StoreResult<Option<String>>;

    // A new user's contact resolution across relays (store/resolutions.rs, relay.rs `contact_for`).
    /// Claims the resolution of `sub`'s contact for `owner` until `until` (ms), unless another
    /// relay's claim is live at `now`: what HubSpot last answered for the user, or None when
    /// another relay holds the claim.
    async fn claim_resolution(&self, sub: &str, owner: &str, now: i64, until: i64) -> StoreResult<Option<Misses>>;
    /// Whether a claim on resolving `sub`'s contact is live at `now`.
    async fn resolution_claimed(&self, sub: &str, now: i64) -> StoreResult<bool>;
    /// Ends `owner`'s claim at `now`. `unresolved`: no contact was stored, and HubSpot answered
    /// these misses (the parts that are Some are noted); None: the contact is stored, and the
    /// user's notes go with the claim.
    async fn end_resolution(&self, sub: &str, owner: &str, unresolved: Option<&Misses>, now: i64) -> StoreResult<()>;
    /// The users who held a lease on `email` at `at` (within `margin` ms of the lease's span,
    /// released or not: a page keeps sending its email until it learns the lease ended), with
    /// the lease that ended last. Leases are kept [`LEASE_KEEP_MS`] after they end.
    async fn lessees(&self, email: &str, at: i64, margin: i64) -> StoreResult<Vec<(String, String)>>;
    /// (sub, email) of the leases live at or after `since`, released or not: the emails a page
    /// may have sent lately, with which the tracker may have made a duplicate (reconciliation
    /// looks each up by email: the relay may not know yet that HubSpot's copy changed).
    async fn repair_suspects(&self, since: i64, limit: i64) -> StoreResult<Vec<(String, String)>>;
    /// The user's latest repairs (repair.rs), newest first.
    async fn repairs(&self, sub: &str) -> StoreResult<Vec<Repair>>;
    /// The repair of the contact `duplicate`, if one was recorded.
    async fn repair_of(&self, duplicate: &str) -> StoreResult<Option<Repair>>;
    /// The user's leases still kept (live, or ended within [`LEASE_KEEP_MS`]), latest first.
    async fn leases_of(&self, sub: &str) -> StoreResult<Vec<LeaseView>>;
}

/// Opens the store `HSQ_DB` names and applies the migrations.
pub async fn open(db: &str, pool_size: usize) -> StoreResult<Arc<dyn Store>> {
    if is_postgres(db) {
        Ok(Arc::new(SqlStore::postgres(db, pool_size).await?))
    } else {
        Ok(Arc::new(SqlStore::sqlite(std::path::Path::new(db), pool_size).await?))
    }
}

/// Whether `HSQ_DB` names PostgreSQL: a `postgres://` or `postgresql://` URL, or libpq's
/// `key=value` form (`host=db.internal user=hsq dbname=hsq`), which would otherwise be taken for a
/// SQLite file of that name.
pub fn is_postgres(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://") || (db.contains('=') && db.parse::<tokio_postgres::Config>().is_ok())
}

/// `HSQ_DB` for messages, never with a password: a PostgreSQL URL (or key=value string) as
/// `postgres://user@host:port/dbname`, read by tokio-postgres's own parser, so a password in the
/// user info, in `?password=` or as `password=` is not shown; a SQLite path as it is.
pub fn describe(db: &str) -> String {
    let url = db.starts_with("postgres://") || db.starts_with("postgresql://");
    match db.parse::<tokio_postgres::Config>() {
        Ok(c) if is_postgres(db) => {
            use tokio_postgres::config::Host;
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let host = match h {
                        Host::Tcp(h) => h.clone(),
                        #[cfg(unix)]
                        Host::Unix(p) => p.display().to_string(),
                    };
                    match c.get_ports().get(i).or(c.get_ports().first()) {
                        Some(p) => format!("{host}:{p}"),
                        None => host,
                    }
                })
                .collect();
            let user = c.get_user().map(|u| format!("{u}@")).unwrap_or_default();
            format!("postgres://{user}{}/{}", hosts.join(","), c.get_dbname().unwrap_or(""))
        }
        Ok(_) => db.to_string(),
        // Not shown: it may hold a password.
        Err(_) if url => "a PostgreSQL URL that does not parse".into(),
        Err(_) if db.contains("password") => "a setting that may hold a password (not shown)".into(),
        Err(_) => db.to_string(),
    }
}

/// A parameter or column value: the relay only stores integers and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl From<Option<&str>> for Val {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Val::Null, Val::from)
    }
}

impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Val::Null, Val::Int)
    }
}

impl Val {
    fn int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
    fn text(&self) -> Option<String> {
        match self {
            Val::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

impl tokio_postgres::types::ToSql for Val {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::{IsNull, Type};
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Val::Int(i) => i.to_sql(ty, out),
            Val::Text(s) => s.to_sql(ty, out),
        }
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
    tokio_postgres::types::to_sql_checked!();
}

type Row = Vec<Val>;

/// One connection (or transaction) that runs the relay's statements.
#[async_trait]
trait Conn: Send {
    async fn exec(&mut self, sql: &'static str, params: Vec<Val>) -> StoreResult<u64>;
    async fn query(&mut self, sql: &'static str, params: Vec<Val>) -> StoreResult<Vec<Row>>;
    /// Whether a transaction is open: dropped so, the connection rolls it back.
    fn set_in_tx(&mut self, on: bool);
    /// The open transaction's statements each go by key (a user's decision), so they are quick.
    fn by_key(&mut self) {}
}

// ---------------------------------------------------------------------------------------------
// SQLite

type SqlitePool = r2d2::Pool<SqliteManager>;
type SqlitePooled = r2d2::PooledConnection<SqliteManager>;

/// r2d2_sqlite's manager, but a connection that comes back with a transaction still open is
/// broken: the pool closes it (which rolls the transaction back) instead of handing it out again.
/// That happens when a request is cancelled while its `BEGIN IMMEDIATE` runs in the blocking
/// pool: the statement finishes there after the connection's owner is gone, and the write lock it
/// took would otherwise stay with a pooled connection, blocking every other writer.
#[derive(Debug)]
struct SqliteManager(r2d2_sqlite::SqliteConnectionManager);

impl r2d2::ManageConnection for SqliteManager {
    type Connection = rusqlite::Connection;
    type Error = rusqlite::Error;
    fn connect(&self) -> Result<rusqlite::Connection, rusqlite::Error> {
        self.0.connect()
    }
    fn is_valid(&self, c: &mut rusqlite::Connection) -> Result<(), rusqlite::Error> {
        self.0.is_valid(c)
    }
    fn has_broken(&self, c: &mut rusqlite::Connection) -> bool {
        !c.is_autocommit()
    }
}

/// A pooled SQLite connection used from async code: each call runs on `spawn_blocking`, except
/// statements inside a user's transaction ([`SqliteConn::inline`]).
struct SqliteConn {
    conn: Option<SqlitePooled>,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
    in_tx: bool,
    by_key: bool,
}

impl SqliteConn {
    /// Runs `f` on the connection: here when `here` ([`SqliteConn::inline`]), else on the
    /// blocking pool.
    async fn run<T: Send + 'static>(
        &mut self,
        here: bool,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let lost = || StoreError::Task("the connection was lost".into());
        if here {
            return Ok(f(self.conn.as_ref().ok_or_else(lost)?)?);
        }
        let conn = self.conn.take().ok_or_else(lost)?;
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let r = f(&conn);
            (conn, r)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
        self.conn = Some(conn);
        Ok(result?)
    }
}

/// A pooled connection: a free one is taken right here; waiting for one must not hold an async
/// thread (the connections' holders may need it), so that goes to the blocking pool.
async fn sqlite_take(pool: &SqlitePool) -> StoreResult<SqlitePooled> {
    if let Some(c) = pool.try_get() {
        return Ok(c);
    }
    let pool = pool.clone();
    Ok(tokio::task::spawn_blocking(move || pool.get()).await.map_err(|e| StoreError::Task(e.to_string()))??)
}

/// SQLite names `$1` by its text; `?1` is the same parameter by number, so the order of first use
/// in the statement does not matter.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

impl SqliteConn {
    /// Inside a user's transaction, after `BEGIN IMMEDIATE` took the database's write lock, a
    /// statement cannot wait for another writer, and each goes by key: it runs right here, as a
    /// trip to the blocking pool and back costs more than the statement. `COMMIT` still goes there:
    /// it may checkpoint the WAL into the database file, which takes milliseconds. So do other
    /// transactions' statements (webhook events come in batches of any size).
    fn inline(&self, sql: &str) -> bool {
        self.in_tx && self.by_key && sql != "COMMIT"
    }
}

fn sqlite_exec(c: &rusqlite::Connection, sql: &str, params: Vec<Val>) -> rusqlite::Result<u64> {
    Ok(c.prepare_cached(&sqlite_sql(sql))?.execute(rusqlite::params_from_iter(params))? as u64)
}

#[async_trait]
impl Conn for SqliteConn {
    fn set_in_tx(&mut self, on: bool) {
        self.in_tx = on;
        self.by_key &= on;
    }
    fn by_key(&mut self) {
        self.by_key = true;
    }
    async fn exec(&mut self, sql: &'static str, params: Vec<Val>) -> StoreResult<u64> {
        self.run(self.inline(sql), move |c| sqlite_exec(c, sql, params)).await
    }
    async fn query(&mut self, sql: &'static str, params: Vec<Val>) -> StoreResult<Vec<Row>> {
        self.run(self.inline(sql), move |c| sqlite_query(c, sql, params)).await
    }
}

fn sqlite_query(c: &rusqlite::Connection, sql: &str, params: Vec<Val>) -> rusqlite::Result<Vec<Row>> {
    let mut st = c.prepare_cached(&sqlite_sql(sql))?;
    let n = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut row = Vec::with_capacity(n);
        for i in 0..n {
            row.push(match r.get_ref(i)? {
                rusqlite::types::ValueRef::Integer(v) => Val::Int(v),
                rusqlite::types::ValueRef::Real(v) => Val::Int(v as i64),
                rusqlite::types::ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                _ => Val::Null,
            });
        }
        out.push(row);
    }
    Ok(out)
}

impl Drop for SqliteConn {
    fn drop(&mut self) {
        // A transaction dropped half-way (its request was cancelled): roll it back before the
        // connection goes back to the pool.
        if self.in_tx {
            if let Some(c) = self.conn.take() {
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = c.execute_batch("ROLLBACK");
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

struct PgConn {
    conn: Option<deadpool_postgres::Object>,
    in_tx: bool,
}

/// A pool error with its causes ("error connecting to server: Connection refused").
fn pool_err(e: impl std::error::Error) -> StoreError {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    StoreError::PostgresPool(text)
}

fn pg_row(r: &tokio_postgres::Row) -> StoreResult<Row> {
    use tokio_postgres::types::Type;
    let mut row = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let t = c.type_();
        row.push(if *t == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map_or(Val::Null, Val::Int)
        } else if *t == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map_or(Val::Null, |v| Val::Int(v as i64))
        } else if *t == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?.map_or(Val::Null, |v| Val::Int(v as i64))
        } else {
            r.try_get::<_, Option<String>>(i)?.map_or(Val::Null, Val::Text)
        });
    }
    Ok(row)
}

impl PgConn {
    fn client(&self) -> StoreResult<&deadpool_postgres::Object> {
        self.conn.as_ref().ok_or_else(|| StoreError::Task("the connection was lost".into()))
    }
}

#[async_trait]
impl Conn for PgConn {
    fn set_in_tx(&mut self, on: bool) {
        self.in_tx = on;
    }
    async fn exec(&mut self, sql: &'static str, params: Vec<Val>) -> StoreResult<u64> {
        let c = self.client()?;
        let st = c.prepare_cached(sql).await?;
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        Ok(c.execute(&st, &refs).await?)
    }
    async fn query(&mut self, sql: &'static str, params: Vec<Val>) -> StoreResult<Vec<Row>> {
        let c = self.client()?;
        let st = c.prepare_cached(sql).await?;
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        c.query(&st, &refs).await?.iter().map(pg_row).collect()
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // A transaction dropped half-way: close the connection instead of pooling it; PostgreSQL
        // rolls back and frees the advisory lock.
        if self.in_tx {
            if let Some(c) = self.conn.take() {
                let _ = deadpool_postgres::Object::take(c);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The store

enum Backend {
    Sqlite { pool: SqlitePool, gate: Arc<tokio::sync::Mutex<()>> },
    Postgres { pool: deadpool_postgres::Pool },
}

/// The store on SQLite or PostgreSQL.
pub struct SqlStore {
    backend: Backend,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore").field("kind", &self.kind()).finish()
    }
}

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Any migration runs under this advisory lock, so relays starting together apply it once.
const MIGRATION_LOCK: i64 = 0x6873_715f_6d69_6772; // "hsq_migr"

impl SqlStore {
    /// Opens (creating if needed) the SQLite file at `path` and applies the migrations.
    pub async fn sqlite(path: &std::path::Path, pool_size: usize) -> StoreResult<Self> {
        let manager = r2d2_sqlite::SqliteConnectionManager::file(path).with_init(|c| {
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "NORMAL")?;
            c.pragma_update(None, "busy_timeout", 5000)?;
            c.set_prepared_statement_cache_capacity(64);
            Ok(())
        });
        // `:memory:` is one database per connection: keep to one.
        let size = if path.as_os_str() == ":memory:" { 1 } else { pool_size.max(1) as u32 };
        let pool = tokio::task::spawn_blocking(move || -> StoreResult<SqlitePool> {
            // One connection opened first, so a path that cannot be opened (a missing directory,
            // no permission) fails at once with SQLite's reason, instead of r2d2 retrying it for
            // its 30 s connection timeout and answering only "timed out".
            drop(r2d2::ManageConnection::connect(&manager)?);
            let pool = r2d2::Pool::builder().max_size(size).test_on_check_out(false).build(SqliteManager(manager))?;
            let mut c = pool.get()?;
            // SQLite has no advisory lock: two processes (or pools) opening a new file at once may
            // both apply a migration; the second fails (a table or column that exists, or the
            // history row's unique key) and its transaction rolls back. Run again: it finds the
            // migration applied. A migration that really fails fails every time.
            let mut tries = 0;
            loop {
                match embedded::migrations::runner().run(&mut *c) {
                    Ok(_) => break,
                    Err(_) if tries < 5 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(50 * tries));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(pool)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(SqlStore { backend: Backend::Sqlite { pool, gate: Arc::new(tokio::sync::Mutex::new(())) } })
    }

    /// Connects to PostgreSQL at `url` and applies the migrations (once, under an advisory lock).
    pub async fn postgres(url: &str, pool_size: usize) -> StoreResult<Self> {
        let pg: tokio_postgres::Config = url.parse()?;
        let manager = deadpool_postgres::Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(pool_size.max(2))
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(pool_err)?;
        let mut c = pool.get().await.map_err(pool_err)?;
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
        let ran = embedded::migrations::runner().run_async(&mut **c).await;
        c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
        ran?;
        Ok(SqlStore { backend: Backend::Postgres { pool } })
    }

    fn is_pg(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    async fn conn(&self, write: bool) -> StoreResult<Box<dyn Conn>> {
        match &self.backend {
            Backend::Sqlite { pool, gate } => {
                let gate = if write { Some(gate.clone().lock_owned().await) } else { None };
                Ok(Box::new(SqliteConn { conn: Some(sqlite_take(pool).await?), _gate: gate, in_tx: false, by_key: false }))
            }
            Backend::Postgres { pool } => {
                let conn = pool.get().await.map_err(|e| match e {
                    deadpool_postgres::PoolError::Timeout(_) => StoreError::PoolTimeout,
                    deadpool_postgres::PoolError::Backend(e) if pg_unavailable(&e) => StoreError::PostgresUnavailable(e.to_string()),
                    e => pool_err(e),
                })?;
                Ok(Box::new(PgConn { conn: Some(conn), in_tx: false }))
            }
        }
    }

    /// One read statement outside any transaction. On SQLite it runs right here: a read by
    /// primary keys in WAL mode takes microseconds and never waits for a writer, so handing it to
    /// the blocking pool and back would cost more (two thread switches) than the read.
    async fn read_once(&self, sql: &'static str, params: Vec<Val>) -> StoreResult<Vec<Row>> {
        match &self.backend {
            Backend::Sqlite { pool, .. } => {
                let c = sqlite_take(pool).await?;
                Ok(sqlite_query(&c, sql, params)?)
            }
            Backend::Postgres { .. } => self.read().await?.query(sql, params).await,
        }
    }

    async fn read(&self) -> StoreResult<Box<dyn Conn>> {
        self.conn(false).await
    }
    async fn write(&self) -> StoreResult<Box<dyn Conn>> {
        self.conn(true).await
    }
}

/// [`Store::warm_view`]'s one statement (`$1` sub, `$2` lease id, `$3` utk), on the primary keys
/// of users, outbox, leases and utk_bindings. Public for the query-plan test.
pub const WARM_VIEW_SQL: &str = "SELECT u.sub, u.contact_id, u.hubspot_email, u.fetched_at, u.app_email, u.app_email_at, u.firstname, u.lastname,
        u.conflict_email, u.conflict_with, u.last_error, u.gen,
        CASE WHEN EXISTS (SELECT 1 FROM erased_users e WHERE e.sub = u.sub) THEN 1 ELSE 0 END,
        o.state, o.claimed_until, o.claimed_by, l.email, l.expires_at, l.released, b.sub, b.at, o.uncertain_until
    FROM users u
    LEFT JOIN outbox o ON o.sub = u.sub
    LEFT JOIN leases l ON l.id = $2 AND l.sub = u.sub
    LEFT JOIN utk_bindings b ON b.utk = $3
    WHERE u.sub = $1";

const USER_COLS: &str = "sub, contact_id, hubspot_email, fetched_at, app_email, app_email_at, firstname, lastname, conflict_email, conflict_with, last_error, gen";

fn user_from(r: &Row) -> User {
    User {
        sub: r[0].text().unwrap_or_default(),
        contact_id: r[1].text(),
        hubspot_email: r[2].text(),
        fetched_at: r[3].int(),
        app_email: r[4].text(),
        app_email_at: r[5].int(),
        firstname: r[6].text(),
        lastname: r[7].text(),
        conflict_email: r[8].text(),
        conflict_with: r[9].text(),
        last_error: r[10].text(),
        gen: r[11].int().unwrap_or(0),
    }
}

fn job_from(r: &Row) -> Job {
    Job {
        sub: r[0].text().unwrap_or_default(),
        to_email: r[1].text().unwrap_or_default(),
        properties: r[2].text().unwrap_or_else(|| "{}".into()),
        version: r[3].int().unwrap_or(0),
        state: r[4].text().unwrap_or_default(),
        attempts: r[5].int().unwrap_or(0),
        next_at: r[6].int().unwrap_or(0),
        last_error: r[7].text(),
        claimed_until: r[8].int().unwrap_or(0),
        claimed_by: r[9].text(),
        uncertain_until: r[10].int().unwrap_or(0),
    }
}

fn one_int(rows: &[Row]) -> Option<i64> {
    rows.first().and_then(|r| r.first()).and_then(Val::int)
}

/// The statements, each written once for both databases.
mod q {
    use super::*;

    pub async fn user(c: &mut dyn Conn, sub: &str) -> StoreResult<Option<User>> {
        const SQL: &str = "SELECT sub, contact_id, hubspot_email, fetched_at, app_email, app_email_at, firstname, lastname, conflict_email, conflict_with, last_error, gen FROM users WHERE sub = $1";
        debug_assert!(SQL.contains(USER_COLS));
        Ok(c.query(SQL, vec![sub.into()]).await?.first().map(user_from))
    }

    pub async fn save_contact(c: &mut dyn Conn, sub: &str, id: &str, email: Option<&str>, now: i64, bump: bool) -> StoreResult<()> {
        c.exec(
            "INSERT INTO users (sub, contact_id, hubspot_email, fetched_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (sub) DO UPDATE SET contact_id = excluded.contact_id, hubspot_email = excluded.hubspot_email,
               fetched_at = excluded.fetched_at, gen = users.gen + $5",
            vec![sub.into(), id.into(), email.into(), now.into(), (bump as i64).into()],
        )
        .await?;
        Ok(())
    }

    pub async fn forget_contact(c: &mut dyn Conn, sub: &str) -> StoreResult<()> {
        c.exec("UPDATE users SET contact_id = NULL, hubspot_email = NULL, fetched_at = NULL, gen = gen + 1 WHERE sub = $1", vec![sub.into()])
            .await?;
        Ok(())
    }

    pub async fn bump_gen(c: &mut dyn Conn, sub: &str) -> StoreResult<()> {
        c.exec("UPDATE users SET gen = gen + 1 WHERE sub = $1", vec![sub.into()]).await?;
        Ok(())
    }

    pub async fn set_conflict(c: &mut dyn Conn, sub: &str, email: Option<&str>, with: Option<&str>) -> StoreResult<()> {
        c.exec(
            "INSERT INTO users (sub, conflict_email, conflict_with) VALUES ($1, $2, $3)
             ON CONFLICT (sub) DO UPDATE SET conflict_email = excluded.conflict_email, conflict_with = excluded.conflict_with",
            vec![sub.into(), email.into(), with.into()],
        )
        .await?;
        Ok(())
    }

    pub async fn set_error(c: &mut dyn Conn, sub: &str, error: Option<&str>) -> StoreResult<()> {
        c.exec(
            "INSERT INTO users (sub, last_error) VALUES ($1, $2) ON CONFLICT (sub) DO UPDATE SET last_error = excluded.last_error",
            vec![sub.into(), error.into()],
        )
        .await?;
        Ok(())
    }

    pub async fn live_lease_until(c: &mut dyn Conn, sub: &str, except: &str, now: i64) -> StoreResult<Option<i64>> {
        let rows = c
            .query(
                "SELECT MAX(expires_at) FROM leases WHERE sub = $1 AND email <> $2 AND released = 0 AND expires_at > $3",
                vec![sub.into(), except.into(), now.into()],
            )
            .await?;
        Ok(one_int(&rows))
    }

    pub async fn issue_lease(c: &mut dyn Conn, id: &str, sub: &str, email: &str, issued: i64, expires: i64) -> StoreResult<()> {
        c.exec(
            "INSERT INTO leases (id, sub, email, expires_at, issued_at) VALUES ($1, $2, $3, $4, $5)",
            vec![id.into(), sub.into(), email.into(), expires.into(), issued.into()],
        )
        .await?;
        Ok(())
    }

    pub async fn renew_lease(c: &mut dyn Conn, id: &str, sub: &str, email: &str, now: i64, expires: i64) -> StoreResult<bool> {
        let n = c
            .exec(
                "UPDATE leases SET expires_at = $5 WHERE id = $1 AND sub = $2 AND email = $3 AND released = 0 AND expires_at > $4",
                vec![id.into(), sub.into(), email.into(), now.into(), expires.into()],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn job(c: &mut dyn Conn, sub: &str) -> StoreResult<Option<Job>> {
        Ok(c.query(
            "SELECT sub, to_email, properties, version, state, attempts, next_at, last_error, claimed_until, claimed_by, uncertain_until FROM outbox WHERE sub = $1",
            vec![sub.into()],
        )
        .await?
        .first()
        .map(job_from))
    }

    pub async fn put_job(c: &mut dyn Conn, sub: &str, to_email: &str, properties: &str, now: i64) -> StoreResult<()> {
        // A newer change replaces the queued one under a new version; a claim on the old version
        // stays, so the relay applying it cannot finish the new one by mistake.
        c.exec(
            "INSERT INTO outbox (sub, to_email, properties, version, state, attempts, next_at, updated_at)
             VALUES ($1, $2, $3, 1, 'pending', 0, $4, $4)
             ON CONFLICT (sub) DO UPDATE SET
               to_email = excluded.to_email, properties = excluded.properties, version = outbox.version + 1,
               state = 'pending', attempts = 0, next_at = excluded.next_at, last_error = NULL, updated_at = excluded.updated_at",
            vec![sub.into(), to_email.into(), properties.into(), now.into()],
        )
        .await?;
        Ok(())
    }

    pub async fn finish_job(c: &mut dyn Conn, sub: &str, version: i64, state: &str, error: Option<&str>, now: i64) -> StoreResult<bool> {
        let n = c
            .exec(
                "UPDATE outbox SET state = $3, last_error = $4, updated_at = $5, claimed_until = 0, claimed_by = NULL WHERE sub = $1 AND version = $2",
                vec![sub.into(), version.into(), state.into(), error.into(), now.into()],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn retry_job(c: &mut dyn Conn, sub: &str, version: i64, next_at: i64, error: &str) -> StoreResult<()> {
        c.exec(
            "UPDATE outbox SET attempts = attempts + 1, next_at = $3, last_error = $4, claimed_until = 0, claimed_by = NULL
             WHERE sub = $1 AND version = $2 AND state = 'pending'",
            vec![sub.into(), version.into(), next_at.into(), error.into()],
        )
        .await?;
        Ok(())
    }

    pub async fn defer_job(c: &mut dyn Conn, sub: &str, version: i64, next_at: i64) -> StoreResult<()> {
        c.exec(
            "UPDATE outbox SET next_at = $3, claimed_until = 0, claimed_by = NULL WHERE sub = $1 AND version = $2 AND state = 'pending'",
            vec![sub.into(), version.into(), next_at.into()],
        )
        .await?;
        Ok(())
    }

    /// Marks the claimed job as being written to HubSpot (identify answers `pending` meanwhile).
    pub async fn mark_applying(c: &mut dyn Conn, sub: &str, version: i64, marker: &str) -> StoreResult<bool> {
        let n = c
            .exec("UPDATE outbox SET claimed_by = $3 WHERE sub = $1 AND version = $2 AND state = 'pending'", vec![sub.into(), version.into(), marker.into()])
            .await?;
        Ok(n == 1)
    }

    /// Drops the cached HubSpot read (not the contact id), so the next ticket reads HubSpot again.
    pub async fn invalidate_contact(c: &mut dyn Conn, sub: &str) -> StoreResult<()> {
        c.exec("UPDATE users SET fetched_at = NULL WHERE sub = $1", vec![sub.into()]).await?;
        Ok(())
    }

    // `CAST($n AS …) IS NULL`: PostgreSQL cannot type a parameter from `$n IS NULL` alone.
    pub async fn end_leases(c: &mut dyn Conn, sub: &str, keep: Option<&str>, now: i64) -> StoreResult<u64> {
        c.exec(
            "UPDATE leases SET released = 1 WHERE sub = $1 AND released = 0 AND expires_at > $3 AND (CAST($2 AS TEXT) IS NULL OR email <> $2)",
            vec![sub.into(), keep.into(), now.into()],
        )
        .await
    }

    pub async fn set_erased(c: &mut dyn Conn, sub: &str, at: Option<i64>) -> StoreResult<()> {
        match at {
            Some(at) => {
                c.exec(
                    "INSERT INTO erased_users (sub, at) VALUES ($1, $2) ON CONFLICT (sub) DO UPDATE SET at = excluded.at",
                    vec![sub.into(), at.into()],
                )
                .await?
            }
            None => c.exec("DELETE FROM erased_users WHERE sub = $1", vec![sub.into()]).await?,
        };
        Ok(())
    }

    pub async fn erased(c: &mut dyn Conn, sub: &str) -> StoreResult<bool> {
        Ok(!c.query("SELECT 1 FROM erased_users WHERE sub = $1", vec![sub.into()]).await?.is_empty())
    }

    pub async fn note_dropped_link(c: &mut dyn Conn, contact_id: &str, sub: &str, at: i64) -> StoreResult<()> {
        c.exec(
            "INSERT INTO dropped_links (contact_id, sub, at) VALUES ($1, $2, $3)
             ON CONFLICT (contact_id) DO UPDATE SET sub = excluded.sub, at = excluded.at",
            vec![contact_id.into(), sub.into(), at.into()],
        )
        .await?;
        Ok(())
    }

    /// Drops this relay's claim on the user's job without touching its schedule.
    pub async fn unclaim_job(c: &mut dyn Conn, sub: &str, owner: &str) -> StoreResult<()> {
        c.exec("UPDATE outbox SET claimed_until = 0, claimed_by = NULL WHERE sub = $1 AND claimed_by = $2", vec![sub.into(), owner.into()])
            .await?;
        Ok(())
    }

    /// Records that a write of the user's contact may land until `until`: the later of that and
    /// what is recorded (whatever the job's version: the write is to the contact).
    pub async fn hold_uncertain(c: &mut dyn Conn, sub: &str, until: i64) -> StoreResult<()> {
        c.exec(
            "UPDATE outbox SET uncertain_until = CASE WHEN uncertain_until > $2 THEN uncertain_until ELSE $2 END WHERE sub = $1",
            vec![sub.into(), until.into()],
        )
        .await?;
        Ok(())
    }

    /// Clears the record `until` once its writes are settled (answered, or verified by a read);
    /// a later record, made by another attempt meanwhile, stays.
    pub async fn settle_uncertain(c: &mut dyn Conn, sub: &str, until: i64) -> StoreResult<()> {
        c.exec("UPDATE outbox SET uncertain_until = 0 WHERE sub = $1 AND uncertain_until = $2", vec![sub.into(), until.into()]).await?;
        Ok(())
    }

    pub async fn lease_owner(c: &mut dyn Conn, id: &str) -> StoreResult<Option<String>> {
        Ok(c.query("SELECT sub FROM leases WHERE id = $1", vec![id.into()]).await?.first().and_then(|r| r[0].text()))
    }

    /// Releases a lease of `sub`; whether it was live.
    pub async fn release_lease(c: &mut dyn Conn, sub: &str, id: &str) -> StoreResult<bool> {
        let n = c.exec("UPDATE leases SET released = 1 WHERE id = $1 AND sub = $2 AND released = 0", vec![id.into(), sub.into()]).await?;
        Ok(n == 1)
    }

    /// Shortens a live lease of `sub` to end by `until`; whether it was live.
    pub async fn shorten_lease(c: &mut dyn Conn, sub: &str, id: &str, now: i64, until: i64) -> StoreResult<bool> {
        let n = c
            .exec(
                "UPDATE leases SET expires_at = CASE WHEN expires_at < $4 THEN expires_at ELSE $4 END
                 WHERE id = $1 AND sub = $2 AND released = 0 AND expires_at > $3",
                vec![id.into(), sub.into(), now.into(), until.into()],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn wake_job(c: &mut dyn Conn, sub: &str, now: i64) -> StoreResult<()> {
        c.exec("UPDATE outbox SET next_at = $2 WHERE sub = $1 AND state = 'pending' AND next_at > $2", vec![sub.into(), now.into()]).await?;
        Ok(())
    }
}

/// A transaction holding one user's lock (see [`Store::begin_user`]).
pub struct UserTx {
    conn: Box<dyn Conn>,
    sub: String,
}

impl std::fmt::Debug for UserTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserTx").field("sub", &self.sub).finish()
    }
}

impl UserTx {
    pub async fn user(&mut self) -> StoreResult<Option<User>> {
        q::user(&mut *self.conn, &self.sub).await
    }
    pub async fn job(&mut self) -> StoreResult<Option<Job>> {
        q::job(&mut *self.conn, &self.sub).await
    }
    pub async fn save_contact(&mut self, contact_id: &str, email: Option<&str>, now: i64, bump_gen: bool) -> StoreResult<()> {
        q::save_contact(&mut *self.conn, &self.sub, contact_id, email, now, bump_gen).await
    }
    pub async fn forget_contact(&mut self) -> StoreResult<()> {
        q::forget_contact(&mut *self.conn, &self.sub).await
    }
    pub async fn bump_gen(&mut self) -> StoreResult<()> {
        q::bump_gen(&mut *self.conn, &self.sub).await
    }
    pub async fn set_conflict(&mut self, email: Option<&str>, with: Option<&str>) -> StoreResult<()> {
        q::set_conflict(&mut *self.conn, &self.sub, email, with).await
    }
    pub async fn set_error(&mut self, error: Option<&str>) -> StoreResult<()> {
        q::set_error(&mut *self.conn, &self.sub, error).await
    }
    /// The latest expiry of the user's live leases on any email other than `except`.
    pub async fn live_lease_until(&mut self, except: &str, now: i64) -> StoreResult<Option<i64>> {
        q::live_lease_until(&mut *self.conn, &self.sub, except, now).await
    }
    /// A lease whose start is unknown (counted from 0 by [`Store::lessees`]).
    pub async fn issue_lease(&mut self, id: &str, email: &str, expires: i64) -> StoreResult<()> {
        q::issue_lease(&mut *self.conn, id, &self.sub, email, 0, expires).await
    }
    /// A lease held from `issued` until `expires`.
    pub async fn issue_lease_at(&mut self, id: &str, email: &str, issued: i64, expires: i64) -> StoreResult<()> {
        q::issue_lease(&mut *self.conn, id, &self.sub, email, issued, expires).await
    }
    /// Extends a live, unreleased lease of the user on `email`; false when there is none.
    pub async fn renew_lease(&mut self, id: &str, email: &str, now: i64, expires: i64) -> StoreResult<bool> {
        q::renew_lease(&mut *self.conn, id, &self.sub, email, now, expires).await
    }
    /// Queues (or replaces the unapplied) email change of the user.
    pub async fn put_job(&mut self, to_email: &str, properties: &str, now: i64) -> StoreResult<()> {
        q::put_job(&mut *self.conn, &self.sub, to_email, properties, now).await
    }
    /// Finishes the job if it is still at `version` (a newer change keeps it pending).
    pub async fn finish_job(&mut self, version: i64, state: &str, error: Option<&str>, now: i64) -> StoreResult<bool> {
        q::finish_job(&mut *self.conn, &self.sub, version, state, error, now).await
    }
    pub async fn retry_job(&mut self, version: i64, next_at: i64, error: &str) -> StoreResult<()> {
        q::retry_job(&mut *self.conn, &self.sub, version, next_at, error).await
    }
    /// Puts a pending job off until `next_at` without counting an attempt (it waits for a lease).
    pub async fn defer_job(&mut self, version: i64, next_at: i64) -> StoreResult<()> {
        q::defer_job(&mut *self.conn, &self.sub, version, next_at).await
    }
    pub async fn mark_applying(&mut self, version: i64, marker: &str) -> StoreResult<bool> {
        q::mark_applying(&mut *self.conn, &self.sub, version, marker).await
    }
    pub async fn invalidate_contact(&mut self) -> StoreResult<()> {
        q::invalidate_contact(&mut *self.conn, &self.sub).await
    }
    pub async fn unclaim_job(&mut self, owner: &str) -> StoreResult<()> {
        q::unclaim_job(&mut *self.conn, &self.sub, owner).await
    }
    /// Records that a write of the user's contact may still land until `until` (ms).
    pub async fn hold_uncertain(&mut self, until: i64) -> StoreResult<()> {
        q::hold_uncertain(&mut *self.conn, &self.sub, until).await
    }
    /// Clears the record `until` (see [`Job::uncertain_until`]) unless a later one replaced it.
    pub async fn settle_uncertain(&mut self, until: i64) -> StoreResult<()> {
        q::settle_uncertain(&mut *self.conn, &self.sub, until).await
    }
    /// Makes the user's pending job due now (a lease it waited for ended).
    pub async fn wake_job(&mut self, now: i64) -> StoreResult<()> {
        q::wake_job(&mut *self.conn, &self.sub, now).await
    }
    /// Ends the user's live leases on any email but `keep` (all when None); how many ended.
    pub async fn end_leases(&mut self, keep: Option<&str>, now: i64) -> StoreResult<u64> {
        q::end_leases(&mut *self.conn, &self.sub, keep, now).await
    }
    pub async fn set_erased(&mut self, at: Option<i64>) -> StoreResult<()> {
        q::set_erased(&mut *self.conn, &self.sub, at).await
    }
    pub async fn erased(&mut self) -> StoreResult<bool> {
        q::erased(&mut *self.conn, &self.sub).await
    }
    pub async fn note_dropped_link(&mut self, contact_id: &str, at: i64) -> StoreResult<()> {
        q::note_dropped_link(&mut *self.conn, contact_id, &self.sub, at).await
    }
    /// The repair of `duplicate` (repair.rs), if one was recorded.
    pub async fn repair(&mut self, duplicate: &str) -> StoreResult<Option<Repair>> {
        let rows = self.conn.query(REPAIR_ONE, vec![duplicate.into()]).await?;
        Ok(rows.first().map(repair_from))
    }
    /// Claims the repair of `duplicate` for `owner` until `until`: recorded if new, taken over if
    /// its last claim ran out and it is not finished. False: merged already, or another relay holds it.
    pub async fn claim_repair(&mut self, r: &RepairClaim<'_>, now: i64, until: i64) -> StoreResult<bool> {
        let n = self
            .conn
            .exec(
                "INSERT INTO repairs (duplicate_id, sub, email, lease_id, primary_id, state, claimed_until, claimed_by, found_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 'merging', $6, $7, $8, $8)
                 ON CONFLICT (duplicate_id) DO UPDATE SET claimed_until = excluded.claimed_until, claimed_by = excluded.claimed_by,
                   primary_id = excluded.primary_id, updated_at = excluded.updated_at
                 WHERE repairs.state = 'merging' AND repairs.claimed_until <= excluded.updated_at",
                vec![
                    r.duplicate.into(),
                    self.sub.as_str().into(),
                    r.email.into(),
                    r.lease_id.into(),
                    r.primary.into(),
                    until.into(),
                    r.owner.into(),
                    now.into(),
                ],
            )
            .await?;
        Ok(n == 1)
    }
    /// Records how the repair of `duplicate` ended (`merged` into `survivor`, `gone`), or with
    /// `state` `merging` and an error, lets another attempt take it at once.
    pub async fn finish_repair(&mut self, duplicate: &str, state: &str, survivor: Option<&str>, error: Option<&str>, now: i64) -> StoreResult<()> {
        self.conn
            .exec(
                "UPDATE repairs SET state = $2, survivor_id = $3, last_error = $4, claimed_until = 0, claimed_by = NULL, updated_at = $5
                 WHERE duplicate_id = $1",
                vec![duplicate.into(), state.into(), survivor.into(), error.into(), now.into()],
            )
            .await?;
        Ok(())
    }
    pub async fn commit(mut self) -> StoreResult<()> {
        self.conn.exec("COMMIT", vec![]).await?;
        self.conn.set_in_tx(false);
        Ok(())
    }
}

#[async_trait]
impl Store for SqlStore {
    fn kind(&self) -> &'static str {
        if self.is_pg() { "postgres" } else { "sqlite" }
    }

    async fn user(&self, sub: &str) -> StoreResult<Option<User>> {
        q::user(&mut *self.read().await?, sub).await
    }

    async fn save_contact(&self, sub: &str, contact_id: &str, hubspot_email: Option<&str>, now: i64) -> StoreResult<()> {
        q::save_contact(&mut *self.write().await?, sub, contact_id, hubspot_email, now, false).await
    }

    async fn save_contact_if(&self, sub: &str, gen: i64, contact_id: &str, hubspot_email: Option<&str>, now: i64) -> StoreResult<bool> {
        let n = self
            .write()
            .await?
            .exec(
                "UPDATE users SET contact_id = $3, hubspot_email = $4, fetched_at = $5 WHERE sub = $1 AND gen = $2",
                vec![sub.into(), gen.into(), contact_id.into(), hubspot_email.into(), now.into()],
            )
            .await?;
        Ok(n == 1)
    }

    async fn warm_view(&self, sub: &str, lease_id: &str, utk: Option<&str>) -> StoreResult<Option<WarmView>> {
        let rows = self.read_once(WARM_VIEW_SQL, vec![sub.into(), lease_id.into(), utk.into()]).await?;
        Ok(rows.first().map(|r| WarmView {
            user: user_from(r),
            erased: r[12].int() == Some(1),
            job: r[13].text().map(|state| (state, r[14].int().unwrap_or(0), r[15].text(), r[21].int().unwrap_or(0))),
            lease: r[16].text().map(|email| (email, r[17].int().unwrap_or(0), r[18].int().unwrap_or(0) != 0)),
            utk: r[19].text().map(|s| (s, r[20].int().unwrap_or(0))),
        }))
    }

    async fn note_app_email(&self, sub: &str, email: &str, at: i64, first: Option<&str>, last: Option<&str>) -> StoreResult<User> {
        // Only a newer statement of the app's email replaces the stored one: a stale page's
        // assertion must never turn a changed email back. One statement: atomic on both databases.
        let rows = self
            .write()
            .await?
            .query(
                "INSERT INTO users (sub, app_email, app_email_at, firstname, lastname) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (sub) DO UPDATE SET
                   app_email = CASE WHEN users.app_email_at IS NULL OR users.app_email_at < excluded.app_email_at THEN excluded.app_email ELSE users.app_email END,
                   app_email_at = CASE WHEN users.app_email_at IS NULL OR users.app_email_at < excluded.app_email_at THEN excluded.app_email_at ELSE users.app_email_at END,
                   firstname = COALESCE(excluded.firstname, users.firstname),
                   lastname = COALESCE(excluded.lastname, users.lastname)
                 RETURNING sub, contact_id, hubspot_email, fetched_at, app_email, app_email_at, firstname, lastname, conflict_email, conflict_with, last_error, gen",
                vec![sub.into(), email.into(), at.into(), first.into(), last.into()],
            )
            .await?;
        Ok(rows.first().map(user_from).unwrap_or_default())
    }

    async fn set_conflict(&self, sub: &str, email: Option<&str>, with: Option<&str>) -> StoreResult<()> {
        q::set_conflict(&mut *self.write().await?, sub, email, with).await
    }

    async fn set_error(&self, sub: &str, error: Option<&str>) -> StoreResult<()> {
        q::set_error(&mut *self.write().await?, sub, error).await
    }

    async fn bind_utk(&self, utk: &str, sub: &str, now: i64) -> StoreResult<Option<String>> {
        let mut c = self.write().await?;
        // Inserted, or refreshed when it is this sub's: one row back. None back: another sub has it.
        let n = c
            .exec(
                "INSERT INTO utk_bindings (utk, sub, at) VALUES ($1, $2, $3)
                 ON CONFLICT (utk) DO UPDATE SET at = excluded.at WHERE utk_bindings.sub = excluded.sub",
                vec![utk.into(), sub.into(), now.into()],
            )
            .await?;
        if n == 1 {
            return Ok(None);
        }
        let rows = c.query("SELECT sub FROM utk_bindings WHERE utk = $1", vec![utk.into()]).await?;
        Ok(rows.first().and_then(|r| r[0].text()).filter(|o| o != sub))
    }

    async fn release_lease(&self, id: &str, now: i64) -> StoreResult<Option<String>> {
        let Some(sub) = q::lease_owner(&mut *self.read().await?, id).await? else { return Ok(None) };
        let mut tx = self.begin_user(&sub).await?;
        let live = q::release_lease(&mut *tx.conn, &sub, id).await?;
        if live {
            tx.wake_job(now).await?;
        }
        tx.commit().await?;
        Ok(live.then_some(sub))
    }

    async fn shorten_lease(&self, id: &str, now: i64, until: i64) -> StoreResult<Option<String>> {
        let Some(sub) = q::lease_owner(&mut *self.read().await?, id).await? else { return Ok(None) };
        let mut tx = self.begin_user(&sub).await?;
        let live = q::shorten_lease(&mut *tx.conn, &sub, id, now, until).await?;
        if live {
            tx.wake_job(now).await?;
        }
        tx.commit().await?;
        Ok(live.then_some(sub))
    }

    async fn live_leases(&self, now: i64) -> StoreResult<i64> {
        let rows = self.read().await?.query("SELECT COUNT(*) FROM leases WHERE expires_at > $1 AND released = 0", vec![now.into()]).await?;
        Ok(one_int(&rows).unwrap_or(0))
    }

    async fn job(&self, sub: &str) -> StoreResult<Option<Job>> {
        q::job(&mut *self.read().await?, sub).await
    }

    async fn claim_jobs(&self, now: i64, limit: i64, owner: &str, until: i64) -> StoreResult<Vec<Job>> {
        const PG: &str = "UPDATE outbox SET claimed_until = $4, claimed_by = $3
             WHERE sub IN (SELECT sub FROM outbox WHERE state = 'pending' AND next_at <= $1 AND claimed_until <= $1
                           ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING sub, to_email, properties, version, state, attempts, next_at, last_error, claimed_until, claimed_by, uncertain_until";
        // SQLite has one writer at a time: the same statement without row locks is as exclusive.
        const LITE: &str = "UPDATE outbox SET claimed_until = $4, claimed_by = $3
             WHERE sub IN (SELECT sub FROM outbox WHERE state = 'pending' AND next_at <= $1 AND claimed_until <= $1
                           ORDER BY next_at LIMIT $2)
             RETURNING sub, to_email, properties, version, state, attempts, next_at, last_error, claimed_until, claimed_by, uncertain_until";
        let sql = if self.is_pg() { PG } else { LITE };
        let rows = self.write().await?.query(sql, vec![now.into(), limit.into(), owner.into(), until.into()]).await?;
        Ok(rows.iter().map(job_from).collect())
    }

    async fn next_job_at(&self) -> StoreResult<Option<i64>> {
        let rows = self
            .read()
            .await?
            .query(
                "SELECT MIN(CASE WHEN claimed_until > next_at THEN claimed_until ELSE next_at END) FROM outbox WHERE state = 'pending'",
                vec![],
            )
            .await?;
        Ok(one_int(&rows))
    }

    async fn outbox_depth(&self) -> StoreResult<i64> {
        let rows = self.read().await?.query("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", vec![]).await?;
        Ok(one_int(&rows).unwrap_or(0))
    }

    async fn chat_token(&self, email: &str, now: i64) -> StoreResult<Option<(String, i64)>> {
        let rows = self.read().await?.query("SELECT token, exp FROM chat_tokens WHERE email = $1 AND exp > $2", vec![email.into(), now.into()]).await?;
        Ok(rows.first().and_then(|r| Some((r[0].text()?, r[1].int()?))))
    }

    async fn save_chat_token(&self, email: &str, token: &str, exp: i64) -> StoreResult<()> {
        self.write()
            .await?
            .exec(
                "INSERT INTO chat_tokens (email, token, exp) VALUES ($1, $2, $3) ON CONFLICT (email) DO UPDATE SET token = excluded.token, exp = excluded.exp",
                vec![email.into(), token.into(), exp.into()],
            )
            .await?;
        Ok(())
    }

    async fn sync_progress(&self, key: &str) -> StoreResult<SyncProgress> {
        let rows = self.read().await?.query("SELECT line, created, updated, conflicts, invalid FROM sync_progress WHERE key = $1", vec![key.into()]).await?;
        Ok(rows
            .first()
            .map(|r| SyncProgress {
                line: r[0].int().unwrap_or(0),
                created: r[1].int().unwrap_or(0),
                updated: r[2].int().unwrap_or(0),
                conflicts: r[3].int().unwrap_or(0),
                invalid: r[4].int().unwrap_or(0),
            })
            .unwrap_or_default())
    }

    async fn save_sync_progress(&self, key: &str, p: SyncProgress) -> StoreResult<()> {
        self.write()
            .await?
            .exec(
                "INSERT INTO sync_progress (key, line, created, updated, conflicts, invalid) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (key) DO UPDATE SET line = excluded.line, created = excluded.created, updated = excluded.updated,
                   conflicts = excluded.conflicts, invalid = excluded.invalid",
                vec![key.into(), p.line.into(), p.created.into(), p.updated.into(), p.conflicts.into(), p.invalid.into()],
            )
            .await?;
        Ok(())
    }

    async fn prune(&self, now: i64, keep: Retention) -> StoreResult<Pruned> {
        // Batches of at most 5,000 rows, each its own short statement on a connection taken for
        // it, so a large backlog never holds the writer (or row locks) for long; each range is
        // read from an index.
        // A released lease is kept as long as an expired one, counted from the end it had: the
        // page holding it may have sent its email until then (see `lessees`).
        const BATCHES: [&str; 7] = [
            "DELETE FROM leases WHERE id IN (SELECT id FROM leases WHERE released = 1 AND expires_at < $1 UNION ALL
             SELECT id FROM leases WHERE released = 0 AND expires_at < $1 LIMIT 5000)",
            "DELETE FROM utk_bindings WHERE utk IN (SELECT utk FROM utk_bindings WHERE at < $1 LIMIT 5000)",
            "DELETE FROM outbox WHERE sub IN (SELECT sub FROM outbox WHERE state = 'done' AND updated_at < $1 LIMIT 5000)",
            "DELETE FROM chat_tokens WHERE email IN (SELECT email FROM chat_tokens WHERE exp < $1 LIMIT 5000)",
            "DELETE FROM webhook_events WHERE key IN (SELECT key FROM webhook_events WHERE received_at < $1 AND next_at IS NULL LIMIT 5000)",
            "DELETE FROM dropped_links WHERE contact_id IN (SELECT contact_id FROM dropped_links WHERE at < $1 LIMIT 5000)",
            "DELETE FROM contact_resolutions WHERE sub IN (SELECT sub FROM contact_resolutions WHERE claimed_until < $1 LIMIT 5000)",
        ];
        let cutoffs = [now - keep.leases_ms, now - keep.utk_ms, now - keep.jobs_ms, now, now - keep.webhooks_ms, now - keep.webhooks_ms, now - RESOLUTION_KEEP_MS];
        let mut counts = [0u64; 7];
        for (i, sql) in BATCHES.iter().enumerate() {
            loop {
                let n = self.write().await?.exec(sql, vec![cutoffs[i].into()]).await?;
                counts[i] += n;
                if n < 5000 {
                    break;
                }
            }
        }
        Ok(Pruned { leases: counts[0], utk_bindings: counts[1], jobs: counts[2], chat_tokens: counts[3], webhook_events: counts[4] + counts[5], resolutions: counts[6] })
    }

    async fn clear_claims(&self) -> StoreResult<u64> {
        self.write().await?.exec("UPDATE outbox SET claimed_until = 0, claimed_by = NULL WHERE claimed_until > 0", vec![]).await
    }

    async fn users_by_contact(&self, contact_ids: &[String]) -> StoreResult<Vec<User>> {
        const SQL: &str = "SELECT sub, contact_id, hubspot_email, fetched_at, app_email, app_email_at, firstname, lastname, conflict_email, conflict_with, last_error, gen FROM users WHERE contact_id = $1";
        let mut c = self.read().await?;
        let mut out: Vec<User> = Vec::new();
        for id in contact_ids {
            for u in c.query(SQL, vec![id.into()]).await?.iter().map(user_from) {
                if !out.iter().any(|o| o.sub == u.sub) {
                    out.push(u);
                }
            }
        }
        Ok(out)
    }

    async fn end_leases(&self, sub: &str, keep: Option<&str>, now: i64) -> StoreResult<u64> {
        q::end_leases(&mut *self.write().await?, sub, keep, now).await
    }

    async fn put_webhook_events(&self, events: &[(String, String)], now: i64) -> StoreResult<u64> {
        let mut c = self.write().await?;
        c.exec(if self.is_pg() { "BEGIN" } else { "BEGIN IMMEDIATE" }, vec![]).await?;
        c.set_in_tx(true);
        let mut n = 0;
        for (pos, (key, body)) in events.iter().enumerate() {
            n += c
                .exec(
                    "INSERT INTO webhook_events (key, body, received_at, pos, next_at) VALUES ($1, $2, $3, $4, $3)
                     ON CONFLICT (key) DO NOTHING",
                    vec![key.into(), body.into(), now.into(), (pos as i64).into()],
                )
                .await?;
        }
        c.exec("COMMIT", vec![]).await?;
        c.set_in_tx(false);
        Ok(n)
    }

    async fn due_webhook_events(&self, now: i64, limit: i64) -> StoreResult<Vec<(String, String, i64)>> {
        let rows = self
            .read()
            .await?
            .query(
                "SELECT key, body, attempts FROM webhook_events WHERE next_at IS NOT NULL AND next_at <= $1
                 ORDER BY received_at, pos LIMIT $2",
                vec![now.into(), limit.into()],
            )
            .await?;
        Ok(rows.iter().filter_map(|r| Some((r[0].text()?, r[1].text()?, r[2].int().unwrap_or(0)))).collect())
    }

    async fn claim_webhook_events(&self, now: i64, limit: i64, until: i64) -> StoreResult<Vec<(String, String, i64)>> {
        const PG: &str = "UPDATE webhook_events SET next_at = $3
             WHERE key IN (SELECT key FROM webhook_events WHERE next_at IS NOT NULL AND next_at <= $1
                           ORDER BY received_at, pos LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING key, body, attempts, received_at, pos";
        // SQLite has one writer at a time: the same statement without row locks is as exclusive.
        const LITE: &str = "UPDATE webhook_events SET next_at = $3
             WHERE key IN (SELECT key FROM webhook_events WHERE next_at IS NOT NULL AND next_at <= $1
                           ORDER BY received_at, pos LIMIT $2)
             RETURNING key, body, attempts, received_at, pos";
        let sql = if self.is_pg() { PG } else { LITE };
        let mut rows = self.write().await?.query(sql, vec![now.into(), limit.into(), until.into()]).await?;
        // RETURNING keeps no order: put them back in the order received.
        rows.sort_by_key(|r| (r[3].int(), r[4].int()));
        Ok(rows.iter().filter_map(|r| Some((r[0].text()?, r[1].text()?, r[2].int().unwrap_or(0)))).collect())
    }

    async fn finish_webhook_event(&self, key: &str, next_at: Option<i64>, error: Option<&str>) -> StoreResult<()> {
        self.write()
            .await?
            .exec(
                "UPDATE webhook_events SET next_at = $2, last_error = $3,
                   attempts = attempts + CASE WHEN CAST($2 AS BIGINT) IS NULL THEN 0 ELSE 1 END WHERE key = $1",
                vec![key.into(), next_at.into(), error.into()],
            )
            .await?;
        Ok(())
    }

    async fn reconcile_due(&self, now: i64, older_than: i64, limit: i64) -> StoreResult<Vec<User>> {
        let rows = self
            .read()
            .await?
            .query(
                "SELECT u.sub, u.contact_id, u.hubspot_email, u.fetched_at, u.app_email, u.app_email_at, u.firstname, u.lastname,
                   u.conflict_email, u.conflict_with, u.last_error, u.gen
                 FROM users u WHERE u.contact_id IS NOT NULL AND COALESCE(u.fetched_at, 0) < $2
                 AND EXISTS (SELECT 1 FROM leases l WHERE l.sub = u.sub AND l.released = 0 AND l.expires_at > $1)
                 ORDER BY COALESCE(u.fetched_at, 0) LIMIT $3",
                vec![now.into(), older_than.into(), limit.into()],
            )
            .await?;
        Ok(rows.iter().map(user_from).collect())
    }

    async fn set_erased(&self, sub: &str, at: Option<i64>) -> StoreResult<()> {
        q::set_erased(&mut *self.write().await?, sub, at).await
    }

    async fn erased(&self, sub: &str) -> StoreResult<bool> {
        q::erased(&mut *self.read().await?, sub).await
    }

    async fn note_dropped_link(&self, contact_id: &str, sub: &str, at: i64) -> StoreResult<()> {
        q::note_dropped_link(&mut *self.write().await?, contact_id, sub, at).await
    }

    async fn dropped_link(&self, contact_id: &str) -> StoreResult<Option<String>> {
        let rows = self.read().await?.query("SELECT sub FROM dropped_links WHERE contact_id = $1", vec![contact_id.into()]).await?;
        Ok(rows.first().and_then(|r| r[0].text()))
    }

    async fn claim_resolution(&self, sub: &str, owner: &str, now: i64, until: i64) -> StoreResult<Option<Misses>> {
        self.claim_resolution_sql(sub, owner, now, until).await
    }

    async fn resolution_claimed(&self, sub: &str, now: i64) -> StoreResult<bool> {
        self.resolution_claimed_sql(sub, now).await
    }

    async fn end_resolution(&self, sub: &str, owner: &str, unresolved: Option<&Misses>, now: i64) -> StoreResult<()> {
        self.end_resolution_sql(sub, owner, unresolved, now).await
    }

    async fn lessees(&self, email: &str, at: i64, margin: i64) -> StoreResult<Vec<(String, String)>> {
        let rows = self
            .read()
            .await?
            .query(
                "SELECT sub, id FROM leases WHERE email = $1 AND expires_at >= $2 AND issued_at <= $3 ORDER BY expires_at DESC",
                vec![email.into(), (at - margin).into(), (at + margin).into()],
            )
            .await?;
        let mut out: Vec<(String, String)> = Vec::new();
        for r in &rows {
            if let (Some(sub), Some(id)) = (r[0].text(), r[1].text()) {
                if !out.iter().any(|(s, _)| *s == sub) {
                    out.push((sub, id));
                }
            }
        }
        Ok(out)
    }

    async fn repair_suspects(&self, since: i64, limit: i64) -> StoreResult<Vec<(String, String)>> {
        let rows = self
            .read()
            .await?
            .query(
                "SELECT DISTINCT sub, email FROM leases WHERE expires_at > $1 ORDER BY sub, email LIMIT $2",
                vec![since.into(), limit.into()],
            )
            .await?;
        Ok(rows.iter().filter_map(|r| Some((r[0].text()?, r[1].text()?))).collect())
    }

    async fn repairs(&self, sub: &str) -> StoreResult<Vec<Repair>> {
        Ok(self.read().await?.query(REPAIRS_OF_USER, vec![sub.into()]).await?.iter().map(repair_from).collect())
    }

    async fn leases_of(&self, sub: &str) -> StoreResult<Vec<LeaseView>> {
        let rows = self
            .read()
            .await?
            .query(
                "SELECT id, email, issued_at, expires_at, released FROM leases WHERE sub = $1 ORDER BY expires_at DESC LIMIT 50",
                vec![sub.into()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| LeaseView {
                id: r[0].text().unwrap_or_default(),
                email: r[1].text().unwrap_or_default(),
                issued_at: r[2].int().unwrap_or(0),
                expires_at: r[3].int().unwrap_or(0),
                released: r[4].int().unwrap_or(0) != 0,
            })
            .collect())
    }

    async fn repair_of(&self, duplicate: &str) -> StoreResult<Option<Repair>> {
        Ok(self.read().await?.query(REPAIR_ONE, vec![duplicate.into()]).await?.first().map(repair_from))
    }

    async fn begin_user(&self, sub: &str) -> StoreResult<UserTx> {
        let mut conn = self.write().await?;
        match &self.backend {
            Backend::Sqlite { .. } => {
                conn.exec("BEGIN IMMEDIATE", vec![]).await?;
            }
            Backend::Postgres { .. } => {
                conn.exec("BEGIN", vec![]).await?;
            }
        }
        // From here a drop rolls back.
        conn.set_in_tx(true);
        conn.by_key();
        if self.is_pg() {
            conn.exec("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", vec![sub.into()]).await?;
        }
        Ok(UserTx { conn, sub: sub.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_never_shows_a_postgres_password_in_any_form() {
        let forms = [
            ("postgres://hsq:s3cr3t@db.internal/hsq", "postgres://hsq@db.internal:5432/hsq"),
            ("postgresql://hsq:s3cr3t@db.internal:6543/hsq?sslmode=disable", "postgres://hsq@db.internal:6543/hsq"),
            ("postgres://hsq@db.internal/hsq?password=s3cr3t", "postgres://hsq@db.internal:5432/hsq"),
            ("postgres://db.internal/hsq?user=hsq&password=s3cr3t&application_name=x", "postgres://hsq@db.internal:5432/hsq"),
            ("host=db.internal user=hsq password=s3cr3t dbname=hsq", "postgres://hsq@db.internal/hsq"),
            ("host=db.internal port=5433 user=hsq password='s3 cr3t' dbname=hsq", "postgres://hsq@db.internal:5433/hsq"),
            ("postgres://hsq:s3cr3t@[::1", "a PostgreSQL URL that does not parse"),
            ("host=db password=s3cr3t nonsense", "a setting that may hold a password (not shown)"),
        ];
        for (db, want) in forms {
            let d = describe(db);
            println!("{db:?} -> {d:?}");
            assert!(!d.contains("s3cr3t") && !d.contains("cr3t"), "{db:?} shows its password: {d}");
            assert_eq!(d, want, "{db:?}");
        }
        // A SQLite path is shown as it is.
        assert_eq!(describe("/var/lib/hsq/relay.db"), "/var/lib/hsq/relay.db");
        assert_eq!(describe("hsq-relay.db"), "hsq-relay.db");
    }

    #[tokio::test]
    async fn an_unopenable_sqlite_path_fails_at_once_naming_the_cause() {
        let start = std::time::Instant::now();
        let err = SqlStore::sqlite(std::path::Path::new("/nonexistent-dir/hsq/relay.db"), 4).await.unwrap_err();
        let took = start.elapsed();
        println!("{err} after {took:?}");
        assert!(err.to_string().contains("unable to open"), "{err}");
        assert!(matches!(err, StoreError::Sqlite(_)), "{err:?}");
    }

    #[test]
    fn busy_and_locked_sqlite_are_unavailable_and_other_errors_are_not() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        let locked = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_LOCKED), None);
        let constraint = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT), None);
        assert!(StoreError::Sqlite(busy).is_unavailable());
        assert!(StoreError::Sqlite(locked).is_unavailable());
        assert!(!StoreError::Sqlite(constraint).is_unavailable());
        assert!(!StoreError::Task("x".into()).is_unavailable());
    }

    async fn store() -> SqlStore {
        SqlStore::sqlite(std::path::Path::new(":memory:"), 1).await.unwrap()
    }

    #[tokio::test]
    async fn a_connection_back_in_the_pool_inside_a_transaction_is_closed_not_reused() {
        let path = std::env::temp_dir().join(format!("hsq-store-open-tx-{}.db", std::process::id()));
        let s = SqlStore::sqlite(&path, 1).await.unwrap();
        let Backend::Sqlite { pool, .. } = &s.backend else { unreachable!() };
        // What a request cancelled while its BEGIN IMMEDIATE ran in the blocking pool leaves.
        pool.get().unwrap().execute_batch("BEGIN IMMEDIATE").unwrap();
        // The next write is committed, not left inside that transaction on the reused connection.
        s.note_app_email("u", "a@x.io", 1, None, None).await.unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        let seen: i64 = other.query_row("SELECT COUNT(*) FROM users WHERE sub = 'u'", [], |r| r.get(0)).unwrap();
        drop((other, s));
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
        assert_eq!(seen, 1, "the write is visible to another connection");
    }

    #[tokio::test]
    async fn only_a_newer_app_email_replaces_the_stored_one() {
        let s = store().await;
        assert_eq!(s.note_app_email("u", "b@x.io", 2000, None, None).await.unwrap().app_email.as_deref(), Some("b@x.io"));
        let u = s.note_app_email("u", "a@x.io", 1000, Some("A"), None).await.unwrap();
        assert_eq!(u.app_email.as_deref(), Some("b@x.io"), "an older assertion does not turn the email back");
        assert_eq!(u.firstname.as_deref(), Some("A"));
        assert_eq!(s.note_app_email("u", "c@x.io", 3000, None, None).await.unwrap().app_email.as_deref(), Some("c@x.io"));
    }

    #[tokio::test]
    async fn a_utk_stays_with_its_first_user() {
        let s = store().await;
        assert_eq!(s.bind_utk("t1", "a", 1).await.unwrap(), None);
        assert_eq!(s.bind_utk("t1", "a", 2).await.unwrap(), None);
        assert_eq!(s.bind_utk("t1", "b", 3).await.unwrap().as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn leases_renew_only_while_live_and_unreleased() {
        let s = store().await;
        let mut tx = s.begin_user("u").await.unwrap();
        tx.issue_lease("l1", "a@x.io", 100).await.unwrap();
        assert!(tx.renew_lease("l1", "a@x.io", 50, 200).await.unwrap());
        assert!(!tx.renew_lease("l1", "b@x.io", 50, 200).await.unwrap(), "another email");
        assert_eq!(tx.live_lease_until("b@x.io", 150).await.unwrap(), Some(200));
        assert_eq!(tx.live_lease_until("a@x.io", 150).await.unwrap(), None, "a lease on the target email does not block");
        tx.commit().await.unwrap();
        let mut tx = s.begin_user("v").await.unwrap();
        assert!(!tx.renew_lease("l1", "a@x.io", 50, 200).await.unwrap(), "another user");
        drop(tx);
        assert_eq!(s.release_lease("l1", 150).await.unwrap().as_deref(), Some("u"));
        assert_eq!(s.release_lease("l1", 150).await.unwrap(), None);
        let mut tx = s.begin_user("u").await.unwrap();
        assert!(!tx.renew_lease("l1", "a@x.io", 50, 300).await.unwrap());
        assert_eq!(tx.live_lease_until("b@x.io", 150).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_newer_change_replaces_the_queued_one_and_keeps_it_pending() {
        let s = store().await;
        let mut tx = s.begin_user("u").await.unwrap();
        tx.put_job("b@x.io", "{}", 10).await.unwrap();
        tx.commit().await.unwrap();
        let j = s.claim_jobs(10, 10, "r1", 1000).await.unwrap().remove(0);
        assert!(s.claim_jobs(10, 10, "r2", 1000).await.unwrap().is_empty(), "a claimed job is not claimed again");
        let mut tx = s.begin_user("u").await.unwrap();
        tx.put_job("c@x.io", "{}", 11).await.unwrap();
        assert!(!tx.finish_job(j.version, "done", None, 12).await.unwrap(), "the applied version is stale");
        tx.commit().await.unwrap();
        let j2 = s.job("u").await.unwrap().unwrap();
        assert_eq!((j2.to_email.as_str(), j2.state.as_str()), ("c@x.io", "pending"));
        assert_eq!(s.outbox_depth().await.unwrap(), 1);
        assert_eq!(s.claim_jobs(1001, 10, "r2", 2000).await.unwrap().len(), 1, "a claim that ran out is taken by another relay");
        let mut tx = s.begin_user("u").await.unwrap();
        assert!(tx.finish_job(j2.version, "done", None, 13).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(s.outbox_depth().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_write_of_unknown_outcome_is_remembered_across_a_newer_change_and_a_restart() {
        let s = store().await;
        let mut tx = s.begin_user("u").await.unwrap();
        tx.put_job("b@x.io", "{}", 10).await.unwrap();
        tx.commit().await.unwrap();
        let j = s.claim_jobs(10, 10, "r1", 1000).await.unwrap().remove(0);
        let mut tx = s.begin_user("u").await.unwrap();
        assert!(tx.mark_applying(j.version, "applying:r1").await.unwrap());
        tx.hold_uncertain(500).await.unwrap();
        tx.commit().await.unwrap();
        // The app changes the email again, and the relay restarts (SQLite clears its claims).
        let mut tx = s.begin_user("u").await.unwrap();
        tx.put_job("c@x.io", "{}", 20).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(s.clear_claims().await.unwrap(), 1);
        let j = s.claim_jobs(30, 10, "r2", 1000).await.unwrap().remove(0);
        assert_eq!((j.to_email.as_str(), j.uncertain_until), ("c@x.io", 500), "the earlier write may still land");
        let mut tx = s.begin_user("u").await.unwrap();
        tx.hold_uncertain(400).await.unwrap();
        assert_eq!(tx.job().await.unwrap().unwrap().uncertain_until, 500, "the later bound stays");
        tx.settle_uncertain(400).await.unwrap();
        assert_eq!(tx.job().await.unwrap().unwrap().uncertain_until, 500, "only its own record is cleared");
        tx.settle_uncertain(500).await.unwrap();
        assert_eq!(tx.job().await.unwrap().unwrap().uncertain_until, 0);
    }

    #[tokio::test]
    async fn a_transaction_dropped_half_way_leaves_nothing() {
        let s = store().await;
        let mut tx = s.begin_user("u").await.unwrap();
        tx.put_job("b@x.io", "{}", 10).await.unwrap();
        drop(tx);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(s.job("u").await.unwrap(), None);
    }

    #[tokio::test]
    async fn webhook_events_are_stored_once_per_key_and_leave_the_queue_when_finished() {
        let s = store().await;
        assert_eq!(s.put_webhook_events(&[("k1".into(), "{}".into()), ("k1".into(), "{}".into()), ("k2".into(), "[]".into())], 5).await.unwrap(), 2);
        assert_eq!(s.put_webhook_events(&[("k2".into(), "[]".into())], 6).await.unwrap(), 0, "a duplicate delivery adds nothing");
        let due = s.due_webhook_events(10, 10).await.unwrap();
        assert_eq!(due.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(), ["k1", "k2"], "in the order received");
        let claimed = s.claim_webhook_events(10, 10, 50).await.unwrap();
        assert_eq!(claimed, due, "claimed in the order received");
        assert!(s.claim_webhook_events(10, 10, 50).await.unwrap().is_empty(), "a claimed event is not claimed again");
        assert_eq!(s.claim_webhook_events(50, 1, 90).await.unwrap().len(), 1, "a claim that ran out is taken again");
        s.finish_webhook_event(&due[0].0, None, None).await.unwrap();
        s.finish_webhook_event(&due[1].0, Some(100), Some("HubSpot down")).await.unwrap();
        assert!(s.due_webhook_events(10, 10).await.unwrap().is_empty());
        assert_eq!(s.due_webhook_events(100, 10).await.unwrap()[0].2, 1, "one attempt counted");
    }

    #[tokio::test]
    async fn ending_leases_keeps_the_one_on_the_email_hubspot_holds() {
        let s = store().await;
        let mut tx = s.begin_user("u").await.unwrap();
        tx.issue_lease("l1", "a@x.io", 100).await.unwrap();
        tx.issue_lease("l2", "b@x.io", 100).await.unwrap();
        tx.save_contact("7", Some("b@x.io"), 1, false).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(s.reconcile_due(50, 2, 10).await.unwrap().len(), 1);
        assert_eq!(s.users_by_contact(&["7".into(), "8".into()]).await.unwrap()[0].sub, "u");
        let mut tx = s.begin_user("u").await.unwrap();
        assert_eq!(tx.end_leases(Some("b@x.io"), 50).await.unwrap(), 1);
        assert!(!tx.renew_lease("l1", "a@x.io", 50, 200).await.unwrap());
        assert!(tx.renew_lease("l2", "b@x.io", 50, 200).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(s.end_leases("u", None, 50).await.unwrap(), 1);
        assert!(s.reconcile_due(50, 2, 10).await.unwrap().is_empty(), "no live lease, nothing to reconcile");
    }

    #[tokio::test]
    async fn an_erased_user_and_a_dropped_link_are_remembered_until_cleared() {
        let s = store().await;
        assert!(!s.erased("u").await.unwrap());
        s.set_erased("u", Some(5)).await.unwrap();
        s.set_erased("u", Some(6)).await.unwrap();
        assert!(s.erased("u").await.unwrap());
        let mut tx = s.begin_user("u").await.unwrap();
        tx.set_erased(None).await.unwrap();
        tx.note_dropped_link("7", 6).await.unwrap();
        tx.commit().await.unwrap();
        assert!(!s.erased("u").await.unwrap());
        assert_eq!(s.dropped_link("7").await.unwrap().as_deref(), Some("u"));
        s.note_dropped_link("7", "v", 7).await.unwrap();
        assert_eq!(s.dropped_link("7").await.unwrap().as_deref(), Some("v"));
    }

    #[tokio::test]
    async fn prune_deletes_only_what_ended_long_enough_ago() {
        let s = store().await;
        let day = 86_400_000;
        let mut tx = s.begin_user("u").await.unwrap();
        tx.issue_lease("old", "a@x.io", 10).await.unwrap();
        tx.issue_lease("live", "a@x.io", 10 * day).await.unwrap();
        tx.put_job("b@x.io", "{}", 10).await.unwrap();
        assert!(tx.finish_job(1, "done", None, 10).await.unwrap());
        tx.commit().await.unwrap();
        s.bind_utk("t-old", "u", 10).await.unwrap();
        s.bind_utk("t-new", "u", 5 * day).await.unwrap();
        let keep = Retention { leases_ms: day, utk_ms: 2 * day, jobs_ms: 3 * day, webhooks_ms: 2 * day };
        let p = s.prune(5 * day, keep).await.unwrap();
        assert_eq!((p.leases, p.utk_bindings, p.jobs), (1, 1, 1));
        assert_eq!(s.release_lease("live", 4 * day).await.unwrap().as_deref(), Some("u"));
        assert_eq!(s.prune(5 * day, keep).await.unwrap().leases, 0, "a released lease stays until a day after its end");
        assert_eq!(s.bind_utk("t-new", "v", 5 * day).await.unwrap().as_deref(), Some("u"), "a recent binding stays");
        assert_eq!(s.prune(5 * day, keep).await.unwrap(), Pruned::default());
        assert_eq!(s.prune(11 * day + 1, keep).await.unwrap().leases, 1, "then the released lease goes");
    }

    #[tokio::test]
    async fn prune_deletes_processed_webhook_events_and_old_dropped_links_only() {
        let s = store().await;
        let day = 86_400_000;
        let events = [("done".to_string(), "{}".to_string()), ("due".to_string(), "{}".to_string())];
        s.put_webhook_events(&events, 10).await.unwrap();
        s.put_webhook_events(&[("recent".into(), "{}".into())], 4 * day).await.unwrap();
        s.finish_webhook_event("done", None, None).await.unwrap();
        s.finish_webhook_event("recent", None, None).await.unwrap();
        s.finish_webhook_event("due", Some(6 * day), Some("HubSpot down")).await.unwrap();
        s.note_dropped_link("7", "u", 10).await.unwrap();
        s.note_dropped_link("8", "v", 4 * day).await.unwrap();
        let keep = Retention { webhooks_ms: 2 * day, ..Retention::default() };
        assert_eq!(s.prune(5 * day, keep).await.unwrap().webhook_events, 2, "the old processed event and the old link");
        assert_eq!(s.put_webhook_events(&[("recent".into(), "{}".into())], 5 * day).await.unwrap(), 0, "a recent one still deduplicates");
        assert_eq!(s.due_webhook_events(6 * day, 10).await.unwrap().len(), 1, "an event still due stays");
        assert_eq!(s.dropped_link("7").await.unwrap(), None);
        assert_eq!(s.dropped_link("8").await.unwrap().as_deref(), Some("v"));
    }
}
