//! Throwaway databases for the tests, on either backend: a temporary SQLite file, or a
//! database of its own on a PostgreSQL server that this test process starts once
//! (`initdb` in a temporary directory, a free loopback port) and that stops by itself
//! within a second of the process ending.
//!
//! Without PostgreSQL installed the tests install Debian's `postgresql` package when
//! they run as root, and fail with the reason when it cannot be had: never skipped.
//!
//! Built for the store's own tests, and for the daemon's with the `testing` feature.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{Store, StoreOptions};

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A temporary SQLite file.
    Sqlite,
    /// A database of its own on the test process's PostgreSQL server.
    Postgres,
}

/// A database for one test, removed on drop.
#[derive(Debug)]
pub enum TempDb {
    /// The file.
    Sqlite(PathBuf),
    /// The database's name and URL.
    Postgres {
        /// Its name on the server.
        name: String,
        /// Where to connect.
        url: String,
    },
}

/// A name no other test of any process uses: pid, a counter and the clock.
fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

impl TempDb {
    /// A new, empty database on `kind`.
    pub fn new(kind: Kind) -> TempDb {
        let id = unique();
        match kind {
            Kind::Sqlite => {
                TempDb::Sqlite(std::env::temp_dir().join(format!("imd-store-test-{id}.sqlite3")))
            }
            Kind::Postgres => TempDb::postgres_with(""),
        }
    }

    /// A PostgreSQL database created with `options` (`CREATE DATABASE … options`).
    pub fn postgres_with(options: &str) -> TempDb {
        let server = server();
        let name = format!("imd_test_{}", unique());
        let sql = format!("CREATE DATABASE {name} {options}");
        server.admin().batch_execute(&sql).expect(&sql);
        TempDb::Postgres { url: server.url(&name), name }
    }

    /// The PostgreSQL URL (tests of PostgreSQL's own behaviour only).
    pub fn url(&self) -> &str {
        match self {
            TempDb::Postgres { url, .. } => url,
            TempDb::Sqlite(_) => panic!("a SQLite database has no URL"),
        }
    }

    /// Ends every session connected to this PostgreSQL database (a server restart, as
    /// its clients see it); returns how many.
    pub fn terminate_sessions(&self) -> i64 {
        let TempDb::Postgres { name, .. } = self else {
            panic!("a SQLite database has no sessions");
        };
        let sql = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                   WHERE datname = $1 AND pid <> pg_backend_pid()";
        server().admin().query_one(sql, &[name]).expect(sql).get(0)
    }

    /// The SQLite file (tests of SQLite's own features only).
    pub fn path(&self) -> &Path {
        match self {
            TempDb::Sqlite(path) => path,
            TempDb::Postgres { .. } => panic!("a PostgreSQL database has no path"),
        }
    }

    /// A connection with the default options.
    pub fn open(&self) -> Store {
        self.open_with(&StoreOptions::default()).expect("open")
    }

    /// A connection with `opts`.
    pub fn open_with(&self, opts: &StoreOptions) -> crate::Result<Store> {
        match self {
            TempDb::Sqlite(path) => Store::open(path, opts),
            TempDb::Postgres { url, .. } => Store::connect(url, opts),
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        match self {
            TempDb::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            TempDb::Postgres { name, .. } => {
                // The server goes with the test process anyway; this keeps it small.
                let _ =
                    server().admin().batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"));
            }
        }
    }
}

#[cfg(test)]
/// `on_both_backends!(name, …)`: for each `fn name(kind: Kind)`, the tests
/// `sqlite::name` and `postgres::name`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::testdb::Kind::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name($crate::testdb::Kind::Postgres) } )*
        }
    };
}
#[cfg(test)]
pub(crate) use on_both_backends;

/// The test process's PostgreSQL server.
struct Server {
    port: u16,
}

impl Server {
    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url("postgres"), postgres::NoTls).expect("admin connection")
    }
}

/// The server, started by the first test that asks; when it could not be had, every
/// test that asks fails with the reason (one attempt per process, not one per test).
fn server() -> &'static Server {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(e) => panic!("PostgreSQL for the tests: {e}"),
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

fn install() -> Result<PathBuf, String> {
    if let Some(bin) = bin_dir() {
        return Ok(bin);
    }
    if !is_root() {
        return Err("no /usr/lib/postgresql/*/bin/initdb, and not root to install it: \
                    apt-get install -y postgresql"
            .into());
    }
    eprintln!("PostgreSQL is not installed: apt-get install -y postgresql");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "postgresql"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    bin_dir().ok_or_else(|| "apt-get installed postgresql but no initdb was found".into())
}

/// `cmd` as the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn as_owner(root: bool, program: &Path) -> Command {
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Runs the shared server: it stops, and its directory goes, once the test process
/// is gone (`$1` bin, `$2` directory, `$3` port, `$4` the test process).
const SHARED: &str = r#"
        "$1/postgres" -D "$2/data" -p "$3" -k "$2" -c listen_addresses=127.0.0.1 \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_connections=300 -c deadlock_timeout=50ms >"$2/log" 2>&1 &
        pg=$!
        while kill -0 "$pg" 2>/dev/null && [ -d "/proc/$4" ]; do sleep 0.5; done
        kill -INT "$pg" 2>/dev/null
        wait "$pg"
        rm -rf "$2"
    "#;

/// Runs a server that can be stopped and started: down while the file `down` is in its
/// directory; gone with its directory once `quit` is there or the test process is gone.
const STOPPABLE: &str = r#"
        pg=
        while [ -d "/proc/$4" ] && [ ! -e "$2/quit" ]; do
            if [ -e "$2/down" ]; then
                if [ -n "$pg" ]; then kill -INT "$pg"; wait "$pg"; pg=; fi
            elif [ -z "$pg" ]; then
                "$1/postgres" -D "$2/data" -p "$3" -k "$2" -c listen_addresses=127.0.0.1 \
                    -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                    -c max_connections=100 >>"$2/log" 2>&1 &
                pg=$!
            fi
            sleep 0.1
        done
        if [ -n "$pg" ]; then kill -INT "$pg"; wait "$pg"; fi
        rm -rf "$2"
    "#;

/// A PostgreSQL server of a test's own, which it may stop and start (the shared one
/// serves every other test of the process). It goes when dropped.
pub struct PgServer {
    server: Server,
    dir: PathBuf,
}

impl PgServer {
    /// A new server, answering.
    pub fn start() -> PgServer {
        let (server, dir) = launch(STOPPABLE).unwrap_or_else(|e| panic!("PostgreSQL: {e}"));
        PgServer { server, dir }
    }

    /// A new database on it; its URL.
    pub fn create_db(&self) -> String {
        let name = format!("imd_test_{}", unique());
        let sql = format!("CREATE DATABASE {name}");
        self.server.admin().batch_execute(&sql).expect(&sql);
        self.server.url(&name)
    }

    /// Stops the server (a fast shutdown: its clients' connections are cut) and
    /// returns once it refuses connections.
    pub fn stop(&self) {
        std::fs::write(self.dir.join("down"), "").expect("down file");
        self.wait_for(false);
    }

    /// Starts the stopped server again and returns once it answers.
    pub fn resume(&self) {
        std::fs::remove_file(self.dir.join("down")).expect("down file");
        self.wait_for(true);
    }

    fn wait_for(&self, up: bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = self.server.url("postgres");
        while postgres::Client::connect(&url, postgres::NoTls).is_ok() != up {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL never went {}",
                ["down", "up"][usize::from(up)]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("quit"), "");
    }
}

fn start() -> Result<Server, String> {
    launch(SHARED).map(|(server, _)| server)
}

/// A new server in a temporary directory, run by the shell `script`; the server and
/// its directory.
fn launch(script: &str) -> Result<(Server, PathBuf), String> {
    let bin = install()?;
    let root = is_root();
    // The postgres user must reach the directory: a root's TMPDIR may be private.
    let base = if root { PathBuf::from("/tmp") } else { std::env::temp_dir() };
    let dir = base.join(format!("imd-store-pg-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let data = dir.join("data");
    let made = if root { run(Command::new("chown").arg("postgres").arg(&dir)) } else { Ok(()) }
        .and_then(|()| {
            run(as_owner(root, &bin.join("initdb")).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]))
        });
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("a free port: {e}"))?
        .port();
    // The server runs under a shell that stops it and removes the directory once this
    // test process is gone: nothing outlives the tests by more than a second.
    let mut cmd = as_owner(root, Path::new("/bin/sh"));
    cmd.args(["-c", script, "sh"])
        .arg(&bin)
        .arg(&dir)
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
    let server = Server { port };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match postgres::Client::connect(&server.url("postgres"), postgres::NoTls) {
            Ok(_) => return Ok((server, dir)),
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                return Err(format!("did not answer on port {port}: {e}\n{log}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
