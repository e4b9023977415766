//! One store connection per worker thread, as the design card says: each worker opens
//! its own on first use and keeps it while it works; to the SQLite file at
//! `[store] path`, or to PostgreSQL at `[store] url`. Two failures outlive a single
//! operation and are handled here:
//!
//! - a connection that failed with a read-only, I/O or corruption error is closed and
//!   the thread opens a new one on its next operation (SQLite keeps a connection that
//!   once found its WAL unwritable read-only for its life; a PostgreSQL connection
//!   that was lost is of no further use);
//! - the file at the configured path deleted or replaced under the daemon: writes into
//!   the old file would be acknowledged and lost, and threads opening later would use
//!   another file. [`Db::check_files`] (housekeeping) and every open compare the path's
//!   device and inode with the file opened at start; on a mismatch every operation
//!   fails (500), `/im/health` answers 503, and the open file is saved beside the path.
//!   On PostgreSQL there is no file to watch, and SIGUSR1's backup is `pg_dump`'s job.

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use store::{Store, StoreError, StoreOptions};

use crate::daemon::config::StoreConfig;

thread_local! {
    /// This thread's connection, with the path it was opened on (a test process can
    /// run several daemons, each with its own database and its own worker threads).
    static CONN: RefCell<Option<(PathBuf, Store)>> = const { RefCell::new(None) };
}

/// Which file a path names: its device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// `None` when nothing is at `path`.
    fn of(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().map(|m| FileId { dev: m.dev(), ino: m.ino() })
    }
}

/// Opens per-thread connections to one database.
pub struct Db {
    config: StoreConfig,
    /// Open for the daemon's life: it holds the file's process lock (`unix-excl`) and
    /// keeps the WAL file in place, and it can still read the file opened at start
    /// after that file was deleted.
    anchor: Mutex<Store>,
    /// The database file opened at start (`None` on PostgreSQL), and its WAL.
    file: Option<FileId>,
    wal: Option<FileId>,
    /// The path no longer names the files opened at start.
    replaced: AtomicBool,
    /// Connections opened, the anchor included.
    opened: AtomicU64,
}

impl Db {
    /// Creates the database directory, opens the database (migrating it) and checks
    /// it, so a bad path stops the start instead of the first request.
    pub fn new(config: StoreConfig) -> Result<Db, crate::Error> {
        if let Some(url) = &config.url {
            let anchor = open(&config).map_err(|e| store_error(&config, e))?;
            log::info!("store: PostgreSQL at {url}");
            return Ok(Db {
                anchor: Mutex::new(anchor),
                file: None,
                wal: None,
                replaced: AtomicBool::new(false),
                opened: AtomicU64::new(1),
                config,
            });
        }
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                crate::Error::Config(format!("[store] path {}: {e}", config.path.display()))
            })?;
        }
        let fail = |e| crate::Error::Store(config.path.clone(), e);
        let anchor = open(&config).map_err(fail)?;
        let file = FileId::of(&config.path).ok_or_else(|| {
            crate::Error::Config(format!(
                "[store] path {}: vanished at open",
                config.path.display()
            ))
        })?;
        let wal = FileId::of(&suffixed(&config.path, "-wal"));
        Ok(Db {
            config,
            anchor: Mutex::new(anchor),
            file: Some(file),
            wal,
            replaced: AtomicBool::new(false),
            opened: AtomicU64::new(1),
        })
    }

    fn open(&self) -> Result<Store, StoreError> {
        // Opening a path whose file is gone would create an empty database.
        self.check_files()?;
        let store = open(&self.config)?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(store)
    }

    /// Runs `f` on a connection of its own, closed after: for work at start, on a
    /// thread that keeps no connection.
    pub fn once<R>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError>,
    ) -> Result<R, crate::Error> {
        self.open().and_then(|mut store| f(&mut store)).map_err(|e| store_error(&self.config, e))
    }

    /// Runs `f` on this thread's connection, opening it on first use and again after
    /// a failure the connection would keep.
    pub fn with<R>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        if self.is_replaced() {
            return Err(StoreError::FileReplaced);
        }
        CONN.with(|cell| {
            let mut slot = cell.borrow_mut();
            let store = match &mut *slot {
                Some((path, store)) if *path == self.config.path => store,
                _ => &mut slot.insert((self.config.path.clone(), self.open()?)).1,
            };
            let result = f(store);
            if let Err(e) = &result {
                if e.needs_reopen() {
                    log::warn!("store: {e}; this worker opens a new connection");
                    *slot = None;
                }
            }
            result
        })
    }

    /// Whether the path still names the database and WAL files opened at start. The
    /// first time it does not: logs an error, saves what the open file holds beside
    /// the path, and from then on every operation fails.
    pub fn check_files(&self) -> Result<(), StoreError> {
        if self.is_replaced() {
            return Err(StoreError::FileReplaced);
        }
        let Some(file) = self.file else {
            return Ok(());
        };
        let wal_path = suffixed(&self.config.path, "-wal");
        let same = FileId::of(&self.config.path) == Some(file)
            && self.wal.is_none_or(|wal| FileId::of(&wal_path) == Some(wal));
        if same {
            return Ok(());
        }
        if !self.replaced.swap(true, Ordering::SeqCst) {
            log::error!(
                "[store] {}: the database file or its WAL was deleted or replaced while imd \
                 runs; every store operation now fails (500) and /im/health answers 503 \
                 until imd is restarted on the right file",
                self.config.path.display()
            );
            self.rescue();
        }
        Err(StoreError::FileReplaced)
    }

    /// Whether the database file was found deleted or replaced.
    pub fn is_replaced(&self) -> bool {
        self.replaced.load(Ordering::SeqCst)
    }

    /// Connections opened since start, the first one included.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Writes a consistent copy of the database to `<path>.backup-<unix seconds>`
    /// while the daemon keeps serving (SIGUSR1): other processes cannot open the file
    /// while imd runs, so `sqlite3 .backup` cannot.
    pub fn backup(&self) -> Result<PathBuf, StoreError> {
        self.check_files()?;
        let to = suffixed(&self.config.path, &format!(".backup-{}", unix_secs()));
        let anchor = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        anchor.copy_to(&to)?;
        Ok(to)
    }

    /// Copies what the file opened at start holds (acknowledged writes included)
    /// to `<path>.rescued-<unix seconds>`, through the anchor that still has it open.
    fn rescue(&self) {
        let to = suffixed(&self.config.path, &format!(".rescued-{}", unix_secs()));
        let anchor = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        match anchor.copy_to(&to) {
            Ok(()) => log::error!("[store] the open database was saved to {}", to.display()),
            Err(e) => log::error!("[store] the open database could not be saved: {e}"),
        }
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn open(config: &StoreConfig) -> Result<Store, StoreError> {
    let opts = StoreOptions { synchronous: config.synchronous, ..StoreOptions::default() };
    match &config.url {
        Some(url) => Store::connect(url.as_str(), &opts),
        None => Store::open(&config.path, &opts),
    }
}

/// A failure at start, named by where the database is (the URL without its password).
fn store_error(config: &StoreConfig, e: StoreError) -> crate::Error {
    match &config.url {
        Some(url) => crate::Error::Store(PathBuf::from(url.to_string()), e),
        None => crate::Error::Store(config.path.clone(), e),
    }
}

/// `path` with `suffix` appended to its file name, as SQLite names the WAL.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_config() -> StoreConfig {
        let dir = std::env::temp_dir().join(format!(
            "imd-db-test-{}-{}",
            std::process::id(),
            crate::live::token::new_user_id()
        ));
        StoreConfig {
            path: dir.join("imd.sqlite3"),
            url: None,
            synchronous: store::Synchronous::Normal,
        }
    }

    fn read_only() -> StoreError {
        let e = rusqlite_failure(1544); // SQLITE_READONLY_DBMOVED
        StoreError::from(e)
    }

    fn rusqlite_failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn a_lasting_failure_gets_the_thread_a_new_connection() {
        let config = temp_config();
        let db = Db::new(config.clone()).expect("db");
        std::thread::scope(|s| {
            s.spawn(|| {
                db.with(|s| s.schema_version()).expect("first use");
                let opened = db.opened();
                db.with(|s| s.schema_version()).expect("again");
                assert_eq!(db.opened(), opened, "kept");
                let busy = db.with(|_| Err::<(), _>(StoreError::from(rusqlite_failure(5))));
                assert!(matches!(busy, Err(StoreError::Busy)));
                db.with(|s| s.schema_version()).expect("after busy");
                assert_eq!(db.opened(), opened, "busy is not a connection's failure");
                assert!(db.with(|_| Err::<(), _>(read_only())).is_err());
                db.with(|s| s.schema_version()).expect("after read-only");
                assert_eq!(db.opened(), opened + 1, "reopened once");
                assert!(db.check_files().is_ok(), "closing a worker's connection keeps the WAL");
            });
        });
        drop(db);
        let _ = std::fs::remove_dir_all(config.path.parent().expect("dir"));
    }

    #[test]
    fn a_lost_postgres_connection_is_replaced_on_the_next_operation() {
        let pg = store::testdb::TempDb::new(store::testdb::Kind::Postgres);
        let config = StoreConfig {
            path: PathBuf::from("unused.sqlite3"),
            url: Some(store::PostgresUrl::parse(pg.url()).expect("url")),
            synchronous: store::Synchronous::Normal,
        };
        let db = Db::new(config).expect("db");
        std::thread::scope(|s| {
            s.spawn(|| {
                db.with(|s| s.schema_version()).expect("first use");
                let opened = db.opened();
                assert!(pg.terminate_sessions() >= 2, "the anchor and this worker's");
                let lost = db.with(|s| s.schema_version());
                assert!(matches!(&lost, Err(e) if e.needs_reopen()), "{lost:?}");
                assert_eq!(db.with(|s| s.schema_version()).expect("again"), store::SCHEMA_VERSION);
                assert_eq!(db.opened(), opened + 1, "reopened once");
                assert!(db.check_files().is_ok(), "no file to watch");
                assert!(matches!(db.backup(), Err(StoreError::Unsupported(_))));
            });
        });
        assert!(!Path::new("unused.sqlite3").exists(), "path is not used beside a url");
    }

    #[test]
    fn a_replaced_file_stops_every_operation_and_is_saved() {
        let config = temp_config();
        let db = Db::new(config.clone()).expect("db");
        db.with(|s| {
            s.create_user(&store::NewUser {
                id: "a".into(),
                account: "alice".into(),
                ..Default::default()
            })
        })
        .expect("write");
        assert!(db.check_files().is_ok());
        let dir = config.path.parent().expect("dir");
        let other = dir.join("other.sqlite3");
        std::fs::write(&other, b"").expect("other file");
        std::fs::rename(&other, &config.path).expect("replace");
        assert!(matches!(db.check_files(), Err(StoreError::FileReplaced)));
        assert!(db.is_replaced());
        assert!(matches!(db.with(|s| s.user_by_id("a")), Err(StoreError::FileReplaced)));
        let rescued = std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().contains(".rescued-"))
            .expect("a rescued copy");
        let opts = StoreOptions { process_exclusive: false, ..StoreOptions::default() };
        let copy = Store::open(&rescued.path(), &opts).expect("open the copy");
        assert!(copy.user_by_id("a").expect("read").is_some(), "the acknowledged write");
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
