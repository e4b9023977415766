//! Tests of what only the PostgreSQL backend does: its schema numbering, its error
//! mapping (lock timeout, lost connection) and its ordering of ids under any collation.
//! The behavioural tests of every operation run on it from `crate::tests` and
//! `crate::history_tests`.

use std::time::Duration;

use crate::testdb::{Kind, TempDb};
use crate::*;

fn add_user(s: &mut Store, id: &str) {
    let user = NewUser { id: id.into(), account: id.into(), name: id.into(), ..NewUser::default() };
    s.create_user(&user).unwrap();
}

#[test]
fn both_backends_migrate_to_the_same_version() {
    assert_eq!(super::schema::SCHEMA_VERSION, crate::SCHEMA_VERSION);
    assert_eq!(
        super::schema::FIRST_VERSION - 1 + super::schema::MIGRATIONS.len() as i64,
        crate::schema::MIGRATIONS.len() as i64,
        "every SQLite migration has its PostgreSQL twin"
    );
    let db = TempDb::new(Kind::Postgres);
    assert_eq!(db.open().schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_lock_held_past_the_busy_timeout_is_busy() {
    let db = TempDb::new(Kind::Postgres);
    let mut s = db.open();
    add_user(&mut s, "a");
    let mut other = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let mut tx = other.transaction().unwrap();
    tx.execute("SELECT 1 FROM users WHERE id = 'a' FOR UPDATE", &[]).unwrap();
    let opts = StoreOptions { busy_timeout: Duration::from_millis(100), ..StoreOptions::default() };
    let mut waiting = db.open_with(&opts).unwrap();
    let update = ProfileUpdate { name: Some("x".into()), ..ProfileUpdate::default() };
    let r = waiting.update_profile("a", &update);
    assert!(matches!(r, Err(StoreError::Busy)), "{r:?}");
    tx.rollback().unwrap();
    assert_eq!(waiting.update_profile("a", &update).unwrap().name, "x", "usable after");
}

#[test]
fn a_lost_connection_asks_for_a_new_one_and_a_refused_write_does_not() {
    let db = TempDb::new(Kind::Postgres);
    let mut s = db.open();
    add_user(&mut s, "a");
    let dup =
        s.create_user(&NewUser { id: "a".into(), account: "other".into(), ..NewUser::default() });
    assert!(matches!(&dup, Err(e @ StoreError::Postgres(_)) if !e.needs_reopen()), "{dup:?}");
    let line = dup.unwrap_err().to_string();
    assert!(line.contains("users_pkey"), "the cause is in the line: {line}");
    let pid = s.count_for_tests("SELECT pg_backend_pid()::bigint");
    let killer = db.open();
    let killed =
        killer.count_for_tests(&format!("SELECT pg_terminate_backend({pid})::int::bigint"));
    assert_eq!(killed, 1);
    let lost = s.user_by_id("a");
    assert!(matches!(&lost, Err(e) if e.needs_reopen()), "{lost:?}");
}

/// Ids pair bytewise (`"B" < "a"`) in Rust; the triggers that end a conversation must
/// pair them the same way on a database whose collation sorts otherwise.
#[test]
fn ids_pair_bytewise_under_a_linguistic_collation() {
    let db = TempDb::postgres_with(
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'",
    );
    let mut s = db.open();
    let linguistic = s.count_for_tests("SELECT (LEAST('B'::text, 'a'::text) = 'a')::int::bigint");
    assert_eq!(linguistic, 1, "the database sorts 'a' before 'B'");
    add_user(&mut s, "B");
    add_user(&mut s, "a");
    s.make_friends("a", "B", "B", "a").unwrap();
    let m = NewHistoryMessage {
        from_id: "a".into(),
        to_id: "B".into(),
        dialogue_id: "d".into(),
        cid: None,
        payload: "p".into(),
        ts_ms: 1,
        live: false,
    };
    assert_eq!(s.append_messages(&[m]).unwrap(), [Appended::New { seq: 1 }]);
    let names: Vec<_> = s.friends_of("a").unwrap().into_iter().map(|f| f.id).collect();
    assert_eq!(names, ["B"]);
    assert!(s.remove_friendship("a", "B").unwrap());
    assert_eq!(s.count_for_tests("SELECT count(*) FROM history"), 0);
    assert_eq!(s.count_for_tests("SELECT count(*) FROM conversations"), 0);
}

/// Each SQL text is prepared once per connection and kept: later runs are one round
/// trip (bind and execute), not two.
#[test]
fn a_statement_is_prepared_once_per_connection() {
    let db = TempDb::new(Kind::Postgres);
    let mut s = db.open();
    add_user(&mut s, "a");
    let prepared = |s: &Store| s.count_for_tests("SELECT count(*) FROM pg_prepared_statements");
    let before = prepared(&s);
    for _ in 0..3 {
        assert!(s.user_by_id("a").unwrap().is_some());
    }
    assert_eq!(prepared(&s), before + 1, "kept once");
    for _ in 0..3 {
        s.update_profile("a", &ProfileUpdate::default()).unwrap();
    }
    // The UPDATE, and the SELECT it reads the row with, which user_by_id prepared.
    assert_eq!(prepared(&s), before + 2, "a write's statements are kept too");
}

/// A PostgreSQL database at version 5 (before remembered logins) is migrated to the
/// current version at open, its rows kept.
#[test]
fn version_5_migrates_to_the_current_version() {
    let db = TempDb::new(Kind::Postgres);
    {
        let mut c = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
        c.batch_execute(super::schema::MIGRATIONS[0]).unwrap();
        c.batch_execute(
            "CREATE TABLE imd_schema (version BIGINT NOT NULL);
             INSERT INTO imd_schema (version) VALUES (5);
             INSERT INTO users (id, account, account_key, password_hash)
             VALUES ('a', 'A', 'a', 'h');",
        )
        .unwrap();
    }
    let mut s = db.open();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.device_count("a").unwrap(), 0);
    s.add_device("a", &[1; 32], 0, 10).unwrap();
    assert_eq!(s.user_by_id("a").unwrap().unwrap().account, "A");
}

/// A write that PostgreSQL aborts for a serialization failure is run again, whole:
/// the append waits on the counter row another session holds, fails 40001 when that
/// session commits, and its retry takes the next number.
#[test]
fn a_serialization_failure_is_retried_whole() {
    let db = TempDb::new(Kind::Postgres);
    let mut s = db.open();
    add_user(&mut s, "a");
    add_user(&mut s, "b");
    s.make_friends("a", "B", "b", "A").unwrap();
    let m = NewHistoryMessage {
        from_id: "a".into(),
        to_id: "b".into(),
        dialogue_id: "d".into(),
        cid: None,
        payload: "p".into(),
        ts_ms: 1,
        live: false,
    };
    assert_eq!(s.append_messages(std::slice::from_ref(&m)).unwrap(), [Appended::New { seq: 1 }]);
    let mut other = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let mut holder = other.transaction().unwrap();
    holder
        .execute("UPDATE conversations SET last_seq = last_seq + 1 WHERE a = 'a' AND b = 'b'", &[])
        .unwrap();
    let appending = std::thread::spawn(move || s.append_messages(&[m]));
    let watcher = db.open();
    let waiting = "SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while watcher.count_for_tests(waiting) == 0 {
        assert!(std::time::Instant::now() < deadline, "the append never waited");
        std::thread::sleep(Duration::from_millis(10));
    }
    holder.commit().unwrap();
    let appended = appending.join().unwrap();
    assert_eq!(appended.unwrap(), [Appended::New { seq: 3 }]);
}
