//! imd-load's restart mode against a real daemon in its own process: sessions that
//! logged in with `"remember":true` all come back after a SIGTERM and a start, by device
//! token with no password (or every one by password with `--password-relogin`), and no
//! acknowledged message is lost, duplicated or misordered, over plain and TLS.
//!
//! The daemon must be a process of its own to be stopped with SIGTERM, and a test of
//! this crate has no path to imd's binary: this test's own binary is the daemon.
//! Run as `restart --serve CONFIG` it is `imd::run`, the daemon's start with its signal
//! handling; otherwise it runs the tests below (a name given filters them).

use std::net::{SocketAddr, TcpListener};
use std::panic::{self, UnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};

use serde_json::Value;

#[path = "../../../tests/common/daemon_config.rs"]
mod daemon_config;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, config] = args.as_slice() {
        if flag == "--serve" {
            return serve(Path::new(config));
        }
    }
    // Names filter the tests, as libtest's do; the flags cargo may pass are skipped,
    // with the value of those that take one.
    let mut filter: Vec<&String> = Vec::new();
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        if ["--test-threads", "--skip", "--color", "--format", "-Z"].contains(&a.as_str()) {
            rest.next();
        } else if !a.starts_with('-') {
            filter.push(a);
        }
    }
    let tests: [(&str, fn()); 4] = [
        ("restart_over_plain_brings_every_session_back_by_device_token", restart_over_plain),
        ("restart_over_tls_brings_every_session_back_by_device_token", restart_over_tls),
        ("password_relogin_logs_every_session_back_in_by_password", password_relogin),
        ("a_daemon_that_remembers_no_login_fails_the_run", remembers_nothing),
    ];
    let mut failed = 0;
    let mut ran = 0;
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let ok = run_one(test);
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        failed += usize::from(!ok);
    }
    println!(
        "\ntest result: {}. {} passed; {failed} failed",
        if failed == 0 { "ok" } else { "FAILED" },
        ran - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_one(test: impl FnOnce() + UnwindSafe) -> bool {
    panic::catch_unwind(test).is_ok()
}

/// The daemon side: runs until SIGTERM.
fn serve(config: &Path) -> ExitCode {
    let loaded = imd::Config::load(config, &mut |w| eprintln!("config warning: {w}"));
    match loaded
        .map_err(|e| e.to_string())
        .and_then(|c| imd::run(c, config).map_err(|e| e.to_string()))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A daemon's configuration in a directory of its own, on two ports that were free a
/// moment ago (a restart needs the same ports again, so not port 0).
struct Setup {
    dir: PathBuf,
    plain: SocketAddr,
    tls: SocketAddr,
}

impl Setup {
    fn new(name: &str, session: &str) -> Setup {
        let dir =
            std::env::temp_dir().join(format!("imd-load-restart-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let plain = free_port();
        let tls = std::iter::repeat_with(free_port).find(|t| *t != plain).expect("endless");
        let web_root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../www");
        let restart = format!(
            "[server]\nlisten = \"{plain}\"\nshutdown_deadline_s = 5\n\
             [limits]\nconnections_per_ip = 0\n[tls]\nlisten = \"{tls}\"\n\
             [history]\nenabled = true\n[session]\n{session}\n"
        );
        let text = daemon_config::config_text(&dir, web_root, &[&restart]);
        std::fs::write(dir.join("imd.conf"), text).expect("config written");
        Setup { dir, plain, tls }
    }

    /// imd-load restart against this daemon, which it starts, restarts and stops.
    fn run(&self, tls: bool, extra: &str) -> Output {
        let exe = std::env::current_exe().expect("own path");
        let cmd = format!("{} --serve {}", exe.display(), self.dir.join("imd.conf").display());
        let ws = if tls { self.tls } else { self.plain };
        let mut args: Vec<String> =
            "restart --sessions 6 --rate 100 --duration 2 --sources 2 --back-within 30"
                .split_whitespace()
                .chain(extra.split_whitespace())
                .map(String::from)
                .collect();
        args.extend(["--ws".into(), ws.to_string(), "--http".into(), self.plain.to_string()]);
        args.extend(["--server-cmd".into(), cmd]);
        if tls {
            args.push("--tls".into());
        }
        Command::new(env!("CARGO_BIN_EXE_imd-load")).args(&args).output().expect("imd-load runs")
    }
}

/// A port that is free now, below Linux's ephemeral range (32768 up): while the daemon
/// is down for its restart, a port from that range may be handed to some other
/// process's connection or port-0 listener, and the daemon could not listen again.
fn free_port() -> SocketAddr {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as usize)
        ^ std::process::id() as usize;
    (0..1000)
        .map(|k| 20_000 + (seed.wrapping_mul(7919) + k * 4099) % 12_000)
        .find_map(|port| TcpListener::bind(("127.0.0.1", port as u16)).ok())
        .and_then(|l| l.local_addr().ok())
        .expect("a free port between 20000 and 32000")
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The one `SUMMARY` line of a run.
#[track_caller]
fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("SUMMARY ")).collect();
    assert_eq!(
        lines.len(),
        1,
        "one summary line: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(lines[0]).expect("summary is JSON")
}

/// Every session back on the new process, `passwords` of them by password, and the
/// conversations whole: every message accepted once and had once.
#[track_caller]
fn assert_all_back(out: &Output, passwords: u64) {
    let v = summary(out);
    assert!(out.status.success(), "{v}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(v["mode"], "restart");
    let r = &v["restart"];
    assert_eq!(r["back"], 6, "{v}");
    assert!(r["all_back_s"].as_f64().is_some_and(|s| s < 30.0), "{v}");
    assert_eq!(r["passwords"].as_u64(), Some(passwords), "{v}");
    assert!(r["start_s"].as_f64().is_some() && r["stop_s"].as_f64().is_some(), "{v}");
    assert_eq!(v["failed_sessions"], 0, "{v}");
    assert_eq!(
        (v["lost"].as_u64(), v["dup"].as_u64(), v["misordered"].as_u64()),
        (Some(0), Some(0), Some(0)),
        "{v}"
    );
    // Each session lost its server once and came back, however many attempts it took.
    assert!(v["reconnects"].as_u64() >= Some(6), "{v}");
    let sent = v["sent"].as_u64().expect("sent");
    // 100 msgs/s for 2 s before the stop alone, whatever the machine's load does.
    assert!(sent >= 150, "{v}");
    let accepted: u64 = ["200", "202"].iter().map(|c| v["acks"][c].as_u64().unwrap_or(0)).sum();
    assert_eq!((accepted, v["received"].as_u64()), (sent, Some(sent)), "{v}");
}

fn restart_over_plain() {
    let s = Setup::new("plain", "");
    assert_all_back(&s.run(false, ""), 0);
}

fn restart_over_tls() {
    let s = Setup::new("tls", "");
    assert_all_back(&s.run(true, ""), 0);
}

fn password_relogin() {
    let s = Setup::new("password", "");
    assert_all_back(&s.run(true, "--password-relogin"), 6);
}

fn remembers_nothing() {
    let s = Setup::new("forgetful", "remember_days = 0");
    let out = s.run(false, "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("got no device_token"), "{stderr}");
}
