//! Conversations that are kept (docs/protocol.md §10), on when `[history] enabled`.
//!
//! - `writer`   — [`Writer`]: the one thread that commits sends, many per commit (group
//!   commit), on its own connection, with the 200/202 each send gets and the delivered
//!   marks it moves; only then acks and pushes.
//! - `frames`   — the tunnel frames: send with `cid` (handed to the writer), `read`, and
//!   `typing` with its own per-session limit.
//! - `login`    — what a login adds: marks on friend entries, and the undelivered
//!   backlog sent right after the login reply.
//! - `messages` — `GET /im/messages`, and retention for housekeeping.
//!
//! A message is pushed to its receiver's session by the writer, or sent in a login's
//! backlog, never both: both happen under [`History::delivery`], so a login reads its
//! backlog either before a commit (and the writer then finds the new session) or after
//! it (and the message is in the backlog, the session not yet findable).

mod frames;
mod login;
mod messages;
mod writer;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use reactor::ConnId;

use crate::live::rate_limit::{Bucket, Rate};

pub use frames::frame;
pub use login::{backlog, delivered_at_login, mark_entries};
pub use messages::{expire, messages};
pub use writer::Writer;

/// The history state shared by every worker.
pub struct History {
    writer: Writer,
    delivery: Mutex<()>,
    typing_rate: Rate,
    typing: Mutex<HashMap<ConnId, Bucket>>,
}

impl History {
    /// Starts the writer thread (it keeps a connection of its own).
    pub fn new(typing_rate: Rate) -> Result<History, crate::Error> {
        Ok(History {
            writer: Writer::start()?,
            delivery: Mutex::new(()),
            typing_rate,
            typing: Mutex::new(HashMap::new()),
        })
    }

    /// Held while messages are handed to sessions, by the writer and by a login.
    pub(crate) fn delivery(&self) -> MutexGuard<'_, ()> {
        self.delivery.lock().unwrap_or_else(|p| p.into_inner())
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

    /// `conn` closed: its typing bucket goes.
    pub fn forget(&self, conn: ConnId) {
        self.typing.lock().unwrap_or_else(|p| p.into_inner()).remove(&conn);
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
