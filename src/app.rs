//! The application as the reactor sees it: one [`App`] shared by all workers, routing
//! HTTP requests to the account and friend operations and WebSocket frames to the
//! tunnel. Failures become protocol codes here, in [`Fail::code`], and nowhere else.

use std::net::IpAddr;
use std::sync::{Arc, Weak};

use proto::Code;
use reactor::{
    CloseReason, ConnId, Flow, Handler, Remote, Request, Response, StaticFiles, Upgrade, WsMessage,
};
use store::{Store, StoreError};

use crate::auth::hasher::Hasher;
use crate::auth::password::Passwords;
use crate::cluster::{Budget, Cluster, LIVENESS_TTL};
use crate::daemon::config::Config;
use crate::daemon::db::Db;
use crate::daemon::metrics::Metrics;
use crate::history;
use crate::history::History;
use crate::live::directory::{Directory, Listing, INLINE_PICTURE_BYTES};
use crate::live::friend_cache::{FriendCache, Friends};
use crate::live::rate_limit::Rate;
use crate::live::sessions::Sessions;
use crate::routes::Route;
use crate::routes::{accounts, friends, tunnel};

/// Where the web client is served.
pub const WEB_PREFIX: &str = "/im/www/v1/";

/// Password checks that may wait per hasher thread. At tens of milliseconds a check,
/// a full queue is a few seconds of waiting: room for a crowd of real users logging in
/// together (a restart), while a flood from many addresses still waits no longer than
/// that; past it a check is refused with 524.
const HASHER_QUEUE_PER_THREAD: usize = 128;

/// Shared state of the daemon; every worker holds an `Arc` of it.
pub struct App {
    pub(crate) config: Config,
    pub(crate) sessions: Sessions,
    pub(crate) passwords: Passwords,
    pub(crate) db: Db,
    /// The budgets of §8 per client IP, counted by every node together (docs/cluster.md).
    pub(crate) register_limit: Budget<IpAddr>,
    pub(crate) query_limit: Budget<IpAddr>,
    pub(crate) login_fail_limit: Budget<IpAddr>,
    /// Searches per user: exact account matches confirm accounts.
    pub(crate) search_limit: Budget<String>,
    pub(crate) metrics: Metrics,
    /// Friend sets of live senders.
    pub(crate) friend_cache: FriendCache,
    /// Every user as search lists them.
    pub(crate) directory: Directory,
    /// Where logins check passwords, off the reactor's workers.
    pub(crate) hasher: Hasher,
    /// Conversations that are kept (§10): the group-commit writer and its locks.
    pub(crate) history: History,
    /// This app, for work handed to the hasher.
    pub(crate) me: Weak<App>,
    /// Shared with the event loop, which answers hot files itself.
    pub(crate) static_files: Arc<StaticFiles>,
    /// The other nodes' live state, with `[cluster]` (docs/cluster.md).
    pub(crate) cluster: Option<Arc<Cluster>>,
}

/// Why an operation did not succeed: a protocol answer, or an internal failure that
/// the client only ever sees as 500.
#[derive(Debug)]
pub enum Fail {
    /// The operation's own answer (a check failed).
    Code(Code),
    /// The store failed.
    Store(StoreError),
    /// Password hashing failed.
    Hash,
}

impl From<Code> for Fail {
    fn from(c: Code) -> Fail {
        Fail::Code(c)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail::Store(e)
    }
}

impl Fail {
    /// The one place where a failure becomes a protocol code. Internal details are
    /// logged here and never reach the client.
    pub fn code(&self) -> Code {
        match self {
            Fail::Code(c) => *c,
            Fail::Store(StoreError::AccountTaken) => Code::AccountExists,
            Fail::Store(StoreError::AlreadyFriends) => Code::AlreadyBeFriend,
            Fail::Store(StoreError::NoSuchUser) => Code::FriendNotExists,
            Fail::Store(StoreError::NoRequest) => Code::RequestNotExists,
            Fail::Store(StoreError::TooManyRequests) => Code::TooManyRequests,
            Fail::Store(StoreError::NotFriends) => Code::NotRelationOfFriend,
            // Erased while the request was under way: its session went with it.
            Fail::Store(StoreError::UserGone) => Code::AuthIllegal,
            // Logged once when found; every request after it would repeat the line.
            Fail::Store(StoreError::FileReplaced) => Code::InternalError,
            Fail::Store(e) => {
                log::error!("store: {e}");
                Code::InternalError
            }
            Fail::Hash => {
                log::error!("password hashing failed");
                Code::InternalError
            }
        }
    }
}

impl Fail {
    /// Logs a failure no client is waiting on (cleanup after the reply has gone).
    pub fn log(&self) {
        let _ = self.code();
    }
}

/// What an operation answers: the JSON text of its reply.
pub type Outcome = Result<String, Fail>;

/// What an operation that checks a password answers: its reply now, or `None` when a
/// job on the hasher pool answers later ([`App::answer_later`]).
pub type Deferrable = Result<Option<String>, Fail>;

/// Where a deferred HTTP answer goes. Without a connection (a caller of
/// [`Handler::request`], such as a fuzz target) the job runs at once on the caller's
/// thread instead.
#[derive(Clone, Copy)]
pub struct Later<'a> {
    pub(crate) conn: Option<ConnId>,
    pub(crate) remote: &'a Remote,
    pub(crate) route: Route,
}

impl App {
    /// Builds the application; opens (and migrates) the database once to fail early.
    pub fn new(config: Config) -> Result<Arc<App>, crate::Error> {
        let passwords = Passwords::new(config.password).map_err(|_| {
            crate::Error::Config("[password] argon2 parameters rejected".to_string())
        })?;
        let db = Db::new(config.store.clone())?;
        let listed = db.once(|s| s.directory(INLINE_PICTURE_BYTES))?;
        let directory = Directory::load(listed.into_iter().map(Listing::from))
            .map_err(|e| crate::Error::Config(format!("cannot start a thread: {e}")))?;
        log::info!("{} users listed for search", directory.len());
        let static_files = StaticFiles::new(&config.web_root, WEB_PREFIX)
            .map(|f| Arc::new(f.with_cache_bytes(config.static_cache_bytes)))
            .map_err(|e| {
                crate::Error::Config(format!(
                    "[server] web_root {}: {e}",
                    config.web_root.display()
                ))
            })?;
        let threads = config.password.threads;
        let hasher = Hasher::new(threads, threads * HASHER_QUEUE_PER_THREAD)
            .map_err(|e| crate::Error::Config(format!("cannot start a thread: {e}")))?;
        let cluster = match &config.cluster {
            Some(c) => Some(Arc::new(open_cluster(&c.redis, &c.node)?)),
            None => None,
        };
        let r = config.rate_limit;
        let typing = Rate::per_sec(r.typing_per_s, r.typing_burst);
        // SQLite's file is locked to this process: no write passes by its page cache.
        let history = History::new(config.history.enabled, typing, config.store.url.is_none())?;
        let app = App {
            sessions: Sessions::new(
                Rate::per_sec(r.send_per_s, r.send_burst),
                Rate::per_min(r.heartbeat_per_min),
                config.session.max_devices,
            ),
            passwords,
            db,
            register_limit: Budget::new("register", r.register_per_min, cluster.clone()),
            query_limit: Budget::new("query", r.query_per_min, cluster.clone()),
            login_fail_limit: Budget::new("login_fail", r.login_fail_per_min, cluster.clone()),
            search_limit: Budget::new("search", r.search_per_min, cluster.clone()),
            metrics: Metrics::default(),
            friend_cache: FriendCache::default(),
            directory,
            hasher,
            history,
            me: Weak::new(),
            static_files,
            cluster,
            config,
        };
        Ok(Arc::new_cyclic(|me| App { me: me.clone(), ..app }))
    }

    /// Runs `f` on this worker's database connection.
    pub fn store<R>(&self, f: impl FnOnce(&mut Store) -> Result<R, StoreError>) -> Result<R, Fail> {
        self.timed(f).map_err(Fail::Store)
    }

    /// Every store operation goes through here, so the latency histogram sees them all.
    fn timed<R>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let started = std::time::Instant::now();
        let r = self.db.with(f);
        self.metrics.store_latency.record(started.elapsed());
        r
    }

    /// Whether `other` is a friend of `me`, from memory when it can.
    pub fn are_friends(&self, me: &str, other: &str) -> Result<bool, Fail> {
        self.friend_cache
            .are_friends(me, other, |me| self.timed(|s| FriendCache::load(s, me)))
            .map_err(Fail::Store)
    }

    /// [`are_friends`](Self::are_friends), asked where `friends` says.
    pub fn are_friends_in(&self, friends: &Friends, me: &str, other: &str) -> Result<bool, Fail> {
        match friends {
            Friends::Cache => self.are_friends(me, other),
            Friends::Known(set) => Ok(set.contains(other)),
        }
    }

    /// Runs `job` on the hasher pool; its outcome answers the request of `later.conn`.
    /// 524 at once when the pool's queue is full.
    pub(crate) fn answer_later(
        &self,
        later: Later<'_>,
        job: impl FnOnce(&App, &Remote) -> Outcome + Send + 'static,
    ) -> Deferrable {
        let Some(conn) = later.conn else { return job(self, later.remote).map(Some) };
        let Some(app) = self.me.upgrade() else { return Err(Fail::Hash) };
        let route = later.route;
        let queued = self.hasher.answer_for(conn, later.remote, move |remote| {
            let body = job(&app, remote).unwrap_or_else(|f| proto::status(f.code()));
            app.metrics.http(route, reply_code(&body));
            api_response(body)
        });
        if !queued {
            self.metrics.rate_limited("hasher");
            return Err(Code::TooManyRequests.into());
        }
        Ok(None)
    }

    /// The per-IP limit of a route that has one: checked before anything else (§2).
    fn limit_first(&self, route: Route, req: &Request) -> Result<(), Fail> {
        let (limit, name) = match route {
            Route::Register => (&self.register_limit, "register"),
            Route::Query => (&self.query_limit, "query"),
            _ => return Ok(()),
        };
        if !limit.take(req.peer.ip()) {
            self.metrics.rate_limited(name);
            return Err(Code::TooManyRequests.into());
        }
        Ok(())
    }

    /// The response to `req`, or `None` when a hasher job sends it later.
    fn route(&self, conn: Option<ConnId>, req: &Request, remote: &Remote) -> Option<Response> {
        let path = req.path();
        if path.starts_with(WEB_PREFIX) || path == "/im/www/v1" {
            return Some(self.static_files.serve(req));
        }
        if path == "/" {
            // docs/protocol.md §7: the site's root leads to the web client.
            return Some(self.static_files.redirect_to_index(req, 302));
        }
        let route = Route::of(path);
        let later = Later { conn, remote, route };
        // `transpose()?` returns `None` for an answer a hasher job sends (and counts).
        let outcome = match route {
            Route::Health => return Some(self.metrics.health(remote, self.db.is_replaced())),
            Route::Metrics => return Some(self.metrics.render(self, remote)),
            Route::NotFound => return Some(not_found()),
            Route::Messages if !self.config.history.enabled => return Some(not_found()),
            Route::Login => Err(Fail::Code(Code::ProtocolError)),
            _ if self.limit_first(route, req).is_err() => Err(Code::TooManyRequests.into()),
            _ if !route.allows(&req.method) => Err(Fail::Code(Code::ProtocolError)),
            Route::Register => accounts::register(self, req, later).transpose()?,
            Route::Query => accounts::query(self, req),
            Route::Erase => accounts::erase(self, req, later).transpose()?,
            Route::ProfileUpdate => accounts::update_profile(self, req, later).transpose()?,
            Route::Logoff => tunnel::logoff(self, req, remote),
            Route::Found => friends::found(self, req),
            Route::Request => friends::request(self, req, remote),
            Route::Add => friends::add(self, req, remote),
            Route::Decline => friends::decline(self, req, remote),
            Route::Remove => friends::remove(self, req, remote),
            Route::List => friends::list(self, req),
            Route::Requests => friends::requests(self, req),
            Route::Messages => history::messages(self, req),
            Route::Static => unreachable!("handled above"),
        };
        let body = outcome.unwrap_or_else(|f| proto::status(f.code()));
        self.metrics.http(route, reply_code(&body));
        Some(api_response(body))
    }
}

/// This node's handle on Redis, checked by marking the node alive: a node that cannot
/// reach Redis at start does not start.
fn open_cluster(url: &str, node: &str) -> Result<Cluster, crate::Error> {
    let fail = |e: redis::RedisError| crate::Error::Config(format!("[cluster] redis {url}: {e}"));
    let cluster = Cluster::new(url, node, LIVENESS_TTL).map_err(fail)?;
    cluster.heartbeat().map_err(fail)?;
    Ok(cluster)
}

/// The code of a reply built by `proto` (it always starts `{"code":N,`).
fn reply_code(body: &str) -> u16 {
    body.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// An API reply: HTTP 200, JSON, never cached (tokens travel in URLs).
pub fn api_response(body: String) -> Response {
    Response::new(200, "application/json; charset=utf-8", body)
        .with_header("Cache-Control", "no-store")
        .with_header("Referrer-Policy", "no-referrer")
}

fn not_found() -> Response {
    Response::new(404, "application/json; charset=utf-8", proto::status(Code::NotFound))
        .with_header("Cache-Control", "no-store")
}

impl Handler for App {
    /// Without a connection to answer later, password checks run on this thread.
    fn request(&self, req: Request, remote: &Remote) -> Response {
        let resp = self.route(None, &req, remote);
        // Only a deferred answer is `None`, and without a connection nothing defers.
        resp.unwrap_or_else(|| api_response(proto::status(Code::InternalError)))
    }

    fn request_on(&self, conn: ConnId, req: Request, remote: &Remote) -> Option<Response> {
        self.route(Some(conn), &req, remote)
    }

    fn upgrade(&self, req: &Request, _conn: ConnId, _remote: &Remote) -> Upgrade {
        if Route::of(req.path()) != Route::Login {
            return Upgrade::Reject(not_found());
        }
        if let Some(origin) = req.header("Origin") {
            let allowed = &self.config.allowed_origins;
            if !allowed.is_empty() && !allowed.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
                log::debug!("login upgrade from {} refused: origin not allowed", req.peer.ip());
                return Upgrade::Reject(
                    Response::new(403, "text/plain; charset=utf-8", "origin not allowed\n")
                        .closing(),
                );
            }
        }
        Upgrade::Accept
    }

    fn opened(&self, conn: ConnId, req: Request, remote: &Remote) -> Flow {
        tunnel::opened(self, conn, &req, remote)
    }

    fn message(&self, conn: ConnId, msg: WsMessage, remote: &Remote) -> Flow {
        tunnel::message(self, conn, msg, remote)
    }

    fn message_now(
        &self,
        conn: ConnId,
        msg: WsMessage,
        remote: &Remote,
    ) -> Result<Flow, WsMessage> {
        tunnel::message_now(self, conn, msg, remote)
    }

    fn closed(&self, conn: ConnId, reason: CloseReason, remote: &Remote) {
        tunnel::closed(self, conn, reason, remote);
    }

    /// Pushed messages are in the socket: their delivered marks move (docs/protocol.md §10.3).
    fn written(&self, reports: Vec<(ConnId, Vec<u64>)>, remote: &Remote) {
        self.history.written(self, reports, remote);
    }

    /// The reports only go on the history writer's queue, which never waits.
    fn written_now(
        &self,
        reports: Vec<(ConnId, Vec<u64>)>,
        remote: &Remote,
    ) -> Result<(), Vec<(ConnId, Vec<u64>)>> {
        self.written(reports, remote);
        Ok(())
    }
}

/// Makes an `Arc<App>` usable as the reactor's handler.
pub fn handler(app: Arc<App>) -> Arc<dyn Handler> {
    app
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_code_reads_the_leading_code() {
        assert_eq!(reply_code(&proto::status(Code::AuthIllegal)), 515);
        assert_eq!(reply_code(&proto::status(Code::Success)), 200);
        assert_eq!(reply_code("junk"), 0);
    }
}
