//! Run with `hsq-relay serve` (configuration from the environment: see `hsq-relay serve --help`).
//!
//! The first line on stdout of `serve` is `hsq-relay listening on http://HOST:PORT`.

use clap::Parser;
use hsq_relay::config::{Cli, Command};
use std::io::Write;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("HSQ_LOG").unwrap_or_else(|_| EnvFilter::new("hsq_relay=info,warn")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Init(args) => init(args).await,
        Command::Sync(args) => hsq_relay::sync::sync(&args).await.map(|_| ()),
    };
    if let Err(e) = result {
        eprintln!("hsq-relay: {e:#}");
        std::process::exit(1);
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
