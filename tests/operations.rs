//! What an operator relies on: the web client is served, `/im/health` and
//! `/im/metrics` answer, secrets never reach the logs' inputs, and a graceful stop
//! closes sessions with 1001 and returns.

mod common;

use common::*;
use serde_json::json;

#[test]
fn web_client_is_served_on_both_listeners() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        let r = http(&s, via, "GET", "/im/www/v1/", "");
        assert_eq!(r.status, 200);
        assert!(r.header("Content-Type").is_some_and(|t| t.starts_with("text/html")));
        let page = http(&s, via, "GET", "/im/www/v1/chat.html", "");
        assert_eq!(page.body, r.body, "/im/www/v1/ serves chat.html");
        for evil in [
            "/im/www/v1/../../Cargo.toml",
            "/im/www/v1/%2e%2e/%2e%2e/Cargo.toml",
            "/im/www/v1/..%2f..%2fCargo.toml",
        ] {
            assert_eq!(http(&s, via, "GET", evil, "").status, 404, "{evil}");
        }
    }
}

#[test]
fn health_and_metrics() {
    let s = TestServer::start();
    let r = http(&s, Via::Plain, "GET", "/im/health", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let u = User::new("metric");
    u.register(&s);
    let mut a = Session::login(&s, Via::Tls, &u);
    a.ws.send_json(&json!({"type": "heartbeat"}));
    a.ws.recv();
    let r = http(&s, Via::Plain, "GET", "/im/metrics", "");
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).expect("utf8");
    for needle in [
        "imd_open_connections{listener=\"tls\"} 1",
        "imd_live_sessions 1",
        "imd_http_requests_total{route=\"register\",code=\"200\"} 1",
        "imd_ws_replies_total{code=\"200\"}",
        "imd_store_op_seconds_bucket",
        "imd_worker_queue_depth",
        "imd_rate_limited_total{limiter=\"send\"} 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[test]
fn graceful_stop_closes_sessions_with_1001() {
    let s = TestServer::start();
    let u = User::new("stop");
    u.register(&s);
    let mut a = Session::login(&s, Via::Plain, &u);
    let mut b = Ws::open(&s, Via::Tls, "/im/login");
    let remote = s.remote().clone();
    let stopper = std::thread::spawn(move || remote.shutdown());
    assert_eq!(a.ws.expect_close(), Some(1001));
    assert_eq!(b.expect_close(), Some(1001));
    stopper.join().expect("stopper");
    s.stop().expect("clean stop");
}

#[test]
fn the_database_never_holds_a_password() {
    let s = TestServer::start();
    let canary = "canary-password-7f3a9c";
    let body = json!({"account": "canary-user", "password": canary, "mail": "m"});
    assert_code(&post(&s, Via::Plain, "/im/register", &body), 200, "Success");
    let db = s.dir.join("imd.sqlite3");
    let mut bytes = std::fs::read(&db).expect("db");
    if let Ok(wal) = std::fs::read(db.with_extension("sqlite3-wal")) {
        bytes.extend(wal);
    }
    let needle = canary.as_bytes();
    assert!(!bytes.windows(needle.len()).any(|w| w == needle), "plaintext password stored");
}
