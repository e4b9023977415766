//! The login WebSocket (docs/protocol.md §4, §6, §11): login by URL or first frame
//! (password or remembered device), the dialogue (send → receive, with carbon copies to
//! the sender's other sessions), JSON heartbeats, presence pushes, logoff, and cleanup
//! when the socket closes.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use proto::{Code, Field, Fields, LoginFrame, Profile, SendFrame};
use reactor::{CloseReason, ConnId, Flow, Remote, Request, WsMessage};

use crate::app::{App, Fail, Outcome};
use crate::auth::devices::{self, Remembered};
use crate::cluster::fanout;
use crate::live::friend_cache::Friends;
use crate::live::sessions::{Ended, NotStarted, Online, Session};
use crate::live::token::new_token;
use crate::routes::accounts::{authenticate_session, Holder};
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
            let offered = Credentials::Password {
                account: account.trim().to_string(),
                password: password.to_string(),
                remember: false,
            };
            login(app, conn, offered, remote)
        }
        None => Flow::Done,
    }
}

/// What a login offers (docs/protocol.md §4.1, §11.2).
enum Credentials {
    /// An account and its password; with `remember`, the reply carries a device token.
    Password { account: String, password: String, remember: bool },
    /// An account and a device token from an earlier remembered login (no password).
    Device { account: String, token: String },
}

impl Credentials {
    /// The credentials of a first frame: a device token counts only without a password
    /// (absent, or empty: only white space, docs/protocol.md §1). A frame that is not a
    /// login frame offers an empty password (505).
    fn of(frame: Option<LoginFrame<'_>>) -> Credentials {
        let f = frame.unwrap_or(LoginFrame {
            account: "",
            password: "",
            device_token: "",
            remember: false,
        });
        if proto::is_blank(f.password) && !f.device_token.is_empty() {
            return Credentials::Device {
                account: f.account.to_string(),
                token: f.device_token.to_string(),
            };
        }
        Credentials::Password {
            account: f.account.to_string(),
            password: f.password.to_string(),
            remember: f.remember,
        }
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
        return login(app, conn, Credentials::of(frame), remote);
    }
    // No user: a failed login is closing this socket.
    if let Some(me) = app.sessions.user_of(conn) {
        match Fields::parse(text.as_bytes()) {
            Ok(fields) => return dialogue(app, conn, &me, &fields, &Friends::Cache, remote),
            Err(code) => reply(app, remote, conn, code, None),
        }
    }
    Flow::Done
}

/// [`message`] on the event loop's thread ([`reactor::Handler::message_now`]): a frame
/// of a live session that is answered from memory. Given back for a worker: a login (a
/// password hash, the store), a session whose friends are not in memory yet (the
/// store), a read mark (the store), and every frame on a node of a cluster (Redis).
pub fn message_now(
    app: &App,
    conn: ConnId,
    msg: WsMessage,
    remote: &Remote,
) -> Result<Flow, WsMessage> {
    if app.cluster.is_some() {
        return Err(msg);
    }
    let WsMessage::Text(text) = &msg else { return Err(msg) };
    let Some(me) = app.sessions.user_of(conn) else { return Err(msg) };
    let Some(friends) = app.friend_cache.known(&me) else { return Err(msg) };
    match Fields::parse(text.as_bytes()) {
        Ok(fields) if app.config.history.enabled && crate::history::writes_store(&fields) => {}
        Ok(fields) => {
            return Ok(dialogue(app, conn, &me, &fields, &Friends::Known(friends), remote))
        }
        Err(code) => {
            reply(app, remote, conn, code, None);
            return Ok(Flow::Done);
        }
    }
    Err(msg)
}

/// A frame of `me`'s live session: a heartbeat, or a send (with history on, also a read
/// mark or typing).
fn dialogue(
    app: &App,
    conn: ConnId,
    me: &str,
    fields: &Fields,
    friends: &Friends,
    remote: &Remote,
) -> Flow {
    if fields.is_heartbeat() {
        heartbeat(app, conn, remote);
    } else if app.config.history.enabled {
        return crate::history::frame(app, conn, me, fields, friends, remote);
    } else {
        send(app, conn, me, fields, friends, remote);
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
fn send(app: &App, conn: ConnId, me: &str, fields: &Fields, friends: &Friends, remote: &Remote) {
    // Every reply to a frame whose id is a non-empty string carries it.
    let id = SendFrame::reply_id(fields);
    let code = check_send(app, conn, me, fields, friends, remote).unwrap_or_else(|code| code);
    reply(app, remote, conn, code, id);
}

fn check_send(
    app: &App,
    conn: ConnId,
    me: &str,
    fields: &Fields,
    friends: &Friends,
    remote: &Remote,
) -> Result<Code, Code> {
    let (id, to, payload) = checked_send(app, conn, me, fields, friends)?;
    let ts = now_ms();
    let friends = app.sessions.conns_of(to);
    let places = fanout::sessions_elsewhere(app, to);
    if friends.is_empty() && places.is_empty() {
        return Err(Code::FriendIsOffline);
    }
    let frame = proto::receive_frame(id, me, payload, ts);
    carbon_copies(app, remote, conn, me, to, &frame);
    for friend in friends {
        remote.send_text(friend, frame.clone());
    }
    fanout::publish_to(app, &places, &frame);
    Ok(Code::Success)
}

/// docs/protocol.md §11.1: a message sent from `conn` is written to `me`'s other
/// sessions too, as its receive `frame` with `"to":"<friend id>"`.
pub(crate) fn carbon_copies(
    app: &App,
    remote: &Remote,
    conn: ConnId,
    me: &str,
    to: &str,
    frame: &str,
) {
    let mine: Vec<ConnId> = app.sessions.conns_of(me).into_iter().filter(|c| *c != conn).collect();
    let places = fanout::sessions_elsewhere(app, me);
    if mine.is_empty() && places.is_empty() {
        return;
    }
    let copy = proto::with_str(frame.to_string(), "to", to);
    for c in mine {
        remote.send_text(c, copy.clone());
    }
    fanout::publish_to(app, &places, &copy);
}

/// The checks every send frame passes, kept or not, in the order of §6.1: 510, 511,
/// 506, 527, 512, then the send budget (524). Its dialogue id, friend and payload.
pub(crate) fn checked_send<'f>(
    app: &App,
    conn: ConnId,
    me: &str,
    fields: &'f Fields,
    friends: &Friends,
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
    if !app.are_friends_in(friends, me, to).map_err(|f| f.code())? {
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

/// Checks credentials and starts the session, or answers 505/524 and closes. A
/// password is checked on the hasher pool, and the connection's next frame waits for
/// the outcome; a device token costs no hash and is checked here.
///
/// The failure is charged to the IP's budget before the check and refunded when the
/// credentials were right, so however many attempts arrive at once, at most the
/// budget's worth is ever checked; a wrong device token spends it like a wrong password.
fn login(app: &App, conn: ConnId, offered: Credentials, remote: &Remote) -> Flow {
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
    let (account, password, remember) = match offered {
        Credentials::Device { account, token } => {
            device_login(app, conn, ip, &account, &token, remote);
            return Flow::Done;
        }
        Credentials::Password { account, password, remember } => (account, password, remember),
    };
    let Some(pool) = app.me.upgrade() else { return Flow::Done };
    let job_remote = remote.clone();
    let since = app.sessions.login_mark();
    let queued = app.hasher.run_for(conn, remote, move || {
        let offered = Offered { account: &account, password: &password, remember, since };
        finish_login(&pool, conn, ip, &offered, &job_remote);
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

/// A password login on the hasher pool.
struct Offered<'a> {
    account: &'a str,
    password: &'a str,
    remember: bool,
    /// The registry's login mark from before the check.
    since: u64,
}

fn finish_login(app: &App, conn: ConnId, ip: IpAddr, offered: &Offered<'_>, remote: &Remote) {
    let Offered { account, password, remember, since } = *offered;
    match check_login(app, account, password) {
        Ok(Some((user, rehash))) => {
            app.login_fail_limit.refund(ip);
            if rehash {
                rehash_password(app, &user, password);
            }
            let device = if remember { devices::remember(app, &user.id) } else { Ok(None) };
            match device {
                Ok(device) => start(app, conn, user, device, (since, true), remote),
                Err(f) => refuse(app, remote, conn, f.code(), CLOSE_NORMAL),
            }
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

/// A login by device token (§11.2): no password hash is run. An unknown, expired or
/// revoked token, or one of another account, is a failed login like a wrong password.
fn device_login(app: &App, conn: ConnId, ip: IpAddr, account: &str, token: &str, remote: &Remote) {
    let since = app.sessions.login_mark();
    match devices::check(app, account, token) {
        Ok(Some((user, device))) => {
            app.login_fail_limit.refund(ip);
            let device = Some(Remembered { id: device, token: None });
            start(app, conn, user, device, (since, false), remote);
        }
        Ok(None) => {
            app.metrics.login(false);
            log::debug!("failed login by device token from {ip}");
            refuse(app, remote, conn, Code::AccountPasswordWrong, CLOSE_NORMAL);
        }
        Err(f) => {
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

/// A successful login: register the session, answer (with a new device token when one
/// was made), tell online friends if the user just came online, replace the oldest
/// session beyond `[session] max_devices`, deliver kept messages (history on).
/// `since` is the login's mark, and `by_password` says the password was verified
/// against `user`'s hash (else a device token was checked).
fn start(
    app: &App,
    conn: ConnId,
    user: store::UserRow,
    device: Option<Remembered>,
    (since, by_password): (u64, bool),
    remote: &Remote,
) {
    let me = user.id.clone();
    let checked = by_password.then(|| user.password_hash.clone());
    let token = new_token();
    // On a node of several, the session is registered in the cluster before the reply
    // is loaded: what another node sends it from now on (a 520, a message to its
    // other device) reaches it, held until the reply is queued
    // (`Sessions::send_or_hold`); what came before is in the reply.
    fanout::started(app, &me, conn, &token, device.as_ref().map(|d| d.id));
    let unregister = || fanout::ended(app, &me, conn);
    let loaded = app.store(|s| {
        let newest = app.config.requests.login_requests;
        Ok((s.friends_of(&me)?, s.requests_to(&me, newest)?))
    });
    let (friends, requests) = match loaded {
        Ok(x) => x,
        Err(f) => {
            unregister();
            return refuse(app, remote, conn, f.code(), CLOSE_NORMAL);
        }
    };
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
    let mut marked = friend_entries(friends, &Online::none());
    if let Err(f) = crate::history::mark_entries(app, &me, &mut marked) {
        unregister();
        return refuse(app, remote, conn, f.code(), CLOSE_NORMAL);
    }
    let known: Vec<(String, i64)> =
        marked.iter().filter_map(|f| Some((f.id.clone(), f.last_seq?))).collect();
    // Kept messages follow the login reply, before anything sent from now on (see history).
    crate::history::before_session(app, conn);
    let (device, device_token) = device.map_or((None, None), |d| (Some(d.id), d.token));
    let session = Session { conn, token: token.clone(), device };
    // Presence is the cluster's: friends on other nodes count as online, and with a
    // session elsewhere this login is not the user's first.
    let friends_elsewhere: std::collections::HashSet<&str> = friend_ids
        .iter()
        .filter(|f| fanout::online_elsewhere(app, f))
        .map(String::as_str)
        .collect();
    // With one device every other session is replaced: the login is announced, as on
    // one node.
    let me_elsewhere = app.config.session.max_devices > 1 && fanout::online_elsewhere(app, &me);
    let mark = (since, checked.as_deref());
    let started = app.sessions.start(&me, session, mark, |online, first| {
        let first = first && !me_elsewhere;
        let mut friends = marked;
        for f in &mut friends {
            f.online = online.is_online(&f.id) || friends_elsewhere.contains(f.id.as_str());
        }
        let mut reply = proto::login_reply(&friends, &profile, &requests, &token);
        if let Some(device_token) = &device_token {
            reply = proto::with_str(reply, "device_token", device_token);
        }
        remote.send_text(conn, reply);
        for held in app.sessions.release_held(conn) {
            remote.send_text(conn, held);
        }
        if first {
            let push = proto::push_id(Code::FriendOnline, &me);
            for c in friend_ids.iter().flat_map(|f| online.conns(f)) {
                remote.send_text(c, push.clone());
                app.metrics.pushed(Code::FriendOnline);
            }
        }
        first
    });
    // A device-token login runs on a reactor worker, which holds its replies until the
    // job ends; the backlog comes from the history thread, which does not wait for it.
    remote.flush();
    crate::history::after_session(app, remote, conn, &me, known, started.is_ok());
    let started = match started {
        Ok(started) => started,
        // Its password or device token was revoked while it was being checked.
        Err(NotStarted::Revoked) => {
            unregister();
            return refuse(app, remote, conn, Code::AccountPasswordWrong, CLOSE_NORMAL);
        }
        Err(NotStarted::Closed) => return unregister(),
    };
    for old in &started.replaced {
        fanout::ended(app, &me, *old);
    }
    fanout::replace_beyond_max(app, remote, &me);
    if started.then {
        let push = proto::push_id(Code::FriendOnline, &me);
        fanout::push_elsewhere_all(app, friend_ids.iter().map(String::as_str), &push);
    }
    app.metrics.login(true);
    app.metrics.ws_reply(Code::Success);
    log::debug!("login: session started for a user");
    end_replaced(app, remote, &started.replaced, "login in other place");
}

/// Sends 513 to each session in `replaced` and closes it (1000): a login beyond
/// `[session] max_devices`, or a password change from another session.
pub(crate) fn end_replaced(app: &App, remote: &Remote, replaced: &[ConnId], why: &str) {
    for old in replaced {
        app.metrics.pushed(Code::LoginInOtherPlace);
        remote.send_text(*old, proto::replaced_push());
        remote.close(*old, CLOSE_NORMAL, why);
    }
}

/// `/im/logoff?id&token[&forget=true]`: ends the session whose token this is at once,
/// then closes its socket (1000); the user's other sessions live on (§11.1). With
/// `forget`, the device token that session logged in with or was given is revoked
/// first (§11.2).
pub fn logoff(app: &App, req: &Request, remote: &Remote) -> Outcome {
    let input = Input::of(req)?;
    input.known(&["id", "token"])?;
    let forget = input.flag("forget")?;
    let (me, holder) = authenticate_session(app, &input)?;
    let conn = match holder {
        Holder::Here(conn) => conn,
        Holder::There(owner) => return logoff_elsewhere(app, remote, &me, &owner, forget),
    };
    if forget {
        if let Some(device) = app.sessions.device_of(&me, conn) {
            app.store(|s| s.forget_device(&me, device))?;
        }
    }
    let friends = app.store(|s| s.friend_ids(&me))?;
    let elsewhere = fanout::online_elsewhere(app, &me);
    let (ended, last) = app.sessions.end_session(&me, conn, |online, last| {
        if last && !elsewhere {
            announce_offline(app, remote, online, &me, &friends);
        }
        last && !elsewhere
    });
    if let Some(ended) = ended {
        fanout::ended(app, &me, ended.conn);
        remote.close(ended.conn, CLOSE_NORMAL, "logoff");
    }
    if last {
        let push = proto::push_id(Code::FriendOffline, &me);
        fanout::push_elsewhere_all(app, friends.iter().map(String::as_str), &push);
    }
    Ok(proto::status(Code::Success))
}

/// [`logoff`] of a session on another node (docs/cluster.md): its device is revoked
/// here (the store is shared), the registry forgets the session and its token at once,
/// and its node is told to close its socket (which then announces nothing); 300 goes
/// out from here if it was the user's last session anywhere.
fn logoff_elsewhere(
    app: &App,
    remote: &Remote,
    me: &str,
    owner: &crate::cluster::Owner,
    forget: bool,
) -> Outcome {
    if let Some(device) = owner.device.filter(|_| forget) {
        app.store(|s| s.forget_device(me, device))?;
    }
    let friends = app.store(|s| s.friend_ids(me))?;
    fanout::end_at(app, me, &owner.place);
    if !fanout::online_elsewhere(app, me) {
        let last = app.sessions.with_online(|online| {
            let last = !online.is_online(me);
            if last {
                announce_offline(app, remote, online, me, &friends);
            }
            last
        });
        if last {
            let push = proto::push_id(Code::FriendOffline, me);
            fanout::push_elsewhere_all(app, friends.iter().map(String::as_str), &push);
        }
    }
    Ok(proto::status(Code::Success))
}

/// 300 to every live session of each of `friends`: `me` has no session left.
pub(crate) fn announce_offline(
    app: &App,
    remote: &Remote,
    online: &Online<'_>,
    me: &str,
    friends: &[String],
) {
    let push = proto::push_id(Code::FriendOffline, me);
    for c in friends.iter().flat_map(|f| online.conns(f)) {
        remote.send_text(c, push.clone());
        app.metrics.pushed(Code::FriendOffline);
    }
}

/// The socket closed: forget it, and tell friends if its session just ended.
pub fn closed(app: &App, conn: ConnId, reason: CloseReason, remote: &Remote) {
    let user = app.sessions.user_of(conn);
    let friends = match &user {
        Some(me) => app.store(|s| s.friend_ids(me)).unwrap_or_else(|f| {
            f.log();
            Vec::new()
        }),
        None => Vec::new(),
    };
    // A session of the user on another node keeps the user online: no 300.
    let elsewhere = user.as_deref().is_some_and(|me| fanout::online_elsewhere(app, me));
    app.history.forget(conn);
    let ended = app.sessions.close(conn, |ended, online| {
        let last = matches!(ended, Ended::Last(_)) && !elsewhere;
        if let (Ended::Last(me), true) = (ended, last) {
            announce_offline(app, remote, online, me, &friends);
        }
        match ended {
            Ended::Last(me) | Ended::Other(me) | Ended::Superseded(me) => Some((me.clone(), last)),
            Ended::Anonymous => None,
        }
    });
    if let Some((me, last)) = ended {
        fanout::ended(app, &me, conn);
        if last {
            let push = proto::push_id(Code::FriendOffline, &me);
            fanout::push_elsewhere_all(app, friends.iter().map(String::as_str), &push);
        }
        if !app.sessions.is_online(&me) {
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
