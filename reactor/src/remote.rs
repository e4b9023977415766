//! The way back into the event loop: worker threads (or any thread) queue commands on
//! a channel and wake the loop with a `mio::Waker`, one wake per burst.
//!
//! A worker holds the commands of its jobs and hands them over together when it runs
//! out of jobs (or every few jobs): the loop is woken once per batch instead of once per
//! reply, and sees more of each connection's frames at once, so it writes them together.

use std::cell::RefCell;
use std::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use rustls::ServerConfig;

use crate::receipts::OpenSockets;
use crate::{tls, ConnId, Error, Response, TlsSource, Upgrade, WsMessage};

/// What the event loop is asked to do.
pub(crate) enum Command {
    Text(ConnId, String),
    /// A text frame whose write is reported with its tag ([`crate::Handler::written`]).
    Tracked(ConnId, String, u64),
    Binary(ConnId, Vec<u8>),
    Close(ConnId, u16, String),
    /// The application finished a job of this connection it had deferred.
    Done(ConnId),
    /// A worker finished a WebSocket job: the messages left after one the handler
    /// deferred, and whether it deferred one (then [`Command::Done`] ends the job).
    Handled(ConnId, Vec<WsMessage>, bool),
    Http(ConnId, Response),
    Upgrade(ConnId, Upgrade),
    Shutdown,
    /// A new certificate; the event loop signals the sender once new handshakes use it.
    ReloadTls(Arc<ServerConfig>, Sender<()>),
}

impl Command {
    /// The connection the command is for; `None` for the loop's own.
    pub(crate) fn conn(&self) -> Option<ConnId> {
        match self {
            Command::Text(id, _)
            | Command::Tracked(id, _, _)
            | Command::Binary(id, _)
            | Command::Close(id, _, _)
            | Command::Done(id)
            | Command::Handled(id, _, _)
            | Command::Http(id, _)
            | Command::Upgrade(id, _) => Some(*id),
            Command::Shutdown | Command::ReloadTls(..) => None,
        }
    }
}

/// Commands a worker thread holds back until it releases them.
#[derive(Default)]
struct Held {
    /// The reactor whose commands are held (see [`Remote::owner`]); 0 holds none.
    owner: usize,
    commands: Vec<Command>,
}

thread_local! {
    static HELD: RefCell<Held> = RefCell::new(Held::default());
}

/// Counters the reactor keeps; all relaxed atomics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Open connections on the plain listener.
    pub open_plain: AtomicI64,
    /// Open connections on the TLS listener.
    pub open_tls: AtomicI64,
    /// Open WebSockets.
    pub open_websockets: AtomicI64,
    /// Connections accepted since start.
    pub accepted_total: AtomicU64,
    /// Connections closed at once because of `max_connections` or `connections_per_ip`.
    pub refused_total: AtomicU64,
    /// Connections closed because their pending output exceeded the cap.
    pub closed_slow_reader: AtomicU64,
    /// Connections closed by a timeout (head, handshake, idle).
    pub closed_timeout: AtomicU64,
    /// Jobs waiting for a worker.
    pub queue_depth: AtomicI64,
    /// Output queued for all connections and not written to their sockets yet.
    pub output_bytes: AtomicI64,
    /// WebSocket data messages received.
    pub ws_messages_in: AtomicU64,
    /// WebSocket data messages the loop handled itself while every worker slept
    /// ([`crate::Handler::message_now`]).
    pub ws_messages_on_loop: AtomicU64,
}

impl Stats {
    /// Open plain connections.
    pub fn open_plain(&self) -> i64 {
        self.open_plain.load(Ordering::Relaxed)
    }
    /// Open TLS connections.
    pub fn open_tls(&self) -> i64 {
        self.open_tls.load(Ordering::Relaxed)
    }
    /// Open WebSockets.
    pub fn open_websockets(&self) -> i64 {
        self.open_websockets.load(Ordering::Relaxed)
    }
    /// Jobs waiting for a worker.
    pub fn queue_depth(&self) -> i64 {
        self.queue_depth.load(Ordering::Relaxed).max(0)
    }
    /// Output queued for all connections and not written to their sockets yet.
    pub fn output_bytes(&self) -> i64 {
        self.output_bytes.load(Ordering::Relaxed).max(0)
    }
}

pub(crate) struct Shared {
    tx: Sender<Command>,
    waker: mio::Waker,
    /// The loop is awake and looks at the channel before it sleeps again: a command
    /// sent meanwhile needs no wake-up (an eventfd write, and an epoll return with
    /// nothing else in it). Set by the first wake and by the loop when its poll returns.
    loop_awake: AtomicBool,
    /// Times the loop's waker was written; tests count them.
    wakes: AtomicU64,
    shutting_down: AtomicBool,
    pub(crate) stats: Stats,
    pub(crate) open: OpenSockets,
    /// No event loop behind this remote (tests, fuzz targets): nothing ever closes, so
    /// every connection takes frames.
    detached: bool,
}

/// A handle to the running reactor, usable from any thread.
#[derive(Clone)]
pub struct Remote {
    pub(crate) shared: Arc<Shared>,
}

impl Remote {
    pub(crate) fn new(tx: Sender<Command>, waker: mio::Waker) -> Remote {
        Remote::with_loop(tx, waker, true)
    }

    /// A remote whose commands no event loop carries out ([`crate::internals::DetachedRemote`]).
    pub(crate) fn detached(tx: Sender<Command>, waker: mio::Waker) -> Remote {
        Remote::with_loop(tx, waker, false)
    }

    fn with_loop(tx: Sender<Command>, waker: mio::Waker, event_loop: bool) -> Remote {
        Remote {
            shared: Arc::new(Shared {
                tx,
                waker,
                loop_awake: AtomicBool::new(false),
                wakes: AtomicU64::new(0),
                shutting_down: AtomicBool::new(false),
                stats: Stats::default(),
                open: OpenSockets::default(),
                detached: !event_loop,
            }),
        }
    }

    pub(crate) fn command(&self, cmd: Command) {
        let owner = self.owner();
        let unheld = HELD.with(|held| {
            let mut held = held.borrow_mut();
            if held.owner == owner {
                held.commands.push(cmd);
                None
            } else {
                Some(cmd)
            }
        });
        if let Some(cmd) = unheld {
            if self.shared.tx.send(cmd).is_ok() {
                self.wake();
            }
        }
    }

    /// From now on this thread's commands to this reactor wait for [`release`](Self::release).
    pub(crate) fn hold(&self) {
        HELD.with(|held| held.borrow_mut().owner = self.owner());
    }

    /// Hands this thread's held commands to the loop, in the order they were made.
    pub(crate) fn release(&self) {
        let commands = HELD.with(|held| std::mem::take(&mut held.borrow_mut().commands));
        if commands.is_empty() {
            return;
        }
        let mut sent = false;
        for cmd in commands {
            sent |= self.shared.tx.send(cmd).is_ok();
        }
        if sent {
            self.wake();
        }
    }

    /// Hands what this thread holds for this reactor to the loop now, so it goes ahead
    /// of anything another thread sends from here on: a login reply made on a worker
    /// must reach the socket before the backlog the history thread then starts sending.
    /// The thread keeps holding what it makes afterwards.
    pub fn flush(&self) {
        if HELD.with(|held| held.borrow().owner) == self.owner() {
            self.release();
        }
    }

    /// Runs `f` with this thread's commands to this reactor held, then hands them to
    /// the loop together: one wake-up for a batch of replies made outside a worker (a
    /// worker's are batched already). Also when `f` panics.
    pub fn batch<R>(&self, f: impl FnOnce() -> R) -> R {
        let owner = self.owner();
        let before = HELD.with(|held| held.borrow().owner);
        if before != 0 {
            // A worker (already batching), or a thread batching for another reactor,
            // whose held commands must not go to this one.
            return f();
        }
        struct Release<'a>(&'a Remote);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.release();
                HELD.with(|held| held.borrow_mut().owner = 0);
            }
        }
        HELD.with(|held| held.borrow_mut().owner = owner);
        let _release = Release(self);
        f()
    }

    fn wake(&self) {
        // Pairs with the fence in `may_sleep`: either the loop sees the command queued
        // before it sleeps, or this sees the loop asleep and wakes it.
        fence(Ordering::SeqCst);
        if !self.shared.loop_awake.swap(true, Ordering::SeqCst) {
            self.shared.wakes.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.shared.waker.wake() {
                log::error!("waking the event loop failed: {e}");
            }
        }
    }

    /// Which reactor this is, for [`HELD`]; 0 is no reactor.
    fn owner(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    /// Called by the loop when its poll returns: commands sent until it next calls
    /// [`may_sleep`](Self::may_sleep) are served without a wake-up.
    pub(crate) fn awake(&self) {
        self.shared.loop_awake.store(true, Ordering::SeqCst);
    }

    /// Called by the loop before it polls: from now on a command wakes it. False when
    /// commands are already queued (the loop must not sleep on them).
    pub(crate) fn may_sleep(&self, commands: &Receiver<Command>) -> bool {
        self.shared.loop_awake.store(false, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        commands.is_empty()
    }

    /// Times a command had to wake the loop.
    #[cfg(test)]
    pub(crate) fn wakes(&self) -> u64 {
        self.shared.wakes.load(Ordering::Relaxed)
    }

    /// Queues a text frame to `conn`; dropped if `conn` is gone.
    pub fn send_text(&self, conn: ConnId, text: String) {
        self.command(Command::Text(conn, text));
    }

    /// Queues a text frame to `conn` like [`send_text`](Self::send_text), and reports
    /// `tag` through [`Handler::written`](crate::Handler::written) once the frame is in
    /// the socket; never if `conn` closes first (or is gone, or no WebSocket).
    pub fn send_text_tracked(&self, conn: ConnId, text: String, tag: u64) {
        self.command(Command::Tracked(conn, text, tag));
    }

    /// Whether `conn` is a WebSocket that takes frames: false from the moment its close
    /// begins (ours or the peer's, a timeout, a failure, a peer gone) and for a
    /// connection that is gone. A frame sent to it now is written unless it closes first.
    pub fn takes_frames(&self, conn: ConnId) -> bool {
        self.shared.detached || self.shared.open.contains(conn)
    }

    /// Queues a binary frame to `conn`; dropped if `conn` is gone.
    pub fn send_binary(&self, conn: ConnId, data: Vec<u8>) {
        self.command(Command::Binary(conn, data));
    }

    /// Writes what is queued for `conn`, then a close frame with `code`, then closes.
    pub fn close(&self, conn: ConnId, code: u16, reason: &str) {
        self.command(Command::Close(conn, code, reason.to_string()));
    }

    /// Finishes a job a handler deferred ([`Flow::Deferred`](crate::Flow::Deferred)):
    /// the connection's next message may now be handled.
    pub fn done(&self, conn: ConnId) {
        self.command(Command::Done(conn));
    }

    /// Answers the HTTP request of `conn` that a handler left for later
    /// ([`Handler::request_on`](crate::Handler::request_on) returned `None`).
    pub fn respond(&self, conn: ConnId, resp: Response) {
        self.command(Command::Http(conn, resp));
    }

    /// Begins a graceful shutdown.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        self.command(Command::Shutdown);
    }

    /// Whether a shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Ordering::Acquire)
    }

    /// Loads a certificate; new TLS handshakes use it, live connections keep theirs.
    /// Returns once the event loop has put it in place (or has stopped), so whoever
    /// reports the reload reports something already true.
    pub fn reload_tls(&self, source: TlsSource) -> Result<(), Error> {
        let config = tls::server_config(&source)?;
        let (applied, wait) = crossbeam_channel::bounded(1);
        self.command(Command::ReloadTls(config, applied));
        // An error means the loop dropped the command: it is stopping.
        let _ = wait.recv();
        Ok(())
    }

    /// The reactor's counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> (Remote, Receiver<Command>, mio::Poll) {
        let poll = mio::Poll::new().expect("poll");
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).expect("waker");
        let (tx, rx) = crossbeam_channel::unbounded();
        (Remote::new(tx, waker), rx, poll)
    }

    /// Commands sent while the loop is awake cost no wake-up: it looks at the channel
    /// before it sleeps, and does not sleep while one is queued. Once it may sleep, the
    /// first command of a burst wakes it, and only the first.
    #[test]
    fn an_awake_loop_is_not_woken_and_a_sleeping_one_once_per_burst() {
        let (remote, commands, _poll) = remote();
        remote.awake();
        remote.send_text(ConnId(1), "a".into());
        remote.send_text(ConnId(1), "b".into());
        assert_eq!(remote.wakes(), 0, "the loop is awake");
        assert!(!remote.may_sleep(&commands), "two commands wait");
        assert_eq!(commands.try_iter().count(), 2);
        assert!(remote.may_sleep(&commands));
        remote.send_text(ConnId(1), "c".into());
        remote.send_text(ConnId(1), "d".into());
        assert_eq!(remote.wakes(), 1, "one wake for the burst");
    }

    /// A thread outside the worker pool that makes several replies wakes the sleeping
    /// loop once for all of them, when its batch ends, and they keep their order.
    #[test]
    fn a_batch_wakes_the_loop_once_when_it_ends() {
        let (remote, commands, _poll) = remote();
        assert!(remote.may_sleep(&commands));
        remote.batch(|| {
            remote.send_text(ConnId(1), "a".into());
            remote.done(ConnId(1));
            remote.send_text(ConnId(2), "b".into());
            assert_eq!(remote.wakes(), 0, "held until the batch ends");
            assert!(commands.is_empty());
        });
        assert_eq!(remote.wakes(), 1);
        let got: Vec<String> = commands
            .try_iter()
            .map(|c| match c {
                Command::Text(id, t) => format!("{}:{t}", id.0),
                Command::Done(id) => format!("{}:done", id.0),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(got, ["1:a", "1:done", "2:b"]);
        // Outside a batch, commands go at once again.
        remote.send_text(ConnId(1), "c".into());
        assert_eq!(commands.len(), 1);
    }

    /// A flush inside a batch hands over what is held at once, ahead of what another
    /// thread sends next; what is made after it is held again until the batch ends.
    #[test]
    fn a_flush_sends_what_is_held_ahead_of_another_thread() {
        let (remote, commands, _poll) = remote();
        let text = |c: Command| match c {
            Command::Text(_, t) => t,
            _ => "other".into(),
        };
        remote.batch(|| {
            remote.send_text(ConnId(1), "reply".into());
            remote.flush();
            let other = remote.clone();
            std::thread::spawn(move || other.send_text(ConnId(1), "backlog".into()))
                .join()
                .expect("thread");
            remote.send_text(ConnId(1), "after".into());
            assert_eq!(commands.len(), 2, "the reply and the other thread's frame");
        });
        let got: Vec<String> = commands.try_iter().map(text).collect();
        assert_eq!(got, ["reply", "backlog", "after"]);
        // Outside a batch there is nothing held, and a flush sends nothing.
        remote.flush();
        assert!(commands.is_empty());
    }
}
