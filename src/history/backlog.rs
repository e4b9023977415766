//! A new session's backlog (docs/protocol.md §10.3): the messages above its delivered
//! marks, oldest first conversation by conversation, at most `[history] login_backlog`.
//!
//! It is read and sent a slice at a time by the history thread, each slice once the
//! one before is in the socket (its marks moved): however large the backlog, the
//! server's own burst never outgrows a reader that takes what it is sent, and a
//! session that dies midway leaves the rest undelivered, for the next login in order.
//! Each read is of what is above the marks, so messages stored meanwhile join the
//! backlog behind the older ones; the feed ends at a read that finds the rest.

use std::collections::{HashMap, VecDeque};

use store::HistoryMessage;

use crate::app::{App, Fail};

/// Messages read from the store at once.
const READ_AHEAD: usize = 32;
/// Largest slice, in payload bytes (a slice holds at least one message).
const SLICE_MAX: usize = 256 * 1024;

/// The frames of one slice, and per sender the newest `seq` among them.
pub type Slice = (Vec<String>, Vec<(String, i64)>);

/// The backlog of one session still to be sent.
#[derive(Debug)]
pub struct Feed {
    user: String,
    /// Messages read so far (the login backlog's bound counts them).
    read: usize,
    /// Read and not yet sent.
    ahead: VecDeque<HistoryMessage>,
    done: bool,
    /// The tag of the slice sent and not yet reported written.
    pub awaiting: Option<u64>,
}

impl Feed {
    /// The backlog of `user`, nothing read yet.
    pub fn new(user: String) -> Feed {
        Feed { user, read: 0, ahead: VecDeque::new(), done: false, awaiting: None }
    }

    /// Whose backlog it is.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The last slice has been taken: nothing above the marks was left unread.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next slice, `None` when nothing is left. Call it only once the slice before
    /// was written and its marks committed: a read starts above the marks.
    pub fn next_slice(&mut self, app: &App) -> Result<Option<Slice>, Fail> {
        let mut found_all = false;
        if self.ahead.is_empty() {
            let want = READ_AHEAD.min(app.config.history.login_backlog.saturating_sub(self.read));
            if want > 0 {
                let got = app.store(|s| s.undelivered(&self.user, want))?;
                self.read += got.len();
                found_all = got.len() < want;
                self.ahead.extend(got);
            } else {
                found_all = true;
            }
        }
        let budget = slice_bytes(app);
        let mut frames = Vec::new();
        let mut newest: HashMap<String, i64> = HashMap::new();
        let mut bytes = 0;
        while let Some(m) = self.ahead.front() {
            if !frames.is_empty() && bytes + m.payload.len() > budget {
                break;
            }
            let Some(m) = self.ahead.pop_front() else { break };
            bytes += m.payload.len();
            frames.push(super::stored_frame(&m));
            let seq = newest.entry(m.from_id).or_default();
            *seq = (*seq).max(m.seq);
        }
        self.done = found_all && self.ahead.is_empty();
        if frames.is_empty() {
            return Ok(None);
        }
        Ok(Some((frames, newest.into_iter().collect())))
    }
}

/// A slice is at most a quarter of the output cap: queued while the socket is still
/// busy with other output, it must never count as a peer that stopped reading.
fn slice_bytes(app: &App) -> usize {
    (app.config.transport.output_cap_bytes / 4).min(SLICE_MAX)
}
