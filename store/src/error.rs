//! [`StoreError`]: every way a store operation can fail.

use std::fmt;

/// Why a store operation failed. The variants up to [`StoreError::UserGone`] are
/// answers a client may see: each is decided inside the operation's own transaction,
/// so two racing operations get the answers of one running after the other. The rest
/// are internal failures (500).
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// `create_user`: the account is already registered (compared ASCII
    /// case-insensitively). Raised by the UNIQUE index, so of two racing
    /// registrations exactly one wins.
    AccountTaken,
    /// `request_friend`, `accept_request`: the two users are already friends (522).
    AlreadyFriends,
    /// `request_friend`, `accept_request`: the other user does not exist, or was
    /// erased while the operation waited (523).
    NoSuchUser,
    /// `accept_request`: no request from that user is pending (525).
    NoRequest,
    /// `request_friend`: the target holds as many pending requests as allowed (524).
    TooManyRequests,
    /// `store_message`: the two users are not friends (512), e.g. one removed the
    /// other or was erased after the sender's check.
    NotFriends,
    /// The acting user no longer exists: erased while this operation was under way,
    /// so its session is gone too (515).
    UserGone,
    /// The database file at the configured path is no longer the one the daemon
    /// opened (deleted or replaced under it): nothing is read or written until a
    /// restart, so no write is acknowledged into a file nobody will read again.
    FileReplaced,
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
    /// Any other PostgreSQL failure (connection, constraint, misuse).
    Postgres(postgres::Error),
    /// The operation exists on the other backend only (e.g. `copy_to`, a file copy of a
    /// SQLite database; PostgreSQL's is `pg_dump`).
    Unsupported(&'static str),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::AccountTaken => f.write_str("account already exists"),
            StoreError::AlreadyFriends => f.write_str("already friends"),
            StoreError::NoSuchUser => f.write_str("no such user"),
            StoreError::NoRequest => f.write_str("no pending request"),
            StoreError::TooManyRequests => f.write_str("too many pending requests"),
            StoreError::NotFriends => f.write_str("not friends"),
            StoreError::UserGone => f.write_str("the acting user was erased"),
            StoreError::FileReplaced => {
                f.write_str("the database file was deleted or replaced under the daemon")
            }
            StoreError::Busy => f.write_str("database busy beyond the busy timeout"),
            StoreError::SchemaTooNew { found, supported } => write!(
                f,
                "database schema version {found} is newer than this build supports ({supported})"
            ),
            StoreError::NotWal(mode) => write!(f, "journal_mode is {mode:?}, not WAL"),
            StoreError::Sqlite(e) => write!(f, "sqlite: {e}"),
            // The client's own line is generic ("db error"); the cause says what.
            StoreError::Postgres(e) => match std::error::Error::source(e) {
                Some(cause) => write!(f, "postgres: {e}: {cause}"),
                None => write!(f, "postgres: {e}"),
            },
            StoreError::Unsupported(what) => write!(f, "{what} is not supported on this backend"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sqlite(e) => Some(e),
            StoreError::Postgres(e) => Some(e),
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

impl StoreError {
    /// Whether the connection that failed this way should be closed and opened again.
    /// SQLite keeps some failures on a connection for its life: a connection that met
    /// a read-only or unopenable WAL stays read-only after the file is writable again,
    /// and one that saw an I/O error or corruption may hold a bad page cache. A
    /// PostgreSQL connection that was closed or lost is of no further use.
    pub fn needs_reopen(&self) -> bool {
        use rusqlite::ErrorCode::{
            CannotOpen, DatabaseCorrupt, NotADatabase, ReadOnly, SystemIoFailure,
        };
        match self {
            StoreError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(ReadOnly | SystemIoFailure | DatabaseCorrupt | NotADatabase | CannotOpen)
            ),
            StoreError::Postgres(e) => crate::pg::needs_reopen(e),
            _ => false,
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

    #[test]
    fn only_lasting_failures_ask_for_a_new_connection() {
        let failure = |code| {
            StoreError::from(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None))
        };
        for code in [
            rusqlite::ffi::SQLITE_READONLY,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_CORRUPT,
            rusqlite::ffi::SQLITE_NOTADB,
            rusqlite::ffi::SQLITE_CANTOPEN,
        ] {
            assert!(failure(code).needs_reopen(), "{code}");
        }
        for code in [rusqlite::ffi::SQLITE_BUSY, rusqlite::ffi::SQLITE_CONSTRAINT] {
            assert!(!failure(code).needs_reopen(), "{code}");
        }
        assert!(!StoreError::NoSuchUser.needs_reopen());
    }
}
