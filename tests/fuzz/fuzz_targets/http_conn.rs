//! HTTP bytes through the reactor's real connection state machine over an in-memory
//! pipe: framing, limits (400/411/413/431), keep-alive, pipelining, the upgrade to a
//! WebSocket and the frames after it, timers, a slow reader and a shutdown.
//!
//! Input: one flags byte, one seed byte, then the client's bytes. Flags (low bits
//! first): 2 bits of chunking (all at once, 1 byte, 1–16, 1–256 bytes), a slow reader,
//! time passing between chunks, a shutdown half-way, the client closing at the end.
//!
//! Checked: no panic; the output is a sequence of well-formed HTTP responses, one per
//! request the handler answered and in that order (plus at most one refusal), then
//! after a 101 only well-formed server frames; nothing follows a closing response or a
//! close frame, nor is anything written once the socket is dropped; output stays
//! proportional to input; the connection is always freed in the end, and the handler
//! hears `closed` once per opened WebSocket and never a message after it.
#![no_main]

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use reactor::internals::{EchoHandler, MemoryConn};
use reactor::Config;

fn config() -> Config {
    Config {
        head_bytes: 2048,
        max_headers: 16,
        body_bytes: 4096,
        output_cap_bytes: 4096,
        ws_max_message_bytes: 4096,
        ..Config::default()
    }
}

/// xorshift: chunk sizes and pauses from the seed byte, the same on every run.
struct Rng(u32);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0 % n
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, stream @ ..] = data else { return };
    let mut rng = Rng(u32::from(*seed).wrapping_mul(0x9e37_79b9) | 1);
    let handler = Arc::new(EchoHandler::default());
    let mut conn = MemoryConn::new(config(), handler.clone()).expect("memory connection");
    let slow = flags & 4 != 0;
    let ticks = flags & 8 != 0;
    let shutdown_at = (flags & 16 != 0).then_some(stream.len() / 2);
    let mut out = Vec::new();
    let mut rest = stream;
    let mut sent = 0;
    while !rest.is_empty() {
        let n = match flags & 3 {
            0 => rest.len(),
            1 => 1,
            2 => 1 + rng.below(16) as usize,
            _ => 1 + rng.below(256) as usize,
        }
        .min(rest.len());
        let open_before = conn.is_open();
        if slow {
            conn.set_room(rng.below(64) as usize);
        }
        conn.send(&rest[..n]);
        rest = &rest[n..];
        sent += n;
        if ticks {
            conn.advance(Duration::from_secs(u64::from(rng.below(40))));
        }
        if shutdown_at.is_some_and(|at| sent >= at) {
            conn.shutdown();
        }
        let got = conn.take_output();
        assert!(open_before || got.is_empty(), "written after the socket was dropped");
        out.extend(got);
    }
    conn.set_room(usize::MAX);
    if flags & 32 != 0 {
        conn.close_input();
    }
    out.extend(conn.take_output());
    for _ in 0..10 {
        let open_before = conn.is_open();
        conn.advance(Duration::from_secs(30));
        let got = conn.take_output();
        assert!(open_before || got.is_empty(), "written after the socket was dropped");
        out.extend(got);
    }
    assert!(conn.is_freed(), "connection never freed");
    assert!(
        out.len() <= 8 * stream.len() + 4096,
        "{} bytes out for {} in",
        out.len(),
        stream.len()
    );
    let (opened, closed) = (handler.opened.load(Relaxed), handler.closed.load(Relaxed));
    assert_eq!(opened, closed, "closed once per opened WebSocket");
    assert_eq!(handler.after_close.load(Relaxed), 0, "message after closed");
    let requests = handler.requests.lock().expect("log").clone();
    // The server gave up on a client that did not read (output cap, or a timer while
    // its answer was still queued): what it had not taken yet is lost.
    let stats = conn.remote().stats();
    let cut_short = stats.closed_slow_reader.load(Relaxed) + stats.closed_timeout.load(Relaxed) > 0;
    check_output(&out, &requests, cut_short);
});

/// The output is HTTP responses, then WebSocket frames after a 101. `cut_short`: the
/// connection was dropped while output was pending, so the last message may be truncated.
fn check_output(mut out: &[u8], requests: &[(String, String)], cut_short: bool) {
    let mut answered = requests.iter();
    while !out.is_empty() {
        let Some(end) = find(out, b"\r\n\r\n") else {
            assert!(cut_short, "incomplete response head: {:?}", String::from_utf8_lossy(out));
            return;
        };
        let head = std::str::from_utf8(&out[..end]).expect("response head is UTF-8");
        out = &out[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut length = None;
        let mut closing = false;
        for line in lines {
            let (name, value) =
                line.split_once(": ").unwrap_or_else(|| panic!("bad header {line:?}"));
            match name {
                "Content-Length" => length = Some(value.parse::<usize>().expect("length")),
                "Connection" => closing = value == "close",
                _ => {}
            }
        }
        let (method, target) = match status {
            // Answered by the handler (403: an upgrade it refused; 503: an upgrade it
            // accepted while the server began shutting down).
            101 | 200 | 403 | 503 => {
                answered.next().cloned().unwrap_or_else(|| panic!("{status} for no request"))
            }
            400 | 411 | 413 | 431 => {
                assert!(closing, "a refusal closes");
                (String::new(), String::new())
            }
            _ => panic!("unexpected status {status}"),
        };
        if status == 101 {
            assert!(length.is_none() && !closing);
            assert!(answered.next().is_none(), "a request answered after the upgrade");
            return check_frames(out, cut_short);
        }
        let length = length.expect("Content-Length");
        let body_len = if method == "HEAD" { 0 } else { length };
        if out.len() < body_len {
            assert!(cut_short, "truncated body");
            return;
        }
        let body = &out[..body_len];
        if status == 200 && method != "HEAD" {
            let expected = format!("{method} {target} ");
            assert!(body.starts_with(expected.as_bytes()), "{body:?} answers {expected:?}");
        }
        out = &out[body_len..];
        if closing {
            assert!(out.is_empty(), "bytes after a closing response");
        }
    }
    assert!(cut_short || answered.next().is_none(), "a request answered, but no response");
}

/// Server frames: unmasked, known opcodes, short final control frames, UTF-8 text,
/// nothing after a close frame.
fn check_frames(mut out: &[u8], cut_short: bool) {
    while !out.is_empty() {
        if out.len() < 2 {
            assert!(cut_short, "truncated frame header");
            return;
        }
        let (b0, b1) = (out[0], out[1]);
        assert_eq!(b0 & 0x70, 0, "reserved bits");
        assert_eq!(b1 & 0x80, 0, "server frames are not masked");
        let opcode = b0 & 0x0f;
        let (len, header) = match b1 & 0x7f {
            126 if out.len() >= 4 => (usize::from(u16::from_be_bytes([out[2], out[3]])), 4),
            127 if out.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&out[2..10]);
                (usize::try_from(u64::from_be_bytes(n)).expect("length"), 10)
            }
            126 | 127 => {
                assert!(cut_short, "truncated frame length");
                return;
            }
            n => (usize::from(n), 2),
        };
        if out.len() < header + len {
            assert!(cut_short, "truncated frame");
            return;
        }
        let payload = &out[header..header + len];
        match opcode {
            1 => assert!(std::str::from_utf8(payload).is_ok(), "text frame is UTF-8"),
            2 => {}
            8 | 9 | 10 => {
                assert!(b0 & 0x80 != 0 && len <= 125, "control frames are short and final");
            }
            _ => panic!("unexpected opcode {opcode}"),
        }
        out = &out[header + len..];
        if opcode == 8 {
            assert!(len != 1, "a close payload has a code");
            assert!(out.is_empty(), "bytes after a close frame");
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
