//! imd-load across the nodes of a cluster (two in-process nodes on one throwaway
//! PostgreSQL and one throwaway Redis, docs/cluster.md): `--ws` given once per node,
//! and the two users of each pair placed on one node or on two. Kept conversations
//! cross the bus with nothing lost, duplicated or misordered, and the summary reports
//! the latencies of messages across nodes beside those on one node. Redis's own count
//! of PUBLISH commands shows the placement is real: every message between two nodes is
//! published, none between users of one node.

mod common;
// The daemon's own throwaway Redis; its restart is for the daemon's tests.
#[allow(dead_code)]
#[path = "../../../tests/common/redis_server.rs"]
mod redis_server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use common::*;
use redis_server::RedisServer;
use serde_json::Value;
use store::testdb::{Kind, TempDb};

/// Two nodes, "a" and "b", on one database and one Redis.
struct Cluster {
    // Nodes first: they stop before the servers they use.
    a: TestServer,
    b: TestServer,
    redis: RedisServer,
    _db: TempDb,
}

impl Cluster {
    fn start() -> Cluster {
        let db = TempDb::new(Kind::Postgres);
        let redis = RedisServer::start();
        let a = TestServer::start_node(db.url(), &redis.url(), "a");
        let b = TestServer::start_node(db.url(), &redis.url(), "b");
        Cluster { a, b, redis, _db: db }
    }

    /// `text` with both nodes' plain listeners as `--ws`, provisioning through a.
    fn args(&self, text: &str) -> Vec<String> {
        let mut a = args(text);
        for ws in [self.a.plain, self.b.plain] {
            a.extend(["--ws".into(), ws.to_string()]);
        }
        a.extend(["--http".into(), self.a.plain.to_string()]);
        a
    }

    /// PUBLISH commands Redis has run since it started (`INFO commandstats`).
    fn publishes(&self) -> u64 {
        let addr = self.redis.url().trim_start_matches("redis://").to_string();
        let mut s = TcpStream::connect(addr).expect("redis");
        s.write_all(b"INFO commandstats\r\n").expect("ask redis");
        let mut r = BufReader::new(s);
        let mut head = String::new();
        r.read_line(&mut head).expect("bulk length");
        let len: usize = head.trim_start_matches('$').trim().parse().expect("a bulk reply");
        let mut body = vec![0; len];
        r.read_exact(&mut body).expect("the reply");
        let text = String::from_utf8(body).expect("text");
        text.lines()
            .find_map(|l| l.strip_prefix("cmdstat_publish:calls="))
            .map_or(0, |rest| rest.split(',').next().and_then(|n| n.parse().ok()).expect("calls"))
    }
}

#[track_caller]
fn assert_clean(v: &Value) {
    assert_eq!(
        (v["lost"].as_u64(), v["dup"].as_u64(), v["misordered"].as_u64()),
        (Some(0), Some(0), Some(0)),
        "{v}"
    );
    assert_eq!(v["failed_sessions"], 0, "{v}");
    let sent = v["sent"].as_u64().expect("sent");
    let accepted: u64 = ["200", "202"].iter().map(|c| v["acks"][c].as_u64().unwrap_or(0)).sum();
    assert_eq!((accepted, v["received"].as_u64()), (sent, Some(sent)), "{v}");
}

#[track_caller]
fn run(args: &[String]) -> Value {
    let out = imd_load(args);
    let v = summary(&out);
    assert!(out.status.success(), "{v}\n{}", String::from_utf8_lossy(&out.stderr));
    v
}

#[test]
fn mixed_placement_reports_messages_across_nodes_beside_those_on_one() {
    let c = Cluster::start();
    let v = run(&c.args("chat --sessions 8 --rate 200 --duration 2 --sources 2"));
    assert_clean(&v);
    assert!(v["sent"].as_u64() >= Some(300), "{v}");
    // Half the pairs each way; every message counted in one kind or the other.
    let (same, cross) = (&v["same"], &v["cross"]);
    let (ns, nc) = (same["received"].as_u64(), cross["received"].as_u64());
    assert!(ns > Some(100) && nc > Some(100), "{v}");
    assert_eq!(ns.zip(nc).map(|(s, c)| s + c), v["received"].as_u64(), "{v}");
    assert!(cross["p99_us"].as_u64() > Some(0) && same["p99_us"].as_u64() > Some(0), "{v}");
}

#[test]
fn cross_placement_publishes_every_message_and_same_placement_none() {
    let c = Cluster::start();
    let before = c.publishes();
    let v = run(&c.args("chat --sessions 4 --rate 150 --duration 2 --placement same --prefix s"));
    assert_clean(&v);
    assert_eq!(
        (v["cross"].clone(), v["same"]["received"].clone()),
        (Value::Null, v["received"].clone())
    );
    // Registrations and friendships broadcast a few lines on imd:all; no message
    // goes through Redis.
    let same = c.publishes() - before;
    assert!(same < 30, "{same} publishes for {v}");

    let before = c.publishes();
    let v = run(&c.args("chat --sessions 4 --rate 150 --duration 2 --placement cross --prefix c"));
    assert_clean(&v);
    assert_eq!(
        (v["same"].clone(), v["cross"]["received"].clone()),
        (Value::Null, v["received"].clone())
    );
    // Each message's receive frame crosses the bus (its 306 is the sender's node's own).
    let cross = c.publishes() - before;
    let received = v["received"].as_u64().expect("received");
    assert!(cross >= received, "{cross} publishes for {received} messages: {v}");
}

#[test]
fn reconnect_across_nodes_loses_duplicates_and_misorders_nothing() {
    let c = Cluster::start();
    let v = run(&c.args(
        "reconnect --sessions 8 --rate 200 --duration 3 --drops 6 --sources 2 --placement cross",
    ));
    assert_clean(&v);
    assert!(v["reconnects"].as_u64() >= Some(9), "{v}");
    assert_eq!(v["cross"]["received"], v["received"], "{v}");
}
