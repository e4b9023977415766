//! A small pool of threads for password checks: logins, erase and password changes.
//! A check costs tens of milliseconds of argon2id by design; on the reactor's workers it
//! would stall every chat routed behind it, so checks wait here instead and the workers
//! keep routing.
//!
//! The queue is bounded: past `queue` waiting jobs a new one is refused and its caller
//! answers 524, so a flood of checks from many addresses costs a bounded wait, not an
//! ever longer one for the legitimate logins behind it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::Sender;
use reactor::{ConnId, Remote, Response};

type Job = Box<dyn FnOnce() + Send>;

/// The pool; its threads end when it is dropped.
pub struct Hasher {
    jobs: Sender<Job>,
    /// Jobs queued and not yet started.
    waiting: Arc<AtomicUsize>,
    queue: usize,
}

impl Hasher {
    /// Starts `threads` threads that take at most `queue` jobs waiting at once.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Hasher> {
        let (jobs, rx) = crossbeam_channel::unbounded::<Job>();
        let waiting = Arc::new(AtomicUsize::new(0));
        for i in 0..threads.max(1) {
            let (rx, waiting) = (rx.clone(), waiting.clone());
            thread::Builder::new().name(format!("imd-hasher-{i}")).spawn(move || {
                for job in rx.iter() {
                    waiting.fetch_sub(1, Ordering::AcqRel);
                    if catch_unwind(AssertUnwindSafe(job)).is_err() {
                        log::error!("a password job panicked");
                    }
                }
            })?;
        }
        Ok(Hasher { jobs, waiting, queue: queue.max(1) })
    }

    /// Queues `job`; false (and `job` dropped unrun) when the queue is full.
    fn submit(&self, job: Job) -> bool {
        let queued = self.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.queue).then_some(n + 1)
        });
        if queued.is_err() {
            return false;
        }
        if self.jobs.send(job).is_err() {
            // The pool is gone; the job was dropped with the message.
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        true
    }

    /// Runs `job` on the pool for the WebSocket `conn`, whose next message waits until
    /// it is done (even if the job panics or never runs). False when the queue is full:
    /// then nothing was deferred and the caller answers at once.
    pub fn run_for(
        &self,
        conn: ConnId,
        remote: &Remote,
        job: impl FnOnce() + Send + 'static,
    ) -> bool {
        // The guard is made inside the job, so a refused job never reports done.
        let remote = remote.clone();
        self.submit(Box::new(move || {
            let _guard = DoneGuard { remote, conn };
            job();
        }))
    }

    /// Runs `job` on the pool for the HTTP request of `conn`, whose response it makes;
    /// the connection reads no further request until then (a 500 if the job panics).
    /// False when the queue is full.
    pub fn answer_for(
        &self,
        conn: ConnId,
        remote: &Remote,
        job: impl FnOnce(&Remote) -> Response + Send + 'static,
    ) -> bool {
        let remote = remote.clone();
        self.submit(Box::new(move || {
            let mut guard = AnswerGuard { remote, conn, answered: false };
            let resp = job(&guard.remote);
            guard.answered = true;
            guard.remote.respond(conn, resp);
        }))
    }
}

/// Tells the reactor the deferred job of `conn` is finished, however it ends.
struct DoneGuard {
    remote: Remote,
    conn: ConnId,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.remote.done(self.conn);
    }
}

/// Answers 500 for an HTTP job that panicked, so its connection is not left waiting.
struct AnswerGuard {
    remote: Remote,
    conn: ConnId,
    answered: bool,
}

impl Drop for AnswerGuard {
    fn drop(&mut self) {
        if !self.answered {
            let body = proto::status(proto::Code::InternalError);
            self.remote.respond(self.conn, crate::app::api_response(body));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_queue_refuses_jobs_unrun() {
        let h = Hasher::new(1, 2).unwrap();
        let (release, blocked) = crossbeam_channel::bounded::<()>(0);
        let (ran, runs) = crossbeam_channel::unbounded::<usize>();
        let (started_tx, started) = crossbeam_channel::bounded::<()>(1);
        // The first job holds the only thread until released.
        assert!(h.submit(Box::new(move || {
            let _ = started_tx.send(());
            let _ = blocked.recv();
        })));
        started.recv_timeout(Duration::from_secs(5)).unwrap();
        let mut accepted = Vec::new();
        for i in 0..5 {
            let ran = ran.clone();
            accepted.push(h.submit(Box::new(move || {
                let _ = ran.send(i);
            })));
        }
        assert_eq!(accepted, [true, true, false, false, false]);
        release.send(()).unwrap();
        let mut done: Vec<usize> =
            (0..2).map(|_| runs.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
        done.sort_unstable();
        assert_eq!(done, [0, 1]);
        assert!(runs.recv_timeout(Duration::from_millis(200)).is_err(), "refused jobs never run");
        // Room again once the queue drained.
        assert!(h.submit(Box::new(|| ())));
    }
}
