// A temporary PostgreSQL cluster on a free port on 127.0.0.1, as the relay's API tests start
// theirs (relay/tests/api/pg.rs): Debian's server binaries (HSQ_TEST_PG_BIN, else the newest
// /usr/lib/postgresql/*/bin), run as the `postgres` user when we are root (initdb refuses root),
// durability traded for speed. `stop()` stops it and deletes its directory.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import path from "node:path";

function binDir() {
  if (process.env.HSQ_TEST_PG_BIN) return process.env.HSQ_TEST_PG_BIN;
  const base = "/usr/lib/postgresql";
  const versions = (existsSync(base) ? readdirSync(base) : []).filter((v) => existsSync(path.join(base, v, "bin", "initdb"))).sort((a, b) => Number(a) - Number(b));
  if (!versions.length) throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: run scripts/setup.sh or set HSQ_TEST_PG_BIN");
  return path.join(base, versions.at(-1), "bin");
}

const freePort = () =>
  new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

export async function startPostgres() {
  const bin = binDir();
  const root = userInfo().uid === 0;
  const run = (name, args) =>
    root ? execFileSync("runuser", ["-u", "postgres", "--", path.join(bin, name), ...args], { stdio: "pipe" }) : execFileSync(path.join(bin, name), args, { stdio: "pipe" });
  const dir = mkdtempSync(path.join(tmpdir(), "hsq-pg-"));
  if (root) execFileSync("chown", ["-R", "postgres:postgres", dir]);
  const data = path.join(dir, "data");
  const log = path.join(dir, "log");
  const port = await freePort();
  run("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
  try {
    run("pg_ctl", ["-D", data, "-o", `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off`, "-l", log, "-w", "start"]);
  } catch (e) {
    throw new Error(`PostgreSQL did not start: ${e.stderr || e}\n${existsSync(log) ? readFileSync(log, "utf8") : ""}`);
  }
  run("createdb", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "hsq"]);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/hsq`,
    stop() {
      try {
        run("pg_ctl", ["-D", data, "-m", "immediate", "stop"]);
      } catch {}
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
