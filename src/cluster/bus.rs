//! Frames between nodes. A node publishes a frame for a connection of another node on
//! that node's channel; each node runs one subscriber thread on its own channel, which
//! hands what arrives to the reactor. Pub/sub is at most once: a frame published while
//! the subscriber is reconnecting is lost, and the store is what fills the gap.

use std::thread::{self, JoinHandle};
use std::time::Duration;

use reactor::ConnId;
use redis::{Commands, RedisResult};

use super::{channel, Cluster, Place, BROADCAST};

/// What the subscriber hands on: frames for this node's connections, and friend sets
/// another node changed.
pub trait Inbox: Send + 'static {
    /// `frame` for this node's connection `conn`.
    fn deliver(&self, conn: ConnId, frame: String);
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
        End(ConnId, Option<String>),
        Forget(Vec<String>),
        Directory(String),
    }

    struct TestInbox(mpsc::Sender<Got>, Arc<AtomicBool>);

    impl Inbox for TestInbox {
        fn deliver(&self, conn: ConnId, frame: String) {
            let _ = self.0.send(Got::Frame(conn, frame));
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
    }
}
