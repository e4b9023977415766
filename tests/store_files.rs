//! The database files under a running daemon (the `imd` binary in a child process):
//! deleted or replaced, the daemon stops acknowledging writes into a file nobody will
//! read, says so in its log and on `/im/health`, and saves what the open file held; it
//! owns the file alone, with no `-shm` whose truncation would kill it with SIGBUS, and
//! writes a backup on SIGUSR1.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn file(dir: &Path, suffix: &str) -> PathBuf {
    dir.join(format!("imd.sqlite3{suffix}"))
}

fn register(d: &ChildDaemon, account: &str) -> serde_json::Value {
    post(d, Via::Plain, "/im/register", &json!({"account": account, "password": "pw", "mail": "m"}))
}

/// The `/im/health` status, polled until it is `want` or `wait` has passed.
fn health_becomes(d: &ChildDaemon, want: u16, wait: Duration) -> u16 {
    let deadline = Instant::now() + wait;
    loop {
        let status = http(d, Via::Plain, "GET", "/im/health", "").status;
        if status == want || Instant::now() >= deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_deleted_database_fails_every_write_and_the_health_check() {
    let dir = temp_dir();
    let d = ChildDaemon::spawn(&dir, "");
    assert_code(&register(&d, "before"), 200, "Success");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(file(&dir, suffix));
    }
    assert_eq!(health_becomes(&d, 503, Duration::from_secs(10)), 503, "{:?}", d.log());
    let r = http(&d, Via::Plain, "GET", "/im/health", "");
    assert_eq!(r.json()["status"], "database file deleted or replaced");
    let line = d.log_line("was deleted or replaced while imd runs", Duration::from_secs(5));
    assert!(line.is_some_and(|l| l.contains("ERROR")), "{:?}", d.log());
    assert_code(&register(&d, "after"), 500, "Internal Server Error");
    let q = get(&d, Via::Plain, "/im/query?account=before");
    assert_code(&q, 500, "Internal Server Error");
    assert!(!file(&dir, "").exists(), "no new empty database was created at the path");

    // What the deleted file held, the acknowledged registration included, was saved.
    let saved = d.log_line("the open database was saved to ", Duration::from_secs(5));
    let saved = saved.and_then(|l| l.split("saved to ").nth(1).map(PathBuf::from));
    let saved = saved.unwrap_or_else(|| panic!("no rescue line: {:?}", d.log()));
    let opts = store::StoreOptions { process_exclusive: false, ..Default::default() };
    let copy = store::Store::open(&saved, &opts).expect("open the saved copy");
    assert!(copy.account_exists("before").expect("read"));
    assert!(!copy.account_exists("after").expect("read"));
}

#[test]
fn a_replaced_database_fails_writes_too() {
    let dir = temp_dir();
    let d = ChildDaemon::spawn(&dir, "");
    assert_code(&register(&d, "first"), 200, "Success");
    let other = dir.join("other.sqlite3");
    std::fs::copy(file(&dir, ""), &other).expect("copy");
    std::fs::rename(&other, file(&dir, "")).expect("replace");
    assert_eq!(health_becomes(&d, 503, Duration::from_secs(10)), 503, "{:?}", d.log());
    assert_code(&register(&d, "second"), 500, "Internal Server Error");
}

#[test]
fn the_daemon_owns_its_database_with_no_shared_memory_file() {
    let dir = temp_dir();
    let d = ChildDaemon::spawn(&dir, "");
    let (ua, ub) = (User::new("shma"), User::new("shmb"));
    ua.register(&d);
    ub.register(&d);
    let a = Session::login(&d, Via::Plain, &ua);
    let shm = file(&dir, "-shm");
    assert!(!shm.exists(), "the WAL index is in the daemon's memory");
    // A truncated -shm killed the daemon with SIGBUS; it is not read at all now.
    std::fs::write(&shm, b"").expect("an empty -shm");
    for round in 0..5 {
        let b = Session::login(&d, Via::Plain, &ub);
        let q = format!("/im/friends/request?{}&to={}&note=r{round}", a.auth(), b.id);
        assert_code(&get(&d, Via::Plain, &q), 200, "Success");
        std::fs::write(&shm, b"").expect("truncate -shm");
    }
    assert_eq!(http(&d, Via::Plain, "GET", "/im/health", "").status, 200);
    let metrics = String::from_utf8(http(&d, Via::Plain, "GET", "/im/metrics", "").body)
        .expect("utf8 metrics");
    assert!(metrics.contains("imd_store_connections_opened_total "), "{metrics}");

    // Another process is locked out instead of sharing an index it cannot see.
    let opts = store::StoreOptions {
        process_exclusive: false,
        busy_timeout: Duration::from_millis(50),
        ..Default::default()
    };
    match store::Store::open(&file(&dir, ""), &opts) {
        Err(store::StoreError::Busy) => {}
        other => panic!("a second process opened the database: {other:?}"),
    }
    assert_code(&register(&d, "still-serving"), 200, "Success");
    assert!(d.stop().success());
}

#[test]
fn sigusr1_writes_a_backup_while_serving() {
    let dir = temp_dir();
    let d = ChildDaemon::spawn(&dir, "");
    assert_code(&register(&d, "kept"), 200, "Success");
    d.signal("USR1");
    let line = d.log_line("backup written to ", Duration::from_secs(10));
    let to = line.and_then(|l| l.split("backup written to ").nth(1).map(PathBuf::from));
    let to = to.unwrap_or_else(|| panic!("no backup line: {:?}", d.log()));
    assert!(to.starts_with(&dir), "{}", to.display());
    let opts = store::StoreOptions { process_exclusive: false, ..Default::default() };
    let copy = store::Store::open(&to, &opts).expect("open the backup");
    assert!(copy.account_exists("kept").expect("read"));
    assert!(copy.integrity_check().expect("check"));
    assert_code(&register(&d, "after"), 200, "Success");
}

/// The history writer's own connection is refused like a worker's once the file was
/// replaced: a send is answered 500, never 202 for a commit into a file nobody reads.
#[test]
fn a_replaced_database_fails_history_sends_too() {
    let dir = temp_dir();
    let d = ChildDaemon::spawn(&dir, "[history]\nenabled = true\n");
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    alice.register(&d);
    bob.register(&d);
    let mut a = Session::login(&d, Via::Plain, &alice);
    let mut b = Session::login(&d, Via::Plain, &bob);
    befriend(&d, &mut a, &mut b);
    let to = b.id.clone();
    drop(b);
    let mut send = |id: &str| {
        a.ws.send_json(&json!({"id": id, "toFriend": to, "payload": "hi"}));
        loop {
            let v = a.ws.recv();
            if v["id"] == id && v["code"].is_u64() {
                return v;
            }
        }
    };
    assert_code(&send("1"), 202, "Stored For Offline Friend");
    let other = dir.join("other.sqlite3");
    std::fs::copy(file(&dir, ""), &other).expect("copy");
    std::fs::rename(&other, file(&dir, "")).expect("replace");
    assert_eq!(health_becomes(&d, 503, Duration::from_secs(10)), 503, "{:?}", d.log());
    assert_code(&send("2"), 500, "Internal Server Error");
}
