//! Run with `hsq-relay serve` (configuration from the environment: see `hsq-relay serve --help`).
//!
//! The first line on stdout of `serve` is `hsq-relay listening on http://HOST:PORT`.

use clap::Parser;
use hsq_relay::config::{Cli, Command};
use std::io::Write;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_env_filter(log_filter()).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Init(args) => init(args).await,
        Command::Sync(args) => hsq_relay::sync::sync(&args).await.map(|_| ()),
    };
    if let Err(e) = result {
        eprintln!("hsq-relay: {e:#}");
        // A database HSQ_DB names but that cannot be opened is a malformed setting, like clap's.
        let setting = e.chain().any(|c| c.downcast_ref::<hsq_relay::store::StoreError>().is_some_and(|s| s.is_bad_setting()));
        std::process::exit(if setting { 2 } else { 1 });
    }
}

/// `HSQ_LOG`, or the default when it is unset or empty; a filter that does not parse stops
/// start-up (exit 2) naming it, rather than silently logging something else.
fn log_filter() -> EnvFilter {
    const DEFAULT: &str = "hsq_relay=info,warn";
    let bad = |why: String| -> ! {
        eprintln!("hsq-relay: invalid HSQ_LOG: {why} (a tracing filter such as `{DEFAULT}` or `hsq_relay=debug`)");
        std::process::exit(2);
    };
    match std::env::var("HSQ_LOG") {
        Ok(v) if v.trim().is_empty() => EnvFilter::new(DEFAULT),
        Ok(v) => EnvFilter::try_new(&v).unwrap_or_else(|e| bad(format!("{v:?}: {e}"))),
        Err(std::env::VarError::NotPresent) => EnvFilter::new(DEFAULT),
        Err(std::env::VarError::NotUnicode(_)) => bad("it is not UTF-8".into()),
    }
}

async fn serve(args: hsq_relay::config::ServeArgs) -> anyhow::Result<()> {
    let app = hsq_relay::Application::build(args).await?;
    println!("hsq-relay listening on http://{}", app.addr);
    let _ = std::io::stdout().flush();
    app.run_until(shutdown()).await?;
    Ok(())
}

async fn init(args: hsq_relay::config::InitArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let store = hsq_relay::store::open(&args.db, 2).await.context("cannot open HSQ_DB and apply its migrations")?;
    println!("the {} database is migrated", store.kind());
    hsq_relay::sync::init(&args.hubspot).await
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} },
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
