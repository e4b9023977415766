//! imd's persistent state in SQLite (rusqlite, bundled; the embedded default) or
//! PostgreSQL (the `postgres` crate; several nodes on one database): users,
//! friendships, friend requests and kept conversations (history, with delivered and
//! read marks).
//!
//! - `backend` — [`Store`]: one connection (the daemon opens one per worker thread),
//!   every operation listed once and dispatched to the backend it was opened on.
//! - `store`  — the SQLite backend's operations; writes run in `BEGIN IMMEDIATE`
//!   transactions.
//! - `pg`     — the PostgreSQL backend: the same operations, schema and answers;
//!   writes run SERIALIZABLE, retried on a serialization failure (docs/cluster.md).
//! - `schema` — [`StoreOptions`], [`Synchronous`], WAL and pragmas at open, and the
//!   schema versioned by `PRAGMA user_version` ([`SCHEMA_VERSION`]), migrated at open;
//!   by default on the `unix-excl` VFS (one process owns the file, no `-shm`).
//! - `history` — conversations that are kept (docs/protocol.md §10): [`Store::append_messages`]
//!   numbers each message inside its commit; delivered and read marks; history reads.
//! - `devices` — remembered logins (docs/protocol.md §11.2): device tokens by their
//!   SHA-256, with a sliding expiry; revoked by logoff, password change and erase.
//! - `rows`   — the row types: [`NewUser`], [`UserRow`], [`DirectoryRow`], [`ProfileUpdate`],
//!   [`FriendRow`], [`RequestRow`], [`Requested`], [`NewMessage`], [`StoredMessage`].
//! - `testdb` — throwaway SQLite files and PostgreSQL databases for tests (the store's,
//!   and the daemon's with the `testing` feature), on a server each test process starts.
//! - `error`  — [`StoreError`]: the answers a client may see (account taken, already
//!   friends, no such user, …), each decided inside its operation's transaction, and
//!   the internal failures (500).
//!
//! Passwords arrive already hashed: the store never sees plaintext.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
mod devices;
mod error;
mod history;
mod pg;
mod rows;
mod schema;
mod store;

pub use backend::Store;
pub use error::StoreError;
pub use history::{
    Appended, ConversationState, Delivered, HistoryMessage, NewHistoryMessage, Window,
};
pub use pg::PostgresUrl;
pub use rows::{
    DirectoryRow, FriendRow, NewMessage, NewUser, ProfileUpdate, RequestRow, Requested,
    StoredMessage, UserRow,
};
pub use schema::{StoreOptions, Synchronous, SCHEMA_VERSION};
pub use store::Result;

#[cfg(test)]
mod devices_tests;
#[cfg(test)]
mod history_tests;
#[cfg(any(test, feature = "testing"))]
pub mod testdb;
#[cfg(test)]
mod tests;
