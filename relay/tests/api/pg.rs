//! A temporary PostgreSQL cluster, started once per test binary on a free port on 127.0.0.1, and
//! stopped (its directory deleted) when the test process ends: a watchdog process started with
//! it waits for this process to exit. `initdb` refuses to run as root, so as root the cluster
//! runs as the `postgres` user (`runuser`). Server binaries: `HSQ_TEST_PG_BIN`, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package; `scripts/setup.sh` installs it).
//!
//! The cluster trades durability for speed (`fsync=off`): it is thrown away after the run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

struct Cluster {
    port: u16,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("HSQ_TEST_PG_BIN") {
        return PathBuf::from(d);
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p).expect(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: run scripts/setup.sh (installs Debian's postgresql) or set HSQ_TEST_PG_BIN",
    )
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Runs a server binary, as `postgres` when we are root.
fn pg_cmd(bin: &Path, args: &[&str]) -> Command {
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    c.args(args);
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start() -> Cluster {
    let bin = bin_dir();
    let dir = std::env::temp_dir().join(format!("hsq-pg-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    if is_root() {
        let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().unwrap().success();
        assert!(ok, "cannot hand {} to the postgres user", dir.display());
    }
    let data = dir.join("data");
    let d = data.to_str().unwrap();
    let out = pg_cmd(&bin.join("initdb"), &["-D", d, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    let opts = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        dir.display()
    );
    let log = dir.join("log");
    let out = pg_cmd(&bin.join("pg_ctl"), &["-D", d, "-o", &opts, "-l", log.to_str().unwrap(), "-w", "start"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PostgreSQL did not start: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Stop it and delete it when this process ends, however it ends.
    let pg_ctl = bin.join("pg_ctl");
    let stop = if is_root() {
        format!("runuser -u postgres -- {} -D {d} -m immediate stop", pg_ctl.display())
    } else {
        format!("{} -D {d} -m immediate stop", pg_ctl.display())
    };
    let script = format!("while kill -0 {} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {}", std::process::id(), dir.display());
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the cluster's watchdog starts");
    Cluster { port }
}

/// Creates a fresh database in the cluster (started on first use) and answers its URL.
pub fn fresh_database() -> String {
    let c = CLUSTER.get_or_init(start);
    let name = format!("hsq_{:016x}", rand::random::<u64>());
    // A blocking client on a thread of its own: tests call this from inside the tokio runtime.
    let port = c.port;
    let n = name.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let (client, conn) =
                tokio_postgres::connect(&format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"), tokio_postgres::NoTls)
                    .await
                    .expect("the test cluster accepts connections");
            tokio::spawn(conn);
            client.batch_execute(&format!("CREATE DATABASE {n}")).await.unwrap();
        })
    })
    .join()
    .unwrap();
    format!("postgres://postgres@127.0.0.1:{}/{name}", c.port)
}
