//! Start-up stops at once, naming what is wrong and never printing a secret (issue 25, part 6).

use crate::helpers::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `hsq-relay serve` with these settings until it exits (killed after `secs`): its exit code
/// (None when it was still running) and stderr.
fn serve_exits(env: &[(&str, &str)], secs: u64) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hsq-relay"))
        .arg("serve")
        .env("HUBSPOT_ACCESS_TOKEN", "T")
        .env("HUBSPOT_API_BASE", "http://127.0.0.1:9")
        .env("HSQ_ADDR", "127.0.0.1:0")
        .env("HSQ_ASSERTION_SECRETS", format!("k1:{SECRET}"))
        .env("HSQ_ADMIN_TOKEN", ADMIN)
        .env("HSQ_DB", temp_sqlite())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the relay binary starts");
    let end = Instant::now() + Duration::from_secs(secs);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read;
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (code, err)
}

#[test]
fn an_unparsable_hsq_log_stops_start_up_with_exit_2_naming_it() {
    for bad in ["hsq_relay=lots", "hsq_relay=info,[", "=debug=x"] {
        let (code, err) = serve_exits(&[("HSQ_LOG", bad)], 20);
        println!("HSQ_LOG={bad:?}: exit {code:?}: {}", err.trim());
        assert_eq!(code, Some(2), "HSQ_LOG={bad:?}: {err}");
        assert!(err.contains("invalid HSQ_LOG") && err.contains(bad), "{err}");
    }
}

#[test]
fn an_unopenable_sqlite_path_stops_start_up_at_once_with_exit_2() {
    let start = Instant::now();
    let (code, err) = serve_exits(&[("HSQ_DB", "/nonexistent-dir/hsq/relay.db")], 25);
    println!("exit {code:?} after {:?}: {}", start.elapsed(), err.trim());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent-dir/hsq/relay.db") && err.contains("unable to open"), "{err}");
}

#[test]
fn a_postgres_password_is_never_printed_at_start_up_in_any_form() {
    // Nothing listens on port 1: start-up fails and says which database it could not open.
    for db in [
        "postgres://hsq:s3cr3t-pw@127.0.0.1:1/hsq",
        "postgres://hsq@127.0.0.1:1/hsq?password=s3cr3t-pw",
        "host=127.0.0.1 port=1 user=hsq password=s3cr3t-pw dbname=hsq",
    ] {
        let (code, err) = serve_exits(&[("HSQ_DB", db)], 30);
        println!("{db:?}: exit {code:?}: {}", err.trim());
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("postgres://hsq@127.0.0.1:1/hsq"), "names the database: {err}");
        assert!(!err.contains("s3cr3t"), "the password is printed: {err}");
    }
}
