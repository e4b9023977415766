//! The pacer's clock: a thread that wakes the loop when a send may be due.
//!
//! The loop sleeps in `epoll_wait`, whose timeout is whole milliseconds: left to that,
//! a message due 50 µs after the loop fell asleep went out up to a millisecond and a
//! half late, and the lateness counted against the server (at 1,000 msgs/s to the echo
//! server the generator's own send lateness was 2 ms at p99). The thread wakes the loop
//! every `PERIOD` while it sleeps. A busy loop looks at what is due often by itself:
//! after finding it busy the thread looks again only after `BUSY_PERIOD` (the poll's
//! own timeout), which keeps the thread under 1 % of a core at the highest rates
//! instead of 5 %.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use mio::Waker;

/// Sends go out at most about this late (plus the kernel's timer slack, 50 µs).
const PERIOD: Duration = Duration::from_micros(150);

/// The next look after finding the loop busy.
const BUSY_PERIOD: Duration = Duration::from_millis(1);

pub struct Ticker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    waker: Waker,
    asleep: AtomicBool,
    stop: AtomicBool,
}

impl Ticker {
    pub fn start(waker: Waker) -> std::io::Result<Ticker> {
        let shared = Arc::new(Shared {
            waker,
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&shared);
        let thread = thread::Builder::new().name("tick".into()).spawn(move || {
            let mut period = PERIOD;
            while !theirs.stop.load(Ordering::Relaxed) {
                thread::sleep(period);
                period = if theirs.asleep.load(Ordering::Relaxed) {
                    let _ = theirs.waker.wake();
                    PERIOD
                } else {
                    BUSY_PERIOD
                };
            }
        })?;
        Ok(Ticker { shared, thread: Some(thread) })
    }

    /// Marks the loop as about to sleep (`true`) or awake again (`false`).
    pub fn asleep(&self, asleep: bool) {
        self.shared.asleep.store(asleep, Ordering::Relaxed);
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ticker;
    use mio::{Events, Poll, Token, Waker};
    use std::time::Duration;

    #[test]
    fn wakes_a_sleeping_loop_and_leaves_a_busy_one_alone() {
        let mut poll = Poll::new().expect("poll");
        let ticker =
            Ticker::start(Waker::new(poll.registry(), Token(7)).expect("waker")).expect("ticker");
        let mut events = Events::with_capacity(4);
        // Not marked asleep: a loop that is busy needs no tick, and gets none.
        poll.poll(&mut events, Some(Duration::from_millis(30))).expect("poll");
        assert!(events.is_empty());
        ticker.asleep(true);
        poll.poll(&mut events, Some(Duration::from_secs(30))).expect("poll");
        assert!(events.iter().any(|e| e.token() == Token(7)));
        drop(ticker);
    }
}
