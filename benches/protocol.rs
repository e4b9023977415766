//! Criterion benches of the per-request and per-message work: HTTP head parsing (small,
//! and 2 KB of headers), reply encoding, a WebSocket frame round trip through
//! tungstenite's context over memory, and the same round trip through the reactor's own
//! connection code (read, frame parsing, dispatch, handler, reply framing, write) over an
//! in-memory pipe.

use std::hint::black_box;
use std::io::{self, Read, Write};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proto::{Code, FriendEntry, Profile, RequestEntry};
use reactor::internals::{parse_head, EchoHandler, HeadLimits, MemoryConn};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

const LIMITS: HeadLimits =
    HeadLimits { head_bytes: 16 * 1024, max_headers: 100, body_bytes: 1 << 20 };

fn http_parsing(c: &mut Criterion) {
    let small = b"GET /im/friends/found?id=61810e422ec1f24f2175c05a631c9a8f&token=2ab3a1db5cc70776319eb5bef385af79&name=bob HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    let mut big = b"GET /im/www/v1/chat.html HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    while big.len() < 2048 {
        big.extend_from_slice(format!("X-Header-{}: {}\r\n", big.len(), "v".repeat(40)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let mut g = c.benchmark_group("http_parse");
    for (name, req) in [("small", &small), ("2kb_headers", &big)] {
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse_head(black_box(req), &LIMITS)));
    }
    g.finish();
}

fn reply_encoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("reply_encode");
    g.bench_function("ack_with_id", |b| {
        b.iter(|| proto::status_with_id(Code::Success, Some(black_box("12345"))))
    });
    let payload = "How are you? ".repeat(5);
    g.bench_function("receive_frame_64b", |b| {
        b.iter(|| {
            proto::receive_frame(
                "12345",
                "61810e422ec1f24f2175c05a631c9a8f",
                black_box(&payload),
                1_795_478_400_000,
            )
        })
    });
    let friends: Vec<FriendEntry> = (0..20)
        .map(|i| FriendEntry {
            id: format!("{i:032x}"),
            name: format!("friend {i}"),
            online: i % 2 == 0,
            ..FriendEntry::default()
        })
        .collect();
    let profile = Profile {
        id: "61810e422ec1f24f2175c05a631c9a8f".into(),
        name: "Alice".into(),
        ..Profile::default()
    };
    let requests = vec![RequestEntry {
        id: "f".repeat(32),
        name: "Bob".into(),
        to: "a".repeat(32),
        note: "hi".into(),
    }];
    g.bench_function("login_20_friends", |b| {
        b.iter(|| {
            proto::login_reply(
                black_box(&friends),
                &profile,
                &requests,
                "2ab3a1db5cc70776319eb5bef385af79",
            )
        })
    });
    g.finish();
}

/// A memory pipe standing in for the socket.
struct Pipe<'a> {
    input: &'a mut Vec<u8>,
    output: &'a mut Vec<u8>,
}

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input.drain(..n);
        Ok(n)
    }
}

impl Write for Pipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn websocket_round_trip(c: &mut Criterion) {
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let mut client = WebSocketContext::new(Role::Client, Some(config));
    let mut server = WebSocketContext::new(Role::Server, Some(config));
    let frame = r#"{"id":"1","toFriend":"f69f9777de910b9990e407cbedc243be","payload":"How are you? How are you? How"}"#;
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    c.bench_function("ws_round_trip_100b", |b| {
        b.iter(|| {
            let mut empty = Vec::new();
            client
                .write(
                    &mut Pipe { input: &mut empty, output: &mut to_server },
                    Message::text(frame),
                )
                .expect("write");
            let msg = server
                .read(&mut Pipe { input: &mut to_server, output: &mut to_client })
                .expect("server read");
            server
                .write(&mut Pipe { input: &mut empty, output: &mut to_client }, msg)
                .expect("echo");
            client
                .read(&mut Pipe { input: &mut to_client, output: &mut empty })
                .expect("client read")
        })
    });
}

/// One client frame in, through `Conn` and the echo handler, one server frame out: the
/// reactor's path for a message, less the socket and the thread hop.
fn reactor_round_trip(c: &mut Criterion) {
    let mut conn =
        MemoryConn::new(reactor::Config::default(), std::sync::Arc::new(EchoHandler::default()))
            .expect("in-memory connection");
    conn.send(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert!(conn.take_output().starts_with(b"HTTP/1.1 101"), "upgrade refused");
    let config = WebSocketConfig::default().write_buffer_size(0);
    let mut client = WebSocketContext::new(Role::Client, Some(config));
    let (mut empty, mut frame) = (Vec::new(), Vec::new());
    let text = r#"{"id":"1","toFriend":"f69f9777de910b9990e407cbedc243be","payload":"How are you? How are you? How"}"#;
    client
        .write(&mut Pipe { input: &mut empty, output: &mut frame }, Message::text(text))
        .expect("client frame");
    c.bench_function("ws_round_trip_reactor_100b", |b| {
        b.iter(|| {
            conn.send(black_box(&frame));
            let out = conn.take_output();
            assert!(out.len() > text.len(), "no echo");
            out
        })
    });
}

criterion_group!(benches, http_parsing, reply_encoding, websocket_round_trip, reactor_round_trip);
criterion_main!(benches);
