//! What an operator relies on: the web client is served, `/im/health` and
//! `/im/metrics` answer, secrets never reach the logs' inputs, and a graceful stop
//! closes sessions with 1001 and returns.

mod common;

use std::io::{Read, Write};

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

const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";
const HSTS: &str = "max-age=31536000";

/// The status line and headers of the first response to `raw`, sent on a new connection.
fn head_of(s: &TestServer, via: Via, raw: &str) -> String {
    let mut c = connect(s, via);
    c.write_all(raw.as_bytes()).expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && c.read(&mut byte).expect("read") == 1 {
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("utf8")
}

#[test]
fn pages_carry_a_csp_and_every_tls_response_hsts() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        let hsts = |r: &HttpReply| r.header("Strict-Transport-Security").map(str::to_string);
        let want = (via == Via::Tls).then(|| HSTS.to_string());
        for page in ["/im/www/v1/", "/im/www/v1/chat.html", "/im/www/v1/js/app.js"] {
            // Twice: a worker answers the first, the event loop the second.
            for _ in 0..2 {
                let r = http(&s, via, "GET", page, "");
                assert_eq!(r.status, 200, "{page}");
                assert_eq!(r.header("Content-Security-Policy"), Some(CSP), "{page}");
                assert_eq!(hsts(&r), want, "{page} {via:?}");
            }
        }
        for (method, path) in [("GET", "/im/health"), ("GET", "/nowhere"), ("POST", "/im/query")] {
            assert_eq!(hsts(&http(&s, via, method, path, "")), want, "{path} {via:?}");
        }
        // The reactor's own refusals, redirects and the WebSocket upgrade too.
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        for (raw, status) in [
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_string(), "400"),
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_string(), "302"),
            (
                format!(
                    "GET /im/login HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
                ),
                "101",
            ),
        ] {
            let head = head_of(&s, via, &raw);
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            let has = head.contains(&format!("\r\nStrict-Transport-Security: {HSTS}\r\n"));
            assert_eq!(has, via == Via::Tls, "{via:?}: {head}");
        }
    }
}

#[test]
fn the_root_and_the_bare_prefix_redirect_to_the_web_client() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        for (path, status) in [("/", 302), ("/im/www/v1", 301), ("/im/www/v1?lang=en", 301)] {
            let r = http(&s, via, "GET", path, "");
            assert_eq!((r.status, r.header("Location")), (status, Some("/im/www/v1/")), "{path}");
        }
        assert_eq!(http(&s, via, "POST", "/im/www/v1", "").status, 405);
        let index = http(&s, via, "GET", "/im/www/v1/", "");
        assert_eq!(index.status, 200);
        assert_eq!(
            index.body,
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/www/chat.html")).expect("page")
        );
    }
}

#[test]
fn if_modified_since_gets_304_unless_if_none_match_is_sent() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        let page = http(&s, via, "GET", "/im/www/v1/chat.html", "");
        let modified = page.header("Last-Modified").expect("Last-Modified").to_string();
        for (extra, status) in [
            (format!("If-Modified-Since: {modified}\r\n"), "304"),
            (format!("If-Modified-Since: {modified}\r\nIf-None-Match: \"stale\"\r\n"), "200"),
            ("If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n".to_string(), "200"),
        ] {
            // Twice: a worker answers the first, the event loop the second.
            for _ in 0..2 {
                let raw = format!(
                    "GET /im/www/v1/chat.html HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n"
                );
                let head = head_of(&s, via, &raw);
                assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{extra}: {head}");
            }
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
