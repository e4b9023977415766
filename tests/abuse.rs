//! Authentication abuse: a password-guessing run costs only a few argon2 checks, even
//! when the guesses arrive at once or come through erase and password changes; an
//! unknown account looks exactly like a wrong password (bytes, time and argon2 work,
//! also after the cost was raised); and secrets never reach the logs or the database
//! file.

mod common;

use std::collections::BTreeMap;
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

/// Argon2 runs so far, from the metrics: at the configured parameters, and at others.
fn argon2_runs(s: &TestServer) -> (u64, u64) {
    let metrics =
        String::from_utf8(http(s, Via::Plain, "GET", "/im/metrics", "").body).expect("utf8");
    let count = |params: &str| {
        let key = format!("imd_argon2_runs_total{{params=\"{params}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {metrics}"))
    };
    (count("current"), count("other"))
}

/// The codes answered to `n` wrong first-frame logins sent at once, each on its socket.
fn logins_at_once(s: &TestServer, account: &str, n: usize) -> BTreeMap<u64, usize> {
    let mut sockets: Vec<Ws> = (0..n).map(|_| Ws::open(s, Via::Plain, "/im/login")).collect();
    for (i, ws) in sockets.iter_mut().enumerate() {
        ws.send_json(&json!({"account": account, "password": format!("guess {i}")}));
    }
    let mut codes = BTreeMap::new();
    for ws in &mut sockets {
        *codes.entry(ws.recv()["code"].as_u64().unwrap_or(0)).or_insert(0) += 1;
    }
    codes
}

/// The shipped argon2 cost, so that checks take long enough to pile up.
const REAL_COST: &str = "[password]\nargon2_m_kib = 19456\nargon2_t = 2\nargon2_p = 1\n";

#[test]
fn two_hundred_wrong_logins_at_once_check_only_the_budget() {
    let s = TestServer::start_with(&format!("{REAL_COST}[rate_limit]\nlogin_fail_per_min = 20\n"));
    let u = User::new("flooded");
    u.register(&s);
    let before = argon2_runs(&s);
    let codes = logins_at_once(&s, &u.account, 200);
    assert_eq!(codes, BTreeMap::from([(505, 20), (524, 180)]));
    let after = argon2_runs(&s);
    assert_eq!(after.0 - before.0, 20, "one argon2 run per budgeted failure, no more");
}

#[test]
fn a_full_password_queue_answers_524_without_a_check() {
    // No failed-login budget: only the bounded queue of the one hasher thread stands
    // between 200 simultaneous checks and a queue seconds long.
    let s = TestServer::start_with(&format!("{REAL_COST}threads = 1\n"));
    let u = User::new("queued");
    u.register(&s);
    let before = argon2_runs(&s);
    let codes = logins_at_once(&s, &u.account, 200);
    let (checked, refused) = (codes.get(&505).copied(), codes.get(&524).copied());
    let (checked, refused) = (checked.unwrap_or(0), refused.unwrap_or(0));
    assert_eq!(checked + refused, 200, "{codes:?}");
    assert!(refused > 0 && checked < 200, "{codes:?}");
    let after = argon2_runs(&s);
    assert_eq!(after.0 - before.0, checked as u64, "a refused login runs no argon2");
    let metrics =
        String::from_utf8(http(&s, Via::Plain, "GET", "/im/metrics", "").body).expect("utf8");
    let line = format!("imd_rate_limited_total{{limiter=\"hasher\"}} {refused}");
    assert!(metrics.contains(&line), "{metrics}");
}

#[test]
fn wrong_passwords_on_erase_and_password_change_spend_the_login_budget() {
    let s = TestServer::start_with("[rate_limit]\nlogin_fail_per_min = 3\n");
    let u = User::new("guessed");
    u.register(&s);
    let me = Session::login(&s, Via::Plain, &u);
    let erase = |pw: &str| {
        let body = json!({"id": me.id, "token": me.token, "password": pw});
        post(&s, Via::Plain, "/im/erase", &body)
    };
    let change = |old: &str, new: &str| {
        let body = json!({"id": me.id, "token": me.token, "password": old, "new_password": new});
        post(&s, Via::Plain, "/im/profile/update", &body)
    };
    assert_code(&erase("guess 1"), 505, "Account & Password Wrong");
    assert_code(&change("guess 2", "mine now"), 505, "Account & Password Wrong");
    // A right password gives its reservation back: one failure is still left.
    assert_code(&change(&u.password, "second pw"), 200, "Success");
    assert_code(&erase("guess 3"), 505, "Account & Password Wrong");
    // Spent: 524 without a check, even for the right password.
    let runs = argon2_runs(&s);
    assert_code(&erase("second pw"), 524, "Too Many Requests");
    assert_code(&change("second pw", "third pw"), 524, "Too Many Requests");
    assert_eq!(argon2_runs(&s), runs, "refused without a check");
    // It is the login budget: a login from this address is refused too.
    assert_eq!(attempt(&s, &u.account, "second pw"), 524);
    // An update that checks no password is not charged.
    let body = json!({"id": me.id, "token": me.token, "sign": "still here"});
    assert_code(&post(&s, Via::Plain, "/im/profile/update", &body), 200, "Success");
}

#[test]
fn a_password_check_answers_in_order_on_a_pipelined_connection() {
    let s = TestServer::start();
    let u = User::new("pipelined");
    u.register(&s);
    let me = Session::login(&s, Via::Plain, &u);
    let body = json!({"id": me.id, "token": me.token, "password": "wrong", "new_password": "x"})
        .to_string();
    let requests = format!(
        "POST /im/profile/update HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}\
         GET /im/query?account={} HTTP/1.1\r\nHost: t\r\n\r\n",
        body.len(),
        u.account
    );
    let mut stream = connect(&s, Via::Plain);
    stream.write_all(requests.as_bytes()).expect("write");
    // The check runs off the workers, yet its answer comes first, as it was asked first.
    assert_code(&read_reply(&mut stream).json(), 505, "Account & Password Wrong");
    let second = read_reply(&mut stream).json();
    assert_code(&second, 200, "Success");
    assert_eq!(second["exists"], true);
}

#[test]
fn a_login_rehashes_a_password_stored_with_older_parameters() {
    let old = TestServer::start();
    let u = User::new("veteran");
    u.register(&old);
    let dir = old.stop_keeping_data();
    // The cost was raised in the config since the account was made.
    let s = TestServer::start_in(dir, "[password]\nargon2_m_kib = 128\nargon2_t = 2\n");
    let since = |from: (u64, u64)| {
        let now = argon2_runs(&s);
        ((now.0 - from.0, now.1 - from.1), now)
    };
    let (_, r) = since((0, 0));
    assert_eq!(attempt(&s, "nobody-by-this-name", "wrong"), 505);
    let (unknown, r) = since(r);
    assert_eq!(unknown, (1, 0), "an unknown account runs the current cost once");
    assert_eq!(attempt(&s, &u.account, "wrong"), 505);
    let (stale, r) = since(r);
    assert_eq!(stale, (1, 1), "an old hash's wrong password pays the current cost as well");
    drop(Session::login(&s, Via::Plain, &u));
    let (rehashed, r) = since(r);
    assert_eq!(rehashed, (1, 1), "the old hash verified, then the password hashed anew");
    drop(Session::login(&s, Via::Plain, &u));
    let (current, _) = since(r);
    assert_eq!(current, (1, 0), "the stored hash now has the current parameters");
    let dir = s.stop_keeping_data();
    let db = store::Store::open(&dir.join("imd.sqlite3"), &store::StoreOptions::default())
        .expect("open the store");
    let row = db.user_by_account(&u.account).expect("read").expect("the user");
    assert!(row.password_hash.contains("m=128,t=2,p=1"), "{}", row.password_hash);
    let _ = std::fs::remove_dir_all(dir);
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
