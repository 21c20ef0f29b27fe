//! Run with `cargo run -p hubspot-sim -- --addr 127.0.0.1:0 --portal-id 1234567 --token T`.
//!
//! The first line on stdout is `hubspot-sim listening on http://HOST:PORT`.

use clap::Parser;
use std::io::Write;

#[tokio::main]
async fn main() {
    let cli = hubspot_sim::Cli::parse();
    let running = match hubspot_sim::spawn(cli).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hubspot-sim: cannot listen: {e}");
            std::process::exit(1);
        }
    };
    println!("hubspot-sim listening on {}", running.url);
    let _ = std::io::stdout().flush();
    let stop = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    };
    tokio::select! {
        _ = stop => {},
        _ = running.task => {},
    }
}
