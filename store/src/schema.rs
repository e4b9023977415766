//! Opening a database: connection settings ([`StoreOptions`]) and the versioned
//! schema, migrated at open inside one `BEGIN IMMEDIATE` transaction.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::StoreError;

/// `PRAGMA synchronous`: how hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// No fsync: a power loss may lose recent commits (and, rarely, corrupt).
    Off,
    /// In WAL mode: durable except for the last commits before a power loss; never
    /// corrupt.
    Normal,
    /// Every commit is durable once it returns (default).
    #[default]
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// How [`Store::open`](crate::Store::open) sets up a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// `PRAGMA synchronous` (default [`Synchronous::Full`]).
    pub synchronous: Synchronous,
    /// How long a statement waits for another connection's lock before failing with
    /// [`StoreError::Busy`] (default 5 s).
    pub busy_timeout: Duration,
    /// Whether this process owns the file alone (default `true`): connections open on
    /// SQLite's `unix-excl` VFS, which locks the file against every other process and
    /// keeps the WAL index in this process's heap instead of the `-shm` file. A `-shm`
    /// mapped into memory kills the process with SIGBUS when something truncates it;
    /// without one there is nothing to truncate. Connections of one process still share
    /// the file as usual. `false` opens on the default VFS, for several processes.
    pub process_exclusive: bool,
    /// WAL pages at which a commit checkpoints the WAL (copies it into the database
    /// file, syncing both) before it returns: SQLite's `wal_autocheckpoint`, default
    /// 1,000; 0 never. The owner of a higher bound calls
    /// [`Store::checkpoint`](crate::Store::checkpoint) in between (imd does, on a thread
    /// of its own, so that sends seldom wait for a checkpoint).
    pub checkpoint_pages: u32,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            process_exclusive: true,
            checkpoint_pages: 1000,
        }
    }
}

/// The schema, one entry per version: entry `i` migrates version `i` to `i + 1`.
/// Never edit a released entry; append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: users, friendships, requests, offline messages.
    "CREATE TABLE users (
        id            TEXT PRIMARY KEY NOT NULL,
        account       TEXT NOT NULL,
        account_key   TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        name          TEXT NOT NULL DEFAULT '',
        name_key      TEXT NOT NULL DEFAULT '',
        picture       TEXT NOT NULL DEFAULT '',
        sex           TEXT NOT NULL DEFAULT '',
        birthday      TEXT NOT NULL DEFAULT '',
        sign          TEXT NOT NULL DEFAULT '',
        mail          TEXT NOT NULL DEFAULT '',
        created_ms    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX users_by_name ON users(name, account);
    CREATE TABLE friends (
        user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        friend_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        alias     TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (user_id, friend_id)
    ) WITHOUT ROWID;
    CREATE INDEX friends_by_friend ON friends(friend_id);
    CREATE TABLE requests (
        from_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        to_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        note       TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (from_id, to_id)
    ) WITHOUT ROWID;
    CREATE INDEX requests_by_to ON requests(to_id, created_ms);
    CREATE TABLE messages (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        to_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        from_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        dialogue_id TEXT NOT NULL,
        payload     TEXT NOT NULL,
        ts_ms       INTEGER NOT NULL
    );
    CREATE INDEX messages_by_to ON messages(to_id, seq);
    CREATE INDEX messages_by_from ON messages(from_id);",
    // 2: a trigram index over names, so a substring search reads the matches only
    //    instead of every user.
    "CREATE VIRTUAL TABLE users_name USING fts5(
        name_key, content='users', content_rowid='rowid', tokenize='trigram'
    );
    INSERT INTO users_name(users_name) VALUES ('rebuild');
    CREATE TRIGGER users_name_insert AFTER INSERT ON users BEGIN
        INSERT INTO users_name(rowid, name_key) VALUES (new.rowid, new.name_key);
    END;
    CREATE TRIGGER users_name_delete AFTER DELETE ON users BEGIN
        INSERT INTO users_name(users_name, rowid, name_key) VALUES ('delete', old.rowid, old.name_key);
    END;
    CREATE TRIGGER users_name_update AFTER UPDATE OF name_key ON users BEGIN
        INSERT INTO users_name(users_name, rowid, name_key) VALUES ('delete', old.rowid, old.name_key);
        INSERT INTO users_name(rowid, name_key) VALUES (new.rowid, new.name_key);
    END;",
    // 3: search moved to the daemon's memory (its directory, loaded at start with
    //    `Store::directory`); the trigram index, the name order and the lowercased
    //    names only cost every registration and rename.
    "DROP TRIGGER users_name_insert;
    DROP TRIGGER users_name_delete;
    DROP TRIGGER users_name_update;
    DROP TABLE users_name;
    DROP INDEX users_by_name;
    ALTER TABLE users DROP COLUMN name_key;",
    // 4: requests listed newest first (§5.7) in the order they were made: `seq` counts
    //    up per target, where milliseconds tie. Existing requests keep their order.
    "ALTER TABLE requests ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    UPDATE requests SET seq = ordered.n
    FROM (SELECT from_id, to_id,
                 row_number() OVER (PARTITION BY to_id ORDER BY created_ms, from_id) AS n
          FROM requests) AS ordered
    WHERE requests.from_id = ordered.from_id AND requests.to_id = ordered.to_id;
    DROP INDEX requests_by_to;
    CREATE INDEX requests_by_to ON requests(to_id, seq);",
    // 5: conversations that are kept (docs/protocol.md §10). A conversation is a pair of
    //    users (a < b) with the last `seq` it gave out: the counter outlives the
    //    messages, so retention never lets a number come back. Each user has a
    //    delivered and a read mark per peer. Deleting a friendship (remove, erase)
    //    deletes the pair's conversation by trigger, inside the store's own
    //    transaction, so re-befriending starts at seq 1. Messages kept for offline
    //    users move into history, numbered per pair in their old order, undelivered.
    "CREATE TABLE conversations (
        a        TEXT NOT NULL,
        b        TEXT NOT NULL,
        last_seq INTEGER NOT NULL,
        PRIMARY KEY (a, b)
    ) WITHOUT ROWID;
    CREATE TABLE history (
        a           TEXT NOT NULL,
        b           TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        from_id     TEXT NOT NULL,
        to_id       TEXT NOT NULL,
        dialogue_id TEXT NOT NULL,
        cid         TEXT,
        payload     TEXT NOT NULL,
        ts_ms       INTEGER NOT NULL,
        code        INTEGER NOT NULL DEFAULT 202,
        PRIMARY KEY (a, b, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX history_by_cid ON history(from_id, cid) WHERE cid IS NOT NULL;
    CREATE INDEX history_by_ts ON history(ts_ms);
    CREATE TABLE marks (
        user_id   TEXT NOT NULL,
        peer_id   TEXT NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0,
        read      INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, peer_id)
    ) WITHOUT ROWID;
    CREATE TRIGGER conversation_ends AFTER DELETE ON friends BEGIN
        DELETE FROM history
         WHERE a = min(old.user_id, old.friend_id) AND b = max(old.user_id, old.friend_id);
        DELETE FROM conversations
         WHERE a = min(old.user_id, old.friend_id) AND b = max(old.user_id, old.friend_id);
        DELETE FROM marks WHERE user_id = old.user_id AND peer_id = old.friend_id;
    END;
    CREATE TRIGGER conversations_of_erased AFTER DELETE ON users BEGIN
        DELETE FROM history WHERE from_id = old.id OR to_id = old.id;
        DELETE FROM conversations WHERE a = old.id OR b = old.id;
        DELETE FROM marks WHERE user_id = old.id OR peer_id = old.id;
    END;
    INSERT INTO history (a, b, seq, from_id, to_id, dialogue_id, payload, ts_ms)
        SELECT min(from_id, to_id), max(from_id, to_id),
               row_number() OVER (PARTITION BY min(from_id, to_id), max(from_id, to_id)
                                  ORDER BY seq),
               from_id, to_id, dialogue_id, payload, ts_ms
        FROM messages;
    INSERT INTO conversations (a, b, last_seq)
        SELECT a, b, max(seq) FROM history GROUP BY a, b;
    DELETE FROM messages;",
    // 6: remembered logins (docs/protocol.md §11.2). A device token is stored only as
    //    its SHA-256, so a copy of the database logs nobody in; `last_used_ms` slides
    //    its expiry. An erased user's devices go with the user.
    "CREATE TABLE devices (
        id           INTEGER PRIMARY KEY,
        user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        token_sha256 BLOB NOT NULL UNIQUE,
        created_ms   INTEGER NOT NULL,
        last_used_ms INTEGER NOT NULL
    );
    CREATE INDEX devices_by_user ON devices(user_id, last_used_ms);",
    // 7: a login's backlog is read by receiver (`to_id`), in conversation and `seq`
    //    order. Without this index every login read the whole history table, on the
    //    thread that commits every send: with 100,000 messages kept, 200 logins held
    //    sends back for seconds.
    "CREATE INDEX history_by_to ON history(to_id, a, b, seq);",
    // 8: an erase finds the account's conversations, messages and marks by index. The
    //    trigger of version 5 tested every row of the three tables (`from_id = ? OR
    //    to_id = ?`), holding the write lock, and with it every send, for as long. A
    //    message's pair is (sender, receiver) ordered, so "sent or received by the user"
    //    is "of a conversation the user is `a` or `b` of".
    "CREATE INDEX conversations_by_b ON conversations(b);
    CREATE INDEX marks_by_peer ON marks(peer_id);
    DROP TRIGGER conversations_of_erased;
    CREATE TRIGGER conversations_of_erased AFTER DELETE ON users BEGIN
        DELETE FROM history WHERE a = old.id;
        DELETE FROM history WHERE (a, b) IN (SELECT a, b FROM conversations WHERE b = old.id);
        DELETE FROM conversations WHERE a = old.id;
        DELETE FROM conversations WHERE b = old.id;
        DELETE FROM marks WHERE user_id = old.id;
        DELETE FROM marks WHERE peer_id = old.id;
    END;",
];

/// The schema version this build migrates to.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens `path` (creating it), applies the connection settings and migrates.
pub(crate) fn open(path: &Path, opts: &StoreOptions) -> Result<Connection, StoreError> {
    let mut conn = if opts.process_exclusive {
        Connection::open_with_flags_and_vfs(path, OpenFlags::default(), "unix-excl")?
    } else {
        Connection::open(path)?
    };
    conn.busy_timeout(opts.busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(64);
    // Switching a new file to WAL takes an exclusive lock without the busy handler, so
    // a connection opening beside others retries within the busy timeout.
    let deadline = Instant::now() + opts.busy_timeout;
    let mode = loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(mode) => break mode,
            Err(e) => match StoreError::from(e) {
                StoreError::Busy if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                e => return Err(e),
            },
        }
    };
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotWal(mode));
    }
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "wal_autocheckpoint", opts.checkpoint_pages)?;
    conn.pragma_update(None, "synchronous", opts.synchronous.pragma())?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// `PRAGMA user_version`.
pub(crate) fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Brings the schema to [`SCHEMA_VERSION`]. Idempotent; safe against concurrent
/// openers: the version is read again under the write lock of `BEGIN IMMEDIATE`.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    if version(conn)? == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    // `found` is in 0..=SCHEMA_VERSION, so it indexes MIGRATIONS or is its end.
    let from = usize::try_from(found).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
        tx.execute_batch(sql)?;
        log::info!("store: migrated schema to version {}", i + 1);
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}
