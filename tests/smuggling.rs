//! Request smuggling and framing: every vector gets exactly one response with its
//! status, and then the connection is closed, so nothing hidden behind it is ever
//! answered. Plain listener, and a sample over TLS.

mod common;

use std::io::Write;

use common::*;

fn exchange(s: &TestServer, via: Via, raw: &[u8]) -> Vec<u8> {
    let mut c = connect(s, via);
    c.write_all(raw).expect("write");
    read_to_close(&mut c)
}

const SMUGGLED: &str = "GET /im/health HTTP/1.1\r\nHost: a\r\n\r\n";

fn vectors() -> Vec<(&'static str, Vec<u8>, u16)> {
    let post = |headers: &str, body: &str| {
        format!("POST /im/query HTTP/1.1\r\nHost: a\r\n{headers}\r\n{body}").into_bytes()
    };
    let get = |rest: &str| rest.as_bytes().to_vec();
    let huge_head =
        format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "b".repeat(17 * 1024))
            .into_bytes();
    let many: String = (0..120).map(|i| format!("X-{i}: v\r\n")).collect();
    let many_headers = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").into_bytes();
    let ws = |extra: &str| {
        format!("GET /im/login HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n").into_bytes()
    };
    vec![
        ("CL then TE", post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", &format!("0\r\n\r\n{SMUGGLED}")), 400),
        ("TE then CL", post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", &format!("0\r\n\r\n{SMUGGLED}")), 400),
        ("TE list then CL", post("Transfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n", "abc"), 400),
        ("TE twice and CL", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n", "abc"), 400),
        ("CL 0 with TE", post("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400),
        ("duplicate CL, same", post("Content-Length: 3\r\nContent-Length: 3\r\n", "abc"), 400),
        ("duplicate CL, different", post("Content-Length: 3\r\nContent-Length: 40\r\n", &format!("abc{SMUGGLED}")), 400),
        ("duplicate CL, other case", post("Content-Length: 3\r\ncontent-length: 3\r\n", "abc"), 400),
        ("CL list", post("Content-Length: 3, 3\r\n", "abc"), 400),
        ("CL with inner space", post("Content-Length: 3 3\r\n", "abc"), 400),
        ("CL plus sign", post("Content-Length: +3\r\n", "abc"), 400),
        ("CL minus sign", post("Content-Length: -1\r\n", "abc"), 400),
        ("CL overflow", post("Content-Length: 99999999999999999999\r\n", "abc"), 400),
        ("CL u64 max + 1", post("Content-Length: 18446744073709551616\r\n", "abc"), 400),
        ("CL hex", post("Content-Length: 0x3\r\n", "abc"), 400),
        ("CL exponent", post("Content-Length: 3e0\r\n", "abc"), 400),
        ("CL empty", post("Content-Length: \r\n", "abc"), 400),
        ("CL letters", post("Content-Length: abc\r\n", "abc"), 400),
        ("CL decimal", post("Content-Length: 3.0\r\n", "abc"), 400),
        ("TE chunked alone", post("Transfer-Encoding: chunked\r\n", &format!("3\r\nabc\r\n0\r\n\r\n{SMUGGLED}")), 411),
        ("TE chunked, trailing space", post("Transfer-Encoding: chunked \r\n", "0\r\n\r\n"), 411),
        ("TE xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), 411),
        ("TE with tab", post("Transfer-Encoding:\tchunked\r\n", "0\r\n\r\n"), 411),
        ("TE identity, chunked", post("Transfer-Encoding: identity, chunked\r\n", "0\r\n\r\n"), 411),
        ("TE uppercase", post("Transfer-Encoding: CHUNKED\r\n", "0\r\n\r\n"), 411),
        ("TE twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", "0\r\n\r\n"), 411),
        ("chunk-size overflow", post("Transfer-Encoding: chunked\r\n", "FFFFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n"), 411),
        ("TE on HTTP/1.0", get("POST /im/query HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 411),
        ("TE with space before colon", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"), 400),
        ("CL with space before colon", post("Content-Length : 3\r\n", "abc"), 400),
        ("obs-fold", get("GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n"), 400),
        ("obs-fold of TE", post("X: y\r\n Transfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400),
        ("bare LF line ends", get("GET / HTTP/1.1\nHost: a\n\n"), 400),
        ("bare LF in headers", get("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"), 400),
        ("bare CR in a header", get("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), 400),
        ("NUL in a header value", get("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"), 400),
        ("NUL in the target", get("GET /im/\0 HTTP/1.1\r\nHost: a\r\n\r\n"), 400),
        ("space in a header name", get("GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n"), 400),
        ("header without colon", get("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), 400),
        ("empty header name", get("GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n"), 400),
        ("bad method character", get("GE@T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400),
        ("tab in the request line", get("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400),
        ("double space in the request line", get("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400),
        ("HTTP/1.2", get("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 400),
        ("HTTP/2.0", get("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 400),
        ("lowercase version", get("GET / http/1.1\r\nHost: a\r\n\r\n"), 400),
        ("absolute-form target", get("GET http://evil.example/im/health HTTP/1.1\r\nHost: a\r\n\r\n"), 400),
        ("asterisk target", get("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 400),
        ("no Host on HTTP/1.1", get("GET /im/health HTTP/1.1\r\n\r\n"), 400),
        ("two Hosts", get("GET /im/health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400),
        ("TLS record on the plain port", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(), 400),
        ("binary garbage", b"\xff\xfe\xfd\r\n\r\n".to_vec(), 400),
        ("head over 16 KiB", huge_head, 431),
        ("over 100 header lines", many_headers, 431),
        ("body over 1 MiB", post("Content-Length: 2000000\r\n", ""), 413),
        ("upgrade with a bad key", ws("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n"), 400),
        ("upgrade with version 8", ws("Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), 400),
        ("upgrade with a body", ws("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 3\r\n"), 400),
        ("upgrade by POST", get("POST /im/login HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"), 400),
    ]
}

#[test]
fn every_vector_gets_one_response_and_a_close() {
    let s = TestServer::start();
    let vectors = vectors();
    assert!(vectors.len() >= 50, "{} vectors", vectors.len());
    let mut wrong = Vec::new();
    for (name, raw, status) in &vectors {
        let got = statuses(&exchange(&s, Via::Plain, raw));
        if got != vec![*status] {
            wrong.push(format!("{name}: want [{status}], got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_sample_over_tls() {
    let s = TestServer::start();
    for (name, raw, status) in vectors().into_iter().step_by(5) {
        assert_eq!(statuses(&exchange(&s, Via::Tls, &raw)), vec![status], "{name}");
    }
}

#[test]
fn a_clean_request_after_a_valid_one_still_works() {
    // The control: pipelining itself is fine when the framing is unambiguous.
    let s = TestServer::start();
    let mut raw = post_query("{\"account\":\"x\"}");
    raw.extend_from_slice(b"GET /im/health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(statuses(&exchange(&s, Via::Plain, &raw)), vec![200, 200]);
}

fn post_query(body: &str) -> Vec<u8> {
    format!("POST /im/query HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .into_bytes()
}
