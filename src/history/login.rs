//! What a login and a friend list add with history on (docs/protocol.md §10.3, §10.5).

use proto::FriendEntry;
use reactor::{ConnId, Remote};

use super::writer::Work;
use crate::app::{App, Fail};

/// Call before `conn`'s session is registered: from then until its backlog is all
/// sent, messages to it are left for the backlog, behind the older ones.
pub fn before_session(app: &App, conn: ConnId) {
    if app.config.history.enabled {
        app.history.catching_up().insert(conn);
    }
}

/// Call once the session of `me` on `conn` is registered and its login reply queued
/// (`started`), or failed to start: the history thread feeds it its backlog. The login
/// runs on the password pool, whose commands reach the loop at once (a reactor worker
/// would hold them), so the reply is ahead of the backlog in the loop's channel.
pub fn after_session(app: &App, remote: &Remote, conn: ConnId, me: &str, started: bool) {
    if !app.config.history.enabled {
        return;
    }
    match app.me.upgrade().filter(|_| started) {
        Some(owner) => app.history.writer.submit(Work::Backlog {
            app: owner,
            remote: remote.clone(),
            conn,
            user: me.to_string(),
        }),
        None => app.history.caught_up(conn),
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
