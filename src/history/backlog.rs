//! A new session's backlog (docs/protocol.md §10.3): the messages above its delivered
//! marks, oldest first conversation by conversation, at most `[history] login_backlog`.
//!
//! It is read and sent a slice at a time by the history thread, each slice once the
//! one before is in the socket (its marks moved): however large the backlog, the
//! server's own burst never outgrows a reader that takes what it is sent, and a
//! session that dies midway leaves the rest undelivered, for the next login in order.
//!
//! Each slice is read from the feed's own cursor ([`store::BacklogCursor`]): the
//! delivered marks when the feed began, moved by what this feed has sent. Not from the
//! marks as they stand: another session of the user fed at the same time moves them
//! past what this one has yet to send. Messages stored meanwhile join the backlog
//! behind the older ones; the feed ends with a slice that leaves nothing.

use std::collections::HashMap;

use store::BacklogCursor;

use super::writer::Marks;
use crate::app::{App, Fail};

/// Largest slice, in payload bytes (a slice holds at least one message).
const SLICE_MAX: usize = 256 * 1024;

/// The frames of one slice, and per sender the newest `seq` among them.
pub type Slice = (Vec<String>, Vec<(String, i64)>);

/// The backlog of one session still to be sent.
#[derive(Debug)]
pub struct Feed {
    user: String,
    /// Messages sent so far (the login backlog's bound counts them).
    sent: usize,
    done: bool,
    /// The tag of the slice sent and not yet reported written.
    pub awaiting: Option<u64>,
    /// Where the next slice starts; read with the first.
    cursor: Option<BacklogCursor>,
    /// Per conversation (the peer), the newest `seq` this feed has sent.
    sent_newest: HashMap<String, i64>,
    /// Frames committed while the feed runs, to go out after it (§11.1: another session
    /// of the user may move the marks past them, so the slices need not bring them).
    following: Vec<Following>,
    /// Per conversation, the `seq` of the session's own sends acked while the feed ran
    /// (on a node of several, the session's place once the feed ends).
    acked: Vec<(String, i64)>,
}

/// A frame of a conversation that waits for a feed to end.
#[derive(Debug)]
pub struct Following {
    /// The other user of the conversation.
    pub peer: String,
    /// Its `seq` in the conversation.
    pub seq: i64,
    /// The frame as it goes out.
    pub frame: String,
    /// The delivered marks it moves once written (none for a copy of my own message).
    pub marks: Option<Marks>,
}

impl Feed {
    /// The backlog of `user`, nothing sent yet.
    pub fn new(user: String) -> Feed {
        Feed {
            user,
            sent: 0,
            done: false,
            awaiting: None,
            cursor: None,
            sent_newest: HashMap::new(),
            following: Vec::new(),
            acked: Vec::new(),
        }
    }

    /// Whose backlog it is.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Keeps `f` to go out after the backlog.
    pub fn follow(&mut self, f: Following) {
        self.following.push(f);
    }

    /// The conversation of `a` and `b` ended (a friendship removed), when one of them
    /// is this feed's user: one begun again starts at `seq` 1, read from there; the
    /// ended one's frames waiting for the feed go with it (its messages are deleted).
    pub fn conversation_ended(&mut self, a: &str, b: &str) {
        let peer = match (self.user == a, self.user == b) {
            (true, _) => b,
            (_, true) => a,
            _ => return,
        };
        if let Some(cursor) = &mut self.cursor {
            cursor.restart(peer);
        }
        self.sent_newest.remove(peer);
        self.following.retain(|f| f.peer != peer);
    }

    /// The session acked its own message `seq` of the conversation with `peer`.
    pub fn acked(&mut self, peer: &str, seq: i64) {
        self.acked.push((peer.to_string(), seq));
    }

    /// Per conversation, the newest `seq` the backlog sent.
    pub fn sent_newest(&self) -> impl Iterator<Item = (String, i64)> + '_ {
        self.sent_newest.iter().map(|(p, s)| (p.clone(), *s))
    }

    /// The session's own sends acked while the feed ran.
    pub fn take_acked(&mut self) -> Vec<(String, i64)> {
        std::mem::take(&mut self.acked)
    }

    /// The frames that follow the backlog, in their commit order, less those of a
    /// conversation the backlog has already brought to or past their `seq` (there, it
    /// brought them, or sending them now would break the order: the client fetches it).
    pub fn into_following(self) -> Vec<Following> {
        let newest = self.sent_newest;
        self.following
            .into_iter()
            .filter(|f| newest.get(&f.peer).is_none_or(|&n| f.seq > n))
            .collect()
    }

    /// The last slice has been taken: nothing above the marks was left after it.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next slice, `None` when nothing is left. Call it only once the slice before
    /// was written, so that a slow reader holds at most one slice in the server.
    pub fn next_slice(&mut self, app: &App) -> Result<Option<Slice>, Fail> {
        let want = app.config.history.login_backlog.saturating_sub(self.sent);
        if want == 0 {
            self.done = true;
            return Ok(None);
        }
        let budget = slice_bytes(app);
        let user = &self.user;
        let cursor = match &mut self.cursor {
            Some(cursor) => cursor,
            None => self.cursor.insert(app.store(|s| s.backlog_cursor(user))?),
        };
        let (messages, more) = app.store(|s| s.undelivered_slice(user, cursor, want, budget))?;
        messages.iter().for_each(|m| cursor.sent(m));
        self.sent += messages.len();
        self.done = !more || self.sent >= app.config.history.login_backlog;
        if messages.is_empty() {
            return Ok(None);
        }
        let mut newest: HashMap<String, i64> = HashMap::new();
        let frames = messages
            .into_iter()
            .map(|m| {
                let frame = super::stored_frame(&m);
                let sent = self.sent_newest.entry(m.from_id.clone()).or_default();
                *sent = (*sent).max(m.seq);
                let seq = newest.entry(m.from_id).or_default();
                *seq = (*seq).max(m.seq);
                frame
            })
            .collect();
        Ok(Some((frames, newest.into_iter().collect())))
    }
}

/// A slice is at most a quarter of the output cap: queued while the socket is still
/// busy with other output, it must never count as a peer that stopped reading.
fn slice_bytes(app: &App) -> usize {
    (app.config.transport.output_cap_bytes / 4).min(SLICE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn following(peer: &str, seq: i64) -> Following {
        Following { peer: peer.into(), seq, frame: format!("{peer}{seq}"), marks: None }
    }

    /// A friendship of the feed's user ends: the frames of that conversation waiting
    /// for the backlog go with it; those of other conversations, and other users'
    /// endings, change nothing.
    #[test]
    fn an_ended_conversation_s_waiting_frames_go_with_it() {
        let mut feed = Feed::new("u".into());
        for f in [following("p", 4), following("q", 1), following("p", 5)] {
            feed.follow(f);
        }
        feed.conversation_ended("x", "p");
        assert_eq!(feed.following.len(), 3, "not this feed's user");
        feed.conversation_ended("p", "u");
        let left: Vec<_> = feed.into_following().into_iter().map(|f| f.frame).collect();
        assert_eq!(left, ["q1"]);
    }
}
