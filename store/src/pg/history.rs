//! Kept conversations on PostgreSQL (docs/protocol.md §10), as `crate::history` keeps
//! them on SQLite.
//!
//! `seq` comes from the pair's row in `conversations`, locked and then advanced inside
//! the transaction that stores the message: the row's lock orders writers of one
//! conversation on every node, and a transaction that rolls back takes its increment
//! with it, so numbers stay dense (a `SEQUENCE` would leave gaps). The primary key
//! `(a, b, seq)` refuses a duplicate. These writes run at READ COMMITTED and take
//! their row locks in one order (docs/cluster.md, "Isolation"), so that writers on
//! several nodes wait for each other instead of aborting.

use std::collections::{HashMap, HashSet};

use postgres::Row;

use super::conn::{Queries, Tx};
use super::{sql_limit, Postgres};
use crate::error::StoreError;
use crate::history::{
    pair, Appended, BacklogCursor, ConversationState, Delivered, HistoryMessage, NewHistoryMessage,
    Window,
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

/// The last `seq` of each locked conversation, by its pair `(a, b)`.
type Counters<'m> = HashMap<(&'m str, &'m str), i64>;

/// Locks the friendship row of `from` → `to` by writing it unchanged; whether it is
/// there. Written, not only locked (`FOR KEY SHARE`), for the SERIALIZABLE writers
/// that end a friendship (removal, erasure): their triggers delete the pair's rows as
/// of the snapshot they started with, which does not show what this commit adds, and
/// only a row *changed* after that snapshot makes their delete abort and run again
/// with one that does (a lock alone would not).
fn lock_friendship(tx: &mut Tx<'_>, from: &str, to: &str) -> Result<bool> {
    let sql = "UPDATE friends SET alias = alias WHERE user_id = $1 AND friend_id = $2";
    Ok(tx.execute(sql, &[&from, &to])? > 0)
}

/// Locks the counter row of `a` and `b` by writing it unchanged (see
/// [`lock_friendship`]); its `last_seq`, `None` when the pair has none.
fn lock_counter(tx: &mut Tx<'_>, a: &str, b: &str) -> Result<Option<i64>> {
    let row = tx.query_opt(
        "UPDATE conversations SET last_seq = last_seq WHERE a = $1 AND b = $2 RETURNING last_seq",
        &[&a, &b],
    )?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Creates the counter row of `a` and `b` at 0, or locks it when another writer
/// created it first (its insert is waited for).
fn create_counter(tx: &mut Tx<'_>, a: &str, b: &str) -> Result<i64> {
    let row = tx.query_one(
        "INSERT INTO conversations (a, b, last_seq) VALUES ($1, $2, 0)
         ON CONFLICT (a, b) DO UPDATE SET last_seq = conversations.last_seq
         RETURNING last_seq",
        &[&a, &b],
    )?;
    Ok(row.try_get(0)?)
}

/// Locks the counter rows of `pairs`, in their sorted order; those of `create` are
/// created when missing. A pair with no row and not to be created is left out.
fn lock_counters<'m>(
    tx: &mut Tx<'_>,
    mut pairs: Vec<(&'m str, &'m str)>,
    create: &HashSet<(&'m str, &'m str)>,
) -> Result<Counters<'m>> {
    pairs.sort_unstable();
    pairs.dedup();
    let mut counters = HashMap::with_capacity(pairs.len());
    for (a, b) in pairs {
        let last = match lock_counter(tx, a, b)? {
            Some(last) => last,
            None if create.contains(&(a, b)) => create_counter(tx, a, b)?,
            None => continue,
        };
        counters.insert((a, b), last);
    }
    Ok(counters)
}

/// The message `from` stored with `cid`, if any.
fn with_cid(tx: &mut Tx<'_>, from: &str, cid: &str) -> Result<Option<HistoryMessage>> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM history WHERE from_id = $1 AND cid = $2");
    Ok(tx.query_opt(&sql, &[&from, &cid])?.map(|r| message_row(&r)).transpose()?)
}

/// Stores `m` with the next `seq` of its conversation, whose counter row is locked
/// (in `counters`), unless its sender already stored its `cid`: then that message,
/// also when another node stores it at this moment (the insert waits for that
/// commit and stands back).
fn append_one<'m>(
    tx: &mut Tx<'_>,
    m: &'m NewHistoryMessage,
    friends: &HashSet<(&str, &str)>,
    counters: &mut Counters<'m>,
) -> Result<Appended> {
    let last = match counters.get_mut(&pair(&m.from_id, &m.to_id)) {
        Some(last) if friends.contains(&(m.from_id.as_str(), m.to_id.as_str())) => last,
        _ => {
            // The cid is looked up first, as on SQLite.
            let found = match &m.cid {
                Some(cid) => with_cid(tx, &m.from_id, cid)?,
                None => None,
            };
            return Ok(found.map_or(Appended::NotFriends, Appended::Existing));
        }
    };
    let (a, b) = pair(&m.from_id, &m.to_id);
    let seq = *last + 1;
    let code: i32 = if m.live { 200 } else { 202 };
    // A cid stored and then deleted (retention, the friendship's end) between the
    // insert and the look-up is tried again; twice more is beyond any real race.
    for _ in 0..3 {
        let inserted = tx.query_opt(
            "INSERT INTO history
                 (a, b, seq, from_id, to_id, dialogue_id, cid, payload, ts_ms, code)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (from_id, cid) WHERE cid IS NOT NULL DO NOTHING
             RETURNING seq",
            &[
                &a,
                &b,
                &seq,
                &m.from_id,
                &m.to_id,
                &m.dialogue_id,
                &m.cid,
                &m.payload,
                &m.ts_ms,
                &code,
            ],
        )?;
        if inserted.is_some() {
            *last = seq;
            return Ok(Appended::New { seq });
        }
        if let Some(found) = with_cid(tx, &m.from_id, m.cid.as_deref().unwrap_or_default())? {
            return Ok(Appended::Existing(found));
        }
    }
    Err(StoreError::Busy)
}

/// Stores `messages` and moves the delivered `marks`, taking every row lock in one
/// order: the senders' friendship rows, then the conversations' counter rows, then
/// the marks rows, each sorted. Two writers (two nodes) therefore wait for each other
/// and never deadlock, and `seq` is given out under the counter's lock, so it stays
/// dense without the aborts of SERIALIZABLE.
fn append_and_mark_locked(
    tx: &mut Tx<'_>,
    messages: &[NewHistoryMessage],
    marks: &[Delivered],
) -> Result<(Vec<Appended>, Vec<Delivered>)> {
    let mut senders: Vec<_> = messages.iter().map(|m| (&*m.from_id, &*m.to_id)).collect();
    senders.sort_unstable();
    senders.dedup();
    let mut friends = HashSet::new();
    for (from, to) in senders {
        if lock_friendship(tx, from, to)? {
            friends.insert((from, to));
        }
    }
    let create: HashSet<_> = friends.iter().map(|(from, to)| pair(from, to)).collect();
    let pairs = create.iter().copied().chain(marks.iter().map(|d| pair(&d.user, &d.peer)));
    let mut counters = lock_counters(tx, pairs.collect(), &create)?;
    let before = counters.clone();
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        out.push(append_one(tx, m, &friends, &mut counters)?);
    }
    for (&(a, b), &last) in &counters {
        if before.get(&(a, b)) != Some(&last) {
            tx.execute(
                "UPDATE conversations SET last_seq = $3 WHERE a = $1 AND b = $2",
                &[&a, &b, &last],
            )?;
        }
    }
    let moved = move_marks(tx, marks, &counters)?;
    Ok((out, moved))
}

/// Moves each delivered mark of `marks` up, capped at its conversation's last `seq`
/// (a conversation not in `counters`, whose rows are locked, has none); the marks
/// that moved, in the order given. The rows are written in sorted order.
fn move_marks(
    tx: &mut Tx<'_>,
    marks: &[Delivered],
    counters: &Counters<'_>,
) -> Result<Vec<Delivered>> {
    let mut order: Vec<_> = (0..marks.len()).collect();
    order.sort_by(|&i, &j| (&marks[i].user, &marks[i].peer).cmp(&(&marks[j].user, &marks[j].peer)));
    let mut moved = Vec::new();
    for i in order {
        let d = &marks[i];
        let last = counters.get(&pair(&d.user, &d.peer)).copied().unwrap_or(0);
        let seq = d.seq.min(last);
        if seq > 0 && mark_delivered(tx, &d.user, &d.peer, seq)? {
            moved.push((i, Delivered { seq, ..d.clone() }));
        }
    }
    moved.sort_by_key(|(i, _)| *i);
    Ok(moved.into_iter().map(|(_, d)| d).collect())
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
        self.write_locked(|tx| {
            if messages.is_empty() {
                // Marks alone may be lost to a crash (as on SQLite, where they commit at
                // NORMAL): that only lets a message reach a later session again. SET
                // LOCAL ends with the transaction; a message is never committed lazily
                // unless the store was configured so.
                tx.batch_execute("SET LOCAL synchronous_commit = off")?;
            }
            append_and_mark_locked(tx, messages, marks)
        })
    }

    pub(crate) fn mark_delivered(
        &mut self,
        user: &str,
        marks: &[(String, i64)],
    ) -> Result<Vec<(String, i64)>> {
        let marks: Vec<_> = marks
            .iter()
            .map(|(peer, seq)| Delivered { user: user.to_owned(), peer: peer.clone(), seq: *seq })
            .collect();
        self.write_locked(|tx| {
            let pairs = marks.iter().map(|d| pair(&d.user, &d.peer)).collect();
            let counters = lock_counters(tx, pairs, &HashSet::new())?;
            let moved = move_marks(tx, &marks, &counters)?;
            Ok(moved.into_iter().map(|d| (d.peer, d.seq)).collect())
        })
    }

    pub(crate) fn mark_read(&mut self, user: &str, peer: &str, seq: i64) -> Result<Option<i64>> {
        self.write_locked(|tx| {
            let (a, b) = pair(user, peer);
            let seq = seq.min(lock_counter(tx, a, b)?.unwrap_or(0));
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

    pub(crate) fn backlog_cursor(&self, user: &str) -> Result<BacklogCursor> {
        let rows = self
            .client
            .borrow_mut()
            .query("SELECT peer_id, delivered FROM marks WHERE user_id = $1", &[&user])?;
        let marks = rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?)));
        Ok(BacklogCursor::new(marks.collect::<Result<Vec<_>, postgres::Error>>()?))
    }

    /// The slice is cut as on SQLite, from its rows and the one after it: the server
    /// sums the payloads' bytes in order and sends a row only if the one before it
    /// fits (row 2 always, since the first is taken whatever its size). The cursor
    /// goes as two arrays, peers and the `seq` each is read above.
    pub(crate) fn undelivered_slice(
        &self,
        user: &str,
        cursor: &BacklogCursor,
        limit: usize,
        bytes: usize,
    ) -> Result<(Vec<HistoryMessage>, bool)> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM (
                 SELECT {MESSAGE_COLUMNS}, a, b,
                        row_number() OVER w AS n,
                        sum(octet_length(payload)) OVER w - octet_length(payload) AS before
                 FROM history h
                 LEFT JOIN unnest($4::text[], $5::bigint[]) AS c(peer, above)
                        ON c.peer = h.from_id
                 WHERE h.to_id = $1 AND h.seq > COALESCE(c.above, 0)
                 WINDOW w AS (ORDER BY h.a, h.b, h.seq ROWS UNBOUNDED PRECEDING)
             ) s
             WHERE n <= $2 AND (n <= 2 OR before <= $3)
             ORDER BY a, b, seq"
        );
        let (rows_wanted, max_bytes) = (sql_limit(limit).saturating_add(1), sql_limit(bytes));
        let (peers, above): (Vec<&str>, Vec<i64>) = cursor.iter().unzip();
        let rows = self
            .client
            .borrow_mut()
            .query(&sql, &[&user, &rows_wanted, &max_bytes, &peers, &above])?;
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
