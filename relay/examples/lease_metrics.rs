//! Measures what `/metrics` spends in the store (outbox depth and live leases) with many lease
//! rows: `cargo run --release -p hsq-relay --example lease_metrics -- [ROWS] [LIVE_PERCENT] [before]`.
//! Prints the median and worst of 50 reads, and what a prune removes and costs. `before` drops
//! the index issue 14 added, which is the schema (and the full scan) `/metrics` had before.

use hsq_relay::store::{Retention, Store};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rows: i64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let live_pct: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let before = args.get(3).is_some_and(|s| s == "before");
    let path = std::env::temp_dir().join(format!("hsq-lease-metrics-{}.db", std::process::id()));
    let store = hsq_relay::store::open(&path.display().to_string(), 2).await?;
    let now = 1_800_000_000_000i64;
    {
        let mut c = rusqlite::Connection::open(&path)?;
        let tx = c.transaction()?;
        {
            let mut st = tx.prepare("INSERT INTO leases (id, sub, email, expires_at, released) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for i in 0..rows {
                let live = i % 100 < live_pct;
                // Dead rows: half expired, half released early.
                let (expires, released) = if live { (now + 600_000, 0) } else if i % 2 == 0 { (now - 3_600_000 - i, 0) } else { (now + 600_000, 1) };
                st.execute(rusqlite::params![format!("l_{i:032x}"), format!("u_{}", i % 50_000), format!("u{}@x.io", i % 50_000), expires, released])?;
            }
        }
        if before {
            tx.execute_batch("DROP INDEX IF EXISTS leases_live")?;
        }
        tx.commit()?;
    }
    let mut times = Vec::new();
    let mut live = 0;
    for _ in 0..50 {
        let t = Instant::now();
        let depth = store.outbox_depth().await?;
        live = store.live_leases(now).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(depth >= 0);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let label = if before { "before (no index):" } else { "after (leases_live index):" };
    println!("{label} rows={rows} live={live} /metrics store reads: median {:.2} ms, worst {:.2} ms", times[times.len() / 2], times[times.len() - 1]);
    if before {
        return Ok(());
    }
    prune(&*store, now).await;
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    Ok(())
}

async fn prune(store: &dyn Store, now: i64) {
    let t = Instant::now();
    match store.prune(now, Retention::default()).await {
        Ok(p) => println!("prune: {} leases and {} utk bindings deleted in {:.0} ms", p.leases, p.utk_bindings, t.elapsed().as_secs_f64() * 1000.0),
        Err(e) => println!("prune failed: {e}"),
    }
    let t = Instant::now();
    let live = store.live_leases(now).await.unwrap_or(-1);
    println!("after prune: live={live}, /metrics store reads {:.2} ms", t.elapsed().as_secs_f64() * 1000.0);
}
