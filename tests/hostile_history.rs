//! docs/protocol.md §10, §11 as a hostile client and a careful new user meet them: every
//! field of the send, read, typing and login frames with the wrong JSON type, numbers of
//! every size and spelling, cids reused across devices, the history route after an
//! erase, device tokens beside odd passwords. Each answer is the documented code.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// History on; a user may hold three sessions.
fn server() -> TestServer {
    TestServer::start_with("[history]\nenabled = true\n[session]\nmax_devices = 3\n")
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

#[track_caller]
fn ask(ws: &mut Ws, frame: &str) -> Value {
    ws.send_text(frame);
    ws.recv()
}

/// `a` sends `n` messages to `b`; each is acked 200 and pushed, `a` hears 306.
#[track_caller]
fn exchange(a: &mut Session, b: &mut Session, n: usize) {
    for i in 0..n {
        let v = ask(
            &mut a.ws,
            &json!({"id": "d", "toFriend": b.id, "payload": format!("m{i}")}).to_string(),
        );
        assert_code(&v, 200, "Success");
        b.ws.recv();
        assert_code(&a.ws.recv(), 306, "Message Delivered");
    }
}

fn seqs(v: &Value) -> Vec<i64> {
    v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

#[test]
fn whole_numbers_of_any_size_or_spelling_are_non_negative_integers() {
    let s = server();
    for via in [Via::Plain, Via::Tls] {
        let (mut a, mut b, _, _) = pair(&s, via, "num");
        exchange(&mut a, &mut b, 3);
        let read = |seq: &str| format!(r#"{{"type":"read","with":"{}","seq":{seq}}}"#, a.id);
        let ok = json!({"code":200,"message":"Success","ok":true,"type":"read"});
        // Spelled as a fraction or with an exponent, a whole number is one (JSON has one
        // number type); -0 is zero.
        for (seq, moved) in [("-0", None), ("1.0", Some(1)), ("2e0", Some(2))] {
            assert_eq!(ask(&mut b.ws, &read(seq)), ok, "{seq}");
            if let Some(m) = moved {
                assert_eq!(a.ws.recv()["seq"], m, "{seq}");
            }
        }
        // Beyond i64, and beyond u64: still a non-negative integer, capped at the last seq.
        assert_eq!(ask(&mut b.ws, &read("18446744073709551615")), ok);
        assert_eq!(a.ws.recv()["seq"], 3);
        for seq in ["1e30", "9223372036854775808"] {
            assert_eq!(ask(&mut b.ws, &read(seq)), ok, "{seq}");
        }
        a.ws.expect_silence(Duration::from_millis(150));
        for seq in ["-1", "0.5", "-1e30", "1e-3"] {
            assert_eq!(ask(&mut b.ws, &read(seq))["code"], 403, "{seq}");
        }

        let q =
            |extra: &str| get(&s, via, &format!("/im/messages?{}&with={}{extra}", a.auth(), b.id));
        let huge = "99999999999999999999999999";
        assert_eq!(q(&format!("&after={huge}"))["messages"], json!([]));
        assert_eq!(seqs(&q(&format!("&before={huge}&limit=2"))), vec![2, 3]);
        assert_code(&q(&format!("&limit={huge}")), 403, "Protocol Error");
        let p = |extra: Value| {
            let mut body = json!({"id": a.id, "token": a.token, "with": b.id});
            body.as_object_mut()
                .expect("object")
                .extend(extra.as_object().expect("object").clone());
            post(&s, via, "/im/messages", &body)
        };
        assert_eq!(p(json!({"after": u64::MAX}))["messages"], json!([]));
        assert_eq!(p(json!({"after": 1e30}))["messages"], json!([]));
        assert_eq!(seqs(&p(json!({"after": 1.0, "limit": 1e0}))), vec![2]);
        assert_eq!(seqs(&p(json!({"before": u64::MAX, "limit": 1}))), vec![3]);
        for bad in [json!({"limit": 1.5}), json!({"limit": u64::MAX}), json!({"after": -1.0})] {
            assert_code(&p(bad.clone()), 403, "Protocol Error");
        }
    }
}

#[test]
fn a_blank_password_beside_a_device_token_is_no_password() {
    let s = server();
    let u = User::new("blank");
    u.register(&s);
    let mut ws = Ws::open(&s, Via::Tls, "/im/login");
    ws.send_json(&json!({"account": u.account, "password": u.password, "remember": true}));
    let login = ws.recv();
    let device = login["device_token"].as_str().expect("device_token").to_string();
    // §1: a password with nothing but white space is empty, so no password was given.
    for password in [json!(""), json!(" "), json!("\t\n "), Value::Null] {
        let mut ws = Ws::open(&s, Via::Plain, "/im/login");
        ws.send_json(&json!({"account": u.account, "password": password, "device_token": device}));
        let v = ws.recv();
        assert_code(&v, 200, "Success");
        assert!(v.get("device_token").is_none(), "{v}");
    }
    // A password that is not blank decides, even a wrong one.
    let mut ws = Ws::open(&s, Via::Plain, "/im/login");
    ws.send_json(&json!({"account": u.account, "password": " x ", "device_token": device}));
    assert_code(&ws.recv(), 505, "Account & Password Wrong");
}

#[test]
fn every_field_of_the_wrong_type_is_403_with_the_frame_s_id_or_type() {
    let s = server();
    let (mut a, mut b, _, _) = pair(&s, Via::Plain, "typ");
    let bid = b.id.as_str();
    let wrong = ["5", "true", "[]", r#"["x"]"#, r#"{"a":1}"#, "1.5", "-1"];
    for w in wrong {
        for (field, frame) in [
            ("cid", format!(r#"{{"id":"7","toFriend":"{bid}","payload":"p","cid":{w}}}"#)),
            ("toFriend", format!(r#"{{"id":"7","toFriend":{w},"payload":"p"}}"#)),
            ("payload", format!(r#"{{"id":"7","toFriend":"{bid}","payload":{w}}}"#)),
        ] {
            let v = ask(&mut a.ws, &frame);
            assert_eq!(
                v,
                json!({"code":403,"message":"Protocol Error","ok":false,"id":"7"}),
                "{field}: {w}"
            );
        }
        // An id that is not a string: 403 and no id.
        let v = ask(&mut a.ws, &format!(r#"{{"id":{w},"toFriend":"{bid}","payload":"p"}}"#));
        assert_eq!(v, json!({"code":403,"message":"Protocol Error","ok":false}), "id: {w}");
        for frame in [
            format!(r#"{{"type":"read","with":{w},"seq":1}}"#),
            format!(r#"{{"type":"typing","to":{w}}}"#),
        ] {
            let v = ask(&mut a.ws, &frame);
            assert_eq!(v["code"], 403, "{frame}");
            assert!(v["type"] == "read" || v["type"] == "typing", "{v}");
        }
    }
    for w in ["true", "[]", "[1]", r#"{"a":1}"#, r#""1""#, r#""NaN""#, "1.5", "-1"] {
        let v = ask(&mut a.ws, &format!(r#"{{"type":"read","with":"{bid}","seq":{w}}}"#));
        assert_eq!(
            v,
            json!({"code":403,"message":"Protocol Error","ok":false,"type":"read"}),
            "{w}"
        );
    }
    // Missing fields: the emptiness codes, in order; unknown fields are ignored.
    assert_eq!(ask(&mut a.ws, r#"{"type":"read"}"#)["code"], 519);
    assert_eq!(ask(&mut a.ws, &format!(r#"{{"type":"read","with":"{bid}"}}"#))["code"], 403);
    assert_eq!(ask(&mut a.ws, r#"{"type":"typing","with":"x"}"#)["code"], 519);
    assert_eq!(
        ask(&mut a.ws, r#"{"id":"9"}"#),
        json!({"code":510,"message":"Friend ID Empty","ok":false,"id":"9"})
    );
    let v = ask(
        &mut a.ws,
        &format!(r#"{{"id":"9","toFriend":"{bid}","payload":"p","x":[{{}}],"seq":"s"}}"#),
    );
    assert_code(&v, 200, "Success");
    assert_eq!(v["seq"], 1);
    assert_eq!(b.ws.recv()["payload"], "p");
    assert_code(&a.ws.recv(), 306, "Message Delivered");
    // Myself is not my friend, for every frame and the history route.
    let me = a.id.clone();
    assert_eq!(
        ask(&mut a.ws, &format!(r#"{{"id":"9","toFriend":"{me}","payload":"p"}}"#))["code"],
        512
    );
    assert_eq!(ask(&mut a.ws, &format!(r#"{{"type":"read","with":"{me}","seq":1}}"#))["code"], 512);
    assert_eq!(ask(&mut a.ws, &format!(r#"{{"type":"typing","to":"{me}"}}"#))["code"], 512);
    let v = get(&s, Via::Plain, &format!("/im/messages?{}&with={me}", a.auth()));
    assert_code(&v, 512, "Not Relation of Friend");
}

#[test]
fn one_cid_sent_from_two_devices_at_once_is_stored_once() {
    let s = server();
    let (mut a1, mut b, ua, _) = pair(&s, Via::Plain, "dev");
    let mut a2 = Session::login(&s, Via::Tls, &ua);
    let same = json!({"id": "1", "toFriend": b.id, "payload": "p", "cid": "k"});
    let other = json!({"id": "2", "toFriend": b.id, "payload": "other", "cid": "k"});
    a1.ws.send_json(&same);
    a2.ws.send_json(&same);
    a2.ws.send_json(&other);
    let got = b.ws.recv();
    assert_eq!((got["seq"].as_i64(), got["cid"].as_str()), (Some(1), Some("k")));
    b.ws.expect_silence(Duration::from_millis(300));
    // Each device hears its ack with the one seq; the other payload is 529.
    let replies = |ws: &mut Ws| -> Vec<Value> {
        std::iter::from_fn(|| ws.try_recv(Duration::from_millis(300)))
            .filter(|v| v.get("code").is_some() && v["code"] != 306)
            .collect()
    };
    let r1 = replies(&mut a1.ws);
    assert_eq!(r1.len(), 1, "{r1:?}");
    assert_eq!((r1[0]["code"].as_u64(), r1[0]["seq"].as_i64()), (Some(200), Some(1)));
    let r2 = replies(&mut a2.ws);
    assert_eq!(r2.len(), 2, "{r2:?}");
    assert_eq!((r2[0]["code"].as_u64(), r2[0]["seq"].as_i64()), (Some(200), Some(1)));
    assert_eq!(r2[1], json!({"code":529,"message":"Message ID Reused","ok":false,"id":"2"}));
    let v = get(&s, Via::Plain, &format!("/im/messages?{}&with={}", a1.auth(), b.id));
    assert_eq!(seqs(&v), vec![1]);
}

#[test]
fn after_an_erase_or_a_removal_every_conversation_surface_answers_512() {
    let s = server();
    for removed in [false, true] {
        let (mut a, mut b, _, ub) = pair(&s, Via::Plain, "gone");
        exchange(&mut a, &mut b, 2);
        let r = if removed {
            get(&s, Via::Plain, &format!("/im/friends/remove?{}&to={}", b.auth(), a.id))
        } else {
            post(
                &s,
                Via::Plain,
                "/im/erase",
                &json!({"id": b.id, "token": b.token, "password": ub.password}),
            )
        };
        assert_code(&r, 200, "Success");
        assert_code(&a.ws.recv(), 304, "Friend Removed");
        let bid = b.id.as_str();
        let v = get(&s, Via::Plain, &format!("/im/messages?{}&with={bid}&after=0", a.auth()));
        assert_code(&v, 512, "Not Relation of Friend");
        for frame in [
            format!(r#"{{"type":"read","with":"{bid}","seq":1}}"#),
            format!(r#"{{"type":"typing","to":"{bid}"}}"#),
            format!(r#"{{"id":"3","toFriend":"{bid}","payload":"p","cid":"c"}}"#),
        ] {
            assert_eq!(ask(&mut a.ws, &frame)["code"], 512, "{frame}");
        }
        // Unauthenticated, the auth codes come first whatever else is wrong.
        let v = get(&s, Via::Plain, &format!("/im/messages?id={}&with=&after=-1&before=x", a.id));
        assert_code(&v, 514, "Auth Info Empty");
    }
}

#[test]
fn logoff_forget_takes_only_a_boolean_and_frames_after_logoff_go_nowhere() {
    let s = server();
    let (mut a, mut b, ua, _) = pair(&s, Via::Plain, "off");
    // Anything but true/false/empty is 403, before the auth checks (a bad token here).
    for odd in ["TRUE", "1", "yes", "%00", "true%00"] {
        let v = get(&s, Via::Plain, &format!("/im/logoff?id={}&token=bad&forget={odd}", a.id));
        assert_code(&v, 403, "Protocol Error");
    }
    for odd in [json!("true"), json!(1), json!([true]), json!({})] {
        let v =
            post(&s, Via::Plain, "/im/logoff", &json!({"id": a.id, "token": "bad", "forget": odd}));
        assert_code(&v, 403, "Protocol Error");
    }
    let v = get(&s, Via::Plain, &format!("/im/logoff?id={}&token=bad&forget=true", a.id));
    assert_code(&v, 515, "Auth Illegal");
    // A second device stays; the logged-off socket answers nothing more and is closed.
    let mut a2 = Session::login(&s, Via::Tls, &ua);
    assert_code(&get(&s, Via::Plain, &format!("/im/logoff?{}&forget=", a.auth())), 200, "Success");
    a.ws.send_json(
        &json!({"id": "late", "toFriend": b.id, "payload": "after logoff", "cid": "late"}),
    );
    a.ws.send_json(&json!({"type": "typing", "to": b.id}));
    assert_eq!(a.ws.expect_close(), Some(1000));
    b.ws.expect_silence(Duration::from_millis(300));
    let v = get(&s, Via::Plain, &format!("/im/messages?{}&with={}", a2.auth(), b.id));
    assert_eq!(v["messages"], json!([]), "nothing was kept from the logged-off socket");
    // The old token is dead on every route.
    let v = get(&s, Via::Plain, &format!("/im/messages?{}&with={}", a.auth(), b.id));
    assert_code(&v, 515, "Auth Illegal");
    let v = ask(
        &mut a2.ws,
        &json!({"id": "1", "toFriend": b.id, "payload": "p", "cid": "late"}).to_string(),
    );
    assert_eq!((v["code"].as_u64(), v["seq"].as_i64()), (Some(200), Some(1)), "{v}");
}

#[test]
fn a_frame_type_is_trimmed_like_every_input_field() {
    let s = server();
    let (mut a, mut b, _, _) = pair(&s, Via::Tls, "trim");
    exchange(&mut a, &mut b, 1);
    let v = ask(&mut b.ws, &json!({"type": " read\n", "with": a.id, "seq": 1}).to_string());
    assert_eq!(v, json!({"code":200,"message":"Success","ok":true,"type":"read"}));
    assert_code(&a.ws.recv(), 307, "Message Read");
    let v = ask(&mut b.ws, &json!({"type": "\ttyping ", "to": a.id}).to_string());
    assert_eq!(v, json!({"code":200,"message":"Success","ok":true,"type":"typing"}));
    assert_code(&a.ws.recv(), 308, "Friend Typing");
    let v = ask(&mut b.ws, r#"{"type":" heartbeat "}"#);
    assert_eq!(v, json!({"code":200,"message":"Success","ok":true,"type":"heartbeat"}));
}

#[test]
fn json_beyond_its_limits_is_invalid_even_in_an_unknown_field() {
    let s = server();
    let (mut a, mut b, _, _) = pair(&s, Via::Plain, "lim");
    let bid = b.id.as_str();
    let with =
        |extra: &str| format!(r#"{{"id":"7","toFriend":"{bid}","payload":"p","x":{extra}}}"#);
    let invalid = json!({"code":403,"message":"Protocol Error","ok":false});
    assert_eq!(ask(&mut a.ws, &with("1e400")), invalid);
    assert_eq!(ask(&mut a.ws, &with(&format!("{}{}", "[".repeat(200), "]".repeat(200)))), invalid);
    // Within them, an unknown field is ignored, whatever it holds.
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    for extra in ["1e300", "-1e-300", "18446744073709551616", deep.as_str()] {
        let v = ask(&mut a.ws, &with(extra));
        assert_code(&v, 200, "Success");
        b.ws.recv();
        a.ws.recv();
    }
    // The session lives on after each 403 (§4.1).
    let v = ask(&mut a.ws, &json!({"type": "typing", "to": bid}).to_string());
    assert_code(&v, 200, "Success");
}
