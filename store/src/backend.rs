//! [`Store`]: the store's one API over its two backends, an embedded SQLite file
//! (`crate::store`, `crate::history`) and a PostgreSQL server (`crate::pg`).
//!
//! Each operation is listed once below and dispatched by the `delegate!` macro, which
//! calls the method of the same name on both backends: an operation added to one
//! backend and not the other does not compile. The contract of each operation (its
//! checks, their order, its answers) is documented on the SQLite implementation and
//! holds on both.

use std::path::Path;

use crate::error::StoreError;
use crate::history::{
    Appended, ConversationState, Delivered, HistoryMessage, NewHistoryMessage, Window,
};
use crate::pg::Postgres;
use crate::rows::{
    DirectoryRow, FriendRow, NewMessage, NewUser, ProfileUpdate, RequestRow, Requested,
    StoredMessage, UserRow,
};
use crate::schema::StoreOptions;
use crate::store::{Result, Sqlite};

/// One connection to the imd database, SQLite or PostgreSQL. The daemon opens one per
/// worker thread; a `Store` is `Send` but not `Sync`.
///
/// Every write is one transaction, and its checks and writes are atomic: on SQLite it
/// runs under `BEGIN IMMEDIATE` (the write lock, waited for up to the busy timeout);
/// on PostgreSQL it runs SERIALIZABLE and is retried whole after a serialization
/// failure, up to the busy timeout. Either way, racing operations get the answers of
/// one running after the other, and a lock held past the busy timeout is
/// [`StoreError::Busy`].
#[derive(Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Sqlite(Sqlite),
    /// Boxed: its client is three times the size of a rusqlite connection.
    Postgres(Box<Postgres>),
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`: WAL journaling,
    /// foreign keys on, `opts`' busy timeout and synchronous level, and the schema
    /// migrated to the current version. Several threads may open the same file at once.
    pub fn open(path: &Path, opts: &StoreOptions) -> Result<Store> {
        Ok(Store { backend: Backend::Sqlite(Sqlite::open(path, opts)?) })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user@host:port/db` or
    /// libpq's `key=value` form; no TLS) and migrates its schema. `opts.busy_timeout`
    /// bounds lock waits and the retries of a write; `opts.synchronous` sets
    /// `synchronous_commit` (`off` for [`Synchronous::Off`](crate::Synchronous::Off)
    /// and [`Normal`](crate::Synchronous::Normal), `on` for
    /// [`Full`](crate::Synchronous::Full)); `process_exclusive` does not apply.
    pub fn connect(url: &str, opts: &StoreOptions) -> Result<Store> {
        Ok(Store { backend: Backend::Postgres(Box::new(Postgres::open(url, opts)?)) })
    }

    /// Whether this connection is to PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Writes a consistent copy of a SQLite database to a new file at `to`
    /// (`VACUUM INTO`), even after the file this connection opened was deleted.
    /// PostgreSQL: [`StoreError::Unsupported`] (back it up with `pg_dump`).
    pub fn copy_to(&self, to: &Path) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.copy_to(to),
            Backend::Postgres(_) => Err(StoreError::Unsupported("copy_to (use pg_dump)")),
        }
    }
}

/// `impl Store` with each listed method calling its twin on the backend in use:
/// `read` methods take `&self`, `write` methods `&mut self`.
macro_rules! delegate {
    (read; $( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub fn $name(&self, $($arg: $ty),*) -> $ret {
                    match &self.backend {
                        Backend::Sqlite(b) => b.$name($($arg),*),
                        Backend::Postgres(b) => b.$name($($arg),*),
                    }
                }
            )*
        }
    };
    (write; $( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub fn $name(&mut self, $($arg: $ty),*) -> $ret {
                    match &mut self.backend {
                        Backend::Sqlite(b) => b.$name($($arg),*),
                        Backend::Postgres(b) => b.$name($($arg),*),
                    }
                }
            )*
        }
    };
}

delegate! { read;
    /// The schema version of the open database ([`crate::SCHEMA_VERSION`] once open).
    fn schema_version() -> Result<i64>;
    /// SQLite: `PRAGMA integrity_check` is "ok". PostgreSQL: the store's own invariants
    /// hold (friendships mutual, no message above its conversation's counter).
    fn integrity_check() -> Result<bool>;

    /// The user whose account is `account`, ASCII case-insensitively.
    fn user_by_account(account: &str) -> Result<Option<UserRow>>;
    /// The user with id `id`.
    fn user_by_id(id: &str) -> Result<Option<UserRow>>;
    /// Whether `account` is registered, ASCII case-insensitively.
    fn account_exists(account: &str) -> Result<bool>;
    /// Every user as the search directory lists them; a picture longer than
    /// `picture_limit` bytes is left out (`None`).
    fn directory(picture_limit: usize) -> Result<Vec<DirectoryRow>>;

    /// Whether `a` has `b` as a friend.
    fn are_friends(a: &str, b: &str) -> Result<bool>;
    /// My friends: my alias for each, and their own profile; by alias, then id.
    fn friends_of(id: &str) -> Result<Vec<FriendRow>>;
    /// The ids of my friends.
    fn friend_ids(id: &str) -> Result<Vec<String>>;
    /// Who has me as a friend, each with the alias they gave me: `(their id, alias)`.
    fn aliases_for(id: &str) -> Result<Vec<(String, String)>>;

    /// Whether a request `from` → `to` is pending.
    fn pending_request(from: &str, to: &str) -> Result<bool>;
    /// Up to `limit` requests pending for `id`, the newest first, with each
    /// requester's name.
    fn requests_to(id: &str, limit: usize) -> Result<Vec<RequestRow>>;

    /// Up to `limit` offline messages waiting for `to`, oldest first.
    fn pending_messages(to: &str, limit: usize) -> Result<Vec<StoredMessage>>;

    /// The messages to `user` above its delivered marks, conversation by conversation,
    /// each in `seq` order; at most `limit` in all.
    fn undelivered(user: &str, limit: usize) -> Result<Vec<HistoryMessage>>;
    /// The first of [`undelivered`](Self::undelivered), as many as fit in `bytes` of
    /// payload (at least one) and at most `limit`; and whether any are left after them.
    fn undelivered_slice(user: &str, limit: usize, bytes: usize)
        -> Result<(Vec<HistoryMessage>, bool)>;
    /// `user`'s view of the conversation with `peer`.
    fn conversation(user: &str, peer: &str) -> Result<ConversationState>;
    /// Up to `limit` messages of the conversation of `user` and `peer`, in `seq` order.
    fn messages(user: &str, peer: &str, window: Window, limit: usize)
        -> Result<Vec<HistoryMessage>>;

    /// How many devices `user` has remembered.
    fn device_count(user: &str) -> Result<usize>;
}

delegate! { write;
    /// Registers `user`. [`StoreError::AccountTaken`] when the account exists
    /// (ASCII case-insensitively); of racing registrations exactly one wins.
    fn create_user(user: &NewUser) -> Result<()>;
    /// Applies `update` (`None` fields unchanged) and returns the profile as it now
    /// stands; [`StoreError::UserGone`] when there is no such user.
    fn update_profile(id: &str, update: &ProfileUpdate) -> Result<UserRow>;
    /// Replaces the password hash of `id` with `new` if it is still `old`.
    fn rehash_password(id: &str, old: &str, new: &str) -> Result<bool>;
    /// Deletes the user `id` with its friendships, requests and messages; returns its
    /// former friends, or [`StoreError::UserGone`] when it was erased already.
    fn delete_user(id: &str) -> Result<Vec<String>>;

    /// Makes `a` and `b` friends with these aliases (an existing row keeps its alias)
    /// and deletes the pending requests between them both ways.
    fn make_friends(a: &str, alias_a_for_b: &str, b: &str, alias_b_for_a: &str) -> Result<()>;
    /// Ends the friendship of `a` and `b` on both sides; `false` when there was none.
    fn remove_friendship(a: &str, b: &str) -> Result<bool>;

    /// `from` asks `to` to be friends (§5.2): [`StoreError::UserGone`],
    /// [`StoreError::AlreadyFriends`], [`StoreError::NoSuchUser`], befriended when `to`
    /// asked first, else stored unless `to` holds `cap` requests
    /// ([`StoreError::TooManyRequests`]).
    fn request_friend(from: &str, to: &str, note: &str, cap: usize) -> Result<Requested>;
    /// `me` accepts the request of `from`, calling them `alias` (§5.3):
    /// [`StoreError::UserGone`], [`StoreError::AlreadyFriends`],
    /// [`StoreError::NoSuchUser`], [`StoreError::NoRequest`], in that order.
    fn accept_request(me: &str, from: &str, alias: &str) -> Result<UserRow>;
    /// Deletes the request `from` → `to`; `false` when there was none.
    fn delete_request(from: &str, to: &str) -> Result<bool>;

    /// Keeps one offline message from `from` for its friend `to`; returns its sequence
    /// number, or [`StoreError::NotFriends`].
    fn store_message(to: &str, from: &str, dialogue_id: &str, payload: &str, ts_ms: i64)
        -> Result<i64>;
    /// Keeps `messages` in one transaction; returns their sequence numbers, in order.
    fn store_messages(messages: &[NewMessage<'_>]) -> Result<Vec<i64>>;
    /// Deletes the offline messages for `to` up to `seq`; returns how many.
    fn delete_messages_upto(to: &str, seq: i64) -> Result<usize>;

    /// Appends `messages` in one transaction, each to its conversation with the next
    /// `seq` of that conversation (see [`Appended`]).
    fn append_messages(messages: &[NewHistoryMessage]) -> Result<Vec<Appended>>;
    /// [`append_messages`](Self::append_messages) and the delivered `marks` of frames
    /// written meanwhile (each capped at its conversation's last `seq`), in one
    /// transaction; returns what became of each message and the marks that moved.
    /// Marks alone commit without waiting for the disk (SQLite: `synchronous = NORMAL`;
    /// PostgreSQL: `SET LOCAL synchronous_commit = off`): a crash may lose them, which
    /// only lets a message reach a later session again.
    fn append_and_mark(messages: &[NewHistoryMessage], marks: &[Delivered])
        -> Result<(Vec<Appended>, Vec<Delivered>)>;
    /// Moves `user`'s delivered marks up to the given `(peer, seq)`, each capped at its
    /// conversation's last `seq` (none outlives its conversation); returns those that
    /// moved, with their new value.
    fn mark_delivered(user: &str, marks: &[(String, i64)]) -> Result<Vec<(String, i64)>>;
    /// Sets `user`'s read mark of the conversation with `peer` to `seq` (capped at its
    /// last `seq`) if above it; returns the new mark when it moved.
    fn mark_read(user: &str, peer: &str, seq: i64) -> Result<Option<i64>>;
    /// Deletes kept messages accepted before `cutoff_ms`; returns how many. The
    /// counters stay, so no number is given out twice.
    fn expire_messages(cutoff_ms: i64) -> Result<usize>;

    /// Remembers a new device of `user` by its token's SHA-256 and returns its id;
    /// keeps at most `keep` per user (the least recently used go).
    /// [`StoreError::UserGone`] when the user was erased meanwhile.
    fn add_device(user: &str, token_sha256: &[u8; 32], now_ms: i64, keep: usize) -> Result<i64>;
    /// The user a device token belongs to and the device's id, if known and used
    /// within `max_age_ms`; records the use (the expiry slides); deletes it if expired.
    fn device_login(token_sha256: &[u8; 32], now_ms: i64, max_age_ms: i64)
        -> Result<Option<(UserRow, i64)>>;
    /// Revokes the device `device` of `user`; `false` if it was gone already.
    fn forget_device(user: &str, device: i64) -> Result<bool>;
    /// Housekeeping: deletes every device token last used before `cutoff_ms`.
    fn expire_devices(cutoff_ms: i64) -> Result<usize>;
}

#[cfg(test)]
impl Store {
    /// The SQLite connection, for assertions on pragmas and tables.
    pub(crate) fn conn_for_tests(&self) -> &rusqlite::Connection {
        match &self.backend {
            Backend::Sqlite(s) => &s.conn,
            Backend::Postgres(_) => panic!("not a SQLite store"),
        }
    }

    /// The one integer `sql` selects, on either backend.
    pub(crate) fn count_for_tests(&self, sql: &str) -> i64 {
        match &self.backend {
            Backend::Sqlite(s) => s.conn.query_row(sql, [], |r| r.get(0)).expect(sql),
            Backend::Postgres(p) => p.query_i64_for_tests(sql),
        }
    }

    /// Writes `version` as the database's schema version.
    pub(crate) fn set_schema_version_for_tests(&mut self, version: i64) {
        match &mut self.backend {
            Backend::Sqlite(s) => s.conn.pragma_update(None, "user_version", version).expect("set"),
            Backend::Postgres(p) => p.set_schema_version_for_tests(version),
        }
    }
}
