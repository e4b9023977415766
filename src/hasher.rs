//! A small pool of threads for password checks at login. A login costs tens of
//! milliseconds of argon2id by design; on the reactor's workers it would stall every
//! chat routed behind it, so logins wait here instead and the workers keep routing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;

use crossbeam_channel::Sender;
use reactor::{ConnId, Remote};

type Job = Box<dyn FnOnce() + Send>;

/// The pool; its threads end when it is dropped.
pub struct Hasher {
    jobs: Sender<Job>,
}

impl Hasher {
    /// Starts `threads` threads.
    pub fn new(threads: usize) -> std::io::Result<Hasher> {
        let (jobs, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            thread::Builder::new().name(format!("imd-hasher-{i}")).spawn(move || {
                for job in rx.iter() {
                    if catch_unwind(AssertUnwindSafe(job)).is_err() {
                        log::error!("a login job panicked");
                    }
                }
            })?;
        }
        Ok(Hasher { jobs })
    }

    /// Runs `job` on the pool for `conn`, whose next message waits until it is done
    /// (even if the job panics or never runs).
    pub fn run_for(&self, conn: ConnId, remote: &Remote, job: impl FnOnce() + Send + 'static) {
        let guard = DoneGuard { remote: remote.clone(), conn };
        let job: Job = Box::new(move || {
            let _guard = guard;
            job();
        });
        // If the pool is gone the job is dropped here, and with it the guard.
        let _ = self.jobs.send(job);
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
