//! Kept conversations on PostgreSQL (docs/protocol.md §10), as `crate::history` keeps
//! them on SQLite.
//!
//! `seq` comes from the pair's row in `conversations`, incremented by
//! `INSERT … ON CONFLICT DO UPDATE … RETURNING` inside the transaction that stores the
//! message: the row's lock orders writers of one conversation on every node, and a
//! transaction that rolls back takes its increment with it, so numbers stay dense
//! (a `SEQUENCE` would leave gaps). The primary key `(a, b, seq)` refuses a duplicate.

use postgres::Row;

use super::conn::{Queries, Tx};
use super::{sql_limit, Postgres};
use crate::history::{
    pair, Appended, ConversationState, Delivered, HistoryMessage, NewHistoryMessage, Window,
};
use crate::store::Result;

const MESSAGE_COLUMNS: &str = "seq, from_id, to_id, dialogue_id, cid, payload, ts_ms, code";

fn message_row(r: &Row) -> Result<HistoryMessage, postgres::Error> {
    let code: i32 = r.try_get(7)?;
    Ok(HistoryMessage {
        seq: r.try_get(0)?,
        from_id: r.try_get(1)?,
        to_id: r.try_get(2)?,
        dialogue_id: r.try_get(3)?,
        cid: r.try_get(4)?,
        payload: r.try_get(5)?,
        ts_ms: r.try_get(6)?,
        // Only 200 and 202 are written.
        code: u16::try_from(code).unwrap_or(202),
    })
}

fn messages_of(rows: &[Row]) -> Result<Vec<HistoryMessage>> {
    Ok(rows.iter().map(message_row).collect::<Result<_, _>>()?)
}

fn append_one(tx: &mut Tx<'_>, m: &NewHistoryMessage) -> Result<Appended> {
    if let Some(cid) = &m.cid {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM history WHERE from_id = $1 AND cid = $2");
        if let Some(found) = tx.query_opt(&sql, &[&m.from_id, cid])? {
            return Ok(Appended::Existing(message_row(&found)?));
        }
    }
    let friends = tx.query_opt(
        "SELECT 1 FROM friends WHERE user_id = $1 AND friend_id = $2",
        &[&m.from_id, &m.to_id],
    )?;
    if friends.is_none() {
        return Ok(Appended::NotFriends);
    }
    let (a, b) = pair(&m.from_id, &m.to_id);
    let seq: i64 = tx
        .query_one(
            "INSERT INTO conversations (a, b, last_seq) VALUES ($1, $2, 1)
             ON CONFLICT (a, b) DO UPDATE SET last_seq = conversations.last_seq + 1
             RETURNING last_seq",
            &[&a, &b],
        )?
        .try_get(0)?;
    let code: i32 = if m.live { 200 } else { 202 };
    tx.execute(
        "INSERT INTO history (a, b, seq, from_id, to_id, dialogue_id, cid, payload, ts_ms, code)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[&a, &b, &seq, &m.from_id, &m.to_id, &m.dialogue_id, &m.cid, &m.payload, &m.ts_ms, &code],
    )?;
    Ok(Appended::New { seq })
}

/// The last `seq` of the conversation of `x` and `y`; 0 when there is none.
fn last_seq(tx: &mut Tx<'_>, x: &str, y: &str) -> Result<i64> {
    let (a, b) = pair(x, y);
    let row =
        tx.query_opt("SELECT last_seq FROM conversations WHERE a = $1 AND b = $2", &[&a, &b])?;
    Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
}

/// Moves `user`'s delivered mark of the conversation with `peer` up to `seq`, capped at
/// its last `seq` (see `Sqlite::mark_delivered`); returns the new mark when it moved.
fn mark_delivered_capped(tx: &mut Tx<'_>, user: &str, peer: &str, seq: i64) -> Result<Option<i64>> {
    let seq = seq.min(last_seq(tx, user, peer)?);
    Ok((seq > 0 && mark_delivered(tx, user, peer, seq)?).then_some(seq))
}

fn mark_delivered(tx: &mut Tx<'_>, user: &str, peer: &str, seq: i64) -> Result<bool> {
    let n = tx.execute(
        "INSERT INTO marks (user_id, peer_id, delivered) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, peer_id) DO UPDATE SET delivered = excluded.delivered
         WHERE marks.delivered < excluded.delivered",
        &[&user, &peer, &seq],
    )?;
    Ok(n > 0)
}

impl Postgres {
    pub(crate) fn append_messages(
        &mut self,
        messages: &[NewHistoryMessage],
    ) -> Result<Vec<Appended>> {
        Ok(self.append_and_mark(messages, &[])?.0)
    }

    pub(crate) fn append_and_mark(
        &mut self,
        messages: &[NewHistoryMessage],
        marks: &[Delivered],
    ) -> Result<(Vec<Appended>, Vec<Delivered>)> {
        self.write(|tx| {
            if messages.is_empty() {
                // Marks alone may be lost to a crash (as on SQLite, where they commit at
                // NORMAL): that only lets a message reach a later session again. SET
                // LOCAL ends with the transaction; a message is never committed lazily
                // unless the store was configured so.
                tx.batch_execute("SET LOCAL synchronous_commit = off")?;
            }
            let mut out = Vec::with_capacity(messages.len());
            for m in messages {
                out.push(append_one(tx, m)?);
            }
            let mut moved = Vec::new();
            for d in marks {
                if let Some(seq) = mark_delivered_capped(tx, &d.user, &d.peer, d.seq)? {
                    moved.push(Delivered { seq, ..d.clone() });
                }
            }
            Ok((out, moved))
        })
    }

    pub(crate) fn mark_delivered(
        &mut self,
        user: &str,
        marks: &[(String, i64)],
    ) -> Result<Vec<(String, i64)>> {
        self.write(|tx| {
            let mut moved = Vec::new();
            for (peer, seq) in marks {
                if let Some(seq) = mark_delivered_capped(tx, user, peer, *seq)? {
                    moved.push((peer.clone(), seq));
                }
            }
            Ok(moved)
        })
    }

    pub(crate) fn mark_read(&mut self, user: &str, peer: &str, seq: i64) -> Result<Option<i64>> {
        self.write(|tx| {
            let seq = seq.min(last_seq(tx, user, peer)?);
            let moved = seq > 0
                && tx.execute(
                    "INSERT INTO marks (user_id, peer_id, read) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, peer_id) DO UPDATE SET read = excluded.read
                     WHERE marks.read < excluded.read",
                    &[&user, &peer, &seq],
                )? > 0;
            Ok(moved.then_some(seq))
        })
    }

    pub(crate) fn undelivered(&self, user: &str, limit: usize) -> Result<Vec<HistoryMessage>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM history h
             WHERE h.to_id = $1
               AND h.seq > COALESCE((SELECT delivered FROM marks
                                     WHERE user_id = $1 AND peer_id = h.from_id), 0)
             ORDER BY h.a, h.b, h.seq LIMIT $2"
        );
        messages_of(&self.client.borrow_mut().query(&sql, &[&user, &sql_limit(limit)])?)
    }

    /// The slice is cut as on SQLite, from its rows and the one after it: the server
    /// sums the payloads' bytes in order and sends a row only if the one before it
    /// fits (row 2 always, since the first is taken whatever its size).
    pub(crate) fn undelivered_slice(
        &self,
        user: &str,
        limit: usize,
        bytes: usize,
    ) -> Result<(Vec<HistoryMessage>, bool)> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM (
                 SELECT {MESSAGE_COLUMNS}, a, b,
                        row_number() OVER w AS n,
                        sum(octet_length(payload)) OVER w - octet_length(payload) AS before
                 FROM history h
                 WHERE h.to_id = $1
                   AND h.seq > COALESCE((SELECT delivered FROM marks
                                         WHERE user_id = $1 AND peer_id = h.from_id), 0)
                 WINDOW w AS (ORDER BY h.a, h.b, h.seq ROWS UNBOUNDED PRECEDING)
             ) s
             WHERE n <= $2 AND (n <= 2 OR before <= $3)
             ORDER BY a, b, seq"
        );
        let (rows_wanted, max_bytes) = (sql_limit(limit).saturating_add(1), sql_limit(bytes));
        let rows = self.client.borrow_mut().query(&sql, &[&user, &rows_wanted, &max_bytes])?;
        let (mut slice, mut total) = (Vec::new(), 0);
        for m in messages_of(&rows)? {
            if slice.len() == limit || (!slice.is_empty() && total + m.payload.len() > bytes) {
                return Ok((slice, true));
            }
            total += m.payload.len();
            slice.push(m);
        }
        Ok((slice, false))
    }

    pub(crate) fn conversation(&self, user: &str, peer: &str) -> Result<ConversationState> {
        let (a, b) = pair(user, peer);
        let row = self.client.borrow_mut().query_one(
            "SELECT COALESCE((SELECT min(seq) FROM history WHERE a = $1 AND b = $2), 0),
                    COALESCE((SELECT last_seq FROM conversations WHERE a = $1 AND b = $2), 0),
                    COALESCE((SELECT read FROM marks WHERE user_id = $3 AND peer_id = $4), 0),
                    COALESCE((SELECT read FROM marks WHERE user_id = $4 AND peer_id = $3), 0)",
            &[&a, &b, &user, &peer],
        )?;
        let read_seq: i64 = row.try_get(2)?;
        let unread: i64 = self
            .client
            .borrow_mut()
            .query_one(
                "SELECT count(*) FROM history
                 WHERE a = $1 AND b = $2 AND seq > $3 AND from_id = $4",
                &[&a, &b, &read_seq, &peer],
            )?
            .try_get(0)?;
        Ok(ConversationState {
            first_seq: row.try_get(0)?,
            last_seq: row.try_get(1)?,
            read_seq,
            peer_read_seq: row.try_get(3)?,
            unread,
        })
    }

    pub(crate) fn messages(
        &self,
        user: &str,
        peer: &str,
        window: Window,
        limit: usize,
    ) -> Result<Vec<HistoryMessage>> {
        let (a, b) = pair(user, peer);
        let (cond, order, bound) = match window {
            Window::After(s) => ("seq > $3", "ASC", s),
            Window::Before(s) => ("seq < $3", "DESC", s),
            Window::Latest => ("seq <= $3", "DESC", i64::MAX),
        };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM history WHERE a = $1 AND b = $2 AND {cond}
             ORDER BY seq {order} LIMIT $4"
        );
        let rows = self.client.borrow_mut().query(&sql, &[&a, &b, &bound, &sql_limit(limit)])?;
        let mut out = messages_of(&rows)?;
        if order == "DESC" {
            out.reverse();
        }
        Ok(out)
    }

    pub(crate) fn expire_messages(&mut self, cutoff_ms: i64) -> Result<usize> {
        self.write(|tx| {
            let n = tx.execute("DELETE FROM history WHERE ts_ms < $1", &[&cutoff_ms])?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}
