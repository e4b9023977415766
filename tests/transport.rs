//! The transport under the protocol, over real sockets (plain and TLS): incremental and
//! pipelined HTTP, keep-alive, every limit, slow clients, static files, WebSocket
//! control frames, the idle timeout and the message size limit.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

#[test]
fn a_request_split_byte_by_byte_and_pipelined_requests() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        let mut c = connect(&s, via);
        let req = b"GET /im/query?account=x HTTP/1.1\r\nHost: a\r\n\r\n";
        for b in req {
            c.write_all(&[*b]).expect("write");
            c.flush().expect("flush");
        }
        assert_eq!(read_reply(&mut c).status, 200);
        // Three requests in one write, answered in order on one connection.
        let three = "GET /im/query?account=1 HTTP/1.1\r\nHost: a\r\n\r\n\
                     GET /im/nope HTTP/1.1\r\nHost: a\r\n\r\n\
                     POST /im/query HTTP/1.1\r\nHost: a\r\nContent-Length: 14\r\n\r\n{\"account\":\"\"}";
        c.write_all(three.as_bytes()).expect("write");
        let r1 = read_reply(&mut c);
        let r2 = read_reply(&mut c);
        let r3 = read_reply(&mut c);
        assert_eq!((r1.status, r2.status, r3.status), (200, 404, 200));
        assert_eq!(r3.json()["code"], 501);
        // Connection: close is honoured.
        c.write_all(b"GET /im/health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .expect("write");
        let r = read_reply(&mut c);
        assert_eq!(r.header("Connection"), Some("close"));
        assert!(read_to_close(&mut c).is_empty());
    }
}

#[test]
fn limits_answer_with_their_status_and_close() {
    let s = TestServer::start_with(
        "[limits]\nhead_bytes = 2048\nmax_headers = 20\nbody_bytes = 4096\n",
    );
    let big_header = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "a".repeat(3000));
    let many: String = (0..30).map(|i| format!("X-{i}: 1\r\n")).collect();
    let many_headers = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    for (name, req, status) in [
        ("head too large", big_header, 431),
        ("too many headers", many_headers, 431),
        ("body too large", "POST /im/register HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n".to_string(), 413),
        ("CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc".to_string(), 400),
        ("TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc".to_string(), 400),
        ("duplicate CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc".to_string(), 400),
        ("signed CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\nabc".to_string(), 400),
        ("chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_string(), 411),
        ("garbage", "\x16\x03\x01 hello\r\n\r\n".to_string(), 400),
    ] {
        for via in [Via::Plain, Via::Tls] {
            let mut c = connect(&s, via);
            c.write_all(req.as_bytes()).expect("write");
            let got = read_to_close(&mut c);
            assert_eq!(statuses(&got), vec![status], "{name} over {via:?}: {}", String::from_utf8_lossy(&got));
        }
    }
}

#[test]
fn slow_and_idle_clients_are_closed() {
    let s = TestServer::start_with(
        "[limits]\nhead_timeout_s = 1\nkeepalive_timeout_s = 1\n[tls]\nhandshake_timeout_s = 1\n",
    );
    // Slowloris: a head that never completes.
    let mut slow = TcpStream::connect(s.plain).expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").expect("write");
    // A TLS client that never says hello.
    let mut mute = TcpStream::connect(s.tls).expect("connect");
    // An idle keep-alive connection.
    let mut idle = TcpStream::connect(s.plain).expect("connect");
    let started = Instant::now();
    for c in [&mut slow, &mut mute, &mut idle] {
        c.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        // Whatever the server says last (a TLS alert), it then closes.
        let mut buf = [0u8; 64];
        while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
    }
    assert!(started.elapsed() < Duration::from_secs(8), "closed by the timeouts");
}

#[test]
fn max_connections_and_per_ip_cap() {
    let s = TestServer::start_with("[server]\nmax_connections = 3\n");
    let held: Vec<TcpStream> =
        (0..3).map(|_| TcpStream::connect(s.plain).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(s.plain).expect("connect");
    extra.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut buf = [0u8; 16];
    assert!(matches!(extra.read(&mut buf), Ok(0) | Err(_)), "over the cap: closed at once");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(http(&s, Via::Plain, "GET", "/im/health", "").status, 200);

    let s = TestServer::start_with("[limits]\nconnections_per_ip = 2\n");
    let held: Vec<TcpStream> =
        (0..2).map(|_| TcpStream::connect(s.plain).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(s.plain).expect("connect");
    extra.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    assert!(matches!(extra.read(&mut buf), Ok(0) | Err(_)), "over the per-IP cap");
    drop(held);
}

#[test]
fn one_address_cannot_hold_every_slot_by_default() {
    // The test configuration leaves connections_per_ip at its default.
    let s = TestServer::start();
    let held: Vec<TcpStream> =
        (0..256).map(|_| TcpStream::connect(s.plain).expect("connect")).collect();
    let mut extra = TcpStream::connect(s.plain).expect("connect");
    extra.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut buf = [0u8; 16];
    let closed = match extra.read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "the 257th from one address is closed, not kept waiting");
    // Another address still gets in.
    let other =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    other.bind(&"127.0.0.2:0".parse::<std::net::SocketAddr>().expect("addr").into()).expect("bind");
    other.connect(&s.plain.into()).expect("connect from 127.0.0.2");
    let mut other = TcpStream::from(other);
    other.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    other
        .write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut reply = Vec::new();
    let _ = other.read_to_end(&mut reply);
    assert_eq!(statuses(&reply), [404]);
    drop(held);
}

/// A request on a new connection to the child, and whether a reply came within `wait`.
fn ask(d: &ChildDaemon, wait: Duration) -> (TcpStream, bool) {
    let mut c = TcpStream::connect(d.plain).expect("connect");
    c.write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let answered = replied(&mut c, wait);
    (c, answered)
}

fn replied(c: &mut TcpStream, wait: Duration) -> bool {
    c.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 256];
    matches!(c.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 404"))
}

#[test]
fn clients_queued_while_descriptors_ran_out_are_served_when_some_close() {
    let d = ChildDaemon::spawn_with_fd_limit(&temp_dir(), "", 64);
    assert!(
        d.log_line("the descriptor limit is 64", Duration::from_secs(5)).is_some(),
        "a limit below max_connections is warned about: {:?}",
        d.log()
    );
    let mut served = Vec::new();
    loop {
        let (c, answered) = ask(&d, Duration::from_millis(500));
        if !answered {
            break;
        }
        served.push(c);
        assert!(served.len() < 64, "the limit never bit");
    }
    let mut queued: Vec<TcpStream> = (0..4).map(|_| ask(&d, Duration::from_millis(10)).0).collect();
    std::thread::sleep(Duration::from_millis(300));
    // Descriptors come free; no client connects after this.
    served.truncate(served.len().saturating_sub(8));
    for (i, c) in queued.iter_mut().enumerate() {
        assert!(replied(c, Duration::from_secs(10)), "queued client {i} was never served");
    }
    drop(queued);
    assert!(d.log_line("accept failed", Duration::from_secs(1)).is_some(), "{:?}", d.log());
}

#[test]
fn a_peer_that_never_reads_is_closed_and_slows_no_one() {
    let s = TestServer::start_with("[limits]\noutput_cap_bytes = 65536\n");
    let (ua, ub) = (User::new("reader"), User::new("sleeper"));
    ua.register(&s);
    ub.register(&s);
    let mut a = Session::login(&s, Via::Plain, &ua);
    let mut b = Session::login(&s, Via::Plain, &ub);
    befriend(&s, &mut a, &mut b);
    // b stops reading; a floods b with 16 KiB messages until b is cut off.
    let payload = "x".repeat(16 * 1024);
    let mut cut = false;
    for i in 0..2000 {
        a.ws.send_json(
            &serde_json::json!({"toFriend": b.id, "payload": payload, "id": i.to_string()}),
        );
        let v = a.ws.recv();
        if v["code"] == 300 {
            cut = true;
            break;
        }
        assert!(v["code"] == 200 || v["code"] == 508, "{v}");
        if v["code"] == 508 {
            cut = true;
            break;
        }
    }
    assert!(cut, "the non-reading peer was closed");
    // a still works.
    a.ws.send_json(&serde_json::json!({"type": "heartbeat"}));
    let mut v = a.ws.recv();
    while v["type"] != "heartbeat" {
        v = a.ws.recv();
    }
}

#[test]
fn websocket_control_frames_limits_and_idle_timeout() {
    let s = TestServer::start_with(
        "[websocket]\nping_interval_s = 0.3\nidle_timeout_s = 1.5\nmax_message_bytes = 4096\n[limits]\npayload_bytes = 4096\n",
    );
    for via in [Via::Plain, Via::Tls] {
        // Ping → pong, and the server pings by itself.
        let mut ws = Ws::open(&s, via, "/im/login");
        ws.ws.send(Message::Ping(b"hi".to_vec().into())).expect("ping");
        let mut got_pong = false;
        let mut got_ping = false;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(got_pong && got_ping) && Instant::now() < deadline {
            match ws.ws.read().expect("frame") {
                Message::Pong(p) => got_pong |= p.as_ref() == b"hi",
                Message::Ping(_) => got_ping = true,
                other => panic!("{other:?}"),
            }
        }
        assert!(got_pong && got_ping);
        drop(ws);

        // A message over the limit closes with 1009.
        let u = User::new("big");
        u.register(&s);
        let mut sess = Session::login(&s, via, &u);
        sess.ws.send_text(&"y".repeat(5000));
        assert_eq!(sess.ws.expect_close(), Some(1009));

        // Fragmented text is reassembled: a heartbeat in three fragments.
        let mut sess = Session::login(&s, via, &u);
        let frames =
            [("{\"type\"", false, true), (":\"heart", false, false), ("beat\"}", true, false)];
        for (part, fin, first) in frames {
            use tungstenite::protocol::frame::{
                coding::{Data, OpCode},
                Frame,
            };
            let opcode =
                if first { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
            let frame = Frame::message(part.as_bytes().to_vec(), opcode, fin);
            sess.ws.ws.write(Message::Frame(frame)).expect("frame");
        }
        sess.ws.ws.flush().expect("flush");
        assert_eq!(sess.ws.recv()["type"], "heartbeat");

        // A client that sends nothing (not even pongs) is closed after the idle timeout.
        let mut raw = connect(&s, via);
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let req = format!(
            "GET /im/login HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        );
        raw.write_all(req.as_bytes()).expect("write");
        let started = Instant::now();
        let rest = read_to_close(&mut raw);
        assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 101"));
        assert!(started.elapsed() < Duration::from_secs(8), "idle socket closed");
    }
}

#[test]
fn static_files_types_head_etag_and_traversal() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        let r = http(&s, via, "GET", "/im/www/v1/chat.html", "");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
        let etag = r.header("ETag").expect("etag").to_string();
        assert!(r.header("Last-Modified").is_some_and(|d| d.ends_with("GMT")));
        let mut c = connect(&s, via);
        c.write_all(b"HEAD /im/www/v1/chat.html HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .expect("write");
        let head = String::from_utf8(read_to_close(&mut c)).expect("utf8");
        let length = format!("Content-Length: {}\r\n", r.body.len());
        assert!(
            head.contains(&length) && head.ends_with("\r\n\r\n"),
            "HEAD: length, no body: {head}"
        );
        let mut c = connect(&s, via);
        let req = format!(
            "GET /im/www/v1/chat.html HTTP/1.1\r\nHost: a\r\nIf-None-Match: {etag}\r\n\r\n"
        );
        c.write_all(req.as_bytes()).expect("write");
        assert_eq!(read_reply(&mut c).status, 304);
        assert_eq!(http(&s, via, "POST", "/im/www/v1/chat.html", "").status, 405);
        for evil in [
            "/im/www/v1/../../Cargo.toml",
            "/im/www/v1/%2e%2e/%2e%2e/Cargo.toml",
            "/im/www/v1/%2E%2E%2F%2E%2E%2FCargo.toml",
            "/im/www/v1/..%5c..%5cCargo.toml",
            "/im/www/v1/%252e%252e/%252e%252e/Cargo.toml",
            "/im/www/v1/chat.html%00.png",
            "/im/www/v1//etc/passwd",
            "/im/www/v1/nope.html",
        ] {
            assert_eq!(http(&s, via, "GET", evil, "").status, 404, "{evil}");
        }
    }
}

#[test]
fn dotfiles_are_404_and_other_spellings_serve_the_same_file() {
    let web = temp_dir();
    std::fs::write(web.join("chat.html"), "<p>chat</p>").expect("page");
    std::fs::write(web.join(".env"), "SECRET=1").expect("dotfile");
    std::fs::create_dir_all(web.join(".git")).expect("dot dir");
    std::fs::write(web.join(".git/config"), "secret").expect("dot dir file");
    let s = TestServer::start_with(&format!(
        "[server]\nweb_root = \"{}\"\nstatic_cache_bytes = 65536\n",
        web.display()
    ));
    for via in [Via::Plain, Via::Tls] {
        for hidden in ["/im/www/v1/.env", "/im/www/v1/%2eenv", "/im/www/v1/.git/config"] {
            assert_eq!(http(&s, via, "GET", hidden, "").status, 404, "{hidden}");
        }
        for spelling in ["/im/www/v1/chat.html", "/im/www/v1///chat.html", "/im/www/v1/ch%61t.html"]
        {
            let r = http(&s, via, "GET", spelling, "");
            assert_eq!((r.status, r.body.as_slice()), (200, &b"<p>chat</p>"[..]), "{spelling}");
        }
    }
}

#[test]
fn a_close_delimited_response_nobody_reads_is_cut_at_the_keepalive_timeout() {
    // Over the cache limit: read from disk and answered by a worker.
    close_delimited_and_unread(2 << 20, false);
}

#[test]
fn a_hot_static_file_nobody_reads_is_cut_at_the_keepalive_timeout() {
    // Held in memory: answered by the event loop itself.
    close_delimited_and_unread(900 << 10, true);
}

fn close_delimited_and_unread(size: usize, warm: bool) {
    let web = temp_dir();
    std::fs::write(web.join("big.txt"), vec![b'b'; size]).expect("big file");
    let s = TestServer::start_with(&format!(
        "[server]\nweb_root = \"{}\"\n[limits]\nkeepalive_timeout_s = 1\n",
        web.display()
    ));
    if warm {
        assert_eq!(http(&s, Via::Plain, "GET", "/im/www/v1/big.txt", "").body.len(), size);
    }
    // A small window and MSS, as across the Internet: the server's kernel takes little of
    // the response, the rest waits in imd's output buffer (under the 4 MiB cap).
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    sock.set_mss(1000).expect("mss");
    sock.connect(&s.plain.into()).expect("connect");
    let mut c: TcpStream = sock.into();
    c.write_all(b"GET /im/www/v1/big.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .expect("write");
    // Past the timeout, the connection is gone: reading now yields what the kernel
    // already held, then the end, never the whole body.
    std::thread::sleep(Duration::from_millis(2500));
    c.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut got = 0;
    let mut buf = vec![0u8; 65536];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read after {got} bytes: {e}"),
        }
    }
    assert!(got < size, "imd kept the connection past its timeout: all {got} bytes came");
    let _ = std::fs::remove_dir_all(&web);
}
