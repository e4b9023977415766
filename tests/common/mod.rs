//! Shared helpers for the daemon's integration tests: a real server on port 0 (plain
//! and TLS listeners), in this process or as the `imd` binary in a child process, an
//! HTTP client, and a WebSocket client, both over real sockets.
#![allow(dead_code)]

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use imd::{Config, Daemon};
use serde_json::Value;
use tungstenite::{Message, WebSocket};

mod daemon_config;

/// How a test reaches the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Plain,
    Tls,
}

/// A running daemon; stopped (gracefully) when dropped.
pub struct TestServer {
    pub plain: SocketAddr,
    pub tls: SocketAddr,
    remote: reactor::Remote,
    thread: Option<JoinHandle<Result<(), imd::Error>>>,
    pub dir: PathBuf,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh temp directory for one test server.
pub fn temp_dir() -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("imd-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The test configuration: both listeners on port 0, cheap argon2, no rate limits,
/// unless `extra` (TOML) says otherwise.
pub fn config(dir: &Path, extra: &str) -> Config {
    Config::parse(&config_text(dir, extra), &mut |w| panic!("config warning: {w}"))
        .expect("test config")
}

/// [`config`] as the TOML text of a config file.
pub fn config_text(dir: &Path, extra: &str) -> String {
    let web_root = concat!(env!("CARGO_MANIFEST_DIR"), "/www");
    let seed = r#"
# The seed's single session per user unless a test allows more devices.
[session]
max_devices = 1
# The seed's sending (508 for an offline friend) unless a test turns history on.
[history]
enabled = false
"#;
    daemon_config::config_text(dir, web_root, &[seed, extra])
}

/// A server a test can reach: its listener addresses.
pub trait Listening {
    fn addr(&self, via: Via) -> SocketAddr;
}

impl Listening for TestServer {
    fn addr(&self, via: Via) -> SocketAddr {
        match via {
            Via::Plain => self.plain,
            Via::Tls => self.tls,
        }
    }
}

impl TestServer {
    /// Starts a server with the test configuration plus `extra` TOML.
    #[track_caller]
    pub fn start_with(extra: &str) -> TestServer {
        TestServer::start_in(temp_dir(), extra)
    }

    /// Starts a server on the database in `dir` (e.g. one a stopped server left).
    #[track_caller]
    pub fn start_in(dir: PathBuf, extra: &str) -> TestServer {
        let config = config(&dir, extra);
        TestServer::start_config(dir, config)
    }

    /// Starts a server on `config` (built with [`config`] and changed), removing `dir`
    /// at the end.
    #[track_caller]
    pub fn start_config(dir: PathBuf, config: Config) -> TestServer {
        let daemon = Daemon::bind(config).expect("daemon binds");
        let plain = daemon.local_addr().expect("plain listener");
        let tls = daemon.tls_local_addr().expect("tls listener");
        let remote = daemon.remote();
        let thread = std::thread::spawn(move || daemon.run());
        TestServer { plain, tls, remote, thread: Some(thread), dir }
    }

    #[track_caller]
    pub fn start() -> TestServer {
        TestServer::start_with("")
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) -> Result<(), imd::Error> {
        self.remote.shutdown();
        self.thread.take().expect("running").join().expect("server thread")
    }

    /// Stops the server and keeps its directory, for [`TestServer::start_in`].
    pub fn stop_keeping_data(mut self) -> PathBuf {
        let dir = std::mem::take(&mut self.dir);
        self.remote.shutdown();
        let _ = self.thread.take().expect("running").join();
        dir
    }

    pub fn remote(&self) -> &reactor::Remote {
        &self.remote
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.remote.shutdown();
            let _ = t.join();
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The real `imd` binary in a child process, started with the test configuration in
/// `dir/imd.conf`; its log lines are kept. Stopped (SIGKILL) when dropped.
pub struct ChildDaemon {
    child: Child,
    pub plain: SocketAddr,
    pub tls: SocketAddr,
    pub dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl ChildDaemon {
    /// Writes the test configuration plus `extra` to `dir` and starts `imd` on it; returns
    /// once both listeners are announced in its log.
    #[track_caller]
    pub fn spawn(dir: &Path, extra: &str) -> ChildDaemon {
        ChildDaemon::spawn_by(Command::new(env!("CARGO_BIN_EXE_imd")), dir, extra, "info")
    }

    /// [`spawn`](Self::spawn) with `RUST_LOG` at `level` (e.g. to check what debug logs).
    #[track_caller]
    pub fn spawn_logging(dir: &Path, extra: &str, level: &str) -> ChildDaemon {
        ChildDaemon::spawn_by(Command::new(env!("CARGO_BIN_EXE_imd")), dir, extra, level)
    }

    /// [`spawn`](Self::spawn) under `prlimit`, with `nofile` as both the soft and the hard
    /// descriptor limit.
    #[track_caller]
    pub fn spawn_with_fd_limit(dir: &Path, extra: &str, nofile: u64) -> ChildDaemon {
        let mut prlimit = Command::new("prlimit");
        prlimit.arg(format!("--nofile={nofile}:{nofile}")).arg(env!("CARGO_BIN_EXE_imd"));
        ChildDaemon::spawn_by(prlimit, dir, extra, "info")
    }

    #[track_caller]
    fn spawn_by(mut command: Command, dir: &Path, extra: &str, level: &str) -> ChildDaemon {
        let conf = dir.join("imd.conf");
        std::fs::write(&conf, config_text(dir, extra)).expect("write config");
        let mut child = command
            .arg("--config")
            .arg(&conf)
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imd");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        // Drains stderr for the life of the child, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log").push(line);
            }
        });
        let mut d = ChildDaemon {
            child,
            plain: SocketAddr::from(([0, 0, 0, 0], 0)),
            tls: SocketAddr::from(([0, 0, 0, 0], 0)),
            dir: dir.to_path_buf(),
            log,
        };
        let announced = |d: &ChildDaemon, scheme: &str| {
            d.log_line(&format!("listening on {scheme}://"), Duration::from_secs(20)).and_then(
                |l| {
                    let rest = l.split(&format!("listening on {scheme}://")).nth(1)?;
                    rest.split_whitespace().next()?.parse().ok()
                },
            )
        };
        let plain = announced(&d, "http");
        let tls = announced(&d, "https");
        match (plain, tls) {
            (Some(p), Some(t)) => (d.plain, d.tls) = (p, t),
            _ => panic!("imd did not announce its listeners: {:?}", d.log()),
        }
        d
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (a name for kill(1), e.g. "HUP") to the child.
    #[track_caller]
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    /// The first log line containing `needle`, waiting up to `wait` for it.
    pub fn log_line(&self, needle: &str, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(l) = self.log.lock().expect("log").iter().find(|l| l.contains(needle)) {
                return Some(l.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log.lock().expect("log").iter().filter(|l| l.contains(needle)).count()
    }

    /// SIGTERM, then the exit status (within 20 s).
    #[track_caller]
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "imd did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Listening for ChildDaemon {
    fn addr(&self, via: Via) -> SocketAddr {
        match via {
            Via::Plain => self.plain,
            Via::Tls => self.tls,
        }
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A byte stream to the server, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Connects to the server.
#[track_caller]
pub fn connect(server: &impl Listening, via: Via) -> Stream {
    let tcp = TcpStream::connect(server.addr(via)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    tcp.set_nodelay(true).expect("nodelay");
    match via {
        Via::Plain => Stream::Plain(tcp),
        Via::Tls => {
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let conn = rustls::ClientConnection::new(
                imd::loopback_tls::trusting_client().expect("tls config"),
                name,
            )
            .expect("tls");
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one HTTP response (Content-Length framed) from `s`.
#[track_caller]
pub fn read_reply(s: &mut Stream) -> HttpReply {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read head");
        assert!(n > 0, "connection closed mid-head: {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).expect("utf8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header");
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().expect("content-length"));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("body");
    HttpReply { status, headers, body }
}

/// Reads until the server closes; everything it sent.
#[track_caller]
pub fn read_to_close(s: &mut Stream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("read: {e} after {:?}", String::from_utf8_lossy(&all)),
        }
    }
}

/// The status codes of every HTTP response in `bytes`, in order.
pub fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// One request on a new connection.
#[track_caller]
pub fn http(
    server: &impl Listening,
    via: Via,
    method: &str,
    target: &str,
    body: &str,
) -> HttpReply {
    let mut s = connect(server, via);
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write request");
    read_reply(&mut s)
}

/// The value of the unlabelled counter or gauge `name` in `/im/metrics`; panics when it
/// is missing.
pub fn metric(server: &impl Listening, name: &str) -> u64 {
    let r = http(server, Via::Plain, "GET", "/im/metrics", "");
    let text = String::from_utf8_lossy(&r.body).to_string();
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// GET `target`, reply as JSON.
#[track_caller]
pub fn get(server: &impl Listening, via: Via, target: &str) -> Value {
    let r = http(server, via, "GET", target, "");
    assert_eq!(r.status, 200, "{target}");
    r.json()
}

/// POST a JSON body, reply as JSON.
#[track_caller]
pub fn post(server: &impl Listening, via: Via, path: &str, body: &Value) -> Value {
    let r = http(server, via, "POST", path, &body.to_string());
    assert_eq!(r.status, 200, "{path}");
    r.json()
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Asserts a reply's code and exact message and `ok`.
#[track_caller]
pub fn assert_code(v: &Value, code: u64, message: &str) {
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["message"], message, "{v}");
    assert_eq!(v["ok"], matches!(code, 200 | 202 | 300..=308 | 520), "{v}");
}

/// A WebSocket client over plain TCP or TLS.
pub struct Ws {
    pub ws: WebSocket<Stream>,
}

impl Ws {
    /// Upgrades to `target` (e.g. `/im/login`).
    #[track_caller]
    pub fn open(server: &impl Listening, via: Via, target: &str) -> Ws {
        let stream = connect(server, via);
        let scheme = if via == Via::Tls { "wss" } else { "ws" };
        let url = format!("{scheme}://localhost{target}");
        let (ws, resp) = tungstenite::client(url.as_str(), stream).expect("upgrade");
        assert_eq!(resp.status(), 101);
        Ws { ws }
    }

    #[track_caller]
    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send");
    }

    #[track_caller]
    pub fn send_json(&mut self, v: &Value) {
        self.send_text(&v.to_string());
    }

    /// The next text frame as JSON (pings are answered by tungstenite).
    #[track_caller]
    pub fn recv(&mut self) -> Value {
        loop {
            match self.ws.read().expect("read frame") {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str()).unwrap_or_else(|e| panic!("{e}: {t}"))
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next text frame within `wait`, or `None` when none came.
    pub fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        let set = |s: &mut Stream, t: Option<Duration>| match s {
            Stream::Plain(s) => s.set_read_timeout(t).expect("timeout"),
            Stream::Tls(s) => s.sock.set_read_timeout(t).expect("timeout"),
        };
        set(self.ws.get_mut(), Some(wait));
        let got = loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => break serde_json::from_str(t.as_str()).ok(),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(other) => panic!("unexpected frame {other:?}"),
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break None
                }
                Err(e) => panic!("read: {e}"),
            }
        };
        set(self.ws.get_mut(), None);
        got
    }

    /// Reads until the server closes; returns the close code.
    #[track_caller]
    pub fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.ws.read() {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(Message::Text(t)) => panic!("expected close, got {t}"),
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return None
                }
                Err(e) => panic!("expected close, got {e}"),
            }
        }
    }

    /// Nothing arrives within `wait`.
    #[track_caller]
    pub fn expect_silence(&mut self, wait: Duration) {
        let set = |s: &mut Stream, t: Option<Duration>| match s {
            Stream::Plain(s) => s.set_read_timeout(t).expect("timeout"),
            Stream::Tls(s) => s.sock.set_read_timeout(t).expect("timeout"),
        };
        set(self.ws.get_mut(), Some(wait));
        match self.ws.read() {
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(m) => panic!("expected silence, got {m:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("expected silence, got {e}"),
        }
        set(self.ws.get_mut(), Some(Duration::from_secs(20)));
    }
}

/// A registered user.
#[derive(Clone, Debug)]
pub struct User {
    pub account: String,
    pub password: String,
    pub name: String,
}

static USERS: AtomicU64 = AtomicU64::new(0);

impl User {
    /// A unique account with a name.
    pub fn new(name: &str) -> User {
        let n = USERS.fetch_add(1, Ordering::Relaxed);
        User {
            account: format!("{name}{n}"),
            password: format!("pw of {name} {n}"),
            name: name.to_string(),
        }
    }

    /// Registers this user (asserting 200).
    #[track_caller]
    pub fn register(&self, server: &impl Listening) -> &User {
        let v = post(
            server,
            Via::Plain,
            "/im/register",
            &serde_json::json!({"account": self.account, "password": self.password,
                "mail": format!("{}@example.com", self.account), "name": self.name}),
        );
        assert_code(&v, 200, "Success");
        self
    }
}

/// A logged-in session: its socket, id and token.
pub struct Session {
    pub ws: Ws,
    pub id: String,
    pub token: String,
    pub login: Value,
}

impl Session {
    /// Logs in with the first-frame method.
    #[track_caller]
    pub fn login(server: &impl Listening, via: Via, user: &User) -> Session {
        let mut ws = Ws::open(server, via, "/im/login");
        ws.send_json(&serde_json::json!({"account": user.account, "password": user.password}));
        let login = ws.recv();
        assert_code(&login, 200, "Success");
        let id = login["profile"]["id"].as_str().expect("id").to_string();
        let token = login["token"].as_str().expect("token").to_string();
        Session { ws, id, token, login }
    }

    /// The auth part of a query string.
    pub fn auth(&self) -> String {
        format!("id={}&token={}", self.id, self.token)
    }
}

/// Makes `a` and `b` friends through request and add; returns nothing, asserts codes.
#[track_caller]
pub fn befriend(server: &impl Listening, a: &mut Session, b: &mut Session) {
    let r =
        get(server, Via::Plain, &format!("/im/friends/request?{}&to={}&note=hi", a.auth(), b.id));
    assert_code(&r, 200, "Success");
    let push = b.ws.recv();
    assert_code(&push, 520, "Apply For a Friend");
    let r =
        get(server, Via::Plain, &format!("/im/friends/add?{}&from={}&name=pal", b.auth(), a.id));
    assert_code(&r, 200, "Success");
    let push = a.ws.recv();
    assert_code(&push, 303, "Friend Added");
}
