//! Operations that race each other over real sockets get the answers of one running
//! after the other (docs/protocol.md §5.2, §5.3, §3.3): crossing friend requests make one
//! friendship, and an erase racing a request or an accept answers 523, never 500.
//! Each race runs many rounds on connections opened beforehand, released together.

mod common;

use std::io::Write;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// One HTTP request, written when every racer is ready.
struct Racer {
    method: &'static str,
    target: String,
    body: String,
    /// Waited before writing, so the rounds try several interleavings.
    delay: Duration,
}

impl Racer {
    fn get(target: String, delay: Duration) -> Racer {
        Racer { method: "GET", target, body: String::new(), delay }
    }

    fn post(target: &str, body: &Value, delay: Duration) -> Racer {
        Racer { method: "POST", target: target.to_string(), body: body.to_string(), delay }
    }
}

/// Sends every racer's request at once, each on a connection of its own; the replies
/// in the racers' order.
#[track_caller]
fn race(s: &TestServer, racers: Vec<Racer>) -> Vec<Value> {
    let barrier = Arc::new(Barrier::new(racers.len()));
    let threads: Vec<_> = racers
        .into_iter()
        .map(|r| {
            let mut stream = connect(s, Via::Plain);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let req = format!(
                    "{} {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    r.method,
                    r.target,
                    r.body.len(),
                    r.body
                );
                barrier.wait();
                std::thread::sleep(r.delay);
                stream.write_all(req.as_bytes()).expect("write request");
                read_reply(&mut stream).json()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("racer")).collect()
}

/// Two logged-in users.
fn pair(s: &TestServer, tag: &str) -> (User, Session, User, Session) {
    let (ua, ub) = (User::new(&format!("{tag}a")), User::new(&format!("{tag}b")));
    ua.register(s);
    ub.register(s);
    let a = Session::login(s, Via::Plain, &ua);
    let b = Session::login(s, Via::Plain, &ub);
    (ua, a, ub, b)
}

/// A few microseconds of skew that changes with the round.
fn skew(round: usize) -> Duration {
    Duration::from_micros((round % 8) as u64 * 40)
}

#[test]
fn crossing_requests_always_make_one_friendship() {
    let s = TestServer::start();
    for round in 0..80 {
        let (_, a, _, b) = pair(&s, "cross");
        let replies = race(
            &s,
            vec![
                Racer::get(format!("/im/friends/request?{}&to={}", a.auth(), b.id), skew(round)),
                Racer::get(format!("/im/friends/request?{}&to={}", b.auth(), a.id), Duration::ZERO),
            ],
        );
        for r in &replies {
            assert_code(r, 200, "Success");
        }
        for (me, other) in [(&a, &b), (&b, &a)] {
            let list = get(&s, Via::Plain, &format!("/im/friends/list?{}", me.auth()));
            assert_eq!(list["friends"][0]["id"], other.id.as_str(), "round {round}: {list}");
            let pending = get(&s, Via::Plain, &format!("/im/friends/requests?{}", me.auth()));
            assert!(pending["requests"].is_null(), "round {round}: {pending}");
        }
    }
}

#[test]
fn accepting_while_the_requester_erases_answers_523_or_succeeds() {
    let s = TestServer::start();
    let mut outcomes = [0usize; 2];
    for round in 0..80 {
        let (ua, a, _, b) = pair(&s, "accera");
        let r = get(&s, Via::Plain, &format!("/im/friends/request?{}&to={}", a.auth(), b.id));
        assert_code(&r, 200, "Success");
        let erase = json!({"id": a.id, "token": a.token, "password": ua.password});
        let replies = race(
            &s,
            vec![
                Racer::post("/im/erase", &erase, Duration::ZERO),
                Racer::get(
                    format!("/im/friends/add?{}&from={}&name=A", b.auth(), a.id),
                    skew(round),
                ),
            ],
        );
        assert_code(&replies[0], 200, "Success");
        match replies[1]["code"].as_u64() {
            Some(200) => outcomes[0] += 1,
            Some(523) => {
                assert_code(&replies[1], 523, "Friend Not Exists");
                outcomes[1] += 1;
            }
            _ => panic!("round {round}: accept answered {}", replies[1]),
        }
        let list = get(&s, Via::Plain, &format!("/im/friends/list?{}", b.auth()));
        assert!(list["friends"].is_null(), "round {round}: the erase took the friendship");
    }
    eprintln!("accepted first {}, erased first {}", outcomes[0], outcomes[1]);
}

#[test]
fn requesting_while_the_target_erases_answers_523_or_succeeds() {
    let s = TestServer::start();
    for round in 0..80 {
        let (_, a, ub, b) = pair(&s, "reqera");
        let erase = json!({"id": b.id, "token": b.token, "password": ub.password});
        let replies = race(
            &s,
            vec![
                Racer::post("/im/erase", &erase, Duration::ZERO),
                Racer::get(
                    format!("/im/friends/request?{}&to={}&note=hi", a.auth(), b.id),
                    skew(round),
                ),
            ],
        );
        assert_code(&replies[0], 200, "Success");
        let code = replies[1]["code"].as_u64();
        assert!(matches!(code, Some(200 | 523)), "round {round}: request answered {}", replies[1]);
    }
}

#[test]
fn racing_profile_updates_and_erases_answer_documented_codes() {
    let s = TestServer::start();
    for round in 0..30 {
        let (_, a, ub, b) = pair(&s, "upera");
        let r = get(&s, Via::Plain, &format!("/im/friends/request?{}&to={}", a.auth(), b.id));
        assert_code(&r, 200, "Success");
        let erase = json!({"id": b.id, "token": b.token, "password": ub.password});
        let update = json!({"id": b.id, "token": b.token, "sign": format!("round {round}")});
        let replies = race(
            &s,
            vec![
                Racer::post("/im/erase", &erase, Duration::ZERO),
                Racer::post("/im/erase", &erase, skew(round)),
                Racer::post("/im/profile/update", &update, skew(round + 3)),
                Racer::get(format!("/im/friends/decline?{}&from={}", b.auth(), a.id), skew(round)),
            ],
        );
        let erased = replies[..2].iter().filter(|r| r["code"] == 200).count();
        assert_eq!(erased, 1, "round {round}: one erase wins: {replies:?}");
        for r in &replies[..3] {
            assert!(matches!(r["code"].as_u64(), Some(200 | 515)), "round {round}: {r}");
        }
        let declined = replies[3]["code"].as_u64();
        assert!(matches!(declined, Some(200 | 515 | 525)), "round {round}: {}", replies[3]);
    }
}

#[test]
fn pending_requests_are_capped_and_listed_newest_first() {
    let s = TestServer::start_with("[limits]\nlogin_requests = 2\npending_requests_per_user = 3");
    let target = User::new("capt");
    target.register(&s);
    let t = Session::login(&s, Via::Plain, &target);
    let senders: Vec<Session> = (0..4)
        .map(|i| {
            let u = User::new(&format!("caps{i}"));
            u.register(&s);
            Session::login(&s, Via::Plain, &u)
        })
        .collect();
    let t_id = t.id.clone();
    let ask = |from: &Session, note: &str| {
        get(&s, Via::Plain, &format!("/im/friends/request?{}&to={t_id}&note={note}", from.auth()))
    };
    for (i, from) in senders[..3].iter().enumerate() {
        assert_code(&ask(from, &format!("n{i}")), 200, "Success");
    }
    assert_code(&ask(&senders[3], "n3"), 524, "Too Many Requests");
    // A repeat only replaces the note, and becomes the newest.
    assert_code(&ask(&senders[0], "again"), 200, "Success");
    let notes = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|r| r["note"].as_str().unwrap_or("").to_string()).collect())
            .unwrap_or_default()
    };
    let all = get(&s, Via::Plain, &format!("/im/friends/requests?{}", t.auth()));
    assert_eq!(notes(&all["requests"]), ["again", "n2", "n1"]);
    drop(t);
    let t = Session::login(&s, Via::Plain, &target);
    assert_eq!(notes(&t.login["requests"]), ["again", "n2"], "the newest login_requests");
    // Declining one makes room.
    let r =
        get(&s, Via::Plain, &format!("/im/friends/decline?{}&from={}", t.auth(), senders[1].id));
    assert_code(&r, 200, "Success");
    assert_code(&ask(&senders[3], "n3"), 200, "Success");
}

#[test]
fn accepting_twice_and_declining_one_request_at_once_has_one_winner() {
    let s = TestServer::start();
    for round in 0..80 {
        let (_, a, _, b) = pair(&s, "accdec");
        let r = get(&s, Via::Plain, &format!("/im/friends/request?{}&to={}", a.auth(), b.id));
        assert_code(&r, 200, "Success");
        let accept = format!("/im/friends/add?{}&from={}&name=A", b.auth(), a.id);
        let replies = race(
            &s,
            vec![
                Racer::get(accept.clone(), Duration::ZERO),
                Racer::get(accept, skew(round)),
                Racer::get(
                    format!("/im/friends/decline?{}&from={}", b.auth(), a.id),
                    skew(round + 4),
                ),
            ],
        );
        let codes: Vec<_> = replies.iter().map(|r| r["code"].as_u64().unwrap_or(0)).collect();
        assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "round {round}: {codes:?}");
        let befriended = codes[..2].contains(&200);
        let expected: &[u64] = if befriended { &[200, 522, 525] } else { &[525, 525, 200] };
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        let mut want = expected.to_vec();
        want.sort_unstable();
        assert_eq!(sorted, want, "round {round}: {codes:?}");
        let list = get(&s, Via::Plain, &format!("/im/friends/list?{}", a.auth()));
        assert_eq!(list["friends"].is_array(), befriended, "round {round}: {list}");
    }
}
