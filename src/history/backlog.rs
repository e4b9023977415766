//! A new session's backlog (docs/protocol.md §10.3): the messages above its delivered
//! marks, oldest first conversation by conversation, at most `[history] login_backlog`.
//!
//! It is read and sent a slice at a time by the history thread, each slice once the
//! one before is in the socket (its marks moved): however large the backlog, the
//! server's own burst never outgrows a reader that takes what it is sent, and a
//! session that dies midway leaves the rest undelivered, for the next login in order.
//! Each slice is read from above the marks, so messages stored meanwhile join the
//! backlog behind the older ones; the feed ends with a slice that leaves nothing.

use std::collections::HashMap;

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
    /// Per conversation (the peer), the newest `seq` this feed has sent.
    sent_newest: HashMap<String, i64>,
    /// Frames committed while the feed runs, to go out after it (§11.1: another session
    /// of the user may move the marks past them, so the slices need not bring them).
    following: Vec<Following>,
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
            sent_newest: HashMap::new(),
            following: Vec::new(),
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
    /// was written and its marks committed: a slice starts above the marks.
    pub fn next_slice(&mut self, app: &App) -> Result<Option<Slice>, Fail> {
        let want = app.config.history.login_backlog.saturating_sub(self.sent);
        if want == 0 {
            self.done = true;
            return Ok(None);
        }
        let budget = slice_bytes(app);
        let (messages, more) = app.store(|s| s.undelivered_slice(&self.user, want, budget))?;
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
