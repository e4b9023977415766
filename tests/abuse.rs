//! Authentication abuse: a password-guessing run costs only a few argon2 checks, an
//! unknown account looks exactly like a wrong password (bytes and time), and secrets
//! never reach the logs or the database file.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// One first-frame login attempt; the reply's code.
fn attempt(s: &TestServer, account: &str, password: &str) -> u64 {
    let mut ws = Ws::open(s, Via::Plain, "/im/login");
    ws.send_json(&json!({"account": account, "password": password}));
    ws.recv()["code"].as_u64().unwrap_or(0)
}

#[test]
fn a_thousand_wrong_passwords_cost_twenty_checks() {
    // The default budget: 20 failed logins per minute per client IP.
    let s = TestServer::start_with("[rate_limit]\nlogin_fail_per_min = 20\n");
    let u = User::new("victim");
    u.register(&s);
    let started = Instant::now();
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..1000 {
        *codes.entry(attempt(&s, &u.account, &format!("guess {i}"))).or_insert(0) += 1;
    }
    assert_eq!(codes.get(&505).copied().unwrap_or(0), 20, "{codes:?}");
    assert_eq!(codes.get(&524).copied().unwrap_or(0), 980, "{codes:?}");
    assert!(started.elapsed() < Duration::from_secs(120), "refusals are fast");
    // The metrics agree: 20 checks, 980 refusals without a check.
    let metrics =
        String::from_utf8(http(&s, Via::Plain, "GET", "/im/metrics", "").body).expect("utf8");
    assert!(metrics.contains("imd_login_failures_total 20"), "{metrics}");
    assert!(metrics.contains("imd_rate_limited_total{limiter=\"login\"} 980"), "{metrics}");
}

#[test]
fn unknown_account_and_wrong_password_take_the_same_time() {
    // Real argon2id cost (the shipped defaults), so the difference would show.
    let s =
        TestServer::start_with("[password]\nargon2_m_kib = 19456\nargon2_t = 2\nargon2_p = 1\n");
    let u = User::new("timing");
    u.register(&s);
    // Interleaved, so whatever else the machine does weighs on both alike.
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        for (account, samples) in
            [(u.account.as_str(), &mut known), ("nobody-by-this-name", &mut unknown)]
        {
            let t = Instant::now();
            assert_eq!(attempt(&s, account, "not the password"), 505);
            samples.push(t.elapsed());
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (known, unknown) = (median(&mut known), median(&mut unknown));
    let ratio = known.as_secs_f64() / unknown.as_secs_f64();
    assert!((0.5..2.0).contains(&ratio), "wrong password {known:?} vs unknown account {unknown:?}");
}

#[test]
fn secrets_never_reach_logs_or_the_database() {
    let dir = temp_dir();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let conf = dir.join("imd.conf");
    std::fs::write(
        &conf,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nweb_root = \"{}/www\"\n[tls]\nlisten = \"\"\n\
             [store]\npath = \"{}/imd.sqlite3\"\n[password]\nargon2_m_kib = 64\nargon2_t = 1\n",
            env!("CARGO_MANIFEST_DIR"),
            dir.display()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_imd"))
        .arg("--config")
        .arg(&conf)
        .env("RUST_LOG", "trace")
        .stderr(Stdio::piped())
        .spawn()
        .expect("imd starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut log = String::new();
    while !log.contains("listening on") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).expect("log") > 0, "imd exited: {log}");
        log.push_str(&line);
    }
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let canary = "Canary-Pa55word-9d2f";
    let request = |method: &str, target: &str, body: &str| {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        let req = format!(
            "{method} {target} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    };
    let reply = request(
        "POST",
        "/im/register",
        &json!({"account": "canary", "password": canary, "mail": "m"}).to_string(),
    );
    assert!(reply.contains("\"code\":200"), "{reply}");
    // Log in by URL (the form that puts the password in a request line) and by frame.
    let url = format!("ws://{addr}/im/login?account=canary&password={canary}");
    let (mut ws, _) = tungstenite::connect(url.as_str()).expect("login by URL");
    let login: serde_json::Value =
        serde_json::from_str(ws.read().expect("reply").to_text().expect("text")).expect("json");
    let token = login["token"].as_str().expect("token").to_string();
    let id = login["profile"]["id"].as_str().expect("id").to_string();
    let list = request("GET", &format!("/im/friends/list?id={id}&token={token}"), "");
    assert!(list.contains("\"code\":200"), "{list}");
    let bad = request("GET", &format!("/im/friends/list?id={id}&token={}", "0".repeat(32)), "");
    assert!(bad.contains("\"code\":515"), "{bad}");
    let off = request("GET", &format!("/im/logoff?id={id}&token={token}"), "");
    assert!(off.contains("\"code\":200"), "{off}");
    drop(ws);
    let wrong = request(
        "POST",
        "/im/erase",
        &json!({"id": id, "token": token, "password": canary}).to_string(),
    );
    assert!(wrong.contains("\"code\":515"), "{wrong}");

    // Stop and collect everything it wrote.
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = stderr.read_to_string(&mut log);
    assert!(child.wait().expect("exit").success(), "clean exit: {log}");
    assert!(log.contains("connection"), "the log was captured: {log}");
    for secret in [canary, &token] {
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
    }
    let mut db = std::fs::read(dir.join("imd.sqlite3")).expect("db");
    db.extend(std::fs::read(dir.join("imd.sqlite3-wal")).unwrap_or_default());
    for secret in [canary, &token] {
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a secret in the database"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
