//! Frames between nodes. A node publishes a frame for a connection of another node on
//! that node's channel; each node runs one subscriber thread on its own channel, which
//! hands what arrives to the reactor. Pub/sub is at most once: a frame published while
//! the subscriber is reconnecting is lost, and the store is what fills the gap.

use std::thread::{self, JoinHandle};
use std::time::Duration;

use reactor::ConnId;
use redis::{Commands, RedisResult};

use super::{channel, Cluster, Place, BROADCAST};

/// A kept message's receive frame for a session of another node, with what that
/// node's history thread needs to keep the conversation in order and move the marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptFrame {
    /// The session's connection on its node.
    pub conn: ConnId,
    /// The session's user.
    pub user: String,
    /// The other user of the conversation.
    pub peer: String,
    /// The message's `seq` in the conversation.
    pub seq: i64,
    /// The frame as it goes out.
    pub frame: String,
    /// Whether it moves `user`'s delivered mark once written: a message to `user`, not
    /// a copy of one `user` sent from another session.
    pub moves_marks: bool,
}

impl KeptFrame {
    /// A message from `peer` to `user` (the connection is set per place).
    pub fn to_receiver(user: &str, peer: &str, seq: i64, frame: &str) -> KeptFrame {
        KeptFrame {
            conn: ConnId(0),
            user: user.to_string(),
            peer: peer.to_string(),
            seq,
            frame: frame.to_string(),
            moves_marks: true,
        }
    }

    /// A copy of a message `user` sent to `peer`, for `user`'s other sessions.
    pub fn copy(user: &str, peer: &str, seq: i64, frame: &str) -> KeptFrame {
        KeptFrame { moves_marks: false, ..KeptFrame::to_receiver(user, peer, seq, frame) }
    }

    /// `kept {conn} {seq} {m|c} {user} {peer}\n{frame}` (user ids hold no spaces: the
    /// server makes them).
    fn encode(&self, conn: ConnId) -> String {
        let kind = if self.moves_marks { 'm' } else { 'c' };
        format!("kept {} {} {kind} {} {}\n{}", conn.0, self.seq, self.user, self.peer, self.frame)
    }

    fn decode(payload: &[u8]) -> Option<KeptFrame> {
        let text = std::str::from_utf8(payload).ok()?.strip_prefix("kept ")?;
        let (head, frame) = text.split_once('\n')?;
        let mut f = head.split(' ');
        let conn = ConnId(f.next()?.parse().ok()?);
        let seq = f.next()?.parse().ok()?;
        let moves_marks = match f.next()? {
            "m" => true,
            "c" => false,
            _ => return None,
        };
        let (user, peer) = (f.next()?.to_string(), f.next()?.to_string());
        if f.next().is_some() {
            return None;
        }
        Some(KeptFrame { conn, user, peer, seq, frame: frame.to_string(), moves_marks })
    }
}

/// What the subscriber hands on: frames for this node's connections, and friend sets
/// another node changed.
pub trait Inbox: Send + 'static {
    /// `frame` for this node's connection `conn`.
    fn deliver(&self, conn: ConnId, frame: String);
    /// A kept message's frame for this node's connection `kept.conn`.
    fn kept(&self, kept: KeptFrame);
    /// The session on this node's `conn` is ended by another node (an erase, a
    /// password change): send it `frame` if there is one, then close it.
    fn end(&self, conn: ConnId, frame: Option<String>);
    /// The friend sets of `users` changed on some node.
    fn forget(&self, users: Vec<String>);
    /// User `id` registered, changed its profile or was erased on some node.
    fn directory(&self, id: String);
    /// Whether the subscriber should end.
    fn stopping(&self) -> bool;
}

/// The subscriber waits this long for a message before looking at `stop`.
const POLL: Duration = Duration::from_millis(250);
/// The first wait after a lost subscription, doubled on each failure up to
/// [`BACKOFF_MAX`] and reset once subscribed.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long [`Cluster::subscribe`] waits for the first subscription.
const READY_WAIT: Duration = Duration::from_secs(5);

impl Cluster {
    /// Publishes `frame` for the connection at `to`; whether a subscriber received it.
    pub fn publish(&self, to: &Place, frame: &str) -> RedisResult<bool> {
        let message = format!("{}\n{frame}", to.conn.0);
        let receivers: i64 = self.with(|c| c.publish(channel(&to.node), message))?;
        Ok(receivers > 0)
    }

    /// Publishes a kept message's frame for the session at `to`; whether a subscriber
    /// received it.
    pub fn publish_kept(&self, to: &Place, kept: &KeptFrame) -> RedisResult<bool> {
        let receivers: i64 = self.with(|c| c.publish(channel(&to.node), kept.encode(to.conn)))?;
        Ok(receivers > 0)
    }

    /// Ends the session at `to` on its node: `frame` (if any) is sent, then the socket
    /// closed. The registry forgets the session at once, whether or not the node hears.
    pub fn end(&self, user: &str, to: &Place, frame: Option<&str>) -> RedisResult<()> {
        let message = format!("end {}\n{}", to.conn.0, frame.unwrap_or(""));
        self.with(|c| c.publish::<_, _, i64>(channel(&to.node), message))?;
        self.session_ended_at(user, to)
    }

    /// Tells every node (this one too) that user `id`'s search listing changed.
    pub fn broadcast_directory(&self, id: &str) -> RedisResult<()> {
        let message = format!("dir\n{id}");
        self.with(|c| c.publish::<_, _, i64>(BROADCAST, message)).map(|_| ())
    }

    /// Tells every node (this one too) that the friend sets of `users` changed.
    pub fn broadcast_forget(&self, users: &[&str]) -> RedisResult<()> {
        let message = format!("forget\n{}", users.join(" "));
        self.with(|c| c.publish::<_, _, i64>(BROADCAST, message)).map(|_| ())
    }

    /// Starts the subscriber thread of this node: each frame addressed to one of its
    /// connections, and each broadcast, goes to `inbox`. It reconnects and subscribes
    /// again by itself after any failure, and ends once the inbox is stopping
    /// (checked every 250 ms). Returns once subscribed (or after 5 s of trying).
    pub fn subscribe(&self, inbox: impl Inbox) -> std::io::Result<JoinHandle<()>> {
        let client = self.client.clone();
        let channel = channel(&self.node);
        let (ready, subscribed) = std::sync::mpsc::channel();
        let handle = thread::Builder::new().name("imd-cluster-bus".into()).spawn(move || {
            let mut backoff = BACKOFF_MIN;
            while !inbox.stopping() {
                match listen(&client, &channel, &inbox, &mut backoff, &ready) {
                    Ok(()) => return,
                    Err(e) => {
                        log::warn!("cluster: subscription to {channel} lost ({e}); retrying");
                        thread::sleep(backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        })?;
        // A node serves once it can hear the others, or after a few seconds of trying.
        if subscribed.recv_timeout(READY_WAIT).is_err() {
            log::warn!("cluster: not yet subscribed; serving anyway, retrying meanwhile");
        }
        Ok(handle)
    }

    /// Whether a subscriber is listening on `node`'s channel.
    #[cfg(test)]
    pub fn listening(&self, node: &str) -> RedisResult<bool> {
        let counts: Vec<(String, i64)> =
            self.with(|c| redis::cmd("PUBSUB").arg("NUMSUB").arg(channel(node)).query(c))?;
        Ok(counts.iter().any(|(_, n)| *n > 0))
    }
}

/// Subscribes and delivers until `stop` (`Ok`) or a failure (`Err`).
fn listen(
    client: &redis::Client,
    channel: &str,
    inbox: &impl Inbox,
    backoff: &mut Duration,
    ready: &std::sync::mpsc::Sender<()>,
) -> RedisResult<()> {
    let mut conn = client.get_connection_with_timeout(BACKOFF_MAX)?;
    let mut sub = conn.as_pubsub();
    sub.subscribe(&[channel, BROADCAST])?;
    sub.set_read_timeout(Some(POLL))?;
    log::info!("cluster: subscribed to {channel}");
    *backoff = BACKOFF_MIN;
    let _ = ready.send(());
    while !inbox.stopping() {
        let msg = match sub.get_message() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e),
        };
        let payload = msg.get_payload_bytes();
        if msg.get_channel_name() == BROADCAST {
            if let Some(id) = payload.strip_prefix(b"dir\n") {
                match std::str::from_utf8(id) {
                    Ok(id) => inbox.directory(id.to_string()),
                    Err(_) => log::warn!("cluster: a malformed broadcast dropped"),
                }
                continue;
            }
            match parse_forget(payload) {
                Some(users) => inbox.forget(users),
                None => log::warn!("cluster: a malformed broadcast dropped"),
            }
            continue;
        }
        if payload.starts_with(b"kept ") {
            match KeptFrame::decode(payload) {
                Some(kept) => inbox.kept(kept),
                None => log::warn!("cluster: a malformed message on {channel} dropped"),
            }
            continue;
        }
        if let Some(rest) = payload.strip_prefix(b"end ") {
            match parse(rest) {
                Some((conn, frame)) => inbox.end(conn, Some(frame).filter(|f| !f.is_empty())),
                None => log::warn!("cluster: a malformed message on {channel} dropped"),
            }
            continue;
        }
        match parse(payload) {
            Some((conn, frame)) => inbox.deliver(conn, frame),
            None => log::warn!("cluster: a malformed message on {channel} dropped"),
        }
    }
    Ok(())
}

/// `{conn}\n{frame}`.
fn parse(payload: &[u8]) -> Option<(ConnId, String)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (conn, frame) = text.split_once('\n')?;
    Some((ConnId(conn.parse().ok()?), frame.to_string()))
}

/// `forget\n{user} {user}…`.
fn parse_forget(payload: &[u8]) -> Option<Vec<String>> {
    let users = std::str::from_utf8(payload).ok()?.strip_prefix("forget\n")?;
    Some(users.split(' ').filter(|u| !u.is_empty()).map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Instant;

    use super::super::test_redis::RedisServer;
    use super::super::LIVENESS_TTL;
    use super::*;

    fn wait_listening(c: &Cluster, node: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !c.listening(node).unwrap_or(false) {
            assert!(Instant::now() < deadline, "{node} never subscribed");
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[derive(Debug)]
    enum Got {
        Frame(ConnId, String),
        Kept(KeptFrame),
        End(ConnId, Option<String>),
        Forget(Vec<String>),
        Directory(String),
    }

    struct TestInbox(mpsc::Sender<Got>, Arc<AtomicBool>);

    impl Inbox for TestInbox {
        fn deliver(&self, conn: ConnId, frame: String) {
            let _ = self.0.send(Got::Frame(conn, frame));
        }
        fn kept(&self, kept: KeptFrame) {
            let _ = self.0.send(Got::Kept(kept));
        }
        fn end(&self, conn: ConnId, frame: Option<String>) {
            let _ = self.0.send(Got::End(conn, frame));
        }
        fn forget(&self, users: Vec<String>) {
            let _ = self.0.send(Got::Forget(users));
        }
        fn directory(&self, id: String) {
            let _ = self.0.send(Got::Directory(id));
        }
        fn stopping(&self) -> bool {
            self.1.load(Ordering::SeqCst)
        }
    }

    fn frame(rx: &mpsc::Receiver<Got>) -> (ConnId, String) {
        match rx.recv_timeout(Duration::from_secs(5)).expect("a message") {
            Got::Frame(c, f) => (c, f),
            other => panic!("{other:?} where a frame was expected"),
        }
    }

    #[test]
    fn frames_reach_the_node_holding_the_connection_and_survive_a_redis_restart() {
        let mut redis = RedisServer::start();
        let a = Cluster::new(&redis.url(), "a", LIVENESS_TTL).unwrap();
        let b = Cluster::new(&redis.url(), "b", LIVENESS_TTL).unwrap();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = b.subscribe(TestInbox(tx, stop.clone())).unwrap();
        wait_listening(&a, "b");
        let to = Place { node: "b".into(), conn: ConnId(42) };
        assert!(a.publish(&to, "{\"code\":302,\"id\":\"x\\ny\"}").unwrap());
        let got = frame(&rx);
        assert_eq!(got, (ConnId(42), "{\"code\":302,\"id\":\"x\\ny\"}".to_string()));
        // Nobody on node c: the frame is lost, and the publisher knows.
        assert!(!a.publish(&Place { node: "c".into(), conn: ConnId(1) }, "{}").unwrap());

        redis.restart(Duration::from_millis(300));
        // The publisher's connection broke: its first command may fail, the next works.
        wait_listening(&a, "b");
        assert!(a.publish(&to, "after").unwrap());
        assert_eq!(frame(&rx), (ConnId(42), "after".into()));
        let kept = KeptFrame::to_receiver("u1", "u2", 7, "{\"seq\":7}");
        assert!(a.publish_kept(&to, &kept).unwrap());
        match rx.recv_timeout(Duration::from_secs(5)).expect("a kept frame") {
            Got::Kept(k) => assert_eq!(k, KeptFrame { conn: ConnId(42), ..kept }),
            other => panic!("{other:?} where a kept frame was expected"),
        }
        // An end: the frame and the close reach the node, the registry forgets at once.
        b.session_started("u1", ConnId(42), "tok", 0).unwrap();
        a.end("u1", &to, Some("{\"code\":513}")).unwrap();
        match rx.recv_timeout(Duration::from_secs(5)).expect("the end") {
            Got::End(c, f) => assert_eq!((c, f.as_deref()), (ConnId(42), Some("{\"code\":513}"))),
            other => panic!("{other:?} where an end was expected"),
        }
        assert!(a.sessions_of("u1").unwrap().is_empty());
        assert_eq!(a.owner_of("tok").unwrap(), None);
        a.end("u1", &to, None).unwrap();
        match rx.recv_timeout(Duration::from_secs(5)).expect("the end") {
            Got::End(c, f) => assert_eq!((c, f), (ConnId(42), None)),
            other => panic!("{other:?} where an end was expected"),
        }
        a.broadcast_directory("u9").unwrap();
        match rx.recv_timeout(Duration::from_secs(5)).expect("the broadcast") {
            Got::Directory(id) => assert_eq!(id, "u9"),
            other => panic!("{other:?} where a directory broadcast was expected"),
        }
        a.broadcast_forget(&["u1", "u2"]).unwrap();
        match rx.recv_timeout(Duration::from_secs(5)).expect("the broadcast") {
            Got::Forget(users) => assert_eq!(users, ["u1", "u2"]),
            other => panic!("{other:?} where a broadcast was expected"),
        }

        stop.store(true, Ordering::SeqCst);
        handle.join().unwrap();
    }

    #[test]
    fn malformed_payloads_are_refused() {
        assert_eq!(parse(b"7\n{}"), Some((ConnId(7), "{}".to_string())));
        assert_eq!(parse(b"x\n{}"), None);
        assert_eq!(parse(b"7"), None);
        assert_eq!(parse(&[0xff, b'\n']), None);
        assert_eq!(parse_forget(b"forget\na b"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(parse_forget(b"other\na"), None);
        let copy = KeptFrame::copy("u1", "u2", 3, "{}");
        let got = KeptFrame::decode(copy.encode(ConnId(9)).as_bytes());
        assert_eq!(got, Some(KeptFrame { conn: ConnId(9), ..copy }));
        assert_eq!(KeptFrame::decode(b"kept 9 3 x u1 u2\n{}"), None);
        assert_eq!(KeptFrame::decode(b"kept 9 3 m u1\n{}"), None);
        assert_eq!(KeptFrame::decode(b"kept 9 3 m u1 u2 u3\n{}"), None);
        assert_eq!(KeptFrame::decode(b"kept x 3 m u1 u2\n{}"), None);
    }
}
