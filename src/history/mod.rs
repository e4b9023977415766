//! Conversations that are kept (docs/protocol.md §10), on when `[history] enabled`.
//!
//! - `writer`   — [`Writer`]: the one thread that commits sends, many per commit (group
//!   commit), on its own connection, with the 200/202 each send gets; only then acks
//!   and pushes. It moves delivered marks (306) when the reactor reports a pushed
//!   frame written to the socket, and feeds new sessions their backlogs.
//! - `backlog`  — a new session's undelivered messages, read and sent a slice at a time,
//!   each slice once the one before is in the socket.
//! - `frames`   — the tunnel frames: send with `cid` (handed to the writer), `read`, and
//!   `typing` with its own per-session limit.
//! - `order`    — on a node of several, each session's newest `seq` per conversation,
//!   so that a frame from another node never jumps a gap nor comes twice.
//! - `login`    — what a login adds: marks on friend entries, and its backlog's start.
//! - `messages` — `GET /im/messages`, and retention for housekeeping.
//! - `pages`    — the newest page of each conversation read, encoded, forgotten at
//!   every change to it.
//!
//! A message reaches a session once, in `seq` order, pushed or in the backlog, never
//! both: a session is marked catching up ([`History::is_catching_up`]) before it is
//! registered, and until its feed has read all its backlog (from its own cursor) the
//! writer leaves messages to it for the feed. Feed and writer are one thread, so no commit
//! falls between the feed's last read and the session taking pushes.

mod backlog;
mod frames;
mod login;
mod messages;
mod order;
mod pages;
mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use reactor::{ConnId, Remote};

use crate::app::App;

use crate::live::rate_limit::{Bucket, Rate};

pub use frames::{frame, writes_store};
pub use login::{after_session, before_session, mark_entries};
pub use messages::{expire, messages};
pub use writer::Writer;

use pages::Pages;
use writer::Work;

/// The history state shared by every worker.
pub struct History {
    enabled: bool,
    writer: Writer,
    /// `/im/messages` pages; whoever changes a conversation forgets its page.
    pub(crate) pages: Pages,
    /// Sessions whose backlog is still being fed: messages to them wait for the feed.
    catching_up: Mutex<HashSet<ConnId>>,
    typing_rate: Rate,
    typing: Mutex<HashMap<ConnId, Bucket>>,
}

impl History {
    /// Starts the writer thread (it keeps a connection of its own). `cache_pages`:
    /// this process alone writes the store (SQLite), so pages can be kept.
    pub fn new(
        enabled: bool,
        typing_rate: Rate,
        cache_pages: bool,
    ) -> Result<History, crate::Error> {
        Ok(History {
            enabled,
            writer: Writer::start()?,
            pages: Pages::new(enabled && cache_pages),
            catching_up: Mutex::new(HashSet::new()),
            typing_rate,
            typing: Mutex::new(HashMap::new()),
        })
    }

    fn catching_up(&self) -> MutexGuard<'_, HashSet<ConnId>> {
        self.catching_up.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `conn`'s session is still being fed its backlog.
    pub(crate) fn is_catching_up(&self, conn: ConnId) -> bool {
        self.catching_up().contains(&conn)
    }

    /// `conn`'s backlog is all sent (or will never be): it takes pushes.
    pub(crate) fn caught_up(&self, conn: ConnId) {
        self.catching_up().remove(&conn);
    }

    /// Tagged frames are in their sockets: the writer moves their marks.
    pub fn written(&self, app: &App, reports: Vec<(ConnId, Vec<u64>)>, remote: &Remote) {
        if let Some(app) = app.me.upgrade() {
            self.writer.submit(Work::Written { app, remote: remote.clone(), reports });
        }
    }

    /// A kept message's frame from another node for a session here: the writer
    /// delivers it in the conversation's order and moves its marks once written.
    pub fn arrived(&self, app: &App, kept: crate::cluster::KeptFrame, remote: &Remote) {
        if let Some(app) = app.me.upgrade() {
            self.writer.submit(Work::Arrived { app, remote: remote.clone(), kept });
        }
    }

    /// Spends a typing token of `conn`; false when over the limit.
    fn take_typing(&self, conn: ConnId) -> bool {
        let rate = self.typing_rate;
        if rate.is_off() {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.typing.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(conn).or_insert_with(|| rate.bucket(now));
        rate.take(bucket, now)
    }

    /// The friendship of `a` and `b` ended, with its conversation: backlogs being fed
    /// to either read a new one from `seq` 1. Call after the commit and before the
    /// reply, so that no send of a conversation begun again is queued ahead of this.
    pub fn conversation_ended(&self, a: &str, b: &str) {
        if self.enabled {
            self.writer.submit(Work::ConversationEnded(a.to_string(), b.to_string()));
        }
    }

    /// `conn` closed: its typing bucket, backlog and tags go.
    pub fn forget(&self, conn: ConnId) {
        self.typing.lock().unwrap_or_else(|p| p.into_inner()).remove(&conn);
        if self.enabled {
            self.caught_up(conn);
            self.writer.submit(Work::Closed(conn));
        }
    }
}

/// The receive frame of a stored message, as the login backlog and `/im/messages` give it.
fn stored_frame(m: &store::HistoryMessage) -> String {
    proto::kept_receive_frame(
        &m.dialogue_id,
        &m.from_id,
        &m.payload,
        m.ts_ms,
        m.seq,
        m.cid.as_deref(),
    )
}
