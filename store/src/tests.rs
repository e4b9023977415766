//! Tests of every store operation, on temporary database files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use crate::*;

/// A temporary database file, removed (with its WAL and SHM files) on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> TempDb {
        let name = format!("imd-store-test-{}.sqlite3", uuid::Uuid::new_v4().simple());
        TempDb(std::env::temp_dir().join(name))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn open(&self) -> Store {
        Store::open(&self.0, &StoreOptions::default()).expect("open")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

fn user(id: &str, account: &str, name: &str) -> NewUser {
    NewUser {
        id: id.into(),
        account: account.into(),
        password_hash: format!("hash-of-{account}"),
        name: name.into(),
        picture: "pic".into(),
        sex: "x".into(),
        birthday: "2000".into(),
        sign: "sign".into(),
        mail: format!("{account}@example.com"),
    }
}

/// A store with users a, b, c (named Alice, Bob, Carol).
fn abc() -> (TempDb, Store) {
    let db = TempDb::new();
    let mut s = db.open();
    s.create_user(&user("a", "alice", "Alice")).unwrap();
    s.create_user(&user("b", "bob", "Bob")).unwrap();
    s.create_user(&user("c", "carol", "Carol")).unwrap();
    (db, s)
}

#[test]
fn open_sets_wal_foreign_keys_and_schema() {
    let db = TempDb::new();
    let s = db.open();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let mode: String =
        s.conn_for_tests().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = s.conn_for_tests().query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
    assert_eq!(fk, 1);
    let sync: i64 = s.conn_for_tests().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
    assert_eq!(sync, 2, "FULL");
    assert!(s.integrity_check().unwrap());
    drop(s);
    let opts = StoreOptions { synchronous: Synchronous::Normal, ..StoreOptions::default() };
    let s = Store::open(db.path(), &opts).unwrap();
    let sync: i64 = s.conn_for_tests().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
    assert_eq!(sync, 1, "NORMAL");
}

#[test]
fn reopening_is_a_no_op_and_keeps_data() {
    let db = TempDb::new();
    let mut s = db.open();
    s.create_user(&user("a", "alice", "Alice")).unwrap();
    drop(s);
    for _ in 0..3 {
        let s = db.open();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(s.user_by_id("a").unwrap().is_some());
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let db = TempDb::new();
    let s = db.open();
    s.conn_for_tests().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    drop(s);
    match Store::open(db.path(), &StoreOptions::default()) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn concurrent_opens_of_a_new_file_all_succeed() {
    let db = Arc::new(TempDb::new());
    let barrier = Arc::new(Barrier::new(12));
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let (db, barrier) = (Arc::clone(&db), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                Store::open(db.path(), &StoreOptions::default()).map(|s| s.schema_version())
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().unwrap().unwrap(), SCHEMA_VERSION);
    }
}

#[test]
fn users_are_found_by_id_and_case_insensitive_account() {
    let db = TempDb::new();
    let mut s = db.open();
    s.create_user(&user("id1", "Alice", "Alice A")).unwrap();
    let u = s.user_by_account("aLiCe").unwrap().unwrap();
    assert_eq!(u.id, "id1");
    assert_eq!(u.account, "Alice", "stored as typed");
    assert_eq!(u.password_hash, "hash-of-Alice");
    assert_eq!((u.name.as_str(), u.mail.as_str()), ("Alice A", "Alice@example.com"));
    assert!(u.created_ms > 0);
    assert_eq!(s.user_by_id("id1").unwrap(), Some(u));
    assert!(s.account_exists("ALICE").unwrap());
    assert!(!s.account_exists("alicia").unwrap());
    assert_eq!(s.user_by_account("nobody").unwrap(), None);
    assert_eq!(s.user_by_id("nobody").unwrap(), None);
}

#[test]
fn accounts_are_unique_case_insensitively() {
    let db = TempDb::new();
    let mut s = db.open();
    s.create_user(&user("1", "Bob", "B")).unwrap();
    assert!(matches!(s.create_user(&user("2", "bOB", "B")), Err(StoreError::AccountTaken)));
    assert!(matches!(s.create_user(&user("3", "Bob", "B")), Err(StoreError::AccountTaken)));
    // Non-ASCII letters are not folded (ASCII only, §1).
    s.create_user(&user("4", "Ä", "x")).unwrap();
    s.create_user(&user("5", "ä", "x")).unwrap();
    // A duplicate id is an internal error, not "account taken".
    assert!(matches!(s.create_user(&user("1", "other", "x")), Err(StoreError::Sqlite(_))));
    assert_eq!(s.user_by_id("2").unwrap(), None);
}

#[test]
fn racing_registrations_have_one_winner() {
    let db = Arc::new(TempDb::new());
    drop(db.open()); // create the schema once; opens race in another test
    let n = 20;
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (db, barrier) = (Arc::clone(&db), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut s = db.open();
                barrier.wait();
                let account = if i % 2 == 0 { "Racer" } else { "racer" };
                s.create_user(&user(&format!("id{i}"), account, "R"))
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let taken = results.iter().filter(|r| matches!(r, Err(StoreError::AccountTaken))).count();
    assert_eq!((wins, taken), (1, n - 1), "{results:?}");
}

#[test]
fn profile_updates_change_only_given_fields() {
    let (_db, mut s) = abc();
    let before = s.user_by_id("a").unwrap().unwrap();
    let up = ProfileUpdate {
        name: Some("Alicia".into()),
        sign: Some("new sign".into()),
        password_hash: Some("new-hash".into()),
        ..ProfileUpdate::default()
    };
    assert!(s.update_profile("a", &up).unwrap());
    let after = s.user_by_id("a").unwrap().unwrap();
    assert_eq!(after.name, "Alicia");
    assert_eq!(after.sign, "new sign");
    assert_eq!(after.password_hash, "new-hash");
    assert_eq!(after.picture, before.picture);
    assert_eq!(after.mail, before.mail);
    assert_eq!(after.account, before.account);
    assert!(s.update_profile("a", &ProfileUpdate::default()).unwrap());
    assert_eq!(s.user_by_id("a").unwrap().unwrap(), after);
    assert!(!s.update_profile("nobody", &up).unwrap());
}

#[test]
fn the_directory_lists_every_user_with_small_pictures_only() {
    let db = TempDb::new();
    let mut s = db.open();
    s.create_user(&user("a", "alice", "Alice")).unwrap();
    s.create_user(&NewUser { picture: "é".repeat(3), ..user("b", "Bob", "Bob") }).unwrap();
    let mut rows = s.directory(6).unwrap();
    rows.sort_by(|x, y| x.id.cmp(&y.id));
    let alice = DirectoryRow {
        id: "a".into(),
        account: "alice".into(),
        name: "Alice".into(),
        picture: Some("pic".into()),
        sex: "x".into(),
        birthday: "2000".into(),
        sign: "sign".into(),
    };
    let bob = DirectoryRow {
        id: "b".into(),
        account: "Bob".into(),
        name: "Bob".into(),
        picture: Some("ééé".into()),
        ..alice.clone()
    };
    assert_eq!(rows, [alice.clone(), bob.clone()]);
    // The limit counts bytes: "ééé" is 6.
    let rows = s.directory(5).unwrap();
    assert_eq!(rows.iter().find(|r| r.id == "b").map(|r| r.picture.clone()), Some(None));
    s.delete_user("a").unwrap();
    assert_eq!(s.directory(6).unwrap(), [bob]);
}

#[test]
fn version_2_migrates_without_the_trigram_index() {
    let db = TempDb::new();
    {
        let conn = rusqlite::Connection::open(db.path()).unwrap();
        for sql in &crate::schema::MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute(
            "INSERT INTO users (id, account, account_key, password_hash, name, name_key)
             VALUES ('a', 'Alice', 'alice', 'h', 'Alice A', 'alice a')",
            [],
        )
        .unwrap();
    }
    let mut s = db.open();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let left: i64 = s
        .conn_for_tests()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'users_name%'
             OR name = 'users_by_name'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "no index, table or trigger of the old search");
    let u = s.user_by_id("a").unwrap().unwrap();
    assert_eq!((u.account.as_str(), u.name.as_str()), ("Alice", "Alice A"));
    assert!(s
        .update_profile("a", &ProfileUpdate { name: Some("Al".into()), ..Default::default() })
        .unwrap());
    s.create_user(&user("b", "bob", "Bob")).unwrap();
    assert_eq!(s.directory(64).unwrap().len(), 2);
    assert!(s.integrity_check().unwrap());
}

#[test]
fn friendships_are_mutual_with_aliases() {
    let (_db, mut s) = abc();
    assert!(!s.are_friends("a", "b").unwrap());
    s.put_request("a", "b", "hi").unwrap();
    s.put_request("b", "a", "hey").unwrap();
    s.make_friends("b", "Ally", "a", "Bobby").unwrap();
    assert!(s.are_friends("a", "b").unwrap() && s.are_friends("b", "a").unwrap());
    assert!(!s.pending_request("a", "b").unwrap() && !s.pending_request("b", "a").unwrap());
    let of_b = s.friends_of("b").unwrap();
    assert_eq!(
        of_b,
        [FriendRow {
            id: "a".into(),
            alias: "Ally".into(),
            name: "Alice".into(),
            picture: "pic".into(),
            sex: "x".into(),
            birthday: "2000".into(),
            sign: "sign".into(),
        }]
    );
    assert_eq!(s.friends_of("a").unwrap()[0].alias, "Bobby");
    assert_eq!(s.friend_ids("a").unwrap(), ["b"]);
    assert_eq!(s.aliases_for("a").unwrap(), [("b".to_string(), "Ally".to_string())]);
    // Making friends again keeps the aliases.
    s.make_friends("a", "other", "b", "other").unwrap();
    assert_eq!(s.friends_of("a").unwrap()[0].alias, "Bobby");
    // Ordered by alias.
    s.make_friends("a", "Aaron", "c", "Al").unwrap();
    let names: Vec<_> = s.friends_of("a").unwrap().into_iter().map(|f| f.alias).collect();
    assert_eq!(names, ["Aaron", "Bobby"]);
    assert!(s.remove_friendship("b", "a").unwrap());
    assert!(!s.are_friends("a", "b").unwrap() && !s.are_friends("b", "a").unwrap());
    assert!(!s.remove_friendship("a", "b").unwrap());
    assert_eq!(s.friend_ids("a").unwrap(), ["c"]);
    // Unknown users cannot be befriended.
    assert!(s.make_friends("a", "x", "ghost", "y").is_err());
    assert!(!s.are_friends("a", "ghost").unwrap());
}

#[test]
fn requests_are_one_per_ordered_pair() {
    let (_db, mut s) = abc();
    s.put_request("b", "a", "first").unwrap();
    s.put_request("c", "a", "from carol").unwrap();
    s.put_request("b", "a", "again").unwrap();
    assert!(s.pending_request("b", "a").unwrap());
    assert!(!s.pending_request("a", "b").unwrap());
    let reqs = s.requests_to("a").unwrap();
    assert_eq!(
        reqs,
        [
            RequestRow {
                from_id: "b".into(),
                from_name: "Bob".into(),
                to_id: "a".into(),
                note: "again".into()
            },
            RequestRow {
                from_id: "c".into(),
                from_name: "Carol".into(),
                to_id: "a".into(),
                note: "from carol".into()
            },
        ]
    );
    assert!(s.requests_to("b").unwrap().is_empty());
    assert!(s.delete_request("b", "a").unwrap());
    assert!(!s.delete_request("b", "a").unwrap());
    assert_eq!(s.requests_to("a").unwrap().len(), 1);
    assert!(s.put_request("a", "ghost", "").is_err(), "foreign key");
}

#[test]
fn messages_come_oldest_first_and_are_deleted_up_to_a_seq() {
    let (_db, mut s) = abc();
    let s1 = s.store_message("a", "b", "1", "one", 10).unwrap();
    let batch = [
        NewMessage { to_id: "a", from_id: "c", dialogue_id: "x", payload: "two", ts_ms: 11 },
        NewMessage { to_id: "b", from_id: "c", dialogue_id: "y", payload: "other", ts_ms: 12 },
        NewMessage { to_id: "a", from_id: "b", dialogue_id: "2", payload: " three\n", ts_ms: 13 },
    ];
    let seqs = s.store_messages(&batch).unwrap();
    assert_eq!(seqs.len(), 3);
    assert!(s1 < seqs[0] && seqs[0] < seqs[1] && seqs[1] < seqs[2]);
    let got = s.pending_messages("a", 100).unwrap();
    let payloads: Vec<_> = got.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(payloads, ["one", "two", " three\n"]);
    assert_eq!(
        got[1],
        StoredMessage {
            seq: seqs[0],
            from_id: "c".into(),
            dialogue_id: "x".into(),
            payload: "two".into(),
            ts_ms: 11
        }
    );
    assert_eq!(s.pending_messages("a", 2).unwrap().len(), 2);
    assert_eq!(s.delete_messages_upto("a", seqs[0]).unwrap(), 2);
    let left = s.pending_messages("a", 100).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].seq, seqs[2]);
    assert_eq!(s.pending_messages("b", 100).unwrap().len(), 1, "other receivers untouched");
    assert_eq!(s.store_messages(&[]).unwrap(), Vec::<i64>::new());
    // A batch is atomic: one bad message (unknown receiver) stores none.
    let bad = [
        NewMessage { to_id: "c", from_id: "a", dialogue_id: "1", payload: "p", ts_ms: 1 },
        NewMessage { to_id: "ghost", from_id: "a", dialogue_id: "1", payload: "p", ts_ms: 1 },
    ];
    assert!(s.store_messages(&bad).is_err());
    assert!(s.pending_messages("c", 100).unwrap().is_empty());
}

#[test]
fn delete_user_purges_everything() {
    let (_db, mut s) = abc();
    s.make_friends("a", "B", "b", "A").unwrap();
    s.make_friends("a", "C", "c", "A").unwrap();
    s.put_request("a", "x", "").unwrap_err(); // no such user
    s.create_user(&user("d", "dave", "Dave")).unwrap();
    s.put_request("a", "d", "to dave").unwrap();
    s.put_request("d", "a", "to alice").unwrap();
    s.store_message("b", "a", "1", "from a", 1).unwrap();
    s.store_message("a", "b", "1", "to a", 1).unwrap();
    s.store_message("c", "b", "1", "b to c", 1).unwrap();

    let mut former = s.delete_user("a").unwrap();
    former.sort();
    assert_eq!(former, ["b", "c"]);
    assert_eq!(s.user_by_id("a").unwrap(), None);
    assert!(!s.account_exists("alice").unwrap());
    assert!(s.friend_ids("b").unwrap().is_empty() && s.friend_ids("c").unwrap().is_empty());
    assert!(s.aliases_for("a").unwrap().is_empty());
    assert!(s.requests_to("d").unwrap().is_empty());
    assert!(!s.pending_request("d", "a").unwrap());
    assert!(s.pending_messages("b", 10).unwrap().is_empty());
    assert!(s.pending_messages("a", 10).unwrap().is_empty());
    assert_eq!(s.pending_messages("c", 10).unwrap().len(), 1, "others' messages kept");
    for table in ["friends", "requests", "messages", "users"] {
        let sql = format!(
            "SELECT count(*) FROM {table} WHERE {}",
            match table {
                "friends" => "user_id = 'a' OR friend_id = 'a'",
                "requests" => "from_id = 'a' OR to_id = 'a'",
                "messages" => "from_id = 'a' OR to_id = 'a'",
                _ => "id = 'a'",
            }
        );
        let n: i64 = s.conn_for_tests().query_row(&sql, [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0, "{table}");
    }
    assert!(s.delete_user("a").unwrap().is_empty(), "deleting again is harmless");
    // The account is free again.
    s.create_user(&user("a2", "ALICE", "Alice")).unwrap();
    assert!(s.integrity_check().unwrap());
}

#[test]
fn writers_on_many_connections_do_not_fail_busy() {
    let (db, s) = abc();
    drop(s);
    let db = Arc::new(db);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                let mut s = db.open();
                for i in 0..50 {
                    let payload = format!("{t}-{i}");
                    s.store_message("a", "b", "d", &payload, i).unwrap();
                    s.put_request("b", "c", &payload).unwrap();
                    let _ = s.requests_to("c").unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = db.open();
    assert_eq!(s.pending_messages("a", 1000).unwrap().len(), 400);
}

#[test]
fn a_rehash_replaces_only_the_hash_it_was_made_from() {
    let (_db, mut s) = abc();
    assert!(s.rehash_password("a", "hash-of-alice", "stronger").unwrap());
    assert_eq!(s.user_by_id("a").unwrap().unwrap().password_hash, "stronger");
    // A password change got there first: the login's rehash of the old one loses.
    let change = ProfileUpdate { password_hash: Some("changed".into()), ..Default::default() };
    s.update_profile("b", &change).unwrap();
    assert!(!s.rehash_password("b", "hash-of-bob", "rehash of the old").unwrap());
    assert_eq!(s.user_by_id("b").unwrap().unwrap().password_hash, "changed");
    assert!(!s.rehash_password("nobody", "x", "y").unwrap());
}
