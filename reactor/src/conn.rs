//! One client connection: its socket (plain or TLS), its buffers and its phase.
//!
//! The connection decides everything about itself: what to read, what to write, which
//! readiness it needs, and when it is finished. The server loop only routes events,
//! commands and timers to it.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::net::TcpStream;
use mio::Interest;
use rustls::ServerConnection;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use crate::buffer::Buffer;
use crate::http::{error_response, parse_head, write_response, HeadLimits, HSTS};
use crate::receipts::{OpenSockets, Receipts};
use crate::remote::{Command, Stats};
use crate::stream::{Pipe, Stream};
use crate::worker::Job;
use crate::{
    CloseReason, Config, ConnId, Listener, Request, Response, StaticFiles, Upgrade, WsMessage,
};

/// Messages of one connection waiting for a worker before reading pauses.
const INBOX_LIMIT: usize = 16;
/// How long a close handshake we started may take.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Output the loop writes out before it answers the next pipelined request itself.
const OUTPUT_CHUNK: usize = 64 * 1024;
/// Input read ahead of the request being answered.
const INPUT_AHEAD: usize = 64 * 1024;
/// Plaintext rustls may hold beyond our own output buffer.
const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// What the connection shares with the loop for one call.
pub(crate) struct Cx<'a> {
    pub now: Instant,
    pub config: &'a Config,
    pub ws_config: WebSocketConfig,
    pub jobs: &'a Sender<Job>,
    pub stats: &'a Stats,
    /// The WebSockets that take frames ([`crate::Remote::takes_frames`]).
    pub open: &'a OpenSockets,
    /// Tagged frames written during this pass, per connection: one report for all
    /// ([`Cx::report_written`]).
    pub written: Vec<(ConnId, Vec<u64>)>,
    pub scratch: &'a mut [u8],
    pub shutting_down: bool,
    /// Files the loop may answer from memory without a worker.
    pub static_files: Option<&'a StaticFiles>,
    /// Pending output of all connections is past `output_budget_bytes`: a connection
    /// with output pending reads and parses nothing more.
    pub over_budget: bool,
}

impl Cx<'_> {
    /// Hands the tags written so far to a worker, all connections' in one job.
    pub fn report_written(&mut self) {
        if !self.written.is_empty() {
            let reports = std::mem::take(&mut self.written);
            self.dispatch(Job::Written(reports));
        }
    }

    fn dispatch(&self, job: Job) {
        self.stats.queue_depth.fetch_add(1, Relaxed);
        if self.jobs.send(job).is_err() {
            self.stats.queue_depth.fetch_sub(1, Relaxed);
        }
    }
}

/// The phase of a connection. Transitions happen only in [`Conn`]'s methods.
enum Phase {
    /// TLS handshake in progress.
    Handshake,
    /// Reading requests; `pending` is the request a worker has.
    Http { pending: Option<Pending>, head_started: Option<Instant> },
    /// An open WebSocket.
    WebSocket(Box<Ws>),
    /// Writing what is left, then closing. `await_close` waits for the peer's close frame.
    Closing { ws: Option<Box<Ws>> },
    /// Everything is written and our sending side is shut: what the peer still sends
    /// is read and discarded (`left` bytes more at most, until the deadline), so its
    /// kernel does not answer our close with a reset that destroys the answer unread.
    Lingering { left: usize },
    /// The socket is gone; a worker still owes this connection a reply.
    Dead,
}

/// A request with a worker, and what its response needs to know.
enum Pending {
    Request { keep_alive: bool, head_only: bool },
    Upgrade { key: String, req: Box<Request> },
}

struct Ws {
    ctx: WebSocketContext,
    last_rx: Instant,
    next_ping: Instant,
    /// The client broke the protocol: fail the connection with this code once the
    /// messages it sent before are handled (their replies go out first).
    failing: Option<(CloseCode, CloseReason)>,
}

/// The socket, once it is gone it is gone.
struct Io {
    sock: Stream,
    tls: Option<Box<ServerConnection>>,
}

/// What the loop should do with a connection after a call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep it, with this interest.
    Keep(Interest),
    /// Deregister and drop the socket; keep the slot (a worker owes a reply).
    DropSocket,
    /// Free the slot.
    Free,
}

pub(crate) struct Conn {
    pub id: ConnId,
    pub peer: SocketAddr,
    pub listener: Listener,
    io: Option<Io>,
    phase: Phase,
    input: Buffer,
    output: Buffer,
    eof: bool,
    /// A job of this connection is with a worker (or, deferred, with the application).
    in_flight: bool,
    /// The worker reported the job deferred: it ends with [`Remote::done`](crate::Remote::done).
    deferred: bool,
    /// That `done` came before the worker's report (it runs on another thread).
    done_early: bool,
    inbox: VecDeque<WsMessage>,
    /// The next moment a timer of this connection is due.
    pub deadline: Option<Instant>,
    /// The handler saw this WebSocket open and is owed a `closed` call.
    opened: bool,
    close_reason: CloseReason,
    /// Interest currently registered with the poller.
    pub registered: Option<Interest>,
    /// The deadline last put on the timer heap.
    pub scheduled: Option<Instant>,
    /// Frames are queued that the loop has yet to flush.
    pub dirty: bool,
    /// Reading and frame parsing stopped on a full inbox: input may be waiting, in our
    /// buffer or in the kernel, that no readiness event will report again.
    stalled: bool,
    /// The poller reported the peer's sending side closed (or an error): reads go on to
    /// end of file, since no later event would report what a short read left behind.
    peer_closing: bool,
    /// A read returned end of file (`eof` also stands for input we stopped wanting).
    peer_eof: bool,
    /// Reading paused for back-pressure: the kernel may hold input that no event will
    /// report again.
    unread: bool,
    /// The last flush left output the socket would not take.
    blocked: bool,
    /// Output length when the last flush ended.
    flushed_len: usize,
    /// Output the peer left undrained: queued while blocked, less what it took since.
    owed: usize,
    /// Output length last added to the `output_bytes` gauge.
    accounted: usize,
    /// Tagged frames not yet reported written; `None` while there are none.
    receipts: Option<Box<Receipts>>,
    /// This WebSocket is in [`Cx::open`].
    takes_frames: bool,
}

impl Conn {
    pub fn new(
        id: ConnId,
        sock: impl Into<Stream>,
        peer: SocketAddr,
        tls: Option<ServerConnection>,
        cx: &Cx<'_>,
    ) -> Conn {
        let listener = if tls.is_some() { Listener::Tls } else { Listener::Plain };
        let (phase, timeout) = match tls {
            Some(_) => (Phase::Handshake, cx.config.tls_handshake_timeout),
            None => {
                (Phase::Http { pending: None, head_started: None }, cx.config.keepalive_timeout)
            }
        };
        let tls = tls.map(|mut t| {
            t.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
            Box::new(t)
        });
        Conn {
            id,
            peer,
            listener,
            io: Some(Io { sock: sock.into(), tls }),
            phase,
            input: Buffer::default(),
            output: Buffer::default(),
            eof: false,
            in_flight: false,
            deferred: false,
            done_early: false,
            inbox: VecDeque::new(),
            deadline: Some(cx.now + timeout),
            opened: false,
            close_reason: CloseReason::Normal,
            registered: None,
            scheduled: None,
            dirty: false,
            stalled: false,
            peer_closing: false,
            peer_eof: false,
            unread: false,
            blocked: false,
            flushed_len: 0,
            owed: 0,
            accounted: 0,
            receipts: None,
            takes_frames: false,
        }
    }

    /// The mio socket to register; `None` once dropped or when in memory.
    pub fn socket(&mut self) -> Option<&mut TcpStream> {
        match self.io.as_mut().map(|io| &mut io.sock) {
            Some(Stream::Tcp(sock)) => Some(sock),
            _ => None,
        }
    }

    /// The in-memory pipe under this connection, for the test harness.
    pub fn pipe(&mut self) -> Option<&mut Pipe> {
        match self.io.as_mut().map(|io| &mut io.sock) {
            Some(Stream::Memory(pipe)) => Some(pipe),
            _ => None,
        }
    }

    pub fn is_websocket(&self) -> bool {
        matches!(self.phase, Phase::WebSocket(_))
    }

    /// The poller reported the peer's end closed (`EPOLLRDHUP`, `EPOLLHUP`) or an error;
    /// call before [`ready`](Conn::ready).
    pub fn peer_closing(&mut self) {
        self.peer_closing = true;
    }

    /// Readiness reported by the poller.
    pub fn ready(&mut self, cx: &mut Cx<'_>) -> Next {
        if let Phase::Lingering { left } = &mut self.phase {
            if !discard_input(self.io.as_mut(), cx.scratch, left) {
                self.io_done();
            }
            return self.next(cx);
        }
        self.pump(cx);
        self.next(cx)
    }

    /// Read what the socket has, act on it, write what is queued.
    fn pump(&mut self, cx: &mut Cx<'_>) {
        if self.flush().is_err() {
            return self.fail(CloseReason::Error);
        }
        if self.wants_input(cx) {
            if let Err(e) = self.read_socket(cx) {
                log::debug!("connection {}: read failed: {e}", self.peer);
                return self.fail(CloseReason::Error);
            }
        } else if !self.eof {
            self.unread = true;
        }
        self.advance(cx);
        if self.flush().is_err() {
            self.fail(CloseReason::Error);
        }
    }

    /// Whether this connection should read now (backpressure pauses it).
    fn wants_input(&self, cx: &Cx<'_>) -> bool {
        if self.eof || self.io.is_none() {
            return false;
        }
        match &self.phase {
            Phase::Handshake | Phase::Closing { .. } => true,
            Phase::Http { pending, .. } => {
                (pending.is_none() && !self.output_backlogged(cx)) || self.input.len() < INPUT_AHEAD
            }
            Phase::WebSocket(ws) => {
                self.inbox.len() < INBOX_LIMIT
                    && ws.failing.is_none()
                    && (self.output.is_empty() || !cx.over_budget)
            }
            Phase::Lingering { .. } | Phase::Dead => false,
        }
    }

    /// Output is waiting that the next request's answer would pile onto: the socket
    /// took less than a chunk, or every connection together is over the budget.
    fn output_backlogged(&self, cx: &Cx<'_>) -> bool {
        self.output.len() >= OUTPUT_CHUNK || (cx.over_budget && !self.output.is_empty())
    }

    /// Drains the socket into the input buffer until it would block.
    fn read_socket(&mut self, cx: &mut Cx<'_>) -> io::Result<()> {
        let Some(io) = self.io.as_mut() else { return Ok(()) };
        let mut sock = Reads { sock: &mut io.sock, to_the_end: self.peer_closing, short: false };
        let mut eof = false;
        let got_any = match io.tls.as_deref_mut() {
            None => read_plain(&mut sock, cx.scratch, &mut self.input, &mut eof)?,
            Some(tls) => read_tls(&mut sock, tls, cx.scratch, &mut self.input, &mut eof)?,
        };
        if eof {
            self.eof = true;
            self.peer_eof = true;
        }
        if got_any {
            if let Phase::WebSocket(ws) = &mut self.phase {
                ws.last_rx = cx.now;
            }
        }
        Ok(())
    }

    /// Runs the phase machine on buffered input.
    fn advance(&mut self, cx: &mut Cx<'_>) {
        if matches!(self.phase, Phase::Handshake) {
            let handshaking =
                self.io.as_ref().and_then(|io| io.tls.as_ref()).is_some_and(|t| t.is_handshaking());
            if handshaking {
                if self.eof {
                    self.fail(CloseReason::Error);
                }
                return;
            }
            self.phase = Phase::Http { pending: None, head_started: None };
            self.deadline = Some(cx.now + cx.config.keepalive_timeout);
        }
        match &mut self.phase {
            Phase::Http { .. } => self.advance_http(cx),
            Phase::WebSocket(_) => self.advance_ws(cx),
            Phase::Closing { ws } => {
                if let Some(ws) = ws {
                    // Wait for the peer's close frame; anything else is discarded.
                    let mut io =
                        Adapter { input: &mut self.input, output: &mut self.output, eof: self.eof };
                    loop {
                        match ws.ctx.read(&mut io) {
                            Ok(_) => continue,
                            Err(tungstenite::Error::Io(e))
                                if e.kind() == io::ErrorKind::WouldBlock =>
                            {
                                break
                            }
                            Err(_) => {
                                // The handshake is over, or the peer broke it: what is
                                // queued, our close frame included, still goes out.
                                self.input.clear();
                                self.eof = true;
                                self.phase = Phase::Closing { ws: None };
                                break;
                            }
                        }
                    }
                } else {
                    self.input.clear();
                }
            }
            Phase::Handshake | Phase::Lingering { .. } | Phase::Dead => {}
        }
    }

    fn advance_http(&mut self, cx: &mut Cx<'_>) {
        // A request answered here (a hot static file) lets the next one be parsed at
        // once. The next one waits while a chunk of earlier answers is unwritten: a
        // pipelining client that does not read makes the server hold one chunk, not an
        // answer for every request it sent. Writing readiness resumes parsing.
        loop {
            if self.output_backlogged(cx) {
                if self.flush().is_err() {
                    return self.fail(CloseReason::Error);
                }
                if self.output_backlogged(cx) {
                    return;
                }
            }
            if !self.next_request(cx) {
                return;
            }
        }
    }

    /// Parses the next complete request: hands it to a worker, or answers it here when
    /// it is a hot static file. True when the next one may be parsed now.
    fn next_request(&mut self, cx: &mut Cx<'_>) -> bool {
        let Phase::Http { pending, head_started } = &mut self.phase else { return false };
        if pending.is_some() {
            return false;
        }
        let limits = HeadLimits {
            head_bytes: cx.config.head_bytes,
            max_headers: cx.config.max_headers,
            body_bytes: cx.config.body_bytes,
        };
        let head = match parse_head(self.input.as_slice(), &limits) {
            Ok(Some(head)) if self.input.len() >= head.head_len + head.body_len => head,
            Ok(partial) => {
                if self.eof {
                    // What was answered here still goes out before the close.
                    self.phase = Phase::Closing { ws: None };
                    return false;
                }
                if (partial.is_some() || !self.input.is_empty()) && head_started.is_none() {
                    // The head timer runs from a request's first byte (slowloris).
                    *head_started = Some(cx.now);
                    self.deadline = Some(cx.now + cx.config.head_timeout);
                }
                return false;
            }
            Err(status) => {
                log::debug!("connection {}: refused request with {status}", self.peer);
                self.respond_and_close(&error_response(status), cx);
                return false;
            }
        };
        let bytes = self.input.as_slice();
        let body = bytes[head.head_len..head.head_len + head.body_len].to_vec();
        self.input.consume(head.head_len + head.body_len);
        let req = Request {
            method: head.method,
            target: head.target,
            headers: head.headers,
            body,
            peer: self.peer,
            listener: self.listener,
        };
        *head_started = None;
        self.deadline = None;
        if head.ws_key.is_none() {
            if let Some(resp) = cx.static_files.and_then(|files| files.serve_hot(&req)) {
                let close = !head.keep_alive || resp.close || cx.shutting_down;
                write_response(
                    self.output.vec(),
                    &resp,
                    req.method == "HEAD",
                    close,
                    self.listener,
                );
                // Kept alive or closing, a peer that never reads is cut off like an idle one.
                self.deadline = Some(cx.now + cx.config.keepalive_timeout);
                if close {
                    self.phase = Phase::Closing { ws: None };
                    return false;
                }
                return true;
            }
        }
        self.in_flight = true;
        match head.ws_key {
            Some(key) => {
                *pending = Some(Pending::Upgrade { key, req: Box::new(req.clone()) });
                cx.dispatch(Job::Upgrade(self.id, req));
            }
            None => {
                let head_only = req.method == "HEAD";
                *pending = Some(Pending::Request { keep_alive: head.keep_alive, head_only });
                cx.dispatch(Job::Http(self.id, req));
            }
        }
        false
    }

    fn advance_ws(&mut self, cx: &mut Cx<'_>) {
        let Phase::WebSocket(ws) = &mut self.phase else { return };
        let mut failure = None;
        let mut received = 0;
        {
            let mut io =
                Adapter { input: &mut self.input, output: &mut self.output, eof: self.eof };
            while self.inbox.len() < INBOX_LIMIT && ws.failing.is_none() {
                match ws.ctx.read(&mut io) {
                    Ok(Message::Text(t)) => {
                        received += 1;
                        self.inbox.push_back(WsMessage::Text(t.to_string()));
                    }
                    Ok(Message::Binary(b)) => {
                        received += 1;
                        self.inbox.push_back(WsMessage::Binary(b.to_vec()));
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        break
                    }
                    Err(
                        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                    ) => {
                        failure = Some(CloseReason::Normal);
                        break;
                    }
                    Err(e) => {
                        let (code, reason) = match &e {
                            tungstenite::Error::Capacity(_) => {
                                (CloseCode::Size, CloseReason::TooBig)
                            }
                            tungstenite::Error::Utf8(_) => (CloseCode::Invalid, CloseReason::Error),
                            _ => (CloseCode::Protocol, CloseReason::Error),
                        };
                        log::debug!("websocket {}: {e}", self.peer);
                        ws.failing = Some((code, reason));
                        break;
                    }
                }
            }
        }
        self.stalled = self.inbox.len() >= INBOX_LIMIT;
        self.input.compact();
        cx.stats.ws_messages_in.fetch_add(received, Relaxed);
        if let Some(reason) = failure {
            self.close_reason = reason;
            self.phase = Phase::Closing { ws: None };
        }
        self.dispatch_next(cx);
        self.fail_when_drained();
    }

    /// Sends the close frame of a protocol failure once nothing it sent is pending.
    fn fail_when_drained(&mut self) {
        if self.in_flight || !self.inbox.is_empty() {
            return;
        }
        let Phase::WebSocket(ws) = &mut self.phase else { return };
        let Some((code, reason)) = ws.failing else { return };
        let mut io = Adapter { input: &mut self.input, output: &mut self.output, eof: self.eof };
        if ws.ctx.close(&mut io, Some(CloseFrame { code, reason: "".into() })).is_ok() {
            let _ = ws.ctx.flush(&mut io);
        }
        self.close_reason = reason;
        self.phase = Phase::Closing { ws: None };
    }

    /// Hands the next queued message to a worker, or the final `closed` call.
    fn dispatch_next(&mut self, cx: &mut Cx<'_>) {
        if self.in_flight {
            return;
        }
        if !self.inbox.is_empty() {
            // Everything waiting goes as one job: its replies leave together, and a busy
            // session costs one worker round trip per batch, not one per message.
            self.in_flight = true;
            cx.dispatch(Job::Messages(self.id, self.inbox.drain(..).collect()));
        } else if matches!(self.phase, Phase::Dead | Phase::Lingering { .. }) && self.opened {
            // A lingering socket only waits for the peer to hang up: the WebSocket is over.
            self.opened = false;
            cx.stats.open_websockets.fetch_sub(1, Relaxed);
            cx.dispatch(Job::Closed(self.id, self.close_reason));
        }
    }

    /// Writes a response and closes once it is out, or at the keep-alive timeout if the
    /// peer does not take it.
    fn respond_and_close(&mut self, resp: &Response, cx: &Cx<'_>) {
        write_response(self.output.vec(), resp, false, true, self.listener);
        self.phase = Phase::Closing { ws: None };
        self.eof = true;
        self.deadline = Some(cx.now + cx.config.keepalive_timeout);
    }

    /// A worker answered an HTTP request.
    pub fn on_response(&mut self, resp: Response, cx: &mut Cx<'_>) -> Next {
        // Whatever happened to the connection meanwhile, the worker is done with it; a
        // dead connection still waiting for this flag would never be freed.
        self.in_flight = false;
        let Phase::Http { pending, .. } = &mut self.phase else { return self.next(cx) };
        let Some(Pending::Request { keep_alive, head_only }) = pending.take() else {
            return self.next(cx);
        };
        let close = !keep_alive || resp.close || cx.shutting_down;
        write_response(self.output.vec(), &resp, head_only, close, self.listener);
        // Kept alive or closing, a peer that never reads is cut off like an idle one.
        self.deadline = Some(cx.now + cx.config.keepalive_timeout);
        if close {
            self.phase = Phase::Closing { ws: None };
        } else {
            if self.input.is_empty() || self.unread {
                self.read_paused(cx);
            }
            self.advance(cx);
            if self.unread {
                // The answer may have let the buffer fall under its read-ahead.
                self.read_paused(cx);
                self.advance(cx);
            }
            if self.eof && matches!(self.phase, Phase::Http { pending: None, .. }) {
                self.phase = Phase::Closing { ws: None };
            }
        }
        self.finish_write(cx)
    }

    /// Reads what a pause for back-pressure may have left in the kernel: no readiness
    /// event will report it again.
    fn read_paused(&mut self, cx: &mut Cx<'_>) {
        if self.wants_input(cx) {
            self.unread = false;
            if let Err(e) = self.read_socket(cx) {
                log::debug!("connection {}: read failed: {e}", self.peer);
                self.fail(CloseReason::Error);
            }
        }
    }

    /// A worker decided about an upgrade.
    pub fn on_upgrade(&mut self, up: Upgrade, cx: &mut Cx<'_>) -> Next {
        self.in_flight = false;
        let Phase::Http { pending, .. } = &mut self.phase else { return self.next(cx) };
        let Some(Pending::Upgrade { key, req }) = pending.take() else { return self.next(cx) };
        match up {
            Upgrade::Reject(resp) => self.respond_and_close(&resp.closing(), cx),
            Upgrade::Accept if cx.shutting_down => {
                self.respond_and_close(&error_response(503), cx);
            }
            Upgrade::Accept => {
                let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
                let hsts = if self.listener == Listener::Tls { HSTS } else { "" };
                let _ = write!(
                    self.output.vec(),
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: {accept}\r\n{hsts}\r\n"
                );
                let leftover = self.input.take();
                let ctx = WebSocketContext::from_partially_read(
                    leftover,
                    Role::Server,
                    Some(cx.ws_config),
                );
                let ping = cx.config.ws_ping_interval;
                self.phase = Phase::WebSocket(Box::new(Ws {
                    ctx,
                    last_rx: cx.now,
                    next_ping: cx.now + ping,
                    failing: None,
                }));
                self.opened = true;
                self.takes_frames = true;
                cx.open.insert(self.id);
                self.deadline = Some(cx.now + ping.min(cx.config.ws_idle_timeout));
                cx.stats.open_websockets.fetch_add(1, Relaxed);
                self.in_flight = true;
                cx.dispatch(Job::Opened(self.id, *req));
                self.advance_ws(cx);
            }
        }
        self.finish_write(cx)
    }

    /// A worker finished a WebSocket job. `rest` are the messages of its batch after
    /// one the handler deferred: they go back to the front of the inbox, to be handled
    /// once the deferred work is [`done`](Conn::on_done).
    pub fn on_handled(&mut self, rest: Vec<WsMessage>, deferred: bool, cx: &mut Cx<'_>) -> Next {
        for msg in rest.into_iter().rev() {
            self.inbox.push_front(msg);
        }
        if deferred && !std::mem::take(&mut self.done_early) {
            self.deferred = true;
            return self.next(cx);
        }
        self.job_finished(cx)
    }

    /// The application finished a job it deferred ([`Remote::done`](crate::Remote::done)).
    pub fn on_done(&mut self, cx: &mut Cx<'_>) -> Next {
        if !std::mem::take(&mut self.deferred) {
            // The worker's own report is still on its way; it finishes the job.
            self.done_early = true;
            return self.next(cx);
        }
        self.job_finished(cx)
    }

    fn job_finished(&mut self, cx: &mut Cx<'_>) -> Next {
        self.in_flight = false;
        if self.stalled && self.is_websocket() {
            // The inbox has room again; what waits behind it will not be reported by
            // an edge-triggered poller. Otherwise there is nothing to read: every
            // readiness event was drained, and a read would only cost a syscall.
            self.stalled = false;
            self.pump(cx);
        }
        self.dispatch_next(cx);
        self.fail_when_drained();
        self.finish_write(cx)
    }

    /// Carries out a command for this connection. `None` when it only queued a frame:
    /// the loop writes it with the rest of its batch ([`flush_queued`](Conn::flush_queued)).
    pub fn on_command(&mut self, cmd: Command, cx: &mut Cx<'_>) -> Option<Next> {
        let next = match cmd {
            Command::Text(_, t) => {
                self.queue(Message::text(t));
                return None;
            }
            Command::Tracked(_, t, tag) => {
                self.queue(Message::text(t));
                if self.is_websocket() {
                    let pending = self.output.len();
                    self.receipts.get_or_insert_default().track(pending, tag);
                }
                return None;
            }
            Command::Binary(_, b) => {
                self.queue(Message::binary(b));
                return None;
            }
            Command::Close(_, code, reason) => self.close(code, &reason, CloseReason::Server, cx),
            Command::Done(_) => self.on_done(cx),
            Command::Handled(_, rest, deferred) => self.on_handled(rest, deferred, cx),
            Command::Http(_, resp) => self.on_response(resp, cx),
            Command::Upgrade(_, up) => self.on_upgrade(up, cx),
            Command::Shutdown | Command::ReloadTls(..) => return None,
        };
        Some(next)
    }

    /// Queues a frame from the application.
    /// The frame is only buffered: the loop writes every connection's frames of one
    /// batch of commands with one [`flush_queued`](Conn::flush_queued).
    fn queue(&mut self, msg: Message) {
        if let Phase::WebSocket(ws) = &mut self.phase {
            let mut io =
                Adapter { input: &mut self.input, output: &mut self.output, eof: self.eof };
            if ws.ctx.write(&mut io, msg).is_err() || ws.ctx.flush(&mut io).is_err() {
                self.close_reason = CloseReason::Error;
                self.phase = Phase::Closing { ws: None };
            }
        }
    }

    /// Writes what [`queue`](Conn::queue) buffered.
    pub fn flush_queued(&mut self, cx: &mut Cx<'_>) -> Next {
        self.dirty = false;
        self.finish_write(cx)
    }

    /// Starts a close handshake with `code` (after what is queued).
    pub fn close(&mut self, code: u16, reason: &str, why: CloseReason, cx: &mut Cx<'_>) -> Next {
        match std::mem::replace(&mut self.phase, Phase::Dead) {
            Phase::WebSocket(mut ws) => {
                let mut io =
                    Adapter { input: &mut self.input, output: &mut self.output, eof: self.eof };
                let frame =
                    CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() };
                if ws.ctx.close(&mut io, Some(frame)).is_ok() {
                    let _ = ws.ctx.flush(&mut io);
                }
                self.close_reason = why;
                self.deadline = Some(cx.now + CLOSE_GRACE);
                self.phase = Phase::Closing { ws: Some(ws) };
            }
            Phase::Http { pending: Some(p), head_started } if why == CloseReason::Shutdown => {
                // Let the in-flight request finish; its response will close.
                self.phase = Phase::Http { pending: Some(p), head_started };
            }
            Phase::Dead => self.phase = Phase::Dead,
            lingering @ Phase::Lingering { .. } => self.phase = lingering,
            _ => {
                self.phase = Phase::Closing { ws: None };
                self.eof = true;
            }
        }
        self.finish_write(cx)
    }

    /// A timer of this connection is due.
    pub fn on_timer(&mut self, cx: &mut Cx<'_>) -> Next {
        let Some(deadline) = self.deadline else { return self.next(cx) };
        if deadline > cx.now {
            return self.next(cx);
        }
        self.deadline = None;
        match &mut self.phase {
            Phase::WebSocket(ws) => {
                let idle_at = ws.last_rx + cx.config.ws_idle_timeout;
                if cx.now >= idle_at {
                    cx.stats.closed_timeout.fetch_add(1, Relaxed);
                    return self.close(1000, "idle timeout", CloseReason::Idle, cx);
                }
                if cx.now >= ws.next_ping {
                    let mut io =
                        Adapter { input: &mut self.input, output: &mut self.output, eof: self.eof };
                    let _ = ws.ctx.write(&mut io, Message::Ping(Vec::new().into()));
                    let _ = ws.ctx.flush(&mut io);
                    ws.next_ping = cx.now + cx.config.ws_ping_interval;
                }
                self.deadline = Some(ws.next_ping.min(idle_at));
                self.finish_write(cx)
            }
            Phase::Http { pending: Some(_), .. } => self.next(cx),
            Phase::Lingering { .. } => {
                self.io_done();
                self.next(cx)
            }
            _ => {
                cx.stats.closed_timeout.fetch_add(1, Relaxed);
                self.close_reason = CloseReason::Idle;
                self.io_done();
                self.next(cx)
            }
        }
    }

    fn finish_write(&mut self, cx: &mut Cx<'_>) -> Next {
        if self.flush().is_err() {
            self.fail(CloseReason::Error);
        }
        self.next(cx)
    }

    /// Writes pending output until the socket would block, and keeps the account of
    /// what the peer leaves undrained: bytes queued while the socket took no more, less
    /// what it has taken since. A burst queued while the socket was taking everything
    /// is not owed, so a reader that keeps draining is never taken for one that stopped.
    fn flush(&mut self) -> io::Result<()> {
        if self.io.is_none() {
            return Ok(());
        }
        let before = self.output.len();
        if self.blocked {
            self.owed += before.saturating_sub(self.flushed_len);
        }
        let blocked = self.write_out()?;
        let written = before - self.output.len();
        if let Some(receipts) = self.receipts.as_deref_mut() {
            let tls = self.io.as_ref().and_then(|io| io.tls.as_ref());
            receipts.took(written, tls.is_none_or(|t| !t.wants_write()));
        }
        self.owed = self.owed.saturating_sub(written);
        self.blocked = blocked && !self.output.is_empty();
        if self.output.is_empty() {
            self.owed = 0;
        }
        self.output.compact();
        self.flushed_len = self.output.len();
        Ok(())
    }

    /// Writes until the socket would block; true when it would.
    fn write_out(&mut self) -> io::Result<bool> {
        let Some(io) = self.io.as_mut() else { return Ok(false) };
        match io.tls.as_deref_mut() {
            None => {
                while !self.output.is_empty() {
                    match io.sock.write(self.output.as_slice()) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => self.output.consume(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(false)
            }
            Some(tls) => loop {
                let mut progress = false;
                if !self.output.is_empty() {
                    let n = tls.writer().write(self.output.as_slice())?;
                    self.output.consume(n);
                    progress |= n > 0;
                }
                while tls.wants_write() {
                    match tls.write_tls(&mut io.sock) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(_) => progress = true,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if !progress || self.output.is_empty() {
                    return Ok(false);
                }
            },
        }
    }

    fn pending_output(&self) -> bool {
        !self.output.is_empty()
            || self.io.as_ref().and_then(|io| io.tls.as_ref()).is_some_and(|t| t.wants_write())
    }

    /// The protocol failed or the peer vanished: drop the socket.
    fn fail(&mut self, reason: CloseReason) {
        if self.close_reason == CloseReason::Normal {
            self.close_reason = reason;
        }
        self.io_done();
    }

    /// No more I/O on this connection.
    fn io_done(&mut self) {
        self.phase = Phase::Dead;
        self.eof = true;
        self.output.clear();
        if let Some(receipts) = self.receipts.as_deref_mut() {
            receipts.discard();
        }
    }

    /// Reports the tagged frames written, and leaves [`Cx::open`] once the WebSocket
    /// takes no more frames: at once when its close begins, whichever side begins it.
    fn report(&mut self, cx: &mut Cx<'_>) {
        if let Some(receipts) = self.receipts.as_deref_mut() {
            let written = receipts.take_written();
            if !written.is_empty() {
                cx.written.push((self.id, written));
            }
            if receipts.is_idle() {
                self.receipts = None;
            }
        }
        if self.takes_frames && !self.open_to_frames() {
            self.takes_frames = false;
            cx.open.remove(self.id);
        }
    }

    /// An open WebSocket with no close begun: none queued, none due after a protocol
    /// failure, and the peer has not ended its side (it is gone, or going).
    fn open_to_frames(&self) -> bool {
        let failing = matches!(&self.phase, Phase::WebSocket(ws) if ws.failing.is_some());
        self.is_websocket() && !failing && !self.peer_eof && !self.peer_closing
    }

    /// What the loop should do now.
    fn next(&mut self, cx: &mut Cx<'_>) -> Next {
        if self.io.is_some() && self.owed > cx.config.output_cap_bytes {
            self.cut_off(cx);
        }
        if matches!(self.phase, Phase::Closing { ws: None }) && !self.pending_output() {
            self.linger(cx);
        }
        self.report(cx);
        self.account(cx.stats);
        if matches!(self.phase, Phase::Dead) {
            if self.io.is_some() {
                return Next::DropSocket;
            }
            self.dispatch_next(cx);
            return if self.in_flight || !self.inbox.is_empty() || self.opened {
                Next::Keep(Interest::READABLE)
            } else {
                Next::Free
            };
        }
        let mut interest = Interest::READABLE;
        if self.pending_output() {
            interest |= Interest::WRITABLE;
        }
        Next::Keep(interest)
    }

    /// Closes a peer that does not read its output.
    fn cut_off(&mut self, cx: &Cx<'_>) {
        log::debug!("connection {}: closed, it does not read its output", self.peer);
        cx.stats.closed_slow_reader.fetch_add(1, Relaxed);
        self.close_reason = CloseReason::SlowReader;
        self.io_done();
    }

    /// Output this peer left undrained, then output pending: who goes first when the
    /// loop is over its budget.
    pub fn output_weight(&self) -> (usize, usize) {
        (self.owed, self.output.len())
    }

    /// The loop is over its output budget and this connection holds the most.
    pub fn shed(&mut self, cx: &mut Cx<'_>) -> Next {
        if self.io.is_some() {
            self.cut_off(cx);
        }
        self.next(cx)
    }

    /// All is written: shut our sending side and discard what the peer still sends, so
    /// it reads the answer before it sees the close (nginx's lingering close). A peer
    /// that has ended its own side has nothing more to send; a shutdown closes idle
    /// connections at once, and waits for no one's goodbye.
    fn linger(&mut self, cx: &mut Cx<'_>) {
        let Some(io) = self.io.as_mut() else { return self.io_done() };
        if self.peer_eof || cx.config.linger_bytes == 0 || cx.shutting_down {
            return self.io_done();
        }
        if let Some(tls) = io.tls.as_deref_mut() {
            tls.send_close_notify();
            let _ = tls.write_tls(&mut io.sock);
        }
        if io.sock.shutdown_write().is_err() {
            return self.io_done();
        }
        self.input.clear();
        self.eof = true;
        self.phase = Phase::Lingering { left: cx.config.linger_bytes };
        self.deadline = Some(cx.now + cx.config.linger_timeout);
        self.dispatch_next(cx);
        // What arrived before the shutdown raised no event we will see again.
        let Phase::Lingering { left } = &mut self.phase else { return };
        if !discard_input(self.io.as_mut(), cx.scratch, left) {
            self.io_done();
        }
    }

    /// Brings the `output_bytes` gauge up to date with this connection's output.
    fn account(&mut self, stats: &Stats) {
        let len = self.output.len();
        if len != self.accounted {
            stats.output_bytes.fetch_add(len as i64 - self.accounted as i64, Relaxed);
            self.accounted = len;
        }
    }

    /// Called by the loop once the socket is deregistered: forget it.
    pub fn drop_socket(&mut self, stats: &Stats) -> bool {
        if let Some(mut io) = self.io.take() {
            if let Some(tls) = io.tls.as_deref_mut() {
                // Best effort, never blocking: a clean TLS end, so clients can tell a
                // close from a truncation.
                tls.send_close_notify();
                let _ = tls.write_tls(&mut io.sock);
            }
            let counter = if io.tls.is_some() { &stats.open_tls } else { &stats.open_plain };
            counter.fetch_sub(1, Relaxed);
            drop(io);
        }
        self.phase = Phase::Dead;
        self.input = Buffer::default();
        self.output = Buffer::default();
        if let Some(receipts) = self.receipts.as_deref_mut() {
            receipts.discard();
        }
        self.account(stats);
        self.deadline = None;
        self.in_flight || !self.inbox.is_empty() || self.opened
    }

    /// After `drop_socket`: dispatch what is owed; true when the slot can be freed.
    pub fn settle(&mut self, cx: &mut Cx<'_>) -> bool {
        self.report(cx);
        self.dispatch_next(cx);
        !self.in_flight && self.inbox.is_empty() && !self.opened
    }

    /// Shutdown gave up waiting: the handler still hears about an opened WebSocket.
    pub fn abandon(&mut self, cx: &mut Cx<'_>) {
        if self.opened {
            self.opened = false;
            cx.stats.open_websockets.fetch_sub(1, Relaxed);
            cx.dispatch(Job::Closed(self.id, CloseReason::Shutdown));
        }
    }
}

/// The socket as the read functions see it. A read that returns less than it asked
/// for has emptied the kernel's receive queue, and any byte arriving after it raises a
/// new edge-triggered event: the read that would only say `WouldBlock` is skipped (one
/// syscall in two on a busy WebSocket). Not when the peer is closing: the end of file
/// may already be queued behind the data, and nothing would report it again.
struct Reads<'a> {
    sock: &'a mut Stream,
    to_the_end: bool,
    /// The last read came back short.
    short: bool,
}

impl Reads<'_> {
    fn drained(&self) -> bool {
        self.short && !self.to_the_end
    }
}

impl Read for Reads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

/// Drains a plain socket into `input`; true if any byte arrived.
fn read_plain(
    sock: &mut Reads<'_>,
    scratch: &mut [u8],
    input: &mut Buffer,
    eof: &mut bool,
) -> io::Result<bool> {
    let mut any = false;
    loop {
        match sock.read(scratch) {
            Ok(0) => {
                *eof = true;
                return Ok(any);
            }
            Ok(n) => {
                input.extend(&scratch[..n]);
                any = true;
                if sock.drained() {
                    return Ok(true);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Drains a TLS socket: records in, then every byte of plaintext out of rustls (none
/// may stay buffered there: epoll would never report it again).
fn read_tls(
    sock: &mut Reads<'_>,
    tls: &mut ServerConnection,
    scratch: &mut [u8],
    input: &mut Buffer,
    eof: &mut bool,
) -> io::Result<bool> {
    let mut any = false;
    loop {
        match tls.read_tls(sock) {
            Ok(0) => *eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let state = match tls.process_new_packets() {
            Ok(state) => state,
            Err(e) => {
                // Best effort: tell the peer why (rustls queued an alert).
                let _ = tls.write_tls(sock.sock);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        };
        if state.plaintext_bytes_to_read() > 0 {
            loop {
                match tls.reader().read(scratch) {
                    Ok(0) => break,
                    Ok(n) => {
                        input.extend(&scratch[..n]);
                        any = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        if state.peer_has_closed() {
            *eof = true;
        }
        if *eof || sock.drained() {
            return Ok(any);
        }
    }
}

/// Reads and throws away what a lingering peer sends. False when lingering is over: end
/// of file, an error, or `left` used up.
fn discard_input(io: Option<&mut Io>, scratch: &mut [u8], left: &mut usize) -> bool {
    let Some(io) = io else { return false };
    loop {
        match io.sock.read(scratch) {
            Ok(0) => return false,
            Ok(n) if n >= *left => return false,
            Ok(n) => *left -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// tungstenite's view of the connection: reads from the input buffer, writes to the
/// output buffer. It never touches the socket, so it never blocks.
struct Adapter<'a> {
    input: &'a mut Buffer,
    output: &'a mut Buffer,
    eof: bool,
}

impl Read for Adapter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return if self.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input.as_slice()[..n]);
        self.input.consume(n);
        Ok(n)
    }
}

impl Write for Adapter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{read_plain, Buffer, Pipe, Reads, Stream};
    use crate::internals::{EchoHandler, MemoryConn};
    use crate::Config;

    const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    /// A client that does not read sends two requests whose answers are each over the
    /// output cap, then `next`, pipelined: the second answer is queued while the socket
    /// takes nothing, so it is owed.
    fn cut_off_with_in_flight(next: &[u8]) -> MemoryConn {
        let config = Config { output_cap_bytes: 1024, ..Config::default() };
        let mut c = MemoryConn::new(config, Arc::new(EchoHandler::default())).expect("conn");
        c.set_room(0);
        let big = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(1100));
        let mut input = big.repeat(2).into_bytes();
        input.extend_from_slice(next);
        c.send(&input);
        assert!(!c.is_open(), "cut off at the output cap");
        c
    }

    #[test]
    fn a_short_read_ends_the_drain_unless_the_peer_is_closing() {
        let mut pipe = Pipe::default();
        pipe.incoming.extend_from_slice(&[7; 100]);
        pipe.incoming_closed = true;
        let mut sock = Stream::Memory(pipe);
        let (mut input, mut eof, mut scratch) = (Buffer::default(), false, [0u8; 64]);

        // 64 of 100 bytes: a full read, so the drain goes on; 36: short, so it stops
        // there, and the end of file queued behind them is not seen.
        let mut reads = Reads { sock: &mut sock, to_the_end: false, short: false };
        assert!(read_plain(&mut reads, &mut scratch, &mut input, &mut eof).expect("read"));
        assert_eq!((input.len(), eof), (100, false));

        // When the poller has reported the peer's FIN, reads go on to the end of file.
        let mut reads = Reads { sock: &mut sock, to_the_end: true, short: false };
        assert!(!read_plain(&mut reads, &mut scratch, &mut input, &mut eof).expect("read"));
        assert!(eof);
    }

    /// Found by the `http_conn` fuzz target: a pipelining client that does not read was
    /// cut off at the output cap while its next request was with a worker; the answer
    /// found the connection dead and left it waiting for that worker forever, so its
    /// slot was never freed.
    #[test]
    fn a_reader_cut_off_with_a_request_in_flight_is_freed() {
        let c = cut_off_with_in_flight(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(c.is_freed(), "nothing is owed to a dead connection once its worker answered");
    }

    /// Found by the `http_conn` fuzz target: while our close handshake waited for the
    /// peer's close frame, a protocol error from a peer that was slow to read dropped
    /// everything still queued for it, our close frame included.
    #[test]
    fn a_protocol_error_during_our_close_handshake_still_sends_what_is_queued() {
        let mut c =
            MemoryConn::new(Config::default(), Arc::new(EchoHandler::default())).expect("conn");
        c.set_room(0);
        let mut input = UPGRADE.to_vec();
        // A text frame "close": the handler closes with 1000.
        input.extend_from_slice(b"\x81\x85\0\0\0\0close");
        c.send(&input);
        // An unmasked frame: a protocol error.
        c.send(b"\x81\x01x");
        assert!(c.is_open(), "queued output still waits for the reader");
        c.set_room(usize::MAX);
        let out = c.take_output();
        assert!(out.starts_with(b"HTTP/1.1 101 "));
        assert!(out.ends_with(b"\x88\x05\x03\xe8bye"), "the close frame was sent");
        c.close_input();
        assert!(c.is_freed());
    }

    /// The same with an upgrade request in flight.
    #[test]
    fn a_reader_cut_off_with_an_upgrade_in_flight_is_freed() {
        assert!(cut_off_with_in_flight(UPGRADE).is_freed());
    }

    /// Echoes text messages, except `defer` (deferred until the test calls `done`) and
    /// `defer-done` (deferred, and done at once from inside the handler: the `done`
    /// overtakes the worker's report of the deferral).
    #[derive(Default)]
    struct Deferring(std::sync::Mutex<Option<crate::ConnId>>);

    impl crate::Handler for Deferring {
        fn request(&self, _: crate::Request, _: &crate::Remote) -> crate::Response {
            crate::Response::empty(404)
        }

        fn message(
            &self,
            conn: crate::ConnId,
            msg: crate::WsMessage,
            remote: &crate::Remote,
        ) -> crate::Flow {
            let crate::WsMessage::Text(text) = msg else { return crate::Flow::Done };
            *self.0.lock().unwrap() = Some(conn);
            match text.as_str() {
                "defer" => crate::Flow::Deferred,
                "defer-done" => {
                    remote.done(conn);
                    crate::Flow::Deferred
                }
                _ => {
                    remote.send_text(conn, text);
                    crate::Flow::Done
                }
            }
        }
    }

    fn frames(texts: &[&str]) -> Vec<u8> {
        texts
            .iter()
            .flat_map(|t| [&[0x81, 0x80 | t.len() as u8, 0, 0, 0, 0][..], t.as_bytes()].concat())
            .collect()
    }

    fn echoes(texts: &[&str]) -> Vec<u8> {
        texts.iter().flat_map(|t| [&[0x81, t.len() as u8][..], t.as_bytes()].concat()).collect()
    }

    /// Messages that came in one batch after a deferred one wait for its `done`, then
    /// go in their order; a `done` that overtakes the worker's report is not lost.
    #[test]
    fn messages_behind_a_deferred_one_wait_for_done() {
        let handler = Arc::new(Deferring::default());
        let mut c = MemoryConn::new(Config::default(), handler.clone()).expect("conn");
        c.send(UPGRADE);
        let _ = c.take_output();
        c.send(&frames(&["a", "defer", "b", "c"]));
        assert_eq!(c.take_output(), echoes(&["a"]), "b and c wait for the deferred one");
        c.send(&frames(&["d"]));
        assert_eq!(c.take_output(), b"", "so do later messages");
        let conn = handler.0.lock().unwrap().expect("a message was handled");
        c.remote().done(conn);
        c.send(b"");
        assert_eq!(c.take_output(), echoes(&["b", "c", "d"]));
        c.send(&frames(&["e", "defer-done", "f"]));
        assert_eq!(c.take_output(), echoes(&["e", "f"]));
    }

    /// Sends each text message back tracked, its number as the tag (`close` closes
    /// with 1000), and records the tags reported written.
    #[derive(Default)]
    struct Tracking {
        conn: std::sync::Mutex<Option<crate::ConnId>>,
        written: std::sync::Mutex<Vec<u64>>,
    }

    impl crate::Handler for Tracking {
        fn request(&self, _: crate::Request, _: &crate::Remote) -> crate::Response {
            crate::Response::empty(404)
        }

        fn message(
            &self,
            conn: crate::ConnId,
            msg: crate::WsMessage,
            remote: &crate::Remote,
        ) -> crate::Flow {
            *self.conn.lock().unwrap() = Some(conn);
            match msg {
                crate::WsMessage::Text(t) if t == "close" => remote.close(conn, 1000, ""),
                crate::WsMessage::Text(t) => {
                    let tag = t.parse().unwrap();
                    remote.send_text_tracked(conn, t.repeat(1000), tag);
                }
                crate::WsMessage::Binary(_) => {}
            }
            crate::Flow::Done
        }

        fn written(&self, reports: Vec<(crate::ConnId, Vec<u64>)>, _: &crate::Remote) {
            self.written.lock().unwrap().extend(reports.into_iter().flat_map(|(_, tags)| tags));
        }
    }

    /// A tagged frame is reported once its last byte is written, not when queued; the
    /// tags of frames a connection drops unwritten never are; and a WebSocket takes no
    /// frames from the moment its close begins.
    #[test]
    fn tagged_frames_are_reported_when_written_and_never_when_dropped() {
        let handler = Arc::new(Tracking::default());
        let mut c = MemoryConn::new(Config::default(), handler.clone()).expect("conn");
        c.send(UPGRADE);
        let _ = c.take_output();
        c.set_room(1500);
        c.send(&frames(&["1", "2"]));
        let conn = handler.conn.lock().unwrap().expect("a message was handled");
        assert!(c.remote().takes_frames(conn));
        // 1004 bytes a frame: the first is out, 496 bytes of the second.
        assert_eq!(*handler.written.lock().unwrap(), vec![1]);
        c.set_room(500);
        assert_eq!(*handler.written.lock().unwrap(), vec![1], "4 bytes are not out");
        c.set_room(usize::MAX);
        assert_eq!(*handler.written.lock().unwrap(), vec![1, 2]);
        let _ = c.take_output();

        c.set_room(0);
        c.send(&frames(&["3", "close"]));
        assert!(!c.remote().takes_frames(conn), "closing: no delivery target any more");
        // The peer never reads: the close grace ends it with the frame unwritten.
        c.advance(super::CLOSE_GRACE);
        assert!(c.is_freed());
        assert_eq!(*handler.written.lock().unwrap(), vec![1, 2], "3 was never written");
    }

    /// A peer that vanishes while a job of its connection is still with the application:
    /// the slot waits for that job, but the WebSocket takes no frames from that moment.
    #[test]
    fn a_peer_gone_takes_no_frames_before_its_connection_is_reaped() {
        let handler = Arc::new(Deferring::default());
        let mut c = MemoryConn::new(Config::default(), handler.clone()).expect("conn");
        c.send(UPGRADE);
        c.send(&frames(&["defer"]));
        let conn = handler.0.lock().unwrap().expect("a message was handled");
        assert!(c.remote().takes_frames(conn));
        c.close_input();
        assert!(!c.is_freed(), "the deferred job still holds the slot");
        assert!(!c.remote().takes_frames(conn), "no delivery target once the peer is gone");
        c.remote().done(conn);
        c.send(b"");
        assert!(c.is_freed());
    }

    /// A burst of frames several times the inbox arrives at once: reading and parsing
    /// stall on the full inbox, and each finished job resumes them, so every frame is
    /// answered, in order, with no readiness event to prompt it.
    #[test]
    fn a_burst_over_the_inbox_limit_is_answered_in_order() {
        let mut c =
            MemoryConn::new(Config::default(), Arc::new(EchoHandler::default())).expect("conn");
        c.send(UPGRADE);
        let _ = c.take_output();
        let count = super::INBOX_LIMIT * 3 + 1;
        let mut burst = Vec::new();
        for i in 0..count {
            let text = format!("m{i:03}");
            burst.extend_from_slice(&[0x81, 0x84, 0, 0, 0, 0]);
            burst.extend_from_slice(text.as_bytes());
        }
        c.send(&burst);
        let out = c.take_output();
        let expected: Vec<u8> = (0..count)
            .flat_map(|i| [&[0x81, 0x04][..], format!("m{i:03}").as_bytes()].concat())
            .collect();
        assert_eq!(out, expected);
    }
}
