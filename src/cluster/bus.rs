//! Frames between nodes. A node publishes a frame for a connection of another node on
//! that node's channel; each node runs one subscriber thread on its own channel, which
//! hands what arrives to the reactor. Pub/sub is at most once: a frame published while
//! the subscriber is reconnecting is lost, and the store is what fills the gap.

use std::thread::{self, JoinHandle};
use std::time::Duration;

use reactor::ConnId;
use redis::{Commands, RedisResult};

use super::{channel, Cluster, Place};

/// The subscriber waits this long for a message before looking at `stop`.
const POLL: Duration = Duration::from_millis(250);
/// The first wait after a lost subscription, doubled on each failure up to
/// [`BACKOFF_MAX`] and reset once subscribed.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Cluster {
    /// Publishes `frame` for the connection at `to`; whether a subscriber received it.
    pub fn publish(&self, to: &Place, frame: &str) -> RedisResult<bool> {
        let message = format!("{}\n{frame}", to.conn.0);
        let receivers: i64 = self.with(|c| c.publish(channel(&to.node), message))?;
        Ok(receivers > 0)
    }

    /// Starts the subscriber thread of this node: each frame addressed to one of its
    /// connections goes to `deliver`. It reconnects and subscribes again by itself
    /// after any failure, and ends once `stop` says so (checked every 250 ms).
    pub fn subscribe(
        &self,
        deliver: impl Fn(ConnId, String) + Send + 'static,
        stop: impl Fn() -> bool + Send + 'static,
    ) -> std::io::Result<JoinHandle<()>> {
        let client = self.client.clone();
        let channel = channel(&self.node);
        thread::Builder::new().name("imd-cluster-bus".into()).spawn(move || {
            let mut backoff = BACKOFF_MIN;
            while !stop() {
                match listen(&client, &channel, &deliver, &stop, &mut backoff) {
                    Ok(()) => return,
                    Err(e) => {
                        log::warn!("cluster: subscription to {channel} lost ({e}); retrying");
                        thread::sleep(backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        })
    }

    /// Whether a subscriber is listening on `node`'s channel.
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
    deliver: &impl Fn(ConnId, String),
    stop: &impl Fn() -> bool,
    backoff: &mut Duration,
) -> RedisResult<()> {
    let mut conn = client.get_connection_with_timeout(BACKOFF_MAX)?;
    let mut sub = conn.as_pubsub();
    sub.subscribe(channel)?;
    sub.set_read_timeout(Some(POLL))?;
    log::info!("cluster: subscribed to {channel}");
    *backoff = BACKOFF_MIN;
    while !stop() {
        let msg = match sub.get_message() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e),
        };
        match parse(msg.get_payload_bytes()) {
            Some((conn, frame)) => deliver(conn, frame),
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

    #[test]
    fn frames_reach_the_node_holding_the_connection_and_survive_a_redis_restart() {
        let mut redis = RedisServer::start();
        let a = Cluster::new(&redis.url(), "a", LIVENESS_TTL).unwrap();
        let b = Cluster::new(&redis.url(), "b", LIVENESS_TTL).unwrap();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = b
            .subscribe(
                move |conn, frame| tx.send((conn, frame)).unwrap(),
                move || s.load(Ordering::SeqCst),
            )
            .unwrap();
        wait_listening(&a, "b");
        let to = Place { node: "b".into(), conn: ConnId(42) };
        assert!(a.publish(&to, "{\"code\":302,\"id\":\"x\\ny\"}").unwrap());
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got, (ConnId(42), "{\"code\":302,\"id\":\"x\\ny\"}".to_string()));
        // Nobody on node c: the frame is lost, and the publisher knows.
        assert!(!a.publish(&Place { node: "c".into(), conn: ConnId(1) }, "{}").unwrap());

        redis.restart(Duration::from_millis(300));
        // The publisher's connection broke: its first command may fail, the next works.
        wait_listening(&a, "b");
        assert!(a.publish(&to, "after").unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), (ConnId(42), "after".into()));

        stop.store(true, Ordering::SeqCst);
        handle.join().unwrap();
    }

    #[test]
    fn malformed_payloads_are_refused() {
        assert_eq!(parse(b"7\n{}"), Some((ConnId(7), "{}".to_string())));
        assert_eq!(parse(b"x\n{}"), None);
        assert_eq!(parse(b"7"), None);
        assert_eq!(parse(&[0xff, b'\n']), None);
    }
}
