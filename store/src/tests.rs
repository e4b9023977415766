//! Tests of every store operation, on temporary databases: the behavioural ones on
//! both backends (`sqlite::…`, `postgres::…`), SQLite's own features on SQLite.

use std::path::PathBuf;
use std::sync::{Arc, Barrier};

use crate::testdb::{on_both_backends, Kind, TempDb};
use crate::*;

/// No cap on pending requests.
const NO_CAP: usize = usize::MAX;

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
fn abc(kind: Kind) -> (TempDb, Store) {
    let db = TempDb::new(kind);
    let mut s = db.open();
    s.create_user(&user("a", "alice", "Alice")).unwrap();
    s.create_user(&user("b", "bob", "Bob")).unwrap();
    s.create_user(&user("c", "carol", "Carol")).unwrap();
    (db, s)
}

#[test]
fn open_sets_wal_foreign_keys_and_schema() {
    let db = TempDb::new(Kind::Sqlite);
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

fn reopening_is_a_no_op_and_keeps_data(kind: Kind) {
    let db = TempDb::new(kind);
    let mut s = db.open();
    s.create_user(&user("a", "alice", "Alice")).unwrap();
    drop(s);
    for _ in 0..3 {
        let s = db.open();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(s.user_by_id("a").unwrap().is_some());
    }
}

fn a_newer_schema_is_refused(kind: Kind) {
    let db = TempDb::new(kind);
    let mut s = db.open();
    s.set_schema_version_for_tests(SCHEMA_VERSION + 1);
    drop(s);
    match db.open_with(&StoreOptions::default()) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("{other:?}"),
    }
}

fn concurrent_opens_of_a_new_file_all_succeed(kind: Kind) {
    let db = Arc::new(TempDb::new(kind));
    let barrier = Arc::new(Barrier::new(12));
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let (db, barrier) = (Arc::clone(&db), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                db.open_with(&StoreOptions::default()).map(|s| s.schema_version())
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().unwrap().unwrap(), SCHEMA_VERSION);
    }
}

fn users_are_found_by_id_and_case_insensitive_account(kind: Kind) {
    let db = TempDb::new(kind);
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

fn accounts_are_unique_case_insensitively(kind: Kind) {
    let db = TempDb::new(kind);
    let mut s = db.open();
    s.create_user(&user("1", "Bob", "B")).unwrap();
    assert!(matches!(s.create_user(&user("2", "bOB", "B")), Err(StoreError::AccountTaken)));
    assert!(matches!(s.create_user(&user("3", "Bob", "B")), Err(StoreError::AccountTaken)));
    // Non-ASCII letters are not folded (ASCII only, §1).
    s.create_user(&user("4", "Ä", "x")).unwrap();
    s.create_user(&user("5", "ä", "x")).unwrap();
    // A duplicate id is an internal error, not "account taken".
    let dup = s.create_user(&user("1", "other", "x"));
    assert!(matches!(dup, Err(StoreError::Sqlite(_) | StoreError::Postgres(_))), "{dup:?}");
    assert_eq!(s.user_by_id("2").unwrap(), None);
}

fn racing_registrations_have_one_winner(kind: Kind) {
    let db = Arc::new(TempDb::new(kind));
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

fn profile_updates_change_only_given_fields(kind: Kind) {
    let (_db, mut s) = abc(kind);
    let before = s.user_by_id("a").unwrap().unwrap();
    let up = ProfileUpdate {
        name: Some("Alicia".into()),
        sign: Some("new sign".into()),
        password_hash: Some("new-hash".into()),
        ..ProfileUpdate::default()
    };
    let after = s.update_profile("a", &up).unwrap();
    assert_eq!(s.user_by_id("a").unwrap().unwrap(), after);
    assert_eq!(after.name, "Alicia");
    assert_eq!(after.sign, "new sign");
    assert_eq!(after.password_hash, "new-hash");
    assert_eq!(after.picture, before.picture);
    assert_eq!(after.mail, before.mail);
    assert_eq!(after.account, before.account);
    assert_eq!(s.update_profile("a", &ProfileUpdate::default()).unwrap(), after);
    assert!(matches!(s.update_profile("nobody", &up), Err(StoreError::UserGone)));
}

fn the_directory_lists_every_user_with_small_pictures_only(kind: Kind) {
    let db = TempDb::new(kind);
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
    let db = TempDb::new(Kind::Sqlite);
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
    let renamed = s
        .update_profile("a", &ProfileUpdate { name: Some("Al".into()), ..Default::default() })
        .unwrap();
    assert_eq!(renamed.name, "Al");
    s.create_user(&user("b", "bob", "Bob")).unwrap();
    assert_eq!(s.directory(64).unwrap().len(), 2);
    assert!(s.integrity_check().unwrap());
}

fn friendships_are_mutual_with_aliases(kind: Kind) {
    let (_db, mut s) = abc(kind);
    assert!(!s.are_friends("a", "b").unwrap());
    s.request_friend("a", "b", "hi", NO_CAP).unwrap();
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

fn requests_are_one_per_ordered_pair(kind: Kind) {
    let (_db, mut s) = abc(kind);
    s.request_friend("b", "a", "first", NO_CAP).unwrap();
    s.request_friend("c", "a", "from carol", NO_CAP).unwrap();
    // A repeat replaces the note and becomes the newest.
    s.request_friend("b", "a", "again", NO_CAP).unwrap();
    assert!(s.pending_request("b", "a").unwrap());
    assert!(!s.pending_request("a", "b").unwrap());
    let reqs = s.requests_to("a", NO_CAP).unwrap();
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
    assert_eq!(s.requests_to("a", 1).unwrap(), reqs[..1], "the newest only");
    assert!(s.requests_to("b", NO_CAP).unwrap().is_empty());
    assert!(s.delete_request("b", "a").unwrap());
    assert!(!s.delete_request("b", "a").unwrap());
    assert_eq!(s.requests_to("a", NO_CAP).unwrap().len(), 1);
    assert!(matches!(s.request_friend("a", "ghost", "", NO_CAP), Err(StoreError::NoSuchUser)));
    assert!(matches!(s.request_friend("ghost", "a", "", NO_CAP), Err(StoreError::UserGone)));
}

fn messages_come_oldest_first_and_are_deleted_up_to_a_seq(kind: Kind) {
    let (_db, mut s) = abc(kind);
    s.make_friends("a", "B", "b", "A").unwrap();
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

fn delete_user_purges_everything(kind: Kind) {
    let (_db, mut s) = abc(kind);
    s.make_friends("a", "B", "b", "A").unwrap();
    s.make_friends("a", "C", "c", "A").unwrap();
    s.make_friends("b", "C", "c", "B").unwrap();
    s.create_user(&user("d", "dave", "Dave")).unwrap();
    s.create_user(&user("e", "eve", "Eve")).unwrap();
    s.request_friend("a", "d", "to dave", NO_CAP).unwrap();
    s.request_friend("e", "a", "to alice", NO_CAP).unwrap();
    s.store_message("b", "a", "1", "from a", 1).unwrap();
    s.store_message("a", "b", "1", "to a", 1).unwrap();
    s.store_message("c", "b", "1", "b to c", 1).unwrap();

    let mut former = s.delete_user("a").unwrap();
    former.sort();
    assert_eq!(former, ["b", "c"]);
    assert_eq!(s.user_by_id("a").unwrap(), None);
    assert!(!s.account_exists("alice").unwrap());
    assert_eq!(
        (s.friend_ids("b").unwrap(), s.friend_ids("c").unwrap()),
        (vec!["c".to_string()], vec!["b".to_string()])
    );
    assert!(s.aliases_for("a").unwrap().is_empty());
    assert!(s.requests_to("d", NO_CAP).unwrap().is_empty());
    assert!(!s.pending_request("e", "a").unwrap());
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
        assert_eq!(s.count_for_tests(&sql), 0, "{table}");
    }
    assert!(matches!(s.delete_user("a"), Err(StoreError::UserGone)), "one erase wins");
    // The account is free again.
    s.create_user(&user("a2", "ALICE", "Alice")).unwrap();
    assert!(s.integrity_check().unwrap());
}

fn writers_on_many_connections_do_not_fail_busy(kind: Kind) {
    let (db, mut s) = abc(kind);
    s.make_friends("a", "B", "b", "A").unwrap();
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
                    s.request_friend("b", "c", &payload, NO_CAP).unwrap();
                    let _ = s.requests_to("c", NO_CAP).unwrap();
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

fn a_message_is_kept_only_between_friends(kind: Kind) {
    let (_db, mut s) = abc(kind);
    assert!(matches!(s.store_message("a", "b", "1", "p", 1), Err(StoreError::NotFriends)));
    s.make_friends("a", "B", "b", "A").unwrap();
    s.store_message("a", "b", "1", "p", 1).unwrap();
    s.delete_user("b").unwrap();
    assert!(matches!(s.store_message("a", "b", "1", "p", 1), Err(StoreError::NotFriends)));
    assert!(matches!(s.store_message("b", "a", "1", "p", 1), Err(StoreError::NotFriends)));
}

fn accepting_checks_in_the_protocol_order(kind: Kind) {
    let (_db, mut s) = abc(kind);
    assert!(matches!(s.accept_request("ghost", "a", "x"), Err(StoreError::UserGone)));
    assert!(matches!(s.accept_request("a", "ghost", "x"), Err(StoreError::NoSuchUser)));
    assert!(matches!(s.accept_request("a", "b", "x"), Err(StoreError::NoRequest)));
    s.request_friend("b", "a", "hi", NO_CAP).unwrap();
    let mine = s.accept_request("a", "b", "Bobby").unwrap();
    assert_eq!(mine.id, "a");
    assert_eq!(s.friends_of("a").unwrap()[0].alias, "Bobby");
    assert_eq!(s.friends_of("b").unwrap()[0].alias, "Alice", "my profile name");
    assert!(!s.pending_request("b", "a").unwrap());
    assert!(matches!(s.accept_request("a", "b", "x"), Err(StoreError::AlreadyFriends)));
    assert!(matches!(s.request_friend("b", "a", "", NO_CAP), Err(StoreError::AlreadyFriends)));
}

fn a_request_to_someone_who_asked_first_makes_friends(kind: Kind) {
    let (_db, mut s) = abc(kind);
    assert!(matches!(s.request_friend("a", "b", "hi", NO_CAP), Ok(Requested::Stored { .. })));
    match s.request_friend("b", "a", "hey", NO_CAP) {
        Ok(Requested::Befriended { requester, target }) => {
            assert_eq!((requester.id.as_str(), target.id.as_str()), ("b", "a"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.friends_of("a").unwrap()[0].alias, "Bob");
    assert_eq!(s.friends_of("b").unwrap()[0].alias, "Alice");
    assert!(!s.pending_request("a", "b").unwrap() && !s.pending_request("b", "a").unwrap());
}

fn a_target_holds_at_most_cap_requests(kind: Kind) {
    let (_db, mut s) = abc(kind);
    for (id, account) in [("d", "dave"), ("e", "eve")] {
        s.create_user(&user(id, account, account)).unwrap();
    }
    s.request_friend("b", "a", "1", 3).unwrap();
    s.request_friend("c", "a", "2", 3).unwrap();
    s.request_friend("d", "a", "3", 3).unwrap();
    assert!(matches!(s.request_friend("e", "a", "4", 3), Err(StoreError::TooManyRequests)));
    assert!(!s.pending_request("e", "a").unwrap());
    // A repeat only replaces the note: not beyond the cap.
    s.request_friend("b", "a", "1 again", 3).unwrap();
    // The target's own request is an answer, not a new request to hold.
    s.request_friend("a", "c", "", 3).unwrap();
    assert!(s.are_friends("a", "c").unwrap());
    s.request_friend("e", "a", "4", 3).unwrap();
    let notes: Vec<_> = s.requests_to("a", NO_CAP).unwrap().into_iter().map(|r| r.note).collect();
    assert_eq!(notes, ["4", "1 again", "3"], "newest first");
    // Requests a user sent are not held by them.
    assert!(matches!(s.request_friend("a", "b", "", 1), Ok(Requested::Befriended { .. })));
}

/// Runs `f(i, store)` on `n` threads at once, each on its own connection; their results.
fn race<T: Send + 'static>(
    db: &Arc<TempDb>,
    n: usize,
    f: impl Fn(usize, &mut Store) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let f = Arc::new(f);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (db, barrier, f) = (Arc::clone(db), Arc::clone(&barrier), Arc::clone(&f));
            std::thread::spawn(move || {
                let mut s = db.open();
                barrier.wait();
                f(i, &mut s)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn crossing_requests_on_two_connections_always_make_friends(kind: Kind) {
    let db = Arc::new(TempDb::new(kind));
    let mut s = db.open();
    for round in 0..40 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        s.create_user(&user(&a, &a, "A")).unwrap();
        s.create_user(&user(&b, &b, "B")).unwrap();
        let results = race(&db, 2, move |i, s| {
            let (me, other) = if i == 0 { (&a, &b) } else { (&b, &a) };
            s.request_friend(me, other, "", NO_CAP)
        });
        let befriended =
            results.iter().filter(|r| matches!(r, Ok(Requested::Befriended { .. }))).count();
        assert_eq!(befriended, 1, "round {round}: {results:?}");
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        assert!(s.are_friends(&a, &b).unwrap() && s.are_friends(&b, &a).unwrap());
        assert!(!s.pending_request(&a, &b).unwrap() && !s.pending_request(&b, &a).unwrap());
    }
}

fn racing_an_erase_answers_documented_errors_never_a_failure(kind: Kind) {
    let db = Arc::new(TempDb::new(kind));
    let mut s = db.open();
    for round in 0..30 {
        let (a, b, c, d) =
            (format!("a{round}"), format!("b{round}"), format!("c{round}"), format!("d{round}"));
        for id in [&a, &b, &c, &d] {
            s.create_user(&user(id, id, id)).unwrap();
        }
        s.request_friend(&a, &b, "", NO_CAP).unwrap();
        s.make_friends(&a, "C", &c, "A").unwrap();
        // While a is erased twice: b accepts a's request, d asks a, c keeps a message
        // for a, a updates its profile.
        let results = race(&db, 6, {
            let (a, b, c, d) = (a.clone(), b.clone(), c.clone(), d.clone());
            move |i, s| match i {
                0 | 1 => s.delete_user(&a).map(|_| ()),
                2 => s.accept_request(&b, &a, "A").map(|_| ()),
                3 => s.request_friend(&d, &a, "", NO_CAP).map(|_| ()),
                4 => s.store_message(&a, &c, "1", "p", 1).map(|_| ()),
                _ => s.update_profile(&a, &ProfileUpdate::default()).map(|_| ()),
            }
        });
        for (i, r) in results.iter().enumerate() {
            let allowed = match i {
                0 | 1 | 5 => matches!(r, Ok(()) | Err(StoreError::UserGone)),
                2 | 3 => matches!(r, Ok(()) | Err(StoreError::NoSuchUser)),
                _ => matches!(r, Ok(()) | Err(StoreError::NotFriends)),
            };
            assert!(allowed, "round {round}, op {i}: {r:?}");
        }
        let erases = results[..2].iter().filter(|r| r.is_ok()).count();
        assert_eq!(erases, 1, "round {round}: {results:?}");
        assert_eq!(s.user_by_id(&a).unwrap(), None);
        assert!(s.friend_ids(&b).unwrap().is_empty() && s.friend_ids(&c).unwrap().is_empty());
        assert!(!s.pending_request(&d, &a).unwrap());
        assert!(s.pending_messages(&a, 10).unwrap().is_empty());
        assert!(s.requests_to(&a, NO_CAP).unwrap().is_empty());
        assert!(s.integrity_check().unwrap());
    }
}

fn racing_requesters_never_exceed_the_cap(kind: Kind) {
    let db = Arc::new(TempDb::new(kind));
    let mut s = db.open();
    s.create_user(&user("target", "target", "T")).unwrap();
    for i in 0..12 {
        s.create_user(&user(&format!("r{i}"), &format!("r{i}"), "R")).unwrap();
    }
    let results = race(&db, 12, |i, s| s.request_friend(&format!("r{i}"), "target", "", 5));
    let stored = results.iter().filter(|r| r.is_ok()).count();
    let refused = results.iter().filter(|r| matches!(r, Err(StoreError::TooManyRequests))).count();
    assert_eq!((stored, refused), (5, 7), "{results:?}");
    assert_eq!(s.requests_to("target", NO_CAP).unwrap().len(), 5);
}

#[test]
fn version_3_migrates_requests_in_their_order() {
    let db = TempDb::new(Kind::Sqlite);
    {
        let conn = rusqlite::Connection::open(db.path()).unwrap();
        for sql in &crate::schema::MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, account, account_key, password_hash, name)
             VALUES ('a', 'a', 'a', 'h', 'A'), ('b', 'b', 'b', 'h', 'B'),
                    ('c', 'c', 'c', 'h', 'C'), ('d', 'd', 'd', 'h', 'D');
             INSERT INTO requests (from_id, to_id, note, created_ms)
             VALUES ('c', 'a', 'second', 20), ('b', 'a', 'first', 10),
                    ('d', 'a', 'third', 20), ('c', 'b', 'other', 5);",
        )
        .unwrap();
    }
    let mut s = db.open();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let notes = |s: &Store| -> Vec<String> {
        s.requests_to("a", NO_CAP).unwrap().into_iter().map(|r| r.note).collect()
    };
    assert_eq!(notes(&s), ["third", "second", "first"]);
    s.request_friend("b", "a", "again", NO_CAP).unwrap();
    assert_eq!(notes(&s), ["again", "third", "second"]);
    assert_eq!(s.requests_to("b", NO_CAP).unwrap()[0].note, "other");
    assert!(s.integrity_check().unwrap());
}

#[test]
fn one_process_owns_the_file_with_no_shared_memory_file() {
    let db = TempDb::new(Kind::Sqlite);
    let shm = {
        let mut p = db.path().to_path_buf().into_os_string();
        p.push("-shm");
        PathBuf::from(p)
    };
    let mut a = db.open();
    let mut b = db.open();
    a.create_user(&user("a", "alice", "Alice")).unwrap();
    b.create_user(&user("b", "bob", "Bob")).unwrap();
    assert!(a.user_by_id("b").unwrap().is_some() && b.user_by_id("a").unwrap().is_some());
    assert!(!shm.exists(), "the WAL index lives in this process's memory");
    drop((a, b));
    let shared = StoreOptions { process_exclusive: false, ..StoreOptions::default() };
    let c = Store::open(db.path(), &shared).unwrap();
    assert!(c.user_by_id("a").unwrap().is_some());
    assert!(shm.exists(), "the default VFS shares the index through -shm");
}

#[test]
fn a_copy_holds_what_the_open_file_held_even_once_deleted() {
    let (db, s) = abc(Kind::Sqlite);
    for suffix in ["", "-wal"] {
        let mut p = db.path().to_path_buf().into_os_string();
        p.push(suffix);
        std::fs::remove_file(p).unwrap();
    }
    let copy = TempDb::new(Kind::Sqlite);
    s.copy_to(copy.path()).unwrap();
    let c = copy.open();
    assert_eq!(c.directory(64).unwrap().len(), 3);
    assert!(c.integrity_check().unwrap());
}

fn a_rehash_replaces_only_the_hash_it_was_made_from(kind: Kind) {
    let (_db, mut s) = abc(kind);
    assert!(s.rehash_password("a", "hash-of-alice", "stronger").unwrap());
    assert_eq!(s.user_by_id("a").unwrap().unwrap().password_hash, "stronger");
    // A password change got there first: the login's rehash of the old one loses.
    let change = ProfileUpdate { password_hash: Some("changed".into()), ..Default::default() };
    s.update_profile("b", &change).unwrap();
    assert!(!s.rehash_password("b", "hash-of-bob", "rehash of the old").unwrap());
    assert_eq!(s.user_by_id("b").unwrap().unwrap().password_hash, "changed");
    assert!(!s.rehash_password("nobody", "x", "y").unwrap());
}

on_both_backends!(
    reopening_is_a_no_op_and_keeps_data,
    a_newer_schema_is_refused,
    concurrent_opens_of_a_new_file_all_succeed,
    users_are_found_by_id_and_case_insensitive_account,
    accounts_are_unique_case_insensitively,
    racing_registrations_have_one_winner,
    profile_updates_change_only_given_fields,
    the_directory_lists_every_user_with_small_pictures_only,
    friendships_are_mutual_with_aliases,
    requests_are_one_per_ordered_pair,
    messages_come_oldest_first_and_are_deleted_up_to_a_seq,
    delete_user_purges_everything,
    writers_on_many_connections_do_not_fail_busy,
    a_message_is_kept_only_between_friends,
    accepting_checks_in_the_protocol_order,
    a_request_to_someone_who_asked_first_makes_friends,
    a_target_holds_at_most_cap_requests,
    crossing_requests_on_two_connections_always_make_friends,
    racing_an_erase_answers_documented_errors_never_a_failure,
    racing_requesters_never_exceed_the_cap,
    a_rehash_replaces_only_the_hash_it_was_made_from,
);
