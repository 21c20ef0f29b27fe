//! `hsq-relay init` (creates the unique id property) and `hsq-relay sync FILE.csv` (bulk upsert of
//! existing users by that property, 100 per call, inside HubSpot's rate limit, resumable).

use crate::assertion::valid_email;
use crate::config::{HubSpotArgs, SyncArgs};
use crate::hubspot::{HubSpot, HubSpotError, Retry, BATCH_MAX};
use crate::metrics::Metrics;
use crate::relay::now_ms;
use crate::store::Store;
use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `hsq-relay init`: creates the unique contact property, or checks the existing one is unique.
pub async fn init(args: &HubSpotArgs) -> anyhow::Result<()> {
    let hs = HubSpot::new(args, Arc::new(Metrics::default()), Duration::from_secs(10))?;
    let body = json!({
        "name": args.id_property,
        "label": "App user id (hsq-identity)",
        "description": "The app's stable user id; hsq-identity finds contacts by it, never by email.",
        "type": "string",
        "fieldType": "text",
        "groupName": "contactinformation",
        "hasUniqueValue": true,
    });
    match hs.call(Method::POST, "/crm/v3/properties/contacts", Some(&body), Retry::background()).await {
        Ok(_) => println!("created the unique contact property {:?}", args.id_property),
        Err(HubSpotError::Status { status: 409, .. }) => {
            let (_, p) = hs
                .call(Method::GET, &format!("/crm/v3/properties/contacts/{}", args.id_property), None, Retry::background())
                .await?;
            if p["hasUniqueValue"] != true {
                bail!("the contact property {:?} exists but is not unique (hasUniqueValue is false); choose another HSQ_ID_PROPERTY", args.id_property);
            }
            println!("the unique contact property {:?} already exists", args.id_property);
        }
        Err(e) => return Err(e).context("creating the unique contact property"),
    }
    Ok(())
}

/// What a sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub rows: i64,
    pub created: i64,
    pub updated: i64,
    pub conflicts: i64,
    pub invalid: i64,
    pub calls: u64,
    pub rate_limited: u64,
    pub resumed_from_line: i64,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
struct Row {
    line: i64,
    sub: String,
    email: String,
    firstname: Option<String>,
    lastname: Option<String>,
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
}

/// Reads and checks the CSV. Bad rows come back as `(line, reason)`; they are reported, not fatal.
fn read_rows(text: &[u8]) -> anyhow::Result<(Vec<Row>, Vec<(i64, String)>)> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(text);
    let headers = rdr.headers().context("the CSV has no header line")?.clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(sub_i), Some(email_i)) = (col("sub"), col("email")) else {
        bail!("the CSV header must name the columns sub and email (and optionally firstname, lastname); it has: {}", headers.iter().collect::<Vec<_>>().join(","));
    };
    let (first_i, last_i) = (col("firstname"), col("lastname"));
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as i64).unwrap_or(0);
                bad.push((line, format!("unreadable row: {e}")));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line() as i64).unwrap_or(0);
        let get = |i: Option<usize>| i.and_then(|i| rec.get(i)).map(str::to_string).filter(|s| !s.is_empty());
        let sub = get(Some(sub_i)).unwrap_or_default();
        let email = get(Some(email_i)).unwrap_or_default().to_ascii_lowercase();
        let n = sub.chars().count();
        if n == 0 || n > 128 {
            bad.push((line, format!("sub must be 1 to 128 characters, got {n}")));
        } else if !valid_email(&email) {
            bad.push((line, format!("email {email:?} is not a valid email address")));
        } else if let Some(first) = seen.insert(sub.clone(), line) {
            bad.push((line, format!("sub {sub:?} appears again (first on line {first})")));
        } else {
            rows.push(Row { line, sub, email, firstname: get(first_i), lastname: get(last_i) });
        }
    }
    Ok((rows, bad))
}

/// `hsq-relay sync FILE.csv`
pub async fn sync(args: &SyncArgs) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let text = std::fs::read(&args.file).with_context(|| format!("cannot read {:?}", args.file))?;
    let key = format!("{}:{:016x}", args.file.display(), fnv(&text));
    let (rows, bad) = read_rows(&text)?;
    let store = crate::store::open(&args.db, 2)
        .await
        .with_context(|| format!("cannot open HSQ_DB ({}) and apply its migrations", crate::store::describe(&args.db)))?;
    let mut progress = store.sync_progress(&key).await?;
    let resumed_from = progress.line;
    let metrics = Arc::new(Metrics::default());
    let hs = HubSpot::new(&args.hubspot, metrics.clone(), Duration::from_secs(30))?;
    if progress.line == 0 {
        for (line, why) in &bad {
            eprintln!("line {line}: {why}");
        }
        progress.invalid = bad.len() as i64;
    }
    let todo: Vec<&Row> = rows.iter().filter(|r| r.line > progress.line).collect();
    let bar = if args.no_progress {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(rows.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} users  {per_sec}  eta {eta}  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_position((rows.len() - todo.len()) as u64);
        b
    };
    if resumed_from > 0 {
        eprintln!("resuming after line {resumed_from}: {} users left", todo.len());
    }
    for chunk in todo.chunks(BATCH_MAX) {
        let outcome = upsert(&hs, &*store, chunk).await?;
        progress.created += outcome.0;
        progress.updated += outcome.1;
        progress.conflicts += outcome.2;
        progress.invalid += outcome.3;
        progress.line = chunk.last().map(|r| r.line).unwrap_or(progress.line);
        store.save_sync_progress(&key, progress).await?;
        bar.inc(chunk.len() as u64);
        bar.set_message(format!("{} created, {} updated, {} conflicts", progress.created, progress.updated, progress.conflicts));
        if args.no_progress && (progress.line / 1000) != ((progress.line - chunk.len() as i64) / 1000) {
            eprintln!("synced through line {}", progress.line);
        }
    }
    bar.finish_and_clear();
    let summary = Summary {
        rows: (rows.len() + bad.len()) as i64,
        created: progress.created,
        updated: progress.updated,
        conflicts: progress.conflicts,
        invalid: progress.invalid,
        calls: metrics.hubspot_total(),
        rate_limited: metrics.hubspot_count("429"),
        resumed_from_line: resumed_from,
        seconds: started.elapsed().as_secs_f64(),
    };
    println!(
        "sync: {} created, {} updated, {} conflicts, {} invalid; {} HubSpot calls ({} answered 429); {:.1} s",
        summary.created, summary.updated, summary.conflicts, summary.invalid, summary.calls, summary.rate_limited, summary.seconds
    );
    Ok(summary)
}

/// One batch upsert; answers (created, updated, conflicts, invalid). A call refused as a whole is
/// retried one row at a time so each error lands on its line.
async fn upsert(hs: &HubSpot, store: &dyn Store, rows: &[&Row]) -> anyhow::Result<(i64, i64, i64, i64)> {
    let input = |r: &Row| {
        let mut p = serde_json::Map::new();
        p.insert("email".into(), json!(r.email));
        if let Some(f) = &r.firstname {
            p.insert("firstname".into(), json!(f));
        }
        if let Some(l) = &r.lastname {
            p.insert("lastname".into(), json!(l));
        }
        json!({ "id": r.sub, "idProperty": hs.id_property(), "properties": p })
    };
    let body = json!({ "inputs": rows.iter().map(|r| input(r)).collect::<Vec<_>>() });
    match hs.call(Method::POST, "/crm/v3/objects/contacts/batch/upsert", Some(&body), Retry::background()).await {
        Ok((_, v)) => {
            let (mut created, mut updated) = (0, 0);
            let now = now_ms();
            for r in v["results"].as_array().into_iter().flatten() {
                if r["new"] == true { created += 1 } else { updated += 1 }
                // Results need not come in input order: match them by email to warm the relay's cache.
                let email = r["properties"]["email"].as_str();
                if let (Some(row), Some(id)) = (rows.iter().find(|x| Some(x.email.as_str()) == email), r["id"].as_str()) {
                    let _ = store.save_contact(&row.sub, id, email, now).await;
                }
            }
            let (mut conflicts, mut invalid) = (0, 0);
            for e in v["errors"].as_array().into_iter().flatten() {
                let ids: Vec<&str> = e["context"]["ids"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                let lines: Vec<String> = rows.iter().filter(|r| ids.contains(&r.sub.as_str())).map(|r| r.line.to_string()).collect();
                let n = ids.len().max(1) as i64;
                if e["category"] == "CONFLICT" { conflicts += n } else { invalid += n }
                eprintln!("line {}: {}", lines.join(","), e["message"].as_str().unwrap_or("refused by HubSpot"));
            }
            Ok((created, updated, conflicts, invalid))
        }
        Err(HubSpotError::Status { status, message, category }) if (400..500).contains(&status) && status != 429 => {
            if rows.len() == 1 {
                eprintln!("line {}: {message}", rows[0].line);
                return Ok(if status == 409 || category.as_deref() == Some("CONFLICT") { (0, 0, 1, 0) } else { (0, 0, 0, 1) });
            }
            let mut total = (0, 0, 0, 0);
            for r in rows {
                let o = Box::pin(upsert(hs, store, &[*r])).await?;
                total = (total.0 + o.0, total.1 + o.1, total.2 + o.2, total.3 + o.3);
            }
            Ok(total)
        }
        Err(e) => Err(e).context("HubSpot refused the batch upsert after retries; run sync again to resume"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_are_reported_with_their_line_numbers() {
        let csv = "sub,email,firstname\nu1,a@x.io,A\n,b@x.io,B\nu3,not-an-email,C\nu1,d@x.io,D\nu5,E@X.io,\n";
        let (rows, bad) = read_rows(csv.as_bytes()).unwrap();
        assert_eq!(rows.iter().map(|r| (r.line, r.sub.as_str(), r.email.as_str())).collect::<Vec<_>>(), vec![(2, "u1", "a@x.io"), (6, "u5", "e@x.io")]);
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(bad[2].1.contains("first on line 2"));
        assert!(read_rows(b"id,mail\n1,a@x.io\n").unwrap_err().to_string().contains("sub and email"));
    }
}
