//! Write receipts: what an application that must know its frames reached the peer's
//! socket (not only a queue) is told, and which WebSockets still take frames.
//!
//! A frame queued with [`Remote::send_text_tracked`](crate::Remote::send_text_tracked)
//! carries a tag; once all of its bytes have left the connection's output for the
//! socket (with TLS: out of rustls too), the tag is reported through
//! [`Handler::written`](crate::Handler::written), the tags of one write together. A
//! connection that closes first never reports them. Untagged frames cost a branch: a
//! connection with nothing tracked holds no [`Receipts`].

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use crate::ConnId;

/// The tagged frames of one connection whose bytes have not all left yet.
#[derive(Debug, Default)]
pub(crate) struct Receipts {
    /// Bytes that left the output buffer since these receipts began.
    taken: u64,
    /// Of those, the bytes known to be in the socket: with TLS, rustls may still hold
    /// the records of what it took, and only an empty rustls says they are out.
    sent: u64,
    /// Where each tagged frame ends in the output stream, in output order.
    waiting: VecDeque<(u64, u64)>,
    /// Tags whose frames are out, to report.
    written: Vec<u64>,
}

impl Receipts {
    /// A frame with `tag` was just queued: it ends `pending` bytes (the output buffer's
    /// length) past what has left so far.
    pub fn track(&mut self, pending: usize, tag: u64) {
        self.waiting.push_back((self.taken + pending as u64, tag));
    }

    /// `n` more bytes left the output buffer; `drained`: nothing is held between it
    /// and the socket any more.
    pub fn took(&mut self, n: usize, drained: bool) {
        self.taken += n as u64;
        if drained {
            self.sent = self.taken;
        }
        while let Some(&(end, tag)) = self.waiting.front() {
            if end > self.sent {
                break;
            }
            self.waiting.pop_front();
            self.written.push(tag);
        }
    }

    /// The output was thrown away: what waits will never be written.
    pub fn discard(&mut self) {
        self.waiting.clear();
    }

    /// The tags written since the last call.
    pub fn take_written(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.written)
    }

    /// Nothing waits and nothing is left to report.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.written.is_empty()
    }
}

/// The WebSockets that take frames: upgraded, and no close begun on either side.
#[derive(Debug, Default)]
pub(crate) struct OpenSockets(Mutex<HashSet<ConnId>>);

impl OpenSockets {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<ConnId>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn insert(&self, conn: ConnId) {
        self.set().insert(conn);
    }

    pub fn remove(&self, conn: ConnId) {
        self.set().remove(&conn);
    }

    pub fn contains(&self, conn: ConnId) -> bool {
        self.set().contains(&conn)
    }
}

#[cfg(test)]
mod tests {
    use super::Receipts;

    #[test]
    fn a_tag_is_written_once_every_byte_up_to_its_frame_end_left() {
        let mut r = Receipts::default();
        r.track(10, 1);
        r.track(25, 2);
        r.took(9, true);
        assert!(r.take_written().is_empty());
        r.took(1, true);
        assert_eq!(r.take_written(), vec![1]);
        r.took(15, false);
        assert!(r.take_written().is_empty(), "held above the socket (TLS) is not written");
        r.took(0, true);
        assert_eq!(r.take_written(), vec![2]);
        assert!(r.is_idle());
        r.track(0, 3);
        r.took(0, true);
        assert_eq!(r.take_written(), vec![3], "a frame already out is reported at once");
    }
}
