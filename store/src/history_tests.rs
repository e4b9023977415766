//! Tests of conversations that are kept: numbering, cids, marks, the friendship's end
//! and retention on both backends (`sqlite::…`, `postgres::…`), a race of two
//! connections on one conversation, SQLite's migrations from versions 3 and 4, and its
//! checkpoints.

use rusqlite::Connection;

use crate::schema::MIGRATIONS;
use crate::testdb::{on_both_backends, Kind, TempDb};
use crate::*;

fn add_user(s: &mut Store, id: &str) {
    s.create_user(&NewUser {
        id: id.into(),
        account: id.into(),
        password_hash: "h".into(),
        name: id.into(),
        ..NewUser::default()
    })
    .unwrap();
}

fn friends(kind: Kind, ids: &[&str]) -> (TempDb, Store) {
    let db = TempDb::new(kind);
    let mut s = db.open();
    for id in ids {
        add_user(&mut s, id);
    }
    (db, s)
}

fn msg(from: &str, to: &str, cid: Option<&str>, payload: &str) -> NewHistoryMessage {
    NewHistoryMessage {
        from_id: from.into(),
        to_id: to.into(),
        dialogue_id: "d".into(),
        cid: cid.map(String::from),
        payload: payload.into(),
        ts_ms: 1000,
        live: false,
    }
}

fn seqs(r: &[Appended]) -> Vec<i64> {
    r.iter()
        .map(|a| match a {
            Appended::New { seq } => *seq,
            _ => -1,
        })
        .collect()
}

fn seq_is_dense_per_conversation_in_both_directions(kind: Kind) {
    let (_db, mut s) = friends(kind, &["a", "b", "c"]);
    s.make_friends("a", "B", "b", "A").unwrap();
    s.make_friends("a", "C", "c", "A").unwrap();
    let r = s
        .append_messages(&[
            msg("a", "b", None, "1"),
            msg("b", "a", None, "2"),
            msg("a", "c", None, "x"),
        ])
        .unwrap();
    assert_eq!(seqs(&r), vec![1, 2, 1]);
    let r = s.append_messages(&[msg("b", "a", None, "3")]).unwrap();
    assert_eq!(seqs(&r), vec![3]);
    let all = s.messages("b", "a", Window::Latest, 50).unwrap();
    assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(all[1].from_id, "b");
    let after = s.messages("a", "b", Window::After(1), 1).unwrap();
    assert_eq!(after.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2]);
    let before = s.messages("a", "b", Window::Before(3), 5).unwrap();
    assert_eq!(before.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2]);
}

fn a_cid_is_stored_once_per_sender(kind: Kind) {
    let (_db, mut s) = friends(kind, &["a", "b"]);
    s.make_friends("a", "B", "b", "A").unwrap();
    let r = s
        .append_messages(&[msg("a", "b", Some("k"), "1"), msg("a", "b", Some("k"), "other")])
        .unwrap();
    assert_eq!(r[0], Appended::New { seq: 1 });
    let Appended::Existing(m) = &r[1] else { panic!("{r:?}") };
    assert_eq!((m.seq, m.payload.as_str(), m.code), (1, "1", 202));
    let r =
        s.append_messages(&[msg("a", "b", Some("k"), "1"), msg("b", "a", Some("k"), "1")]).unwrap();
    let Appended::Existing(m) = &r[0] else { panic!("{r:?}") };
    assert_eq!(m.code, 202, "answered 202 when it was stored");
    assert_eq!(r[1], Appended::New { seq: 2 }, "cids are per sender");
}

fn a_live_message_is_answered_200_and_its_mark_moves_with_a_later_commit(kind: Kind) {
    let (_db, mut s) = friends(kind, &["a", "b"]);
    s.make_friends("a", "B", "b", "A").unwrap();
    let live = NewHistoryMessage { live: true, ..msg("a", "b", Some("k"), "1") };
    s.append_messages(&[live.clone(), msg("a", "b", None, "2")]).unwrap();
    let seqs =
        |s: &Store| s.undelivered("b", 10).unwrap().iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&s), vec![1, 2], "queued is not delivered: the frame is not written yet");
    let written = Delivered { user: "b".into(), peer: "a".into(), seq: 1 };
    let (r, moved) = s.append_and_mark(&[live], &[written.clone(), written.clone()]).unwrap();
    let Appended::Existing(m) = &r[0] else { panic!("{r:?}") };
    assert_eq!(m.code, 200);
    assert_eq!(moved, vec![written], "a mark moves once, and only up");
    assert_eq!(seqs(&s), vec![2]);
}

fn an_undelivered_slice_is_bounded_by_bytes_and_count_and_says_what_is_left(kind: Kind) {
    let (_db, mut s) = friends(kind, &["a", "b", "c"]);
    s.make_friends("a", "B", "b", "A").unwrap();
    s.make_friends("c", "B", "b", "C").unwrap();
    s.append_messages(&[
        msg("c", "b", None, "12345"),
        msg("a", "b", None, "1234"),
        msg("a", "b", None, "12"),
        msg("c", "b", None, "1"),
    ])
    .unwrap();
    let got = |(v, more): (Vec<HistoryMessage>, bool)| {
        (v.iter().map(|m| (m.from_id.clone(), m.seq)).collect::<Vec<_>>(), more)
    };
    let ab = |n| ("a".to_string(), n);
    let cb = |n| ("c".to_string(), n);
    let start = s.backlog_cursor("b").unwrap();
    let slice = |s: &Store, limit, bytes| s.undelivered_slice("b", &start, limit, bytes).unwrap();
    // Conversation by conversation (a-b before b-c), each in seq order.
    assert_eq!(got(slice(&s, 10, 100)), (vec![ab(1), ab(2), cb(1), cb(2)], false));
    assert_eq!(got(slice(&s, 10, 6)), (vec![ab(1), ab(2)], true));
    assert_eq!(got(slice(&s, 10, 1)), (vec![ab(1)], true), "at least one");
    assert_eq!(got(slice(&s, 3, 100)), (vec![ab(1), ab(2), cb(1)], true));
    assert_eq!(got(slice(&s, 4, 100)), (vec![ab(1), ab(2), cb(1), cb(2)], false));
    s.mark_delivered("b", &[("a".into(), 2), ("c".into(), 1)]).unwrap();
    let marked = s.backlog_cursor("b").unwrap();
    assert_eq!((marked.after("a"), marked.after("c"), marked.after("x")), (2, 1, 0));
    assert_eq!(got(s.undelivered_slice("b", &marked, 10, 1).unwrap()), (vec![cb(2)], false));
}

/// Two sessions of `b` are fed their backlogs at once (docs/protocol.md §10.3): the
/// second's slice is written and moves the marks past what the first has yet to send.
/// Each slice is read from its own feed's cursor, so the first still gets the rest,
/// and a cursor taken now starts above the marks.
fn two_backlogs_of_one_user_read_from_their_own_cursors(kind: Kind) {
    let (_db, mut s) = friends(kind, &["a", "b", "c"]);
    s.make_friends("a", "B", "b", "A").unwrap();
    s.make_friends("c", "B", "b", "C").unwrap();
    let batch: Vec<_> = (0..4)
        .map(|_| msg("a", "b", None, "p"))
        .chain((0..2).map(|_| msg("c", "b", None, "q")))
        .collect();
    s.append_messages(&batch).unwrap();
    let seqs =
        |v: &[HistoryMessage]| v.iter().map(|m| (m.from_id.clone(), m.seq)).collect::<Vec<_>>();
    let (mut first, mut second) = (s.backlog_cursor("b").unwrap(), s.backlog_cursor("b").unwrap());
    let (one, more) = s.undelivered_slice("b", &first, 2, 100).unwrap();
    assert!(more);
    one.iter().for_each(|m| first.sent(m));
    let (all, more) = s.undelivered_slice("b", &second, 10, 100).unwrap();
    assert!(!more);
    all.iter().for_each(|m| second.sent(m));
    assert_eq!(second.after("a"), 4);
    s.mark_delivered("b", &[("a".into(), 4), ("c".into(), 2)]).unwrap();
    let (rest, more) = s.undelivered_slice("b", &first, 10, 100).unwrap();
    assert!(!more);
    let want: Vec<_> = [("a", 3), ("a", 4), ("c", 1), ("c", 2)]
        .into_iter()
        .map(|(p, n)| (p.to_string(), n))
        .collect();
    assert_eq!(seqs(&rest), want, "the marks another feed moved skip nothing");
    rest.iter().for_each(|m| first.sent(m));
    let fresh = s.backlog_cursor("b").unwrap();
    assert_eq!(s.undelivered_slice("b", &fresh, 10, 100).unwrap(), (vec![], false));

    // The pair parts and befriends again: its new conversation starts at 1, below where
    // the first cursor stands, which then reads it from the start.
    s.remove_friendship("a", "b").unwrap();
    s.make_friends("a", "B", "b", "A").unwrap();
    s.append_messages(&[msg("a", "b", None, "again")]).unwrap();
    assert_eq!(s.undelivered_slice("b", &first, 10, 100).unwrap(), (vec![], false));
    first.restart("a");
    let (again, _) = s.undelivered_slice("b", &first, 10, 100).unwrap();
    assert_eq!(seqs(&again), vec![("a".to_string(), 1)]);
}

/// The cursor reaches SQL intact whatever a peer's id holds (SQLite reads it as JSON).
fn a_cursor_holds_any_peer_id(kind: Kind) {
    let odd = "q\"u\\o\u{1}te";
    let (_db, mut s) = friends(kind, &[odd, "b"]);
    s.make_friends(odd, "B", "b", "Q").unwrap();
    s.append_messages(&[msg(odd, "b", None, "1"), msg(odd, "b", None, "2")]).unwrap();
    s.mark_delivered("b", &[(odd.into(), 1)]).unwrap();
    let cursor = s.backlog_cursor("b").unwrap();
    assert_eq!(cursor.after(odd), 1);
    let (slice, more) = s.undelivered_slice("b", &cursor, 10, 100).unwrap();
    assert_eq!((slice.iter().map(|m| m.seq).collect::<Vec<_>>(), more), (vec![2], false));
}

fn marks_alone_commit_lazily_and_the_configured_level_comes_back(kind: Kind) {
    let (_db, mut s) = friends(kind, &["a", "b"]);
    s.make_friends("a", "B", "b", "A").unwrap();
    s.append_messages(&[msg("a", "b", None, "1")]).unwrap();
    // 2 is SQLite's FULL; on PostgreSQL, `synchronous_commit = on` (SET LOCAL lowers it
    // for the marks' transaction alone, so the session's own setting must be unchanged).
    let level = |s: &Store| match kind {
        Kind::Sqlite => s.count_for_tests("PRAGMA synchronous"),
        Kind::Postgres => s.count_for_tests(
            "SELECT CASE current_setting('synchronous_commit') WHEN 'on' THEN 2 ELSE 1 END::bigint",
        ),
    };
    let full = level(&s);
    assert_eq!(full, 2, "the store opens FULL by default");
    let mark = Delivered { user: "b".into(), peer: "a".into(), seq: 1 };
    let (_, moved) = s.append_and_mark(&[], std::slice::from_ref(&mark)).unwrap();
    assert_eq!(moved, vec![mark]);
    assert_eq!(level(&s), full);
    assert!(s.undelivered("b", 10).unwrap().is_empty());
}

fn not_friends_stores_nothing(kind: Kind) {
    let (_db, mut s) = friends(kind, &["a", "b"]);
    assert_eq!(s.append_messages(&[msg("a", "b", None, "1")]).unwrap(), vec![Appended::NotFriends]);
    assert!(s.messages("a", "b", Window::Latest, 50).unwrap().is_empty());
}

fn marks_move_up_only_and_read_is_capped(kind: Kind) {
    let (_db, mut s) = friends(kind, &["a", "b"]);
    s.make_friends("a", "B", "b", "A").unwrap();
    s.append_messages(&[
        msg("a", "b", None, "1"),
        msg("a", "b", None, "2"),
        msg("b", "a", None, "3"),
    ])
    .unwrap();
    assert_eq!(
        s.undelivered("b", 10).unwrap().iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(s.undelivered("b", 1).unwrap().len(), 1);
    assert_eq!(s.mark_delivered("b", &[("a".into(), 2)]).unwrap(), vec![("a".into(), 2)]);
    assert!(s.mark_delivered("b", &[("a".into(), 1)]).unwrap().is_empty(), "never down");
    assert!(s.undelivered("b", 10).unwrap().is_empty());
    assert_eq!(s.conversation("b", "a").unwrap().unread, 2);
    assert_eq!(s.mark_read("b", "a", 99).unwrap(), Some(3), "capped at the last seq");
    assert_eq!(s.mark_read("b", "a", 2).unwrap(), None);
    let st = s.conversation("a", "b").unwrap();
    assert_eq!((st.first_seq, st.last_seq, st.read_seq, st.peer_read_seq), (1, 3, 0, 3));
    assert_eq!(st.unread, 1);
}

fn a_delivered_mark_is_capped_and_never_outlives_its_conversation(kind: Kind) {
    let (_db, mut s) = friends(kind, &["a", "b"]);
    s.make_friends("a", "B", "b", "A").unwrap();
    s.append_messages(&[msg("a", "b", None, "1"), msg("a", "b", None, "2")]).unwrap();
    assert_eq!(s.mark_delivered("b", &[("a".into(), 1)]).unwrap(), vec![("a".into(), 1)]);
    assert_eq!(s.mark_delivered("b", &[("a".into(), 99)]).unwrap(), vec![("a".into(), 2)]);
    s.append_messages(&[msg("a", "b", None, "3")]).unwrap();
    // A login read this backlog; the friendship ended before its marks were written.
    let backlog = s.undelivered("b", 10).unwrap();
    assert_eq!(backlog.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3]);
    assert!(s.remove_friendship("a", "b").unwrap());
    assert!(s.mark_delivered("b", &[("a".into(), 3)]).unwrap().is_empty());
    // Friends again: the new conversation's first message is undelivered.
    s.make_friends("a", "B", "b", "A").unwrap();
    assert_eq!(
        s.append_messages(&[msg("a", "b", None, "new")]).unwrap(),
        vec![Appended::New { seq: 1 }]
    );
    assert_eq!(s.undelivered("b", 10).unwrap().iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1]);
}

fn a_written_report_s_mark_is_capped_and_never_outlives_its_conversation(kind: Kind) {
    let (_db, mut s) = friends(kind, &["a", "b"]);
    s.make_friends("a", "B", "b", "A").unwrap();
    s.append_messages(&[msg("a", "b", None, "1"), msg("a", "b", None, "2")]).unwrap();
    let mark = |seq| Delivered { user: "b".into(), peer: "a".into(), seq };
    let (_, moved) = s.append_and_mark(&[], &[mark(99)]).unwrap();
    assert_eq!(moved, vec![mark(2)]);
    // A frame was written; the friendship ended before its report reached the store.
    assert!(s.remove_friendship("a", "b").unwrap());
    assert!(s.append_and_mark(&[], &[mark(2)]).unwrap().1.is_empty());
    s.make_friends("a", "B", "b", "A").unwrap();
    s.append_messages(&[msg("a", "b", None, "new")]).unwrap();
    assert_eq!(s.undelivered("b", 10).unwrap().iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1]);
}

fn remove_and_erase_delete_the_conversation_and_refriending_starts_at_one(kind: Kind) {
    let (_db, mut s) = friends(kind, &["a", "b", "c"]);
    s.make_friends("a", "B", "b", "A").unwrap();
    s.make_friends("a", "C", "c", "A").unwrap();
    s.append_messages(&[msg("a", "b", Some("x"), "1"), msg("a", "c", None, "2")]).unwrap();
    s.mark_read("b", "a", 1).unwrap();
    assert!(s.remove_friendship("a", "b").unwrap());
    assert!(s.messages("a", "b", Window::Latest, 50).unwrap().is_empty());
    assert_eq!(s.conversation("b", "a").unwrap(), ConversationState::default());
    s.make_friends("a", "B", "b", "A").unwrap();
    assert_eq!(
        s.append_messages(&[msg("a", "b", Some("x"), "1")]).unwrap(),
        vec![Appended::New { seq: 1 }]
    );
    // "c" is the pair's `b`: its conversation goes too, and a's with "b" stays.
    s.delete_user("c").unwrap();
    let of_c = s.count_for_tests(
        "SELECT (SELECT count(*) FROM history WHERE 'c' IN (a, b))
              + (SELECT count(*) FROM conversations WHERE 'c' IN (a, b))
              + (SELECT count(*) FROM marks WHERE 'c' IN (user_id, peer_id))",
    );
    assert_eq!(of_c, 0);
    assert_eq!(s.conversation("a", "b").unwrap().last_seq, 1);
    s.delete_user("a").unwrap();
    let left = s.count_for_tests(
        "SELECT (SELECT count(*) FROM history) + (SELECT count(*) FROM conversations)
              + (SELECT count(*) FROM marks)",
    );
    assert_eq!(left, 0);
}

fn retention_keeps_the_counter(kind: Kind) {
    let (_db, mut s) = friends(kind, &["a", "b"]);
    s.make_friends("a", "B", "b", "A").unwrap();
    s.append_messages(&[msg("a", "b", None, "1"), msg("a", "b", None, "2")]).unwrap();
    assert_eq!(s.expire_messages(1001).unwrap(), 2);
    let st = s.conversation("a", "b").unwrap();
    assert_eq!((st.first_seq, st.last_seq), (0, 2));
    assert_eq!(
        s.append_messages(&[msg("a", "b", None, "3")]).unwrap(),
        vec![Appended::New { seq: 3 }]
    );
    assert_eq!(s.conversation("a", "b").unwrap().first_seq, 3);
}

/// Version 4 numbers friend requests per target; version 5 keeps conversations;
/// version 6 remembers devices; version 7 indexes history by receiver; version 8 lets
/// an erase find its rows by index.
#[test]
fn schema_5_keeps_conversations_after_the_request_seq_of_4() {
    assert_eq!(SCHEMA_VERSION, 8);
    assert!(MIGRATIONS[7].contains("CREATE TRIGGER conversations_of_erased"));
    assert!(MIGRATIONS[3].contains("ALTER TABLE requests ADD COLUMN seq"));
    assert!(MIGRATIONS[4].contains("CREATE TABLE conversations"));
    assert!(MIGRATIONS[5].contains("CREATE TABLE devices"));
    assert!(MIGRATIONS[6].contains("CREATE INDEX history_by_to"));
}

/// A database at `version` (3: before both; 4: with the request seq) holding offline
/// messages and friend requests, opened by this build.
fn migrated_from(version: usize) -> (TempDb, Store) {
    let db = TempDb::new(Kind::Sqlite);
    {
        let conn = Connection::open(db.path()).unwrap();
        for sql in &MIGRATIONS[..version] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", version as i64).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, account, account_key, password_hash) VALUES
                ('a','a','a','h'), ('b','b','b','h'), ('c','c','c','h'), ('d','d','d','h'),
                ('e','e','e','h');
             INSERT INTO friends (user_id, friend_id) VALUES ('a','b'),('b','a'),('c','b'),('b','c');
             INSERT INTO messages (to_id, from_id, dialogue_id, payload, ts_ms) VALUES
                ('b','a','d1','one',1), ('b','c','d2','two',2), ('b','a','d3','three',3);
             INSERT INTO requests (from_id, to_id, note, created_ms)
             VALUES ('d','a','first',10), ('c','a','second',20);",
        )
        .unwrap();
        if version >= 4 {
            conn.execute_batch(
                "UPDATE requests SET seq = 1 WHERE from_id = 'd';
                 UPDATE requests SET seq = 2 WHERE from_id = 'c';",
            )
            .unwrap();
        }
    }
    let s = db.open();
    (db, s)
}

#[test]
fn migration_from_3_numbers_requests_and_moves_offline_messages_into_history() {
    let (_db, mut s) = migrated_from(3);
    offline_messages_moved(&mut s);
    requests_in_order(&mut s);
}

#[test]
fn migration_from_4_moves_offline_messages_into_history() {
    let (_db, mut s) = migrated_from(4);
    offline_messages_moved(&mut s);
    requests_in_order(&mut s);
}

/// The requests to `a` newest first, and a new one above them.
fn requests_in_order(s: &mut Store) {
    let notes = |s: &Store| -> Vec<String> {
        s.requests_to("a", usize::MAX).unwrap().into_iter().map(|r| r.note).collect()
    };
    assert_eq!(notes(s), ["second", "first"]);
    s.request_friend("e", "a", "third", usize::MAX).unwrap();
    assert_eq!(notes(s), ["third", "second", "first"]);
    assert!(s.integrity_check().unwrap());
}

fn offline_messages_moved(s: &mut Store) {
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let got = s.undelivered("b", 10).unwrap();
    let view: Vec<_> =
        got.iter().map(|m| (m.from_id.as_str(), m.seq, m.payload.as_str())).collect();
    assert_eq!(view, vec![("a", 1, "one"), ("a", 2, "three"), ("c", 1, "two")]);
    assert_eq!(got[0].dialogue_id, "d1");
    assert!(s.pending_messages("b", 10).unwrap().is_empty(), "moved, not copied");
    assert_eq!(
        s.append_messages(&[msg("b", "a", None, "4")]).unwrap(),
        vec![Appended::New { seq: 3 }]
    );
}

on_both_backends!(
    seq_is_dense_per_conversation_in_both_directions,
    a_cid_is_stored_once_per_sender,
    a_live_message_is_answered_200_and_its_mark_moves_with_a_later_commit,
    an_undelivered_slice_is_bounded_by_bytes_and_count_and_says_what_is_left,
    two_backlogs_of_one_user_read_from_their_own_cursors,
    a_cursor_holds_any_peer_id,
    marks_alone_commit_lazily_and_the_configured_level_comes_back,
    not_friends_stores_nothing,
    marks_move_up_only_and_read_is_capped,
    a_delivered_mark_is_capped_and_never_outlives_its_conversation,
    a_written_report_s_mark_is_capped_and_never_outlives_its_conversation,
    remove_and_erase_delete_the_conversation_and_refriending_starts_at_one,
    retention_keeps_the_counter,
    racing_appends_keep_seq_dense_and_unique,
    crossing_batches_and_racing_resends_are_never_aborted,
    an_unfriending_racing_appends_and_marks_leaves_nothing_of_the_conversation,
);

/// Two connections (two nodes, on PostgreSQL) append to one conversation at once, in
/// both directions and in batches: every message gets a number, the numbers are
/// 1..=n with no gap and none twice, and each connection's own come in its order.
fn racing_appends_keep_seq_dense_and_unique(kind: Kind) {
    let (db, mut s) = friends(kind, &["a", "b"]);
    s.make_friends("a", "B", "b", "A").unwrap();
    let db = std::sync::Arc::new(db);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let (batches, per_batch) = (40, 3);
    let threads: Vec<_> = [("a", "b"), ("b", "a")]
        .into_iter()
        .map(|(from, to)| {
            let (db, barrier) = (db.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = db.open();
                barrier.wait();
                let mut got = Vec::new();
                for i in 0..batches {
                    let batch: Vec<_> = (0..per_batch)
                        .map(|j| msg(from, to, Some(&format!("{i}-{j}")), "p"))
                        .collect();
                    got.extend(seqs(&s.append_messages(&batch).unwrap()));
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        let got = t.join().unwrap();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order per connection: {got:?}");
        all.extend(got);
    }
    all.sort_unstable();
    let n = 2 * batches * per_batch;
    assert_eq!(all, (1..=n as i64).collect::<Vec<_>>());
    let st = s.conversation("a", "b").unwrap();
    assert_eq!((st.first_seq, st.last_seq), (1, n as i64));
    assert!(s.integrity_check().unwrap());
}

/// Commits checkpoint at `checkpoint_pages` (0: never), and `checkpoint` copies what the
/// WAL holds while the next commit may start it over.
#[test]
fn commits_checkpoint_at_the_configured_bound_and_checkpoint_copies_the_wal() {
    let frames_after = |pages: u32, commits: usize| {
        let db = TempDb::new(Kind::Sqlite);
        let opts = StoreOptions { checkpoint_pages: pages, ..StoreOptions::default() };
        let mut s = db.open_with(&opts).unwrap();
        add_user(&mut s, "a");
        add_user(&mut s, "b");
        s.make_friends("a", "B", "b", "A").unwrap();
        for i in 0..commits {
            s.append_messages(&[msg("a", "b", Some(&format!("c{i}")), &"x".repeat(200))]).unwrap();
        }
        // A passive checkpoint reports the WAL's frames; it copies them all (no reader).
        let frames = s.checkpoint().unwrap();
        s.append_messages(&[msg("b", "a", None, "after")]).unwrap();
        (frames, s.checkpoint().unwrap(), db)
    };
    let (never, after, _db) = frames_after(0, 400);
    assert!(never > 1000, "no commit checkpointed: {never} frames");
    assert!(after < 20, "the commit after a whole checkpoint starts the WAL over: {after}");
    let (bounded, _, _db) = frames_after(100, 400);
    assert!(bounded < 200, "commits checkpointed at 100 pages: {bounded} frames");
}

/// Two connections (two nodes) append batches to the same three conversations, one in
/// the order a-b, a-c, b-c and the other in the reverse order and direction, and both
/// send each of a's resends (one cid) at once. No write is aborted and run again
/// (PostgreSQL's serialization failures and deadlocks), every cid is stored once and
/// both senders of a resend are answered its one `seq`, and each conversation's
/// numbers are exactly 1..=n.
fn crossing_batches_and_racing_resends_are_never_aborted(kind: Kind) {
    let (db, mut s) = friends(kind, &["a", "b", "c"]);
    for (x, y) in [("a", "b"), ("a", "c"), ("b", "c")] {
        s.make_friends(x, y, y, x).unwrap();
    }
    let db = std::sync::Arc::new(db);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let batches = 40;
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (db, barrier) = (db.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = db.open();
                barrier.wait();
                let mut resends = Vec::new();
                for i in 0..batches {
                    let mut batch: Vec<_> = [("a", "b"), ("a", "c"), ("b", "c")]
                        .into_iter()
                        .map(|(x, y)| if t == 0 { (x, y) } else { (y, x) })
                        .map(|(x, y)| msg(x, y, Some(&format!("{t}-{i}-{x}{y}")), "p"))
                        .collect();
                    batch.push(msg("a", "b", Some(&format!("resend-{i}")), "r"));
                    if t == 1 {
                        batch.reverse();
                    }
                    let got = s.append_messages(&batch).unwrap();
                    let resend = if t == 1 { &got[0] } else { &got[3] };
                    resends.push(match resend {
                        Appended::New { seq } => *seq,
                        Appended::Existing(m) => m.seq,
                        other => panic!("resend {i}: {other:?}"),
                    });
                    assert!(got.iter().all(|a| !matches!(a, Appended::NotFriends)), "{got:?}");
                }
                (resends, s.retries_for_tests())
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results[0].0, results[1].0, "one seq answered to both senders of a resend");
    assert_eq!((results[0].1, results[1].1), (0, 0), "writes aborted and run again");
    let stored_cids = s.count_for_tests("SELECT count(DISTINCT cid) FROM history");
    assert_eq!(s.count_for_tests("SELECT count(*) FROM history"), stored_cids);
    assert_eq!(stored_cids, 2 * 3 * batches + batches);
    for (x, y, n) in [("a", "b", 3 * batches), ("a", "c", 2 * batches), ("b", "c", 2 * batches)] {
        let all = s.messages(x, y, Window::Latest, 1000).unwrap();
        let got: Vec<_> = all.iter().map(|m| m.seq).collect();
        assert_eq!(got, (1..=n).collect::<Vec<_>>(), "{x}-{y}");
    }
    assert!(s.integrity_check().unwrap());
}

/// A friendship ends while another connection appends to the conversation (a first
/// message, then more) and moves the receiver's delivered mark: whichever runs first,
/// nothing of the conversation outlives the friendship (no message, counter or mark;
/// the ending's triggers see what the appends committed).
fn an_unfriending_racing_appends_and_marks_leaves_nothing_of_the_conversation(kind: Kind) {
    let (db, mut s) = friends(kind, &["a", "b"]);
    let db = std::sync::Arc::new(db);
    for round in 0..20 {
        s.make_friends("a", "B", "b", "A").unwrap();
        if round % 2 == 1 {
            s.append_messages(&[msg("a", "b", None, "old")]).unwrap();
        }
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let writer = {
            let (db, barrier) = (db.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = db.open();
                barrier.wait();
                for i in 0..5 {
                    let mark = Delivered { user: "b".into(), peer: "a".into(), seq: i + 1 };
                    s.append_and_mark(&[msg("a", "b", None, "p")], &[mark]).unwrap();
                }
            })
        };
        let mut remover = db.open();
        barrier.wait();
        assert!(remover.remove_friendship("a", "b").unwrap());
        writer.join().unwrap();
        for table in ["history", "conversations", "marks"] {
            let n = s.count_for_tests(&format!("SELECT count(*) FROM {table}"));
            assert_eq!(n, 0, "round {round}: {table}");
        }
    }
}

/// A login's backlog is read through `history_by_to`, in its order, whatever the size
/// of the table: before schema 7 each login scanned all of history on the writer's
/// thread (200 logins over 100,000 kept messages held sends back for seconds).
#[test]
fn a_backlog_is_read_by_index_and_never_scans_history() {
    let db = TempDb::new(Kind::Sqlite);
    let s = db.open();
    let conn = Connection::open(db.path()).unwrap();
    for (sql, params) in [
        (crate::history::undelivered_sql(), vec!["u".to_string(), "10".to_string()]),
        (crate::history::undelivered_slice_sql(), vec!["u".to_string(), "{}".to_string()]),
    ] {
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan: Vec<String> = st
            .query_map(rusqlite::params_from_iter(params), |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|p| p.contains("USING INDEX history_by_to")), "{plan:?}");
        assert!(
            !plan.iter().any(|p| p.starts_with("SCAN h") || p.contains("TEMP B-TREE")),
            "{plan:?}"
        );
    }
    drop(s);
}

/// An erase reaches the account's rows by index: each statement of the trigger of
/// schema 8, planned alone, searches and never scans (the trigger of schema 5 read all
/// of history, conversations and marks with the write lock held).
#[test]
fn an_erase_never_scans_history_conversations_or_marks() {
    let db = TempDb::new(Kind::Sqlite);
    let s = db.open();
    let conn = Connection::open(db.path()).unwrap();
    let trigger = MIGRATIONS[7];
    let deletes: Vec<String> = trigger
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("DELETE FROM"))
        .map(|l| l.trim_end_matches(';').replace("old.id", "?1"))
        .collect();
    assert_eq!(deletes.len(), 6);
    for sql in deletes {
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan: Vec<String> =
            st.query_map(["u"], |r| r.get::<_, String>(3)).unwrap().map(Result::unwrap).collect();
        assert!(!plan.iter().any(|p| p.starts_with("SCAN")), "{sql}: {plan:?}");
    }
    drop(s);
}
