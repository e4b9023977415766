//! Conversations that are kept (docs/protocol.md §10): messages numbered per pair of users,
//! each user's delivered and read marks, and the queries the daemon answers from them.
//!
//! A conversation's `seq` is given out inside the commit that stores the message, from
//! the pair's counter row, so numbers are dense and never reused (retention deletes
//! messages, not the counter). A friendship's end deletes the pair's rows by trigger
//! (schema version 4).

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::store::{Result, Sqlite};

/// A message to append to its conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewHistoryMessage {
    /// The sender.
    pub from_id: String,
    /// The receiver.
    pub to_id: String,
    /// The sender's dialogue id.
    pub dialogue_id: String,
    /// The sender's own message id, unique per sender; `None` when not given.
    pub cid: Option<String>,
    /// The payload, as sent.
    pub payload: String,
    /// When the server accepted it, unix milliseconds.
    pub ts_ms: i64,
    /// It goes to a live session of the receiver: its send is answered 200, else 202.
    /// The receiver's delivered mark moves later, once the frame is written
    /// ([`crate::Store::append_and_mark`]).
    pub live: bool,
}

/// A delivered mark to move up: `user`'s mark of the conversation with `peer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The receiver whose mark it is.
    pub user: String,
    /// The sender: the other side of the conversation.
    pub peer: String,
    /// The `seq` to move it to.
    pub seq: i64,
}

/// A message of a conversation, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryMessage {
    /// Its number in the conversation.
    pub seq: i64,
    /// The sender.
    pub from_id: String,
    /// The receiver.
    pub to_id: String,
    /// The sender's dialogue id ("" when none).
    pub dialogue_id: String,
    /// The sender's message id.
    pub cid: Option<String>,
    /// The payload, as sent.
    pub payload: String,
    /// When the server accepted it, unix milliseconds.
    pub ts_ms: i64,
    /// The code its send was answered with (200 or 202).
    pub code: u16,
}

/// What became of one message of [`Store::append_messages`](crate::Store::append_messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Stored with this `seq`.
    New {
        /// Its number in the conversation.
        seq: i64,
    },
    /// The sender already has a message with this `cid`: nothing was stored.
    Existing(HistoryMessage),
    /// Sender and receiver are not friends (any more): nothing was stored.
    NotFriends,
}

/// One side's view of a conversation, for friend entries and `/im/messages`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConversationState {
    /// The oldest `seq` kept (0 when none).
    pub first_seq: i64,
    /// The newest `seq` given out (0 when none).
    pub last_seq: i64,
    /// My read mark.
    pub read_seq: i64,
    /// The peer's read mark.
    pub peer_read_seq: i64,
    /// Messages from the peer above my read mark.
    pub unread: i64,
}

/// Which messages of a conversation to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The oldest `limit` with `seq` above this.
    After(i64),
    /// The newest `limit` with `seq` below this.
    Before(i64),
    /// The newest `limit`.
    Latest,
}

/// Where one login's backlog stands (docs/protocol.md §10.3): per conversation (the
/// peer), the `seq` its next slice starts above. It starts at the user's delivered marks
/// ([`Store::backlog_cursor`](crate::Store::backlog_cursor)) and moves with each message
/// the feed sends, never with the marks: two sessions of one user fed at once each go
/// through their own range, whatever the other's frames move meanwhile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BacklogCursor {
    after: BTreeMap<String, i64>,
}

impl BacklogCursor {
    /// A cursor that starts above these `(peer, seq)` (a peer not listed: from `seq` 1).
    pub fn new(after: impl IntoIterator<Item = (String, i64)>) -> BacklogCursor {
        BacklogCursor { after: after.into_iter().collect() }
    }

    /// The `seq` the conversation with `peer` is read above.
    pub fn after(&self, peer: &str) -> i64 {
        self.after.get(peer).copied().unwrap_or(0)
    }

    /// The conversation with `peer` ended (a friendship removed): one begun again
    /// starts at `seq` 1, so it is read from there.
    pub fn restart(&mut self, peer: &str) {
        self.after.remove(peer);
    }

    /// `m` was sent: its conversation is read above it from now on.
    pub fn sent(&mut self, m: &HistoryMessage) {
        let after = self.after.entry(m.from_id.clone()).or_default();
        *after = (*after).max(m.seq);
    }

    /// Per peer, the `seq` read above.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.after.iter().map(|(peer, seq)| (peer.as_str(), *seq))
    }

    /// The cursor as a JSON object `{"<peer>":<seq>,…}`, for SQLite's `json_each`.
    fn json(&self) -> String {
        let mut out = String::from("{");
        for (i, (peer, seq)) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_string(&mut out, peer);
            out.push(':');
            out.push_str(&seq.to_string());
        }
        out.push('}');
        out
    }
}

/// Appends `s` to `out` as a JSON string.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The key of the pair `x`, `y`: the smaller id first.
pub(crate) fn pair<'a>(x: &'a str, y: &'a str) -> (&'a str, &'a str) {
    if x <= y {
        (x, y)
    } else {
        (y, x)
    }
}

const MESSAGE_COLUMNS: &str = "seq, from_id, to_id, dialogue_id, cid, payload, ts_ms, code";

fn message_row(r: &Row<'_>) -> rusqlite::Result<HistoryMessage> {
    Ok(HistoryMessage {
        seq: r.get(0)?,
        from_id: r.get(1)?,
        to_id: r.get(2)?,
        dialogue_id: r.get(3)?,
        cid: r.get(4)?,
        payload: r.get(5)?,
        ts_ms: r.get(6)?,
        code: r.get(7)?,
    })
}

/// The messages to `?1` above its delivered marks, at most `?2`. Read through
/// `history_by_to`, in its order: never the whole table (a login's cost must not grow
/// with everyone else's history).
pub(crate) fn undelivered_sql() -> String {
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM history h
         WHERE h.to_id = ?1
           AND h.seq > COALESCE((SELECT delivered FROM marks
                                 WHERE user_id = ?1 AND peer_id = h.from_id), 0)
         ORDER BY h.a, h.b, h.seq LIMIT ?2"
    )
}

/// The messages to `?1` above the cursor `?2` (a JSON object of sender → `seq`), like
/// [`undelivered_sql`] through `history_by_to`.
pub(crate) fn undelivered_slice_sql() -> String {
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM history h
         LEFT JOIN json_each(?2) c ON c.key = h.from_id
         WHERE h.to_id = ?1 AND h.seq > COALESCE(c.value, 0)
         ORDER BY h.a, h.b, h.seq"
    )
}

fn append_one(tx: &Transaction<'_>, m: &NewHistoryMessage) -> rusqlite::Result<Appended> {
    if let Some(cid) = &m.cid {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM history WHERE from_id = ?1 AND cid = ?2");
        let mut st = tx.prepare_cached(&sql)?;
        if let Some(found) = st.query_row(params![m.from_id, cid], message_row).optional()? {
            return Ok(Appended::Existing(found));
        }
    }
    let mut friends =
        tx.prepare_cached("SELECT 1 FROM friends WHERE user_id = ?1 AND friend_id = ?2")?;
    if !friends.exists([&m.from_id, &m.to_id])? {
        return Ok(Appended::NotFriends);
    }
    let (a, b) = pair(&m.from_id, &m.to_id);
    let seq: i64 = tx
        .prepare_cached(
            "INSERT INTO conversations (a, b, last_seq) VALUES (?1, ?2, 1)
             ON CONFLICT (a, b) DO UPDATE SET last_seq = last_seq + 1
             RETURNING last_seq",
        )?
        .query_row([a, b], |r| r.get(0))?;
    let code: u16 = if m.live { 200 } else { 202 };
    tx.prepare_cached(
        "INSERT INTO history (a, b, seq, from_id, to_id, dialogue_id, cid, payload, ts_ms, code)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        a,
        b,
        seq,
        m.from_id,
        m.to_id,
        m.dialogue_id,
        m.cid,
        m.payload,
        m.ts_ms,
        code
    ])?;
    Ok(Appended::New { seq })
}

impl Sqlite {
    /// Appends `messages` in one transaction (group commit), each to its conversation,
    /// in order; a message whose `(sender, cid)` is already stored, or whose sender
    /// and receiver are not friends, is not stored (see [`Appended`]).
    pub fn append_messages(&mut self, messages: &[NewHistoryMessage]) -> Result<Vec<Appended>> {
        Ok(self.append_and_mark(messages, &[])?.0)
    }

    /// [`append_messages`](Self::append_messages) and the delivered `marks` of messages
    /// written meanwhile, in one transaction (one fsync for both); returns what became
    /// of each message and the marks that moved.
    ///
    /// Marks alone are committed without waiting for the disk (`synchronous = NORMAL`
    /// for that commit, under WAL): a power cut may lose them, which only lets a message
    /// reach a later session again, never one session twice; the next commit of a
    /// message syncs them with it. A message and its acknowledgement never go lazily.
    pub fn append_and_mark(
        &mut self,
        messages: &[NewHistoryMessage],
        marks: &[Delivered],
    ) -> Result<(Vec<Appended>, Vec<Delivered>)> {
        if !messages.is_empty() {
            return self.append_and_mark_now(messages, marks);
        }
        let level: i64 = self.conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        // 2 is FULL and 3 EXTRA; a transaction cannot change it, so it is set around one.
        let lower = level > 1;
        if lower {
            self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        let r = self.append_and_mark_now(messages, marks);
        if lower {
            self.conn.pragma_update(None, "synchronous", level)?;
        }
        r
    }

    fn append_and_mark_now(
        &mut self,
        messages: &[NewHistoryMessage],
        marks: &[Delivered],
    ) -> Result<(Vec<Appended>, Vec<Delivered>)> {
        let tx = self.write_tx()?;
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            out.push(append_one(&tx, m)?);
        }
        let mut moved = Vec::new();
        for d in marks {
            // Capped as in `mark_delivered`: a frame written after its friendship ended
            // must leave no mark over the pair's next conversation.
            let seq = d.seq.min(last_seq(&tx, &d.user, &d.peer)?);
            if seq > 0 && mark_delivered(&tx, &d.user, &d.peer, seq)? {
                moved.push(Delivered { seq, ..d.clone() });
            }
        }
        tx.commit()?;
        Ok((out, moved))
    }

    /// Moves `user`'s delivered marks up to the given `(peer, seq)`, each capped at its
    /// conversation's last `seq`; returns the marks that moved, with their new value.
    ///
    /// The cap matters when the friendship ended after the marks were read (a login's
    /// backlog racing a removal or an erase): the conversation is gone, so no mark is
    /// written, and none is left to hide the first messages of the pair's next
    /// conversation, which starts again at `seq` 1.
    pub fn mark_delivered(
        &mut self,
        user: &str,
        marks: &[(String, i64)],
    ) -> Result<Vec<(String, i64)>> {
        let tx = self.write_tx()?;
        let mut moved = Vec::new();
        for (peer, seq) in marks {
            let seq = (*seq).min(last_seq(&tx, user, peer)?);
            if seq > 0 && mark_delivered(&tx, user, peer, seq)? {
                moved.push((peer.clone(), seq));
            }
        }
        tx.commit()?;
        Ok(moved)
    }

    /// Sets `user`'s read mark of the conversation with `peer` to `seq` (capped at its
    /// last `seq`) if that is above it; returns the new mark when it moved.
    pub fn mark_read(&mut self, user: &str, peer: &str, seq: i64) -> Result<Option<i64>> {
        let tx = self.write_tx()?;
        let seq = seq.min(last_seq(&tx, user, peer)?);
        let moved = seq > 0
            && tx
                .prepare_cached(
                    "INSERT INTO marks (user_id, peer_id, read) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, peer_id) DO UPDATE SET read = excluded.read
                     WHERE read < excluded.read",
                )?
                .execute(params![user, peer, seq])?
                > 0;
        tx.commit()?;
        Ok(moved.then_some(seq))
    }

    /// The messages to `user` above its delivered marks, conversation by conversation,
    /// each in `seq` order; at most `limit` in all.
    pub fn undelivered(&self, user: &str, limit: usize) -> Result<Vec<HistoryMessage>> {
        let mut st = self.conn.prepare_cached(&undelivered_sql())?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = st.query_map(params![user, limit], message_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Where a new login's backlog starts: `user`'s delivered marks as they stand.
    pub fn backlog_cursor(&self, user: &str) -> Result<BacklogCursor> {
        let mut st =
            self.conn.prepare_cached("SELECT peer_id, delivered FROM marks WHERE user_id = ?1")?;
        let rows = st.query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(BacklogCursor::new(rows.collect::<rusqlite::Result<Vec<_>>>()?))
    }

    /// The messages to `user` above `cursor`, conversation by conversation, each in
    /// `seq` order: as many as fit in `bytes` of payload (at least one) and at most
    /// `limit`; and whether any are left after them. The delivered marks play no part:
    /// another session's frames moving them cannot make this backlog skip a message.
    /// Rows are read one at a time, so no more than one row past the slice is read.
    pub fn undelivered_slice(
        &self,
        user: &str,
        cursor: &BacklogCursor,
        limit: usize,
        bytes: usize,
    ) -> Result<(Vec<HistoryMessage>, bool)> {
        let mut st = self.conn.prepare_cached(&undelivered_slice_sql())?;
        let mut rows = st.query_map(params![user, cursor.json()], message_row)?;
        let (mut slice, mut total) = (Vec::new(), 0);
        for row in rows.by_ref() {
            let m = row?;
            if slice.len() == limit || (!slice.is_empty() && total + m.payload.len() > bytes) {
                return Ok((slice, true));
            }
            total += m.payload.len();
            slice.push(m);
        }
        Ok((slice, false))
    }

    /// `user`'s view of the conversation with `peer`.
    pub fn conversation(&self, user: &str, peer: &str) -> Result<ConversationState> {
        let (a, b) = pair(user, peer);
        let mut st = self.conn.prepare_cached(
            "SELECT COALESCE((SELECT min(seq) FROM history WHERE a = ?1 AND b = ?2), 0),
                    COALESCE((SELECT last_seq FROM conversations WHERE a = ?1 AND b = ?2), 0),
                    COALESCE((SELECT read FROM marks WHERE user_id = ?3 AND peer_id = ?4), 0),
                    COALESCE((SELECT read FROM marks WHERE user_id = ?4 AND peer_id = ?3), 0)",
        )?;
        let (first_seq, last_seq, read_seq, peer_read_seq) = st
            .query_row(params![a, b, user, peer], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
        let unread = self.unread(user, peer, read_seq)?;
        Ok(ConversationState { first_seq, last_seq, read_seq, peer_read_seq, unread })
    }

    fn unread(&self, user: &str, peer: &str, read_seq: i64) -> Result<i64> {
        let (a, b) = pair(user, peer);
        let mut st = self.conn.prepare_cached(
            "SELECT count(*) FROM history WHERE a = ?1 AND b = ?2 AND seq > ?3 AND from_id = ?4",
        )?;
        Ok(st.query_row(params![a, b, read_seq, peer], |r| r.get(0))?)
    }

    /// Up to `limit` messages of the conversation of `user` and `peer`, in `seq` order.
    pub fn messages(
        &self,
        user: &str,
        peer: &str,
        window: Window,
        limit: usize,
    ) -> Result<Vec<HistoryMessage>> {
        let (a, b) = pair(user, peer);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (cond, order, bound) = match window {
            Window::After(s) => ("seq > ?3", "ASC", s),
            Window::Before(s) => ("seq < ?3", "DESC", s),
            Window::Latest => ("seq <= ?3", "DESC", i64::MAX),
        };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM history WHERE a = ?1 AND b = ?2 AND {cond}
             ORDER BY seq {order} LIMIT ?4"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(params![a, b, bound, limit], message_row)?;
        let mut out = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        if order == "DESC" {
            out.reverse();
        }
        Ok(out)
    }

    /// Deletes messages accepted before `cutoff_ms`; returns how many. The counters
    /// stay, so their numbers are never given out again.
    pub fn expire_messages(&mut self, cutoff_ms: i64) -> Result<usize> {
        let tx = self.write_tx()?;
        let n = tx.execute("DELETE FROM history WHERE ts_ms < ?1", [cutoff_ms])?;
        tx.commit()?;
        Ok(n)
    }

    fn write_tx(&mut self) -> Result<Transaction<'_>> {
        Ok(self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
    }
}

/// The last `seq` of the conversation of `x` and `y`; 0 when there is none.
fn last_seq(tx: &Transaction<'_>, x: &str, y: &str) -> rusqlite::Result<i64> {
    let (a, b) = pair(x, y);
    Ok(tx
        .prepare_cached("SELECT last_seq FROM conversations WHERE a = ?1 AND b = ?2")?
        .query_row([a, b], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

fn mark_delivered(
    tx: &Transaction<'_>,
    user: &str,
    peer: &str,
    seq: i64,
) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(
            "INSERT INTO marks (user_id, peer_id, delivered) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, peer_id) DO UPDATE SET delivered = excluded.delivered
             WHERE delivered < excluded.delivered",
        )?
        .execute(params![user, peer, seq])?;
    Ok(n > 0)
}
