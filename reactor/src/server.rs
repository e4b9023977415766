//! The event loop: one mio `Poll` owning every socket, a slab of connections keyed by
//! token with a generation, a timer heap, and the command channel from the workers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use rustls::ServerConfig;
use tungstenite::protocol::WebSocketConfig;

use crate::conn::{Conn, Cx, Next};
use crate::remote::Command;
use crate::worker::{self, Job};
use crate::{tls, CloseReason, Config, ConnId, Error, Handler, Remote, StaticFiles};

const PLAIN_LISTENER: Token = Token(0);
const TLS_LISTENER: Token = Token(1);
const WAKER: Token = Token(2);
/// Tokens below this are not connections.
const FIRST_CONN: usize = 3;
/// The longest the loop sleeps, so a missed wake can never stall it for long.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Connections a pass serves before it wakes workers for the jobs so far and sends the
/// replies already made: a pass over a thousand busy connections takes milliseconds.
const EVENTS_PER_HANDOFF: usize = 64;
/// Times a pass may run the waiting jobs itself while the workers sleep ([`worker::stand_in`]).
const STAND_IN_ROUNDS: usize = 2;
/// tungstenite's read buffer per WebSocket: small, idle connections must stay small.
const WS_READ_BUFFER: usize = 4 * 1024;
/// After `accept` fails for want of descriptors or memory, it is tried again this soon
/// (or as soon as a connection closes). The listeners are edge-triggered: without the
/// retry, clients queued meanwhile would wait until yet another client connects.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// At most one log line per this long about `accept` failing.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(60);

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    poll: Poll,
    plain: Option<TcpListener>,
    tls: Option<(TcpListener, Arc<ServerConfig>)>,
    config: Config,
    handler: Arc<dyn Handler>,
    remote: Remote,
    commands: Receiver<Command>,
    static_files: Option<Arc<StaticFiles>>,
}

impl Server {
    /// Binds the listeners (port 0 picks a free port) and loads the TLS certificate.
    pub fn bind(config: Config, handler: Arc<dyn Handler>) -> Result<Server, Error> {
        let poll = Poll::new().map_err(Error::Io)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(Error::Io)?;
        let (tx, commands) = crossbeam_channel::unbounded();
        let remote = Remote::new(tx, waker);
        let plain = match config.listen {
            Some(addr) => Some(listen(&poll, addr, PLAIN_LISTENER)?),
            None => None,
        };
        let tls = match config.tls_listen {
            Some(addr) => {
                let source = config.tls.as_ref().ok_or(Error::NoCertificate)?;
                let server_config = tls::server_config(source)?;
                Some((listen(&poll, addr, TLS_LISTENER)?, server_config))
            }
            None => None,
        };
        Ok(Server { poll, plain, tls, config, handler, remote, commands, static_files: None })
    }

    /// Lets the event loop answer requests for `files` that it holds in memory and has
    /// checked recently ([`StaticFiles::serve_hot`]) without a trip to a worker; the
    /// handler still gets every other request under their prefix.
    pub fn serve_static(&mut self, files: Arc<StaticFiles>) {
        self.static_files = Some(files);
    }

    /// The plain listener's address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The TLS listener's address.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// A handle for other threads.
    pub fn remote(&self) -> Remote {
        self.remote.clone()
    }

    /// Runs the loop until a graceful shutdown has finished and the workers are joined.
    pub fn run(self) -> Result<(), Error> {
        let Server {
            mut poll,
            mut plain,
            mut tls,
            config,
            handler,
            remote,
            commands,
            static_files,
        } = self;
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
        let idle = Arc::new(worker::Idle::new(config.workers));
        let workers = worker::spawn(&jobs_rx, &idle, &handler, &remote)?;
        let mut state = State {
            conns: Slab::default(),
            dirty: Vec::new(),
            timers: BinaryHeap::new(),
            per_ip: HashMap::new(),
            accept_retry: None,
            accept_warned: None,
        };
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(config.ws_max_message_bytes))
            .max_frame_size(Some(config.ws_max_message_bytes));
        let mut scratch = vec![0u8; 64 * 1024];
        let mut events = Events::with_capacity(1024);
        let mut shutdown_at: Option<Instant> = None;
        let result = loop {
            let now = Instant::now();
            let mut sleep = state
                .timers
                .peek()
                .map_or(MAX_SLEEP, |Reverse((t, _))| t.saturating_duration_since(now));
            if let Some(at) = shutdown_at.into_iter().chain(state.accept_retry).min() {
                sleep = sleep.min(at.saturating_duration_since(now));
            }
            if !remote.may_sleep(&commands) {
                sleep = Duration::ZERO;
            }
            if let Err(e) = poll.poll(&mut events, Some(sleep.min(MAX_SLEEP))) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break Err(Error::Io(e));
            }
            remote.awake();
            let mut cx = Cx {
                now: Instant::now(),
                config: &config,
                ws_config,
                jobs: &jobs_tx,
                stats: &remote.shared.stats,
                open: &remote.shared.open,
                written: Vec::new(),
                scratch: &mut scratch,
                shutting_down: shutdown_at.is_some(),
                static_files: static_files.as_deref(),
                over_budget: over_budget(&remote.shared.stats, &config),
            };
            let registry = poll.registry();
            let mut served = 0;
            for event in events.iter() {
                if served == EVENTS_PER_HANDOFF {
                    // A long pass: let workers start on its jobs, and send the
                    // replies they have made, instead of holding both to its end.
                    served = 0;
                    idle.wake_for(&jobs_tx);
                    if !commands.is_empty() {
                        let mut listeners = (&mut plain, &mut tls, &mut shutdown_at);
                        serve_commands(&commands, &mut state, &mut listeners, registry, &mut cx);
                    }
                }
                match event.token() {
                    PLAIN_LISTENER => {
                        if let Some(l) = &plain {
                            state.accept(l, None, registry, &mut cx);
                        }
                    }
                    TLS_LISTENER => {
                        if let Some((l, c)) = &tls {
                            state.accept(l, Some(c), registry, &mut cx);
                        }
                    }
                    // The commands it announced are served below.
                    WAKER => {}
                    Token(t) => {
                        let Some(i) = t.checked_sub(FIRST_CONN) else { continue };
                        if let Some(conn) = state.conns.get_mut(i) {
                            served += 1;
                            if event.is_read_closed() || event.is_error() {
                                conn.peer_closing();
                            }
                            let next = conn.ready(&mut cx);
                            state.apply(i, next, registry, &mut cx);
                        }
                    }
                }
            }
            if !commands.is_empty() {
                let mut listeners = (&mut plain, &mut tls, &mut shutdown_at);
                serve_commands(&commands, &mut state, &mut listeners, registry, &mut cx);
            }
            state.expire(registry, &mut cx);
            if state.accept_retry.is_some_and(|at| at <= cx.now) {
                state.accept_retry = None;
                if let Some(l) = &plain {
                    state.accept(l, None, registry, &mut cx);
                }
                if let Some((l, c)) = &tls {
                    state.accept(l, Some(c), registry, &mut cx);
                }
            }
            if over_budget(cx.stats, cx.config) {
                state.shed(registry, &mut cx);
            }
            cx.report_written();
            // A second round takes the report of what the first one wrote.
            for _ in 0..STAND_IN_ROUNDS {
                if !worker::stand_in(&jobs_rx, &jobs_tx, &idle, handler.as_ref(), &remote) {
                    break;
                }
                let mut listeners = (&mut plain, &mut tls, &mut shutdown_at);
                serve_commands(&commands, &mut state, &mut listeners, poll.registry(), &mut cx);
                cx.report_written();
            }
            idle.wake_for(&jobs_tx);
            if let Some(at) = shutdown_at {
                if state.conns.live == 0 {
                    break Ok(());
                }
                if cx.now >= at {
                    state.abandon_all(registry, &mut cx);
                    break Ok(());
                }
            }
        };
        drop((jobs_tx, jobs_rx));
        idle.wake_all();
        for w in workers {
            let _ = w.join();
        }
        result
    }
}

/// Pending output of all connections is past the budget.
fn over_budget(stats: &crate::Stats, config: &Config) -> bool {
    stats.output_bytes() as u64 > config.output_budget_bytes as u64
}

/// The listeners, and when a shutdown that has begun must end.
type Listeners<'a> = (
    &'a mut Option<TcpListener>,
    &'a mut Option<(TcpListener, Arc<ServerConfig>)>,
    &'a mut Option<Instant>,
);

/// Carries out the commands queued by workers and other threads, then writes what they
/// queued: one write per connection for the whole batch.
fn serve_commands(
    commands: &Receiver<Command>,
    state: &mut State,
    (plain, tls, shutdown_at): &mut Listeners<'_>,
    registry: &Registry,
    cx: &mut Cx<'_>,
) {
    for cmd in commands.try_iter() {
        match cmd {
            Command::Shutdown if shutdown_at.is_none() => {
                **shutdown_at = Some(cx.now + cx.config.shutdown_deadline);
                cx.shutting_down = true;
                for l in plain.take().into_iter().chain(tls.take().map(|(l, _)| l)) {
                    let mut l = l;
                    let _ = registry.deregister(&mut l);
                }
                state.close_all(registry, cx);
            }
            Command::Shutdown => {}
            Command::ReloadTls(new, applied) => {
                if let Some((_, current)) = tls.as_mut() {
                    *current = new;
                }
                let _ = applied.send(());
            }
            cmd => state.command(cmd, registry, cx),
        }
    }
    state.flush_dirty(registry, cx);
}

/// Pending connections the kernel keeps for us (capped by `net.core.somaxconn`). mio's
/// own `bind` asks for 128, which a burst of connecting clients overflows, and each
/// dropped SYN costs its client a one-second retry.
const LISTEN_BACKLOG: i32 = 4096;

fn listen(poll: &Poll, addr: SocketAddr, token: Token) -> Result<TcpListener, Error> {
    use socket2::{Domain, Socket, Type};
    let bind = || -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(TcpListener::from_std(socket.into()))
    };
    let mut l = bind().map_err(|e| Error::Bind(addr, e))?;
    poll.registry().register(&mut l, token, Interest::READABLE).map_err(Error::Io)?;
    Ok(l)
}

/// Who a per-client limit counts (`connections_per_ip`, and the daemon's rate limits):
/// an IPv4 address (also when mapped into IPv6), or an IPv6 /64. One IPv6 host is handed
/// a whole /64 and can connect from any address in it: counted per address, it would
/// escape every such limit.
pub fn client(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
        },
    }
}

/// An `accept` error that concerns one pending connection only (it was aborted, or
/// Linux passed on its network error, see accept(2)): the next may be fine. Any other
/// error is retried on a timer, so no error leaves the queue unserved.
fn accept_again_now(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        Interrupted
            | ConnectionAborted
            | ConnectionReset
            | NetworkDown
            | NetworkUnreachable
            | HostUnreachable
    )
}

/// Connections by slot, each slot with a generation so an old [`ConnId`] never
/// reaches a newer connection in the same slot.
#[derive(Default)]
struct Slab {
    slots: Vec<(u32, Option<Conn>)>,
    free: Vec<usize>,
    live: usize,
}

impl Slab {
    fn insert(&mut self, make: impl FnOnce(ConnId) -> Conn) -> usize {
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push((0, None));
            self.slots.len() - 1
        });
        let gen = self.slots[i].0.wrapping_add(1);
        self.slots[i] = (gen, Some(make(ConnId((u64::from(gen) << 32) | i as u64))));
        self.live += 1;
        i
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Conn> {
        self.slots.get_mut(i).and_then(|(_, c)| c.as_mut())
    }

    /// The slot of `id`, if that connection is still there.
    fn find(&self, id: ConnId) -> Option<usize> {
        let i = (id.0 & 0xffff_ffff) as usize;
        let gen = (id.0 >> 32) as u32;
        match self.slots.get(i) {
            Some((g, Some(_))) if *g == gen => Some(i),
            _ => None,
        }
    }

    fn remove(&mut self, i: usize) {
        if let Some((_, slot)) = self.slots.get_mut(i) {
            if slot.take().is_some() {
                self.free.push(i);
                self.live -= 1;
            }
        }
    }

    fn indices(&self) -> Vec<usize> {
        self.slots.iter().enumerate().filter(|(_, (_, c))| c.is_some()).map(|(i, _)| i).collect()
    }
}

struct State {
    conns: Slab,
    /// Connections with frames queued in this batch of commands.
    dirty: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    /// Open connections per client ([`client`]).
    per_ip: HashMap<IpAddr, usize>,
    /// When to call `accept` again after it failed with the backlog still waiting.
    accept_retry: Option<Instant>,
    /// When a failed `accept` was last logged: a server that hovers at its descriptor
    /// limit fails at every retry, and says so once a minute.
    accept_warned: Option<Instant>,
}

impl State {
    fn accept(
        &mut self,
        listener: &TcpListener,
        tls: Option<&Arc<ServerConfig>>,
        registry: &Registry,
        cx: &mut Cx<'_>,
    ) {
        loop {
            let (sock, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if accept_again_now(&e) => continue,
                Err(e) => {
                    // Out of descriptors or memory: the queue stays in the kernel until
                    // a connection closes or the retry comes.
                    if self.accept_warned.is_none_or(|at| cx.now >= at + ACCEPT_WARN_EVERY) {
                        self.accept_warned = Some(cx.now);
                        log::warn!("accept failed: {e}; retrying as connections close");
                    }
                    self.accept_retry = Some(cx.now + ACCEPT_RETRY);
                    return;
                }
            };
            cx.stats.accepted_total.fetch_add(1, Relaxed);
            let per_ip = self.per_ip.get(&client(peer.ip())).copied().unwrap_or(0);
            let cap = cx.config.connections_per_ip;
            if cx.shutting_down
                || self.conns.live >= cx.config.max_connections
                || (cap > 0 && per_ip >= cap)
            {
                cx.stats.refused_total.fetch_add(1, Relaxed);
                drop(sock);
                continue;
            }
            let tls_conn = match tls.map(|c| rustls::ServerConnection::new(c.clone())).transpose() {
                Ok(t) => t,
                Err(e) => {
                    log::warn!("TLS session for {peer} not created: {e}");
                    continue;
                }
            };
            let _ = sock.set_nodelay(true);
            let counter = if tls.is_some() { &cx.stats.open_tls } else { &cx.stats.open_plain };
            counter.fetch_add(1, Relaxed);
            *self.per_ip.entry(client(peer.ip())).or_insert(0) += 1;
            log::debug!(
                "connection {peer} ({}) opened",
                if tls.is_some() { "Tls" } else { "Plain" }
            );
            let i = self.conns.insert(|id| Conn::new(id, sock, peer, tls_conn, cx));
            self.apply(i, Next::Keep(Interest::READABLE), registry, cx);
        }
    }

    /// Carries out what a connection asked for after a call.
    fn apply(&mut self, i: usize, next: Next, registry: &Registry, cx: &mut Cx<'_>) {
        let Some(conn) = self.conns.get_mut(i) else { return };
        match next {
            Next::Keep(interest) => {
                if let Some(deadline) = conn.deadline {
                    if conn.scheduled != Some(deadline) {
                        conn.scheduled = Some(deadline);
                        self.timers.push(Reverse((deadline, conn.id)));
                    }
                }
                if conn.registered == Some(interest) {
                    return;
                }
                let token = Token(i + FIRST_CONN);
                let registered = conn.registered;
                let Some(sock) = conn.socket() else { return };
                let r = match registered {
                    None => registry.register(sock, token, interest),
                    Some(_) => registry.reregister(sock, token, interest),
                };
                match r {
                    Ok(()) => conn.registered = Some(interest),
                    Err(e) => {
                        log::warn!("connection {}: registration failed: {e}", conn.peer);
                        self.drop_socket(i, registry, cx);
                    }
                }
            }
            Next::DropSocket => self.drop_socket(i, registry, cx),
            Next::Free => self.conns.remove(i),
        }
    }

    fn drop_socket(&mut self, i: usize, registry: &Registry, cx: &mut Cx<'_>) {
        let Some(conn) = self.conns.get_mut(i) else { return };
        let peer = client(conn.peer.ip());
        if let Some(sock) = conn.socket() {
            let _ = registry.deregister(sock);
            log::debug!("connection {} ({:?}) closed", conn.peer, conn.listener);
            if let Some(n) = self.per_ip.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&peer);
                }
            }
        }
        conn.drop_socket(cx.stats);
        if let Some(at) = &mut self.accept_retry {
            // A descriptor is free: the waiting clients need not wait for the timer.
            *at = cx.now;
        }
        if conn.settle(cx) {
            self.conns.remove(i);
        }
    }

    /// A command from a worker or another thread.
    fn command(&mut self, cmd: Command, registry: &Registry, cx: &mut Cx<'_>) {
        let Some(i) = cmd.conn().and_then(|id| self.conns.find(id)) else { return };
        let Some(conn) = self.conns.get_mut(i) else { return };
        match conn.on_command(cmd, cx) {
            Some(next) => self.apply(i, next, registry, cx),
            None if !conn.dirty => {
                conn.dirty = true;
                self.dirty.push(i);
            }
            None => {}
        }
    }

    /// One write per connection for all the frames of a batch of commands.
    fn flush_dirty(&mut self, registry: &Registry, cx: &mut Cx<'_>) {
        for i in std::mem::take(&mut self.dirty) {
            let Some(conn) = self.conns.get_mut(i) else { continue };
            if conn.dirty {
                let next = conn.flush_queued(cx);
                self.apply(i, next, registry, cx);
            }
        }
    }

    /// Runs every timer that is due.
    fn expire(&mut self, registry: &Registry, cx: &mut Cx<'_>) {
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > cx.now {
                break;
            }
            self.timers.pop();
            let Some(i) = self.conns.find(id) else { continue };
            let Some(conn) = self.conns.get_mut(i) else { continue };
            if conn.scheduled != Some(at) {
                continue;
            }
            conn.scheduled = None;
            let next = conn.on_timer(cx);
            self.apply(i, next, registry, cx);
        }
    }

    /// Over the output budget: closes the connections that left the most undrained,
    /// then those holding the most, until the rest fit in it. The scan over every
    /// connection happens only under abuse.
    fn shed(&mut self, registry: &Registry, cx: &mut Cx<'_>) {
        let mut holders: Vec<((usize, usize), usize)> = self
            .conns
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, (_, c))| c.as_ref().map(|c| (c.output_weight(), i)))
            .filter(|((_, len), _)| *len > 0)
            .collect();
        holders.sort_unstable_by(|a, b| b.cmp(a));
        let mut total = cx.stats.output_bytes() as u64;
        let budget = cx.config.output_budget_bytes as u64;
        for ((_, len), i) in holders {
            if total <= budget {
                break;
            }
            total = total.saturating_sub(len as u64);
            let Some(conn) = self.conns.get_mut(i) else { continue };
            let next = conn.shed(cx);
            self.apply(i, next, registry, cx);
        }
        cx.over_budget = over_budget(cx.stats, cx.config);
    }

    /// Shutdown: WebSockets get 1001, idle connections close, requests in flight finish.
    fn close_all(&mut self, registry: &Registry, cx: &mut Cx<'_>) {
        for i in self.conns.indices() {
            let Some(conn) = self.conns.get_mut(i) else { continue };
            let next = conn.close(1001, "server shutting down", CloseReason::Shutdown, cx);
            self.apply(i, next, registry, cx);
        }
    }

    /// Past the shutdown deadline: drop whatever is left.
    fn abandon_all(&mut self, registry: &Registry, cx: &mut Cx<'_>) {
        for i in self.conns.indices() {
            self.drop_socket(i, registry, cx);
            if let Some(conn) = self.conns.get_mut(i) {
                conn.abandon(cx);
            }
            self.conns.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_is_counted_by_its_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")), ip("2001:db8:1:2::"));
        assert_eq!(client(ip("2001:db8:1:2::1")), client(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(client(ip("2001:db8:1:2::1")), client(ip("2001:db8:1:3::1")));
    }
}
