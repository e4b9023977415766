//! Clients that do not read what they asked for, and clients that keep sending after
//! the server has answered and closed: over real sockets.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use socket2::{Domain, Socket, Type};

/// A connection that advertises a 4 KiB receive window, like a slow peer across the
/// Internet: the server's kernel absorbs little of what it does not read.
#[track_caller]
fn starved(s: &TestServer) -> TcpStream {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    sock.connect(&s.plain.into()).expect("connect");
    let tcp: TcpStream = sock.into();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    tcp
}

/// The pending-output gauge once it has stopped moving (or after `limit`).
fn settled_output(s: &TestServer, limit: Duration) -> i64 {
    let deadline = Instant::now() + limit;
    let mut last = -1;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = s.remote().stats().output_bytes();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

const FILE: &str = "/im/www/v1/chat.html";

fn pipeline(count: usize) -> Vec<u8> {
    format!("GET {FILE} HTTP/1.1\r\nHost: a\r\n\r\n").repeat(count).into_bytes()
}

/// 10 connections pipeline 1,000 GETs of a 6 KB file each and read nothing. The
/// kernel takes up to 4 MB of each (its send buffer grows that far on loopback); the
/// server answers a chunk ahead of that, not the other 2 MB, and the gauge in
/// `/im/metrics` shows it. A connection that then reads gets every answer.
#[test]
fn pipelined_requests_never_read_hold_little_output() {
    let s = TestServer::start();
    let per_conn = 1000;
    let mut conns: Vec<TcpStream> = (0..10).map(|_| starved(&s)).collect();
    for c in &mut conns {
        c.write_all(&pipeline(per_conn)).expect("pipeline");
    }
    let pending = settled_output(&s, Duration::from_secs(5));
    assert!(pending > 0, "the answers wait for their readers");
    // A chunk (64 KiB) and one answer each at most.
    assert!(pending <= 10 * (64 + 8) * 1024, "{pending} bytes pending for 10 connections");
    let metrics = http(&s, Via::Plain, "GET", "/im/metrics", "");
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let gauge: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("imd_output_pending_bytes "))
        .expect("gauge in /im/metrics")
        .parse()
        .expect("number");
    assert!(gauge > 0 && gauge <= 10 * (64 + 8) * 1024, "gauge {gauge}");

    // Reading resumes the parsing: all 380 arrive.
    let want = per_conn * answer_len(&s);
    let c = &mut conns[0];
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < want {
        let n = c.read(&mut buf).expect("read");
        assert!(n > 0, "closed after {got} of {want} bytes");
        got += n;
    }
    assert_eq!(got, want, "every answer, once read");
}

/// Bytes of one keep-alive answer for [`FILE`], head included.
fn answer_len(s: &TestServer) -> usize {
    let mut c = connect(s, Via::Plain);
    c.write_all(format!("GET {FILE} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).expect("w");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).expect("head");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .expect("length")
        .trim()
        .parse()
        .expect("number");
    head.len() + len
}

/// Past `output_budget_bytes` the connections holding the most output are closed, and
/// the server goes on serving everyone else.
#[test]
fn past_the_output_budget_the_largest_holders_are_closed() {
    let s = TestServer::start_with("[limits]\noutput_budget_bytes = 262144\n");
    let mut conns: Vec<TcpStream> = (0..10).map(|_| starved(&s)).collect();
    for c in &mut conns {
        c.write_all(&pipeline(1000)).expect("pipeline");
    }
    let pending = settled_output(&s, Duration::from_secs(5));
    assert!(pending <= 256 << 10, "{pending} bytes pending over a 256 KiB budget");
    let cut = s.remote().stats().closed_slow_reader.load(std::sync::atomic::Ordering::Relaxed);
    assert!(cut > 0, "some holders were closed");
    assert!(cut < 10, "not everyone: {cut}");
    assert_eq!(http(&s, Via::Plain, "GET", "/im/health", "").status, 200);
}

/// Sends `head`, then `more` bytes in 16 KiB steps as a client that has not looked at
/// the answer yet would, then reads everything up to the close. Every write must
/// succeed: a server that closed with input unread makes its kernel answer with a
/// reset, and the client gets EPIPE or ECONNRESET instead of the answer.
#[track_caller]
fn keep_sending(stream: &mut Stream, head: &[u8], more: usize) -> Vec<u8> {
    stream.write_all(head).expect("head");
    let chunk = vec![b'x'; 16 * 1024];
    let mut sent = 0;
    while sent < more {
        std::thread::sleep(Duration::from_millis(1));
        if let Err(e) = stream.write_all(&chunk).and_then(|()| stream.flush()) {
            panic!("write after {sent} bytes: {e}");
        }
        sent += chunk.len();
    }
    read_to_close(stream)
}

/// A 413, a 431 and a 400 sent while the client is still sending reach it, plain and
/// over TLS.
#[test]
fn a_client_still_sending_reads_the_refusal() {
    let s = TestServer::start_with("[limits]\nbody_bytes = 1024\n");
    let cases: [(&[u8], u16); 3] = [
        (b"POST /im/user/register HTTP/1.1\r\nHost: a\r\nContent-Length: 600000\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ", 431),
        (b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400),
    ];
    for via in [Via::Plain, Via::Tls] {
        for (head, status) in cases {
            let mut c = connect(&s, via);
            let got = keep_sending(&mut c, head, 600_000);
            assert_eq!(statuses(&got), [status], "{via:?}: {}", String::from_utf8_lossy(&got));
        }
    }
}

/// A WebSocket message over the limit: the client goes on sending it, and still reads
/// the 1009 close, plain and over TLS.
#[test]
fn a_client_still_sending_reads_the_1009_close() {
    let s = TestServer::start_with(
        "[websocket]\nmax_message_bytes = 4096\n[limits]\npayload_bytes = 4096\n",
    );
    for via in [Via::Plain, Via::Tls] {
        let mut ws = Ws::open(&s, via, "/im/login");
        let len: u64 = 600_000;
        let mut head = vec![0x82, 0x80 | 127];
        head.extend_from_slice(&len.to_be_bytes());
        head.extend_from_slice(&[0, 0, 0, 0]);
        let stream = ws.ws.get_mut();
        stream.write_all(&head).expect("frame head");
        let chunk = vec![0u8; 16 * 1024];
        let mut sent = 0;
        while sent < len as usize {
            std::thread::sleep(Duration::from_millis(1));
            if let Err(e) = stream.write_all(&chunk).and_then(|()| stream.flush()) {
                panic!("{via:?}: write after {sent} bytes: {e}");
            }
            sent += chunk.len();
        }
        assert_eq!(ws.expect_close(), Some(1009), "{via:?}");
    }
}
