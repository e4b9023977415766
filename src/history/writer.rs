//! The group commit of sends (docs/protocol.md §10.1). Workers hand each checked send to
//! one thread with its own connection; it takes what is queued (up to [`MAX_BATCH`]),
//! commits it in one transaction (one fsync with `synchronous = full`), and only then
//! acks each sender and pushes to each receiver. The sender's connection is deferred
//! until its ack is queued, so a session's replies keep the order of its frames.
//!
//! The thread's connection is its own and comes from [`crate::daemon::db::Db::with`], like a
//! worker's: on the `unix-excl` VFS, reopened after a failure the connection would
//! keep, and refused once the database file was found replaced (a commit into the old
//! file would be acknowledged and lost).

use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use proto::{Code, Reply};
use reactor::{ConnId, Remote};
use store::{Appended, NewHistoryMessage};

use crate::app::App;
use crate::cluster::{fanout, Place};

/// Most sends in one commit: a bound on how long the first of them waits.
pub const MAX_BATCH: usize = 256;

/// One checked send, waiting for its commit.
pub struct Job {
    /// The daemon (kept alive while a send is in flight).
    pub app: Arc<App>,
    /// The sender's connection, whose next frame waits for this job.
    pub conn: ConnId,
    /// The frame's `id`, for the reply.
    pub reply_id: Option<String>,
    /// What to store.
    pub message: NewHistoryMessage,
    /// Where to queue the replies; tells the reactor the job is done when dropped.
    pub done: Done,
}

/// Ends a deferred job of a connection when dropped, however the job ends.
pub struct Done {
    /// The reactor.
    pub remote: Remote,
    /// The deferred connection.
    pub conn: ConnId,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.remote.done(self.conn);
    }
}

/// The writer: a channel to its thread, which ends when this is dropped.
pub struct Writer {
    jobs: Sender<Job>,
}

impl Writer {
    /// Starts the writer's thread; it opens its connection at its first commit.
    pub fn start() -> Result<Writer, crate::Error> {
        let (jobs, rx) = crossbeam_channel::unbounded::<Job>();
        thread::Builder::new()
            .name("imd-history".into())
            .spawn(move || run(&rx))
            .map_err(|e| crate::Error::Config(format!("cannot start a thread: {e}")))?;
        Ok(Writer { jobs })
    }

    /// Queues `job` for the next commit. If the writer is gone the job is dropped and
    /// its connection released without a reply (the daemon is stopping).
    pub fn submit(&self, job: Job) {
        let _ = self.jobs.send(job);
    }
}

fn run(rx: &Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let remote = first.done.remote.clone();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // The batch's replies, pushes and releases reach the loop with one wake-up,
        // not one per send.
        remote.batch(|| commit(batch));
    }
}

fn commit(batch: Vec<Job>) {
    let Some(app) = batch.first().map(|j| j.app.clone()) else { return };
    app.metrics.history_batch.record(batch.len());
    // Under the delivery lock no session starts or is replaced, so the receivers found
    // live here are the ones pushed to after the commit; their 200 and delivered marks
    // go into the same commit as the messages.
    let _delivery = app.history.delivery();
    let targets: Vec<Vec<ConnId>> =
        batch.iter().map(|j| app.sessions.conns_of(&j.message.to_id)).collect();
    // The receiver's sessions on other nodes count as live too (docs/cluster.md).
    let elsewhere: Vec<Vec<Place>> =
        batch.iter().map(|j| fanout::sessions_elsewhere(&app, &j.message.to_id)).collect();
    let messages: Vec<NewHistoryMessage> = batch
        .iter()
        .zip(targets.iter().zip(&elsewhere))
        .map(|(j, (t, e))| NewHistoryMessage {
            live: !t.is_empty() || !e.is_empty(),
            ..j.message.clone()
        })
        .collect();
    let started = std::time::Instant::now();
    let results = app.db.with(|store| store.append_messages(&messages));
    app.metrics.store_latency.record(started.elapsed());
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            log::error!("store: history commit: {e}");
            for job in &batch {
                reply(&app, job, Code::InternalError, None, None);
            }
            return;
        }
    };
    for (((job, target), places), result) in batch.iter().zip(targets).zip(elsewhere).zip(results) {
        let m = &job.message;
        match result {
            Appended::New { seq } => deliver(&app, job, target, &places, seq),
            Appended::Existing(old) if old.to_id == m.to_id && old.payload == m.payload => {
                let code =
                    if old.code == 200 { Code::Success } else { Code::StoredForOfflineFriend };
                reply(&app, job, code, Some((old.seq, old.ts_ms)), m.cid.as_deref());
            }
            Appended::Existing(_) => reply(&app, job, Code::MessageIdReused, None, None),
            Appended::NotFriends => reply(&app, job, Code::NotRelationOfFriend, None, None),
        }
    }
}

/// After the commit: pushes the message to the receiver's live sessions `targets`
/// and copies it to the sender's other sessions (§11.1), and acks the sender: 200 when
/// it was queued on a session of the receiver (then 306), else 202.
fn deliver(app: &App, job: &Job, targets: Vec<ConnId>, places: &[Place], seq: i64) {
    let m = &job.message;
    let frame = proto::kept_receive_frame(
        &m.dialogue_id,
        &m.from_id,
        &m.payload,
        m.ts_ms,
        seq,
        m.cid.as_deref(),
    );
    let remote = &job.done.remote;
    crate::routes::tunnel::carbon_copies(app, remote, job.conn, &m.from_id, &m.to_id, &frame);
    let live = !targets.is_empty() || !places.is_empty();
    for friend in targets {
        remote.send_text(friend, frame.clone());
    }
    fanout::publish_to(app, places, &frame);
    let code = if live { Code::Success } else { Code::StoredForOfflineFriend };
    reply(app, job, code, Some((seq, m.ts_ms)), m.cid.as_deref());
    if live {
        let push = delivered_push(&m.to_id, seq);
        for me in app.sessions.conns_of(&m.from_id) {
            remote.send_text(me, push.clone());
            app.metrics.pushed(Code::MessageDelivered);
        }
        fanout::push_elsewhere(app, &m.from_id, &push);
    } else {
        app.metrics.offline_stored(1);
    }
}

/// Push 306: the delivered mark of `friend` in our conversation moved to `seq`.
pub fn delivered_push(friend: &str, seq: i64) -> String {
    Reply::new(Code::MessageDelivered).str("id", friend).int("seq", seq).finish()
}

/// Queues the reply to `job`'s frame: `id` when the frame had one, then `seq`, `ts`
/// and `cid` of an accepted message.
fn reply(app: &App, job: &Job, code: Code, kept: Option<(i64, i64)>, cid: Option<&str>) {
    let mut r = Reply::new(code);
    if let Some(id) = &job.reply_id {
        r = r.str("id", id);
    }
    if let Some((seq, ts)) = kept {
        r = r.int("seq", seq).int("ts", ts);
        if let Some(cid) = cid {
            r = r.str("cid", cid);
        }
    }
    app.metrics.ws_reply(code);
    job.done.remote.send_text(job.conn, r.finish());
}
