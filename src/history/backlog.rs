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
}

impl Feed {
    /// The backlog of `user`, nothing sent yet.
    pub fn new(user: String) -> Feed {
        Feed { user, sent: 0, done: false, awaiting: None }
    }

    /// Whose backlog it is.
    pub fn user(&self) -> &str {
        &self.user
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
