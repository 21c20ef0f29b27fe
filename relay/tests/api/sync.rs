//! `hsq-relay init` and `hsq-relay sync FILE.csv` against the simulator.

use crate::helpers::*;
use clap::Parser;
use hsq_relay::config::{Cli, Command, HubSpotArgs, SyncArgs};
use serde_json::{json, Value};
use std::io::Write;

fn sync_args(sim: &str, file: &std::path::Path, db: &str, rate: &str) -> SyncArgs {
    let argv = ["hsq-relay", "sync", "--hubspot-access-token", "T", "--hubspot-api-base", sim, "--hubspot-rate-limit", rate, "--db", db, "--no-progress", &file.display().to_string()];
    match Cli::parse_from(argv).command {
        Command::Sync(a) => a,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn init_creates_the_unique_property_once_and_refuses_a_non_unique_one() {
    let sim = hubspot_sim::spawn(<hubspot_sim::Cli as Parser>::parse_from(["s", "--token", "T", "--rate-limit", "0"])).await.unwrap();
    let args = |prop: &str| match Cli::parse_from(["hsq-relay", "init", "--hubspot-access-token", "T", "--hubspot-api-base", &sim.url, "--id-property", prop]).command {
        Command::Init(a) => a.hubspot,
        _ => unreachable!(),
    };
    let a: HubSpotArgs = args("hsq_user_id");
    hsq_relay::sync::init(&a).await.unwrap();
    hsq_relay::sync::init(&a).await.expect("a second init finds it");
    let p: Value = reqwest::Client::new().get(format!("{}/crm/v3/properties/contacts/hsq_user_id", sim.url)).bearer_auth("T").send().await.unwrap().json().await.unwrap();
    assert_eq!(p["hasUniqueValue"], true);
    let e = hsq_relay::sync::init(&args("firstname")).await.unwrap_err().to_string();
    assert!(e.contains("not unique"), "{e}");
}

#[tokio::test]
async fn sync_upserts_by_the_unique_property_reports_bad_rows_and_conflicts_and_resumes() {
    let sim = start_sim(&["--rate-limit", "2"]).await;
    // A contact that already holds one row's email, linked to no one: that row is a conflict.
    reqwest::Client::new()
        .post(format!("{}/crm/v3/objects/contacts", sim.url))
        .bearer_auth("T")
        .json(&json!({"properties": {"email": "taken@x.io", "hsq_user_id": "someone-else"}}))
        .send()
        .await
        .unwrap();
    let file = std::path::PathBuf::from(temp_sqlite()).with_extension("csv");
    let mut f = std::fs::File::create(&file).unwrap();
    writeln!(f, "sub,email,firstname,lastname").unwrap();
    for i in 0..250 {
        match i {
            10 => writeln!(f, ",nobody@x.io,,").unwrap(),
            20 => writeln!(f, "u{i},not-an-email,,").unwrap(),
            30 => writeln!(f, "u5,dup@x.io,,").unwrap(),
            40 => writeln!(f, "u{i},taken@x.io,,").unwrap(),
            _ => writeln!(f, "u{i},u{i}@x.io,First{i},Last").unwrap(),
        }
    }
    drop(f);
    let db = temp_db();

    // Interrupt the first run once its first batch is saved (the limit of 2 calls per 10 s makes
    // the run slow enough to stop in the middle).
    let args = sync_args(&sim.url, &file, &db, "2");
    let run = tokio::spawn({
        let args = args.clone();
        async move { hsq_relay::sync::sync(&args).await }
    });
    let store = hsq_relay::store::open(&db, 2).await.unwrap();
    let key = {
        let text = std::fs::read(&file).unwrap();
        let h = text.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3));
        format!("{}:{h:016x}", file.display())
    };
    eventually("the first batch to be saved", 30, || {
        let (store, key) = (store.clone(), key.clone());
        async move { store.sync_progress(&key).await.unwrap().line > 0 }
    })
    .await;
    run.abort();
    let _ = run.await;
    let first = store.sync_progress(&key).await.unwrap();
    assert!(first.line > 0 && first.line < 251, "interrupted in the middle: {first:?}");

    let summary = hsq_relay::sync::sync(&sync_args(&sim.url, &file, &db, "100")).await.unwrap();
    assert_eq!(summary.resumed_from_line, first.line);
    assert_eq!(summary.invalid, 3, "empty sub, bad email, repeated sub");
    assert_eq!(summary.conflicts, 1);
    // A batch that HubSpot applied just before the interruption is upserted again: "updated".
    assert_eq!(summary.created + summary.updated, 246, "{summary:?}");
    let contacts: Value = reqwest::get(format!("{}/__sim/contacts", sim.url)).await.unwrap().json().await.unwrap();
    assert_eq!(contacts["total"], 247);
    let u7 = contacts["contacts"].as_array().unwrap().iter().find(|c| c["properties"]["hsq_user_id"] == "u7").unwrap();
    assert_eq!((u7["email"].as_str(), u7["properties"]["firstname"].as_str()), (Some("u7@x.io"), Some("First7")));
    // The relay's cache was warmed: u7 is known without a read.
    assert_eq!(store.user("u7").await.unwrap().unwrap().contact_id.as_deref(), u7["id"].as_str());

    // A second run of the same file has nothing left to do.
    let again = hsq_relay::sync::sync(&sync_args(&sim.url, &file, &db, "100")).await.unwrap();
    assert_eq!(again.calls, 0);
    let _ = std::fs::remove_file(&file);
}
