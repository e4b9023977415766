//! A [`Remote`] with no event loop behind it: what handlers send through it is
//! collected for a test or fuzz target to drain. For tests and fuzz targets only.

use std::io;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::remote::Command;
use crate::{ConnId, Remote, Response, Upgrade};

/// A command a handler sent through a [`DetachedRemote`].
#[derive(Debug)]
pub enum Sent {
    /// [`Remote::send_text`], and [`Remote::send_text_tracked`] without its tag.
    Text(ConnId, String),
    /// [`Remote::send_binary`].
    Binary(ConnId, Vec<u8>),
    /// [`Remote::close`]: code and reason.
    Close(ConnId, u16, String),
    /// [`Remote::done`], or a job that returned [`Flow::Done`](crate::Flow::Done).
    Done(ConnId),
    /// A worker's answer to an HTTP request.
    Http(ConnId, Response),
    /// A worker's decision about an upgrade.
    Upgrade(ConnId, Upgrade),
    /// Shutdown and certificate reloads: nothing a connection sees.
    Control,
}

impl From<Command> for Sent {
    fn from(cmd: Command) -> Sent {
        match cmd {
            Command::Text(c, t) | Command::Tracked(c, t, _) => Sent::Text(c, t),
            Command::Binary(c, b) => Sent::Binary(c, b),
            Command::Close(c, code, reason) => Sent::Close(c, code, reason),
            Command::Done(c) | Command::Handled(c, _, false) => Sent::Done(c),
            Command::Http(c, r) => Sent::Http(c, r),
            Command::Upgrade(c, u) => Sent::Upgrade(c, u),
            _ => Sent::Control,
        }
    }
}

/// A [`Remote`] whose commands wait in a channel instead of reaching an event loop.
pub struct DetachedRemote {
    remote: Remote,
    commands: Receiver<Command>,
    /// The waker's poller; nobody polls it, it only has to outlive the waker.
    _poll: mio::Poll,
}

impl DetachedRemote {
    /// A remote and its command channel. Nothing closes a connection behind it, so
    /// every connection takes frames ([`Remote::takes_frames`]).
    pub fn new() -> io::Result<DetachedRemote> {
        DetachedRemote::make(Remote::detached)
    }

    /// The remote of [`crate::internals::MemoryConn`], whose connection code reports
    /// which WebSockets take frames as the event loop's does.
    pub(crate) fn driven() -> io::Result<DetachedRemote> {
        DetachedRemote::make(Remote::new)
    }

    fn make(
        remote: fn(crossbeam_channel::Sender<Command>, mio::Waker) -> Remote,
    ) -> io::Result<DetachedRemote> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), mio::Token(0))?;
        let (tx, commands) = crossbeam_channel::unbounded();
        Ok(DetachedRemote { remote: remote(tx, waker), commands, _poll: poll })
    }

    /// The handle to give to handlers.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The next command sent, if there is one already.
    pub fn try_next(&self) -> Option<Sent> {
        self.commands.try_recv().ok().map(Sent::from)
    }

    /// The next command, waiting up to `timeout` for one (e.g. from another thread).
    pub fn next_within(&self, timeout: Duration) -> Option<Sent> {
        self.commands.recv_timeout(timeout).ok().map(Sent::from)
    }

    /// Every command sent so far.
    pub fn drain(&self) -> Vec<Sent> {
        std::iter::from_fn(|| self.try_next()).collect()
    }

    pub(crate) fn try_command(&self) -> Option<Command> {
        self.commands.try_recv().ok()
    }

    pub(crate) fn command(&self, cmd: Command) {
        self.remote.command(cmd);
    }
}
