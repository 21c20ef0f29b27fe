//! Configuration from flags and the environment. A missing or malformed setting stops start-up
//! with a message that names it; secrets never print (see [`Secret`]).

use clap::{Args, Parser, Subcommand};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A secret value: `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `hsq-relay serve | init | sync FILE.csv`
#[derive(Debug, Parser)]
#[command(name = "hsq-relay", version, about = "Identify visitors to HubSpot by a stable id; relay between app, page and HubSpot")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the relay API.
    Serve(ServeArgs),
    /// Apply the database migrations, and create the unique contact property (default
    /// `hsq_user_id`) in HubSpot.
    Init(InitArgs),
    /// Upsert users from a CSV file (`sub,email[,firstname,lastname]`) by the unique property.
    Sync(SyncArgs),
}

/// How to reach HubSpot.
#[derive(Debug, Clone, Args)]
pub struct HubSpotArgs {
    /// The private app's access token.
    #[arg(long = "hubspot-access-token", env = "HUBSPOT_ACCESS_TOKEN", hide_env_values = true, value_parser = Quiet(parse_secret))]
    pub token: Secret,
    /// HubSpot's API base URL (the simulator's in tests and the demo).
    #[arg(long = "hubspot-api-base", env = "HUBSPOT_API_BASE", default_value = "https://api.hubapi.com", value_parser = parse_base)]
    pub api_base: String,
    /// The unique contact property that holds the app's user id.
    #[arg(long = "id-property", env = "HSQ_ID_PROPERTY", default_value = "hsq_user_id", value_parser = parse_property)]
    pub id_property: String,
    /// HubSpot API calls allowed per 10 seconds (100 Free/Starter, 190 Professional/Enterprise).
    /// The client adjusts to `X-HubSpot-RateLimit-Max` when HubSpot sends it.
    #[arg(long = "hubspot-rate-limit", env = "HSQ_HUBSPOT_RATE_LIMIT", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: u32,
    /// Timeout of one HubSpot call, in milliseconds.
    #[arg(long = "hubspot-timeout-ms", env = "HSQ_HUBSPOT_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=120_000))]
    pub timeout_ms: u64,
}

impl HubSpotArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConflictPolicy {
    /// Mark the user `conflict` and leave it to an operator.
    Flag,
    /// Merge the other contact into the user's, when it is not linked to another user.
    Merge,
}

/// `hsq-relay serve`
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub hubspot: HubSpotArgs,
    /// Where to listen; port 0 picks a free port.
    #[arg(long = "addr", env = "HSQ_ADDR", default_value = "127.0.0.1:8787")]
    pub addr: SocketAddr,
    /// Assertion keys, comma-separated `kid:secret`; each secret at least 32 bytes.
    #[arg(long = "assertion-secrets", env = "HSQ_ASSERTION_SECRETS", hide_env_values = true, value_parser = Quiet(parse_keys))]
    pub assertion_secrets: Keys,
    /// Bearer token for the server-to-server API (`/v1/users`).
    #[arg(long = "admin-token", env = "HSQ_ADMIN_TOKEN", hide_env_values = true, value_parser = Quiet(parse_admin_token))]
    pub admin_token: Secret,
    /// The database: a SQLite file (one relay), or a `postgres://user:pass@host/db` URL that
    /// several relays share.
    #[arg(long = "db", env = "HSQ_DB", default_value = "hsq-relay.db", hide_env_values = true)]
    pub db: String,
    /// Database connections per relay (PostgreSQL; SQLite keeps one writer and a few readers).
    #[arg(long = "db-pool", env = "HSQ_DB_POOL", default_value_t = 16, value_parser = clap::value_parser!(u64).range(2..=256))]
    pub db_pool: u64,
    /// How often the outbox looks for changes another relay queued or unblocked, in milliseconds
    /// (PostgreSQL only: on SQLite the one relay wakes its outbox itself).
    #[arg(long = "outbox-poll-ms", env = "HSQ_OUTBOX_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub outbox_poll_ms: u64,
    /// How long a relay's claim on an outbox job holds, in seconds: a job whose relay died is
    /// taken over by another relay after this.
    #[arg(long = "outbox-claim-secs", env = "HSQ_OUTBOX_CLAIM_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=600))]
    pub outbox_claim_secs: u64,
    /// A utk binding (for `rotateUtk`) not seen for this many days is deleted (HubSpot's cookie
    /// lives 13 months).
    #[arg(long = "utk-retention-days", env = "HSQ_UTK_RETENTION_DAYS", default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub utk_retention_days: u64,
    /// Origins allowed to call the page API cross-origin, comma-separated (none: same origin only).
    #[arg(long = "allowed-origins", env = "HSQ_ALLOWED_ORIGINS", default_value = "", value_parser = parse_origins)]
    pub allowed_origins: Origins,
    /// How long a confirmed email is leased to a page, in seconds.
    #[arg(long = "lease-secs", env = "HSQ_LEASE_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub lease_secs: u64,
    /// A lease given back by `sendBeacon` on page hide lives this much longer, so the next page
    /// of the same tab can take it over; an explicit `DELETE` ends it at once. The page counts on
    /// at least 10 s.
    #[arg(long = "release-grace-secs", env = "HSQ_RELEASE_GRACE_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(10..=600))]
    pub release_grace_secs: u64,
    /// How long a ticket may be cached by the page, in seconds.
    #[arg(long = "ticket-secs", env = "HSQ_TICKET_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=3_600))]
    pub ticket_secs: u64,
    /// The longest a HubSpot write may still land after it was sent, in milliseconds (at least the
    /// HubSpot timeout is used). A write whose answer never came (a timeout, a dropped connection,
    /// a relay that died while writing) is taken as possibly landing until then: the user's email
    /// is not leased and the change not finished before the contact is read back after it.
    #[arg(long = "hubspot-late-write-ms", env = "HSQ_HUBSPOT_LATE_WRITE_MS", default_value_t = 120_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub hubspot_late_write_ms: u64,
    /// How long a contact read from HubSpot is trusted before it is read again, in seconds.
    #[arg(long = "cache-secs", env = "HSQ_CACHE_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub cache_secs: u64,
    /// Hand out HubSpot visitor identification tokens for the chat widget.
    #[arg(long = "chat", env = "HSQ_CHAT", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub chat: bool,
    /// What to do when another contact already holds a user's new email.
    #[arg(long = "conflict-policy", env = "HSQ_CONFLICT_POLICY", value_enum, default_value = "flag")]
    pub conflict_policy: ConflictPolicy,
    /// How long a page's request may spend on HubSpot (retries included), in milliseconds.
    #[arg(long = "hubspot-budget-ms", env = "HSQ_HUBSPOT_BUDGET_MS", default_value_t = 2500, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub hubspot_budget_ms: u64,
    /// Identity requests allowed per second from one client address (0: no limit).
    #[arg(long = "rate-limit-per-ip", env = "HSQ_RATE_LIMIT_PER_IP", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub rate_limit_per_ip: u32,
    /// The HubSpot app's client secret: enables `POST /v1/hubspot/webhooks` (signature v3).
    #[arg(long = "hubspot-client-secret", env = "HSQ_HUBSPOT_CLIENT_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub hubspot_client_secret: Option<Secret>,
    /// The relay's URL as HubSpot calls it (scheme, host, optional path prefix), when a proxy
    /// sits in front; webhook signatures are checked over it. Default: `http://` + the Host header.
    #[arg(long = "public-url", env = "HSQ_PUBLIC_URL", value_parser = parse_base)]
    pub public_url: Option<String>,
    /// Re-read from HubSpot, every this many seconds, the contacts of users that hold a live
    /// lease and were not read for as long (batch reads of 100, at most 10 per round). 0: off.
    #[arg(long = "reconcile-secs", env = "HSQ_RECONCILE_SECS", default_value_t = 60)]
    pub reconcile_secs: u64,
    /// Merge into a user's contact the contacts HubSpot's tracking code made with an email the
    /// relay had leased to that user's pages, carrying no id property (repair.rs). `false`: such
    /// contacts are left alone.
    #[arg(long = "repair-duplicates", env = "HSQ_REPAIR_DUPLICATES", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub repair_duplicates: bool,
    /// Every request is answered within this many milliseconds, or with 503 `timeout`.
    #[arg(long = "request-timeout-ms", env = "HSQ_REQUEST_TIMEOUT_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(100..=120_000))]
    pub request_timeout_ms: u64,
    /// A connection waiting for a request (new, or kept alive after a response) with nothing
    /// received is closed after this many milliseconds.
    #[arg(long = "idle-timeout-ms", env = "HSQ_IDLE_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub idle_timeout_ms: u64,
    /// A request's line and headers must have arrived this many milliseconds after the relay began
    /// waiting for them (the connection opened, or the previous response was sent), or the
    /// connection is closed: a client sending its headers a byte at a time holds nothing longer.
    #[arg(long = "header-timeout-ms", env = "HSQ_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub header_timeout_ms: u64,
    /// Client connections served at once; further ones wait in the listen queue until one closes.
    /// Keep it below the process's open-file limit less `HSQ_DB_POOL` and HubSpot's connections.
    #[arg(long = "max-connections", env = "HSQ_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers are believed, comma-separated
    /// IPs or CIDR ranges (none: the TCP peer is the client). The client is the last address in
    /// those headers that is not one of these proxies.
    #[arg(long = "trusted-proxies", env = "HSQ_TRUSTED_PROXIES", default_value = "", value_parser = parse_proxies)]
    pub trusted_proxies: TrustedProxies,
}

/// The trusted reverse proxies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<ipnet::IpNet>);

impl TrustedProxies {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn parse_proxies(s: &str) -> Result<TrustedProxies, String> {
    let mut out = Vec::new();
    for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let net = match p.parse::<ipnet::IpNet>() {
            Ok(n) => n,
            Err(_) => match p.parse::<std::net::IpAddr>() {
                Ok(ip) => ipnet::IpNet::from(ip),
                Err(_) => return Err(format!("{p:?} is neither an IP address nor a CIDR range like 10.0.0.0/8")),
            },
        };
        out.push(net);
    }
    Ok(TrustedProxies(out))
}

/// A value parser for secrets: its error names the setting and what is wrong, never the value
/// (clap's own errors quote the value given).
#[derive(Clone, Copy)]
pub struct Quiet<T: 'static>(pub fn(&str) -> Result<T, String>);

impl<T> fmt::Debug for Quiet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Quiet")
    }
}

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Quiet<T> {
    type Value = T;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &std::ffi::OsStr) -> Result<T, clap::Error> {
        let name = arg
            .map(|a| {
                let long = a.get_long().map(|l| format!("--{l}")).unwrap_or_else(|| a.get_id().to_string());
                match a.get_env() {
                    Some(env) => format!("{long} ({})", env.to_string_lossy()),
                    None => long,
                }
            })
            .unwrap_or_else(|| "a secret setting".into());
        let fail = |why: String| {
            let mut cmd = cmd.clone();
            cmd.error(clap::error::ErrorKind::ValueValidation, format!("invalid {name}: {why} (the value is secret and not shown)"))
        };
        let text = value.to_str().ok_or_else(|| fail("it is not UTF-8".into()))?;
        (self.0)(text).map_err(fail)
    }
}

/// `hsq-relay init`
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub hubspot: HubSpotArgs,
    /// The database to migrate (see `serve --db`).
    #[arg(long = "db", env = "HSQ_DB", default_value = "hsq-relay.db", hide_env_values = true)]
    pub db: String,
}

/// Assertion keys by `kid`.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys(pub Vec<(String, Secret)>);

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(k, _)| format!("{k}:[redacted]"))).finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(pub Vec<String>);

/// `hsq-relay sync FILE.csv`
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub hubspot: HubSpotArgs,
    /// The CSV file: a header line, then `sub,email[,firstname,lastname]`.
    pub file: PathBuf,
    /// The database that remembers progress, so an interrupted sync resumes (see `serve --db`).
    #[arg(long = "db", env = "HSQ_DB", default_value = "hsq-relay.db", hide_env_values = true)]
    pub db: String,
    /// Don't draw the progress bar (logs print progress lines instead).
    #[arg(long)]
    pub no_progress: bool,
}

fn parse_secret(s: &str) -> Result<Secret, String> {
    if s.trim().is_empty() {
        return Err("is empty".into());
    }
    Ok(Secret::new(s.trim()))
}

fn parse_admin_token(s: &str) -> Result<Secret, String> {
    if s.trim().len() < 16 {
        return Err("must be at least 16 characters".into());
    }
    Ok(Secret::new(s.trim()))
}

fn parse_base(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    if !(s.starts_with("http://") || s.starts_with("https://")) || s.len() < 10 {
        return Err(format!("{s:?} is not an http(s) URL"));
    }
    Ok(s.to_string())
}

fn parse_property(s: &str) -> Result<String, String> {
    let ok = s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok { Ok(s.to_string()) } else { Err(format!("{s:?} is not a HubSpot property name (lowercase letters, digits, _)")) }
}

/// `kid:secret,kid:secret`, each secret at least 32 bytes, kids unique.
pub fn parse_keys(s: &str) -> Result<Keys, String> {
    let mut keys = Vec::new();
    for (i, part) in s.split(',').map(str::trim).filter(|p| !p.is_empty()).enumerate() {
        let Some((kid, secret)) = part.split_once(':') else {
            return Err(format!("entry {} is not `kid:secret`", i + 1));
        };
        if kid.is_empty() {
            return Err(format!("entry {} has an empty kid", i + 1));
        }
        if secret.len() < 32 {
            return Err(format!("the secret of kid {kid:?} is {} bytes; at least 32 are required", secret.len()));
        }
        if keys.iter().any(|(k, _)| k == kid) {
            return Err(format!("kid {kid:?} appears twice"));
        }
        keys.push((kid.to_string(), Secret::new(secret)));
    }
    if keys.is_empty() {
        return Err("no keys: expected `kid:secret[,kid:secret]`".into());
    }
    Ok(Keys(keys))
}

/// `https://app.example.com[,http://localhost:3000]`: scheme, host and port only. A non-ASCII
/// host is kept in its ASCII (punycode) form, the form browsers send in `Origin`.
pub fn parse_origins(s: &str) -> Result<Origins, String> {
    let mut out = Vec::new();
    for o in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let bad = || format!("{o:?} is not an origin like https://app.example.com");
        let u = url::Url::parse(o).map_err(|_| bad())?;
        let plain = matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
            && u.username().is_empty()
            && u.password().is_none()
            && u.path() == "/"
            && !o.trim_end_matches('/').ends_with(['?', '#'])
            && u.query().is_none()
            && u.fragment().is_none();
        if !plain || o.trim_end_matches('/').matches('/').count() != 2 {
            return Err(bad());
        }
        out.push(u.origin().ascii_serialization());
    }
    Ok(Origins(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_name_what_is_wrong() {
        let k = parse_keys("a:0123456789abcdef0123456789abcdef, b:0123456789abcdef0123456789abcdefXX").unwrap();
        assert_eq!(k.0.len(), 2);
        assert!(!format!("{k:?}").contains("0123"), "Debug never shows a secret");
        assert!(parse_keys("a:short").unwrap_err().contains("at least 32"));
        assert!(parse_keys("nocolon").unwrap_err().contains("kid:secret"));
        assert!(parse_keys("a:0123456789abcdef0123456789abcdef,a:0123456789abcdef0123456789abcdef").unwrap_err().contains("twice"));
        assert!(parse_keys("").is_err());
    }

    #[test]
    fn origins_and_base_urls_are_checked() {
        assert_eq!(parse_origins("https://a.io, http://127.0.0.1:3000/").unwrap().0, vec!["https://a.io", "http://127.0.0.1:3000"]);
        assert!(parse_origins("a.io").is_err());
        assert!(parse_origins("https://a.io/path").is_err());
        assert_eq!(parse_base("http://127.0.0.1:9/").unwrap(), "http://127.0.0.1:9");
        assert!(parse_base("ftp://x").is_err());
    }

    #[test]
    fn a_missing_setting_is_named() {
        let err = Cli::try_parse_from(["hsq-relay", "serve", "--hubspot-access-token", "t"]).unwrap_err().to_string();
        assert!(err.contains("--assertion-secrets") || err.contains("HSQ_ASSERTION_SECRETS"), "{err}");
    }
}
