//! Command-line flags and the switches of hubspot-behavior.md section 8.
//!
//! Every switch is a flag and a field of `GET/POST /__sim/config`. Where HubSpot's documentation
//! leaves a choice, the default is the case that is harder on a client (the one that would create
//! a duplicate contact or hide a failure).

use clap::Parser;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// `hubspot-sim --addr 127.0.0.1:0 --portal-id 1234567 --token T [switches]`
#[derive(Debug, Clone, Parser)]
#[command(name = "hubspot-sim", version, about = "An offline HubSpot for tests and demos")]
pub struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// The HubSpot account ("hub id") the tracker script and the collector belong to.
    #[arg(long, default_value_t = 1234567)]
    pub portal_id: u64,
    /// The private-app access token that API calls must carry as `Authorization: Bearer`.
    #[arg(long, default_value = "pat-na1-sim-token")]
    pub token: String,
    #[command(flatten)]
    pub switches: Switches,
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "on" | "1" | "yes" => Ok(true),
        "false" | "off" | "0" | "no" => Ok(false),
        _ => Err(format!("expected on/off (or true/false), got {s:?}")),
    }
}

/// The behaviour switches. Flags take an optional value: `--old-email-kept` is `on`,
/// `--merge-new-id=off` turns a default-on switch off.
#[derive(Debug, Clone, Parser, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Switches {
    /// Identify, `idProperty=email` and search also match `hs_additional_emails`.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "on", default_value = "off")]
    pub secondary_email_lookup: bool,
    /// After an email change the old email stays on the contact as a secondary email.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "on", default_value = "off")]
    pub old_email_kept: bool,
    /// 429 answers carry `Retry-After` (seconds); off leaves only the `X-HubSpot-RateLimit-*` headers.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "on", default_value = "off")]
    pub retry_after: bool,
    /// API calls allowed per rolling 10 seconds; 0 turns rate limiting off (also the search limit).
    #[arg(long, default_value_t = 100)]
    pub rate_limit: u32,
    /// API calls allowed per day.
    #[arg(long, default_value_t = 250_000)]
    pub daily_limit: u32,
    /// Search requests allowed per second (HubSpot: 5 per account), while rate limiting is on.
    #[arg(long, default_value_t = 5)]
    pub search_rate_limit: u32,
    /// Milliseconds before a created or updated contact shows in search (HubSpot: about 10 s / 60 s).
    #[arg(long, default_value_t = 0)]
    pub search_lag_ms: u64,
    /// A merge creates a new record id and both old ids resolve to it.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "on", default_value = "on")]
    pub merge_new_id: bool,
    /// `professional` or `starter` (visitor identification answers 403 on starter).
    #[arg(long, default_value = "professional", value_parser = ["professional", "starter"])]
    pub chat_tier: String,
    /// The tracker shows a cookie banner and tracks nothing until the visitor accepts.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "on", default_value = "off")]
    pub consent_banner: bool,
    /// The tracker script also loads the chat widget (as a portal with chat enabled does).
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "on", default_value = "on")]
    pub chat_widget: bool,
    /// Where HubSpot delivers the contact webhooks (the app's target URL); none: not delivered.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// The app's client secret that signs webhook deliveries.
    #[arg(long)]
    pub webhook_secret: Option<String>,
    /// Webhook retries wait HubSpot's schedule times this (0.001 turns a minute into 60 ms).
    #[arg(long, default_value_t = 1.0)]
    pub webhook_retry_scale: f64,
    /// A delivery answered slower than this (ms) counts as failed and is retried (HubSpot: 5 s).
    #[arg(long, default_value_t = 5000)]
    pub webhook_timeout_ms: u64,
    /// Every webhook delivery is sent twice.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "on", default_value = "off")]
    pub webhook_duplicates: bool,
    /// Webhook events are shuffled and cut into batches that race each other.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "on", default_value = "off")]
    pub webhook_shuffle: bool,
    /// What the collector does with an identify's `id` (hubspot-behavior.md section 9): `honoured`
    /// (the 2017 staff thread: tied to the contact of the email sent with it, later id-only hits land
    /// there) or `ignored` (dropped, as the current identify docs name only `email`).
    #[arg(long, value_enum, default_value = "ignored")]
    pub identify_id: IdentifyId,
    /// The tracker collects submissions of the page's own `<form>`s ("collected forms",
    /// hubspot-behavior.md section 10) and HubSpot applies them utk first (section 2).
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, default_missing_value = "on", default_value = "on")]
    pub collected_forms: bool,
}

/// The `identify-id` switch. `ignored` is the default: it is the harder case for a page that
/// identifies by id, since id-only hits then land only through the browser's utk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentifyId {
    Honoured,
    Ignored,
}

impl Default for Switches {
    fn default() -> Self {
        Switches::parse_from(["switches"])
    }
}

impl Switches {
    /// Checks values that clap checks on the command line but `/__sim/config` receives as JSON.
    pub fn validate(&self) -> Result<(), String> {
        if self.chat_tier != "professional" && self.chat_tier != "starter" {
            return Err(format!("chatTier must be \"professional\" or \"starter\", got {:?}", self.chat_tier));
        }
        if let Some(u) = &self.webhook_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!("webhookUrl must be an http(s) URL, got {u:?}"));
            }
        }
        if self.webhook_secret.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err("webhookSecret must not be empty".into());
        }
        if !(self.webhook_retry_scale >= 0.0 && self.webhook_retry_scale.is_finite()) {
            return Err(format!("webhookRetryScale must be a number >= 0, got {}", self.webhook_retry_scale));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_harder_cases() {
        let s = Switches::default();
        assert!(!s.secondary_email_lookup && !s.old_email_kept && !s.retry_after);
        assert_eq!((s.rate_limit, s.search_lag_ms), (100, 0));
        assert!(s.merge_new_id);
        assert_eq!(s.chat_tier, "professional");
        assert_eq!((s.search_rate_limit, s.identify_id), (5, IdentifyId::Ignored));
        assert!(s.collected_forms, "collected forms on: an app's own forms may rewrite emails");
    }

    #[test]
    fn flags_take_optional_values() {
        let cli = Cli::parse_from(["x", "--old-email-kept", "--merge-new-id=off", "--rate-limit", "0"]);
        assert!(cli.switches.old_email_kept);
        assert!(!cli.switches.merge_new_id);
        assert_eq!(cli.switches.rate_limit, 0);
        assert!(Cli::try_parse_from(["x", "--merge-new-id=maybe"]).is_err());
        assert_eq!(Cli::parse_from(["x", "--identify-id", "honoured"]).switches.identify_id, IdentifyId::Honoured);
        assert!(Cli::try_parse_from(["x", "--identify-id", "maybe"]).is_err());
        assert!(!Cli::parse_from(["x", "--collected-forms=off"]).switches.collected_forms);
    }
}
