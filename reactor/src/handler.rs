//! The seam between the reactor and the application: the [`Handler`] trait and the
//! types that cross it. The reactor knows nothing about what the application does.

use crate::{Remote, Request, Response};

/// A live connection, as seen from worker threads: a slab slot plus a generation,
/// so a handle kept after its connection closed never reaches a newer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A complete WebSocket data message from a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsMessage {
    /// A text message (valid UTF-8, reassembled from fragments).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// What a handler decides about a WebSocket upgrade request.
#[derive(Debug)]
pub enum Upgrade {
    /// Switch protocols; [`Handler::opened`] runs once the 101 is written.
    Accept,
    /// Answer with this response instead (e.g. 403 for a foreign Origin).
    Reject(Response),
}

/// Whether a handler finished with a WebSocket job when it returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Flow {
    /// Done: the connection's next message may be handled.
    Done,
    /// Still working elsewhere (e.g. a password check on another pool): the next
    /// message of this connection waits until [`Remote::done`] is called for it.
    Deferred,
}

/// Why a WebSocket ended, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close frame, or the close handshake we started completed.
    Normal,
    /// The application asked for the close ([`Remote::close`]).
    Server,
    /// No frame from the client within the idle timeout.
    Idle,
    /// A message over the size limit (close 1009).
    TooBig,
    /// The client broke the WebSocket protocol or the stream failed.
    Error,
    /// The peer let its pending output exceed the cap.
    SlowReader,
    /// The server is shutting down (close 1001).
    Shutdown,
}

/// The application. Every method runs on a worker thread, except the `*_now` ones,
/// which the event loop calls on its own thread; calls for one connection run one at a
/// time and in the order its input arrived, so a handler needs no per-connection
/// locking to keep replies in order.
pub trait Handler: Send + Sync + 'static {
    /// A complete HTTP request that is not a WebSocket upgrade.
    fn request(&self, req: Request, remote: &Remote) -> Response;

    /// A complete HTTP request on `conn`. `None` when the handler answers later, from
    /// another thread, with [`Remote::respond`]: the connection reads no further request
    /// until then. The default answers at once with [`Handler::request`].
    fn request_on(&self, conn: ConnId, req: Request, remote: &Remote) -> Option<Response> {
        let _ = conn;
        Some(self.request(req, remote))
    }

    /// A valid WebSocket upgrade request (the reactor already checked the handshake
    /// headers). The default accepts every upgrade.
    fn upgrade(&self, req: &Request, conn: ConnId, remote: &Remote) -> Upgrade {
        let _ = (req, conn, remote);
        Upgrade::Accept
    }

    /// The upgrade of `conn` is complete (101 written); `req` is its upgrade request.
    fn opened(&self, conn: ConnId, req: Request, remote: &Remote) -> Flow {
        let _ = (conn, req, remote);
        Flow::Done
    }

    /// A data message on `conn`. Replies go out through `remote`, to `conn` or any other
    /// connection; replies to `conn` made here are written before those of its next message.
    fn message(&self, conn: ConnId, msg: WsMessage, remote: &Remote) -> Flow;

    /// [`message`](Self::message) at once, on the event loop's thread, or `msg` given
    /// back untouched for a worker. The loop asks only while every worker sleeps and
    /// few jobs wait: running a small job itself spares the wake-ups that would cost
    /// more than the job. So this must never wait (for a disk, a network peer, another
    /// thread, a lock held for long), and decide before doing anything whether it
    /// can do it all: a message given back is run by a worker as if new. The default
    /// gives every message back.
    fn message_now(
        &self,
        conn: ConnId,
        msg: WsMessage,
        remote: &Remote,
    ) -> Result<Flow, WsMessage> {
        let _ = (conn, remote);
        Err(msg)
    }

    /// [`written`](Self::written) at once on the event loop's thread, on the terms of
    /// [`message_now`](Self::message_now), or the reports given back for a worker. The
    /// default gives them back.
    fn written_now(
        &self,
        reports: Vec<(ConnId, Vec<u64>)>,
        remote: &Remote,
    ) -> Result<(), Vec<(ConnId, Vec<u64>)>> {
        let _ = remote;
        Err(reports)
    }

    /// Every byte of the frames sent with these tags ([`Remote::send_text_tracked`])
    /// left for its connection's socket (with TLS: out of rustls too): per connection,
    /// its tags in the order they were queued; the reports of one pass of the event loop
    /// come together. Runs apart from the connections' other calls, so a report may
    /// come after `closed`; the tags of frames a connection closed before writing
    /// never come.
    fn written(&self, reports: Vec<(ConnId, Vec<u64>)>, remote: &Remote) {
        let _ = (reports, remote);
    }

    /// `conn` has closed; called once per opened WebSocket, after its last `message`.
    fn closed(&self, conn: ConnId, reason: CloseReason, remote: &Remote) {
        let _ = (conn, reason, remote);
    }
}
