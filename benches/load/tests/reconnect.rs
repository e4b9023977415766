//! imd-load against a real server with history on: chat counts 200 and 202 as acks
//! and 306 as a push, a second run on the same accounts checks only its own messages,
//! storm's second half numbers its messages on from the first, and reconnect mode
//! (sessions dropped and logged in again, unacknowledged messages resent with their
//! `cid`, gaps fetched) ends with nothing lost, duplicated or misordered, over plain
//! and TLS.

mod common;

use common::*;
use serde_json::Value;

fn with_server(mut a: Vec<String>, ws: std::net::SocketAddr, s: &TestServer) -> Vec<String> {
    a.extend(["--ws".into(), ws.to_string(), "--http".into(), s.plain.to_string()]);
    a
}

#[track_caller]
fn assert_clean(v: &Value) {
    assert_eq!(
        (v["lost"].as_u64(), v["dup"].as_u64(), v["misordered"].as_u64()),
        (Some(0), Some(0), Some(0)),
        "{v}"
    );
    assert_eq!(v["failed_sessions"], 0, "{v}");
}

fn accepted(v: &Value) -> u64 {
    ["200", "202"].iter().map(|c| v["acks"][c].as_u64().unwrap_or(0)).sum()
}

#[track_caller]
fn reconnect_run(tls: bool) {
    let s = TestServer::start_with(true);
    let ws = if tls { s.tls } else { s.plain };
    let mut a = args("reconnect --sessions 8 --rate 300 --duration 3 --drops 8 --sources 2");
    if tls {
        a.push("--tls".into());
    }
    let out = imd_load(&with_server(a, ws, &s));
    let v = summary(&out);
    assert!(out.status.success(), "{v}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(v["mode"], "reconnect");
    assert_clean(&v);
    // 8 drops a second for 3 s, whatever the machine's load does to the last few.
    assert!(v["reconnects"].as_u64() >= Some(12), "{v}");
    let sent = v["sent"].as_u64().expect("sent");
    assert!(sent >= 450, "{v}");
    // Every message accepted once (a resend's reply is the original's), and had once.
    assert_eq!(accepted(&v), sent, "{v}");
    assert_eq!(v["received"], sent, "{v}");
}

#[test]
fn reconnect_over_plain_loses_duplicates_and_misorders_nothing() {
    reconnect_run(false);
}

#[test]
fn reconnect_over_tls_loses_duplicates_and_misorders_nothing() {
    reconnect_run(true);
}

#[test]
fn chat_with_history_counts_its_replies_as_acks_and_deliveries_as_pushes() {
    let s = TestServer::start_with(true);
    let a = args("chat --sessions 6 --rate 200 --duration 2 --prefix kept");
    let out = imd_load(&with_server(a.clone(), s.plain, &s));
    let v = summary(&out);
    assert!(out.status.success(), "{v}");
    assert_clean(&v);
    let sent = v["sent"].as_u64().expect("sent");
    assert!(sent >= 300, "{v}");
    assert_eq!((accepted(&v), v["received"].as_u64()), (sent, Some(sent)), "{v}");
    // 306 (delivered) reaches the sender: a push, never an ack.
    assert!(v["pushes"]["306"].as_u64() > Some(0), "{v}");
    assert!(v["acks"].as_object().is_some_and(|m| m.keys().all(|c| c == "200" || c == "202")));
    assert!(v["p99_us"].as_u64() > Some(0), "{v}");

    // The same accounts again: their conversations go on from where the first run left
    // them, and new cids, so nothing of the first run counts as lost or repeated.
    let out = imd_load(&with_server(a, s.plain, &s));
    let again = summary(&out);
    assert!(out.status.success(), "{again}");
    assert_clean(&again);
    assert_eq!(accepted(&again), again["sent"].as_u64().expect("sent"), "{again}");
}

#[test]
fn reconnect_refuses_a_server_without_history() {
    let s = TestServer::start();
    let a = args("reconnect --sessions 4 --rate 100 --duration 1");
    let out = imd_load(&with_server(a, s.plain, &s));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs history on"), "{stderr}");
}

#[test]
fn chat_without_history_still_checks_each_senders_sequence() {
    let s = TestServer::start();
    let out =
        imd_load(&with_server(args("chat --sessions 4 --rate 200 --duration 1"), s.plain, &s));
    let v = summary(&out);
    assert!(out.status.success(), "{v}");
    assert_clean(&v);
    let sent = v["sent"].as_u64().expect("sent");
    assert_eq!((v["acks"]["200"].as_u64(), v["received"].as_u64()), (Some(sent), Some(sent)));
    assert_eq!(v["pushes"].get("306"), None, "{v}");
}

#[test]
fn storm_with_history_numbers_its_second_half_on_from_the_first() {
    let s = TestServer::start_with(true);
    let a = args("storm --sessions 6 --storm-users 2 --rate 100 --duration 2");
    let out = imd_load(&with_server(a, s.plain, &s));
    let v = summary(&out);
    assert!(out.status.success(), "{v}");
    assert_clean(&v);
    // The second half's summary: had the numbers started again, every cid would have
    // been one already used with another payload (529).
    let sent = v["sent"].as_u64().expect("sent");
    assert!(sent >= 50, "{v}");
    assert_eq!((accepted(&v), v["received"].as_u64()), (sent, Some(sent)), "{v}");
}

#[test]
fn chat_against_a_server_that_stops_mid_run_counts_the_unanswered_and_fails() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let s = TestServer::start_with(true);
    let a = args("chat --sessions 4 --rate 200 --duration 3");
    let mut load = Command::new(env!("CARGO_BIN_EXE_imd-load"))
        .args(with_server(a, s.plain, &s))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("imd-load runs");
    let stderr = load.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        if line.expect("a log line").contains("sessions ready") {
            break;
        }
    }
    // A second of answered chat, then the server goes for good.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(s);
    std::thread::spawn(move || lines.for_each(drop));
    let out = load.wait_with_output().expect("imd-load ends");
    let v = summary(&out);
    assert_eq!(out.status.code(), Some(1), "{v}");
    let (sent, replied) = (v["sent"].as_u64().expect("sent"), accepted(&v));
    assert!(replied > 0 && replied < sent, "{v}");
    assert_eq!(v["unanswered"].as_u64(), Some(sent - replied), "{v}");
}
