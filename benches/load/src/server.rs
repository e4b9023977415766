//! The daemon a restart run owns: started from a command line (`sh -c "exec CMD"`, so
//! the child is the daemon itself and a signal reaches it, not a shell), stopped with
//! SIGTERM the way an operator or systemd stops it, and known to listen once a TCP
//! connect to its port succeeds. Never left running: dropped, it is stopped too.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a stopped daemon may take to exit before it is killed.
pub const EXIT_LIMIT: Duration = Duration::from_secs(60);
/// How long a started daemon may take to listen.
pub const LISTEN_LIMIT: Duration = Duration::from_secs(60);

pub struct Server {
    child: Child,
}

impl Server {
    /// Starts `cmd`; its output goes where ours does.
    pub fn spawn(cmd: &str) -> io::Result<Server> {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {cmd}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Server { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the daemon to stop: SIGTERM. No libc here; `kill(1)` sends it.
    pub fn terminate(&mut self) -> io::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status()?;
        if status.success() || self.exited()?.is_some() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill -TERM {} failed: {status}", self.child.id())))
        }
    }

    /// The daemon's exit status once it has exited.
    pub fn exited(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Stops the daemon and waits up to `EXIT_LIMIT` for it; kills it past that.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.exited()? {
            return Ok(status);
        }
        self.terminate()?;
        let deadline = Instant::now() + EXIT_LIMIT;
        while Instant::now() < deadline {
            if let Some(status) = self.exited()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child.kill()?;
        self.child.wait()?;
        Err(io::Error::other(format!("the daemon did not exit within {EXIT_LIMIT:?} of SIGTERM")))
    }

    /// Waits until every one of `addrs` takes a connection (or the daemon exits, or
    /// `LISTEN_LIMIT` passes); when the last one did.
    pub fn wait_listening(&mut self, addrs: &[SocketAddr]) -> io::Result<Instant> {
        let deadline = Instant::now() + LISTEN_LIMIT;
        for addr in addrs {
            while !listening(*addr) {
                if let Some(status) = self.exited()? {
                    return Err(io::Error::other(format!("the daemon exited ({status})")));
                }
                if Instant::now() > deadline {
                    return Err(io::Error::other(format!("nothing listens on {addr}")));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(Instant::now())
    }
}

/// Whether a connect to `addr` succeeds now (the connection is closed at once).
pub fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.exited(), Ok(None)) && self.stop().is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
