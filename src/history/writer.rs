//! The history thread (docs/protocol.md §10.1, §10.3): the group commit of sends, and
//! every delivery of a kept message.
//!
//! Workers hand each checked send to one thread with its own connection; it takes what
//! is queued (up to [`MAX_BATCH`]), commits it in one transaction (one fsync with
//! `synchronous = full`), and only then acks each sender and pushes to each receiver.
//! The sender's connection is deferred until its ack is queued, so a session's replies
//! keep the order of its frames.
//!
//! A push carries a tag ([`reactor::Remote::send_text_tracked`]); the receiver's
//! delivered mark moves, and the sender hears 306, only when the reactor reports the
//! frame in the socket. Those marks go into the next commit with the next sends. A
//! frame its connection dropped unwritten (a close, a cut) moves nothing, and comes
//! again at the next login. A new session's backlog is fed by this thread too, a slice
//! at a time ([`super::backlog`]); while it is, messages to that session are stored
//! for the feed, which sends them after the older ones, and answered 200.
//!
//! The thread's connection is its own and comes from [`crate::daemon::db::Db::with`], like a
//! worker's: on the `unix-excl` VFS, reopened after a failure the connection would
//! keep, and refused once the database file was found replaced (a commit into the old
//! file would be acknowledged and lost).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use proto::{Code, Reply};
use reactor::{ConnId, Remote};
use store::{Appended, Delivered, NewHistoryMessage};

use super::backlog::{Feed, Following};
use super::order::{Order, Verdict};
use crate::app::App;
use crate::cluster::{fanout, KeptFrame, Place};

/// Most pieces of work in one commit: a bound on how long the first of them waits.
pub const MAX_BATCH: usize = 256;
/// How long the tags of a closed connection are kept: its last report of frames
/// written may still be on its way (reports and closes run on different workers).
const LATE_REPORTS: Duration = Duration::from_secs(10);
/// Close code for a session whose backlog could not be read.
const CLOSE_INTERNAL: u16 = 1011;

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

/// What the history thread is handed.
pub enum Work {
    /// A send to commit.
    Send(Job),
    /// Tagged frames reached their sockets, per connection.
    Written { app: Arc<App>, remote: Remote, reports: Vec<(ConnId, Vec<u64>)> },
    /// A session of `user` started on `conn`: feed it its backlog. `known`: per
    /// conversation, the `last_seq` its login reply gave.
    Backlog { app: Arc<App>, remote: Remote, conn: ConnId, user: String, known: Vec<(String, i64)> },
    /// `conn` closed.
    Closed(ConnId),
    /// The conversation of these two users ended (a friendship removed).
    ConversationEnded(String, String),
    /// A kept message's frame another node committed, for a session of this node
    /// (docs/cluster.md).
    Arrived { app: Arc<App>, remote: Remote, kept: KeptFrame },
}

/// The writer: a channel to its thread, which ends when this is dropped.
pub struct Writer {
    work: Sender<Work>,
}

impl Writer {
    /// Starts the writer's thread; it opens its connection at its first commit.
    pub fn start() -> Result<Writer, crate::Error> {
        let (work, rx) = crossbeam_channel::unbounded::<Work>();
        thread::Builder::new()
            .name("imd-history".into())
            .spawn(move || run(&rx))
            .map_err(|e| crate::Error::Config(format!("cannot start a thread: {e}")))?;
        Ok(Writer { work })
    }

    /// Queues `work` for the next batch. If the writer is gone a send is dropped and its
    /// connection released without a reply (the daemon is stopping).
    pub fn submit(&self, work: Work) {
        let _ = self.work.send(work);
    }
}

fn run(rx: &Receiver<Work>) {
    let mut deliveries = Deliveries::default();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(work) => batch.push(work),
                Err(_) => break,
            }
        }
        // The batch's replies, pushes and releases reach the loop with one wake-up,
        // not one per send.
        match batch.iter().find_map(Work::remote) {
            Some(remote) => remote.batch(|| deliveries.batch(batch)),
            None => deliveries.batch(batch),
        }
        deliveries.publish();
    }
}

impl Work {
    fn remote(&self) -> Option<Remote> {
        match self {
            Work::Send(job) => Some(job.done.remote.clone()),
            Work::Written { remote, .. }
            | Work::Backlog { remote, .. }
            | Work::Arrived { remote, .. } => Some(remote.clone()),
            Work::Closed(_) | Work::ConversationEnded(..) => None,
        }
    }
}

/// Where a send goes after its commit: each session of the receiver that takes frames
/// (§11.1). None: stored for the next login (202); any: 200.
#[derive(Clone, Copy)]
enum Target {
    /// Pushed to this session now.
    Push(ConnId),
    /// This session is being fed its backlog; the message follows it.
    Backlog(ConnId),
}

/// The delivered marks a tagged frame moves once written.
#[derive(Debug)]
pub(super) struct Marks {
    /// The receiver.
    pub(super) user: String,
    /// Sender and `seq` of the newest message of each conversation in the frame(s).
    pub(super) seqs: Vec<(String, i64)>,
}

/// The history thread's own state: nothing else touches it.
#[derive(Default)]
struct Deliveries {
    next_tag: u64,
    /// Tagged frames not yet reported written, per connection.
    tracked: HashMap<ConnId, HashMap<u64, Marks>>,
    /// Sessions being fed their backlog.
    feeds: HashMap<ConnId, Feed>,
    /// Closed connections, oldest first, whose tags go after [`LATE_REPORTS`].
    closed: VecDeque<(Instant, ConnId)>,
    /// Each session's place in its conversations (on a node of several).
    order: Order,
    /// Marks of frames written whose commit failed: they go with the next one.
    unsaved: Vec<Delivered>,
    /// Frames for sessions on other nodes, published once the batch's own frames are
    /// with the loop: an answer from there (a 306) must not overtake the sender's 200.
    outbox: Vec<(Arc<App>, Vec<Place>, KeptFrame)>,
}

impl Deliveries {
    fn batch(&mut self, batch: Vec<Work>) {
        let mut context = None;
        let mut sends = Vec::new();
        let mut written = Vec::new();
        let mut fed = Vec::new();
        let mut arrived = Vec::new();
        for work in batch {
            match work {
                Work::Send(job) => {
                    context = Some((job.app.clone(), job.done.remote.clone()));
                    sends.push(job);
                }
                Work::Written { app, remote, reports } => {
                    context = Some((app, remote));
                    written.extend(reports);
                }
                Work::Backlog { app, remote, conn, user, known } => {
                    if app.cluster.is_some() {
                        self.order.has(conn, known);
                    }
                    context = Some((app, remote));
                    // It may exist already, holding frames committed since the session
                    // was registered: they follow this backlog.
                    self.feeds.entry(conn).or_insert_with(|| Feed::new(user));
                    fed.push(conn);
                }
                Work::Closed(conn) => {
                    self.feeds.remove(&conn);
                    self.order.forget(conn);
                    self.closed.push_back((Instant::now(), conn));
                }
                Work::ConversationEnded(a, b) => {
                    for feed in self.feeds.values_mut() {
                        feed.conversation_ended(&a, &b);
                    }
                }
                Work::Arrived { app, remote, kept } => {
                    context = Some((app, remote));
                    arrived.push(kept);
                }
            }
        }
        self.forget_closed();
        let Some((app, remote)) = context else { return };
        let mut marks = self.written(written, &mut fed);
        marks.append(&mut self.unsaved);
        let mut committed = self.commit(&app, &remote, sends, &marks);
        if !committed && !marks.is_empty() {
            // The failure closed a cut connection, and the next use opens a new one:
            // the marks go again alone (moving one twice is harmless), else they wait
            // for the next batch. A frame that reached its socket must move its mark.
            committed = self.commit(&app, &remote, Vec::new(), &marks);
            if !committed {
                self.unsaved = newest_marks(marks);
            }
        }
        // After the new feeds are known: a frame for a session still being fed follows
        // its backlog, as a local push would.
        for kept in arrived {
            self.arrive(&app, &remote, kept);
        }
        if !committed {
            // The marks of the slices just written did not move: a feed reading on
            // would send them again. Those sessions end; their next login resumes.
            for conn in fed {
                self.end_feed(&app, &remote, conn);
            }
            return;
        }
        for conn in fed {
            self.feed(&app, &remote, conn);
        }
    }

    /// Publishes what the last batch had for other nodes.
    fn publish(&mut self) {
        for (app, places, kept) in self.outbox.drain(..) {
            fanout::publish_kept(&app, &places, &kept);
        }
    }

    /// The marks reported `written` move; feeds whose last slice is out go on.
    fn written(
        &mut self,
        written: Vec<(ConnId, Vec<u64>)>,
        fed: &mut Vec<ConnId>,
    ) -> Vec<Delivered> {
        let mut newest: HashMap<(String, String), i64> = HashMap::new();
        for (conn, tags) in written {
            let Some(tracked) = self.tracked.get_mut(&conn) else { continue };
            for tag in tags {
                let Some(marks) = tracked.remove(&tag) else { continue };
                for (peer, seq) in marks.seqs {
                    let mark = newest.entry((marks.user.clone(), peer)).or_default();
                    *mark = (*mark).max(seq);
                }
                if let Some(feed) = self.feeds.get_mut(&conn) {
                    if feed.awaiting == Some(tag) {
                        feed.awaiting = None;
                        fed.push(conn);
                    }
                }
            }
            if tracked.is_empty() {
                self.tracked.remove(&conn);
            }
        }
        newest.into_iter().map(|((user, peer), seq)| Delivered { user, peer, seq }).collect()
    }

    /// Commits the sends and the marks, then acks, pushes and tells senders (306).
    /// False when the commit failed.
    fn commit(&mut self, app: &App, remote: &Remote, sends: Vec<Job>, marks: &[Delivered]) -> bool {
        if sends.is_empty() && marks.is_empty() {
            return true;
        }
        if !sends.is_empty() {
            app.metrics.history_batch.record(sends.len());
        }
        let targets: Vec<Vec<Target>> =
            sends.iter().map(|j| targets(app, remote, &j.message.to_id)).collect();
        // The receiver's sessions on other nodes take it too (docs/cluster.md).
        let elsewhere: Vec<Vec<Place>> =
            sends.iter().map(|j| fanout::sessions_elsewhere(app, &j.message.to_id)).collect();
        let messages: Vec<NewHistoryMessage> = sends
            .iter()
            .zip(targets.iter().zip(&elsewhere))
            .map(|(j, (t, e))| NewHistoryMessage {
                live: !t.is_empty() || !e.is_empty(),
                ..j.message.clone()
            })
            .collect();
        let started = Instant::now();
        let results = app.db.with(|store| store.append_and_mark(&messages, marks));
        app.metrics.store_latency.record(started.elapsed());
        app.db.committed();
        let (results, moved) = match results {
            Ok(r) => r,
            Err(e) => {
                log::error!("store: history commit: {e}");
                for job in &sends {
                    reply(app, job, Code::InternalError, None, None);
                }
                return false;
            }
        };
        // Before any ack or push: a page read after either has the message.
        for (job, result) in sends.iter().zip(&results) {
            if let Appended::New { .. } = result {
                app.history.pages.forget(&job.message.from_id, &job.message.to_id);
            }
        }
        for (((job, target), places), result) in
            sends.iter().zip(targets).zip(elsewhere).zip(results)
        {
            let m = &job.message;
            match result {
                Appended::New { seq } => self.deliver(app, job, target, &places, seq),
                Appended::Existing(old) if old.to_id == m.to_id && old.payload == m.payload => {
                    let code =
                        if old.code == 200 { Code::Success } else { Code::StoredForOfflineFriend };
                    reply(app, job, code, Some((old.seq, old.ts_ms)), m.cid.as_deref());
                }
                Appended::Existing(_) => reply(app, job, Code::MessageIdReused, None, None),
                Appended::NotFriends => reply(app, job, Code::NotRelationOfFriend, None, None),
            }
        }
        for d in moved {
            let push = delivered_push(&d.user, d.seq);
            for c in app.sessions.conns_of(&d.peer) {
                remote.send_text(c, push.clone());
                app.metrics.pushed(Code::MessageDelivered);
            }
            fanout::push_elsewhere(app, &d.peer, &push);
        }
        true
    }

    /// After the commit: pushes the message to each of the receiver's sessions that
    /// takes it now (`places`: on other nodes, whose writers move the marks), copies it
    /// to the sender's other sessions (§11.1), and acks the sender: 200 when a session
    /// of the receiver takes it, else 202.
    fn deliver(&mut self, app: &App, job: &Job, targets: Vec<Target>, places: &[Place], seq: i64) {
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
        let code = if targets.is_empty() && places.is_empty() {
            app.metrics.offline_stored(1);
            Code::StoredForOfflineFriend
        } else {
            Code::Success
        };
        for target in targets {
            let marks = Marks { user: m.to_id.clone(), seqs: vec![(m.from_id.clone(), seq)] };
            match target {
                Target::Push(friend) => {
                    if self.in_order(app, remote, friend, &m.to_id, &m.from_id, seq) {
                        let tag = self.track(friend, marks);
                        remote.send_text_tracked(friend, frame.clone(), tag);
                    }
                }
                Target::Backlog(friend) => {
                    self.follow_backlog(friend, (&m.to_id, &m.from_id), seq, &frame, Some(marks))
                }
            }
        }
        if !places.is_empty() {
            let kept = KeptFrame::to_receiver(&m.to_id, &m.from_id, seq, &frame);
            self.outbox.push((job.app.clone(), places.to_vec(), kept));
        }
        self.carbon_copies(app, remote, job, seq, &frame);
        // The ack shows the sender `seq`: whatever came before it goes first.
        match self.feeds.get_mut(&job.conn) {
            Some(feed) if app.cluster.is_some() => feed.acked(&m.to_id, seq),
            _ => {
                self.in_order(app, remote, job.conn, &m.from_id, &m.to_id, seq);
            }
        }
        reply(app, job, code, Some((seq, m.ts_ms)), m.cid.as_deref());
    }

    /// The sender's other sessions get the message too, with `to` (§11.1); one still
    /// being fed its backlog gets it after the backlog, in the conversation's order.
    fn carbon_copies(&mut self, app: &App, remote: &Remote, job: &Job, seq: i64, frame: &str) {
        let m = &job.message;
        let mine: Vec<ConnId> =
            app.sessions.conns_of(&m.from_id).into_iter().filter(|c| *c != job.conn).collect();
        let places = fanout::sessions_elsewhere(app, &m.from_id);
        if mine.is_empty() && places.is_empty() {
            return;
        }
        let copy = proto::with_str(frame.to_string(), "to", &m.to_id);
        if !places.is_empty() {
            let kept = KeptFrame::copy(&m.from_id, &m.to_id, seq, &copy);
            self.outbox.push((job.app.clone(), places, kept));
        }
        for c in mine {
            if !remote.takes_frames(c) {
                continue;
            }
            if app.history.is_catching_up(c) {
                self.follow_backlog(c, (&m.from_id, &m.to_id), seq, &copy, None);
            } else if self.in_order(app, remote, c, &m.from_id, &m.to_id, seq) {
                remote.send_text(c, copy.clone());
            }
        }
    }

    /// Keeps a frame of the conversation of `(user, peer)` for `conn`, a session of
    /// `user` whose backlog is being fed: it goes out once the backlog is, unless the
    /// backlog brought it already. The session is registered before its feed is handed
    /// here, so the feed may not exist yet: it starts now, or the frame (a copy of my
    /// own message, which no backlog brings) would be lost.
    fn follow_backlog(
        &mut self,
        conn: ConnId,
        (user, peer): (&str, &str),
        seq: i64,
        frame: &str,
        marks: Option<Marks>,
    ) {
        let feed = self.feeds.entry(conn).or_insert_with(|| Feed::new(user.to_string()));
        feed.follow(Following { peer: peer.to_string(), seq, frame: frame.to_string(), marks });
    }

    /// A kept message's frame from another node: to its session as a local push goes
    /// (after a backlog being fed), tagged so that the marks move once it is written.
    fn arrive(&mut self, app: &App, remote: &Remote, kept: KeptFrame) {
        let KeptFrame { conn, user, peer, seq, frame, moves_marks } = kept;
        // The connection may have closed, or been reused, since the other node looked.
        if !remote.takes_frames(conn) || !app.sessions.conns_of(&user).contains(&conn) {
            return;
        }
        // A session registered but not yet fed counts as fed (see `follow_backlog`).
        if self.feeds.contains_key(&conn) || app.history.is_catching_up(conn) {
            let marks =
                moves_marks.then(|| Marks { user: user.clone(), seqs: vec![(peer.clone(), seq)] });
            return self.follow_backlog(conn, (&user, &peer), seq, &frame, marks);
        }
        if !self.in_order(app, remote, conn, &user, &peer, seq) {
            return;
        }
        let marks = moves_marks.then(|| Marks { user, seqs: vec![(peer.clone(), seq)] });
        match marks {
            Some(marks) => {
                let tag = self.track(conn, marks);
                remote.send_text_tracked(conn, frame, tag);
            }
            None => remote.send_text(conn, frame),
        }
    }

    /// On a node of several, before a frame of the conversation of `user` (on `conn`)
    /// and `peer` numbered `seq` goes out: false when `conn` has it already; a gap
    /// below it is sent first, read from the store (docs/cluster.md, "Gaps").
    fn in_order(
        &mut self,
        app: &App,
        remote: &Remote,
        conn: ConnId,
        user: &str,
        peer: &str,
        seq: i64,
    ) -> bool {
        if app.cluster.is_none() {
            return true;
        }
        match self.order.next(conn, peer, seq) {
            Verdict::Had(newest) => {
                // Sent already, unless the conversation started again below it.
                let restarted =
                    app.store(|s| s.conversation(user, peer)).is_ok_and(|c| c.last_seq < newest);
                if restarted {
                    self.order.restart(conn, peer, seq);
                    self.fill(app, remote, conn, user, peer, 0, seq);
                }
                restarted
            }
            Verdict::Next => true,
            Verdict::After(newest) => {
                self.fill(app, remote, conn, user, peer, newest, seq);
                true
            }
        }
    }

    /// Sends `conn` the messages of the conversation of `user` and `peer` numbered
    /// above `after` and below `before`, from the store: the peer's tagged to move the
    /// marks, `user`'s own as the copies its other sessions get (§11.1). At most a
    /// login backlog; a failed read leaves the gap to the next login.
    #[allow(clippy::too_many_arguments)] // two call sites; a struct would only rename them
    fn fill(
        &mut self,
        app: &App,
        remote: &Remote,
        conn: ConnId,
        user: &str,
        peer: &str,
        after: i64,
        before: i64,
    ) {
        let want =
            usize::try_from(before - after - 1).unwrap_or(0).min(app.config.history.login_backlog);
        if want == 0 {
            return;
        }
        let window = store::Window::After(after);
        let missing = match app.store(|s| s.messages(user, peer, window, want)) {
            Ok(m) => m,
            Err(f) => return f.log(),
        };
        log::debug!(
            "cluster: a gap after seq {after} below {before}: seqs {:?} read from the store",
            missing.iter().map(|m| m.seq).collect::<Vec<_>>()
        );
        for m in missing.into_iter().filter(|m| m.seq < before) {
            let frame = super::stored_frame(&m);
            if m.from_id == peer {
                let marks = Marks { user: user.to_string(), seqs: vec![(m.from_id, m.seq)] };
                let tag = self.track(conn, marks);
                remote.send_text_tracked(conn, frame, tag);
            } else {
                remote.send_text(conn, proto::with_str(frame, "to", peer));
            }
        }
    }

    /// A new tag for a frame to `conn` that moves `marks` once written.
    fn track(&mut self, conn: ConnId, marks: Marks) -> u64 {
        self.next_tag += 1;
        self.tracked.entry(conn).or_default().insert(self.next_tag, marks);
        self.next_tag
    }

    /// Sends `conn` the next slice of its backlog; once the backlog is all sent, its
    /// session takes pushes.
    fn feed(&mut self, app: &App, remote: &Remote, conn: ConnId) {
        let Some(feed) = self.feeds.get_mut(&conn) else { return };
        let slice = match feed.next_slice(app) {
            Ok(slice) => slice,
            Err(f) => {
                f.log();
                return self.end_feed(app, remote, conn);
            }
        };
        let last = feed.is_done();
        if let Some((frames, marks)) = slice {
            let (user, count) = (feed.user().to_string(), frames.len());
            let tag = self.track(conn, Marks { user, seqs: marks });
            let mut frames = frames.into_iter().peekable();
            while let Some(frame) = frames.next() {
                if frames.peek().is_some() {
                    remote.send_text(conn, frame);
                } else {
                    // Frames are written in order: the last one out means all are.
                    remote.send_text_tracked(conn, frame, tag);
                }
            }
            app.metrics.offline_delivered(count as u64);
            if let Some(feed) = self.feeds.get_mut(&conn) {
                feed.awaiting = Some(tag);
            }
        }
        if last {
            // Sent after the last slice by this same thread, so in order behind it.
            if let Some(mut feed) = self.feeds.remove(&conn) {
                let ordered = app.cluster.is_some();
                if ordered {
                    self.order.has(conn, feed.sent_newest());
                }
                let (user, acked) = (feed.user().to_string(), feed.take_acked());
                for f in feed.into_following() {
                    if ordered && !self.in_order(app, remote, conn, &user, &f.peer, f.seq) {
                        continue;
                    }
                    match f.marks {
                        Some(marks) => {
                            let tag = self.track(conn, marks);
                            remote.send_text_tracked(conn, f.frame, tag);
                        }
                        None => remote.send_text(conn, f.frame),
                    }
                }
                if ordered {
                    self.order.has(conn, acked);
                }
            }
            app.history.caught_up(conn);
        }
    }

    /// A feed that cannot go on: its session closes, and its next login starts again
    /// from the delivered marks.
    fn end_feed(&mut self, app: &App, remote: &Remote, conn: ConnId) {
        self.feeds.remove(&conn);
        app.history.caught_up(conn);
        remote.close(conn, CLOSE_INTERNAL, "");
    }

    /// Forgets the tags of connections closed long enough ago.
    fn forget_closed(&mut self) {
        let now = Instant::now();
        while let Some(&(at, conn)) = self.closed.front() {
            if now.duration_since(at) < LATE_REPORTS {
                break;
            }
            self.closed.pop_front();
            self.tracked.remove(&conn);
        }
    }
}

/// The newest of `marks` for each user and peer.
fn newest_marks(marks: Vec<Delivered>) -> Vec<Delivered> {
    let mut newest: HashMap<(String, String), i64> = HashMap::new();
    for d in marks {
        let seq = newest.entry((d.user, d.peer)).or_default();
        *seq = (*seq).max(d.seq);
    }
    newest.into_iter().map(|((user, peer), seq)| Delivered { user, peer, seq }).collect()
}

/// Where a message to `to` goes now: each session that takes frames. A session whose
/// close has begun takes nothing: a frame queued there would never be written.
fn targets(app: &App, remote: &Remote, to: &str) -> Vec<Target> {
    app.sessions
        .conns_of(to)
        .into_iter()
        .filter(|c| remote.takes_frames(*c))
        .map(|c| if app.history.is_catching_up(c) { Target::Backlog(c) } else { Target::Push(c) })
        .collect()
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
