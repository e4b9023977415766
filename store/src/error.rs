//! [`StoreError`]: every way a store operation can fail.

use std::fmt;

/// Why a store operation failed. Only [`StoreError::AccountTaken`] is an answer a
/// client may see (504); every other variant is an internal failure (500).
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// `create_user`: the account is already registered (compared ASCII
    /// case-insensitively). Raised by the UNIQUE index, so of two racing
    /// registrations exactly one wins.
    AccountTaken,
    /// The database stayed locked by another connection for longer than the busy
    /// timeout (`SQLITE_BUSY` / `SQLITE_LOCKED`).
    Busy,
    /// The database file has a schema version newer than this build knows: it was
    /// written by a newer imd. Nothing was changed.
    SchemaTooNew {
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The newest version this build can migrate to.
        supported: i64,
    },
    /// The database refused to switch to WAL journaling (it answered this mode).
    NotWal(String),
    /// Any other SQLite failure (I/O, corruption, constraint, misuse).
    Sqlite(rusqlite::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::AccountTaken => f.write_str("account already exists"),
            StoreError::Busy => f.write_str("database busy beyond the busy timeout"),
            StoreError::SchemaTooNew { found, supported } => write!(
                f,
                "database schema version {found} is newer than this build supports ({supported})"
            ),
            StoreError::NotWal(mode) => write!(f, "journal_mode is {mode:?}, not WAL"),
            StoreError::Sqlite(e) => write!(f, "sqlite: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sqlite(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked) => StoreError::Busy,
            _ => StoreError::Sqlite(e),
        }
    }
}

/// Whether `e` is the UNIQUE violation of `users.account_key`.
pub(crate) fn is_account_taken(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && msg.as_deref().is_some_and(|m| m.contains("users.account_key"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_locked_map_to_busy() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(matches!(StoreError::from(busy), StoreError::Busy));
        let other = rusqlite::Error::QueryReturnedNoRows;
        assert!(matches!(StoreError::from(other), StoreError::Sqlite(_)));
        assert_eq!(StoreError::AccountTaken.to_string(), "account already exists");
    }
}
