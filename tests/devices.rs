//! docs/protocol.md §11: several sessions per user (the limit and its replacement order,
//! presence per user, pushes and carbons to every session, per-session logoff, password
//! change and erase) and remembered logins (device tokens, their budget, each way they
//! are revoked, expiry, and no token in any log).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const QUIET: Duration = Duration::from_millis(300);
const DAY_MS: i64 = 86_400_000;

/// A server where a user may hold three sessions.
fn server(extra: &str) -> TestServer {
    TestServer::start_with(&format!("[session]\nmax_devices = 3\n{extra}"))
}

fn registered(s: &TestServer, name: &str) -> User {
    let u = User::new(name);
    u.register(s);
    u
}

/// Whether `session`'s token still authenticates.
#[track_caller]
fn code_of(s: &TestServer, via: Via, session: &Session) -> u64 {
    get(s, via, &format!("/im/friends/list?{}", session.auth()))["code"].as_u64().expect("code")
}

/// Logs in with `"remember":true`; the session and its device token.
#[track_caller]
fn remembered(s: &impl Listening, via: Via, u: &User) -> (Session, String) {
    let mut ws = Ws::open(s, via, "/im/login");
    ws.send_json(&json!({"account": u.account, "password": u.password, "remember": true}));
    let login = ws.recv();
    assert_code(&login, 200, "Success");
    let device = login["device_token"].as_str().expect("device_token").to_string();
    let id = login["profile"]["id"].as_str().expect("id").to_string();
    let token = login["token"].as_str().expect("token").to_string();
    (Session { ws, id, token, login }, device)
}

/// Offers a device token as the first frame; the socket and the reply.
#[track_caller]
fn by_device(s: &impl Listening, via: Via, account: &str, device: &str) -> (Ws, Value) {
    let mut ws = Ws::open(s, via, "/im/login");
    ws.send_json(&json!({"account": account, "device_token": device}));
    let reply = ws.recv();
    (ws, reply)
}

/// A session logged in by device token (asserting 200).
#[track_caller]
fn device_session(s: &impl Listening, via: Via, account: &str, device: &str) -> Session {
    let (ws, login) = by_device(s, via, account, device);
    assert_code(&login, 200, "Success");
    assert!(login.get("device_token").is_none(), "a device login makes no new token: {login}");
    let id = login["profile"]["id"].as_str().expect("id").to_string();
    let token = login["token"].as_str().expect("token").to_string();
    Session { ws, id, token, login }
}

/// A device login that is refused with `code`, then closed.
#[track_caller]
fn device_refused(s: &impl Listening, account: &str, device: &str, code: u64) {
    let (mut ws, reply) = by_device(s, Via::Plain, account, device);
    assert_eq!(reply["code"], code, "{reply}");
    ws.expect_close();
}

/// Total argon2 runs, from the metrics.
fn argon2_runs(s: &TestServer) -> u64 {
    let r = http(s, Via::Plain, "GET", "/im/metrics", "");
    let text = String::from_utf8_lossy(&r.body).to_string();
    text.lines()
        .filter(|l| l.starts_with("imd_argon2_runs_total{"))
        .map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()).expect("value"))
        .sum()
}

fn now_ms() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    i64::try_from(d.as_millis()).expect("ms")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn each_session_has_its_token_and_a_login_beyond_the_limit_replaces_the_oldest() {
    let s = server("");
    let u = registered(&s, "many");
    let mut a1 = Session::login(&s, Via::Plain, &u);
    let mut a2 = Session::login(&s, Via::Plain, &u);
    let mut a3 = Session::login(&s, Via::Plain, &u);
    let tokens = [&a1.token, &a2.token, &a3.token];
    assert!(tokens[0] != tokens[1] && tokens[1] != tokens[2] && tokens[0] != tokens[2]);
    for a in [&a1, &a2, &a3] {
        assert_eq!(code_of(&s, Via::Plain, a), 200);
    }
    // A fourth replaces the oldest, and only it.
    let a4 = Session::login(&s, Via::Plain, &u);
    assert_code(&a1.ws.recv(), 513, "Login In Other Place");
    assert_eq!(a1.ws.expect_close(), Some(1000));
    a2.ws.expect_silence(QUIET);
    a3.ws.expect_silence(QUIET);
    assert_eq!(code_of(&s, Via::Plain, &a1), 515);
    for a in [&a2, &a3, &a4] {
        assert_eq!(code_of(&s, Via::Plain, a), 200);
    }
    // The oldest is the earliest login still live: once a2 is gone, a3 is next.
    drop(a2);
    let _a5 = Session::login(&s, Via::Plain, &u);
    a3.ws.expect_silence(QUIET);
    let _a6 = Session::login(&s, Via::Plain, &u);
    assert_code(&a3.ws.recv(), 513, "Login In Other Place");
    assert_eq!(a3.ws.expect_close(), Some(1000));
    assert_eq!(code_of(&s, Via::Plain, &a4), 200);
}

#[test]
fn presence_counts_the_user_not_the_session() {
    let s = server("");
    for via in [Via::Plain, Via::Tls] {
        let (ua, ub) = (registered(&s, "pa"), registered(&s, "pb"));
        let mut a1 = Session::login(&s, via, &ua);
        let mut b1 = Session::login(&s, via, &ub);
        befriend(&s, &mut a1, &mut b1);
        // a's second device: b is not told again, and the new session sees b online.
        let mut a2 = Session::login(&s, via, &ua);
        assert_eq!(a2.login["friends"][0]["online"], true);
        b1.ws.expect_silence(QUIET);
        // b's second device: a heard b come online already.
        let mut b2 = Session::login(&s, via, &ub);
        a1.ws.expect_silence(QUIET);
        a2.ws.expect_silence(QUIET);
        // One of a's sessions ends: a is still online.
        drop(a1);
        b1.ws.expect_silence(QUIET);
        b2.ws.expect_silence(QUIET);
        // The last one ends: every session of b hears 300 once.
        assert_code(&get(&s, via, &format!("/im/logoff?{}", a2.auth())), 200, "Success");
        for b in [&mut b1, &mut b2] {
            let v = b.ws.recv();
            assert_code(&v, 300, "Friend Offline");
            assert_eq!(v["id"], a2.id.as_str());
            b.ws.expect_silence(QUIET);
        }
        // a comes back: both of b's sessions hear 302.
        let _a3 = Session::login(&s, via, &ua);
        for b in [&mut b1, &mut b2] {
            assert_code(&b.ws.recv(), 302, "Friend Online");
        }
    }
}

#[test]
fn messages_and_pushes_reach_every_session_and_senders_get_carbons() {
    let s = server("");
    let (ua, ub) = (registered(&s, "ca"), registered(&s, "cb"));
    let mut a1 = Session::login(&s, Via::Plain, &ua);
    let mut b1 = Session::login(&s, Via::Plain, &ub);
    befriend(&s, &mut a1, &mut b1);
    let mut a2 = Session::login(&s, Via::Plain, &ua);
    let mut b2 = Session::login(&s, Via::Plain, &ub);
    a1.ws.send_json(&json!({"id": "7", "toFriend": b1.id, "payload": "hi"}));
    let ack = a1.ws.recv();
    assert_code(&ack, 200, "Success");
    assert_eq!(ack["id"], "7");
    for b in [&mut b1, &mut b2] {
        let v = b.ws.recv();
        assert_eq!(
            (&v["id"], &v["from"], &v["payload"]),
            (&json!("7"), &json!(a1.id), &json!("hi"))
        );
        assert!(v.get("to").is_none(), "only carbons carry to: {v}");
    }
    let copy = a2.ws.recv();
    assert_eq!(copy["from"], a1.id.as_str());
    assert_eq!(copy["to"], b1.id.as_str());
    assert_eq!((&copy["id"], &copy["payload"]), (&json!("7"), &json!("hi")));
    assert!(copy["ts"].is_i64());
    a1.ws.expect_silence(QUIET);
    // A push to a goes to both of a's sessions.
    let r = post(
        &s,
        Via::Plain,
        "/im/profile/update",
        &json!({"id": b1.id, "token": b1.token, "sign": "new sign"}),
    );
    assert_code(&r, 200, "Success");
    for a in [&mut a1, &mut a2] {
        let v = a.ws.recv();
        assert_code(&v, 301, "Refresh Friend's Profile");
        assert_eq!(v["sign"], "new sign");
    }
}

#[test]
fn kept_messages_carbons_receipts_and_read_marks_reach_every_session() {
    let s = server("[history]\nenabled = true\n");
    let (ua, ub) = (registered(&s, "ka"), registered(&s, "kb"));
    let mut a1 = Session::login(&s, Via::Plain, &ua);
    let mut b1 = Session::login(&s, Via::Plain, &ub);
    befriend(&s, &mut a1, &mut b1);
    let mut a2 = Session::login(&s, Via::Plain, &ua);
    let mut b2 = Session::login(&s, Via::Plain, &ub);
    a1.ws.send_json(&json!({"id": "1", "toFriend": b1.id, "payload": "kept", "cid": "c-1"}));
    let ack = a1.ws.recv();
    assert_code(&ack, 200, "Success");
    assert_eq!((&ack["seq"], &ack["cid"]), (&json!(1), &json!("c-1")));
    for b in [&mut b1, &mut b2] {
        let v = b.ws.recv();
        assert_eq!((&v["from"], &v["seq"], &v["cid"]), (&json!(a1.id), &json!(1), &json!("c-1")));
        assert!(v.get("to").is_none(), "{v}");
    }
    let copy = a2.ws.recv();
    assert_eq!(
        (&copy["to"], &copy["seq"], &copy["payload"]),
        (&json!(b1.id), &json!(1), &json!("kept"))
    );
    for a in [&mut a1, &mut a2] {
        let v = a.ws.recv();
        assert_code(&v, 306, "Message Delivered");
        assert_eq!((&v["id"], &v["seq"]), (&json!(b1.id), &json!(1)));
    }
    // b reads on one device: a's sessions and b's other session hear 307.
    let a_id = a1.id.clone();
    b1.ws.send_json(&json!({"type": "read", "with": a_id, "seq": 1}));
    assert_eq!(b1.ws.recv()["type"], "read");
    for x in [&mut a1, &mut a2, &mut b2] {
        let v = x.ws.recv();
        assert_code(&v, 307, "Message Read");
        assert_eq!((&v["by"], &v["with"], &v["seq"]), (&json!(b1.id), &json!(a_id), &json!(1)));
    }
    b1.ws.expect_silence(QUIET);
    // Typing reaches each session of the friend.
    b1.ws.send_json(&json!({"type": "typing", "to": a1.id}));
    assert_eq!(b1.ws.recv()["type"], "typing");
    for a in [&mut a1, &mut a2] {
        assert_code(&a.ws.recv(), 308, "Friend Typing");
    }
}

#[test]
fn logoff_ends_only_the_session_it_names() {
    let s = server("");
    let (ua, ub) = (registered(&s, "la"), registered(&s, "lb"));
    let mut a1 = Session::login(&s, Via::Plain, &ua);
    let mut b = Session::login(&s, Via::Plain, &ub);
    befriend(&s, &mut a1, &mut b);
    let mut a2 = Session::login(&s, Via::Plain, &ua);
    assert_code(&get(&s, Via::Plain, &format!("/im/logoff?{}", a1.auth())), 200, "Success");
    assert_eq!(a1.ws.expect_close(), Some(1000));
    assert_eq!(code_of(&s, Via::Plain, &a1), 515);
    assert_eq!(code_of(&s, Via::Plain, &a2), 200);
    b.ws.expect_silence(QUIET);
    a2.ws.send_json(&json!({"type": "heartbeat"}));
    assert_eq!(a2.ws.recv()["type"], "heartbeat");
    assert_code(&get(&s, Via::Plain, &format!("/im/logoff?{}", a2.auth())), 200, "Success");
    assert_eq!(a2.ws.expect_close(), Some(1000));
    assert_code(&b.ws.recv(), 300, "Friend Offline");
}

#[test]
fn a_password_change_ends_every_other_session() {
    let s = server("");
    let (ua, ub) = (registered(&s, "wa"), registered(&s, "wb"));
    let mut a1 = Session::login(&s, Via::Plain, &ua);
    let mut b = Session::login(&s, Via::Plain, &ub);
    befriend(&s, &mut a1, &mut b);
    let mut a2 = Session::login(&s, Via::Plain, &ua);
    let mut a3 = Session::login(&s, Via::Plain, &ua);
    let r = post(
        &s,
        Via::Plain,
        "/im/profile/update",
        &json!({"id": a2.id, "token": a2.token, "password": ua.password, "new_password": "fresh pw"}),
    );
    assert_code(&r, 200, "Success");
    for a in [&mut a1, &mut a3] {
        assert_code(&a.ws.recv(), 513, "Login In Other Place");
        assert_eq!(a.ws.expect_close(), Some(1000));
    }
    assert_eq!(code_of(&s, Via::Plain, &a1), 515);
    assert_eq!(code_of(&s, Via::Plain, &a3), 515);
    assert_eq!(code_of(&s, Via::Plain, &a2), 200);
    a2.ws.send_json(&json!({"type": "heartbeat"}));
    assert_eq!(a2.ws.recv()["type"], "heartbeat");
    // a never went offline. (b heard 301 for the update.)
    assert_code(&b.ws.recv(), 301, "Refresh Friend's Profile");
    b.ws.expect_silence(QUIET);
    // Once the change has answered, the old password is refused and the new one logs in.
    let mut stale = Ws::open(&s, Via::Plain, "/im/login");
    stale.send_json(&json!({"account": ua.account, "password": ua.password}));
    assert_eq!(stale.recv()["code"], 505);
    // A profile change without a password ends nothing.
    let _a4 = Session::login(&s, Via::Plain, &User { password: "fresh pw".into(), ..ua.clone() });
    let r = post(
        &s,
        Via::Plain,
        "/im/profile/update",
        &json!({"id": a2.id, "token": a2.token, "sign": "x"}),
    );
    assert_code(&r, 200, "Success");
    a2.ws.expect_silence(QUIET);
}

#[test]
fn erase_ends_every_session() {
    let s = server("");
    let (ua, ub) = (registered(&s, "ea"), registered(&s, "eb"));
    let mut a1 = Session::login(&s, Via::Plain, &ua);
    let mut b = Session::login(&s, Via::Plain, &ub);
    befriend(&s, &mut a1, &mut b);
    let mut a2 = Session::login(&s, Via::Plain, &ua);
    let r = post(
        &s,
        Via::Plain,
        "/im/erase",
        &json!({"id": a1.id, "token": a1.token, "password": ua.password}),
    );
    assert_code(&r, 200, "Success");
    assert_eq!(a1.ws.expect_close(), Some(1000));
    assert_eq!(a2.ws.expect_close(), Some(1000));
    assert_eq!(code_of(&s, Via::Plain, &a2), 515);
    assert_code(&b.ws.recv(), 304, "Friend Removed");
    b.ws.expect_silence(QUIET);
}

#[test]
fn a_remembered_login_logs_in_by_device_token_without_a_password_hash() {
    let s = server("");
    let u = registered(&s, "rem");
    let (first, device) = remembered(&s, Via::Plain, &u);
    assert_eq!(device.len(), 64);
    assert!(device.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_ne!(device, first.token);
    // Without remember, no device token.
    let plain = Session::login(&s, Via::Plain, &u);
    assert!(plain.login.get("device_token").is_none(), "{}", plain.login);
    drop((first, plain));

    let before = argon2_runs(&s);
    let again = device_session(&s, Via::Tls, &u.account.to_ascii_uppercase(), &device);
    assert_eq!(argon2_runs(&s), before, "a device-token login runs no argon2");
    assert_eq!(code_of(&s, Via::Plain, &again), 200);
    assert_eq!(again.login["profile"]["name"], u.name.as_str());
    assert!(again.login["friends"].is_null());

    // Refused like a wrong password: another account, a changed token, a malformed one,
    // a missing account.
    let other = registered(&s, "oth");
    device_refused(&s, &other.account, &device, 505);
    let mut changed = device.clone().into_bytes();
    changed[0] = if changed[0] == b'0' { b'1' } else { b'0' };
    device_refused(&s, &u.account, &String::from_utf8(changed).expect("hex"), 505);
    device_refused(&s, &u.account, &device.to_ascii_uppercase(), 505);
    device_refused(&s, "", &device, 505);
    // With a password, the password decides.
    let mut ws = Ws::open(&s, Via::Plain, "/im/login");
    ws.send_json(&json!({"account": u.account, "password": "wrong", "device_token": device}));
    assert_code(&ws.recv(), 505, "Account & Password Wrong");
    // None of that revoked it.
    device_session(&s, Via::Plain, &u.account, &device);
}

/// A device-token login is checked on a reactor worker, which holds its replies until
/// its job ends, while the history thread starts the backlog at once: the login reply
/// must still come first (§4.1), on every round of logins with messages waiting.
#[test]
fn a_device_login_answers_before_its_backlog() {
    let s = server("[history]\nenabled = true\n");
    let (ua, ub) = (registered(&s, "bla"), registered(&s, "blb"));
    let (mut a, device) = remembered(&s, Via::Plain, &ua);
    let mut b = Session::login(&s, Via::Plain, &ub);
    befriend(&s, &mut a, &mut b);
    let a_id = a.id.clone();
    drop(a);
    // b's next frame with `code` (presence and 306 pushes come in between).
    let until = |b: &mut Session, code: u64| loop {
        let v = b.ws.recv();
        if v["code"] == code {
            return v;
        }
    };
    until(&mut b, 300);
    let mut next = 1;
    for round in 0..12 {
        for _ in 0..20 {
            b.ws.send_json(&json!({"id": "1", "toFriend": a_id, "payload": format!("m{next}")}));
            assert_eq!(until(&mut b, 202)["seq"], next);
            next += 1;
        }
        // device_session asserts that the first frame is the login reply.
        let via = if round % 2 == 0 { Via::Plain } else { Via::Tls };
        let mut again = device_session(&s, via, &ua.account, &device);
        for seq in next - 20..next {
            let v = again.ws.recv();
            assert_eq!(v["seq"], seq, "round {round}: {v}");
        }
        drop(again);
        until(&mut b, 300);
    }
}

#[test]
fn logoff_with_forget_revokes_the_device_token_of_that_session_only() {
    let s = server("");
    let u = registered(&s, "fg");
    let (s1, d1) = remembered(&s, Via::Plain, &u);
    let (s2, d2) = remembered(&s, Via::Plain, &u);
    // A plain logoff keeps the device remembered.
    assert_code(&get(&s, Via::Plain, &format!("/im/logoff?{}", s2.auth())), 200, "Success");
    let s3 = device_session(&s, Via::Plain, &u.account, &d2);
    assert_code(
        &get(&s, Via::Plain, &format!("/im/logoff?{}&forget=yes", s3.auth())),
        403,
        "Protocol Error",
    );
    assert_code(
        &get(&s, Via::Plain, &format!("/im/logoff?{}&forget=true", s3.auth())),
        200,
        "Success",
    );
    device_refused(&s, &u.account, &d2, 505);
    assert_eq!(code_of(&s, Via::Plain, &s1), 200, "the other session lives on");
    // The session that made d1, logged off by a JSON body with forget: d1 goes too.
    let r = post(
        &s,
        Via::Plain,
        "/im/logoff",
        &json!({"id": s1.id, "token": s1.token, "forget": true}),
    );
    assert_code(&r, 200, "Success");
    device_refused(&s, &u.account, &d1, 505);
    // Forget on a session without a device revokes nothing.
    let (_s4, d4) = remembered(&s, Via::Plain, &u);
    let s5 = Session::login(&s, Via::Plain, &u);
    assert_code(
        &get(&s, Via::Plain, &format!("/im/logoff?{}&forget=true", s5.auth())),
        200,
        "Success",
    );
    device_session(&s, Via::Plain, &u.account, &d4);
}

#[test]
fn a_password_change_and_an_erase_revoke_every_device_token() {
    let s = server("");
    let u = registered(&s, "rv");
    let (_s1, d1) = remembered(&s, Via::Plain, &u);
    let (s2, d2) = remembered(&s, Via::Plain, &u);
    let r = post(
        &s,
        Via::Plain,
        "/im/profile/update",
        &json!({"id": s2.id, "token": s2.token, "password": u.password, "new_password": "pw 2"}),
    );
    assert_code(&r, 200, "Success");
    device_refused(&s, &u.account, &d1, 505);
    device_refused(&s, &u.account, &d2, 505);

    let u2 = User { password: "pw 2".into(), ..u.clone() };
    let (s3, d3) = remembered(&s, Via::Plain, &u2);
    let r = post(
        &s,
        Via::Plain,
        "/im/erase",
        &json!({"id": s3.id, "token": s3.token, "password": "pw 2"}),
    );
    assert_code(&r, 200, "Success");
    device_refused(&s, &u.account, &d3, 505);
    // Not only refused: gone from the store.
    let dir = s.stop_keeping_data();
    let db = rusqlite::Connection::open(dir.join("imd.sqlite3")).expect("db");
    let left: i64 = db.query_row("SELECT count(*) FROM devices", [], |r| r.get(0)).expect("count");
    assert_eq!(left, 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn device_tokens_expire_remember_days_after_their_last_use() {
    let conf = "[session]\nmax_devices = 3\nremember_days = 30\n";
    let s = TestServer::start_with(conf);
    let u = registered(&s, "exp");
    let (_a, old) = remembered(&s, Via::Plain, &u);
    let (_b, recent) = remembered(&s, Via::Plain, &u);
    drop((_a, _b));
    let dir = s.stop_keeping_data();
    let set_used = |token: &str, ms: i64| {
        let db = rusqlite::Connection::open(dir.join("imd.sqlite3")).expect("db");
        let sha = Sha256::digest(token.as_bytes()).to_vec();
        let n = db
            .execute(
                "UPDATE devices SET last_used_ms = ?1 WHERE token_sha256 = ?2",
                rusqlite::params![ms, sha],
            )
            .expect("update");
        assert_eq!(n, 1, "only the SHA-256 is stored");
    };
    set_used(&old, now_ms() - 31 * DAY_MS);
    set_used(&recent, now_ms() - 29 * DAY_MS);
    let s = TestServer::start_in(dir, conf);
    device_refused(&s, &u.account, &old, 505);
    device_session(&s, Via::Plain, &u.account, &recent);
    // The use slid its expiry: its last use is now.
    let dir = s.stop_keeping_data();
    let db = rusqlite::Connection::open(dir.join("imd.sqlite3")).expect("db");
    let sha = Sha256::digest(recent.as_bytes()).to_vec();
    let used: i64 = db
        .query_row("SELECT last_used_ms FROM devices WHERE token_sha256 = ?1", [sha], |r| r.get(0))
        .expect("row");
    assert!(now_ms() - used < 60_000, "{used}");
    let left: i64 = db.query_row("SELECT count(*) FROM devices", [], |r| r.get(0)).expect("count");
    assert_eq!(left, 1, "the expired one was deleted");
    drop(db);

    // remember_days = 0: no device tokens are given, and none logs in.
    let s = TestServer::start_in(dir, "[session]\nmax_devices = 3\nremember_days = 0\n");
    device_refused(&s, &u.account, &recent, 505);
    let mut ws = Ws::open(&s, Via::Plain, "/im/login");
    ws.send_json(&json!({"account": u.account, "password": u.password, "remember": true}));
    let login = ws.recv();
    assert_code(&login, 200, "Success");
    assert!(login.get("device_token").is_none(), "{login}");
}

/// A valid device token offered with another account is refused (505) and its expiry
/// does not slide: its last use stays where its owner left it, and it still logs its
/// owner in.
#[test]
fn a_device_token_offered_with_another_account_is_refused_and_not_renewed() {
    let conf = "[session]\nmax_devices = 3\nremember_days = 30\n";
    let s = TestServer::start_with(conf);
    let (u, other) = (registered(&s, "own"), registered(&s, "oth"));
    let (_a, device) = remembered(&s, Via::Plain, &u);
    drop(_a);
    let dir = s.stop_keeping_data();
    let sha = Sha256::digest(device.as_bytes()).to_vec();
    let last_used = |dir: &std::path::Path| -> i64 {
        let db = rusqlite::Connection::open(dir.join("imd.sqlite3")).expect("db");
        db.query_row("SELECT last_used_ms FROM devices WHERE token_sha256 = ?1", [&sha], |r| {
            r.get(0)
        })
        .expect("row")
    };
    let then = now_ms() - 29 * DAY_MS;
    let db = rusqlite::Connection::open(dir.join("imd.sqlite3")).expect("db");
    db.execute("UPDATE devices SET last_used_ms = ?1", [then]).expect("update");
    drop(db);
    let s = TestServer::start_in(dir, conf);
    device_refused(&s, &other.account, &device, 505);
    let dir = s.stop_keeping_data();
    assert_eq!(last_used(&dir), then, "a refused offer moved the expiry");
    let s = TestServer::start_in(dir, conf);
    device_session(&s, Via::Plain, &u.account.to_uppercase(), &device);
}

#[test]
fn wrong_device_tokens_spend_the_failed_login_budget_and_right_ones_do_not() {
    let s = TestServer::start_with(
        "[session]\nmax_devices = 3\n[rate_limit]\nlogin_fail_per_min = 3\n",
    );
    let u = registered(&s, "bud");
    let (_first, device) = remembered(&s, Via::Plain, &u);
    for _ in 0..5 {
        device_session(&s, Via::Plain, &u.account, &device);
    }
    for _ in 0..3 {
        device_refused(&s, &u.account, &"ab".repeat(32), 505);
    }
    // The budget is the password's too: spent, even the right token and the right
    // password are refused without a check.
    device_refused(&s, &u.account, &device, 524);
    let mut ws = Ws::open(&s, Via::Plain, "/im/login");
    ws.send_json(&json!({"account": u.account, "password": u.password}));
    assert_code(&ws.recv(), 524, "Too Many Requests");
}

#[test]
fn no_token_reaches_the_log_at_debug_level() {
    let dir = temp_dir();
    let d = ChildDaemon::spawn_logging(&dir, "[session]\nmax_devices = 3\n", "debug");
    let u = User::new("log");
    u.register(&d);
    let (first, device) = remembered(&d, Via::Plain, &u);
    let second = device_session(&d, Via::Plain, &u.account, &device);
    let wrong = "cd".repeat(32);
    let (mut ws, reply) = by_device(&d, Via::Plain, &u.account, &wrong);
    assert_code(&reply, 505, "Account & Password Wrong");
    ws.expect_close();
    let list = get(&d, Via::Plain, &format!("/im/friends/list?{}", first.auth()));
    assert_code(&list, 200, "Success");
    let r = get(&d, Via::Plain, &format!("/im/logoff?{}&forget=true", second.auth()));
    assert_code(&r, 200, "Success");
    let r = post(
        &d,
        Via::Plain,
        "/im/profile/update",
        &json!({"id": first.id, "token": first.token, "password": u.password, "new_password": "n"}),
    );
    assert_code(&r, 200, "Success");
    assert!(d.log_line("failed login by device token", Duration::from_secs(5)).is_some());
    std::thread::sleep(QUIET);
    let log = d.log().join("\n");
    assert!(log.contains("DEBUG"), "debug lines were captured: {log}");
    let sha = hex(&Sha256::digest(device.as_bytes()));
    for secret in [&first.token, &second.token, &device, &wrong, &sha] {
        assert!(!log.contains(secret.as_str()), "a token in the log:\n{log}");
    }
    drop(d);
    let _ = std::fs::remove_dir_all(dir);
}
