//! The byte stream under a connection: a mio socket in production, or an in-memory
//! pipe so the very same connection code runs in unit tests and fuzz targets.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// What a connection reads from and writes to. Both behave like a non-blocking
/// socket: `WouldBlock` when there is nothing to read or no room to write.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Memory(Pipe),
}

impl From<TcpStream> for Stream {
    fn from(sock: TcpStream) -> Stream {
        Stream::Tcp(sock)
    }
}

impl Stream {
    /// Ends our sending side (a FIN after what is written); reads go on.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Memory(p) => {
                p.outgoing_closed = true;
                Ok(())
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Memory(p) => p.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Memory(p) => p.write(buf),
        }
    }

    /// rustls hands its queued records over as one vectored write: one syscall, not
    /// one per record.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Memory(p) => p.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Memory(p) => p.flush(),
        }
    }
}

/// The server's end of an in-memory duplex: what the client sent and has not been
/// read yet, and what the server wrote and the client has not taken yet.
#[derive(Debug)]
pub(crate) struct Pipe {
    /// Client → server bytes not read yet.
    pub incoming: Vec<u8>,
    /// The client closed its sending side: reads end with 0 once `incoming` is empty.
    pub incoming_closed: bool,
    /// Server → client bytes.
    pub outgoing: Vec<u8>,
    /// How many more bytes the client accepts before writes would block (a slow reader).
    pub room: usize,
    /// The server shut down its sending side: the client has read to the end.
    pub outgoing_closed: bool,
}

impl Default for Pipe {
    fn default() -> Pipe {
        Pipe {
            incoming: Vec::new(),
            incoming_closed: false,
            outgoing: Vec::new(),
            room: usize::MAX,
            outgoing_closed: false,
        }
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.incoming.is_empty() {
            return if self.incoming_closed {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.incoming.len());
        buf[..n].copy_from_slice(&self.incoming[..n]);
        self.incoming.drain(..n);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.outgoing_closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if self.room == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        self.outgoing.extend_from_slice(&buf[..n]);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_blocks_like_a_nonblocking_socket() {
        let mut p = Pipe { room: 3, ..Pipe::default() };
        let mut buf = [0u8; 8];
        assert_eq!(p.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        p.incoming.extend_from_slice(b"hello");
        assert_eq!(p.read(&mut buf[..2]).unwrap(), 2);
        assert_eq!(p.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"llo");
        p.incoming_closed = true;
        assert_eq!(p.read(&mut buf).unwrap(), 0);
        assert_eq!(p.write(b"abcd").unwrap(), 3);
        assert_eq!(p.write(b"d").unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(p.outgoing, b"abc");
    }
}
