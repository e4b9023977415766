//! Users for a load run, made through the protocol itself: registration and friend
//! requests over plain HTTP/1.1 keep-alive connections, a few threads in parallel.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use serde_json::Value;

/// One keep-alive HTTP connection.
pub struct Http {
    reader: BufReader<TcpStream>,
}

impl Http {
    pub fn connect(addr: SocketAddr) -> io::Result<Http> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Http { reader: BufReader::new(s) })
    }

    /// POSTs a JSON body; the reply's JSON.
    pub fn post(&mut self, path: &str, body: &Value) -> io::Result<Value> {
        let body = body.to_string();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.reader.get_mut().write_all(req.as_bytes())?;
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().map_err(io::Error::other)?;
            }
        }
        let mut buf = vec![0; length];
        self.reader.read_exact(&mut buf)?;
        serde_json::from_slice(&buf).map_err(io::Error::other)
    }
}

/// Runs `job(i, http)` for every i in 0..n on `threads` threads, each with its own
/// connection. Returns how many jobs failed.
pub fn parallel(
    addr: SocketAddr,
    n: usize,
    threads: usize,
    job: impl Fn(usize, &mut Http) -> bool + Sync,
) -> usize {
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut http = match Http::connect(addr) {
                    Ok(h) => h,
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    if !job(i, &mut http) {
                        failed.fetch_add(1, Ordering::Relaxed);
                        // The connection may be broken: start a new one.
                        if let Ok(h) = Http::connect(addr) {
                            http = h;
                        }
                    }
                }
            });
        }
    });
    failed.load(Ordering::Relaxed)
}

/// The account and password of user `i` of this run.
pub fn credentials(prefix: &str, i: usize) -> (String, String) {
    (format!("{prefix}u{i}"), format!("load-pw-{i}"))
}

/// Registers users 0..n (an existing account is fine: runs may repeat).
pub fn register_all(addr: SocketAddr, prefix: &str, n: usize) -> usize {
    parallel(addr, n, 8, |i, http| {
        let (account, password) = credentials(prefix, i);
        let body = serde_json::json!({"account": account, "password": password, "mail": "load@example.com"});
        matches!(http.post("/im/register", &body), Ok(v) if v["code"] == 200 || v["code"] == 504)
    })
}

/// Makes users 2k and 2k+1 friends for every pair, given their ids and tokens.
pub fn befriend_pairs(addr: SocketAddr, auth: &[(String, String)]) -> usize {
    parallel(addr, auth.len() / 2, 8, |p, http| {
        let ((a_id, a_tok), (b_id, b_tok)) = (&auth[2 * p], &auth[2 * p + 1]);
        let req = serde_json::json!({"id": a_id, "token": a_tok, "to": b_id, "note": "load"});
        let ok = matches!(http.post("/im/friends/request", &req), Ok(v) if v["code"] == 200 || v["code"] == 522);
        let add = serde_json::json!({"id": b_id, "token": b_tok, "from": a_id, "name": "peer"});
        ok && matches!(http.post("/im/friends/add", &add), Ok(v) if v["code"] == 200 || v["code"] == 522)
    })
}
