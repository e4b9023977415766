//! The PostgreSQL backend: the same operations and answers as the SQLite one, for
//! several imd nodes on one database (docs/cluster.md).
//!
//! - `schema` — the versioned schema, numbered as SQLite's ([`crate::SCHEMA_VERSION`]),
//!   migrated at open under an advisory lock so that nodes starting together migrate
//!   once.
//! - `users` — users, friendships, friend requests and offline messages.
//! - `conn` — a client with its statements, prepared once per connection.
//! - `url` — [`PostgresUrl`](crate::PostgresUrl), checked at load.
//! - `devices` — remembered logins (device tokens by their SHA-256).
//! - `history` — kept conversations: `seq` given out from the pair's counter row inside
//!   the commit that stores the message.
//!
//! Every write runs in a SERIALIZABLE transaction, retried whole on a serialization
//! failure or deadlock until the busy timeout: the answers of racing operations are
//! those of one running after the other, as under SQLite's `BEGIN IMMEDIATE`. The
//! history writes (the hot path) run at READ COMMITTED with their row locks taken in
//! one order instead, so that two nodes writing one conversation wait rather than
//! abort (docs/cluster.md, "Isolation").

mod conn;
mod devices;
mod history;
mod schema;
mod url;
mod users;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{IsolationLevel, NoTls};

use crate::error::StoreError;
use crate::schema::{StoreOptions, Synchronous};
use crate::store::Result;
use conn::{Conn, Tx};

pub use url::PostgresUrl;

/// One connection to a PostgreSQL database.
pub(crate) struct Postgres {
    /// Reads take `&self` in the store's API; the client needs `&mut` for every query.
    /// A `Store` is used by one thread at a time (`Send`, not `Sync`).
    client: RefCell<Conn>,
    /// How long a write retries serialization failures, and `lock_timeout`.
    busy_timeout: Duration,
    /// Writes aborted by PostgreSQL (serialization failure, deadlock) and run again.
    retries: u64,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").field("busy_timeout", &self.busy_timeout).finish_non_exhaustive()
    }
}

impl Postgres {
    /// Connects to `url` (a libpq URL or key=value string, without TLS), applies
    /// `opts` and migrates the schema. A server that does not answer fails the
    /// connection after the busy timeout unless the URL sets `connect_timeout`.
    pub(crate) fn open(url: &str, opts: &StoreOptions) -> Result<Postgres> {
        let mut config: postgres::Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(opts.busy_timeout.max(Duration::from_secs(1)));
        }
        let mut client = config.connect(NoTls)?;
        // SQLite's NORMAL in WAL mode may lose the last commits on a power loss but is
        // never corrupt: PostgreSQL's asynchronous commit promises the same.
        let commit = match opts.synchronous {
            Synchronous::Off | Synchronous::Normal => "off",
            Synchronous::Full => "on",
        };
        let lock_ms = opts.busy_timeout.as_millis().max(1);
        client.batch_execute(&format!(
            "SET lock_timeout = {lock_ms}; SET synchronous_commit = {commit};"
        ))?;
        schema::migrate(&mut client)?;
        Ok(Postgres {
            client: RefCell::new(Conn::new(client)),
            busy_timeout: opts.busy_timeout,
            retries: 0,
        })
    }

    /// The schema version of the database.
    pub(crate) fn schema_version(&self) -> Result<i64> {
        schema::version(self.client.borrow_mut().client())
    }

    /// Runs `op` in a SERIALIZABLE transaction and commits it; runs it again from the
    /// start while PostgreSQL aborts it for a serialization failure or a deadlock,
    /// until the busy timeout ([`StoreError::Busy`] after). An `Err` from `op` rolls
    /// back and is returned as it is.
    fn write<T>(&mut self, op: impl FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.write_at(IsolationLevel::Serializable, op)
    }

    /// As [`Postgres::write`], at READ COMMITTED: for the operations that take their
    /// row locks themselves, in one order (`history`), so that writers on several
    /// nodes wait for each other instead of aborting.
    fn write_locked<T>(&mut self, op: impl FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.write_at(IsolationLevel::ReadCommitted, op)
    }

    fn write_at<T>(
        &mut self,
        level: IsolationLevel,
        mut op: impl FnMut(&mut Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.busy_timeout;
        let conn = self.client.get_mut();
        for attempt in 0u32.. {
            let result = conn.transaction(level).map_err(StoreError::from).and_then(|mut tx| {
                let value = op(&mut tx)?;
                tx.commit()?;
                Ok(value)
            });
            match result {
                Err(StoreError::Postgres(e)) if is_conflict(&e) => {
                    self.retries += 1;
                    if Instant::now() >= deadline {
                        return Err(StoreError::Busy);
                    }
                    std::thread::sleep(backoff(attempt));
                }
                other => return other,
            }
        }
        Err(StoreError::Busy)
    }
}

/// A serialization failure or deadlock: the transaction did nothing and may run again.
fn is_conflict(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// 1, 2, 4 … 32 ms, plus up to 1 ms from the clock so that retries that collided
/// once do not collide again in step.
fn backoff(attempt: u32) -> Duration {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros() % 1000);
    Duration::from_millis(1 << attempt.min(5)) + Duration::from_micros(u64::from(jitter))
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        match e.code() {
            // A lock waited for longer than `lock_timeout` (the busy timeout).
            Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => StoreError::Busy,
            _ => StoreError::Postgres(e),
        }
    }
}

/// Whether a PostgreSQL failure leaves the connection unusable: it was closed, or the
/// server is shutting down or lost it (classes 08 and 57P), or its prepared
/// statements no longer fit the schema.
pub(crate) fn needs_reopen(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        Some(db) => {
            // 0A000: "cached plan must not change result type", after another node
            // migrated the schema: a new connection prepares its statements again.
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57P") || code == "0A000"
        }
        // I/O, protocol or decoding failure: a new connection starts clean.
        None => true,
    }
}

/// Whether `e` is the UNIQUE violation of `users.account_key`.
fn is_account_taken(e: &postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some("users_account_key")
    })
}

/// The store's limits are `usize`; PostgreSQL takes `i64`, anything larger is "no limit".
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
impl Postgres {
    pub(crate) fn query_i64_for_tests(&self, sql: &str) -> i64 {
        self.client.borrow_mut().client().query_one(sql, &[]).expect(sql).get(0)
    }

    pub(crate) fn retries_for_tests(&self) -> u64 {
        self.retries
    }

    pub(crate) fn set_schema_version_for_tests(&mut self, version: i64) {
        let sql = "UPDATE imd_schema SET version = $1";
        self.client.get_mut().client().execute(sql, &[&version]).expect(sql);
    }
}
