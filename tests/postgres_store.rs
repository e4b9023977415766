//! The daemon on PostgreSQL (`[store] url`): registration, friendship, kept messages
//! and their delivery at login (marks moved once the backlog is written) go through
//! the PostgreSQL store, and a second node started on the same database serves the
//! same accounts and conversations. The server is the store crate's throwaway one
//! (`store::testdb`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use store::testdb::{Kind, TempDb};

/// A node of the test configuration with history on, on the database `db`.
fn node(db: &TempDb) -> TestServer {
    let dir = temp_dir();
    let mut config = config(&dir, "[history]\nenabled = true\n");
    config.store.url = Some(store::PostgresUrl::parse(db.url()).expect("url"));
    TestServer::start_config(dir, config)
}

#[test]
fn a_node_on_postgres_keeps_what_a_second_node_then_serves() {
    let db = TempDb::new(Kind::Postgres);
    let one = node(&db);
    let (ua, ub) = (User::new("pga"), User::new("pgb"));
    ua.register(&one);
    ub.register(&one);
    let taken = post(
        &one,
        Via::Plain,
        "/im/register",
        &json!({"account": ua.account.to_uppercase(), "password": "another pw",
                "mail": "x@example.com", "name": "x"}),
    );
    assert_code(&taken, 504, "Account Already Exists");
    let mut a = Session::login(&one, Via::Plain, &ua);
    let mut b = Session::login(&one, Via::Plain, &ub);
    befriend(&one, &mut a, &mut b);
    let b_id = b.id.clone();
    drop(b);
    assert_code(&a.ws.recv(), 300, "Friend Offline");
    for (i, cid) in ["c1", "c2"].into_iter().enumerate() {
        a.ws.send_json(&json!({"id": "d", "toFriend": b_id, "payload": format!("m{i}"),
                               "cid": cid}));
        let v = a.ws.recv();
        assert_code(&v, 202, "Stored For Offline Friend");
        assert_eq!(v["seq"], i + 1);
    }

    // The second node shares nothing with the first but the database.
    let two = node(&db);
    let mut b = Session::login(&two, Via::Plain, &ub);
    let backlog: Vec<_> = (0..2).map(|_| b.ws.recv()).collect();
    assert_eq!(backlog.iter().map(|m| m["seq"].as_i64()).collect::<Vec<_>>(), [Some(1), Some(2)]);
    assert_eq!(backlog[1]["payload"], "m1");
    let page = get(&two, Via::Plain, &format!("/im/messages?{}&with={}", b.auth(), a.id));
    assert_code(&page, 200, "Success");
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(2));
    // The backlog's frames were written: their reports move b's delivered marks on
    // PostgreSQL (append_and_mark), so no later login gets them again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !db.open().undelivered(&b_id, 10).expect("read").is_empty() {
        assert!(Instant::now() < deadline, "the written backlog's marks never moved");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(b);
    drop(one);
    drop(two);
    let store = db.open();
    assert!(store.integrity_check().expect("check"));
    assert!(store.user_by_account(&ua.account).expect("read").is_some());
}
