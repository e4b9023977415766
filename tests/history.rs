//! docs/protocol.md §10: conversations that are kept. Send with `cid` (200/202, 527, 529,
//! check order), receive frames with `seq`, delivery at login and 306, read marks and
//! 307, typing and 308, `/im/messages`, friend entries, remove, and the group commit's
//! batch metrics; plain and TLS. With history off, the seed's behaviour.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ON: &str = "[history]\nenabled = true\n";

fn server(extra: &str) -> TestServer {
    TestServer::start_with(&format!("{ON}{extra}"))
}

fn pair(s: &TestServer, via: Via, tag: &str) -> (Session, Session, User, User) {
    let (ua, ub) = (User::new(&format!("{tag}a")), User::new(&format!("{tag}b")));
    ua.register(s);
    ub.register(s);
    let mut a = Session::login(s, via, &ua);
    let mut b = Session::login(s, via, &ub);
    befriend(s, &mut a, &mut b);
    (a, b, ua, ub)
}

fn ask(ws: &mut Ws, frame: Value) -> Value {
    ws.send_json(&frame);
    ws.recv()
}

fn without_ts(mut v: Value) -> (Value, i64) {
    let ts = v["ts"].as_i64().expect("ts");
    v.as_object_mut().expect("object").remove("ts");
    (v, ts)
}

#[test]
fn send_with_cid_acks_after_commit_and_resends_are_answered_not_stored() {
    let s = server("");
    for via in [Via::Plain, Via::Tls] {
        let (mut a, mut b, _, _) = pair(&s, via, "cid");
        let frame = json!({"id": "d1", "toFriend": b.id, "payload": " hi ", "cid": "c-1"});
        let (first, ts) = without_ts(ask(&mut a.ws, frame.clone()));
        assert_eq!(
            first,
            json!({"code":200,"message":"Success","ok":true,"id":"d1","seq":1,"cid":"c-1"})
        );
        let got = b.ws.recv();
        assert_eq!(
            got,
            json!({"id":"d1","from":a.id,"payload":" hi ","ts":ts,"seq":1,"cid":"c-1"})
        );
        assert_eq!(
            a.ws.recv(),
            json!({"code":306,"message":"Message Delivered","ok":true,"id":b.id,"seq":1})
        );
        // The same cid, toFriend and payload: the original reply, nothing delivered again.
        let again = ask(&mut a.ws, frame);
        assert_eq!(without_ts(again), (first.clone(), ts));
        b.ws.expect_silence(Duration::from_millis(200));
        // The same cid for another message: 529, with the frame's id.
        let v =
            ask(&mut a.ws, json!({"id": "d2", "toFriend": b.id, "payload": "other", "cid": "c-1"}));
        assert_eq!(v, json!({"code":529,"message":"Message ID Reused","ok":false,"id":"d2"}));
        let v = ask(
            &mut a.ws,
            json!({"id": "d3", "toFriend": b.id, "payload": "x", "cid": "c".repeat(65)}),
        );
        assert_eq!(v, json!({"code":527,"message":"Field Too Long","ok":false,"id":"d3"}));
        let v = ask(&mut a.ws, json!({"id": "d4", "toFriend": b.id, "payload": "x", "cid": 5}));
        assert_eq!(v, json!({"code":403,"message":"Protocol Error","ok":false,"id":"d4"}));
        // An empty cid is absent; a 64-character one is fine; cids are per sender.
        let (v, _) = without_ts(ask(
            &mut a.ws,
            json!({"id": "d5", "toFriend": b.id, "payload": "x", "cid": " "}),
        ));
        assert_eq!(v, json!({"code":200,"message":"Success","ok":true,"id":"d5","seq":2}));
        assert!(b.ws.recv().get("cid").is_none());
        a.ws.recv();
        let long = "é".repeat(64);
        let (v, _) = without_ts(ask(
            &mut a.ws,
            json!({"id": "d6", "toFriend": b.id, "payload": "x", "cid": long}),
        ));
        assert_eq!(v["seq"], 3);
        b.ws.recv();
        a.ws.recv();
        let (v, _) = without_ts(ask(
            &mut b.ws,
            json!({"id": "e1", "toFriend": a.id, "payload": "back", "cid": "c-1"}),
        ));
        assert_eq!(
            v,
            json!({"code":200,"message":"Success","ok":true,"id":"e1","seq":4,"cid":"c-1"})
        );
        assert_eq!(a.ws.recv()["seq"], 4);
        assert_code(&b.ws.recv(), 306, "Message Delivered");
    }
}

#[test]
fn the_rate_limit_is_checked_before_the_cid() {
    let s = server("[rate_limit]\nsend_per_s = 1\nsend_burst = 1\n");
    let (mut a, b, _, _) = pair(&s, Via::Plain, "order");
    let v = ask(&mut a.ws, json!({"id": "1", "toFriend": b.id, "payload": "x", "cid": "k"}));
    assert_code(&v, 200, "Success");
    a.ws.recv();
    let v =
        ask(&mut a.ws, json!({"id": "2", "toFriend": b.id, "payload": "x", "cid": "k".repeat(65)}));
    assert_eq!(v, json!({"code":524,"message":"Too Many Requests","ok":false,"id":"2"}));
    // The field checks of §6.1 still come first.
    let v = ask(&mut a.ws, json!({"id": "3", "toFriend": b.id, "payload": "", "cid": "k"}));
    assert_code(&v, 511, "Payload Empty");
}

#[test]
fn replies_keep_frame_order_across_the_writer() {
    let s = server("");
    for via in [Via::Plain, Via::Tls] {
        let (mut a, mut b, _, _) = pair(&s, via, "ord");
        for i in 0..60 {
            a.ws.send_json(&json!({"id": format!("m{i}"), "toFriend": b.id, "payload": "p", "cid": format!("o{i}")}));
            if i % 10 == 0 {
                a.ws.send_json(&json!({"type": "heartbeat"}));
            }
        }
        let mut seq = 0;
        let mut beats = 0;
        let mut delivered = 0;
        while seq < 60 || beats < 6 {
            let v = a.ws.recv();
            match v["code"].as_u64() {
                Some(306) => delivered = v["seq"].as_i64().unwrap(),
                Some(200) if v["type"] == "heartbeat" => {
                    beats += 1;
                    assert_eq!(beats, seq / 10 + 1, "a heartbeat answered in its frame's place");
                }
                Some(200) => {
                    assert_eq!(v["id"], format!("m{seq}"));
                    seq += 1;
                    assert_eq!(v["seq"], seq);
                }
                _ => panic!("{v}"),
            }
        }
        for i in 1..=60 {
            assert_eq!(b.ws.recv()["seq"], i);
        }
        while delivered < 60 {
            delivered = a.ws.recv()["seq"].as_i64().unwrap();
        }
    }
}

#[test]
fn offline_friends_get_202_then_the_backlog_at_login_with_306() {
    let s = server("");
    for via in [Via::Plain, Via::Tls] {
        let (mut a, b, _, ub) = pair(&s, via, "off");
        let b_id = b.id.clone();
        drop(b);
        assert_code(&a.ws.recv(), 300, "Friend Offline");
        let mut first = None;
        for i in 0..3 {
            let v = ask(
                &mut a.ws,
                json!({"toFriend": b_id, "payload": format!("m{i}"), "id": format!("d{i}"), "cid": format!("k{i}")}),
            );
            let (v, ts) = without_ts(v);
            assert_eq!(
                v,
                json!({"code":202,"message":"Stored For Offline Friend","ok":true,"id":format!("d{i}"),"seq":i + 1,"cid":format!("k{i}")})
            );
            first.get_or_insert(ts);
        }
        let mut b = Session::login(&s, via, &ub);
        let entry = &b.login["friends"][0];
        assert_eq!(
            (entry["last_seq"].as_i64(), entry["read_seq"].as_i64(), entry["unread"].as_i64()),
            (Some(3), Some(0), Some(3))
        );
        for i in 0..3 {
            let m = b.ws.recv();
            assert_eq!(m["payload"], format!("m{i}"));
            assert_eq!(m["seq"], i + 1);
            assert_eq!(m["cid"], format!("k{i}"));
            assert_eq!(m["from"], a.id.as_str());
        }
        b.ws.expect_silence(Duration::from_millis(200));
        assert_code(&a.ws.recv(), 302, "Friend Online");
        assert_eq!(
            a.ws.recv(),
            json!({"code":306,"message":"Message Delivered","ok":true,"id":b_id,"seq":3})
        );
        // The original reply of a resend is still 202, with its seq and ts.
        let v =
            ask(&mut a.ws, json!({"toFriend": b_id, "payload": "m0", "id": "again", "cid": "k0"}));
        assert_eq!(v["code"], 202);
        assert_eq!((v["seq"].as_i64(), v["ts"].as_i64()), (Some(1), first));
        // Delivered once: a second login gets nothing more.
        drop(b);
        assert_code(&a.ws.recv(), 300, "Friend Offline");
        let mut b = Session::login(&s, via, &ub);
        b.ws.expect_silence(Duration::from_millis(300));
    }
}

#[test]
fn the_login_backlog_is_bounded() {
    let s = TestServer::start_with("[history]\nenabled = true\nlogin_backlog = 2\n");
    let (mut a, b, _, ub) = pair(&s, Via::Plain, "bound");
    let b_id = b.id.clone();
    drop(b);
    a.ws.recv();
    for i in 0..5 {
        let v = ask(&mut a.ws, json!({"toFriend": b_id, "payload": format!("m{i}"), "id": "d"}));
        assert_code(&v, 202, "Stored For Offline Friend");
    }
    let mut b = Session::login(&s, Via::Plain, &ub);
    assert_eq!(b.ws.recv()["seq"], 1);
    assert_eq!(b.ws.recv()["seq"], 2);
    b.ws.expect_silence(Duration::from_millis(200));
    let page = get(&s, Via::Plain, &format!("/im/messages?{}&with={}&after=2", b.auth(), a.id));
    let seqs: Vec<_> =
        page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![3, 4, 5]);
}

#[test]
fn read_marks_and_typing() {
    let s = server("");
    for via in [Via::Plain, Via::Tls] {
        let (mut a, mut b, _, _) = pair(&s, via, "read");
        let stranger = User::new("readx");
        stranger.register(&s);
        let x = Session::login(&s, via, &stranger);
        for i in 0..3 {
            assert_code(
                &ask(&mut a.ws, json!({"toFriend": b.id, "payload": "p", "id": format!("{i}")})),
                200,
                "Success",
            );
            a.ws.recv();
            b.ws.recv();
        }
        let read = |w: Value, seq: Value| json!({"type": "read", "with": w, "seq": seq});
        let typed = |code: u64, msg: &str, t: &str| json!({"code": code, "message": msg, "ok": code == 200, "type": t});
        assert_eq!(
            ask(&mut b.ws, read(json!(" "), json!(1))),
            typed(519, "Friend Info Empty", "read")
        );
        assert_eq!(
            ask(&mut b.ws, read(json!(x.id), json!(1))),
            typed(512, "Not Relation of Friend", "read")
        );
        // Check order: 519, then 512, then the seq (403); a `with` of the wrong type is 403.
        assert_eq!(
            ask(&mut b.ws, read(json!(""), json!(-1))),
            typed(519, "Friend Info Empty", "read")
        );
        assert_eq!(
            ask(&mut b.ws, read(json!(x.id), json!(-1))),
            typed(512, "Not Relation of Friend", "read")
        );
        assert_eq!(ask(&mut b.ws, read(json!(5), json!(1))), typed(403, "Protocol Error", "read"));
        for bad in [json!(-1), json!("2"), json!(1.5), Value::Null] {
            assert_eq!(
                ask(&mut b.ws, read(json!(a.id), bad)),
                typed(403, "Protocol Error", "read")
            );
        }
        assert_eq!(ask(&mut b.ws, read(json!(a.id), json!(2))), typed(200, "Success", "read"));
        assert_eq!(
            a.ws.recv(),
            json!({"code":307,"message":"Message Read","ok":true,"by":b.id,"with":a.id,"seq":2})
        );
        assert_eq!(ask(&mut b.ws, read(json!(a.id), json!(1))), typed(200, "Success", "read"));
        a.ws.expect_silence(Duration::from_millis(150));
        assert_eq!(ask(&mut b.ws, read(json!(a.id), json!(99))), typed(200, "Success", "read"));
        assert_eq!(a.ws.recv()["seq"], 3, "capped at the conversation's last seq");
        let list = get(&s, via, &format!("/im/friends/list?{}", b.auth()));
        let e = &list["friends"][0];
        assert_eq!(
            (e["last_seq"].as_i64(), e["read_seq"].as_i64(), e["unread"].as_i64()),
            (Some(3), Some(3), Some(0))
        );
        let list = get(&s, via, &format!("/im/friends/list?{}", a.auth()));
        assert_eq!(list["friends"][0]["read_seq"], 0);

        let typing = |to: &str| json!({"type": "typing", "to": to});
        assert_eq!(ask(&mut b.ws, typing("")), typed(519, "Friend Info Empty", "typing"));
        assert_eq!(ask(&mut b.ws, typing(&x.id)), typed(512, "Not Relation of Friend", "typing"));
        assert_eq!(ask(&mut b.ws, typing(&a.id)), typed(200, "Success", "typing"));
        assert_eq!(a.ws.recv(), json!({"code":308,"message":"Friend Typing","ok":true,"id":b.id}));
        // Default limit: 2 per second, burst 5 (one spent above).
        let codes: Vec<u64> =
            (0..5).map(|_| ask(&mut b.ws, typing(&a.id))["code"].as_u64().unwrap()).collect();
        assert_eq!(codes, vec![200, 200, 200, 200, 524]);
        // 512 comes before the limit, 519 before 512.
        assert_eq!(ask(&mut b.ws, typing(&x.id)), typed(512, "Not Relation of Friend", "typing"));
        assert_eq!(ask(&mut b.ws, typing("")), typed(519, "Friend Info Empty", "typing"));
    }
}

#[test]
fn messages_route_checks_and_pages() {
    let s = server("");
    for via in [Via::Plain, Via::Tls] {
        let (mut a, mut b, _, _) = pair(&s, via, "msgs");
        let stranger = User::new("msgx");
        stranger.register(&s);
        let x = Session::login(&s, via, &stranger);
        for i in 0..5 {
            let (from, to) = if i % 2 == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
            let v = ask(
                &mut from.ws,
                json!({"toFriend": to.id, "payload": format!("m{i}"), "id": format!("d{i}"), "cid": format!("c{i}")}),
            );
            assert_code(&v, 200, "Success");
            assert_eq!(to.ws.recv()["seq"], i + 1);
            assert_code(&from.ws.recv(), 306, "Message Delivered");
        }
        assert_code(&ask(&mut a.ws, json!({"type":"read","with":b.id,"seq":4})), 200, "Success");
        let q =
            |extra: &str| get(&s, via, &format!("/im/messages?{}&with={}{extra}", a.auth(), b.id));
        let seqs = |v: &Value| -> Vec<i64> {
            v["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect()
        };
        let all = q("");
        assert_code(&all, 200, "Success");
        assert_eq!(seqs(&all), vec![1, 2, 3, 4, 5]);
        assert_eq!(
            (
                all["first_seq"].as_i64(),
                all["last_seq"].as_i64(),
                all["read_seq"].as_i64(),
                all["peer_read_seq"].as_i64()
            ),
            (Some(1), Some(5), Some(4), Some(0))
        );
        let m = &all["messages"][1];
        assert_eq!(
            (m["id"].as_str(), m["from"].as_str(), m["payload"].as_str(), m["cid"].as_str()),
            (Some("d1"), Some(b.id.as_str()), Some("m1"), Some("c1"))
        );
        assert!(m["ts"].as_i64().is_some());
        assert_eq!(seqs(&q("&after=1&limit=2")), vec![2, 3]);
        assert_eq!(seqs(&q("&before=4&limit=2")), vec![2, 3]);
        assert_eq!(seqs(&q("&limit=2")), vec![4, 5]);
        assert_eq!(seqs(&q("&after=5")), Vec::<i64>::new());
        assert_eq!(q("&after=5")["messages"], json!([]));
        for bad in
            ["&after=1&before=3", "&after=-1", "&before=x", "&limit=0", "&limit=201", "&limit=1.5"]
        {
            assert_code(&q(bad), 403, "Protocol Error");
        }
        let r = post(
            &s,
            via,
            "/im/messages",
            &json!({"id": a.id, "token": a.token, "with": b.id, "after": 3, "limit": 1}),
        );
        assert_eq!(seqs(&r), vec![4]);
        let auth = |extra: &str| get(&s, via, &format!("/im/messages?{extra}"));
        assert_code(&auth(&format!("id={}&with={}", a.id, b.id)), 514, "Auth Info Empty");
        assert_code(&auth(&format!("token={}&with={}", a.token, b.id)), 517, "Account ID Empty");
        assert_code(
            &auth(&format!("id={}&token={}&with={}", a.id, "0".repeat(32), b.id)),
            515,
            "Auth Illegal",
        );
        assert_code(
            &get(&s, via, &format!("/im/messages?{}&with=&limit=0", a.auth())),
            519,
            "Friend Info Empty",
        );
        assert_code(
            &get(&s, via, &format!("/im/messages?{}&with={}&after=x", a.auth(), x.id)),
            512,
            "Not Relation of Friend",
        );
    }
}

#[test]
fn remove_deletes_the_conversation_and_refriending_starts_at_seq_1() {
    let s = server("");
    let (mut a, mut b, _, _) = pair(&s, Via::Plain, "rm");
    for _ in 0..2 {
        assert_code(
            &ask(&mut a.ws, json!({"toFriend": b.id, "payload": "p", "id": "1"})),
            200,
            "Success",
        );
        a.ws.recv();
        b.ws.recv();
    }
    let r = get(&s, Via::Plain, &format!("/im/friends/remove?{}&to={}", a.auth(), b.id));
    assert_code(&r, 200, "Success");
    assert_code(&b.ws.recv(), 304, "Friend Removed");
    assert_code(
        &ask(&mut a.ws, json!({"toFriend": b.id, "payload": "p", "id": "1"})),
        512,
        "Not Relation of Friend",
    );
    befriend(&s, &mut a, &mut b);
    let v = ask(&mut a.ws, json!({"toFriend": b.id, "payload": "again", "id": "2"}));
    assert_eq!(v["seq"], 1);
    let page = get(&s, Via::Plain, &format!("/im/messages?{}&with={}", b.auth(), a.id));
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    assert_eq!(page["first_seq"], 1);
}

/// Store operations so far, from `/im/metrics`.
fn store_ops(s: &TestServer) -> u64 {
    metric(s, "imd_store_op_seconds_count")
}

#[test]
fn a_page_read_again_comes_from_memory_and_shows_every_change_announced() {
    let s = server("");
    let (mut a, mut b, _, _) = pair(&s, Via::Plain, "page");
    let send = |from: &mut Session, to: &mut Session, i: u64| {
        let v =
            ask(&mut from.ws, json!({"toFriend": to.id, "payload": format!("m{i}"), "id": "d"}));
        assert_code(&v, 200, "Success");
        assert_eq!(to.ws.recv()["seq"], i);
        // The receiver's mark is committed before 306: nothing is left to write.
        assert_code(&from.ws.recv(), 306, "Message Delivered");
    };
    for i in 1..=3 {
        send(&mut a, &mut b, i);
    }
    let page = |me: &Session, with: &Session| {
        get(&s, Via::Plain, &format!("/im/messages?{}&with={}", me.auth(), with.id))
    };
    let seqs = |v: &Value| -> Vec<i64> {
        v["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect()
    };
    let first = page(&a, &b);
    assert_eq!(seqs(&first), vec![1, 2, 3]);
    let ops = store_ops(&s);
    assert_eq!(page(&a, &b), first);
    assert_eq!(
        seqs(&get(&s, Via::Plain, &format!("/im/messages?{}&with={}&after=1", a.auth(), b.id))),
        vec![2, 3]
    );
    assert_eq!(store_ops(&s), ops, "read again without the store");

    // Acked: every page read after the ack has it.
    send(&mut b, &mut a, 4);
    let v = page(&a, &b);
    assert_eq!((seqs(&v), v["last_seq"].as_i64()), (vec![1, 2, 3, 4], Some(4)));
    // A read mark that moved (200, 307) shows on both sides.
    assert_code(&ask(&mut a.ws, json!({"type":"read","with":b.id,"seq":4})), 200, "Success");
    assert_code(&b.ws.recv(), 307, "Message Read");
    assert_eq!(page(&a, &b)["read_seq"], 4);
    assert_eq!((page(&b, &a)["peer_read_seq"].as_i64()), Some(4));
    // Removed and friends again: a new, empty conversation.
    let r = get(&s, Via::Plain, &format!("/im/friends/remove?{}&to={}", a.auth(), b.id));
    assert_code(&r, 200, "Success");
    assert_code(&b.ws.recv(), 304, "Friend Removed");
    befriend(&s, &mut a, &mut b);
    let v = page(&a, &b);
    assert_eq!(
        (seqs(&v), v["first_seq"].as_i64(), v["last_seq"].as_i64(), v["read_seq"].as_i64()),
        (vec![], Some(0), Some(0), Some(0))
    );
}

#[test]
fn batch_sizes_are_in_the_metrics() {
    let s = server("");
    let (mut a, mut b, _, _) = pair(&s, Via::Plain, "batch");
    for i in 0..40 {
        a.ws.send_json(&json!({"toFriend": b.id, "payload": "p", "id": format!("{i}")}));
        b.ws.send_json(&json!({"toFriend": a.id, "payload": "q", "id": format!("{i}")}));
    }
    let mut acks = 0;
    for ws in [&mut a.ws, &mut b.ws] {
        let mut mine = 0;
        while mine < 40 {
            let v = ws.recv();
            if v["code"] == 200 && v.get("type").is_none() {
                mine += 1;
            }
        }
        acks += mine;
    }
    assert_eq!(acks, 80);
    let r = http(&s, Via::Plain, "GET", "/im/metrics", "");
    let text = String::from_utf8_lossy(&r.body).to_string();
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    assert_eq!(value("imd_history_batch_sends_sum "), 80);
    let commits = value("imd_history_batch_sends_count ");
    assert!((1..=80).contains(&commits), "{commits}");
}

#[test]
fn with_history_off_sending_is_the_seed_s() {
    let s = TestServer::start();
    let (mut a, b, _, _) = pair(&s, Via::Plain, "seed");
    assert!(a.login["friends"].is_null());
    let list = get(&s, Via::Plain, &format!("/im/friends/list?{}", a.auth()));
    assert!(list["friends"][0].get("last_seq").is_none(), "{list}");
    let v = ask(&mut a.ws, json!({"toFriend": b.id, "payload": "p", "id": "1", "cid": "k"}));
    assert_eq!(v, json!({"code":200,"message":"Success","ok":true,"id":"1"}));
    let v = ask(&mut a.ws, json!({"type": "read", "with": b.id, "seq": 1}));
    assert_code(&v, 510, "Friend ID Empty");
    let r = http(&s, Via::Plain, "GET", &format!("/im/messages?{}&with={}", a.auth(), b.id), "");
    assert_eq!(r.status, 404);
    let b_id = b.id.clone();
    drop(b);
    a.ws.recv();
    let v = ask(&mut a.ws, json!({"toFriend": b_id, "payload": "p", "id": "2"}));
    assert_eq!(v, json!({"code":508,"message":"Friend Is Offline","ok":false,"id":"2"}));
}

#[test]
fn a_message_reaches_one_session_once_while_its_receiver_logs_in_and_out() {
    let s = server("");
    let (mut a, b, _, ub) = pair(&s, Via::Plain, "race");
    let b_id = b.id.clone();
    drop(b);
    a.ws.recv();
    let sender = std::thread::spawn(move || {
        for i in 0..300 {
            a.ws.send_json(&json!({"toFriend": b_id, "payload": "p", "id": format!("{i}")}));
        }
        let mut acked = 0;
        while acked < 300 {
            let v = a.ws.recv();
            if matches!(v["code"].as_u64(), Some(200 | 202)) {
                acked += 1;
            }
        }
    });
    for _ in 0..8 {
        let mut b = Session::login(&s, Via::Plain, &ub);
        let mut seen = std::collections::HashSet::new();
        let until = std::time::Instant::now() + Duration::from_millis(60);
        while std::time::Instant::now() < until {
            let Some(v) = b.ws.try_recv(Duration::from_millis(20)) else { continue };
            if let Some(seq) = v["seq"].as_i64() {
                assert!(seen.insert(seq), "seq {seq} twice on one session");
            }
        }
    }
    sender.join().expect("sender");
    let b = Session::login(&s, Via::Plain, &ub);
    let page = get(
        &s,
        Via::Plain,
        &format!(
            "/im/messages?{}&with={}&limit=200&after=100",
            b.auth(),
            b.login["friends"][0]["id"].as_str().unwrap()
        ),
    );
    let seqs: Vec<i64> =
        page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (101..=300).collect::<Vec<_>>());
}

#[test]
fn a_new_friend_entry_starts_an_empty_conversation() {
    let s = server("");
    let (ua, ub) = (User::new("newa"), User::new("newb"));
    ua.register(&s);
    ub.register(&s);
    let mut a = Session::login(&s, Via::Tls, &ua);
    let mut b = Session::login(&s, Via::Tls, &ub);
    get(&s, Via::Tls, &format!("/im/friends/request?{}&to={}", a.auth(), b.id));
    b.ws.recv();
    get(&s, Via::Tls, &format!("/im/friends/add?{}&from={}&name=pal", b.auth(), a.id));
    let push = a.ws.recv();
    assert_code(&push, 303, "Friend Added");
    let f = &push["friend"];
    assert_eq!(
        (f["last_seq"].as_i64(), f["read_seq"].as_i64(), f["unread"].as_i64()),
        (Some(0), Some(0), Some(0))
    );
}
