//! Tunnel frames with history on (docs/protocol.md §10.2, §10.3): send with `cid`, `read`
//! and `typing`.

use proto::{Code, Fields, Reply, SendFrame};
use reactor::{ConnId, Flow, Remote};
use store::NewHistoryMessage;

use super::writer::{Done, Job, Work};
use crate::app::App;
use crate::live::friend_cache::Friends;
use crate::routes::tunnel::{checked_send, now_ms};

/// Longest `cid`, in characters (§10.2).
const CID_CHARS: usize = 64;

/// A text frame of a logged-in session, other than a heartbeat.
pub fn frame(
    app: &App,
    conn: ConnId,
    me: &str,
    fields: &Fields,
    friends: &Friends,
    remote: &Remote,
) -> Flow {
    match fields.frame_type() {
        Some("read") => {
            let code = read(app, conn, me, fields, friends, remote).unwrap_or_else(|c| c);
            typed_reply(app, remote, conn, code, "read");
            Flow::Done
        }
        Some("typing") => {
            let code = typing(app, conn, me, fields, friends, remote).unwrap_or_else(|c| c);
            typed_reply(app, remote, conn, code, "typing");
            Flow::Done
        }
        _ => send(app, conn, me, fields, friends, remote),
    }
}

/// Whether [`frame`] would write the store for this frame (a read mark): the event
/// loop, which never waits for the store, leaves such a frame to a worker.
pub fn writes_store(fields: &Fields) -> bool {
    fields.frame_type() == Some("read")
}

fn typed_reply(app: &App, remote: &Remote, conn: ConnId, code: Code, kind: &str) {
    app.metrics.ws_reply(code);
    remote.send_text(conn, Reply::new(code).str("type", kind).finish());
}

/// A send frame: §6.1's checks, then `cid` (527), then the writer commits it; the
/// connection's next frame waits for the reply.
fn send(
    app: &App,
    conn: ConnId,
    me: &str,
    fields: &Fields,
    friends: &Friends,
    remote: &Remote,
) -> Flow {
    let reply_id = SendFrame::reply_id(fields);
    match check(app, conn, me, fields, friends) {
        Ok(message) => {
            let Some(owner) = app.me.upgrade() else { return Flow::Done };
            let done = Done { remote: remote.clone(), conn };
            let job = Job { app: owner, conn, reply_id: reply_id.map(String::from), message, done };
            app.history.writer.submit(Work::Send(job));
            Flow::Deferred
        }
        Err(code) => {
            app.metrics.ws_reply(code);
            remote.send_text(conn, proto::status_with_id(code, reply_id));
            Flow::Done
        }
    }
}

fn check(
    app: &App,
    conn: ConnId,
    me: &str,
    fields: &Fields,
    friends: &Friends,
) -> Result<NewHistoryMessage, Code> {
    // The cid's type is checked with the frame's other fields, before any code below.
    let cid = SendFrame::cid(fields)?;
    let (id, to, payload) = checked_send(app, conn, me, fields, friends)?;
    if let Some(cid) = cid {
        proto::check_chars(cid, CID_CHARS)?;
    }
    Ok(NewHistoryMessage {
        from_id: me.to_string(),
        to_id: to.to_string(),
        dialogue_id: id.to_string(),
        cid: cid.map(String::from),
        payload: payload.to_string(),
        ts_ms: now_ms(),
        live: false,
    })
}

/// `{"type":"read","with","seq"}`: moves my read mark; 307 to the friend's sessions
/// and my other sessions (§11.1) when it moved.
fn read(
    app: &App,
    conn: ConnId,
    me: &str,
    fields: &Fields,
    friends: &Friends,
    remote: &Remote,
) -> Result<Code, Code> {
    let with = fields.text("with")?;
    if with.is_empty() {
        return Err(Code::FriendInfoEmpty);
    }
    if !app.are_friends_in(friends, me, with).map_err(|f| f.code())? {
        return Err(Code::NotRelationOfFriend);
    }
    let seq = fields.non_negative("seq")?.ok_or(Code::ProtocolError)?;
    let moved = app.store(|s| s.mark_read(me, with, seq)).map_err(|f| f.code())?;
    if let Some(seq) = moved {
        app.history.pages.forget(me, with);
        let push =
            Reply::new(Code::MessageRead).str("by", me).str("with", with).int("seq", seq).finish();
        let mine = app.sessions.conns_of(me).into_iter().filter(|c| *c != conn);
        for c in app.sessions.conns_of(with).into_iter().chain(mine) {
            remote.send_text(c, push.clone());
            app.metrics.pushed(Code::MessageRead);
        }
        crate::cluster::fanout::push_elsewhere_all(app, [with, me], &push);
    }
    Ok(Code::Success)
}

/// `{"type":"typing","to"}`: 308 to the friend; nothing is stored.
fn typing(
    app: &App,
    conn: ConnId,
    me: &str,
    fields: &Fields,
    friends: &Friends,
    remote: &Remote,
) -> Result<Code, Code> {
    let to = fields.text("to")?;
    if to.is_empty() {
        return Err(Code::FriendInfoEmpty);
    }
    if !app.are_friends_in(friends, me, to).map_err(|f| f.code())? {
        return Err(Code::NotRelationOfFriend);
    }
    if !app.history.take_typing(conn) {
        app.metrics.rate_limited("typing");
        return Err(Code::TooManyRequests);
    }
    let push = Reply::new(Code::FriendTyping).str("id", me).finish();
    for friend in app.sessions.conns_of(to) {
        remote.send_text(friend, push.clone());
        app.metrics.pushed(Code::FriendTyping);
    }
    crate::cluster::fanout::push_elsewhere(app, to, &push);
    Ok(Code::Success)
}
