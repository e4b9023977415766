//! What a login and a friend list add with history on (docs/protocol.md §10.3, §10.5).

use std::collections::HashMap;

use proto::{Code, FriendEntry};
use reactor::{ConnId, Remote};
use store::HistoryMessage;

use super::writer::delivered_push;
use crate::app::{App, Fail};

/// The messages a new session is sent right after its login reply.
#[derive(Debug, Default)]
pub struct Backlog(Vec<HistoryMessage>);

/// Reads `me`'s undelivered messages, at most `[history] login_backlog`, oldest first
/// conversation by conversation. Call it under [`History::delivery`](super::History).
pub fn backlog(app: &App, me: &str) -> Result<Backlog, Fail> {
    if !app.config.history.enabled {
        return Ok(Backlog::default());
    }
    let limit = app.config.history.login_backlog;
    Ok(Backlog(app.store(|s| s.undelivered(me, limit))?))
}

impl Backlog {
    /// Queues the backlog on the new session `conn`.
    pub fn send(&self, remote: &Remote, conn: ConnId) {
        for m in &self.0 {
            remote.send_text(conn, super::stored_frame(m));
        }
    }
}

/// After the backlog was queued: moves `me`'s delivered marks to the last message of
/// each conversation in it, and tells each sender whose mark moved (306).
pub fn delivered_at_login(app: &App, remote: &Remote, me: &str, backlog: &Backlog) {
    if backlog.0.is_empty() {
        return;
    }
    app.metrics.offline_delivered(backlog.0.len() as u64);
    let mut last: HashMap<&str, i64> = HashMap::new();
    for m in &backlog.0 {
        let seq = last.entry(&m.from_id).or_default();
        *seq = (*seq).max(m.seq);
    }
    let marks: Vec<(String, i64)> = last.into_iter().map(|(p, s)| (p.to_string(), s)).collect();
    match app.store(|s| s.mark_delivered(me, &marks)) {
        Ok(moved) => {
            for (sender, seq) in moved {
                let push = delivered_push(me, seq);
                for c in app.sessions.conns_of(&sender) {
                    remote.send_text(c, push.clone());
                    app.metrics.pushed(Code::MessageDelivered);
                }
                crate::cluster::fanout::push_elsewhere(app, &sender, &push);
            }
        }
        Err(f) => f.log(),
    }
}

/// Adds `last_seq`, `read_seq` and `unread` to `me`'s friend entries (history on).
pub fn mark_entries(app: &App, me: &str, entries: &mut [FriendEntry]) -> Result<(), Fail> {
    if !app.config.history.enabled {
        return Ok(());
    }
    app.store(|s| {
        for e in entries.iter_mut() {
            let c = s.conversation(me, &e.id)?;
            (e.last_seq, e.read_seq, e.unread) =
                (Some(c.last_seq), Some(c.read_seq), Some(c.unread));
        }
        Ok(())
    })
}
