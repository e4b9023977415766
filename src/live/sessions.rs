//! Live sessions, shared by every worker: which connections a user is logged in on and
//! with which tokens, and what each login WebSocket is doing.
//!
//! A user holds up to `max_devices` sessions, oldest first (docs/protocol.md §11.1); a
//! login beyond that replaces the oldest. Presence is the user's: online while any
//! session lives.
//!
//! Session starts, ends and presence pushes happen under one write lock, so a friend
//! can never see "online" after "offline" of a newer session, and a replaced session's
//! cleanup can never remove the session that replaced it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use proto::Code;
use reactor::ConnId;

use crate::live::rate_limit::{Bucket, Rate};
use crate::live::token::same_token;

/// A user's live session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The login WebSocket.
    pub conn: ConnId,
    /// Its token (32 hex).
    pub token: String,
    /// The remembered device it logged in with or was given (§11.2), revoked by a
    /// logoff with `forget`.
    pub device: Option<i64>,
}

/// What a login WebSocket is doing.
#[derive(Clone, Debug)]
enum Phase {
    /// Upgraded; waiting for credentials (URL or first frame).
    AwaitingLogin { since: Instant },
    /// Credentials received; the password is being checked.
    LoggingIn,
    /// Logged in as this user.
    Live { user: Arc<str> },
}

#[derive(Debug)]
struct ConnEntry {
    peer: IpAddr,
    phase: Phase,
    send: Bucket,
    heartbeat: Bucket,
}

/// A user's live sessions, the oldest first; never empty in the registry.
type UserSessions = Vec<Session>;

/// The session registry.
pub struct Sessions {
    users: RwLock<HashMap<Arc<str>, UserSessions>>,
    conns: Mutex<HashMap<ConnId, ConnEntry>>,
    send_rate: Rate,
    heartbeat_rate: Rate,
    max_devices: usize,
    /// Counts revocations (password changes, erases); see [`Sessions::login_mark`].
    revocations: AtomicU64,
    /// Each user's latest revocation, by that count. Locked only under the `users`
    /// write lock.
    revoked: Mutex<HashMap<Arc<str>, u64>>,
}

/// A view of who is online, given to code that runs under the registry lock.
pub struct Online<'a> {
    users: &'a HashMap<Arc<str>, UserSessions>,
}

impl Online<'static> {
    /// Nobody online: for entries built before the registry lock is taken.
    pub fn none() -> Online<'static> {
        static NONE: std::sync::OnceLock<HashMap<Arc<str>, UserSessions>> =
            std::sync::OnceLock::new();
        Online { users: NONE.get_or_init(HashMap::new) }
    }
}

impl Online<'_> {
    /// The connections of `user`'s live sessions, the oldest first.
    pub fn conns(&self, user: &str) -> impl Iterator<Item = ConnId> + '_ {
        self.users.get(user).into_iter().flatten().map(|s| s.conn)
    }

    /// Whether `user` has a live session.
    pub fn is_online(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }
}

/// How a connection's session ended, as seen by [`Sessions::close`].
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The connection never logged in.
    Anonymous,
    /// It was `user`'s last live session, now gone: friends should hear 300.
    Last(Arc<str>),
    /// It was one of `user`'s sessions, and others live on: nothing to announce.
    Other(Arc<str>),
    /// It had been replaced by a newer login, logged off or erased; nothing to announce.
    Superseded(Arc<str>),
}

/// Why [`Sessions::start`] added no session.
#[derive(Debug, PartialEq, Eq)]
pub enum NotStarted {
    /// The connection closed meanwhile.
    Closed,
    /// The user's credentials were revoked (a password change, an erase) after the
    /// login began checking them: they are no longer good.
    Revoked,
}

/// What [`Sessions::start`] did besides adding the session.
#[derive(Debug, PartialEq, Eq)]
pub struct Started<R> {
    /// The sessions the login replaced (over `max_devices`), to be sent 513 and closed.
    pub replaced: Vec<ConnId>,
    /// What the caller's closure returned.
    pub then: R,
}

impl Sessions {
    /// An empty registry with per-session send and heartbeat limits, where a user
    /// holds at most `max_devices` sessions (at least one).
    pub fn new(send_rate: Rate, heartbeat_rate: Rate, max_devices: usize) -> Sessions {
        Sessions {
            users: RwLock::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            send_rate,
            heartbeat_rate,
            max_devices: max_devices.max(1),
            revocations: AtomicU64::new(0),
            revoked: Mutex::new(HashMap::new()),
        }
    }

    /// Taken by a login before it checks credentials, and handed to [`Sessions::start`]:
    /// a revocation of the user's credentials after this point (a password change, an
    /// erase, which end sessions only once their commit is done) refuses the login, so a
    /// check that raced the commit cannot start a session the revocation never saw.
    pub fn login_mark(&self) -> u64 {
        self.revocations.load(Ordering::SeqCst)
    }

    /// Records a revocation of `user`'s credentials; call under the `users` write lock.
    fn revoke(&self, user: &str) {
        let n = self.revocations.fetch_add(1, Ordering::SeqCst) + 1;
        self.revoked.lock().unwrap_or_else(|p| p.into_inner()).insert(Arc::from(user), n);
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, ConnEntry>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn users_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, UserSessions>> {
        self.users.read().unwrap_or_else(|p| p.into_inner())
    }

    fn users_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, UserSessions>> {
        self.users.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A login WebSocket opened.
    pub fn open(&self, conn: ConnId, peer: IpAddr) {
        let now = Instant::now();
        let entry = ConnEntry {
            peer,
            phase: Phase::AwaitingLogin { since: now },
            send: self.send_rate.bucket(now),
            heartbeat: self.heartbeat_rate.bucket(now),
        };
        self.conns().insert(conn, entry);
    }

    /// The client address of a login WebSocket.
    pub fn peer(&self, conn: ConnId) -> Option<IpAddr> {
        self.conns().get(&conn).map(|e| e.peer)
    }

    /// Whether `conn` is still waiting for its credentials.
    pub fn awaiting_login(&self, conn: ConnId) -> bool {
        matches!(self.conns().get(&conn).map(|e| &e.phase), Some(Phase::AwaitingLogin { .. }))
    }

    /// Moves `conn` from waiting to logging in; false if it was not waiting (a second
    /// login frame, or the login timeout already fired).
    pub fn begin_login(&self, conn: ConnId) -> bool {
        match self.conns().get_mut(&conn) {
            Some(e) if matches!(e.phase, Phase::AwaitingLogin { .. }) => {
                e.phase = Phase::LoggingIn;
                true
            }
            _ => false,
        }
    }

    /// Connections that have waited for credentials longer than `limit`.
    pub fn login_overdue(&self, limit: Duration) -> Vec<ConnId> {
        let now = Instant::now();
        self.conns()
            .iter()
            .filter_map(|(c, e)| match e.phase {
                Phase::AwaitingLogin { since } if now.duration_since(since) >= limit => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// Starts `user`'s session `session`, replacing the oldest ones beyond
    /// `max_devices`. Under the registry lock, `then` runs with the new session in
    /// place (it queues the login reply and the 302 pushes, so nothing about this
    /// session can overtake them); its flag says whether friends hear 302: no other
    /// session of the user lives on (with one device, a replacement is announced, as
    /// the seed did). `since` is the login's [`Sessions::login_mark`].
    pub fn start<R>(
        &self,
        user: &str,
        session: Session,
        since: u64,
        then: impl FnOnce(&Online<'_>, bool) -> R,
    ) -> Result<Started<R>, NotStarted> {
        let user: Arc<str> = Arc::from(user);
        let conn = session.conn;
        self.set_phase(conn, Phase::Live { user: user.clone() })?;
        let mut users = self.users_write();
        let revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner()).get(&user).copied();
        if revoked.is_some_and(|n| n > since) {
            drop(users);
            self.set_phase(conn, Phase::LoggingIn)?;
            return Err(NotStarted::Revoked);
        }
        let mine = users.entry(user).or_default();
        mine.retain(|s| s.conn != session.conn);
        let over = (mine.len() + 1).saturating_sub(self.max_devices);
        let replaced: Vec<ConnId> = mine.drain(..over).map(|s| s.conn).collect();
        let first = mine.is_empty();
        mine.push(session);
        let then = then(&Online { users: &users }, first);
        Ok(Started { replaced, then })
    }

    fn set_phase(&self, conn: ConnId, phase: Phase) -> Result<(), NotStarted> {
        let mut conns = self.conns();
        let entry = conns.get_mut(&conn).ok_or(NotStarted::Closed)?;
        entry.phase = phase;
        Ok(())
    }

    /// The user whose live session is on `conn`. None once that session ended (logoff,
    /// replacement, password change, erase) while its socket is still closing: a frame
    /// read meanwhile is not the user's any more (its token is dead, its credentials
    /// may be revoked), so nothing is sent or marked in the user's name.
    pub fn user_of(&self, conn: ConnId) -> Option<Arc<str>> {
        let user = match &self.conns().get(&conn)?.phase {
            Phase::Live { user } => user.clone(),
            Phase::AwaitingLogin { .. } | Phase::LoggingIn => return None,
        };
        let live = self.users_read().get(&user)?.iter().any(|s| s.conn == conn);
        live.then_some(user)
    }

    /// The connections of `user`'s live sessions, the oldest first.
    pub fn conns_of(&self, user: &str) -> Vec<ConnId> {
        self.users_read().get(user).map_or_else(Vec::new, |v| v.iter().map(|s| s.conn).collect())
    }

    /// Whether `user` has a live session.
    pub fn is_online(&self, user: &str) -> bool {
        self.users_read().contains_key(user)
    }

    /// The remembered device `user`'s session on `conn` logged in with or was given.
    pub fn device_of(&self, user: &str, conn: ConnId) -> Option<i64> {
        self.users_read().get(user)?.iter().find(|s| s.conn == conn)?.device
    }

    /// Runs `f` with a consistent view of who is online.
    pub fn with_online<R>(&self, f: impl FnOnce(&Online<'_>) -> R) -> R {
        f(&Online { users: &self.users_read() })
    }

    /// The common checks of docs/protocol.md §5, in order: token empty 514, id empty 517,
    /// no live session with that pair 515. Every session's token is compared, each in
    /// constant time.
    pub fn authenticate(&self, id: &str, token: &str) -> Result<ConnId, Code> {
        if token.is_empty() {
            return Err(Code::AuthInfoEmpty);
        }
        if id.is_empty() {
            return Err(Code::AccountIdEmpty);
        }
        let users = self.users_read();
        let sessions = users.get(id).map_or(&[][..], Vec::as_slice);
        let mut found = None;
        for s in sessions {
            if same_token(&s.token, token) {
                found = Some(s.conn);
            }
        }
        found.ok_or(Code::AuthIllegal)
    }

    /// Ends every session of `user` now (erase): their tokens die at once, and logins
    /// still checking credentials will not start; the sockets are closed by the caller.
    /// Under the lock `then` runs after the removal.
    pub fn end_user<R>(&self, user: &str, then: impl FnOnce(&Online<'_>) -> R) -> (Vec<ConnId>, R) {
        let mut users = self.users_write();
        self.revoke(user);
        let conns = users.remove(user).unwrap_or_default().into_iter().map(|s| s.conn).collect();
        let r = then(&Online { users: &users });
        (conns, r)
    }

    /// Ends `user`'s session on `conn` now (logoff): its token dies at once; the
    /// socket is closed by the caller. Under the lock `then` runs after the removal,
    /// told whether it was the user's last session (friends should hear 300). The
    /// session ended, if it was still live.
    pub fn end_session<R>(
        &self,
        user: &str,
        conn: ConnId,
        then: impl FnOnce(&Online<'_>, bool) -> R,
    ) -> (Option<Session>, R) {
        let mut users = self.users_write();
        let (ended, last) = remove_session(&mut users, user, |s| s.conn == conn);
        let r = then(&Online { users: &users }, last && !ended.is_empty());
        (ended.into_iter().next(), r)
    }

    /// Ends every session of `user` but the one on `keep` (a password change): their
    /// tokens die at once, and logins still checking the old credentials will not start;
    /// the sockets are closed by the caller. Under the lock `then` runs after the
    /// removal, told whether no session is left (`keep` was gone too).
    pub fn end_others<R>(
        &self,
        user: &str,
        keep: ConnId,
        then: impl FnOnce(&Online<'_>, bool) -> R,
    ) -> (Vec<ConnId>, R) {
        let mut users = self.users_write();
        self.revoke(user);
        let (ended, last) = remove_session(&mut users, user, |s| s.conn != keep);
        let r = then(&Online { users: &users }, last && !ended.is_empty());
        (ended.into_iter().map(|s| s.conn).collect(), r)
    }

    /// `conn` closed: forgets it, and its session if it was still live. Under the lock
    /// `then` runs with the outcome (to queue 300 pushes).
    pub fn close<R>(&self, conn: ConnId, then: impl FnOnce(&Ended, &Online<'_>) -> R) -> R {
        let entry = self.conns().remove(&conn);
        let mut users = self.users_write();
        let ended = match entry.map(|e| e.phase) {
            Some(Phase::Live { user }) => {
                match remove_session(&mut users, &user, |s| s.conn == conn) {
                    (gone, _) if gone.is_empty() => Ended::Superseded(user),
                    (_, true) => Ended::Last(user),
                    (_, false) => Ended::Other(user),
                }
            }
            _ => Ended::Anonymous,
        };
        then(&ended, &Online { users: &users })
    }

    /// Spends a send token of `conn`'s session; false when over the limit.
    pub fn take_send(&self, conn: ConnId) -> bool {
        let rate = self.send_rate;
        rate.is_off()
            || self.conns().get_mut(&conn).is_some_and(|e| rate.take(&mut e.send, Instant::now()))
    }

    /// Spends a heartbeat token of `conn`'s session; false when over the limit.
    pub fn take_heartbeat(&self, conn: ConnId) -> bool {
        let rate = self.heartbeat_rate;
        rate.is_off()
            || self
                .conns()
                .get_mut(&conn)
                .is_some_and(|e| rate.take(&mut e.heartbeat, Instant::now()))
    }

    /// Every live session as (user, connection, token): what a cluster node registers
    /// again in a Redis that lost it (docs/cluster.md).
    pub fn all(&self) -> Vec<(Arc<str>, ConnId, String)> {
        let users = self.users_read();
        users
            .iter()
            .flat_map(|(u, ss)| ss.iter().map(|s| (u.clone(), s.conn, s.token.clone())))
            .collect()
    }

    /// Live sessions (for metrics).
    pub fn live(&self) -> usize {
        self.users_read().values().map(Vec::len).sum()
    }
}

/// Removes the sessions of `user` that `which` picks; returns them, and whether the
/// user has none left (its entry is then gone).
fn remove_session(
    users: &mut HashMap<Arc<str>, UserSessions>,
    user: &str,
    which: impl Fn(&Session) -> bool,
) -> (Vec<Session>, bool) {
    let Some(mine) = users.get_mut(user) else { return (Vec::new(), true) };
    let (gone, kept): (Vec<Session>, Vec<Session>) = mine.drain(..).partition(|s| which(s));
    *mine = kept;
    let last = mine.is_empty();
    if last {
        users.remove(user);
    }
    (gone, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max_devices: usize) -> Sessions {
        Sessions::new(Rate::per_sec(2, 2), Rate::per_min(0), max_devices)
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn session(conn: u64, token: char) -> Session {
        Session { conn: ConnId(conn), token: token.to_string().repeat(32), device: None }
    }

    /// Opens `conn` and starts `user`'s session there; the replaced connections and
    /// whether friends would hear 302.
    fn login(s: &Sessions, user: &str, conn: u64, token: char) -> (Vec<ConnId>, bool) {
        s.open(ConnId(conn), IP);
        let started =
            s.start(user, session(conn, token), s.login_mark(), |_, first| first).unwrap();
        (started.replaced, started.then)
    }

    #[test]
    fn login_then_authenticate() {
        let s = registry(1);
        s.open(ConnId(1), IP);
        assert!(s.awaiting_login(ConnId(1)));
        assert!(s.begin_login(ConnId(1)));
        assert!(!s.begin_login(ConnId(1)), "one login per connection");
        assert!(s.login_overdue(Duration::ZERO).is_empty(), "a login in progress is not overdue");
        let started = s.start("u1", session(1, 't'), 0, |_, first| first).unwrap();
        assert_eq!(started, Started { replaced: vec![], then: true });
        assert_eq!(s.authenticate("u1", &"t".repeat(32)), Ok(ConnId(1)));
        assert_eq!(s.authenticate("u1", &"x".repeat(32)), Err(Code::AuthIllegal));
        assert_eq!(s.authenticate("u2", &"t".repeat(32)), Err(Code::AuthIllegal));
        assert_eq!(s.authenticate("", ""), Err(Code::AuthInfoEmpty));
        assert_eq!(s.authenticate("", "t"), Err(Code::AccountIdEmpty));
        assert_eq!(s.user_of(ConnId(1)).as_deref(), Some("u1"));
    }

    #[test]
    fn an_ended_session_s_socket_is_no_longer_the_user_s() {
        let s = registry(2);
        login(&s, "u", 1, 'a');
        login(&s, "u", 2, 'b');
        login(&s, "u", 3, 'c');
        assert_eq!(s.user_of(ConnId(1)), None, "replaced beyond max_devices");
        s.end_session("u", ConnId(2), |_, _| ());
        assert_eq!(s.user_of(ConnId(2)), None, "logged off");
        assert_eq!(s.user_of(ConnId(3)).as_deref(), Some("u"));
        login(&s, "u", 4, 'd');
        s.end_others("u", ConnId(4), |_, _| ());
        assert_eq!(s.user_of(ConnId(3)), None, "a password change from another session");
        assert_eq!(s.user_of(ConnId(4)).as_deref(), Some("u"));
        s.end_user("u", |_| ());
        assert_eq!(s.user_of(ConnId(4)), None, "erased");
    }

    #[test]
    fn replaced_session_cleanup_keeps_the_new_one() {
        let s = registry(1);
        login(&s, "u", 1, 'a');
        // One device: the replacement is announced (302), as the seed did.
        assert_eq!(login(&s, "u", 2, 'b'), (vec![ConnId(1)], true));
        let ended = s.close(ConnId(1), |e, _| matches!(e, Ended::Superseded(_)));
        assert!(ended);
        assert_eq!(s.conns_of("u"), vec![ConnId(2)]);
        assert_eq!(s.authenticate("u", &"a".repeat(32)), Err(Code::AuthIllegal));
        assert!(s.close(ConnId(2), |e, _| matches!(e, Ended::Last(_))));
        assert_eq!(s.conns_of("u"), vec![]);
        assert!(!s.is_online("u"));
        assert_eq!(s.live(), 0);
    }

    #[test]
    fn several_devices_each_with_its_token_the_oldest_replaced_beyond_the_limit() {
        let s = registry(3);
        assert_eq!(login(&s, "u", 1, 'a'), (vec![], true));
        assert_eq!(login(&s, "u", 2, 'b'), (vec![], false), "not the first: no 302");
        assert_eq!(login(&s, "u", 3, 'c'), (vec![], false));
        assert_eq!(s.live(), 3);
        assert_eq!(s.authenticate("u", &"b".repeat(32)), Ok(ConnId(2)));
        assert_eq!(s.authenticate("u", &"c".repeat(32)), Ok(ConnId(3)));
        assert_eq!(login(&s, "u", 4, 'd'), (vec![ConnId(1)], false));
        assert_eq!(s.authenticate("u", &"a".repeat(32)), Err(Code::AuthIllegal));
        assert_eq!(s.conns_of("u"), vec![ConnId(2), ConnId(3), ConnId(4)]);
        // The oldest is the oldest start, whichever ended in between.
        assert!(s.close(ConnId(3), |e, _| matches!(e, Ended::Other(_))));
        login(&s, "u", 5, 'e');
        assert_eq!(login(&s, "u", 6, 'f'), (vec![ConnId(2)], false));
        assert!(s.close(ConnId(1), |e, _| matches!(e, Ended::Superseded(_))));
        assert!(s.close(ConnId(4), |e, _| matches!(e, Ended::Other(_))));
        assert!(s.close(ConnId(5), |e, _| matches!(e, Ended::Other(_))));
        assert!(s.close(ConnId(6), |e, o| matches!(e, Ended::Last(_)) && !o.is_online("u")));
    }

    #[test]
    fn end_user_kills_every_token_at_once() {
        let s = registry(2);
        login(&s, "u", 1, 'a');
        login(&s, "u", 2, 'b');
        let (conns, ()) = s.end_user("u", |o| assert!(!o.is_online("u")));
        assert_eq!(conns, vec![ConnId(1), ConnId(2)]);
        assert_eq!(s.authenticate("u", &"a".repeat(32)), Err(Code::AuthIllegal));
        assert_eq!(s.authenticate("u", &"b".repeat(32)), Err(Code::AuthIllegal));
        assert!(s.close(ConnId(1), |e, _| matches!(e, Ended::Superseded(_))));
    }

    #[test]
    fn end_session_ends_one_and_says_when_it_was_the_last() {
        let s = registry(2);
        login(&s, "u", 1, 'a');
        s.open(ConnId(2), IP);
        let mut second = session(2, 'b');
        second.device = Some(7);
        s.start("u", second, 0, |_, _| ()).unwrap();
        let (ended, last) = s.end_session("u", ConnId(2), |_, last| last);
        assert_eq!((ended.and_then(|e| e.device), last), (Some(7), false));
        assert_eq!(s.authenticate("u", &"b".repeat(32)), Err(Code::AuthIllegal));
        assert_eq!(s.authenticate("u", &"a".repeat(32)), Ok(ConnId(1)));
        let (ended, last) = s.end_session("u", ConnId(2), |_, last| last);
        assert!(ended.is_none() && !last, "already gone: nothing to announce");
        let (ended, last) = s.end_session("u", ConnId(1), |o, last| last && !o.is_online("u"));
        assert!(ended.is_some() && last);
    }

    #[test]
    fn end_others_keeps_the_asking_session() {
        let s = registry(3);
        login(&s, "u", 1, 'a');
        login(&s, "u", 2, 'b');
        login(&s, "u", 3, 'c');
        let (conns, last) = s.end_others("u", ConnId(2), |_, last| last);
        assert_eq!((conns, last), (vec![ConnId(1), ConnId(3)], false));
        assert_eq!(s.conns_of("u"), vec![ConnId(2)]);
        assert_eq!(s.authenticate("u", &"c".repeat(32)), Err(Code::AuthIllegal));
    }

    #[test]
    fn a_revocation_refuses_logins_that_began_before_it() {
        let s = registry(3);
        login(&s, "u", 1, 'a');
        s.open(ConnId(2), IP);
        s.open(ConnId(3), IP);
        let before = s.login_mark();
        // A password change from session 1 while session 2's login checks credentials.
        let (ended, _) = s.end_others("u", ConnId(1), |_, _| ());
        assert!(ended.is_empty());
        assert_eq!(
            s.start("u", session(2, 'b'), before, |_, _| ()).err(),
            Some(NotStarted::Revoked)
        );
        assert_eq!(s.user_of(ConnId(2)), None, "a refused login is no session");
        assert_eq!(s.conns_of("u"), vec![ConnId(1)]);
        // Another user's revocation, and a login that began after it, are not refused.
        let after = s.login_mark();
        s.end_user("v", |_| ());
        assert!(s.start("u", session(3, 'c'), after, |_, _| ()).is_ok());
        s.close(ConnId(9), |_, _| ());
        assert_eq!(s.start("u", session(9, 'd'), after, |_, _| ()).err(), Some(NotStarted::Closed));
    }

    #[test]
    fn send_budget_is_per_session() {
        let s = registry(1);
        s.open(ConnId(1), IP);
        s.open(ConnId(2), IP);
        assert!(s.take_send(ConnId(1)) && s.take_send(ConnId(1)));
        assert!(!s.take_send(ConnId(1)));
        assert!(s.take_send(ConnId(2)));
        assert!(s.take_heartbeat(ConnId(1)), "0 = off");
    }

    #[test]
    fn overdue_logins() {
        let s = registry(1);
        s.open(ConnId(1), IP);
        assert_eq!(s.login_overdue(Duration::ZERO), vec![ConnId(1)]);
        assert!(s.login_overdue(Duration::from_secs(60)).is_empty());
    }
}
