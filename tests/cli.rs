//! The daemon binary as an operator runs it: its command line, and what its `info` log
//! holds (start, listeners, warnings, shutdown, errors; never a line per connection).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn version_prints_the_package_version_and_exits_zero() {
    for flag in ["--version", "-V"] {
        let out = Command::new(env!("CARGO_BIN_EXE_imd")).arg(flag).output().expect("imd runs");
        assert!(out.status.success(), "{flag}: {:?}", out.status);
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        assert_eq!(stdout, format!("imd {}\n", env!("CARGO_PKG_VERSION")), "{flag}");
    }
}

#[test]
fn help_prints_every_option_and_exits_zero() {
    for flag in ["--help", "-h"] {
        let out = Command::new(env!("CARGO_BIN_EXE_imd")).arg(flag).output().expect("imd runs");
        assert!(out.status.success(), "{flag}: {:?}", out.status);
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        assert!(
            stdout
                .starts_with("usage: imd [--config PATH] [--check-config] [--version] [--help]\n"),
            "{flag}: {stdout}"
        );
        for option in ["--config PATH", "--check-config", "--version", "--help"] {
            assert!(stdout.lines().skip(1).any(|l| l.trim_start().starts_with(option)), "{option}");
        }
    }
}

#[test]
fn an_unknown_argument_is_a_usage_error_that_lists_version() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_imd")).arg("--frobnicate").output().expect("imd runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown argument --frobnicate"), "{stderr}");
    assert!(stderr.contains("--version"), "the usage lists --version: {stderr}");
}

#[test]
fn the_info_log_has_no_line_per_connection_or_request() {
    let d = ChildDaemon::spawn(&temp_dir(), "");
    let at_start = d.log().len();
    // Every kind of per-connection event: plain and TLS connections opened and closed,
    // a registration, a login, a failed login, an erased account.
    let u = User::new("quiet");
    u.register(&d);
    let s = Session::login(&d, Via::Tls, &u);
    let mut bad = Ws::open(&d, Via::Plain, "/im/login");
    bad.send_json(&serde_json::json!({"account": u.account, "password": "not it"}));
    assert_code(&bad.recv(), 505, "Account & Password Wrong");
    drop(bad);
    let erased = post(
        &d,
        Via::Plain,
        "/im/erase",
        &serde_json::json!({"id": s.id, "token": s.token, "password": u.password}),
    );
    assert_code(&erased, 200, "Success");
    drop(s);
    // The opened lines came before the replies; give the closed ones time to arrive.
    std::thread::sleep(Duration::from_millis(300));
    let log = d.log();
    assert_eq!(log[at_start..], [] as [String; 0], "per-connection lines at info");
    assert!(d.stop().success());
}
