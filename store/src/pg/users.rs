//! Users, friendships, friend requests and offline messages on PostgreSQL: the
//! statements of `crate::store`, in PostgreSQL's dialect, with the same checks in the
//! same order inside each transaction.

use postgres::Row;

use super::conn::Queries;
use super::{is_account_taken, sql_limit, Postgres};
use crate::error::StoreError;
use crate::rows::{
    DirectoryRow, FriendRow, NewMessage, NewUser, ProfileUpdate, RequestRow, Requested,
    StoredMessage, UserRow,
};
use crate::store::{account_key, now_ms, Result};

pub(crate) const USER_COLUMNS: &str =
    "id, account, password_hash, name, picture, sex, birthday, sign, mail, created_ms";

pub(crate) fn user_row(r: &Row) -> Result<UserRow, postgres::Error> {
    Ok(UserRow {
        id: r.try_get(0)?,
        account: r.try_get(1)?,
        password_hash: r.try_get(2)?,
        name: r.try_get(3)?,
        picture: r.try_get(4)?,
        sex: r.try_get(5)?,
        birthday: r.try_get(6)?,
        sign: r.try_get(7)?,
        mail: r.try_get(8)?,
        created_ms: r.try_get(9)?,
    })
}

fn user_in(c: &mut impl Queries, id: &str) -> Result<Option<UserRow>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    Ok(c.query_opt(&sql, &[&id])?.map(|r| user_row(&r)).transpose()?)
}

fn friends_in(c: &mut impl Queries, a: &str, b: &str) -> Result<bool> {
    let sql = "SELECT 1 FROM friends WHERE user_id = $1 AND friend_id = $2";
    Ok(c.query_opt(sql, &[&a, &b])?.is_some())
}

fn request_in(c: &mut impl Queries, from: &str, to: &str) -> Result<bool> {
    let sql = "SELECT 1 FROM requests WHERE from_id = $1 AND to_id = $2";
    Ok(c.query_opt(sql, &[&from, &to])?.is_some())
}

/// Both friendship rows (an existing row keeps its alias) and no request left between
/// `a` and `b`, either way.
fn befriend_in(
    c: &mut impl Queries,
    a: &str,
    alias_a_for_b: &str,
    b: &str,
    alias_b_for_a: &str,
) -> Result<()> {
    let ins = "INSERT INTO friends (user_id, friend_id, alias) VALUES ($1, $2, $3)
               ON CONFLICT (user_id, friend_id) DO NOTHING";
    c.execute(ins, &[&a, &b, &alias_a_for_b])?;
    c.execute(ins, &[&b, &a, &alias_b_for_a])?;
    c.execute(
        "DELETE FROM requests
         WHERE (from_id = $1 AND to_id = $2) OR (from_id = $2 AND to_id = $1)",
        &[&a, &b],
    )?;
    Ok(())
}

fn strings(rows: Vec<Row>) -> Result<Vec<String>> {
    Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, postgres::Error>>()?)
}

impl Postgres {
    // ---- users ----

    pub(crate) fn create_user(&mut self, user: &NewUser) -> Result<()> {
        let key = account_key(&user.account);
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO users (id, account, account_key, password_hash, name,
                                    picture, sex, birthday, sign, mail, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &user.id,
                    &user.account,
                    &key,
                    &user.password_hash,
                    &user.name,
                    &user.picture,
                    &user.sex,
                    &user.birthday,
                    &user.sign,
                    &user.mail,
                    &now_ms(),
                ],
            );
            match inserted {
                Ok(_) => Ok(()),
                Err(e) if is_account_taken(&e) => Err(StoreError::AccountTaken),
                Err(e) => Err(e.into()),
            }
        })
    }

    pub(crate) fn user_by_account(&self, account: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE account_key = $1");
        let row = self.client.borrow_mut().query_opt(&sql, &[&account_key(account)])?;
        Ok(row.map(|r| user_row(&r)).transpose()?)
    }

    pub(crate) fn user_by_id(&self, id: &str) -> Result<Option<UserRow>> {
        user_in(&mut *self.client.borrow_mut(), id)
    }

    pub(crate) fn account_exists(&self, account: &str) -> Result<bool> {
        let sql = "SELECT 1 FROM users WHERE account_key = $1";
        Ok(self.client.borrow_mut().query_opt(sql, &[&account_key(account)])?.is_some())
    }

    pub(crate) fn update_profile(&mut self, id: &str, update: &ProfileUpdate) -> Result<UserRow> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE users SET
                    name = COALESCE($2, name),
                    picture = COALESCE($3, picture),
                    sex = COALESCE($4, sex),
                    birthday = COALESCE($5, birthday),
                    sign = COALESCE($6, sign),
                    mail = COALESCE($7, mail),
                    password_hash = COALESCE($8, password_hash)
                 WHERE id = $1",
                &[
                    &id,
                    &update.name,
                    &update.picture,
                    &update.sex,
                    &update.birthday,
                    &update.sign,
                    &update.mail,
                    &update.password_hash,
                ],
            )?;
            let row = match user_in(tx, id)? {
                Some(row) if n > 0 => row,
                _ => return Err(StoreError::UserGone),
            };
            // A new password revokes every remembered login, in the same commit.
            if update.password_hash.is_some() {
                tx.execute("DELETE FROM devices WHERE user_id = $1", &[&id])?;
            }
            Ok(row)
        })
    }

    pub(crate) fn rehash_password(&mut self, id: &str, old: &str, new: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
                &[&id, &old, &new],
            )?;
            Ok(n > 0)
        })
    }

    pub(crate) fn delete_user(&mut self, id: &str) -> Result<Vec<String>> {
        self.write(|tx| {
            if user_in(tx, id)?.is_none() {
                return Err(StoreError::UserGone);
            }
            let friends =
                strings(tx.query("SELECT friend_id FROM friends WHERE user_id = $1", &[&id])?)?;
            tx.execute("DELETE FROM friends WHERE user_id = $1 OR friend_id = $1", &[&id])?;
            tx.execute("DELETE FROM requests WHERE from_id = $1 OR to_id = $1", &[&id])?;
            tx.execute("DELETE FROM messages WHERE from_id = $1 OR to_id = $1", &[&id])?;
            tx.execute("DELETE FROM devices WHERE user_id = $1", &[&id])?;
            tx.execute("DELETE FROM users WHERE id = $1", &[&id])?;
            Ok(friends)
        })
    }

    pub(crate) fn directory(&self, picture_limit: usize) -> Result<Vec<DirectoryRow>> {
        let rows = self.client.borrow_mut().query(
            "SELECT id, account, name,
                    CASE WHEN octet_length(picture) <= $1::bigint THEN picture END,
                    sex, birthday, sign
             FROM users",
            &[&sql_limit(picture_limit)],
        )?;
        let row = |r: &Row| -> Result<DirectoryRow, postgres::Error> {
            Ok(DirectoryRow {
                id: r.try_get(0)?,
                account: r.try_get(1)?,
                name: r.try_get(2)?,
                picture: r.try_get(3)?,
                sex: r.try_get(4)?,
                birthday: r.try_get(5)?,
                sign: r.try_get(6)?,
            })
        };
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    // ---- friendships ----

    pub(crate) fn are_friends(&self, a: &str, b: &str) -> Result<bool> {
        friends_in(&mut *self.client.borrow_mut(), a, b)
    }

    pub(crate) fn friends_of(&self, id: &str) -> Result<Vec<FriendRow>> {
        let rows = self.client.borrow_mut().query(
            "SELECT u.id, f.alias, u.name, u.picture, u.sex, u.birthday, u.sign
             FROM friends f JOIN users u ON u.id = f.friend_id
             WHERE f.user_id = $1 ORDER BY f.alias, u.id",
            &[&id],
        )?;
        let row = |r: &Row| -> Result<FriendRow, postgres::Error> {
            Ok(FriendRow {
                id: r.try_get(0)?,
                alias: r.try_get(1)?,
                name: r.try_get(2)?,
                picture: r.try_get(3)?,
                sex: r.try_get(4)?,
                birthday: r.try_get(5)?,
                sign: r.try_get(6)?,
            })
        };
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    pub(crate) fn friend_ids(&self, id: &str) -> Result<Vec<String>> {
        let sql = "SELECT friend_id FROM friends WHERE user_id = $1";
        strings(self.client.borrow_mut().query(sql, &[&id])?)
    }

    pub(crate) fn aliases_for(&self, id: &str) -> Result<Vec<(String, String)>> {
        let sql = "SELECT user_id, alias FROM friends WHERE friend_id = $1";
        let rows = self.client.borrow_mut().query(sql, &[&id])?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, postgres::Error>>()?)
    }

    pub(crate) fn make_friends(
        &mut self,
        a: &str,
        alias_a_for_b: &str,
        b: &str,
        alias_b_for_a: &str,
    ) -> Result<()> {
        self.write(|tx| befriend_in(tx, a, alias_a_for_b, b, alias_b_for_a))
    }

    pub(crate) fn remove_friendship(&mut self, a: &str, b: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM friends
                 WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)",
                &[&a, &b],
            )?;
            Ok(n > 0)
        })
    }

    // ---- friend requests ----

    pub(crate) fn request_friend(
        &mut self,
        from: &str,
        to: &str,
        note: &str,
        cap: usize,
    ) -> Result<Requested> {
        self.write(|tx| {
            let requester = user_in(tx, from)?.ok_or(StoreError::UserGone)?;
            if friends_in(tx, from, to)? {
                return Err(StoreError::AlreadyFriends);
            }
            let target = user_in(tx, to)?.ok_or(StoreError::NoSuchUser)?;
            if request_in(tx, to, from)? {
                befriend_in(tx, from, &target.name, to, &requester.name)?;
                return Ok(Requested::Befriended { requester, target: Box::new(target) });
            }
            if !request_in(tx, from, to)? {
                let held: i64 = tx
                    .query_one("SELECT count(*) FROM requests WHERE to_id = $1", &[&to])?
                    .try_get(0)?;
                if held >= sql_limit(cap) {
                    return Err(StoreError::TooManyRequests);
                }
            }
            tx.execute(
                "INSERT INTO requests (from_id, to_id, note, created_ms, seq)
                 VALUES ($1, $2, $3, $4,
                         (SELECT coalesce(max(seq), 0) + 1 FROM requests WHERE to_id = $2))
                 ON CONFLICT (from_id, to_id) DO UPDATE
                 SET note = excluded.note, created_ms = excluded.created_ms, seq = excluded.seq",
                &[&from, &to, &note, &now_ms()],
            )?;
            Ok(Requested::Stored { requester })
        })
    }

    pub(crate) fn accept_request(&mut self, me: &str, from: &str, alias: &str) -> Result<UserRow> {
        self.write(|tx| {
            let mine = user_in(tx, me)?.ok_or(StoreError::UserGone)?;
            if friends_in(tx, me, from)? {
                return Err(StoreError::AlreadyFriends);
            }
            if user_in(tx, from)?.is_none() {
                return Err(StoreError::NoSuchUser);
            }
            if !request_in(tx, from, me)? {
                return Err(StoreError::NoRequest);
            }
            befriend_in(tx, me, alias, from, &mine.name)?;
            Ok(mine)
        })
    }

    pub(crate) fn pending_request(&self, from: &str, to: &str) -> Result<bool> {
        request_in(&mut *self.client.borrow_mut(), from, to)
    }

    pub(crate) fn requests_to(&self, id: &str, limit: usize) -> Result<Vec<RequestRow>> {
        let rows = self.client.borrow_mut().query(
            "SELECT r.from_id, u.name, r.to_id, r.note
             FROM requests r JOIN users u ON u.id = r.from_id
             WHERE r.to_id = $1 ORDER BY r.seq DESC LIMIT $2",
            &[&id, &sql_limit(limit)],
        )?;
        let row = |r: &Row| -> Result<RequestRow, postgres::Error> {
            Ok(RequestRow {
                from_id: r.try_get(0)?,
                from_name: r.try_get(1)?,
                to_id: r.try_get(2)?,
                note: r.try_get(3)?,
            })
        };
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    pub(crate) fn delete_request(&mut self, from: &str, to: &str) -> Result<bool> {
        self.write(|tx| {
            let sql = "DELETE FROM requests WHERE from_id = $1 AND to_id = $2";
            Ok(tx.execute(sql, &[&from, &to])? > 0)
        })
    }

    // ---- offline messages ----

    pub(crate) fn store_message(
        &mut self,
        to: &str,
        from: &str,
        dialogue_id: &str,
        payload: &str,
        ts_ms: i64,
    ) -> Result<i64> {
        self.write(|tx| {
            if !friends_in(tx, from, to)? {
                return Err(StoreError::NotFriends);
            }
            Ok(tx
                .query_one(
                    "INSERT INTO messages (to_id, from_id, dialogue_id, payload, ts_ms)
                     VALUES ($1, $2, $3, $4, $5) RETURNING seq",
                    &[&to, &from, &dialogue_id, &payload, &ts_ms],
                )?
                .try_get(0)?)
        })
    }

    pub(crate) fn store_messages(&mut self, messages: &[NewMessage<'_>]) -> Result<Vec<i64>> {
        self.write(|tx| {
            let ins = "INSERT INTO messages (to_id, from_id, dialogue_id, payload, ts_ms)
                       VALUES ($1, $2, $3, $4, $5) RETURNING seq";
            let mut seqs = Vec::with_capacity(messages.len());
            for m in messages {
                let row = tx.query_one(
                    ins,
                    &[&m.to_id, &m.from_id, &m.dialogue_id, &m.payload, &m.ts_ms],
                )?;
                seqs.push(row.try_get(0)?);
            }
            Ok(seqs)
        })
    }

    pub(crate) fn pending_messages(&self, to: &str, limit: usize) -> Result<Vec<StoredMessage>> {
        let rows = self.client.borrow_mut().query(
            "SELECT seq, from_id, dialogue_id, payload, ts_ms FROM messages
             WHERE to_id = $1 ORDER BY seq LIMIT $2",
            &[&to, &sql_limit(limit)],
        )?;
        let row = |r: &Row| -> Result<StoredMessage, postgres::Error> {
            Ok(StoredMessage {
                seq: r.try_get(0)?,
                from_id: r.try_get(1)?,
                dialogue_id: r.try_get(2)?,
                payload: r.try_get(3)?,
                ts_ms: r.try_get(4)?,
            })
        };
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    pub(crate) fn delete_messages_upto(&mut self, to: &str, seq: i64) -> Result<usize> {
        self.write(|tx| {
            let sql = "DELETE FROM messages WHERE to_id = $1 AND seq <= $2";
            Ok(usize::try_from(tx.execute(sql, &[&to, &seq])?).unwrap_or(usize::MAX))
        })
    }

    // ---- checks ----

    /// The store's own invariants, PostgreSQL having no `PRAGMA integrity_check`:
    /// friendships are mutual, and no message is numbered above its pair's counter.
    pub(crate) fn integrity_check(&self) -> Result<bool> {
        let broken: i64 = self
            .client
            .borrow_mut()
            .query_one(
                "SELECT (SELECT count(*) FROM friends f WHERE NOT EXISTS
                           (SELECT 1 FROM friends g
                            WHERE g.user_id = f.friend_id AND g.friend_id = f.user_id))
                      + (SELECT count(*) FROM history h WHERE h.seq > COALESCE(
                           (SELECT last_seq FROM conversations c
                            WHERE c.a = h.a AND c.b = h.b), 0))",
                &[],
            )?
            .try_get(0)?;
        Ok(broken == 0)
    }
}
