//! The fixed worker pool: threads that take jobs from one channel, run the handler and
//! report back through [`Remote`]. A panicking handler costs its request (500, or the
//! message), never the worker.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

use crate::http::error_response;
use crate::remote::Command;
use crate::{CloseReason, ConnId, Error, Flow, Handler, Remote, Request, Upgrade, WsMessage};

/// Work for the handler; at most one per connection is queued or running at a time.
pub(crate) enum Job {
    Http(ConnId, Request),
    Upgrade(ConnId, Request),
    Opened(ConnId, Request),
    Message(ConnId, WsMessage),
    Closed(ConnId, CloseReason),
}

pub(crate) fn spawn(
    count: usize,
    jobs: &Receiver<Job>,
    handler: &Arc<dyn Handler>,
    remote: &Remote,
) -> Result<Vec<JoinHandle<()>>, Error> {
    (0..count.max(1))
        .map(|i| {
            let (jobs, handler, remote) = (jobs.clone(), handler.clone(), remote.clone());
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || run(&jobs, handler.as_ref(), &remote))
                .map_err(Error::Spawn)
        })
        .collect()
}

fn run(jobs: &Receiver<Job>, handler: &dyn Handler, remote: &Remote) {
    for job in jobs.iter() {
        remote.shared.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
        let reply = match job {
            Job::Http(conn, req) => {
                let resp = catch_unwind(AssertUnwindSafe(|| handler.request(req, remote)))
                    .unwrap_or_else(|_| panicked(500));
                Command::Http(conn, resp)
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
                match flow {
                    Flow::Done => Command::Done(conn),
                    Flow::Deferred => continue,
                }
            }
            Job::Message(conn, msg) => {
                let flow = catch_unwind(AssertUnwindSafe(|| handler.message(conn, msg, remote)))
                    .unwrap_or_else(|_| {
                        log::error!("handler panicked in message");
                        Flow::Done
                    });
                match flow {
                    Flow::Done => Command::Done(conn),
                    Flow::Deferred => continue,
                }
            }
            Job::Closed(conn, reason) => {
                let _ = catch_unwind(AssertUnwindSafe(|| handler.closed(conn, reason, remote)))
                    .map_err(|_| log::error!("handler panicked in closed"));
                continue;
            }
        };
        remote.command(reply);
    }
}

fn panicked(status: u16) -> crate::Response {
    log::error!("handler panicked; answering {status}");
    error_response(status)
}
