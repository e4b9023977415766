//! docs/protocol.md §4: login by URL and by first frame, failed logins, the failed-login
//! budget, replacement (513), presence (302/300), logoff, heartbeat, Origin allowlist.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn login_by_url_and_by_first_frame() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        let u = User::new("lg");
        u.register(&s);
        let target = format!("/im/login?account={}&password={}", enc(&u.account), enc(&u.password));
        let mut ws = Ws::open(&s, via, &target);
        let v = ws.recv();
        assert_code(&v, 200, "Success");
        let token = v["token"].as_str().expect("token");
        assert_eq!(token.len(), 32);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let id = v["profile"]["id"].as_str().expect("id");
        assert_eq!(id.len(), 32);
        for k in ["id", "name", "picture", "sex", "birthday", "sign"] {
            assert!(v["profile"][k].is_string(), "{k}: {v}");
        }
        drop(ws);
        let session = Session::login(&s, via, &u);
        assert_ne!(session.token, token, "a new session has a new token");
    }
}

#[test]
fn failed_logins_are_indistinguishable() {
    let s = TestServer::start();
    let u = User::new("fl");
    u.register(&s);
    for via in [Via::Plain, Via::Tls] {
        let mut replies = Vec::new();
        for (account, password) in [
            (u.account.as_str(), "wrong"),
            ("no-such-account", "wrong"),
            ("", "x"),
            (u.account.as_str(), "   "),
        ] {
            let mut ws = Ws::open(&s, via, "/im/login");
            ws.send_json(&json!({"account": account, "password": password}));
            let raw = match ws.ws.read().expect("reply") {
                tungstenite::Message::Text(t) => t.to_string(),
                m => panic!("{m:?}"),
            };
            ws.expect_close();
            replies.push(raw);
        }
        for r in &replies {
            assert_eq!(r, r#"{"code":505,"message":"Account & Password Wrong","ok":false}"#);
        }
        // URL form, account present but empty.
        let mut ws = Ws::open(&s, via, "/im/login?account=&password=x");
        assert_code(&ws.recv(), 505, "Account & Password Wrong");
        ws.expect_close();
        // A first frame that is not a credentials object.
        let mut ws = Ws::open(&s, via, "/im/login");
        ws.send_text("hello");
        assert_code(&ws.recv(), 505, "Account & Password Wrong");
        ws.expect_close();
    }
}

#[test]
fn no_first_frame_in_time_is_505() {
    let s = TestServer::start_with("[session]\nlogin_frame_timeout_s = 1\n");
    let mut ws = Ws::open(&s, Via::Plain, "/im/login");
    assert_code(&ws.recv(), 505, "Account & Password Wrong");
    ws.expect_close();
}

#[test]
fn spent_login_budget_is_524_without_a_check() {
    let s = TestServer::start_with("[rate_limit]\nlogin_fail_per_min = 3\n");
    let u = User::new("budget");
    u.register(&s);
    for _ in 0..3 {
        let mut ws = Ws::open(&s, Via::Plain, "/im/login");
        ws.send_json(&json!({"account": u.account, "password": "wrong"}));
        assert_code(&ws.recv(), 505, "Account & Password Wrong");
    }
    // Even the right password is refused now.
    let mut ws = Ws::open(&s, Via::Plain, "/im/login");
    ws.send_json(&json!({"account": u.account, "password": u.password}));
    assert_code(&ws.recv(), 524, "Too Many Requests");
    ws.expect_close();
}

#[test]
fn second_login_replaces_the_first() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        let (ua, ub) = (User::new("dup"), User::new("watch"));
        ua.register(&s);
        ub.register(&s);
        let mut a1 = Session::login(&s, via, &ua);
        let mut b = Session::login(&s, via, &ub);
        befriend(&s, &mut a1, &mut b);
        let mut a2 = Session::login(&s, via, &ua);
        assert_code(&a1.ws.recv(), 513, "Login In Other Place");
        a1.ws.expect_close();
        // b hears 302 for the new session and no 300 for the replaced one.
        let v = b.ws.recv();
        assert_code(&v, 302, "Friend Online");
        b.ws.expect_silence(Duration::from_millis(300));
        // The old token is dead, the new one works, the new socket is untouched.
        let r = get(&s, via, &format!("/im/friends/list?{}", a1.auth()));
        assert_code(&r, 515, "Auth Illegal");
        let r = get(&s, via, &format!("/im/friends/list?{}", a2.auth()));
        assert_code(&r, 200, "Success");
        assert_eq!(r["friends"][0]["online"], true);
        a2.ws.send_json(&json!({"type": "heartbeat"}));
        assert_eq!(a2.ws.recv()["type"], "heartbeat");
    }
}

#[test]
fn racing_logins_leave_exactly_one_session() {
    let s = TestServer::start();
    let u = User::new("racer");
    u.register(&s);
    for _ in 0..5 {
        let sessions: Vec<Session> = std::thread::scope(|scope| {
            let hs: Vec<_> =
                (0..2).map(|_| scope.spawn(|| Session::login(&s, Via::Plain, &u))).collect();
            hs.into_iter().map(|h| h.join().expect("login")).collect()
        });
        let live: Vec<bool> = sessions
            .iter()
            .map(|x| get(&s, Via::Plain, &format!("/im/friends/list?{}", x.auth()))["code"] == 200)
            .collect();
        assert_eq!(live.iter().filter(|l| **l).count(), 1, "{live:?}");
        for (mut x, live) in sessions.into_iter().zip(live) {
            if live {
                x.ws.send_json(&json!({"type": "heartbeat"}));
                assert_eq!(x.ws.recv()["type"], "heartbeat");
            } else {
                assert_code(&x.ws.recv(), 513, "Login In Other Place");
                x.ws.expect_close();
            }
        }
    }
}

#[test]
fn presence_and_logoff() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        let (ua, ub) = (User::new("pres"), User::new("ence"));
        ua.register(&s);
        ub.register(&s);
        let mut a = Session::login(&s, via, &ua);
        let mut b = Session::login(&s, via, &ub);
        befriend(&s, &mut a, &mut b);
        // a logs off: 200, socket closed with 1000, b hears 300, token dead.
        assert_code(&get(&s, via, "/im/logoff"), 514, "Auth Info Empty");
        assert_code(&get(&s, via, &format!("/im/logoff?{}", a.auth())), 200, "Success");
        assert_eq!(a.ws.expect_close(), Some(1000));
        let v = b.ws.recv();
        assert_code(&v, 300, "Friend Offline");
        assert_eq!(v["id"], a.id.as_str());
        assert_code(&get(&s, via, &format!("/im/logoff?{}", a.auth())), 515, "Auth Illegal");
        // a comes back: b hears 302 and a sees b online.
        let a = Session::login(&s, via, &ua);
        assert_eq!(a.login["friends"][0]["online"], true);
        assert_eq!(a.login["friends"][0]["name"], ub.name.as_str(), "my alias for b: b's name");
        let v = b.ws.recv();
        assert_code(&v, 302, "Friend Online");
        // a's socket just drops: b hears 300.
        drop(a);
        assert_code(&b.ws.recv(), 300, "Friend Offline");
    }
}

#[test]
fn heartbeat_and_its_limit() {
    let s = TestServer::start_with("[rate_limit]\nheartbeat_per_min = 2\n");
    let u = User::new("hb");
    u.register(&s);
    let mut a = Session::login(&s, Via::Tls, &u);
    for _ in 0..2 {
        a.ws.send_json(&json!({"type": "heartbeat"}));
        let v = a.ws.recv();
        assert_eq!(v, json!({"code":200,"message":"Success","ok":true,"type":"heartbeat"}));
    }
    a.ws.send_json(&json!({"type": "heartbeat"}));
    assert_code(&a.ws.recv(), 524, "Too Many Requests");
    // The session stays open.
    a.ws.send_text("{");
    assert_code(&a.ws.recv(), 403, "Protocol Error");
}

#[test]
fn origin_allowlist() {
    let s = TestServer::start_with("[websocket]\nallowed_origins = [\"https://chat.example\"]\n");
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let upgrade = |origin: Option<&str>| {
        let mut st = connect(&s, Via::Plain);
        let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
        let req = format!(
            "GET /im/login HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{origin}\r\n"
        );
        std::io::Write::write_all(&mut st, req.as_bytes()).expect("write");
        read_reply(&mut st).status
    };
    assert_eq!(upgrade(Some("https://evil.example")), 403);
    assert_eq!(upgrade(Some("https://chat.example")), 101);
    assert_eq!(upgrade(None), 101);
}

#[test]
fn unknown_paths_and_login_without_upgrade() {
    let s = TestServer::start();
    let r = http(&s, Via::Plain, "GET", "/im/nope", "");
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), json!({"code":404,"message":"Not Found","ok":false}));
    let r = http(&s, Via::Tls, "GET", "/im/login?account=a&password=b", "");
    assert_code(&r.json(), 403, "Protocol Error");
    let r = http(&s, Via::Plain, "GET", "/im/query?account=x", "");
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert_eq!(r.header("Referrer-Policy"), Some("no-referrer"));
    assert_eq!(r.header("Content-Type"), Some("application/json; charset=utf-8"));
}
