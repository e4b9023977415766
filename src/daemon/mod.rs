//! The daemon's own machinery: configuration, start and stop, metrics, the store's
//! connections.
//!
//! - this file  — starting and stopping: bind, run the reactor, handle signals (SIGTERM
//!   and SIGINT stop gracefully, SIGHUP reloads the TLS certificate, SIGUSR1 writes a
//!   backup of the database), housekeeping.
//! - `config`    — [`Config`], read from TOML and checked once at load.
//! - `db`        — one SQLite connection per worker thread, reopened after a lasting
//!   failure; the database file watched for deletion or replacement.
//! - `metrics`   — counters, `/im/health` and `/im/metrics`.
//! - `memory`    — freed memory back to the system after connections close.
//! - `fd_limit`  — the descriptor limit raised at start and checked against the config.

pub(crate) mod config;
pub(crate) mod db;
pub(crate) mod fd_limit;
pub(crate) mod memory;
pub(crate) mod metrics;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use reactor::{Remote, Server};

use crate::app::{handler, App};
use crate::daemon::config::Config;
use crate::routes::tunnel;

/// Why the daemon could not start or run.
#[derive(Debug)]
pub enum Error {
    /// A setting that only shows itself as wrong at start (a path, a parameter).
    Config(String),
    /// The database could not be opened or migrated.
    Store(PathBuf, store::StoreError),
    /// The transport failed (bind, TLS certificate, event loop).
    Reactor(reactor::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => f.write_str(m),
            Error::Store(p, e) => write!(f, "[store] {}: {e}", p.display()),
            Error::Reactor(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

/// A bound, not yet running daemon.
pub struct Daemon {
    server: Server,
    app: Arc<App>,
}

impl Daemon {
    /// Opens the database and binds the listeners.
    pub fn bind(config: Config) -> Result<Daemon, Error> {
        let transport = config.transport.clone();
        let app = App::new(config)?;
        let mut server = Server::bind(transport, handler(app.clone())).map_err(Error::Reactor)?;
        server.serve_static(app.static_files.clone());
        Ok(Daemon { server, app })
    }

    /// The plain listener's address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.local_addr()
    }

    /// The TLS listener's address.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.server.tls_local_addr()
    }

    /// A handle to push, close and stop from other threads.
    pub fn remote(&self) -> Remote {
        self.server.remote()
    }

    /// Runs until a graceful shutdown completes ([`Remote::shutdown`]).
    pub fn run(self) -> Result<(), Error> {
        let remote = self.server.remote();
        let bus = match &self.app.cluster {
            Some(cluster) => Some(join_cluster(&self.app, cluster, &remote)?),
            None => None,
        };
        let app = self.app.clone();
        let housekeeping = thread::Builder::new()
            .name("imd-housekeeping".into())
            .spawn(move || housekeeping(&app, &remote))
            .map_err(|e| Error::Config(format!("cannot start a thread: {e}")))?;
        let result = self.server.run().map_err(Error::Reactor);
        let _ = housekeeping.join();
        if let Some(bus) = bus {
            let _ = bus.join();
        }
        if let Some(cluster) = &self.app.cluster {
            // Its sessions are closed: the others hear 300 from their close, not here.
            if let Err(e) = cluster.leave() {
                log::warn!("cluster: leaving: {e}");
            }
        }
        result
    }
}

/// Joins the cluster: clears what an earlier process of this node left (its users'
/// friends hear 300), and starts the subscriber that hands other nodes' frames to the
/// reactor.
fn join_cluster(
    app: &Arc<App>,
    cluster: &crate::cluster::Cluster,
    remote: &Remote,
) -> Result<thread::JoinHandle<()>, Error> {
    let orphans =
        cluster.join().map_err(|e| Error::Config(format!("[cluster] cannot join: {e}")))?;
    crate::cluster::fanout::announce_offline(app, remote, &orphans);
    let inbox = NodeInbox { app: app.clone(), remote: remote.clone() };
    cluster.subscribe(inbox).map_err(|e| Error::Config(format!("cannot start a thread: {e}")))
}

/// Where the cluster's subscriber hands what other nodes send.
struct NodeInbox {
    app: Arc<App>,
    remote: Remote,
}

impl crate::cluster::Inbox for NodeInbox {
    fn deliver(&self, conn: reactor::ConnId, frame: String) {
        self.remote.send_text(conn, frame);
    }

    fn kept(&self, kept: crate::cluster::KeptFrame) {
        self.app.history.arrived(&self.app, kept, &self.remote);
    }

    fn end(&self, conn: reactor::ConnId, frame: Option<String>) {
        // Out of the local registry first, as a local logoff does: its close then
        // announces nothing (the ending node did what was due).
        if let Some(user) = self.app.sessions.user_of(conn) {
            let _ = self.app.sessions.end_session(&user, conn, |_, _| ());
        }
        if let Some(frame) = frame {
            self.remote.send_text(conn, frame);
        }
        self.remote.close(conn, 1000, "ended by another node");
    }

    fn directory(&self, id: String) {
        use crate::live::directory::{Change, Listing};
        // The store says what the listing is now, whatever order broadcasts arrive in.
        let change = match self.app.store(|s| s.user_by_id(&id)) {
            Ok(Some(user)) => Change::Added(Listing::from(&user)),
            Ok(None) => Change::Removed(id),
            Err(f) => return f.log(),
        };
        let _ = self.app.directory.write(|| Ok::<_, ()>(((), change)));
    }

    fn forget(&self, users: Vec<String>) {
        self.app.friend_cache.forget(users.iter().map(String::as_str));
    }

    fn stopping(&self) -> bool {
        self.remote.is_shutting_down()
    }
}

/// How often housekeeping gives freed memory back while connections keep closing.
const TRIM_EVERY_TICKS: u64 = 8;

/// Four times a second: close logins that sent no credentials in time, and check that
/// the database path still names the file opened at start. Every two seconds when
/// connections have closed meanwhile: give their memory back to the system. Every
/// minute: forget rate-limit buckets that have refilled, delete messages past retention
/// and remembered logins past remember_days. Ends when the server shuts down.
fn housekeeping(app: &App, remote: &Remote) {
    let mut tick = 0u64;
    let mut closed_at_trim = 0;
    while !remote.is_shutting_down() {
        thread::sleep(Duration::from_millis(250));
        tunnel::expire_logins(app, remote);
        // A mismatch is logged once, inside; from then on writes answer 500.
        let _ = app.db.check_files();
        tick += 1;
        if tick % 4 == 0 {
            crate::cluster::fanout::tick(app, remote);
        }
        let closed = closed_connections(remote);
        if tick % TRIM_EVERY_TICKS == 0 && closed != closed_at_trim {
            closed_at_trim = closed;
            crate::daemon::memory::release_free_pages();
        }
        if tick % 240 == 0 {
            app.register_limit.prune();
            app.query_limit.prune();
            app.login_fail_limit.prune();
            app.search_limit.prune();
            crate::history::expire(app);
            crate::auth::devices::expire(app);
        }
    }
}

/// Connections accepted and gone since start (refused ones included).
fn closed_connections(remote: &Remote) -> u64 {
    let stats = remote.stats();
    let open = u64::try_from(stats.open_plain() + stats.open_tls()).unwrap_or(0);
    stats.accepted_total.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(open)
}

/// Runs the daemon with signal handling until SIGTERM or SIGINT.
pub fn run(config: Config, config_path: &Path) -> Result<(), Error> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

    crate::daemon::fd_limit::prepare(&config);
    let daemon = Daemon::bind(config)?;
    if let Some(a) = daemon.local_addr() {
        log::info!("listening on http://{a} (web client: http://{a}/im/www/v1/chat.html)");
    }
    if let Some(a) = daemon.tls_local_addr() {
        log::info!("listening on https://{a}");
    }
    let remote = daemon.remote();
    let app = daemon.app.clone();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
        .map_err(|e| Error::Config(format!("cannot install signal handlers: {e}")))?;
    let handle = signals.handle();
    let config_path = config_path.to_path_buf();
    let signal_thread = thread::Builder::new()
        .name("imd-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    reload_tls(&config_path, &remote);
                } else if sig == SIGUSR1 {
                    match app.db.backup() {
                        Ok(to) => log::info!("SIGUSR1: backup written to {}", to.display()),
                        Err(e) => log::error!("SIGUSR1: no backup: {e}"),
                    }
                } else {
                    log::info!("signal {sig}: shutting down");
                    remote.shutdown();
                }
            }
        })
        .map_err(|e| Error::Config(format!("cannot start a thread: {e}")))?;
    let result = daemon.run();
    handle.close();
    let _ = signal_thread.join();
    log::info!("stopped");
    result
}

/// SIGHUP: re-read the config file's `[tls]` and load the certificate again; new
/// handshakes use it, live connections keep theirs.
fn reload_tls(config_path: &Path, remote: &Remote) {
    let config = match Config::load(config_path, &mut |_| {}) {
        Ok(c) => c,
        Err(e) => return log::error!("SIGHUP: config not reloaded: {e}"),
    };
    match config.transport.tls {
        Some(source) => match remote.reload_tls(source) {
            Ok(()) => log::info!("SIGHUP: TLS certificate reloaded"),
            Err(e) => log::error!("SIGHUP: TLS certificate not reloaded: {e}"),
        },
        None => log::warn!("SIGHUP: no TLS certificate configured"),
    }
}
