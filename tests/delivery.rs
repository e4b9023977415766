//! docs/protocol.md §10.3's delivery guarantees, over real sockets, plain and TLS: a
//! delivered mark (and the sender's 306) moves only for frames written to the
//! receiver's socket; a login backlog larger than the output cap is paced by the
//! socket, so a slow reader is neither cut nor loses the rest when its session dies;
//! a send racing logins and closes reaches each session in order with no gap; a
//! session whose close has begun is no delivery target (202, then the next login); two
//! sessions of one user fed backlogs at once each get all of theirs; and a conversation
//! begun again while a backlog is fed reaches it from `seq` 1.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tungstenite::Message;

const ON: &str = "[history]\nenabled = true\n";

fn pair(s: &TestServer, via: Via, tag: &str) -> (Session, Session, User, User) {
    let (ua, ub) = (User::new(&format!("{tag}a")), User::new(&format!("{tag}b")));
    ua.register(s);
    ub.register(s);
    let mut a = Session::login(s, via, &ua);
    let mut b = Session::login(s, via, &ub);
    befriend(s, &mut a, &mut b);
    (a, b, ua, ub)
}

/// `from` sends `to`, a friend who is offline, `n` messages of 60 KB numbered in their
/// first four characters; each is stored (202).
fn send_stored(from: &mut Session, to: &str, n: i64) {
    let filler = "x".repeat(60_000);
    for i in 1..=n {
        let payload = format!("{i:04}{filler}");
        from.ws.send_json(&json!({"toFriend": to, "payload": payload, "id": i.to_string()}));
    }
    for _ in 1..=n {
        assert_code(&from.ws.recv(), 202, "Stored For Offline Friend");
    }
}

/// Reads every frame up to the server's close, after starting the close handshake
/// ourselves when `close` (else the server is closing). Returns the text frames.
fn drain_to_close(ws: &mut Ws, close: bool) -> Vec<Value> {
    if close {
        ws.ws.close(None).expect("close");
    }
    let mut got = Vec::new();
    loop {
        match ws.ws.read() {
            Ok(Message::Text(t)) => got.push(serde_json::from_str(t.as_str()).expect("json")),
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return got
            }
            Err(tungstenite::Error::Protocol(_)) if !close => return got,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// The highest 306 `seq` among what `ws` has waiting, reading until `quiet` passes
/// with nothing new.
fn newest_306(ws: &mut Ws, quiet: Duration) -> i64 {
    let mut seq = 0;
    while let Some(v) = ws.try_recv(quiet) {
        if v["code"] == 306 {
            seq = seq.max(v["seq"].as_i64().expect("seq"));
        }
    }
    seq
}

/// 400 messages of 60 KB (24 MB, six times the output cap) wait for a friend who logs
/// in and reads nothing for a second: the sender hears 306 only for what its socket
/// took, not for the whole backlog. The reader then takes half, in order (it was not
/// cut as a slow reader by the server's own burst), and its session dies; the next
/// login gets the rest, in order, from where the marks stood, and the sender hears
/// 306 for the last.
#[test]
fn a_backlog_over_the_output_cap_is_paced_by_the_socket_and_survives_a_dead_session() {
    const N: i64 = 400;
    let s = TestServer::start_with(ON);
    for via in [Via::Plain, Via::Tls] {
        let (mut a, b, _, ub) = pair(&s, via, "pace");
        let b_id = b.id.clone();
        drop(b);
        assert_code(&a.ws.recv(), 300, "Friend Offline");
        send_stored(&mut a, &b_id, N);

        let mut b = Session::login(&s, via, &ub);
        std::thread::sleep(Duration::from_secs(1));
        assert_code(&a.ws.recv(), 302, "Friend Online");
        let before_reading = newest_306(&mut a.ws, Duration::from_millis(300));
        assert!(
            before_reading < N / 2,
            "306 for seq {before_reading} while the reader has read nothing ({via:?})"
        );
        for i in 1..=N / 2 {
            let m = b.ws.recv();
            assert_eq!(m["seq"], i, "{via:?}");
            assert!(m["payload"].as_str().expect("payload").starts_with(&format!("{i:04}")));
        }
        // Its session dies with the rest of the backlog unread.
        drop(b);
        let mut b = Session::login(&s, via, &ub);
        // What the dead session's socket took unread (kernel buffers hold megabytes on
        // loopback) counts as delivered, so the rest resumes somewhere past what was
        // read, never at its end: the slices past the socket were never sent.
        let first = b.ws.recv()["seq"].as_i64().expect("seq");
        assert!((1..N).contains(&first), "the rest resumes at {first} ({via:?})");
        for i in first + 1..=N {
            assert_eq!(b.ws.recv()["seq"], i, "{via:?}");
        }
        b.ws.expect_silence(Duration::from_millis(300));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut delivered = 0;
        while delivered < N && Instant::now() < deadline {
            delivered = delivered.max(newest_306(&mut a.ws, Duration::from_millis(200)));
        }
        assert_eq!(delivered, N, "{via:?}");
    }
}

/// A sender sends without pause while its friend logs in and out, round after round,
/// on plain and TLS: closing itself, being logged off, and being replaced by its next
/// login. Every session reads all it is sent up to the server's close. Within each
/// session the `seq`s are consecutive (a message stored while a login starts never
/// comes after newer ones, or a login later); each session starts no later than just
/// after the last `seq` seen (nothing lost in a close); in the end every message came.
#[test]
fn sends_racing_logins_and_closes_reach_each_session_in_order_without_a_gap() {
    const ROUNDS: usize = 36;
    let s = TestServer::start_with(ON);
    let (mut a, b, _, ub) = pair(&s, Via::Plain, "race");
    let a_id = a.id.clone();
    let b_id = b.id.clone();
    drop(b);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicI64::new(0));
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let i = sent.load(Ordering::Relaxed) + 1;
                a.ws.send_json(&json!({"toFriend": b_id, "payload": format!("m{i}"), "id": "x"}));
                loop {
                    let v = a.ws.recv();
                    if v["id"] == "x" {
                        assert!(matches!(v["code"].as_u64(), Some(200 | 202)), "{v}");
                        assert_eq!(v["seq"], i);
                        break;
                    }
                }
                sent.store(i, Ordering::Relaxed);
            }
        })
    };
    let mut seen = 0;
    // Checks one session's frames against what came before; returns its last seq.
    let mut check = |frames: &[Value], round: usize| {
        let seqs: Vec<i64> = frames.iter().filter_map(|v| v["seq"].as_i64()).collect();
        if let Some(&first) = seqs.first() {
            assert!(first <= seen + 1, "round {round}: {first} after {seen}: a gap between logins");
            for w in seqs.windows(2) {
                assert_eq!(w[1], w[0] + 1, "round {round}: out of order or a gap in {seqs:?}");
            }
            seen = seen.max(*seqs.last().expect("a seq"));
        }
    };
    let mut next: Option<Session> = None;
    for round in 0..ROUNDS {
        let via = if round % 2 == 0 { Via::Plain } else { Via::Tls };
        let mut b = next.take().unwrap_or_else(|| Session::login(&s, via, &ub));
        let until = Instant::now() + Duration::from_millis(20 + (round as u64 * 7) % 40);
        let mut frames = Vec::new();
        while Instant::now() < until {
            if let Some(v) = b.ws.try_recv(Duration::from_millis(5)) {
                frames.push(v);
            }
        }
        match round % 3 {
            0 => frames.extend(drain_to_close(&mut b.ws, true)),
            1 => {
                let r = get(&s, Via::Plain, &format!("/im/logoff?{}", b.auth()));
                assert_code(&r, 200, "Success");
                frames.extend(drain_to_close(&mut b.ws, false));
            }
            _ => {
                // Replaced: the next round's session logs in while this one is live.
                next = Some(Session::login(&s, via, &ub));
                frames.extend(drain_to_close(&mut b.ws, false));
            }
        }
        check(&frames, round);
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().expect("sender");
    let total = sent.load(Ordering::Relaxed);
    assert!(total > ROUNDS as i64, "the sender kept sending ({total})");
    let mut b = next.take().unwrap_or_else(|| Session::login(&s, Via::Plain, &ub));
    let mut frames = Vec::new();
    while let Some(v) = b.ws.try_recv(Duration::from_millis(300)) {
        frames.push(v);
    }
    check(&frames, ROUNDS);
    assert_eq!(seen, total, "every message came");
    let page = get(&s, Via::Plain, &format!("/im/messages?{}&with={a_id}&limit=1", b.auth()));
    assert_eq!(page["last_seq"], total);
}

/// The receiver stops answering; the server closes it at the idle timeout and waits
/// out the close grace for its close frame. A send meanwhile is not pushed into a
/// socket that will never write it: it is stored (202), never shows on the closing
/// session, and comes at the next login.
#[test]
fn a_session_whose_close_has_begun_is_no_delivery_target() {
    let s = TestServer::start_with(&format!(
        "{ON}[websocket]\nping_interval_s = 1\nidle_timeout_s = 2\n"
    ));
    for via in [Via::Plain, Via::Tls] {
        let (mut a, b, _, ub) = pair(&s, via, "closing");
        drop(b);
        assert_code(&a.ws.recv(), 300, "Friend Offline");
        let mut b = Session::login(&s, via, &ub);
        let logged_in = Instant::now();
        assert_code(&a.ws.recv(), 302, "Friend Online");
        // The sender stays active; the receiver reads nothing: idle at 2 s, its close
        // handshake waits until 4 s.
        while logged_in.elapsed() < Duration::from_millis(3000) {
            a.ws.send_json(&json!({"type": "heartbeat"}));
            assert_code(&a.ws.recv(), 200, "Success");
            std::thread::sleep(Duration::from_millis(250));
        }
        a.ws.send_json(&json!({"toFriend": b.id, "payload": "late", "id": "l"}));
        let v = a.ws.recv();
        assert!(logged_in.elapsed() < Duration::from_secs(4), "sent within the close grace");
        assert_eq!(v["code"], 202, "a closing session took it ({via:?}): {v}");
        let frames = drain_to_close(&mut b.ws, false);
        assert!(frames.iter().all(|f| f["payload"] != "late"), "{frames:?}");
        assert_code(&a.ws.recv(), 300, "Friend Offline");
        let mut b = Session::login(&s, via, &ub);
        let m = b.ws.recv();
        assert_eq!((m["payload"].as_str(), m["seq"].as_i64()), (Some("late"), Some(1)));
        assert_eq!(a.ws.recv(), json!({"code":302,"message":"Friend Online","ok":true,"id":b.id}));
        assert_eq!(a.ws.recv()["code"], 306);
    }
}

/// Two sessions of one user log in to a backlog of 400 messages of 60 KB (24 MB, more
/// than loopback's socket buffers hold): the first reads nothing while the second reads
/// all it is sent, which moves the delivered marks to the end. Then the first reads,
/// and gets every message from the first, in order, none twice: its backlog is read
/// from its own cursor, not above the marks the other session moved (§10.3).
#[test]
fn two_sessions_fed_their_backlogs_at_once_each_get_every_message_in_order() {
    const N: i64 = 400;
    let s = TestServer::start_with(&format!("{ON}[session]\nmax_devices = 2\n"));
    let (mut a, b, _, ub) = pair(&s, Via::Plain, "twin");
    let b_id = b.id.clone();
    drop(b);
    assert_code(&a.ws.recv(), 300, "Friend Offline");
    send_stored(&mut a, &b_id, N);
    let mut first = Session::login(&s, Via::Plain, &ub);
    let mut second = Session::login(&s, Via::Plain, &ub);
    // Its backlog starts where the marks stood when it began: past what the first
    // session's socket had taken by then.
    let start = second.ws.recv()["seq"].as_i64().expect("seq");
    for i in start + 1..=N {
        assert_eq!(second.ws.recv()["seq"], i, "the second session, from {start}");
    }
    second.ws.expect_silence(Duration::from_millis(300));
    for i in 1..=N {
        let m = first.ws.recv();
        assert_eq!(m["seq"], i, "the first session");
        assert!(m["payload"].as_str().expect("payload").starts_with(&format!("{i:04}")));
    }
    first.ws.expect_silence(Duration::from_millis(300));
}

/// Two friends' messages wait for a user: three from one, 400 of 60 KB from the other,
/// whose conversation comes second, so the backlog sends the three, then stalls in the
/// long one while its session reads nothing. The first friendship ends and begins
/// again, and that friend sends one message: its new conversation's `seq` 1, below
/// where the backlog stood in the old one. Once read, the session has it, once, and
/// the long conversation whole, in order (§10.3, §10.5).
#[test]
fn a_conversation_begun_again_during_a_backlog_reaches_it_from_seq_1() {
    const N: i64 = 400;
    let s = TestServer::start_with(ON);
    let (ub, ux, uy) = (User::new("againb"), User::new("againx"), User::new("againy"));
    for u in [&ub, &ux, &uy] {
        u.register(&s);
    }
    let mut b = Session::login(&s, Via::Plain, &ub);
    let mut x = Session::login(&s, Via::Plain, &ux);
    let mut y = Session::login(&s, Via::Plain, &uy);
    befriend(&s, &mut x, &mut b);
    befriend(&s, &mut y, &mut b);
    let b_id = b.id.clone();
    drop(b);
    // Conversations go in the order of their pair's key: `a`'s first.
    let key = |u: &Session| {
        let (lo, hi) = if u.id < b_id { (&u.id, &b_id) } else { (&b_id, &u.id) };
        (lo.clone(), hi.clone())
    };
    let (mut a, mut c) = if key(&x) < key(&y) { (x, y) } else { (y, x) };
    assert_code(&a.ws.recv(), 300, "Friend Offline");
    assert_code(&c.ws.recv(), 300, "Friend Offline");
    for i in 1..=3 {
        a.ws.send_json(&json!({"toFriend": b_id, "payload": format!("a{i}"), "id": "a"}));
        assert_code(&a.ws.recv(), 202, "Stored For Offline Friend");
    }
    send_stored(&mut c, &b_id, N);
    let mut b = Session::login(&s, Via::Plain, &ub);
    assert_code(&a.ws.recv(), 302, "Friend Online");
    assert_eq!(
        a.ws.recv(),
        json!({"code":306,"message":"Message Delivered","ok":true,"id":b_id,"seq":3})
    );

    let r = get(&s, Via::Plain, &format!("/im/friends/remove?{}&to={b_id}", a.auth()));
    assert_code(&r, 200, "Success");
    let r = get(&s, Via::Plain, &format!("/im/friends/request?{}&to={b_id}&note=hi", a.auth()));
    assert_code(&r, 200, "Success");
    let r = get(&s, Via::Plain, &format!("/im/friends/add?{}&from={}&name=pal", b.auth(), a.id));
    assert_code(&r, 200, "Success");
    a.ws.send_json(&json!({"toFriend": b_id, "payload": "again", "id": "again"}));
    let ack = a.ws.recv();
    assert_code(&ack, 303, "Friend Added");
    let ack = a.ws.recv();
    assert_eq!((ack["code"].as_u64(), ack["seq"].as_i64()), (Some(200), Some(1)), "{ack}");

    let (mut from_a, mut from_c) = (Vec::new(), Vec::new());
    while let Some(v) = b.ws.try_recv(Duration::from_secs(2)) {
        let Some(payload) = v["payload"].as_str() else { continue };
        let seen = (payload[..payload.len().min(5)].to_string(), v["seq"].as_i64().expect("seq"));
        if v["from"] == a.id.as_str() {
            from_a.push(seen);
        } else {
            from_c.push(seen.1);
        }
    }
    let want: Vec<_> =
        [("a1", 1), ("a2", 2), ("a3", 3), ("again", 1)].map(|(p, n)| (p.to_string(), n)).into();
    assert_eq!(from_a, want, "the old conversation, then the new one's first message, once");
    assert_eq!(from_c, (1..=N).collect::<Vec<_>>());
}

/// A user's sessions that log in while a friend keeps sending (§11.1 with §10.3): a
/// backlog of 200 waits; then, while 300 more stream in, three sessions of the user
/// log in one after another, each fed its backlog while others move the shared
/// delivered marks, and the messages committed meanwhile follow each backlog. Every
/// session gets messages once, in order, with no gap, from where it joins up to the
/// last one; so does the sender's other session, through its copies (each backlog
/// reads from its own cursor, and a copy committed before its session's feed began
/// still follows it).
#[test]
fn sessions_logging_in_during_a_stream_each_see_it_whole_from_where_they_join() {
    const STORED: i64 = 200;
    const N: i64 = 500;
    let s = TestServer::start_with(&format!("{ON}[session]\nmax_devices = 5\n"));
    for via in [Via::Plain, Via::Tls] {
        let (mut a, b0, ua, ub) = pair(&s, via, &format!("join{}", via as u8));
        let (a_id, b_id) = (a.id.clone(), b0.id.clone());
        drop(b0);
        assert_code(&a.ws.recv(), 300, "Friend Offline");
        let send = move |a: &mut Session, i: i64, size: usize| {
            let payload = format!("{i:04}{}", "x".repeat(size));
            let cid = format!("c{i}");
            a.ws.send_json(&json!({"id": "d", "toFriend": b_id, "payload": payload, "cid": cid}));
        };
        for i in 1..=STORED {
            send(&mut a, i, 20_000);
            assert_code(&a.ws.recv(), 202, "Stored For Offline Friend");
        }
        let sender = std::thread::spawn(move || {
            let mut a = a;
            for i in STORED + 1..=N {
                send(&mut a, i, 100);
                if i % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            a
        });
        let mut sessions = Vec::new();
        for n in 0..4 {
            std::thread::sleep(Duration::from_millis(15));
            sessions.push(Session::login(&s, via, if n == 2 { &ua } else { &ub }));
        }
        let mut a = sender.join().expect("sender");
        let mut acked = STORED;
        while acked < N {
            let v = a.ws.try_recv(Duration::from_secs(5)).expect("an ack for every send");
            if v.get("seq").is_some() && v.get("payload").is_none() && v["code"] != 306 {
                acked += 1;
            }
        }
        for (n, mut b) in sessions.into_iter().enumerate() {
            let mut seqs = Vec::new();
            while let Some(v) = b.ws.try_recv(Duration::from_millis(500)) {
                let from_a = v["from"] == a_id.as_str() && v.get("to").is_none();
                let copy = v.get("to").is_some();
                if v.get("payload").is_some() && (from_a || copy) {
                    seqs.push(v["seq"].as_i64().expect("seq"));
                }
            }
            let first = *seqs.first().unwrap_or_else(|| panic!("session {n} got nothing"));
            let breaks: Vec<_> = seqs.windows(2).filter(|w| w[1] != w[0] + 1).collect();
            let what =
                format!("session {n}, {via:?}: {} from {first}, breaks {breaks:?}", seqs.len());
            assert!(breaks.is_empty(), "out of order, twice or a gap: {what}");
            assert_eq!(seqs.last(), Some(&N), "{what}");
        }
    }
}
