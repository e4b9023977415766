//! imd-load past its per-process limit: the `imd-load` binary, run against a real
//! server, splits into child processes and still prints one summary line whose counts
//! cover every session.

mod common;

use std::process::Output;

use common::*;

#[track_caller]
fn assert_split_in(out: &Output, processes: usize) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("over {processes} processes")), "{stderr}");
    for k in 0..processes {
        assert!(stderr.contains(&format!("imd-load[{k}] ")), "no log from process {k}: {stderr}");
    }
    assert!(!stderr.contains(&format!("imd-load[{processes}] ")), "{stderr}");
}

#[test]
fn chat_over_tls_split_in_four_processes_loses_nothing() {
    let s = TestServer::start();
    let mut a = args("chat --tls --sessions 40 --per-process 10 --rate 200 --duration 2");
    a.extend(["--ws".into(), s.tls.to_string(), "--http".into(), s.plain.to_string()]);
    let out = imd_load(&a);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_split_in(&out, 4);
    let v = summary(&out);
    assert_eq!(v["mode"], "chat");
    assert_eq!(v["sessions"], 40);
    assert_eq!(v["failed_sessions"], 0);
    let sent = v["sent"].as_u64().expect("sent");
    // 200 msgs/s for 2 s, whatever the machine's load does to the last few.
    assert!(sent >= 300, "{v}");
    assert_eq!(v["received"], sent);
    assert_eq!(v["acks"]["200"], sent);
    assert_eq!(
        (v["lost"].as_u64(), v["dup"].as_u64(), v["misordered"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
    assert!(v["p50_us"].as_u64() > Some(0) && v["p99_us"].as_u64() >= v["p50_us"].as_u64());
    assert!(v["rate"].as_f64().is_some_and(|r| r > 0.0), "{v}");
}

#[test]
fn idle_split_measures_the_server_once_over_all_sessions() {
    let s = TestServer::start();
    // The server runs inside this test process.
    let mut a = args("idle --sessions 40 --per-process 10 --duration 1 --sources 4");
    a.extend(["--ws".into(), s.plain.to_string(), "--http".into(), s.plain.to_string()]);
    a.extend(["--server-pid".into(), std::process::id().to_string()]);
    let out = imd_load(&a);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_split_in(&out, 4);
    let v = summary(&out);
    assert_eq!(v["mode"], "idle");
    assert_eq!(v["sessions"], 40);
    assert_eq!(v["failed_sessions"], 0);
    let rss = &v["server_rss"];
    let (before, after) = (rss["before_kb"].as_u64(), rss["after_kb"].as_u64());
    let (Some(before), Some(after)) = (before, after) else { panic!("no server RSS: {v}") };
    assert_eq!(rss["bytes_per_session"], after.saturating_sub(before) * 1024 / 40);
}

#[test]
fn a_child_that_fails_fails_the_run() {
    let s = TestServer::start();
    // Registration goes to a port nobody listens on, so every child fails its setup.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nowhere = closed.local_addr().expect("addr");
    drop(closed);
    let mut a = args("chat --sessions 20 --per-process 10 --duration 1");
    a.extend(["--ws".into(), s.plain.to_string(), "--http".into(), nowhere.to_string()]);
    let out = imd_load(&a);
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("SUMMARY"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stopped before its sessions ready"), "{stderr}");
}

#[test]
fn a_split_refuses_what_is_not_loopback() {
    let out =
        imd_load(&args("idle --sessions 40 --per-process 10 --ws 10.0.0.1:80 --http 127.0.0.1:9"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}
