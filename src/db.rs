//! One SQLite connection per worker thread, as the design card says: each worker opens
//! its own on first use and keeps it for its life, so no connection is ever shared.

use std::cell::RefCell;
use std::path::PathBuf;

use store::{Store, StoreError, StoreOptions};

use crate::config::StoreConfig;

thread_local! {
    /// This thread's connection, with the path it was opened on (a test process can
    /// run several daemons, each with its own database and its own worker threads).
    static CONN: RefCell<Option<(PathBuf, Store)>> = const { RefCell::new(None) };
}

/// Opens per-thread connections to one database.
#[derive(Clone)]
pub struct Db {
    config: StoreConfig,
}

impl Db {
    /// Creates the database directory, opens the database once (migrating it) and
    /// checks it, so a bad path stops the start instead of the first request.
    pub fn new(config: StoreConfig) -> Result<Db, crate::Error> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                crate::Error::Config(format!("[store] path {}: {e}", config.path.display()))
            })?;
        }
        let db = Db { config };
        db.open().map_err(|e| crate::Error::Store(db.config.path.clone(), e))?;
        Ok(db)
    }

    /// A connection of its own, for a thread that keeps one outside [`Db::with`] (the
    /// history writer).
    pub fn open(&self) -> Result<Store, StoreError> {
        let opts = StoreOptions { synchronous: self.config.synchronous, ..StoreOptions::default() };
        Store::open(&self.config.path, &opts)
    }

    /// Runs `f` on a connection of its own, closed after: for work at start, on a
    /// thread that keeps no connection.
    pub fn once<R>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError>,
    ) -> Result<R, crate::Error> {
        self.open()
            .and_then(|mut store| f(&mut store))
            .map_err(|e| crate::Error::Store(self.config.path.clone(), e))
    }

    /// Runs `f` on this thread's connection, opening it on first use.
    pub fn with<R>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        CONN.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|(p, _)| *p != self.config.path) {
                *slot = Some((self.config.path.clone(), self.open()?));
            }
            match slot.as_mut() {
                Some((_, store)) => f(store),
                None => unreachable!("opened above"),
            }
        })
    }
}
