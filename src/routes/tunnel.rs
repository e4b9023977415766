//! The login WebSocket (docs/protocol.md §4, §6): login by URL or first frame, the
//! dialogue (send → receive), JSON heartbeats, presence pushes, logoff, and cleanup
//! when the socket closes.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use proto::{Code, Field, Fields, LoginFrame, Profile, SendFrame};
use reactor::{CloseReason, ConnId, Flow, Remote, Request, WsMessage};

use crate::app::{App, Fail, Outcome};
use crate::live::sessions::Ended;
use crate::live::token::new_token;
use crate::routes::accounts::authenticate;
use crate::routes::friends::{friend_entries, request_entries};
use crate::routes::input::Input;

/// Close code sent with 505/524 on a failed login and after logoff or replacement.
const CLOSE_NORMAL: u16 = 1000;
/// Close code for a refused login (524): policy violation.
const CLOSE_POLICY: u16 = 1008;

/// The upgrade of `/im/login` is done: log in from the URL, or wait for the first frame.
pub fn opened(app: &App, conn: ConnId, req: &Request, remote: &Remote) -> Flow {
    app.sessions.open(conn, req.peer.ip());
    let pairs = proto::parse_query(req.query().unwrap_or(""));
    match proto::query_value(&pairs, "account") {
        Some(account) => {
            let password = proto::query_value(&pairs, "password").unwrap_or("");
            login(app, conn, account, password, remote)
        }
        None => Flow::Done,
    }
}

/// A frame on a login WebSocket.
pub fn message(app: &App, conn: ConnId, msg: WsMessage, remote: &Remote) -> Flow {
    let text = match msg {
        WsMessage::Text(t) => t,
        WsMessage::Binary(_) => {
            reply(app, remote, conn, Code::PayloadMustBeText, None);
            return Flow::Done;
        }
    };
    if app.sessions.awaiting_login(conn) {
        // The first text frame carries the credentials; anything else is a failed login.
        let fields = Fields::parse(text.as_bytes());
        let frame = fields.as_ref().ok().and_then(|f| LoginFrame::from_fields(f).ok());
        let (account, password) = frame.map_or(("", ""), |f| (f.account, f.password));
        return login(app, conn, account, password, remote);
    }
    // No user: a failed login is closing this socket.
    if let Some(me) = app.sessions.user_of(conn) {
        match Fields::parse(text.as_bytes()) {
            Ok(fields) if fields.is_heartbeat() => heartbeat(app, conn, remote),
            Ok(fields) if app.config.history.enabled => {
                return crate::history::frame(app, conn, &me, &fields, remote);
            }
            Ok(fields) => send(app, conn, &me, &fields, remote),
            Err(code) => reply(app, remote, conn, code, None),
        }
    }
    Flow::Done
}

/// `{"type":"heartbeat"}` → 200 with `"type":"heartbeat"` (rate limited per session).
fn heartbeat(app: &App, conn: ConnId, remote: &Remote) {
    if !app.sessions.take_heartbeat(conn) {
        app.metrics.rate_limited("heartbeat");
        return reply(app, remote, conn, Code::TooManyRequests, None);
    }
    app.metrics.ws_reply(Code::Success);
    remote.send_text(conn, proto::heartbeat_reply());
}

/// A send frame `{"id","toFriend","payload"}`, checked in the order of §6.1.
fn send(app: &App, conn: ConnId, me: &str, fields: &Fields, remote: &Remote) {
    // Every reply to a frame whose id is a non-empty string carries it.
    let id = SendFrame::reply_id(fields);
    let code = check_send(app, conn, me, fields, remote).unwrap_or_else(|code| code);
    reply(app, remote, conn, code, id);
}

fn check_send(
    app: &App,
    conn: ConnId,
    me: &str,
    fields: &Fields,
    remote: &Remote,
) -> Result<Code, Code> {
    let (id, to, payload) = checked_send(app, conn, me, fields)?;
    let ts = now_ms();
    if let Some(friend) = app.sessions.conn_of(to) {
        remote.send_text(friend, proto::receive_frame(id, me, payload, ts));
        return Ok(Code::Success);
    }
    Err(Code::FriendIsOffline)
}

/// The checks every send frame passes, kept or not, in the order of §6.1: 510, 511,
/// 506, 527, 512, then the send budget (524). Its dialogue id, friend and payload.
pub(crate) fn checked_send<'f>(
    app: &App,
    conn: ConnId,
    me: &str,
    fields: &'f Fields,
) -> Result<(&'f str, &'f str, &'f str), Code> {
    let SendFrame { id, to_friend: to, payload } = SendFrame::from_fields(fields)?;
    if to.is_empty() {
        return Err(Code::FriendIdEmpty);
    }
    if proto::is_blank(payload) {
        return Err(Code::PayloadEmpty);
    }
    let Some(id) = id else {
        return Err(Code::DialogueIdEmpty);
    };
    app.config.fields.check(Field::Payload, payload)?;
    app.config.fields.check(Field::DialogueId, id)?;
    if !app.are_friends(me, to).map_err(|f| f.code())? {
        return Err(Code::NotRelationOfFriend);
    }
    if !app.sessions.take_send(conn) {
        app.metrics.rate_limited("send");
        return Err(Code::TooManyRequests);
    }
    Ok((id, to, payload))
}

/// Queues a status reply (with the dialogue `id` when there is one) on `conn`.
fn reply(app: &App, remote: &Remote, conn: ConnId, code: Code, id: Option<&str>) {
    app.metrics.ws_reply(code);
    remote.send_text(conn, proto::status_with_id(code, id));
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Checks credentials on the hasher pool and starts the session there, or answers
/// 505/524 and closes. The connection's next frame waits for the outcome.
///
/// The failure is charged to the IP's budget before the check and refunded when the
/// password was right, so however many attempts arrive at once, at most the budget's
/// worth is ever checked.
fn login(app: &App, conn: ConnId, account: &str, password: &str, remote: &Remote) -> Flow {
    if !app.sessions.begin_login(conn) {
        return Flow::Done;
    }
    let Some(ip) = app.sessions.peer(conn) else { return Flow::Done };
    if !app.login_fail_limit.take(ip) {
        app.metrics.rate_limited("login");
        log::debug!("login from {ip} refused: too many failures");
        refuse(app, remote, conn, Code::TooManyRequests, CLOSE_POLICY);
        return Flow::Done;
    }
    let Some(pool) = app.me.upgrade() else { return Flow::Done };
    let (account, password) = (account.trim().to_string(), password.to_string());
    let job_remote = remote.clone();
    let queued = app.hasher.run_for(conn, remote, move || {
        finish_login(&pool, conn, ip, &account, &password, &job_remote);
    });
    if !queued {
        app.login_fail_limit.refund(ip);
        app.metrics.rate_limited("hasher");
        log::debug!("login from {ip} refused: the password checks are busy");
        refuse(app, remote, conn, Code::TooManyRequests, CLOSE_POLICY);
        return Flow::Done;
    }
    Flow::Deferred
}

fn finish_login(
    app: &App,
    conn: ConnId,
    ip: IpAddr,
    account: &str,
    password: &str,
    remote: &Remote,
) {
    match check_login(app, account, password) {
        Ok(Some((user, rehash))) => {
            app.login_fail_limit.refund(ip);
            if rehash {
                rehash_password(app, &user, password);
            }
            start(app, conn, user, remote);
        }
        Ok(None) => {
            app.metrics.login(false);
            log::debug!("failed login from {ip}");
            refuse(app, remote, conn, Code::AccountPasswordWrong, CLOSE_NORMAL);
        }
        Err(f) => {
            // Not a wrong password: the reserved failure is given back.
            app.login_fail_limit.refund(ip);
            refuse(app, remote, conn, f.code(), CLOSE_NORMAL);
        }
    }
}

/// Stores the password hashed with the configured parameters, replacing one made with
/// older ones. A failure only leaves the old hash, which still verifies.
fn rehash_password(app: &App, user: &store::UserRow, password: &str) {
    let Ok(new) = app.passwords.hash(password) else {
        return Fail::Hash.log();
    };
    match app.store(|s| s.rehash_password(&user.id, &user.password_hash, &new)) {
        Ok(_) => log::debug!("a password hash was upgraded to the configured parameters"),
        Err(f) => f.log(),
    }
}

fn refuse(app: &App, remote: &Remote, conn: ConnId, code: Code, close: u16) {
    reply(app, remote, conn, code, None);
    remote.close(conn, close, "");
}

/// The user whose account and password these are, and whether the stored hash wants
/// the configured parameters. An unknown account costs one dummy verification, as much
/// as a wrong password. Accounts are not checked for invisible characters here: none
/// can be registered any more, and one made before that rule can still log in.
fn check_login(
    app: &App,
    account: &str,
    password: &str,
) -> Result<Option<(store::UserRow, bool)>, Fail> {
    let limits = &app.config.fields;
    if account.is_empty()
        || proto::is_blank(password)
        || limits.check(Field::Account, account).is_err()
        || limits.check(Field::Password, password).is_err()
    {
        return Ok(None);
    }
    let user = app.store(|s| s.user_by_account(account))?;
    let verdict = app.passwords.verify(password, user.as_ref().map(|u| u.password_hash.as_str()));
    Ok(user.filter(|_| verdict.ok).map(|u| (u, verdict.rehash)))
}

/// A successful login: register the session, answer, tell online friends, replace an
/// older session, deliver kept messages (history on).
fn start(app: &App, conn: ConnId, user: store::UserRow, remote: &Remote) {
    let me = user.id.clone();
    let loaded = app.store(|s| {
        let newest = app.config.requests.login_requests;
        Ok((s.friends_of(&me)?, s.requests_to(&me, newest)?))
    });
    let (friends, requests) = match loaded {
        Ok(x) => x,
        Err(f) => return refuse(app, remote, conn, f.code(), CLOSE_NORMAL),
    };
    let token = new_token();
    let profile = Profile {
        id: user.id,
        name: user.name,
        picture: user.picture,
        sex: user.sex,
        birthday: user.birthday,
        sign: user.sign,
        mail: user.mail,
    };
    let requests = request_entries(requests);
    let friend_ids: Vec<String> = friends.iter().map(|f| f.id.clone()).collect();
    let mut marked = friend_entries(friends, &crate::live::sessions::Online::none());
    if let Err(f) = crate::history::mark_entries(app, &me, &mut marked) {
        return refuse(app, remote, conn, f.code(), CLOSE_NORMAL);
    }
    // Kept messages follow the login reply, before anything sent from now on (see history).
    crate::history::before_session(app, conn);
    let started = app.sessions.start(&me, conn, token.clone(), |online| {
        let mut friends = marked;
        for f in &mut friends {
            f.online = online.conn(&f.id).is_some();
        }
        remote.send_text(conn, proto::login_reply(&friends, &profile, &requests, &token));
        let push = proto::push_id(Code::FriendOnline, &me);
        for f in &friend_ids {
            if let Some(c) = online.conn(f) {
                remote.send_text(c, push.clone());
                app.metrics.pushed(Code::FriendOnline);
            }
        }
    });
    crate::history::after_session(app, remote, conn, &me, started.is_some());
    let Some((replaced, ())) = started else { return };
    app.metrics.login(true);
    app.metrics.ws_reply(Code::Success);
    log::debug!("login: session started for a user");
    if let Some(old) = replaced {
        app.metrics.pushed(Code::LoginInOtherPlace);
        remote.send_text(old, proto::status(Code::LoginInOtherPlace));
        remote.close(old, CLOSE_NORMAL, "login in other place");
    }
}

/// `/im/logoff?id&token`: ends the session at once, then closes its socket (1000).
pub fn logoff(app: &App, req: &Request, remote: &Remote) -> Outcome {
    let input = Input::of(req)?;
    input.known(&["id", "token"])?;
    let me = authenticate(app, &input)?;
    let friends = app.store(|s| s.friend_ids(&me))?;
    let (conn, ()) =
        app.sessions.end_user(&me, |online| announce_offline(app, remote, online, &me, &friends));
    if let Some(conn) = conn {
        remote.close(conn, CLOSE_NORMAL, "logoff");
    }
    Ok(proto::status(Code::Success))
}

fn announce_offline(
    app: &App,
    remote: &Remote,
    online: &crate::live::sessions::Online<'_>,
    me: &str,
    friends: &[String],
) {
    let push = proto::push_id(Code::FriendOffline, me);
    for f in friends {
        if let Some(c) = online.conn(f) {
            remote.send_text(c, push.clone());
            app.metrics.pushed(Code::FriendOffline);
        }
    }
}

/// The socket closed: forget it, and tell friends if its session just ended.
pub fn closed(app: &App, conn: ConnId, reason: CloseReason, remote: &Remote) {
    let friends = match app.sessions.user_of(conn) {
        Some(me) => app.store(|s| s.friend_ids(&me)).unwrap_or_else(|f| {
            f.log();
            Vec::new()
        }),
        None => Vec::new(),
    };
    app.history.forget(conn);
    let ended = app.sessions.close(conn, |ended, online| {
        if let Ended::Session(me) = ended {
            announce_offline(app, remote, online, me, &friends);
        }
        match ended {
            Ended::Session(me) | Ended::Superseded(me) => Some(me.clone()),
            Ended::Anonymous => None,
        }
    });
    if let Some(me) = ended {
        if app.sessions.conn_of(&me).is_none() {
            app.friend_cache.forget([&*me]);
        }
    }
    log::debug!("login socket closed: {reason:?}");
}

/// Closes sockets that sent no credentials in time (505, then close).
pub fn expire_logins(app: &App, remote: &Remote) {
    for conn in app.sessions.login_overdue(app.config.session.login_frame_timeout) {
        if app.sessions.begin_login(conn) {
            app.metrics.login(false);
            refuse(app, remote, conn, Code::AccountPasswordWrong, CLOSE_NORMAL);
        }
    }
}
