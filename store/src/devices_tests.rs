//! Tests of remembered logins: sliding expiry, the per-user cap, and each way a device
//! token is revoked (forget, password change, erase) on both backends (`sqlite::…`,
//! `postgres::…`), and SQLite's migration from version 5.

use rusqlite::Connection;

use crate::schema::MIGRATIONS;
use crate::testdb::{on_both_backends, Kind, TempDb};
use crate::*;

fn users(kind: Kind, ids: &[&str]) -> (TempDb, Store) {
    let db = TempDb::new(kind);
    let mut s = db.open();
    for id in ids {
        s.create_user(&NewUser {
            id: (*id).into(),
            account: (*id).into(),
            password_hash: "h".into(),
            name: (*id).into(),
            ..NewUser::default()
        })
        .unwrap();
    }
    (db, s)
}

const DAY: i64 = 86_400_000;

fn hash(n: u8) -> [u8; 32] {
    [n; 32]
}

fn a_device_logs_its_user_in_and_its_expiry_slides(kind: Kind) {
    let (_db, mut s) = users(kind, &["a"]);
    let id = s.add_device("a", &hash(1), 0, 10).unwrap();
    let (user, device) = s.device_login("a", &hash(1), 20 * DAY, 30 * DAY).unwrap().unwrap();
    assert_eq!((user.id.as_str(), device), ("a", id));
    // Used on day 20: still good on day 45, which is 45 days after it was made.
    assert!(s.device_login("a", &hash(1), 45 * DAY, 30 * DAY).unwrap().is_some());
    assert_eq!(s.device_login("a", &hash(2), 45 * DAY, 30 * DAY).unwrap(), None, "unknown");
}

fn an_expired_device_is_refused_and_deleted(kind: Kind) {
    let (_db, mut s) = users(kind, &["a"]);
    s.add_device("a", &hash(1), 0, 10).unwrap();
    assert_eq!(s.device_login("a", &hash(1), 30 * DAY + 1, 30 * DAY).unwrap(), None);
    assert_eq!(s.device_count("a").unwrap(), 0);
    // Deleted: a longer allowance later does not bring it back.
    assert_eq!(s.device_login("a", &hash(1), 30 * DAY + 2, 100 * DAY).unwrap(), None);
}

/// A device token offered with another account is refused and left as it was: its
/// expiry does not slide, so it still lapses 30 days after its owner's last use.
fn a_device_offered_with_another_account_is_refused_and_not_renewed(kind: Kind) {
    let (_db, mut s) = users(kind, &["a", "b"]);
    s.add_device("a", &hash(1), 0, 10).unwrap();
    assert_eq!(s.device_login("b", &hash(1), 20 * DAY, 30 * DAY).unwrap(), None);
    assert_eq!(s.count_for_tests("SELECT last_used_ms FROM devices"), 0, "not renewed");
    assert_eq!(s.device_login("B", &hash(1), 31 * DAY, 30 * DAY).unwrap(), None, "expired");
    assert_eq!(s.device_count("a").unwrap(), 0, "and deleted, as any expired token");
    // The owner's account matches ASCII case-insensitively.
    s.add_device("a", &hash(2), 0, 10).unwrap();
    assert!(s.device_login("A", &hash(2), 1, DAY).unwrap().is_some());
}

fn a_user_keeps_at_most_keep_devices_the_least_recently_used_go(kind: Kind) {
    let (_db, mut s) = users(kind, &["a", "b"]);
    s.add_device("a", &hash(1), 1, 2).unwrap();
    s.add_device("a", &hash(2), 2, 2).unwrap();
    s.add_device("b", &hash(9), 2, 2).unwrap();
    // Device 1 is used after device 2 was made: device 2 is now the least recent.
    assert!(s.device_login("a", &hash(1), 3, DAY).unwrap().is_some());
    s.add_device("a", &hash(3), 4, 2).unwrap();
    assert_eq!(s.device_count("a").unwrap(), 2);
    assert!(s.device_login("a", &hash(2), 5, DAY).unwrap().is_none());
    assert!(s.device_login("a", &hash(1), 5, DAY).unwrap().is_some());
    assert!(s.device_login("a", &hash(3), 5, DAY).unwrap().is_some());
    assert_eq!(s.device_count("b").unwrap(), 1, "another user's devices are not counted");
}

fn forget_revokes_one_device_of_its_own_user_only(kind: Kind) {
    let (_db, mut s) = users(kind, &["a", "b"]);
    let one = s.add_device("a", &hash(1), 0, 10).unwrap();
    s.add_device("a", &hash(2), 0, 10).unwrap();
    assert!(!s.forget_device("b", one).unwrap(), "not b's device");
    assert!(s.forget_device("a", one).unwrap());
    assert!(!s.forget_device("a", one).unwrap());
    assert!(s.device_login("a", &hash(1), 1, DAY).unwrap().is_none());
    assert!(s.device_login("a", &hash(2), 1, DAY).unwrap().is_some());
}

fn a_password_change_revokes_every_device_and_a_profile_change_none(kind: Kind) {
    let (_db, mut s) = users(kind, &["a", "b"]);
    s.add_device("a", &hash(1), 0, 10).unwrap();
    s.add_device("a", &hash(2), 0, 10).unwrap();
    s.add_device("b", &hash(3), 0, 10).unwrap();
    let rename = ProfileUpdate { name: Some("A".into()), ..ProfileUpdate::default() };
    s.update_profile("a", &rename).unwrap();
    assert_eq!(s.device_count("a").unwrap(), 2);
    let password = ProfileUpdate { password_hash: Some("h2".into()), ..ProfileUpdate::default() };
    s.update_profile("a", &password).unwrap();
    assert_eq!(s.device_count("a").unwrap(), 0);
    assert!(s.device_login("a", &hash(1), 1, DAY).unwrap().is_none());
    assert_eq!(s.device_count("b").unwrap(), 1);
}

fn erase_revokes_every_device_and_a_gone_user_gets_none(kind: Kind) {
    let (_db, mut s) = users(kind, &["a", "b"]);
    s.add_device("a", &hash(1), 0, 10).unwrap();
    s.delete_user("a").unwrap();
    assert_eq!(s.device_count("a").unwrap(), 0);
    assert!(s.device_login("a", &hash(1), 1, DAY).unwrap().is_none());
    assert!(matches!(s.add_device("a", &hash(2), 0, 10), Err(StoreError::UserGone)));
}

fn housekeeping_deletes_devices_unused_since_the_cutoff(kind: Kind) {
    let (_db, mut s) = users(kind, &["a"]);
    s.add_device("a", &hash(1), 10, 10).unwrap();
    s.add_device("a", &hash(2), 20, 10).unwrap();
    assert_eq!(s.expire_devices(15).unwrap(), 1);
    assert!(s.device_login("a", &hash(2), 21, DAY).unwrap().is_some());
}

#[test]
fn version_5_migrates_with_an_empty_device_table() {
    let db = TempDb::new(Kind::Sqlite);
    {
        let conn = Connection::open(db.path()).unwrap();
        for sql in &MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        conn.execute(
            "INSERT INTO users (id, account, account_key, password_hash) VALUES ('a', 'A', 'a', 'h')",
            [],
        )
        .unwrap();
    }
    let mut s = db.open();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.device_count("a").unwrap(), 0);
    s.add_device("a", &hash(1), 0, 10).unwrap();
    assert_eq!(s.user_by_id("a").unwrap().unwrap().account, "A");
}

on_both_backends!(
    a_device_logs_its_user_in_and_its_expiry_slides,
    an_expired_device_is_refused_and_deleted,
    a_device_offered_with_another_account_is_refused_and_not_renewed,
    a_user_keeps_at_most_keep_devices_the_least_recently_used_go,
    forget_revokes_one_device_of_its_own_user_only,
    a_password_change_revokes_every_device_and_a_profile_change_none,
    erase_revokes_every_device_and_a_gone_user_gets_none,
    housekeeping_deletes_devices_unused_since_the_cutoff,
);
