//! The PostgreSQL schema, versioned in the one-row table `imd_schema` with the same
//! numbers as SQLite's `PRAGMA user_version`, and migrated at open.
//!
//! PostgreSQL starts at SQLite's version 5 (no PostgreSQL database of an older
//! version exists): `MIGRATIONS[0]` creates version [`FIRST_VERSION`] whole, and each
//! later SQLite migration gets its PostgreSQL twin appended here under the same number
//! (`pg::tests::both_backends_migrate_to_the_same_version` checks that both lists end at
//! [`crate::SCHEMA_VERSION`]).
//!
//! Every text column is `COLLATE "C"`: ids are ordered and paired (`a < b`) bytewise
//! in Rust and by SQLite, and must be the same here whatever the database's locale.

use postgres::Client;

use crate::error::StoreError;
use crate::store::Result;

/// The version `MIGRATIONS[0]` creates.
pub(crate) const FIRST_VERSION: i64 = 5;

/// Entry `i` migrates version `FIRST_VERSION + i - 1` to `FIRST_VERSION + i`
/// (the first from an empty database). Never edit a released entry; append one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 5: users, friendships, requests, offline messages and kept conversations, as
    //    SQLite's versions 1 to 5 left them.
    r#"CREATE TABLE users (
        id            TEXT COLLATE "C" PRIMARY KEY,
        account       TEXT COLLATE "C" NOT NULL,
        account_key   TEXT COLLATE "C" NOT NULL CONSTRAINT users_account_key UNIQUE,
        password_hash TEXT COLLATE "C" NOT NULL,
        name          TEXT COLLATE "C" NOT NULL DEFAULT '',
        picture       TEXT COLLATE "C" NOT NULL DEFAULT '',
        sex           TEXT COLLATE "C" NOT NULL DEFAULT '',
        birthday      TEXT COLLATE "C" NOT NULL DEFAULT '',
        sign          TEXT COLLATE "C" NOT NULL DEFAULT '',
        mail          TEXT COLLATE "C" NOT NULL DEFAULT '',
        created_ms    BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE friends (
        user_id   TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        friend_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        alias     TEXT COLLATE "C" NOT NULL DEFAULT '',
        PRIMARY KEY (user_id, friend_id)
    );
    CREATE INDEX friends_by_friend ON friends(friend_id);
    CREATE TABLE requests (
        from_id    TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        to_id      TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        note       TEXT COLLATE "C" NOT NULL DEFAULT '',
        created_ms BIGINT NOT NULL DEFAULT 0,
        seq        BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (from_id, to_id)
    );
    CREATE INDEX requests_by_to ON requests(to_id, seq);
    CREATE TABLE messages (
        seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        to_id       TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        from_id     TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        dialogue_id TEXT COLLATE "C" NOT NULL,
        payload     TEXT COLLATE "C" NOT NULL,
        ts_ms       BIGINT NOT NULL
    );
    CREATE INDEX messages_by_to ON messages(to_id, seq);
    CREATE INDEX messages_by_from ON messages(from_id);
    CREATE TABLE conversations (
        a        TEXT COLLATE "C" NOT NULL,
        b        TEXT COLLATE "C" NOT NULL,
        last_seq BIGINT NOT NULL,
        PRIMARY KEY (a, b)
    );
    CREATE TABLE history (
        a           TEXT COLLATE "C" NOT NULL,
        b           TEXT COLLATE "C" NOT NULL,
        seq         BIGINT NOT NULL,
        from_id     TEXT COLLATE "C" NOT NULL,
        to_id       TEXT COLLATE "C" NOT NULL,
        dialogue_id TEXT COLLATE "C" NOT NULL,
        cid         TEXT COLLATE "C",
        payload     TEXT COLLATE "C" NOT NULL,
        ts_ms       BIGINT NOT NULL,
        code        INTEGER NOT NULL DEFAULT 202,
        PRIMARY KEY (a, b, seq)
    );
    CREATE UNIQUE INDEX history_by_cid ON history(from_id, cid) WHERE cid IS NOT NULL;
    CREATE INDEX history_by_ts ON history(ts_ms);
    CREATE INDEX history_by_to ON history(to_id, a, b, seq);
    CREATE TABLE marks (
        user_id   TEXT COLLATE "C" NOT NULL,
        peer_id   TEXT COLLATE "C" NOT NULL,
        delivered BIGINT NOT NULL DEFAULT 0,
        read      BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, peer_id)
    );
    CREATE FUNCTION conversation_ends() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM history
         WHERE a = LEAST(OLD.user_id, OLD.friend_id) AND b = GREATEST(OLD.user_id, OLD.friend_id);
        DELETE FROM conversations
         WHERE a = LEAST(OLD.user_id, OLD.friend_id) AND b = GREATEST(OLD.user_id, OLD.friend_id);
        DELETE FROM marks WHERE user_id = OLD.user_id AND peer_id = OLD.friend_id;
        RETURN NULL;
    END $$;
    CREATE TRIGGER conversation_ends AFTER DELETE ON friends
        FOR EACH ROW EXECUTE FUNCTION conversation_ends();
    CREATE FUNCTION conversations_of_erased() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM history WHERE from_id = OLD.id OR to_id = OLD.id;
        DELETE FROM conversations WHERE a = OLD.id OR b = OLD.id;
        DELETE FROM marks WHERE user_id = OLD.id OR peer_id = OLD.id;
        RETURN NULL;
    END $$;
    CREATE TRIGGER conversations_of_erased AFTER DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION conversations_of_erased();"#,
    // 6: remembered logins (docs/protocol.md §11.2), as SQLite's version 6: a device
    //    token only as its SHA-256; `last_used_ms` slides its expiry.
    r#"CREATE TABLE devices (
        id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id      TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        token_sha256 BYTEA NOT NULL UNIQUE,
        created_ms   BIGINT NOT NULL,
        last_used_ms BIGINT NOT NULL
    );
    CREATE INDEX devices_by_user ON devices(user_id, last_used_ms);"#,
    // 7: SQLite's version 7 indexes history by receiver; PostgreSQL has had that
    //    index (`history_by_to`) since its version 5, so this step only counts.
    "SELECT 1;",
    // 8: as SQLite's version 8, an erase finds the account's rows by index.
    r#"CREATE INDEX conversations_by_b ON conversations(b);
    CREATE INDEX marks_by_peer ON marks(peer_id);
    CREATE OR REPLACE FUNCTION conversations_of_erased() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM history WHERE a = OLD.id;
        DELETE FROM history h USING conversations c
         WHERE c.b = OLD.id AND h.a = c.a AND h.b = c.b;
        DELETE FROM conversations WHERE a = OLD.id;
        DELETE FROM conversations WHERE b = OLD.id;
        DELETE FROM marks WHERE user_id = OLD.id;
        DELETE FROM marks WHERE peer_id = OLD.id;
        RETURN NULL;
    END $$;"#,
];

/// The version this build migrates a PostgreSQL database to: SQLite's.
pub(crate) const SCHEMA_VERSION: i64 = FIRST_VERSION - 1 + MIGRATIONS.len() as i64;

/// Serializes migrations of every node on one database (any fixed number will do;
/// this is "imd" in ASCII).
const MIGRATION_LOCK: i64 = 0x696d64;

/// The version in `imd_schema`; 0 for a database imd never opened.
pub(crate) fn version(client: &mut Client) -> Result<i64> {
    let exists: bool =
        client.query_one("SELECT to_regclass('imd_schema') IS NOT NULL", &[])?.try_get(0)?;
    if !exists {
        return Ok(0);
    }
    let row = client.query_opt("SELECT version FROM imd_schema", &[])?;
    Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction, holding an advisory
/// lock so that nodes starting together migrate once: each reads the version under
/// the lock. Idempotent.
pub(crate) fn migrate(client: &mut Client) -> Result<()> {
    if version(client)? == SCHEMA_VERSION {
        return Ok(());
    }
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS imd_schema (version BIGINT NOT NULL)")?;
    let found: i64 = match tx.query_opt("SELECT version FROM imd_schema", &[])? {
        Some(row) => row.try_get(0)?,
        None => {
            tx.execute("INSERT INTO imd_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    // A fresh database (0) runs every entry; one at version v runs those above v.
    let done = usize::try_from(found - (FIRST_VERSION - 1)).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(sql)?;
        log::info!("store: migrated the PostgreSQL schema to version {}", FIRST_VERSION + i as i64);
    }
    tx.execute("UPDATE imd_schema SET version = $1", &[&SCHEMA_VERSION])?;
    tx.commit()?;
    Ok(())
}
