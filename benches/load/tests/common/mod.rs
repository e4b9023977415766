//! What imd-load's integration tests share: a real imd in this process on port 0 (plain
//! and TLS listeners), and the `imd-load` binary run against it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use imd::{Config, Daemon};
use serde_json::Value;

#[path = "../../../../tests/common/daemon_config.rs"]
mod daemon_config;

/// A running daemon; stopped when dropped, its directory removed.
pub struct TestServer {
    pub plain: SocketAddr,
    pub tls: SocketAddr,
    remote: reactor::Remote,
    thread: Option<JoinHandle<Result<(), imd::Error>>>,
    dir: PathBuf,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl TestServer {
    /// A server with history off (the seed's sending, as the published load figures).
    pub fn start() -> TestServer {
        TestServer::start_with(false)
    }

    /// Both listeners on port 0, cheap argon2, no rate limits, history as asked.
    pub fn start_with(history: bool) -> TestServer {
        TestServer::start_in_store(history, "")
    }

    /// Node `name` of a cluster (docs/cluster.md): history on, the store on the
    /// PostgreSQL database `url`, the live state through the Redis `redis`.
    pub fn start_node(url: &str, redis: &str, name: &str) -> TestServer {
        let layer =
            format!("[store]\nurl = \"{url}\"\n[cluster]\nredis = \"{redis}\"\nnode = \"{name}\"");
        TestServer::start_in_store(true, &layer)
    }

    /// A server with `layer`'s configuration (TOML) over the tests' own: a `[store] url`
    /// replaces the SQLite file.
    fn start_in_store(history: bool, layer: &str) -> TestServer {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("imd-load-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let web_root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../www");
        let load = format!("[limits]\nconnections_per_ip = 0\n[history]\nenabled = {history}\n");
        let text = daemon_config::config_text(&dir, web_root, &[&load, layer]);
        let config =
            Config::parse(&text, &mut |w| panic!("config warning: {w}")).expect("test config");
        let daemon = Daemon::bind(config).expect("daemon binds");
        let plain = daemon.local_addr().expect("plain listener");
        let tls = daemon.tls_local_addr().expect("tls listener");
        let remote = daemon.remote();
        let thread = std::thread::spawn(move || daemon.run());
        TestServer { plain, tls, remote, thread: Some(thread), dir }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.remote.shutdown();
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn imd_load(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imd-load")).args(args).output().expect("imd-load runs")
}

pub fn args(text: &str) -> Vec<String> {
    text.split_whitespace().map(String::from).collect()
}

/// The one `SUMMARY` line of a run.
#[track_caller]
pub fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("SUMMARY ")).collect();
    assert_eq!(lines.len(), 1, "one summary line: {stdout}");
    serde_json::from_str(lines[0]).expect("summary is JSON")
}
