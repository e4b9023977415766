//! HTTP/1.1 request framing with httparse: a resumable parse that returns `Ok(None)`
//! until a whole head is buffered, and refuses anything that could be framed two ways.

use crate::request::Listener;
use crate::response::{reason, Response};

/// Limits the parser enforces.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    /// Largest head in bytes (431).
    pub head_bytes: usize,
    /// Most header lines (431).
    pub max_headers: usize,
    /// Largest body (413).
    pub body_bytes: usize,
}

/// A request head that parsed and framed cleanly.
#[derive(Debug)]
pub struct Head {
    /// Method as sent.
    pub method: String,
    /// Target as sent.
    pub target: String,
    /// Headers as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bytes of the head, including the blank line.
    pub head_len: usize,
    /// Bytes of body that follow.
    pub body_len: usize,
    /// The connection stays open after the response.
    pub keep_alive: bool,
    /// A WebSocket upgrade: the client's `Sec-WebSocket-Key`.
    pub ws_key: Option<String>,
}

/// Parses the head at the start of `buf`. `Ok(None)`: incomplete, read more.
/// `Err(status)`: answer `status` and close.
pub fn parse_head(buf: &[u8], limits: &HeadLimits) -> Result<Option<Head>, u16> {
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut slots);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > limits.head_bytes { Err(431) } else { Ok(None) };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(431),
        Err(_) => return Err(400),
    };
    if head_len > limits.head_bytes {
        return Err(431);
    }
    // httparse tolerates bare LF line ends; a proxy in front may not agree, so refuse.
    let head = &buf[..head_len];
    if head.iter().enumerate().any(|(i, b)| *b == b'\n' && (i == 0 || head[i - 1] != b'\r')) {
        return Err(400);
    }
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default().to_string();
    let minor = req.version.unwrap_or(1);
    if !target.starts_with('/') {
        return Err(400);
    }
    let headers: Vec<(String, Vec<u8>)> =
        req.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect();

    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut hosts = 0;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut upgrade_token = false;
    let mut upgrade_ws = false;
    let mut ws_version_ok = false;
    let mut ws_key = None;
    for (name, value) in &headers {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "content-length" => {
                if content_length.is_some() {
                    return Err(400);
                }
                content_length = Some(parse_content_length(value)?);
            }
            "transfer-encoding" => transfer_encoding = true,
            "host" => hosts += 1,
            "connection" => {
                for token in tokens(value) {
                    close |= token.eq_ignore_ascii_case("close");
                    keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
                    upgrade_token |= token.eq_ignore_ascii_case("upgrade");
                }
            }
            "upgrade" => upgrade_ws |= tokens(value).any(|t| t.eq_ignore_ascii_case("websocket")),
            "sec-websocket-version" => ws_version_ok = value.as_slice() == b"13",
            "sec-websocket-key" => ws_key = std::str::from_utf8(value).ok().map(str::to_string),
            _ => {}
        }
    }
    if transfer_encoding {
        // Chunked bodies are not accepted; with a Content-Length too, the framing is
        // ambiguous (a smuggling attempt).
        return Err(if content_length.is_some() { 400 } else { 411 });
    }
    if (minor == 1 && hosts != 1) || hosts > 1 {
        return Err(400);
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > limits.body_bytes as u64 {
        return Err(413);
    }
    let body_len = body_len as usize;
    let keep_alive = if minor == 1 { !close } else { keep_alive_token && !close };

    let ws_key = if upgrade_ws && upgrade_token {
        let key_ok = ws_key.as_deref().is_some_and(valid_ws_key);
        if method != "GET" || !ws_version_ok || !key_ok || body_len != 0 || minor != 1 {
            return Err(400);
        }
        ws_key
    } else {
        None
    };
    Ok(Some(Head { method, target, headers, head_len, body_len, keep_alive, ws_key }))
}

/// Comma-separated header tokens, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(value).unwrap_or("").split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// Only plain digits, at most 19 of them (no sign, no list, no overflow).
fn parse_content_length(value: &[u8]) -> Result<u64, u16> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(400);
    }
    std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()).ok_or(400)
}

/// A `Sec-WebSocket-Key` is base64 of 16 bytes: 24 characters ending in `==`.
fn valid_ws_key(key: &str) -> bool {
    let k = key.trim().as_bytes();
    k.len() == 24
        && k.ends_with(b"==")
        && k[..22].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// What every response on the TLS listener carries: browsers that have been here once
/// never try plain HTTP (and a stripping proxy) for this host again.
pub const HSTS: &str = "Strict-Transport-Security: max-age=31536000\r\n";

/// Appends `resp` to `out`, as sent on `listener`. A `HEAD` response keeps
/// `Content-Length` but no body.
pub fn write_response(
    out: &mut Vec<u8>,
    resp: &Response,
    head_only: bool,
    close: bool,
    listener: Listener,
) {
    use std::io::Write;
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (name, value) in &resp.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if listener == Listener::Tls {
        out.extend_from_slice(HSTS.as_bytes());
    }
    if !matches!(resp.status, 101 | 204 | 304) {
        let _ = write!(out, "Content-Length: {}\r\n", resp.body.len());
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && resp.status != 304 {
        out.extend_from_slice(&resp.body);
    }
}

/// The reactor's own answer to a request it refuses.
pub fn error_response(status: u16) -> Response {
    Response::new(status, "text/plain; charset=utf-8", format!("{}\n", reason(status))).closing()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits { head_bytes: 1024, max_headers: 8, body_bytes: 100 };

    fn parse(s: &str) -> Result<Option<Head>, u16> {
        parse_head(s.as_bytes(), &LIMITS)
    }

    #[test]
    fn complete_partial_and_pipelined() {
        let two = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        let h = parse(two).unwrap().unwrap();
        assert_eq!(h.target, "/a");
        assert_eq!(h.head_len, two.len() / 2);
        assert!(h.keep_alive);
        for cut in 0..two.len() / 2 {
            assert!(parse(&two[..cut]).unwrap().is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn framing_refusals() {
        for (req, status) in [
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1,1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", 413),
            ("GET / HTTP/1.1\nHost: x\n\n", 400),
            ("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\nH: 1\r\nI: 1\r\n\r\n", 431),
        ] {
            assert_eq!(parse(req).err(), Some(status), "{req:?}");
        }
        assert_eq!(parse_head(&[b'a'; 2000], &LIMITS).err(), Some(431));
    }

    #[test]
    fn connection_semantics() {
        assert!(
            !parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().unwrap().keep_alive
        );
    }

    #[test]
    fn websocket_upgrade() {
        let ok = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert_eq!(parse(ok).unwrap().unwrap().ws_key.as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        let bad = ok.replace("13", "8");
        assert_eq!(parse(&bad).err(), Some(400));
        let bad = ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
        assert_eq!(parse(&bad).err(), Some(400));
    }

    #[test]
    fn responses() {
        let mut out = Vec::new();
        let hi = Response::new(200, "text/plain", "hi");
        write_response(&mut out, &hi, true, true, Listener::Plain);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        write_response(&mut out, &hi, false, false, Listener::Tls);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nStrict-Transport-Security: max-age=31536000\r\nContent-Length: 2\r\n\r\nhi"
        );
    }
}
