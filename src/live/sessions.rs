//! Live sessions, shared by every worker: which connection a user is logged in on and
//! with which token, and what each login WebSocket is doing.
//!
//! Session starts, ends and presence pushes happen under one write lock, so a friend
//! can never see "online" after "offline" of a newer session, and a replaced session's
//! cleanup can never remove the session that replaced it.

use std::collections::HashMap;
use std::net::IpAddr;
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

/// The session registry.
pub struct Sessions {
    users: RwLock<HashMap<Arc<str>, Session>>,
    conns: Mutex<HashMap<ConnId, ConnEntry>>,
    send_rate: Rate,
    heartbeat_rate: Rate,
}

/// A view of who is online, given to code that runs under the registry lock.
pub struct Online<'a> {
    users: &'a HashMap<Arc<str>, Session>,
}

impl Online<'static> {
    /// Nobody online: for entries built before the registry lock is taken.
    pub fn none() -> Online<'static> {
        static NONE: std::sync::OnceLock<HashMap<Arc<str>, Session>> = std::sync::OnceLock::new();
        Online { users: NONE.get_or_init(HashMap::new) }
    }
}

impl Online<'_> {
    /// The connection of `user`'s live session.
    pub fn conn(&self, user: &str) -> Option<ConnId> {
        self.users.get(user).map(|s| s.conn)
    }
}

/// How a connection's session ended, as seen by [`Sessions::close`].
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The connection never logged in.
    Anonymous,
    /// It was `user`'s current session, now gone: friends should hear 300.
    Session(Arc<str>),
    /// It had been replaced by a newer login, logged off or erased; nothing to announce.
    Superseded(Arc<str>),
}

impl Sessions {
    /// An empty registry with per-session send and heartbeat limits.
    pub fn new(send_rate: Rate, heartbeat_rate: Rate) -> Sessions {
        Sessions {
            users: RwLock::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            send_rate,
            heartbeat_rate,
        }
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, ConnEntry>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn users_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Session>> {
        self.users.read().unwrap_or_else(|p| p.into_inner())
    }

    fn users_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Session>> {
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

    /// Starts `user`'s session on `conn` with `token`. Under the registry lock, `then`
    /// runs with the new session in place (it queues the login reply and the 302
    /// pushes, so nothing about this session can overtake them). Returns the replaced
    /// session's connection, if any, and what `then` returned.
    pub fn start<R>(
        &self,
        user: &str,
        conn: ConnId,
        token: String,
        then: impl FnOnce(&Online<'_>) -> R,
    ) -> Option<(Option<ConnId>, R)> {
        let user: Arc<str> = Arc::from(user);
        {
            let mut conns = self.conns();
            let entry = conns.get_mut(&conn)?;
            entry.phase = Phase::Live { user: user.clone() };
        }
        let mut users = self.users_write();
        let old = users.insert(user, Session { conn, token }).map(|s| s.conn);
        let r = then(&Online { users: &users });
        Some((old.filter(|c| *c != conn), r))
    }

    /// The user logged in on `conn`.
    pub fn user_of(&self, conn: ConnId) -> Option<Arc<str>> {
        match &self.conns().get(&conn)?.phase {
            Phase::Live { user } => Some(user.clone()),
            Phase::AwaitingLogin { .. } | Phase::LoggingIn => None,
        }
    }

    /// The connection of `user`'s live session.
    pub fn conn_of(&self, user: &str) -> Option<ConnId> {
        self.users_read().get(user).map(|s| s.conn)
    }

    /// Runs `f` with a consistent view of who is online.
    pub fn with_online<R>(&self, f: impl FnOnce(&Online<'_>) -> R) -> R {
        f(&Online { users: &self.users_read() })
    }

    /// The common checks of docs/protocol.md §5, in order: token empty 514, id empty 517,
    /// no live session with that pair 515.
    pub fn authenticate(&self, id: &str, token: &str) -> Result<ConnId, Code> {
        if token.is_empty() {
            return Err(Code::AuthInfoEmpty);
        }
        if id.is_empty() {
            return Err(Code::AccountIdEmpty);
        }
        match self.users_read().get(id) {
            Some(s) if same_token(&s.token, token) => Ok(s.conn),
            _ => Err(Code::AuthIllegal),
        }
    }

    /// Ends `user`'s session now (logoff, erase): its token dies at once; the socket is
    /// closed by the caller. Under the lock `then` runs after the removal.
    pub fn end_user<R>(
        &self,
        user: &str,
        then: impl FnOnce(&Online<'_>) -> R,
    ) -> (Option<ConnId>, R) {
        let mut users = self.users_write();
        let conn = users.remove(user).map(|s| s.conn);
        let r = then(&Online { users: &users });
        (conn, r)
    }

    /// `conn` closed: forgets it, and its session if it was still the user's current
    /// one. Under the lock `then` runs with the outcome (to queue 300 pushes).
    pub fn close<R>(&self, conn: ConnId, then: impl FnOnce(&Ended, &Online<'_>) -> R) -> R {
        let entry = self.conns().remove(&conn);
        let mut users = self.users_write();
        let ended = match entry.map(|e| e.phase) {
            Some(Phase::Live { user }) => {
                if users.get(&user).is_some_and(|s| s.conn == conn) {
                    users.remove(&user);
                    Ended::Session(user)
                } else {
                    Ended::Superseded(user)
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

    /// Live sessions (for metrics).
    pub fn live(&self) -> usize {
        self.users_read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Sessions {
        Sessions::new(Rate::per_sec(2, 2), Rate::per_min(0))
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn login_then_authenticate() {
        let s = registry();
        s.open(ConnId(1), IP);
        assert!(s.awaiting_login(ConnId(1)));
        assert!(s.begin_login(ConnId(1)));
        assert!(!s.begin_login(ConnId(1)), "one login per connection");
        assert!(s.login_overdue(Duration::ZERO).is_empty(), "a login in progress is not overdue");
        let (old, ()) = s.start("u1", ConnId(1), "t".repeat(32), |_| ()).unwrap();
        assert_eq!(old, None);
        assert_eq!(s.authenticate("u1", &"t".repeat(32)), Ok(ConnId(1)));
        assert_eq!(s.authenticate("u1", &"x".repeat(32)), Err(Code::AuthIllegal));
        assert_eq!(s.authenticate("u2", &"t".repeat(32)), Err(Code::AuthIllegal));
        assert_eq!(s.authenticate("", ""), Err(Code::AuthInfoEmpty));
        assert_eq!(s.authenticate("", "t"), Err(Code::AccountIdEmpty));
        assert_eq!(s.user_of(ConnId(1)).as_deref(), Some("u1"));
    }

    #[test]
    fn replaced_session_cleanup_keeps_the_new_one() {
        let s = registry();
        s.open(ConnId(1), IP);
        s.open(ConnId(2), IP);
        s.start("u", ConnId(1), "a".repeat(32), |_| ()).unwrap();
        let (old, ()) = s.start("u", ConnId(2), "b".repeat(32), |_| ()).unwrap();
        assert_eq!(old, Some(ConnId(1)));
        let ended = s.close(ConnId(1), |e, _| matches!(e, Ended::Superseded(_)));
        assert!(ended);
        assert_eq!(s.conn_of("u"), Some(ConnId(2)));
        assert_eq!(s.authenticate("u", &"a".repeat(32)), Err(Code::AuthIllegal));
        assert!(s.close(ConnId(2), |e, _| matches!(e, Ended::Session(_))));
        assert_eq!(s.conn_of("u"), None);
        assert_eq!(s.live(), 0);
    }

    #[test]
    fn end_user_kills_the_token_at_once() {
        let s = registry();
        s.open(ConnId(1), IP);
        s.start("u", ConnId(1), "a".repeat(32), |_| ()).unwrap();
        let (conn, ()) = s.end_user("u", |_| ());
        assert_eq!(conn, Some(ConnId(1)));
        assert_eq!(s.authenticate("u", &"a".repeat(32)), Err(Code::AuthIllegal));
        assert!(s.close(ConnId(1), |e, _| matches!(e, Ended::Superseded(_))));
    }

    #[test]
    fn send_budget_is_per_session() {
        let s = registry();
        s.open(ConnId(1), IP);
        s.open(ConnId(2), IP);
        assert!(s.take_send(ConnId(1)) && s.take_send(ConnId(1)));
        assert!(!s.take_send(ConnId(1)));
        assert!(s.take_send(ConnId(2)));
        assert!(s.take_heartbeat(ConnId(1)), "0 = off");
    }

    #[test]
    fn overdue_logins() {
        let s = registry();
        s.open(ConnId(1), IP);
        assert_eq!(s.login_overdue(Duration::ZERO), vec![ConnId(1)]);
        assert!(s.login_overdue(Duration::from_secs(60)).is_empty());
    }
}
