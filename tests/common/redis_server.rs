//! A throwaway Redis for the cluster tests: Debian's `redis-server` on a free loopback
//! port, its files in a temporary directory, killed on drop. Without `redis-server` the
//! test installs Debian's package when it runs as root, and otherwise fails with the
//! reason: never skipped. Used by the unit tests of src/cluster/ and by tests/cluster.rs.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`; [`RedisServer::restart`] keeps its port.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn binary() -> &'static str {
    const BIN: &str = "redis-server";
    let found = || Command::new(BIN).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found() {
        let installed = Command::new("apt-get")
            .args(["install", "-y", "-q", "redis-server"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(installed && found(), "redis-server is not installed and could not be installed");
    }
    BIN
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().expect("its address").port()
}

impl RedisServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "imd-redis-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("redis test directory");
        let mut server = RedisServer { port: free_port(), dir, child: None };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(binary())
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: nothing is saved) and starts an empty one on the
    /// same port after `down`.
    pub fn restart(&mut self, down: Duration) {
        self.kill();
        std::thread::sleep(down);
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
