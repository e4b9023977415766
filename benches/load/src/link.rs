//! A non-blocking client socket, plain or TLS, with its own input and output buffers,
//! and the WebSocket framing on top (tungstenite's context never touches the socket).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

/// A connected (or connecting) socket.
pub struct Link {
    pub sock: TcpStream,
    tls: Option<Box<ClientConnection>>,
    pub input: Vec<u8>,
    pub output: Vec<u8>,
    pub eof: bool,
}

impl Link {
    /// Starts a non-blocking connect from `source` (port 0) to `to`.
    pub fn connect(
        source: SocketAddr,
        to: SocketAddr,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> io::Result<Link> {
        let socket =
            socket2::Socket::new(socket2::Domain::for_address(to), socket2::Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket.bind(&source.into())?;
        match socket.connect(&to.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(115) || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        socket.set_nodelay(true)?;
        let sock = TcpStream::from_std(socket.into());
        let tls = match tls {
            Some(config) => {
                let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
                let mut conn =
                    ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
                // Open-loop sends may run ahead of the socket; never refuse them here.
                conn.set_buffer_limit(None);
                Some(Box::new(conn))
            }
            None => None,
        };
        Ok(Link { sock, tls, input: Vec::new(), output: Vec::new(), eof: false })
    }

    /// Reads everything the socket has (through TLS) into `input`. A short read has
    /// emptied the socket, and what arrives later raises a new edge-triggered event, so
    /// it ends the drain without one more read to see `WouldBlock`; unless the server's
    /// end is `closing`, when the end of file may wait behind the data.
    pub fn read_all(&mut self, scratch: &mut [u8], closing: bool) -> io::Result<()> {
        match self.tls.as_deref_mut() {
            None => loop {
                match self.sock.read(scratch) {
                    Ok(0) => {
                        self.eof = true;
                        return Ok(());
                    }
                    Ok(n) => {
                        self.input.extend_from_slice(&scratch[..n]);
                        if n < scratch.len() && !closing {
                            return Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            Some(tls) => loop {
                let mut sock = ShortRead { sock: &mut self.sock, short: false };
                match tls.read_tls(&mut sock) {
                    Ok(0) => self.eof = true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
                let state = tls.process_new_packets().map_err(io::Error::other)?;
                if state.plaintext_bytes_to_read() > 0 {
                    loop {
                        match tls.reader().read(scratch) {
                            Ok(0) => break,
                            Ok(n) => self.input.extend_from_slice(&scratch[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
                if self.eof || state.peer_has_closed() {
                    self.eof = true;
                    return Ok(());
                }
                if sock.short && !closing {
                    return Ok(());
                }
            },
        }
    }

    /// Writes `output` until the socket would block.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.tls.as_deref_mut() {
            None => {
                let mut done = 0;
                while done < self.output.len() {
                    match self.sock.write(&self.output[done..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                self.output.drain(..done);
            }
            Some(tls) => {
                if !self.output.is_empty() {
                    tls.writer().write_all(&self.output)?;
                    self.output.clear();
                }
                while tls.wants_write() {
                    match tls.write_tls(&mut self.sock) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }
}

/// A socket that notes whether its last read returned less than was asked.
struct ShortRead<'a> {
    sock: &'a mut TcpStream,
    short: bool,
}

impl Read for ShortRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

/// tungstenite's view: reads from `input`, writes to `output`.
struct Adapter<'a> {
    input: &'a mut Vec<u8>,
    pos: usize,
    output: &'a mut Vec<u8>,
    eof: bool,
}

impl Read for Adapter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.input[self.pos..];
        if rest.is_empty() {
            return if self.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Adapter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The WebSocket client side of a link.
pub struct Ws {
    ctx: WebSocketContext,
}

impl Ws {
    /// After the 101: `leftover` is what followed the response head.
    pub fn new(leftover: Vec<u8>) -> Ws {
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        Ws { ctx: WebSocketContext::from_partially_read(leftover, Role::Client, Some(config)) }
    }

    /// Every complete text message buffered in `link.input`.
    pub fn read_texts(
        &mut self,
        link: &mut Link,
        mut on_text: impl FnMut(&str),
    ) -> io::Result<bool> {
        let mut closed = false;
        let mut io =
            Adapter { input: &mut link.input, pos: 0, output: &mut link.output, eof: link.eof };
        loop {
            match self.ctx.read(&mut io) {
                Ok(Message::Text(t)) => on_text(t.as_str()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let used = io.pos;
        link.input.drain(..used);
        Ok(closed)
    }

    /// Queues a text frame on `link`.
    pub fn send(&mut self, link: &mut Link, text: String) -> io::Result<()> {
        let mut io =
            Adapter { input: &mut link.input, pos: 0, output: &mut link.output, eof: link.eof };
        self.ctx.write(&mut io, Message::text(text)).map_err(io::Error::other)?;
        self.ctx.flush(&mut io).map_err(io::Error::other)
    }
}

/// The upgrade request for `path`.
pub fn upgrade_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes()
}

/// If `input` holds a whole response head: whether it is a 101, and its length.
pub fn upgrade_response(input: &[u8]) -> Option<(bool, usize)> {
    let end = input.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some((input.starts_with(b"HTTP/1.1 101"), end))
}
