//! docs/protocol.md §6: send frames and their codes in order, receive frames, offline
//! storage, ordering and loss over 1,000 messages each way, plain and TLS.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn pair(s: &TestServer, via: Via, tag: &str) -> (Session, Session, User, User) {
    let (ua, ub) = (User::new(&format!("{tag}a")), User::new(&format!("{tag}b")));
    ua.register(s);
    ub.register(s);
    let mut a = Session::login(s, via, &ua);
    let mut b = Session::login(s, via, &ub);
    befriend(s, &mut a, &mut b);
    (a, b, ua, ub)
}

#[test]
fn send_codes_in_order() {
    let s = TestServer::start_with("[limits]\npayload_bytes = 100\n");
    for via in [Via::Plain, Via::Tls] {
        let (mut a, mut b, _, _) = pair(&s, via, "codes");
        let stranger = User::new("stranger");
        stranger.register(&s);
        let x = Session::login(&s, via, &stranger);
        fn ask(ws: &mut Ws, frame: Value) -> Value {
            ws.send_json(&frame);
            ws.recv()
        }
        // Binary → 509, the session stays open.
        a.ws.ws.send(tungstenite::Message::binary(vec![1, 2, 3])).expect("send");
        assert_code(&a.ws.recv(), 509, "Payload Must Be Text");
        let v = ask(&mut a.ws, json!([1]));
        assert_eq!(v, json!({"code":403,"message":"Protocol Error","ok":false}));
        let v = ask(&mut a.ws, json!({"id": "7", "toFriend": 5, "payload": "p"}));
        assert_eq!(v, json!({"code":403,"message":"Protocol Error","ok":false,"id":"7"}));
        let v = ask(&mut a.ws, json!({"id": "1", "toFriend": " ", "payload": ""}));
        assert_eq!(v, json!({"code":510,"message":"Friend ID Empty","ok":false,"id":"1"}));
        let v = ask(&mut a.ws, json!({"toFriend": b.id, "payload": " \n "}));
        assert_eq!(v, json!({"code":511,"message":"Payload Empty","ok":false}));
        let v = ask(&mut a.ws, json!({"toFriend": b.id, "payload": "hi", "id": ""}));
        assert_eq!(v, json!({"code":506,"message":"Dialogue ID Empty","ok":false}));
        let v = ask(&mut a.ws, json!({"toFriend": b.id, "payload": "x".repeat(101), "id": "2"}));
        assert_eq!(v, json!({"code":527,"message":"Field Too Long","ok":false,"id":"2"}));
        let v = ask(&mut a.ws, json!({"toFriend": x.id, "payload": "hi", "id": "3"}));
        assert_eq!(v, json!({"code":512,"message":"Not Relation of Friend","ok":false,"id":"3"}));
        let v = ask(
            &mut a.ws,
            json!({"toFriend": b.id, "payload": "  hi there  ", "id": "4", "extra": [1]}),
        );
        assert_eq!(v, json!({"code":200,"message":"Success","ok":true,"id":"4"}));
        let got = b.ws.recv();
        assert_eq!(got["id"], "4");
        assert_eq!(got["from"], a.id.as_str());
        assert_eq!(got["payload"], "  hi there  ", "payloads are not trimmed");
        let ts = got["ts"].as_i64().expect("ts");
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
        assert!((now.as_millis() as i64 - ts).abs() < 60_000, "ts is unix ms");
        // Offline friend without storage → 508.
        let b_id = b.id.clone();
        drop(b);
        assert_code(&a.ws.recv(), 300, "Friend Offline");
        let v = ask(&mut a.ws, json!({"toFriend": b_id, "payload": "hi", "id": "5"}));
        assert_eq!(v, json!({"code":508,"message":"Friend Is Offline","ok":false,"id":"5"}));
    }
}

#[test]
fn send_rate_limit_is_524_with_id() {
    let s = TestServer::start_with("[rate_limit]\nsend_per_s = 1\nsend_burst = 2\n");
    let (mut a, mut b, _, _) = pair(&s, Via::Plain, "rate");
    let mut codes = Vec::new();
    for i in 0..4 {
        a.ws.send_json(&json!({"toFriend": b.id, "payload": "p", "id": i.to_string()}));
        let v = a.ws.recv();
        assert_eq!(v["id"], i.to_string());
        codes.push(v["code"].as_u64().unwrap_or(0));
    }
    assert_eq!(codes[..2], [200, 200]);
    assert!(codes[2..].contains(&524), "{codes:?}");
    assert_eq!(b.ws.recv()["payload"], "p");
}

#[test]
fn offline_messages_are_stored_and_delivered_in_order() {
    let s = TestServer::start_with("[history]\nenabled = true\n");
    for via in [Via::Plain, Via::Tls] {
        let (mut a, b, _, ub) = pair(&s, via, "off");
        let b_id = b.id.clone();
        drop(b);
        assert_code(&a.ws.recv(), 300, "Friend Offline");
        for i in 0..50 {
            a.ws.send_json(
                &json!({"toFriend": b_id, "payload": format!("m{i}"), "id": format!("d{i}")}),
            );
            let mut v = a.ws.recv();
            assert!(v["ts"].as_i64().is_some(), "{v}");
            v.as_object_mut().expect("reply").remove("ts");
            assert_eq!(
                v,
                json!({"code":202,"message":"Stored For Offline Friend","ok":true,"id":format!("d{i}"),"seq":i + 1})
            );
        }
        let mut b = Session::login(&s, via, &ub);
        for i in 0..50 {
            let m = b.ws.recv();
            assert_eq!(m["payload"], format!("m{i}"));
            assert_eq!(m["id"], format!("d{i}"));
            assert_eq!(m["from"], a.id.as_str());
        }
        b.ws.expect_silence(Duration::from_millis(200));
        // Delivered once: a second login gets nothing more.
        drop(b);
        assert_code(&a.ws.recv(), 302, "Friend Online");
        assert_code(&a.ws.recv(), 306, "Message Delivered");
        assert_code(&a.ws.recv(), 300, "Friend Offline");
        let mut b = Session::login(&s, via, &ub);
        b.ws.expect_silence(Duration::from_millis(300));
    }
}

/// Sends `n` messages to `peer` as fast as the socket takes them, starting when every
/// other sender is ready, and reads what comes back: acks in order, and `peer`'s
/// messages, which it returns.
fn exchange(
    mut me: Session,
    peer: String,
    n: usize,
    start: Arc<Barrier>,
) -> std::thread::JoinHandle<Vec<usize>> {
    std::thread::spawn(move || {
        let mut acks = 0;
        let mut received = Vec::new();
        start.wait();
        for i in 0..n {
            me.ws.send_json(
                &json!({"toFriend": peer, "payload": format!("{i}"), "id": format!("{i}")}),
            );
        }
        while acks < n || received.len() < n {
            let v = me.ws.recv();
            if v.get("from").is_some() {
                assert_eq!(v["from"], peer.as_str());
                received.push(v["payload"].as_str().expect("payload").parse::<usize>().expect("n"));
            } else {
                assert_eq!(v["code"], 200, "{v}");
                assert_eq!(v["id"], acks.to_string(), "acks in order");
                acks += 1;
            }
        }
        received
    })
}

/// Every pair exchanges `n` messages each way at once; each side gets all of its
/// peer's, in order, once.
fn exchange_all(pairs: Vec<(Session, Session)>, n: usize) {
    let start = Arc::new(Barrier::new(pairs.len() * 2));
    let mut threads = Vec::new();
    for (a, b) in pairs {
        let (a_id, b_id) = (a.id.clone(), b.id.clone());
        threads.push(exchange(a, b_id, n, start.clone()));
        threads.push(exchange(b, a_id, n, start.clone()));
    }
    for t in threads {
        let received = t.join().expect("peer");
        assert_eq!(received, (0..n).collect::<Vec<_>>(), "no loss, no duplicate, in order");
    }
}

#[test]
fn a_thousand_messages_each_way_in_order() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        let (a, b, _, _) = pair(&s, via, "bulk");
        exchange_all(vec![(a, b)], 1000);
    }
}

/// More busy connections than the event loop serves before it hands jobs and replies
/// over mid-pass, all sending at once.
#[test]
fn sixty_pairs_at_once_each_in_order() {
    let s = TestServer::start();
    let pairs = (0..60)
        .map(|k| {
            let via = if k % 2 == 0 { Via::Plain } else { Via::Tls };
            let (a, b, _, _) = pair(&s, via, &format!("many{k}"));
            (a, b)
        })
        .collect();
    exchange_all(pairs, 100);
}

#[test]
fn ending_a_friendship_ends_the_dialogue_at_once() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        let (mut a, mut b, _, _) = pair(&s, via, "ended");
        let to = b.id.clone();
        let send = |a: &mut Session, id: &str| {
            a.ws.send_json(&json!({"toFriend": to, "payload": "hi", "id": id}));
            a.ws.recv()["code"].as_u64()
        };
        assert_eq!(send(&mut a, "1"), Some(200));
        assert_eq!(b.ws.recv()["payload"], "hi");
        let r = get(&s, via, &format!("/im/friends/remove?{}&to={}", b.auth(), a.id));
        assert_code(&r, 200, "Success");
        assert_code(&a.ws.recv(), 304, "Friend Removed");
        assert_eq!(send(&mut a, "2"), Some(512), "no longer friends");
        befriend(&s, &mut a, &mut b);
        assert_eq!(send(&mut a, "3"), Some(200), "friends again");
    }
}
