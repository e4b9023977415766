//! `Sqlite`: one SQLite connection and every operation of the daemon on it, behind
//! [`Store`](crate::Store).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use crate::error::{is_account_taken, StoreError};
use crate::rows::{
    DirectoryRow, FriendRow, NewMessage, NewUser, ProfileUpdate, RequestRow, Requested,
    StoredMessage, UserRow,
};
use crate::schema::{self, StoreOptions};

/// The result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One connection to an imd SQLite database. The daemon opens one per worker thread;
/// it is `Send` but not `Sync`.
///
/// Every write runs in a `BEGIN IMMEDIATE` transaction: it takes the write lock
/// first (waiting up to the busy timeout), so under WAL it never fails half-way with
/// `SQLITE_BUSY`. Multi-statement operations are atomic.
#[derive(Debug)]
pub(crate) struct Sqlite {
    pub(crate) conn: Connection,
}

pub(crate) const USER_COLUMNS: &str =
    "id, account, password_hash, name, picture, sex, birthday, sign, mail, created_ms";

pub(crate) fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        account: r.get(1)?,
        password_hash: r.get(2)?,
        name: r.get(3)?,
        picture: r.get(4)?,
        sex: r.get(5)?,
        birthday: r.get(6)?,
        sign: r.get(7)?,
        mail: r.get(8)?,
        created_ms: r.get(9)?,
    })
}

/// The unique key of an account: ASCII-lowercased (§1: accounts match
/// case-insensitively, ASCII).
pub(crate) fn account_key(account: &str) -> String {
    account.to_ascii_lowercase()
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// SQLite takes `i64` limits; anything larger is "no limit".
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The user `id`, read on `conn` (inside a transaction, under its lock).
fn user_in(conn: &Connection, id: &str) -> Result<Option<UserRow>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
    let mut st = conn.prepare_cached(&sql)?;
    Ok(st.query_row([id], user_row).optional()?)
}

fn friends_in(conn: &Connection, a: &str, b: &str) -> Result<bool> {
    let mut st =
        conn.prepare_cached("SELECT 1 FROM friends WHERE user_id = ?1 AND friend_id = ?2")?;
    Ok(st.exists([a, b])?)
}

fn request_in(conn: &Connection, from: &str, to: &str) -> Result<bool> {
    let mut st = conn.prepare_cached("SELECT 1 FROM requests WHERE from_id = ?1 AND to_id = ?2")?;
    Ok(st.exists([from, to])?)
}

/// Both friendship rows (an existing row keeps its alias) and no request left between
/// `a` and `b`, either way.
fn befriend_in(
    conn: &Connection,
    a: &str,
    alias_a_for_b: &str,
    b: &str,
    alias_b_for_a: &str,
) -> Result<()> {
    let mut ins = conn.prepare_cached(
        "INSERT INTO friends (user_id, friend_id, alias) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id, friend_id) DO NOTHING",
    )?;
    ins.execute([a, b, alias_a_for_b])?;
    ins.execute([b, a, alias_b_for_a])?;
    conn.prepare_cached(
        "DELETE FROM requests
         WHERE (from_id = ?1 AND to_id = ?2) OR (from_id = ?2 AND to_id = ?1)",
    )?
    .execute([a, b])?;
    Ok(())
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path`: WAL journaling, foreign
    /// keys on, `opts`' busy timeout and synchronous level, and the schema migrated
    /// to the current version. Several threads or processes may open the same file
    /// at once.
    pub fn open(path: &Path, opts: &StoreOptions) -> Result<Sqlite> {
        Ok(Sqlite { conn: schema::open(path, opts)? })
    }

    /// `PRAGMA user_version` of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        schema::version(&self.conn)
    }

    /// `PRAGMA integrity_check`: `true` when SQLite reports "ok".
    pub fn integrity_check(&self) -> Result<bool> {
        let first: String = self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        Ok(first == "ok")
    }

    /// Writes a consistent copy of the database, committed WAL frames included, to a
    /// new file at `to` (`VACUUM INTO`). Works while the file this connection opened
    /// has been deleted, as long as the connection stays open.
    pub fn copy_to(&self, to: &Path) -> Result<()> {
        let to = to
            .to_str()
            .ok_or_else(|| StoreError::Sqlite(rusqlite::Error::InvalidPath(to.to_path_buf())))?;
        self.conn.execute("VACUUM INTO ?1", [to])?;
        Ok(())
    }

    pub(crate) fn write(&mut self) -> Result<Transaction<'_>> {
        Ok(self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    // ---- users ----

    /// Registers `user`. [`StoreError::AccountTaken`] when the account exists
    /// (ASCII case-insensitively); of racing registrations exactly one wins.
    pub fn create_user(&mut self, user: &NewUser) -> Result<()> {
        let tx = self.write()?;
        let inserted = tx.execute(
            "INSERT INTO users (id, account, account_key, password_hash, name,
                                picture, sex, birthday, sign, mail, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                user.id,
                user.account,
                account_key(&user.account),
                user.password_hash,
                user.name,
                user.picture,
                user.sex,
                user.birthday,
                user.sign,
                user.mail,
                now_ms(),
            ],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if is_account_taken(&e) => return Err(StoreError::AccountTaken),
            Err(e) => return Err(e.into()),
        }
        tx.commit()?;
        Ok(())
    }

    /// The user whose account is `account`, ASCII case-insensitively.
    pub fn user_by_account(&self, account: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE account_key = ?1");
        let mut st = self.conn.prepare_cached(&sql)?;
        Ok(st.query_row([account_key(account)], user_row).optional()?)
    }

    /// The user with id `id`.
    pub fn user_by_id(&self, id: &str) -> Result<Option<UserRow>> {
        user_in(&self.conn, id)
    }

    /// Whether `account` is registered, ASCII case-insensitively.
    pub fn account_exists(&self, account: &str) -> Result<bool> {
        let mut st = self.conn.prepare_cached("SELECT 1 FROM users WHERE account_key = ?1")?;
        Ok(st.exists([account_key(account)])?)
    }

    /// Applies `update` (`None` fields unchanged) and returns the profile as it now
    /// stands, read in the same transaction. [`StoreError::UserGone`] when there is no
    /// such user (erased meanwhile).
    pub fn update_profile(&mut self, id: &str, update: &ProfileUpdate) -> Result<UserRow> {
        let tx = self.write()?;
        let n = tx.execute(
            "UPDATE users SET
                name = COALESCE(?2, name),
                picture = COALESCE(?3, picture),
                sex = COALESCE(?4, sex),
                birthday = COALESCE(?5, birthday),
                sign = COALESCE(?6, sign),
                mail = COALESCE(?7, mail),
                password_hash = COALESCE(?8, password_hash)
             WHERE id = ?1",
            params![
                id,
                update.name,
                update.picture,
                update.sex,
                update.birthday,
                update.sign,
                update.mail,
                update.password_hash,
            ],
        )?;
        let row = match user_in(&tx, id)? {
            Some(row) if n > 0 => row,
            _ => return Err(StoreError::UserGone),
        };
        // A new password revokes every remembered login (docs/protocol.md §11.2), in the
        // same commit: no device token outlives the password it was issued under.
        if update.password_hash.is_some() {
            tx.execute("DELETE FROM devices WHERE user_id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(row)
    }

    /// Replaces the password hash of `id` with `new` if it is still `old` (a login's
    /// rehash to the current parameters loses to a password change made meanwhile).
    pub fn rehash_password(&mut self, id: &str, old: &str, new: &str) -> Result<bool> {
        let tx = self.write()?;
        let n = tx.execute(
            "UPDATE users SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2",
            params![id, old, new],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Deletes the user `id` with its friendships (both sides), its requests (both
    /// ways), the undelivered messages it sent or was sent and its remembered logins,
    /// in one transaction. Returns the ids of its former friends; [`StoreError::UserGone`] when there is no
    /// such user (erased already: of two racing erases, one succeeds).
    pub fn delete_user(&mut self, id: &str) -> Result<Vec<String>> {
        let tx = self.write()?;
        if user_in(&tx, id)?.is_none() {
            return Err(StoreError::UserGone);
        }
        let friends = {
            let mut st = tx.prepare("SELECT friend_id FROM friends WHERE user_id = ?1")?;
            let ids = st.query_map([id], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
            ids
        };
        // The foreign keys cascade too; explicit deletes keep this right even on a
        // connection opened without them.
        tx.execute("DELETE FROM friends WHERE user_id = ?1 OR friend_id = ?1", [id])?;
        tx.execute("DELETE FROM requests WHERE from_id = ?1 OR to_id = ?1", [id])?;
        tx.execute("DELETE FROM messages WHERE from_id = ?1 OR to_id = ?1", [id])?;
        tx.execute("DELETE FROM devices WHERE user_id = ?1", [id])?;
        tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(friends)
    }

    /// Every user as the search directory lists them; a picture longer than
    /// `picture_limit` bytes is left out (`None`), so a start reads no large picture.
    pub fn directory(&self, picture_limit: usize) -> Result<Vec<DirectoryRow>> {
        let mut st = self.conn.prepare(
            "SELECT id, account, name,
                    CASE WHEN octet_length(picture) <= ?1 THEN picture END,
                    sex, birthday, sign
             FROM users",
        )?;
        let rows = st.query_map([sql_limit(picture_limit)], |r| {
            Ok(DirectoryRow {
                id: r.get(0)?,
                account: r.get(1)?,
                name: r.get(2)?,
                picture: r.get(3)?,
                sex: r.get(4)?,
                birthday: r.get(5)?,
                sign: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- friendships ----

    /// Whether `a` has `b` as a friend.
    pub fn are_friends(&self, a: &str, b: &str) -> Result<bool> {
        friends_in(&self.conn, a, b)
    }

    /// My friends: my alias for each, and their own profile; by alias, then id.
    pub fn friends_of(&self, id: &str) -> Result<Vec<FriendRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT u.id, f.alias, u.name, u.picture, u.sex, u.birthday, u.sign
             FROM friends f JOIN users u ON u.id = f.friend_id
             WHERE f.user_id = ?1 ORDER BY f.alias, u.id",
        )?;
        let rows = st.query_map([id], |r| {
            Ok(FriendRow {
                id: r.get(0)?,
                alias: r.get(1)?,
                name: r.get(2)?,
                picture: r.get(3)?,
                sex: r.get(4)?,
                birthday: r.get(5)?,
                sign: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The ids of my friends.
    pub fn friend_ids(&self, id: &str) -> Result<Vec<String>> {
        let mut st =
            self.conn.prepare_cached("SELECT friend_id FROM friends WHERE user_id = ?1")?;
        let rows = st.query_map([id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Who has me as a friend, each with the alias they gave me: `(their id, alias)`.
    /// For push 301, whose `name` is the receiver's alias.
    pub fn aliases_for(&self, id: &str) -> Result<Vec<(String, String)>> {
        let mut st =
            self.conn.prepare_cached("SELECT user_id, alias FROM friends WHERE friend_id = ?1")?;
        let rows = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Makes `a` and `b` friends, `a` calling `b` `alias_a_for_b` and `b` calling `a`
    /// `alias_b_for_a`, and deletes the pending requests between them both ways, in one
    /// transaction. An existing friendship row keeps its alias.
    pub fn make_friends(
        &mut self,
        a: &str,
        alias_a_for_b: &str,
        b: &str,
        alias_b_for_a: &str,
    ) -> Result<()> {
        let tx = self.write()?;
        befriend_in(&tx, a, alias_a_for_b, b, alias_b_for_a)?;
        tx.commit()?;
        Ok(())
    }

    /// Ends the friendship of `a` and `b` on both sides; `false` when there was none.
    pub fn remove_friendship(&mut self, a: &str, b: &str) -> Result<bool> {
        let tx = self.write()?;
        let n = tx.execute(
            "DELETE FROM friends
             WHERE (user_id = ?1 AND friend_id = ?2) OR (user_id = ?2 AND friend_id = ?1)",
            [a, b],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    // ---- friend requests ----

    /// `from` asks `to` to be friends, `note` attached (§5.2), decided in one
    /// transaction so that crossing requests and an erase racing either side get the
    /// answers of one running after the other:
    ///
    /// - [`StoreError::UserGone`] when `from` no longer exists;
    /// - [`StoreError::AlreadyFriends`], then [`StoreError::NoSuchUser`] for `to`;
    /// - when `to` has already asked `from`, they become friends (each calling the
    ///   other by their profile name) and the request is deleted:
    ///   [`Requested::Befriended`];
    /// - otherwise the request is stored, a repeat replacing the note and moving it to
    ///   the newest place: [`Requested::Stored`]. A new request to a target that holds
    ///   `cap` pending requests is refused with [`StoreError::TooManyRequests`].
    pub fn request_friend(
        &mut self,
        from: &str,
        to: &str,
        note: &str,
        cap: usize,
    ) -> Result<Requested> {
        let tx = self.write()?;
        let requester = user_in(&tx, from)?.ok_or(StoreError::UserGone)?;
        if friends_in(&tx, from, to)? {
            return Err(StoreError::AlreadyFriends);
        }
        let target = user_in(&tx, to)?.ok_or(StoreError::NoSuchUser)?;
        if request_in(&tx, to, from)? {
            befriend_in(&tx, from, &target.name, to, &requester.name)?;
            tx.commit()?;
            return Ok(Requested::Befriended { requester, target: Box::new(target) });
        }
        if !request_in(&tx, from, to)? {
            let held: i64 = tx
                .prepare_cached("SELECT count(*) FROM requests WHERE to_id = ?1")?
                .query_row([to], |r| r.get(0))?;
            if held >= sql_limit(cap) {
                return Err(StoreError::TooManyRequests);
            }
        }
        tx.prepare_cached(
            "INSERT INTO requests (from_id, to_id, note, created_ms, seq)
             VALUES (?1, ?2, ?3, ?4,
                     (SELECT coalesce(max(seq), 0) + 1 FROM requests WHERE to_id = ?2))
             ON CONFLICT (from_id, to_id) DO UPDATE
             SET note = excluded.note, created_ms = excluded.created_ms, seq = excluded.seq",
        )?
        .execute(params![from, to, note, now_ms()])?;
        tx.commit()?;
        Ok(Requested::Stored { requester })
    }

    /// `me` accepts the request of `from`, calling them `alias` (§5.3), in one
    /// transaction: [`StoreError::UserGone`] when `me` no longer exists, then
    /// [`StoreError::AlreadyFriends`], [`StoreError::NoSuchUser`] (`from` was never
    /// registered or was erased meanwhile) and [`StoreError::NoRequest`]. Otherwise
    /// they become friends, `from` calling me by my profile name, and the requests
    /// between them are deleted both ways. Returns my row, for the push to `from`.
    pub fn accept_request(&mut self, me: &str, from: &str, alias: &str) -> Result<UserRow> {
        let tx = self.write()?;
        let mine = user_in(&tx, me)?.ok_or(StoreError::UserGone)?;
        if friends_in(&tx, me, from)? {
            return Err(StoreError::AlreadyFriends);
        }
        if user_in(&tx, from)?.is_none() {
            return Err(StoreError::NoSuchUser);
        }
        if !request_in(&tx, from, me)? {
            return Err(StoreError::NoRequest);
        }
        befriend_in(&tx, me, alias, from, &mine.name)?;
        tx.commit()?;
        Ok(mine)
    }

    /// Whether a request `from` → `to` is pending.
    pub fn pending_request(&self, from: &str, to: &str) -> Result<bool> {
        request_in(&self.conn, from, to)
    }

    /// Up to `limit` requests pending for `id`, the newest first, with each
    /// requester's name.
    pub fn requests_to(&self, id: &str, limit: usize) -> Result<Vec<RequestRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT r.from_id, u.name, r.to_id, r.note
             FROM requests r JOIN users u ON u.id = r.from_id
             WHERE r.to_id = ?1 ORDER BY r.seq DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![id, sql_limit(limit)], |r| {
            Ok(RequestRow {
                from_id: r.get(0)?,
                from_name: r.get(1)?,
                to_id: r.get(2)?,
                note: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes the request `from` → `to`; `false` when there was none.
    pub fn delete_request(&mut self, from: &str, to: &str) -> Result<bool> {
        let tx = self.write()?;
        let n = tx.execute("DELETE FROM requests WHERE from_id = ?1 AND to_id = ?2", [from, to])?;
        tx.commit()?;
        Ok(n > 0)
    }

    // ---- offline messages ----

    /// Keeps one message from `from` for its offline friend `to`; returns its sequence
    /// number. The friendship is checked in the same transaction: a friend removed or
    /// erased after the sender's own check gets [`StoreError::NotFriends`], not a
    /// foreign-key failure.
    pub fn store_message(
        &mut self,
        to: &str,
        from: &str,
        dialogue_id: &str,
        payload: &str,
        ts_ms: i64,
    ) -> Result<i64> {
        let tx = self.write()?;
        if !friends_in(&tx, from, to)? {
            return Err(StoreError::NotFriends);
        }
        tx.prepare_cached(
            "INSERT INTO messages (to_id, from_id, dialogue_id, payload, ts_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![to, from, dialogue_id, payload, ts_ms])?;
        let seq = tx.last_insert_rowid();
        tx.commit()?;
        Ok(seq)
    }

    /// Keeps `messages` in one transaction (group commit); returns their sequence
    /// numbers, in order.
    pub fn store_messages(&mut self, messages: &[NewMessage<'_>]) -> Result<Vec<i64>> {
        let tx = self.write()?;
        let mut seqs = Vec::with_capacity(messages.len());
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO messages (to_id, from_id, dialogue_id, payload, ts_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for m in messages {
                ins.execute(params![m.to_id, m.from_id, m.dialogue_id, m.payload, m.ts_ms])?;
                seqs.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(seqs)
    }

    /// Up to `limit` messages waiting for `to`, oldest first.
    pub fn pending_messages(&self, to: &str, limit: usize) -> Result<Vec<StoredMessage>> {
        let mut st = self.conn.prepare_cached(
            "SELECT seq, from_id, dialogue_id, payload, ts_ms FROM messages
             WHERE to_id = ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = st.query_map(params![to, sql_limit(limit)], |r| {
            Ok(StoredMessage {
                seq: r.get(0)?,
                from_id: r.get(1)?,
                dialogue_id: r.get(2)?,
                payload: r.get(3)?,
                ts_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes the messages for `to` with sequence numbers up to `seq` (delivered);
    /// returns how many.
    pub fn delete_messages_upto(&mut self, to: &str, seq: i64) -> Result<usize> {
        let tx = self.write()?;
        let n =
            tx.execute("DELETE FROM messages WHERE to_id = ?1 AND seq <= ?2", params![to, seq])?;
        tx.commit()?;
        Ok(n)
    }
}
