//! Two imd nodes in this process sharing one PostgreSQL (the store crate's throwaway
//! server) and one Redis (a throwaway `redis-server`): alice on node A, bob on node B.
//! Friend requests and adds, presence, kept messages with dense seqs and the 306/307/308
//! pushes all cross from one node to the other; a session token works on both nodes;
//! a node that stops lets the other's users hear 300.

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use common::*;
use redis_server::RedisServer;
use serde_json::json;
use store::testdb::{Kind, PgServer, TempDb};

/// Node `name` with history on, on the database `db` and the Redis `redis`.
fn node(db: &TempDb, redis: &RedisServer, name: &str) -> TestServer {
    node_with(db, redis, name, "")
}

/// [`node`] with `extra` configuration (TOML).
fn node_with(db: &TempDb, redis: &RedisServer, name: &str, extra: &str) -> TestServer {
    node_on(db.url(), redis, name, extra)
}

/// [`node_with`] on the PostgreSQL database at `url`.
fn node_on(url: &str, redis: &RedisServer, name: &str, extra: &str) -> TestServer {
    let dir = temp_dir();
    let mut config = config(&dir, &format!("[history]\nenabled = true\n{extra}"));
    config.store.url = Some(store::PostgresUrl::parse(url).expect("url"));
    config.cluster = Some(imd::ClusterConfig { redis: redis.url(), node: name.to_string() });
    TestServer::start_config(dir, config)
}

fn ask(ws: &mut Ws, frame: serde_json::Value) -> serde_json::Value {
    ws.send_json(&frame);
    ws.recv()
}

/// `from` sends message `seq` of the conversation to `to` on the other node: 200 with
/// the seq, the receive frame there, then 306 back.
#[track_caller]
fn exchange(from: &mut Session, to: &mut Session, seq: i64) {
    let v = ask(
        &mut from.ws,
        json!({"id": format!("d{seq}"), "toFriend": to.id, "payload": format!("m{seq}")}),
    );
    assert_code(&v, 200, "Success");
    assert_eq!(v["seq"], seq);
    let got = to.ws.recv();
    assert_eq!((got["from"].as_str(), got["seq"].as_i64()), (Some(&*from.id), Some(seq)));
    assert_eq!(got["payload"], format!("m{seq}"));
    let delivered = from.ws.recv();
    assert_code(&delivered, 306, "Message Delivered");
    assert_eq!((delivered["id"].as_str(), delivered["seq"].as_i64()), (Some(&*to.id), Some(seq)));
}

#[test]
fn alice_on_one_node_and_bob_on_another_talk_as_on_one() {
    let db = TempDb::new(Kind::Postgres);
    let redis = RedisServer::start();
    let (na, nb) = (node(&db, &redis, "a"), node(&db, &redis, "b"));
    let (ua, ub) = (User::new("cla"), User::new("clb"));
    ua.register(&na);
    ub.register(&nb);
    let mut a = Session::login(&na, Via::Plain, &ua);
    let mut b = Session::login(&nb, Via::Plain, &ub);
    // Bob registered on B; A's search finds him (the directory is refreshed by
    // broadcast, the store read on the receiving node).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let v =
            get(&na, Via::Plain, &format!("/im/friends/found?{}&name={}", a.auth(), ub.account));
        if v["found"][0]["id"] == b.id.as_str() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "bob never found on A: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Request on A, its 520 on B; add on B, its 303 on A, naming bob online.
    let r = get(&na, Via::Plain, &format!("/im/friends/request?{}&to={}&note=hi", a.auth(), b.id));
    assert_code(&r, 200, "Success");
    let push = b.ws.recv();
    assert_code(&push, 520, "Apply For a Friend");
    assert_eq!(push["request"]["id"], a.id.as_str());
    let r = get(&nb, Via::Plain, &format!("/im/friends/add?{}&from={}&name=pal", b.auth(), a.id));
    assert_code(&r, 200, "Success");
    let added = a.ws.recv();
    assert_code(&added, 303, "Friend Added");
    let friend = &added["friend"];
    assert_eq!((friend["id"].as_str(), friend["online"].as_bool()), (Some(&*b.id), Some(true)));

    // A token of a session on B is good on A for a user request.
    let list = get(&na, Via::Plain, &format!("/im/friends/list?{}", b.auth()));
    assert_code(&list, 200, "Success");
    assert_eq!(list["friends"][0]["id"], a.id.as_str());
    assert_eq!(list["friends"][0]["online"], true, "alice is online on the other node");

    // Messages both ways: receive frames cross, seqs are dense, 306 comes back.
    exchange(&mut a, &mut b, 1);
    exchange(&mut b, &mut a, 2);
    exchange(&mut a, &mut b, 3);

    // 307 and 308 cross too.
    let v = ask(&mut b.ws, json!({"type": "read", "with": a.id, "seq": 3}));
    assert_code(&v, 200, "Success");
    let read = a.ws.recv();
    assert_code(&read, 307, "Message Read");
    assert_eq!((read["by"].as_str(), read["seq"].as_i64()), (Some(&*b.id), Some(3)));
    let v = ask(&mut a.ws, json!({"type": "typing", "to": b.id}));
    assert_code(&v, 200, "Success");
    assert_eq!(b.ws.recv(), json!({"code":308,"message":"Friend Typing","ok":true,"id":a.id}));
    // Every frame on a node of a cluster may need Redis: none is run on the event loop.
    for n in [&na, &nb] {
        assert_eq!(metric(n, "imd_ws_frames_on_loop_total"), 0);
    }

    // Presence: bob leaves B, alice on A hears 300; bob back on A, she hears 302.
    let b_id = b.id.clone();
    drop(b);
    let off = a.ws.recv();
    assert_code(&off, 300, "Friend Offline");
    assert_eq!(off["id"], b_id.as_str());
    let mut b = Session::login(&nb, Via::Plain, &ub);
    let on = a.ws.recv();
    assert_code(&on, 302, "Friend Online");
    assert_eq!(b.login["friends"][0]["online"], true);

    // Node B stops: its sessions leave the registry and alice hears 300 once.
    drop(nb);
    assert_code(&a.ws.recv(), 300, "Friend Offline");
    b.ws.expect_close();
    let v = ask(&mut a.ws, json!({"id": "late", "toFriend": b_id, "payload": "x"}));
    assert_code(&v, 202, "Stored For Offline Friend");
    assert_eq!(v["seq"], 4, "the seq stays dense");
    a.ws.expect_silence(Duration::from_millis(300));
}

/// The `[store]`, `[history]` and `[cluster]` of a child daemon that is node `name`.
fn child_extra(db: &TempDb, redis: &RedisServer, name: &str) -> String {
    format!(
        "[store]\nurl = \"{}\"\n[history]\nenabled = true\n[cluster]\nredis = \"{}\"\nnode = \"{name}\"\n",
        db.url(),
        redis.url()
    )
}

/// Two befriended users, alice logged in on `na`, bob on `nb`.
fn friends_across(na: &impl Listening, nb: &impl Listening, tag: &str) -> (Session, Session, User) {
    let (ua, ub) = (User::new(&format!("{tag}a")), User::new(&format!("{tag}b")));
    ua.register(na);
    ub.register(na);
    let mut a = Session::login(na, Via::Plain, &ua);
    let mut b = Session::login(nb, Via::Plain, &ub);
    befriend(na, &mut a, &mut b);
    (a, b, ub)
}

#[test]
fn a_node_killed_with_sigkill_is_reaped_and_its_users_friends_hear_300() {
    let db = TempDb::new(Kind::Postgres);
    let redis = RedisServer::start();
    let na = node(&db, &redis, "a");
    let dir = temp_dir();
    let nb = ChildDaemon::spawn(&dir, &child_extra(&db, &redis, "b"));
    let (mut a, b, _) = friends_across(&na, &nb, "kill");
    let started = std::time::Instant::now();
    nb.signal("KILL");
    let off = a.ws.try_recv(Duration::from_secs(15)).expect("300 within 15 s");
    assert_code(&off, 300, "Friend Offline");
    assert_eq!(off["id"], b.id.as_str());
    assert!(started.elapsed() < Duration::from_secs(15));
    // Gone from the registry: a message to bob is stored for later, not lost.
    let v = ask(&mut a.ws, json!({"id": "d", "toFriend": b.id, "payload": "x"}));
    assert_code(&v, 202, "Stored For Offline Friend");
    drop(nb);
}

#[test]
fn nodes_reconnect_to_a_restarted_redis_and_register_their_sessions_again() {
    let db = TempDb::new(Kind::Postgres);
    let mut redis = RedisServer::start();
    let (na, nb) = (node(&db, &redis, "a"), node(&db, &redis, "b"));
    let (mut a, mut b, _) = friends_across(&na, &nb, "rr");
    redis.restart(Duration::from_millis(200));
    // Within a few housekeeping seconds both nodes have resubscribed and registered
    // their live sessions again; until then a message may find bob offline (202) and
    // wait for him in the store.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seq = 0;
    loop {
        seq += 1;
        let v = ask(&mut a.ws, json!({"id": "d", "toFriend": b.id, "payload": format!("m{seq}")}));
        assert_eq!(v["seq"], seq, "{v}");
        if v["code"] == 200 {
            // What waited in the store (202) while bob seemed offline comes first: his
            // session sees the conversation whole and in order.
            for want in 1..=seq {
                let got = b.ws.recv();
                assert_eq!(got["seq"], want, "{got}");
            }
            // Alice hears 306 for each, as it reaches bob's socket.
            loop {
                let v = a.ws.recv();
                assert_code(&v, 306, "Message Delivered");
                if v["seq"] == seq {
                    break;
                }
            }
            break;
        }
        assert_code(&v, 202, "Stored For Offline Friend");
        assert!(std::time::Instant::now() < deadline, "bob never reachable again");
        std::thread::sleep(Duration::from_millis(250));
    }
    // And the other way round.
    let v = ask(&mut b.ws, json!({"id": "e", "toFriend": a.id, "payload": "back"}));
    assert_code(&v, 200, "Success");
    assert_eq!(a.ws.recv()["payload"], "back");
}

#[test]
fn a_password_change_or_an_erase_ends_the_users_sessions_on_other_nodes() {
    let db = TempDb::new(Kind::Postgres);
    let redis = RedisServer::start();
    let two = "[session]\nmax_devices = 2\n";
    let (na, nb) = (node_with(&db, &redis, "a", two), node_with(&db, &redis, "b", two));
    let ua = User::new("pwa");
    ua.register(&na);
    let mut a1 = Session::login(&na, Via::Plain, &ua);
    let mut a2 = Session::login(&nb, Via::Plain, &ua);
    let body = json!({"id": a1.id, "token": a1.token, "password": ua.password,
                      "new_password": "a new one"});
    assert_code(&post(&na, Via::Plain, "/im/profile/update", &body), 200, "Success");
    assert_code(&a2.ws.recv(), 513, "Login In Other Place");
    assert_eq!(a2.ws.expect_close(), Some(1000));
    for n in [&na, &nb] {
        let v = get(n, Via::Plain, &format!("/im/friends/list?{}", a2.auth()));
        assert_code(&v, 515, "Auth Illegal");
    }
    a1.ws.expect_silence(Duration::from_millis(300));

    let ub = User::new("era");
    ub.register(&na);
    let b1 = Session::login(&na, Via::Plain, &ub);
    let mut b2 = Session::login(&nb, Via::Plain, &ub);
    let body = json!({"id": b1.id, "token": b1.token, "password": ub.password});
    assert_code(&post(&na, Via::Plain, "/im/erase", &body), 200, "Success");
    assert_eq!(b2.ws.expect_close(), Some(1000));
    let v = get(&nb, Via::Plain, &format!("/im/friends/list?{}", b2.auth()));
    assert_code(&v, 515, "Auth Illegal");
}

#[test]
fn max_devices_holds_across_nodes_the_oldest_session_is_replaced() {
    let db = TempDb::new(Kind::Postgres);
    let redis = RedisServer::start();
    // The test configuration allows one device.
    let (na, nb) = (node(&db, &redis, "a"), node(&db, &redis, "b"));
    let (mut a, mut b, ub) = friends_across(&na, &nb, "dev");
    // Bob logs in again, on node A: his session on B gets 513 and closes; alice hears
    // 302 (with one device a replacement is announced) and no 300.
    let mut b2 = Session::login(&na, Via::Plain, &ub);
    assert_code(&b.ws.recv(), 513, "Login In Other Place");
    assert_eq!(b.ws.expect_close(), Some(1000));
    assert_code(&a.ws.recv(), 302, "Friend Online");
    a.ws.expect_silence(Duration::from_millis(300));
    for n in [&na, &nb] {
        let v = get(n, Via::Plain, &format!("/im/friends/list?{}", b.auth()));
        assert_code(&v, 515, "Auth Illegal");
        let v = get(n, Via::Plain, &format!("/im/friends/list?{}", b2.auth()));
        assert_code(&v, 200, "Success");
    }
    let v = ask(&mut a.ws, json!({"id": "d", "toFriend": b2.id, "payload": "x"}));
    assert_code(&v, 200, "Success");
    assert_eq!(b2.ws.recv()["payload"], "x");
}

/// A kept message written straight into the store, as a node writes one whose publish
/// never reached the others (pub/sub is at most once).
fn stored_without_publish(db: &TempDb, from: &str, to: &str, payload: &str) -> i64 {
    let message = store::NewHistoryMessage {
        from_id: from.to_string(),
        to_id: to.to_string(),
        dialogue_id: "lost".to_string(),
        cid: None,
        payload: payload.to_string(),
        ts_ms: 1,
        live: true,
    };
    match db.open().append_messages(&[message]).expect("stored")[..] {
        [store::Appended::New { seq }] => seq,
        ref other => panic!("{other:?}"),
    }
}

/// Frames on `ws` up to and including the first that `last` accepts, less the 306s,
/// which are returned apart.
#[track_caller]
fn frames_until(
    ws: &mut Ws,
    last: impl Fn(&serde_json::Value) -> bool,
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let (mut frames, mut delivered) = (Vec::new(), Vec::new());
    loop {
        let v = ws.recv();
        if v["code"] == 306 {
            delivered.push(v);
            continue;
        }
        let done = last(&v);
        frames.push(v);
        if done {
            return (frames, delivered);
        }
    }
}

/// 306s on `ws` (some may have come already, in `seen`) until one names `seq`.
#[track_caller]
fn delivered_up_to(ws: &mut Ws, seen: &[serde_json::Value], id: &str, seq: i64) {
    let mut all = seen.to_vec();
    while !all.iter().any(|d| d["seq"] == seq) {
        let v = ws.recv();
        assert_code(&v, 306, "Message Delivered");
        all.push(v);
    }
    for d in &all {
        assert_eq!(d["id"], id, "{d}");
        assert!(d["seq"].as_i64().is_some_and(|s| s <= seq), "{d}");
    }
}

#[test]
fn a_gap_left_by_a_lost_publish_is_filled_from_the_store_in_seq_order() {
    let db = TempDb::new(Kind::Postgres);
    let redis = RedisServer::start();
    let (na, nb) = (node(&db, &redis, "a"), node(&db, &redis, "b"));
    let (mut a, mut b, _) = friends_across(&na, &nb, "gap");
    exchange(&mut a, &mut b, 1);
    // 2 (alice's) and 3 (bob's, from a session elsewhere) were committed by a node
    // whose publishes were lost: neither session has them.
    assert_eq!(stored_without_publish(&db, &a.id, &b.id, "lost2"), 2);
    assert_eq!(stored_without_publish(&db, &b.id, &a.id, "lost3"), 3);

    // Alice sends 4 from node A. Her own session is at 1: 2 (a copy of hers) and 3
    // come from the store before her 200 for 4.
    a.ws.send_json(&json!({"id": "d4", "toFriend": b.id, "payload": "m4"}));
    let (got, delivered_a) = frames_until(&mut a.ws, |v| v["code"] == 200);
    let seqs: Vec<_> = got.iter().map(|v| v["seq"].as_i64()).collect();
    assert_eq!(seqs, [Some(2), Some(3), Some(4)], "{got:?}");
    assert_eq!((got[0]["payload"].as_str(), got[0]["to"].as_str()), (Some("lost2"), Some(&*b.id)));
    assert_eq!(
        (got[1]["payload"].as_str(), got[1]["from"].as_str()),
        (Some("lost3"), Some(&*b.id))
    );

    // Bob, on node B, gets 2 and 3 (his own, with `to`) from the store, then 4 from
    // the bus: every seq, in order.
    let (got, delivered_b) = frames_until(&mut b.ws, |v| v["seq"] == 4);
    let seqs: Vec<_> = got.iter().map(|v| v["seq"].as_i64()).collect();
    assert_eq!(seqs, [Some(2), Some(3), Some(4)], "{got:?}");
    assert_eq!(
        (got[0]["payload"].as_str(), got[0]["from"].as_str()),
        (Some("lost2"), Some(&*a.id))
    );
    assert_eq!((got[1]["payload"].as_str(), got[1]["to"].as_str()), (Some("lost3"), Some(&*a.id)));
    assert_eq!(got[2]["payload"], "m4");

    // The marks moved for what reached the sockets: bob's to 4, alice's to 3 (filled).
    delivered_up_to(&mut a.ws, &delivered_a, &b.id, 4);
    delivered_up_to(&mut b.ws, &delivered_b, &a.id, 3);
    // And nothing comes twice.
    exchange(&mut b, &mut a, 5);
    a.ws.expect_silence(Duration::from_millis(300));
    b.ws.expect_silence(Duration::from_millis(300));
}

/// A conversation begun after both logins is not in the sessions' places yet: the
/// first frame a session gets in it may be the reply to its own seq 2, which overtook
/// the peer's seq 1 still on its way from the other node. Seq 1 reaches it from the
/// store before that reply, and the late frame is not sent twice. (Before, the unknown
/// conversation started at 2 and the late seq 1 was dropped as had.)
#[test]
fn a_first_message_overtaken_by_the_reply_to_the_second_is_filled_from_the_store() {
    let db = TempDb::new(Kind::Postgres);
    let redis = RedisServer::start();
    let (na, nb) = (node(&db, &redis, "a"), node(&db, &redis, "b"));
    let (mut a, mut b, _) = friends_across(&na, &nb, "first");
    // Alice's seq 1, committed by a node whose publish has not reached node B.
    assert_eq!(stored_without_publish(&db, &a.id, &b.id, "first1"), 1);
    b.ws.send_json(&json!({"id": "d2", "toFriend": a.id, "payload": "m2"}));
    let (got, _) = frames_until(&mut b.ws, |v| v["code"] == 200);
    let seqs: Vec<_> = got.iter().map(|v| v["seq"].as_i64()).collect();
    assert_eq!(seqs, [Some(1), Some(2)], "{got:?}");
    assert_eq!(
        (got[0]["payload"].as_str(), got[0]["from"].as_str()),
        (Some("first1"), Some(&*a.id))
    );
    // Alice's session did not send 1 (as if another session of hers did): it gets 1
    // as a copy, from the store, then bob's 2 from the bus.
    let (got, delivered_a) = frames_until(&mut a.ws, |v| v["seq"] == 2);
    assert_eq!(got.iter().map(|v| v["seq"].as_i64()).collect::<Vec<_>>(), [Some(1), Some(2)]);
    assert_eq!(got[0]["to"].as_str(), Some(&*b.id), "{got:?}");
    // Her 1 reached bob's socket: 306.
    delivered_up_to(&mut a.ws, &delivered_a, &b.id, 1);
    let delivered = b.ws.recv();
    assert_code(&delivered, 306, "Message Delivered");
    assert_eq!(delivered["seq"], 2);
    exchange(&mut a, &mut b, 3);
    b.ws.expect_silence(Duration::from_millis(300));
}

#[test]
fn a_conversation_started_again_after_an_unfriending_is_delivered_from_seq_1() {
    let db = TempDb::new(Kind::Postgres);
    let redis = RedisServer::start();
    let (na, nb) = (node(&db, &redis, "a"), node(&db, &redis, "b"));
    let (mut a, mut b, _) = friends_across(&na, &nb, "again");
    exchange(&mut a, &mut b, 1);
    exchange(&mut b, &mut a, 2);
    // The friendship ends (its conversation with it) and starts again: its numbers
    // start at 1, and the sessions' places in the old one must not hide them.
    let r = get(&na, Via::Plain, &format!("/im/friends/remove?{}&to={}", a.auth(), b.id));
    assert_code(&r, 200, "Success");
    assert_code(&b.ws.recv(), 304, "Friend Removed");
    befriend(&na, &mut a, &mut b);
    exchange(&mut a, &mut b, 1);
    exchange(&mut b, &mut a, 2);
}

/// A session with a remembered device (`remember`), and its device token.
fn remembered(s: &impl Listening, u: &User) -> (Session, String) {
    let mut ws = Ws::open(s, Via::Plain, "/im/login");
    ws.send_json(&json!({"account": u.account, "password": u.password, "remember": true}));
    let login = ws.recv();
    assert_code(&login, 200, "Success");
    let device = login["device_token"].as_str().expect("device_token").to_string();
    let id = login["profile"]["id"].as_str().expect("id").to_string();
    let token = login["token"].as_str().expect("token").to_string();
    (Session { ws, id, token, login }, device)
}

#[test]
fn logoff_and_a_password_change_with_a_token_of_a_session_on_another_node() {
    let db = TempDb::new(Kind::Postgres);
    let redis = RedisServer::start();
    let three = "[session]\nmax_devices = 3\n";
    let (na, nb) = (node_with(&db, &redis, "a", three), node_with(&db, &redis, "b", three));
    // Alice's session lives on B; her friend bob is on A.
    let (mut bob, a1, ua) = friends_across(&na, &nb, "off");
    // Logoff through A with forget: 200, her socket on B closes, bob hears 300 (it was
    // her last session), the token is dead on both nodes and so is the device token.
    drop(a1);
    assert_code(&bob.ws.recv(), 300, "Friend Offline");
    let (mut a1, device) = remembered(&nb, &ua);
    assert_code(&bob.ws.recv(), 302, "Friend Online");
    let r = get(&na, Via::Plain, &format!("/im/logoff?{}&forget=true", a1.auth()));
    assert_code(&r, 200, "Success");
    assert_eq!(a1.ws.expect_close(), Some(1000));
    let off = bob.ws.recv();
    assert_code(&off, 300, "Friend Offline");
    assert_eq!(off["id"], a1.id.as_str());
    bob.ws.expect_silence(Duration::from_millis(300));
    for n in [&na, &nb] {
        let v = get(n, Via::Plain, &format!("/im/friends/list?{}", a1.auth()));
        assert_code(&v, 515, "Auth Illegal");
    }
    let mut ws = Ws::open(&na, Via::Plain, "/im/login");
    ws.send_json(&json!({"account": ua.account, "device_token": device}));
    assert_code(&ws.recv(), 505, "Account & Password Wrong");

    // A password change through A with the token of her session on B: that session
    // lives on, her others (one on A, one on B) get 513 and close.
    let mut keep = Session::login(&nb, Via::Plain, &ua);
    assert_code(&bob.ws.recv(), 302, "Friend Online");
    let mut here = Session::login(&na, Via::Plain, &ua);
    let mut there = Session::login(&nb, Via::Plain, &ua);
    let body = json!({"id": keep.id, "token": keep.token, "password": ua.password,
                      "new_password": "a new one"});
    assert_code(&post(&na, Via::Plain, "/im/profile/update", &body), 200, "Success");
    for s in [&mut here, &mut there] {
        assert_code(&s.ws.recv(), 513, "Login In Other Place");
        assert_eq!(s.ws.expect_close(), Some(1000));
    }
    for n in [&na, &nb] {
        for s in [&here, &there] {
            let v = get(n, Via::Plain, &format!("/im/friends/list?{}", s.auth()));
            assert_code(&v, 515, "Auth Illegal");
        }
        let v = get(n, Via::Plain, &format!("/im/friends/list?{}", keep.auth()));
        assert_code(&v, 200, "Success");
    }
    keep.ws.expect_silence(Duration::from_millis(300));
    // Bob hears the profile update, and nothing else: she stays online.
    assert_code(&bob.ws.recv(), 301, "Refresh Friend's Profile");
    bob.ws.expect_silence(Duration::from_millis(100));
    // The new password logs in; the kept session still talks to bob.
    let ua = User { password: "a new one".to_string(), ..ua };
    Session::login(&na, Via::Plain, &ua);
    let v = ask(&mut keep.ws, json!({"id": "d", "toFriend": bob.id, "payload": "still here"}));
    assert_code(&v, 200, "Success");
}

/// The code of a login over a fresh socket with `password`.
fn login_code(n: &impl Listening, account: &str, password: &str) -> serde_json::Value {
    let mut ws = Ws::open(n, Via::Plain, "/im/login");
    ws.send_json(&json!({"account": account, "password": password}));
    ws.recv()["code"].clone()
}

#[test]
fn per_ip_budgets_hold_across_nodes() {
    let db = TempDb::new(Kind::Postgres);
    let redis = RedisServer::start();
    let four = "[rate_limit]\nregister_per_min = 4\nquery_per_min = 4\nlogin_fail_per_min = 4\n";
    let (na, nb) = (node_with(&db, &redis, "a", four), node_with(&db, &redis, "b", four));
    // Registrations: two on each node spend the client's four; the fifth is refused
    // on either.
    let users: Vec<User> = (0..5).map(|i| User::new(&format!("ipb{i}"))).collect();
    for (u, n) in users[..4].iter().zip([&na, &nb, &na, &nb]) {
        u.register(n);
    }
    let body = json!({"account": users[4].account, "password": users[4].password});
    for n in [&na, &nb] {
        assert_code(&post(n, Via::Plain, "/im/register", &body), 524, "Too Many Requests");
    }
    // Queries the same way.
    for n in [&na, &nb, &na, &nb] {
        let v = get(n, Via::Plain, &format!("/im/query?account={}", users[0].account));
        assert_code(&v, 200, "Success");
    }
    let v = get(&na, Via::Plain, &format!("/im/query?account={}", users[0].account));
    assert_code(&v, 524, "Too Many Requests");
    // Failed logins: two wrong passwords on each node; then even the right one is
    // refused without a check, on either node. A right one before that costs nothing.
    let u = &users[0];
    assert_eq!(login_code(&na, &u.account, &u.password), 200);
    for n in [&na, &nb, &na, &nb] {
        assert_eq!(login_code(n, &u.account, "wrong"), 505);
    }
    for n in [&na, &nb] {
        assert_eq!(login_code(n, &u.account, &u.password), 524);
    }
}

#[test]
fn with_postgresql_down_sends_answer_500_and_imd_recovers_when_it_is_back() {
    let pg = PgServer::start();
    let url = pg.create_db();
    let redis = RedisServer::start();
    let (na, nb) = (node_on(&url, &redis, "a", ""), node_on(&url, &redis, "b", ""));
    let (mut a, mut b, _) = friends_across(&na, &nb, "pgd");
    exchange(&mut a, &mut b, 1);

    pg.stop();
    // Nothing is acked: each send answers 500 (with its id), no frame goes anywhere.
    let (a_id, b_id) = (a.id.clone(), b.id.clone());
    for (from, to) in [(&mut a, &b_id), (&mut b, &a_id)] {
        let v = ask(&mut from.ws, json!({"id": "down", "toFriend": to, "payload": "lost"}));
        assert_code(&v, 500, "Internal Server Error");
        assert_eq!(v["id"], "down");
    }
    let v = get(&na, Via::Plain, &format!("/im/friends/list?{}", a.auth()));
    assert_code(&v, 500, "Internal Server Error");
    a.ws.expect_silence(Duration::from_millis(200));
    b.ws.expect_silence(Duration::from_millis(200));

    pg.resume();
    // Without a restart of imd: its connections are opened again on their next use.
    // The first operation of each may still find its old connection cut.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let v = ask(&mut a.ws, json!({"id": "back", "toFriend": b.id, "payload": "m2"}));
        if v["code"] == 200 {
            assert_eq!(v["seq"], 2, "the failed sends took no number: {v}");
            break;
        }
        assert_code(&v, 500, "Internal Server Error");
        assert!(std::time::Instant::now() < deadline, "sends never recovered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = b.ws.recv();
    assert_eq!((got["seq"].as_i64(), got["payload"].as_str()), (Some(2), Some("m2")));
    assert_code(&a.ws.recv(), 306, "Message Delivered");
    exchange(&mut b, &mut a, 3);
    for n in [&na, &nb] {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while get(n, Via::Plain, &format!("/im/friends/list?{}", a.auth()))["code"] != 200 {
            assert!(std::time::Instant::now() < deadline, "requests never recovered");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Alice logs in on node A while Redis holds every write back (`CLIENT PAUSE WRITE`):
/// her login reply comes only once her session is registered in the cluster, so what
/// another node sends her from then on (here bob's request from node B, a 520) finds
/// her. Before, the reply went out first and a push in that gap was lost.
#[test]
fn a_session_is_registered_in_the_cluster_before_its_login_reply() {
    let db = TempDb::new(Kind::Postgres);
    let redis = RedisServer::start();
    // No failed-login budget: the login writes nothing to Redis but the session.
    let extra = "[rate_limit]\nlogin_fail_per_min = 0\n";
    let (na, nb) = (node_with(&db, &redis, "a", extra), node_with(&db, &redis, "b", extra));
    let (ua, ub) = (User::new("rga"), User::new("rgb"));
    ua.register(&na);
    ub.register(&na);
    let b = Session::login(&nb, Via::Plain, &ub);
    let mut r = redis::Client::open(redis.url()).expect("url").get_connection().expect("redis");
    let pause = |r: &mut redis::Connection, on: bool| {
        let cmd = if on {
            redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("WRITE").clone()
        } else {
            redis::cmd("CLIENT").arg("UNPAUSE").clone()
        };
        cmd.query::<()>(r).expect("client pause");
    };
    pause(&mut r, true);
    let mut a = Session::login(&na, Via::Plain, &ua);
    let registered: bool =
        redis::cmd("EXISTS").arg(format!("imd:token:{}", a.token)).query(&mut r).expect("exists");
    pause(&mut r, false);
    assert!(registered, "the login reply went out before the session was registered");
    let v = get(&nb, Via::Plain, &format!("/im/friends/request?{}&to={}&note=hi", b.auth(), a.id));
    assert_code(&v, 200, "Success");
    assert_code(&a.ws.recv(), 520, "Apply For a Friend");
}
