//! The raw ceiling for `make bench`: the smallest WebSocket echo server on mio and
//! tungstenite (and rustls for TLS), one thread, no workers, no channels, no limits.
//! imd's routed-message rate is compared with what this echoes, driven by the same
//! load generator.
//!
//! `cargo bench --bench echo_baseline -- PLAIN_ADDR [TLS_ADDR]` serves until killed.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::PrivateKeyDer;
use rustls::{ServerConfig, ServerConnection};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

struct Conn {
    sock: TcpStream,
    tls: Option<ServerConnection>,
    input: Vec<u8>,
    output: Vec<u8>,
    ws: Option<WebSocketContext>,
}

/// tungstenite reads `input` and writes `output`.
struct Pipe<'a>(&'a mut Vec<u8>, &'a mut Vec<u8>);

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0.drain(..n);
        Ok(n)
    }
}

impl Write for Pipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.1.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Conn {
    /// Reads, echoes, writes; false when the connection is finished.
    fn ready(&mut self, scratch: &mut [u8]) -> bool {
        if self.fill(scratch).is_err() {
            return false;
        }
        if self.ws.is_none() {
            let Some(end) = self.input.windows(4).position(|w| w == b"\r\n\r\n") else {
                // Still in the TLS handshake or the upgrade request: write what is owed.
                return self.drain().is_ok();
            };
            let head = String::from_utf8_lossy(&self.input[..end]).to_string();
            let Some(key) = head
                .lines()
                .find_map(|l| {
                    l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key"))
                })
                .map(|(_, v)| v.trim().to_string())
            else {
                return false;
            };
            self.input.drain(..end + 4);
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            self.output.extend_from_slice(
                format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").as_bytes(),
            );
            let config = WebSocketConfig::default().write_buffer_size(0);
            self.ws = Some(WebSocketContext::new(Role::Server, Some(config)));
        }
        if let Some(ws) = self.ws.as_mut() {
            loop {
                match ws.read(&mut Pipe(&mut self.input, &mut self.output)) {
                    Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                        if ws.write(&mut Pipe(&mut Vec::new(), &mut self.output), m).is_err() {
                            return false;
                        }
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        break
                    }
                    Err(_) => return false,
                }
            }
            let _ = ws.flush(&mut Pipe(&mut Vec::new(), &mut self.output));
        }
        self.drain().is_ok()
    }

    fn fill(&mut self, scratch: &mut [u8]) -> io::Result<()> {
        loop {
            let n = match self.tls.as_mut() {
                None => self.sock.read(scratch),
                Some(tls) => tls.read_tls(&mut self.sock),
            };
            match n {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    if let Some(tls) = self.tls.as_mut() {
                        tls.process_new_packets().map_err(io::Error::other)?;
                        loop {
                            match tls.reader().read(scratch) {
                                Ok(0) => break,
                                Ok(m) => self.input.extend_from_slice(&scratch[..m]),
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                Err(e) => return Err(e),
                            }
                        }
                    } else {
                        self.input.extend_from_slice(&scratch[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    fn drain(&mut self) -> io::Result<()> {
        match self.tls.as_mut() {
            None => {
                while !self.output.is_empty() {
                    match self.sock.write(&self.output) {
                        Ok(n) => drop(self.output.drain(..n)),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            Some(tls) => {
                tls.writer().write_all(&self.output)?;
                self.output.clear();
                while tls.wants_write() {
                    match tls.write_tls(&mut self.sock) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }
}

fn tls_config() -> Arc<ServerConfig> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .expect("self-signed certificate");
    let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("certificate");
    Arc::new(config)
}

fn main() {
    let addrs: Vec<SocketAddr> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    if addrs.is_empty() {
        // Run by `cargo bench` without arguments: nothing to measure here.
        eprintln!(
            "echo_baseline: usage: cargo bench --bench echo_baseline -- PLAIN_ADDR [TLS_ADDR]"
        );
        return;
    }
    let mut poll = Poll::new().expect("poll");
    let mut listeners = Vec::new();
    for (i, addr) in addrs.iter().take(2).enumerate() {
        let mut l = TcpListener::bind(*addr).expect("bind");
        poll.registry().register(&mut l, Token(i), Interest::READABLE).expect("register");
        listeners.push(l);
    }
    let tls = tls_config();
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = 10;
    let mut scratch = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(1024);
    eprintln!("echo_baseline: serving on {addrs:?}");
    loop {
        if poll.poll(&mut events, None).is_err() {
            continue;
        }
        for event in events.iter() {
            let t = event.token().0;
            if t < listeners.len() {
                while let Ok((mut sock, _)) = listeners[t].accept() {
                    let _ = sock.set_nodelay(true);
                    let token = Token(next);
                    next += 1;
                    if poll
                        .registry()
                        .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        let tls = (t == 1).then(|| {
                            let mut c = ServerConnection::new(tls.clone()).expect("tls session");
                            c.set_buffer_limit(None);
                            c
                        });
                        conns.insert(
                            token.0,
                            Conn { sock, tls, input: Vec::new(), output: Vec::new(), ws: None },
                        );
                    }
                }
            } else if let Some(conn) = conns.get_mut(&t) {
                if !conn.ready(&mut scratch) {
                    if let Some(mut c) = conns.remove(&t) {
                        let _ = poll.registry().deregister(&mut c.sock);
                    }
                }
            }
        }
    }
}
