//! The fixed worker pool: threads that take jobs from one channel, run the handler and
//! report back through [`Remote`]. A panicking handler costs its request (500, or the
//! message), never the worker.
//!
//! Waking a sleeping thread costs a futex call and a context switch, which on a
//! two-core machine is most of a small job's price. So a worker never spins and never
//! blocks on the channel itself: it drains the channel, then sleeps on [`Idle`], and the
//! event loop wakes sleepers once per pass of its loop, after it has dispatched that
//! pass's jobs. Under load a worker finds the next job queued and is never woken at all.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::http::error_response;
use crate::remote::Command;
use crate::{CloseReason, ConnId, Error, Flow, Handler, Remote, Request, Upgrade, WsMessage};

/// Work for the handler; at most one per connection is queued or running at a time.
pub(crate) enum Job {
    Http(ConnId, Request),
    Upgrade(ConnId, Request),
    Opened(ConnId, Request),
    /// Messages of one connection, in the order they came.
    Messages(ConnId, Vec<WsMessage>),
    Closed(ConnId, CloseReason),
    /// Tagged frames reached their sockets, per connection; apart from other jobs.
    Written(Vec<(ConnId, Vec<u64>)>),
}

/// A worker hands its replies to the loop after at most this many jobs, so a long run
/// of jobs does not hold back the first replies (a job may carry a whole inbox).
const JOBS_PER_RELEASE: usize = 4;
/// A pass of the loop that queued this many jobs wakes one more sleeper per this many.
const JOBS_PER_WAKE: usize = 8;
/// The longest a worker sleeps without looking at the channel: a lost wake-up, were
/// there one, would cost this much latency and never a stall.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Where workers with nothing to do sleep until the event loop wakes them.
#[derive(Default)]
pub(crate) struct Idle {
    sleeping: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Idle {
    /// Called by the loop once per pass, after dispatching: wakes sleepers for the jobs
    /// waiting, unless the workers still awake will find them.
    pub(crate) fn wake_for(&self, jobs: &Sender<Job>) {
        // Pairs with the fence in `sleep`: either the sleeper sees our jobs, or we see
        // the sleeper.
        fence(Ordering::SeqCst);
        let sleeping = self.sleeping.load(Ordering::SeqCst);
        let queued = jobs.len();
        if sleeping == 0 || queued == 0 {
            return;
        }
        self.pass_the_lock();
        for _ in 0..sleeping.min(1 + queued / JOBS_PER_WAKE) {
            self.wake.notify_one();
        }
    }

    /// Wakes every sleeper (the job channel has closed).
    pub(crate) fn wake_all(&self) {
        self.pass_the_lock();
        self.wake.notify_all();
    }

    /// Takes and drops the lock before a notify: a sleeper that counted itself before
    /// our look holds it until it waits, so it is waiting by the time we notify. Not
    /// held across the notify: the woken thread would find it taken and sleep again
    /// on it (two more futex calls and a context switch per wake-up).
    fn pass_the_lock(&self) {
        drop(self.lock.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Sleeps until woken, unless a job arrived meanwhile.
    fn sleep(&self, jobs: &Receiver<Job>) {
        let held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.sleeping.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if jobs.is_empty() {
            let _ = self.wake.wait_timeout(held, MAX_SLEEP);
        }
        self.sleeping.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) fn spawn(
    count: usize,
    jobs: &Receiver<Job>,
    idle: &Arc<Idle>,
    handler: &Arc<dyn Handler>,
    remote: &Remote,
) -> Result<Vec<JoinHandle<()>>, Error> {
    (0..count.max(1))
        .map(|i| {
            let (jobs, idle) = (jobs.clone(), idle.clone());
            let (handler, remote) = (handler.clone(), remote.clone());
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || run(&jobs, &idle, handler.as_ref(), &remote))
                .map_err(Error::Spawn)
        })
        .collect()
}

fn run(jobs: &Receiver<Job>, idle: &Idle, handler: &dyn Handler, remote: &Remote) {
    remote.hold();
    let mut unreleased = 0;
    loop {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Empty) => {
                remote.release();
                unreleased = 0;
                idle.sleep(jobs);
                continue;
            }
            Err(TryRecvError::Disconnected) => return remote.release(),
        };
        unreleased += 1;
        if unreleased == JOBS_PER_RELEASE {
            remote.release();
            unreleased = 0;
        }
        remote.shared.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
        let reply = match job {
            Job::Http(conn, req) => {
                match catch_unwind(AssertUnwindSafe(|| handler.request_on(conn, req, remote))) {
                    Ok(Some(resp)) => Command::Http(conn, resp),
                    // The handler answers through `Remote::respond` when it is done.
                    Ok(None) => continue,
                    Err(_) => Command::Http(conn, panicked(500)),
                }
            }
            Job::Upgrade(conn, req) => {
                let up = catch_unwind(AssertUnwindSafe(|| handler.upgrade(&req, conn, remote)))
                    .unwrap_or_else(|_| Upgrade::Reject(panicked(500)));
                Command::Upgrade(conn, up)
            }
            Job::Opened(conn, req) => {
                let flow = catch_unwind(AssertUnwindSafe(|| handler.opened(conn, req, remote)))
                    .unwrap_or_else(|_| {
                        log::error!("handler panicked in opened");
                        Flow::Done
                    });
                Command::Handled(conn, Vec::new(), flow == Flow::Deferred)
            }
            Job::Messages(conn, msgs) => deliver(conn, msgs, |msg| {
                catch_unwind(AssertUnwindSafe(|| handler.message(conn, msg, remote)))
                    .unwrap_or_else(|_| {
                        log::error!("handler panicked in message");
                        Flow::Done
                    })
            }),
            Job::Closed(conn, reason) => {
                let _ = catch_unwind(AssertUnwindSafe(|| handler.closed(conn, reason, remote)))
                    .map_err(|_| log::error!("handler panicked in closed"));
                continue;
            }
            Job::Written(reports) => {
                let _ = catch_unwind(AssertUnwindSafe(|| handler.written(reports, remote)))
                    .map_err(|_| log::error!("handler panicked in written"));
                continue;
            }
        };
        remote.command(reply);
    }
}

/// Hands a connection's messages to `handle` in order, up to one it defers; the report
/// for the loop carries the messages after that one, which wait for the deferred work.
pub(crate) fn deliver(
    conn: ConnId,
    msgs: Vec<WsMessage>,
    mut handle: impl FnMut(WsMessage) -> Flow,
) -> Command {
    let mut msgs = msgs.into_iter();
    for msg in msgs.by_ref() {
        if handle(msg) == Flow::Deferred {
            return Command::Handled(conn, msgs.collect(), true);
        }
    }
    Command::Handled(conn, Vec::new(), false)
}

fn panicked(status: u16) -> crate::Response {
    log::error!("handler panicked; answering {status}");
    error_response(status)
}
