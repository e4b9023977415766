//! One connection over an in-memory pipe, driven the way the event loop drives it, with
//! the handler's jobs run inline on the calling thread and time moved by hand. For
//! tests and fuzz targets only: the connection code is the production code.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::Interest;
use tungstenite::protocol::WebSocketConfig;

use crate::conn::{Conn, Cx, Next};
use crate::detached::DetachedRemote;
use crate::remote::Command;
use crate::stream::{Pipe, Stream};
use crate::worker::{deliver, Job};
use crate::{
    CloseReason, Config, ConnId, Flow, Handler, Remote, Request, Response, Upgrade, WsMessage,
};

/// The id of the one connection.
const CONN: ConnId = ConnId(1);

/// A plain connection from `127.0.0.1` whose client is the caller.
pub struct MemoryConn {
    /// `None` once the connection's slot would be freed.
    conn: Option<Conn>,
    config: Config,
    ws_config: WebSocketConfig,
    jobs_tx: Sender<Job>,
    jobs: Receiver<Job>,
    remote: DetachedRemote,
    handler: Arc<dyn Handler>,
    scratch: Vec<u8>,
    now: Instant,
    shutting_down: bool,
    /// Written by the server, not yet taken by the client.
    output: Vec<u8>,
}

impl MemoryConn {
    /// A freshly accepted connection served by `handler` under `config`.
    pub fn new(config: Config, handler: Arc<dyn Handler>) -> io::Result<MemoryConn> {
        let (jobs_tx, jobs) = crossbeam_channel::unbounded();
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(config.ws_max_message_bytes))
            .max_frame_size(Some(config.ws_max_message_bytes));
        let mut me = MemoryConn {
            conn: None,
            config,
            ws_config,
            jobs_tx,
            jobs,
            remote: DetachedRemote::driven()?,
            handler,
            scratch: vec![0; 16 * 1024],
            now: Instant::now(),
            shutting_down: false,
            output: Vec::new(),
        };
        let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
        let cx = me.cx();
        let conn = Conn::new(CONN, Stream::Memory(Pipe::default()), peer, None, &cx);
        me.conn = Some(conn);
        Ok(me)
    }

    /// The client sends `bytes`; the server reads, runs the jobs and answers.
    pub fn send(&mut self, bytes: &[u8]) {
        if let Some(pipe) = self.conn.as_mut().and_then(Conn::pipe) {
            pipe.incoming.extend_from_slice(bytes);
        }
        self.step(Conn::ready);
    }

    /// The client closes its sending side.
    pub fn close_input(&mut self) {
        if let Some(pipe) = self.conn.as_mut().and_then(Conn::pipe) {
            pipe.incoming_closed = true;
        }
        // As epoll reports the peer's FIN (EPOLLRDHUP).
        self.step(|c, cx| {
            c.peer_closing();
            c.ready(cx)
        });
    }

    /// From now on the client accepts `room` more bytes (a slow reader; `usize::MAX`
    /// reads everything); the server writes what it can.
    pub fn set_room(&mut self, room: usize) {
        if let Some(pipe) = self.conn.as_mut().and_then(Conn::pipe) {
            pipe.room = room;
        }
        self.step(Conn::ready);
    }

    /// Time passes; the connection's timer runs if it is due.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        let due = self.conn.as_ref().and_then(|c| c.deadline).is_some_and(|d| d <= self.now);
        if due {
            self.step(Conn::on_timer);
        }
    }

    /// A graceful shutdown begins, as on SIGTERM.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        self.step(|c, cx| c.close(1001, "server shutting down", CloseReason::Shutdown, cx));
    }

    /// What the server wrote since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Whether the server still holds the socket.
    pub fn is_open(&mut self) -> bool {
        self.conn.as_mut().and_then(Conn::pipe).is_some()
    }

    /// Whether the server shut down its sending side (it lingers, reading and
    /// discarding until the client hangs up).
    pub fn output_ended(&mut self) -> bool {
        self.conn.as_mut().and_then(Conn::pipe).is_some_and(|p| p.outgoing_closed)
    }

    /// Whether the connection is gone entirely (socket dropped, handler told).
    pub fn is_freed(&self) -> bool {
        self.conn.is_none()
    }

    /// The handle the handler is given.
    pub fn remote(&self) -> &Remote {
        self.remote.remote()
    }

    fn cx(&mut self) -> Cx<'_> {
        Cx {
            now: self.now,
            config: &self.config,
            ws_config: self.ws_config,
            jobs: &self.jobs_tx,
            stats: self.remote.remote().stats(),
            open: &self.remote.remote().shared.open,
            written: Vec::new(),
            scratch: &mut self.scratch,
            shutting_down: self.shutting_down,
            static_files: None,
            over_budget: false,
        }
    }

    /// One call into the connection, then every job and command it leads to.
    fn step(&mut self, call: impl FnOnce(&mut Conn, &mut Cx<'_>) -> Next) {
        self.apply(call);
        loop {
            if let Ok(job) = self.jobs.try_recv() {
                self.run(job);
            }
            let mut any = false;
            let mut queued = false;
            while let Some(cmd) = self.remote.try_command() {
                any = true;
                if cmd.conn() == Some(CONN) {
                    let mut frame = false;
                    self.apply(|c, cx| {
                        c.on_command(cmd, cx).unwrap_or_else(|| {
                            frame = true;
                            Next::Keep(Interest::READABLE)
                        })
                    });
                    queued |= frame;
                }
            }
            if queued {
                // The loop writes the frames of one batch of commands at once.
                self.apply(Conn::flush_queued);
            }
            if !any && self.jobs.is_empty() {
                break;
            }
        }
    }

    /// Calls into the connection and does what it asks, as the loop's `apply` does.
    fn apply(&mut self, call: impl FnOnce(&mut Conn, &mut Cx<'_>) -> Next) {
        let Some(mut conn) = self.conn.take() else { return };
        let mut cx = self.cx();
        let next = call(&mut conn, &mut cx);
        cx.report_written();
        if let Some(pipe) = conn.pipe() {
            self.output.append(&mut pipe.outgoing);
        }
        let mut cx = self.cx();
        let free = match next {
            Next::Keep(_) => false,
            Next::DropSocket => {
                conn.drop_socket(cx.stats);
                let freed = conn.settle(&mut cx);
                cx.report_written();
                freed
            }
            Next::Free => true,
        };
        if !free {
            self.conn = Some(conn);
        }
    }

    /// Runs one job as a worker would (without catching panics: they are findings).
    fn run(&self, job: Job) {
        self.remote.remote().stats().queue_depth.fetch_sub(1, Relaxed);
        let (h, remote) = (self.handler.as_ref(), self.remote.remote());
        let reply = match job {
            Job::Http(c, req) => h.request_on(c, req, remote).map(|r| Command::Http(c, r)),
            Job::Upgrade(c, req) => Some(Command::Upgrade(c, h.upgrade(&req, c, remote))),
            Job::Opened(c, req) => {
                let deferred = h.opened(c, req, remote) == Flow::Deferred;
                Some(Command::Handled(c, Vec::new(), deferred))
            }
            Job::Messages(c, msgs) => Some(deliver(c, msgs, |m| h.message(c, m, remote))),
            Job::Closed(c, reason) => {
                h.closed(c, reason, remote);
                None
            }
            Job::Written(reports) => {
                h.written(reports, remote);
                None
            }
        };
        if let Some(cmd) = reply {
            self.remote.command(cmd);
        }
    }
}

/// A trivial handler: answers `METHOD TARGET BODY-LENGTH` to every request (and closes
/// after `/close`), refuses upgrades to `/reject`, echoes WebSocket messages, closes
/// with 1000 on the text `close`, and counts what it saw.
#[derive(Debug, Default)]
pub struct EchoHandler {
    /// Method and target of every request and upgrade request, in the order answered.
    pub requests: Mutex<Vec<(String, String)>>,
    /// WebSockets opened.
    pub opened: AtomicUsize,
    /// Messages received.
    pub messages: AtomicUsize,
    /// WebSockets closed.
    pub closed: AtomicUsize,
    /// Messages received on a WebSocket that was already reported closed.
    pub after_close: AtomicUsize,
}

impl EchoHandler {
    fn log(&self, req: &Request) {
        if let Ok(mut log) = self.requests.lock() {
            log.push((req.method.clone(), req.target.clone()));
        }
    }
}

impl Handler for EchoHandler {
    fn request(&self, req: Request, _remote: &Remote) -> Response {
        self.log(&req);
        let body = format!("{} {} {}", req.method, req.target, req.body.len());
        let resp = Response::new(200, "text/plain", body);
        if req.path() == "/close" {
            resp.closing()
        } else {
            resp
        }
    }

    fn upgrade(&self, req: &Request, _conn: ConnId, _remote: &Remote) -> Upgrade {
        self.log(req);
        if req.path().starts_with("/reject") {
            Upgrade::Reject(Response::new(403, "text/plain", "no\n"))
        } else {
            Upgrade::Accept
        }
    }

    fn opened(&self, _conn: ConnId, _req: Request, _remote: &Remote) -> Flow {
        self.opened.fetch_add(1, Relaxed);
        Flow::Done
    }

    fn message(&self, conn: ConnId, msg: WsMessage, remote: &Remote) -> Flow {
        self.messages.fetch_add(1, Relaxed);
        if self.closed.load(Relaxed) >= self.opened.load(Relaxed) {
            self.after_close.fetch_add(1, Relaxed);
        }
        match msg {
            WsMessage::Text(t) if t == "close" => remote.close(conn, 1000, "bye"),
            WsMessage::Text(t) => remote.send_text(conn, t),
            WsMessage::Binary(b) => remote.send_binary(conn, b),
        }
        Flow::Done
    }

    fn closed(&self, _conn: ConnId, _reason: CloseReason, _remote: &Remote) {
        self.closed.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    fn conn(config: Config) -> (MemoryConn, Arc<EchoHandler>) {
        let handler = Arc::new(EchoHandler::default());
        (MemoryConn::new(config, handler.clone()).expect("memory connection"), handler)
    }

    fn text(out: &[u8]) -> String {
        String::from_utf8_lossy(out).into_owned()
    }

    /// A masked client frame (FIN set).
    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let (mut c, _) = conn(Config::default());
        c.send(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz\
              GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        let out = text(&c.take_output());
        let bodies: Vec<&str> = out
            .split("\r\n\r\n")
            .skip(1)
            .map(|b| &b[..b.find("HTTP/").unwrap_or(b.len())])
            .collect();
        assert_eq!(bodies, ["GET /a 0", "POST /b 3", "GET /c 0"], "{out}");
        assert!(c.is_open());
    }

    #[test]
    fn keep_alive_serves_requests_split_anywhere_then_idles_out() {
        let (mut c, _) = conn(Config::default());
        let req = b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n";
        for b in req {
            c.send(&[*b]);
        }
        assert!(text(&c.take_output()).ends_with("\r\n\r\nGET /one 0"));
        c.send(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(text(&c.take_output()).ends_with("\r\n\r\nGET /two 0"));
        c.advance(Config::default().keepalive_timeout);
        assert!(!c.is_open() && c.is_freed());
        assert!(c.take_output().is_empty());
    }

    #[test]
    fn oversized_head_gets_431_and_nothing_behind_it_is_answered() {
        let (mut c, _) = conn(Config { head_bytes: 256, ..Config::default() });
        let long = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(300)
        );
        c.send(long.as_bytes());
        let out = text(&c.take_output());
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
        assert!(out.contains("Connection: close"));
        assert!(c.output_ended(), "written out, then our side shut");
        c.close_input();
        assert!(c.is_freed());
    }

    #[test]
    fn a_closing_response_ends_the_connection() {
        let (mut c, _) = conn(Config::default());
        c.send(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
        let out = text(&c.take_output());
        assert!(out.ends_with("Connection: close\r\n\r\nGET /close 0"), "{out}");
        assert!(c.output_ended());
        c.close_input();
        assert!(c.is_freed());
    }

    #[test]
    fn a_slow_reader_gets_its_output_as_it_reads() {
        let (mut c, _) = conn(Config::default());
        c.set_room(10);
        c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut out = c.take_output();
        assert_eq!(out.len(), 10);
        c.set_room(usize::MAX);
        out.extend(c.take_output());
        assert!(text(&out).ends_with("GET /slow 0"));
    }

    #[test]
    fn websocket_after_upgrade_echoes_then_closes_and_the_handler_hears_it_once() {
        let (mut c, h) = conn(Config::default());
        let mut bytes = UPGRADE.as_bytes().to_vec();
        // Frames pipelined right behind the upgrade request are not lost.
        bytes.extend(client_frame(1, b"hello"));
        c.send(&bytes);
        let out = c.take_output();
        let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").expect("101") + 4;
        assert!(text(&out[..head_end]).starts_with("HTTP/1.1 101 "));
        assert_eq!(&out[head_end..], b"\x81\x05hello");
        c.send(&client_frame(1, b"close"));
        assert_eq!(&c.take_output()[..4], b"\x88\x05\x03\xe8", "close 1000");
        c.send(&client_frame(8, &[0x03, 0xe8]));
        assert!(c.output_ended(), "the server ends the TCP connection first");
        assert_eq!(h.closed.load(Relaxed), 1, "the handler hears of the close at once");
        c.close_input();
        assert!(c.is_freed());
        assert_eq!(
            (h.opened.load(Relaxed), h.messages.load(Relaxed), h.closed.load(Relaxed)),
            (1, 2, 1)
        );
        assert_eq!(h.after_close.load(Relaxed), 0);
    }

    /// Answers every request with a body of `.0` bytes.
    struct Big(usize);

    impl Handler for Big {
        fn request(&self, _req: Request, _remote: &Remote) -> Response {
            Response::new(200, "application/octet-stream", vec![b'b'; self.0])
        }

        fn message(&self, _conn: ConnId, _msg: WsMessage, _remote: &Remote) -> Flow {
            Flow::Done
        }
    }

    fn content_length(out: &[u8]) -> usize {
        let head = text(&out[..out.windows(4).position(|w| w == b"\r\n\r\n").expect("head")]);
        let line = head.lines().find(|l| l.starts_with("Content-Length:")).expect("length");
        line["Content-Length:".len()..].trim().parse().expect("number")
    }

    /// A 10 MB answer, far over the 4 MiB cap, to a client that keeps reading in 256
    /// KiB steps: the burst is the server's own, nothing the peer failed to drain, so it
    /// is delivered whole (the old cap closed such a reader on every large answer).
    #[test]
    fn a_burst_over_the_cap_reaches_a_reader_that_keeps_draining() {
        let body = 10 << 20;
        let mut c = MemoryConn::new(Config::default(), Arc::new(Big(body))).expect("conn");
        c.set_room(256 << 10);
        c.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut out = c.take_output();
        for _ in 0..100 {
            assert!(c.is_open(), "closed after {} bytes", out.len());
            c.set_room(256 << 10);
            out.extend(c.take_output());
        }
        let head_len = out.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
        assert_eq!(content_length(&out), body);
        assert_eq!(out.len() - head_len, body, "the whole body arrived");
        assert!(c.is_open());
        // And the next answer goes out as well.
        c.set_room(usize::MAX);
        c.send(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.take_output().len(), out.len());
    }

    /// A WebSocket that stops reading while its own echoes keep coming is closed once
    /// what it left undrained passes the cap, and only then.
    #[test]
    fn a_websocket_that_stops_reading_is_closed_past_the_cap() {
        let cap = 16 * 1024;
        let (mut c, h) = conn(Config { output_cap_bytes: cap, ..Config::default() });
        c.send(UPGRADE.as_bytes());
        c.take_output();
        c.set_room(0);
        let frame = client_frame(1, &[b'e'; 100]);
        let mut sent = 0;
        while c.is_open() && sent < 1000 {
            c.send(&frame);
            sent += 1;
        }
        assert!(!c.is_open(), "cut off");
        // Each echo is 102 bytes: closed past the cap, not before it.
        assert!(sent * 102 > cap && (sent - 1) * 102 <= cap + 102, "closed after {sent} frames");
        assert_eq!(h.closed.load(Relaxed), 1);
    }

    /// A client that pipelines requests and reads nothing gets one chunk of answers
    /// written ahead; the requests behind wait in their buffer, not as answers in ours,
    /// and are answered, in order, once it reads.
    #[test]
    fn pipelined_requests_wait_while_a_chunk_of_answers_is_unread() {
        let (mut c, h) = conn(Config::default());
        c.set_room(0);
        let path = "p".repeat(2000);
        let count = 500;
        let reqs: String =
            (0..count).map(|i| format!("GET /{path}/{i:03} HTTP/1.1\r\nHost: x\r\n\r\n")).collect();
        c.send(reqs.as_bytes());
        let answered = h.requests.lock().expect("log").len();
        assert!(answered < 64, "{answered} requests answered for a client that reads nothing");
        assert!(c.is_open());
        c.set_room(usize::MAX);
        let out = text(&c.take_output());
        assert_eq!(out.matches("HTTP/1.1 200").count(), count, "all answered once it reads");
        let last = format!("GET /{path}/{:03} 0", count - 1);
        assert!(out.ends_with(&last), "in order");
    }

    /// After a 413 the server shuts its sending side and reads and throws away what the
    /// client still sends, up to `linger_bytes`, then lets go; or when the client hangs
    /// up; or at `linger_timeout`.
    #[test]
    fn after_a_refusal_the_connection_lingers_reading_within_bounds() {
        let config = Config { body_bytes: 1000, linger_bytes: 100_000, ..Config::default() };
        let head = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n";
        // Bounded in bytes.
        let (mut c, h) = conn(config.clone());
        c.send(head);
        assert!(text(&c.take_output()).starts_with("HTTP/1.1 413 "));
        assert!(c.output_ended() && c.is_open(), "lingering");
        for _ in 0..9 {
            c.send(&[0; 10_000]);
            assert!(c.is_open(), "still discarding");
        }
        c.send(&[0; 20_000]);
        assert!(c.is_freed(), "let go past linger_bytes");
        assert!(c.take_output().is_empty());
        assert!(h.requests.lock().expect("log").is_empty(), "the body never reached a worker");
        // Bounded in time.
        let (mut c, _) = conn(config.clone());
        c.send(head);
        c.send(&[0; 10_000]);
        assert!(c.is_open());
        c.advance(config.linger_timeout);
        assert!(c.is_freed(), "let go at linger_timeout");
        // Over when the client hangs up.
        let (mut c, _) = conn(config);
        c.send(head);
        c.close_input();
        assert!(c.is_freed());
    }

    /// A graceful shutdown closes an idle keep-alive connection at once: it does not
    /// linger waiting for the client to hang up.
    #[test]
    fn a_shutdown_closes_idle_connections_without_lingering() {
        let (mut c, _) = conn(Config::default());
        c.send(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(text(&c.take_output()).ends_with("GET /one 0"));
        c.shutdown();
        assert!(c.is_freed());
    }

    #[test]
    fn an_idle_websocket_is_pinged_then_closed() {
        let (mut c, h) = conn(Config::default());
        c.send(UPGRADE.as_bytes());
        c.take_output();
        let config = Config::default();
        c.advance(config.ws_ping_interval);
        assert_eq!(c.take_output(), b"\x89\x00", "ping");
        for _ in 0..4 {
            c.advance(config.ws_ping_interval);
        }
        assert!(c.is_freed());
        assert_eq!(h.closed.load(Relaxed), 1);
    }
}
