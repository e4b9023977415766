//! The fixed worker pool: threads that take jobs from one channel, run the handler and
//! report back through [`Remote`]. A panicking handler costs its request (500, or the
//! message), never the worker.
//!
//! Waking a sleeping thread costs a futex call and a context switch, which on a
//! two-core machine is most of a small job's price. So a worker never spins and never
//! blocks on the channel itself: it drains the channel, then sleeps on [`Idle`], and the
//! event loop wakes sleepers once per pass of its loop, after it has dispatched that
//! pass's jobs. Under load a worker finds the next job queued and is never woken at all.
//!
//! At a low rate every job would pay that wake-up, and the loop's own sleep and wake-up
//! besides, to spend a few microseconds on the handler. So when every worker sleeps and
//! only a few jobs wait, the loop takes them off the same channel itself ([`stand_in`])
//! and offers them to the handler's `*_now` methods, which run what they can without
//! waiting for anything and give back the rest for a worker.

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
/// The most jobs the loop runs itself in one pass; more waiting are a burst, which the
/// workers share (and the loop goes back to its sockets).
const STAND_IN_JOBS: usize = 4;

/// Where workers with nothing to do sleep until the event loop wakes them.
pub(crate) struct Idle {
    /// The pool's size.
    workers: usize,
    sleeping: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Idle {
    pub(crate) fn new(workers: usize) -> Idle {
        Idle {
            workers: workers.max(1),
            sleeping: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// Every worker is asleep (or just waking from a timeout: it then only finds fewer
    /// jobs).
    fn all_asleep(&self) -> bool {
        fence(Ordering::SeqCst);
        self.sleeping.load(Ordering::SeqCst) >= self.workers
    }

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
    jobs: &Receiver<Job>,
    idle: &Arc<Idle>,
    handler: &Arc<dyn Handler>,
    remote: &Remote,
) -> Result<Vec<JoinHandle<()>>, Error> {
    (0..idle.workers)
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
        if let Some(reply) = run_job(job, handler, remote) {
            remote.command(reply);
        }
    }
}

/// Runs a job on this worker; what the loop must be told of it when the job ends here.
fn run_job(job: Job, handler: &dyn Handler, remote: &Remote) -> Option<Command> {
    let reply = match job {
        Job::Http(conn, req) => {
            match catch_unwind(AssertUnwindSafe(|| handler.request_on(conn, req, remote))) {
                Ok(Some(resp)) => Command::Http(conn, resp),
                // The handler answers through `Remote::respond` when it is done.
                Ok(None) => return None,
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
            catch_unwind(AssertUnwindSafe(|| handler.message(conn, msg, remote))).unwrap_or_else(
                |_| {
                    log::error!("handler panicked in message");
                    Flow::Done
                },
            )
        }),
        Job::Closed(conn, reason) => {
            let _ = catch_unwind(AssertUnwindSafe(|| handler.closed(conn, reason, remote)))
                .map_err(|_| log::error!("handler panicked in closed"));
            return None;
        }
        Job::Written(reports) => {
            let _ = catch_unwind(AssertUnwindSafe(|| handler.written(reports, remote)))
                .map_err(|_| log::error!("handler panicked in written"));
            return None;
        }
    };
    Some(reply)
}

/// The loop standing in for a pool that sleeps: when every worker sleeps and at most
/// [`STAND_IN_JOBS`] jobs wait, takes them and offers each, in order, to the handler's
/// `*_now` methods. At the first one given back, that job and those after it go back on
/// the channel in their order (only the loop queues jobs, so nothing overtakes them)
/// for the workers [`Idle::wake_for`] wakes next. True when a job ran here; its
/// commands are queued like a worker's, for the loop to serve.
pub(crate) fn stand_in(
    jobs: &Receiver<Job>,
    queue: &Sender<Job>,
    idle: &Idle,
    handler: &dyn Handler,
    remote: &Remote,
) -> bool {
    if jobs.is_empty() || jobs.len() > STAND_IN_JOBS || !idle.all_asleep() {
        return false;
    }
    let taken: Vec<Job> = jobs.try_iter().take(STAND_IN_JOBS).collect();
    let mut taken = taken.into_iter();
    let mut ran = false;
    while let Some(job) = taken.next() {
        match run_now(job, handler, remote, &mut ran) {
            Ok(reply) => {
                remote.shared.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                if let Some(reply) = reply {
                    remote.command(reply);
                }
            }
            Err(back) => {
                for job in std::iter::once(back).chain(taken) {
                    let _ = queue.send(job);
                }
                break;
            }
        }
    }
    ran
}

/// A job run on the loop's thread, or given back (with what of it is left to do);
/// `ran` is set once the handler did anything. (A job is moved by value on every hop
/// anyway, through the channel included.)
#[allow(clippy::result_large_err)]
fn run_now(
    job: Job,
    handler: &dyn Handler,
    remote: &Remote,
    ran: &mut bool,
) -> Result<Option<Command>, Job> {
    match job {
        Job::Messages(conn, msgs) => {
            let mut msgs = msgs.into_iter();
            while let Some(msg) = msgs.next() {
                let flow =
                    match catch_unwind(AssertUnwindSafe(|| handler.message_now(conn, msg, remote)))
                    {
                        Ok(Ok(flow)) => {
                            *ran = true;
                            remote.shared.stats.ws_messages_on_loop.fetch_add(1, Ordering::Relaxed);
                            flow
                        }
                        Ok(Err(msg)) => {
                            return Err(Job::Messages(
                                conn,
                                std::iter::once(msg).chain(msgs).collect(),
                            ))
                        }
                        Err(_) => {
                            *ran = true;
                            log::error!("handler panicked in message_now");
                            Flow::Done
                        }
                    };
                if flow == Flow::Deferred {
                    return Ok(Some(Command::Handled(conn, msgs.collect(), true)));
                }
            }
            Ok(Some(Command::Handled(conn, Vec::new(), false)))
        }
        Job::Written(reports) => {
            let outcome = catch_unwind(AssertUnwindSafe(|| handler.written_now(reports, remote)));
            if let Ok(Err(reports)) = outcome {
                return Err(Job::Written(reports));
            }
            *ran = true;
            if outcome.is_err() {
                log::error!("handler panicked in written_now");
            }
            Ok(None)
        }
        job => Err(job),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internals::{DetachedRemote, Sent};
    use crate::Response;

    /// Runs "now:" messages here, defers "defer:", panics at "panic", gives back the
    /// rest; takes written reports here.
    struct Picky;

    impl Handler for Picky {
        fn request(&self, _: Request, _: &Remote) -> Response {
            Response::new(200, "text/plain", "")
        }
        fn message(&self, _: ConnId, _: WsMessage, _: &Remote) -> Flow {
            unreachable!("only the *_now methods run in these tests")
        }
        fn message_now(
            &self,
            conn: ConnId,
            msg: WsMessage,
            remote: &Remote,
        ) -> Result<Flow, WsMessage> {
            let WsMessage::Text(t) = &msg else { return Err(msg) };
            if t == "panic" {
                panic!("a handler bug");
            }
            if let Some(rest) = t.strip_prefix("now:") {
                remote.send_text(conn, rest.to_string());
                return Ok(Flow::Done);
            }
            if t.starts_with("defer:") {
                return Ok(Flow::Deferred);
            }
            Err(msg)
        }
        fn written_now(
            &self,
            reports: Vec<(ConnId, Vec<u64>)>,
            remote: &Remote,
        ) -> Result<(), Vec<(ConnId, Vec<u64>)>> {
            for (conn, tags) in reports {
                remote.send_text(conn, format!("written {tags:?}"));
            }
            Ok(())
        }
    }

    struct Pool {
        tx: Sender<Job>,
        rx: Receiver<Job>,
        idle: Idle,
        out: DetachedRemote,
    }

    /// A pool of one worker, asleep unless `awake`.
    fn pool(awake: bool) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded();
        let idle = Idle::new(1);
        if !awake {
            idle.sleeping.store(1, Ordering::SeqCst);
        }
        Pool { tx, rx, idle, out: DetachedRemote::new().expect("remote") }
    }

    impl Pool {
        fn stand_in(&self) -> bool {
            stand_in(&self.rx, &self.tx, &self.idle, &Picky, self.out.remote())
        }
        fn queue(&self, jobs: Vec<Job>) {
            for job in jobs {
                self.tx.send(job).expect("queue");
            }
        }
        /// What is left on the channel, as (connection, messages) or "written".
        fn left(&self) -> Vec<String> {
            self.rx
                .try_iter()
                .map(|job| match job {
                    Job::Messages(c, m) => format!("{}:{m:?}", c.0),
                    Job::Written(_) => "written".into(),
                    Job::Closed(c, _) => format!("{}:closed", c.0),
                    _ => "other".into(),
                })
                .collect()
        }
        fn sent(&self) -> Vec<String> {
            self.out
                .drain()
                .into_iter()
                .map(|s| match s {
                    Sent::Text(c, t) => format!("{}:{t}", c.0),
                    Sent::Done(c) => format!("{}:done", c.0),
                    _ => "other".into(),
                })
                .collect()
        }
    }

    fn text(t: &str) -> WsMessage {
        WsMessage::Text(t.into())
    }

    #[test]
    fn a_sleeping_pool_lets_the_loop_run_what_the_handler_takes_now() {
        let p = pool(false);
        p.queue(vec![
            Job::Messages(ConnId(1), vec![text("now:a"), text("now:b")]),
            Job::Written(vec![(ConnId(2), vec![7, 8])]),
        ]);
        assert!(p.stand_in());
        assert_eq!(p.sent(), ["1:a", "1:b", "1:done", "2:written [7, 8]"]);
        assert!(p.left().is_empty());
        assert_eq!(p.out.remote().stats().ws_messages_on_loop.load(Ordering::Relaxed), 2);
    }

    /// What the handler gives back, and every job queued after it, go back on the
    /// channel in their order; a connection's messages after it stay with it.
    #[test]
    fn the_first_job_given_back_and_those_after_it_are_left_in_order() {
        let p = pool(false);
        p.queue(vec![
            Job::Messages(ConnId(1), vec![text("now:a"), text("worker"), text("now:c")]),
            Job::Messages(ConnId(2), vec![text("now:x")]),
            Job::Closed(ConnId(3), CloseReason::Normal),
        ]);
        assert!(p.stand_in(), "the first message ran here");
        assert_eq!(p.sent(), ["1:a"], "no Done: a worker finishes connection 1's job");
        assert_eq!(
            p.left(),
            [r#"1:[Text("worker"), Text("now:c")]"#, r#"2:[Text("now:x")]"#, "3:closed"]
        );
        // A job the loop never takes (a close) leaves the whole queue to the workers.
        p.queue(vec![
            Job::Closed(ConnId(3), CloseReason::Normal),
            Job::Messages(ConnId(2), vec![text("now:x")]),
        ]);
        assert!(!p.stand_in());
        assert_eq!(p.left(), ["3:closed", r#"2:[Text("now:x")]"#]);
    }

    #[test]
    fn a_deferred_message_keeps_the_rest_for_when_it_is_done() {
        let p = pool(false);
        p.queue(vec![Job::Messages(ConnId(1), vec![text("defer:a"), text("now:b")])]);
        assert!(p.stand_in());
        match p.out.try_command() {
            Some(Command::Handled(ConnId(1), rest, true)) => assert_eq!(rest, [text("now:b")]),
            _ => panic!("expected the deferred job's report"),
        }
    }

    #[test]
    fn a_panic_costs_the_message_and_not_the_loop() {
        let p = pool(false);
        p.queue(vec![Job::Messages(ConnId(1), vec![text("panic"), text("now:b")])]);
        assert!(p.stand_in());
        assert_eq!(p.sent(), ["1:b", "1:done"]);
    }

    /// A worker awake will find the jobs; a burst is the workers' to share.
    #[test]
    fn an_awake_worker_or_a_burst_is_left_to_the_pool() {
        let p = pool(true);
        p.queue(vec![Job::Messages(ConnId(1), vec![text("now:a")])]);
        assert!(!p.stand_in());
        assert_eq!(p.left().len(), 1);
        let p = pool(false);
        p.queue(
            (0..=STAND_IN_JOBS as u64)
                .map(|c| Job::Messages(ConnId(c), vec![text("now:a")]))
                .collect(),
        );
        assert!(!p.stand_in());
        assert_eq!(p.left().len(), STAND_IN_JOBS + 1);
        assert!(p.sent().is_empty());
    }
}
