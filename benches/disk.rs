//! The disk's own figures for `make bench`, measured in the directory it is given (the
//! bench's data directory, on the disk imd's database is on), printed as one
//! `DISK {json}` line:
//!
//! - B4: rusqlite alone inserting the rows imd keeps for messages (the store crate's
//!   schema, its `history` table; 64 B payloads, a `cid` each) 100 per transaction with
//!   `synchronous = FULL`: the rate a durable message store gets from this disk
//!   without a server around it.
//! - The store's `append_messages` at the same batch size: B4 plus what imd's commit
//!   also does per message (the cid and friend checks, the conversation counter, the
//!   delivered mark).
//! - fsync: a 4 KiB append and `fsync` (SQLite's bundled build syncs with fsync, not
//!   fdatasync), a few hundred samples: the floor of any durable commit here.
//!
//! Not a criterion bench: `make bench` compares these with imd under load in the same
//! run, so it wants one figure of each, quickly. `cargo bench --bench disk -- DIR`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use store::{NewHistoryMessage, NewUser, Store, StoreOptions, Synchronous};

/// Users, as imd-load's friend pairs.
const USERS: usize = 200;
const BATCH: usize = 100;
/// How long each insert figure runs.
const INSERT_TIME: Duration = Duration::from_secs(3);
const FSYNC_SAMPLES: usize = 400;
/// fsync samples stop early past this, on a disk slow enough to need it.
const FSYNC_TIME: Duration = Duration::from_secs(8);

fn user_id(i: usize) -> String {
    format!("{i:032x}")
}

/// A fresh database with the store's schema, `USERS` users and their friend pairs.
fn fresh(path: &Path) -> Store {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let opts = StoreOptions { synchronous: Synchronous::Full, ..StoreOptions::default() };
    let mut store = Store::open(path, &opts).expect("store");
    for i in 0..USERS {
        let user = NewUser {
            id: user_id(i),
            account: format!("disk{i}"),
            password_hash: "x".into(),
            name: format!("Disk {i}"),
            mail: "m".into(),
            ..NewUser::default()
        };
        store.create_user(&user).expect("user");
    }
    for i in (0..USERS).step_by(2) {
        store.make_friends(&user_id(i), "a", &user_id(i + 1), "b").expect("friends");
    }
    store
}

/// The k-th message: pairs in turn, each direction in turn, as imd-load sends them.
fn message(k: usize, payload: &str) -> NewHistoryMessage {
    let pair = k % (USERS / 2);
    let (from, to) = if (k / (USERS / 2)) % 2 == 0 {
        (2 * pair, 2 * pair + 1)
    } else {
        (2 * pair + 1, 2 * pair)
    };
    NewHistoryMessage {
        from_id: user_id(from),
        to_id: user_id(to),
        dialogue_id: format!("d{k}"),
        cid: Some(format!("c{k}")),
        payload: payload.to_string(),
        ts_ms: 1_700_000_000_000 + k as i64,
        live: true,
    }
}

/// B4: the history rows alone, with plain rusqlite on the store's schema.
fn b4(dir: &Path, payload: &str) -> f64 {
    let path = dir.join("disk-b4.sqlite3");
    drop(fresh(&path));
    let mut conn = Connection::open(&path).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL").expect("wal");
    conn.pragma_update(None, "synchronous", "FULL").expect("full");
    let mut seqs = vec![0i64; USERS / 2];
    let (mut k, started) = (0, Instant::now());
    while started.elapsed() < INSERT_TIME {
        let tx = conn.transaction().expect("begin");
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO history (a, b, seq, from_id, to_id, dialogue_id, cid, payload, ts_ms, code)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 200)",
                )
                .expect("prepare");
            for _ in 0..BATCH {
                let m = message(k, payload);
                let (a, b) = if m.from_id < m.to_id {
                    (&m.from_id, &m.to_id)
                } else {
                    (&m.to_id, &m.from_id)
                };
                let seq = &mut seqs[k % (USERS / 2)];
                *seq += 1;
                insert
                    .execute(params![
                        a,
                        b,
                        *seq,
                        m.from_id,
                        m.to_id,
                        m.dialogue_id,
                        m.cid,
                        m.payload,
                        m.ts_ms
                    ])
                    .expect("insert");
                k += 1;
            }
        }
        tx.commit().expect("commit");
    }
    k as f64 / started.elapsed().as_secs_f64()
}

/// The store's own append, as imd's history writer calls it.
fn append(dir: &Path, payload: &str) -> f64 {
    let mut store = fresh(&dir.join("disk-append.sqlite3"));
    let (mut k, started) = (0, Instant::now());
    while started.elapsed() < INSERT_TIME {
        let batch: Vec<NewHistoryMessage> = (k..k + BATCH).map(|k| message(k, payload)).collect();
        store.append_messages(&batch).expect("append");
        k += BATCH;
    }
    k as f64 / started.elapsed().as_secs_f64()
}

/// Microseconds of each 4 KiB append + fsync.
fn fsync_samples(dir: &Path) -> Vec<u64> {
    let path = dir.join("disk-fsync.probe");
    let mut file =
        OpenOptions::new().create(true).write(true).truncate(true).open(&path).expect("probe file");
    let block = [0x5au8; 4096];
    let (mut samples, started) = (Vec::with_capacity(FSYNC_SAMPLES), Instant::now());
    while samples.len() < FSYNC_SAMPLES && started.elapsed() < FSYNC_TIME {
        let t = Instant::now();
        file.write_all(&block).expect("write");
        file.sync_all().expect("fsync");
        samples.push(t.elapsed().as_micros() as u64);
    }
    let _ = std::fs::remove_file(path);
    samples.sort_unstable();
    samples
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(i).copied().unwrap_or(0)
}

fn main() {
    // cargo bench adds --bench; the directory is the one other argument.
    let dir: PathBuf = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let payload = "x".repeat(64);
    let fsync = fsync_samples(&dir);
    let b4 = b4(&dir, &payload);
    let append = append(&dir, &payload);
    for name in ["disk-b4", "disk-append"] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("{name}.sqlite3{suffix}")));
        }
    }
    println!(
        "DISK {{\"b4_msgs_per_s\":{b4:.0},\"append_msgs_per_s\":{append:.0},\"batch\":{BATCH},\
         \"fsync_samples\":{},\"fsync_p50_us\":{},\"fsync_p99_us\":{},\"fsync_max_us\":{}}}",
        fsync.len(),
        percentile(&fsync, 0.5),
        percentile(&fsync, 0.99),
        fsync.last().copied().unwrap_or(0)
    );
}
