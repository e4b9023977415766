//! Frames the event loop answers itself while every worker sleeps (the reactor's stand-in,
//! `Handler::message_now`): a live session's sends, heartbeats and typing, once its
//! friends are in memory. Logins, a first send (its friends come from the store) and
//! read marks (the store) always go to a worker. Plain and TLS, history off and on; the
//! replies themselves are checked by every other suite, which now runs on both paths.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn on_loop(s: &TestServer) -> u64 {
    metric(s, "imd_ws_frames_on_loop_total")
}

fn ask(ws: &mut Ws, frame: Value) -> Value {
    ws.send_json(&frame);
    ws.recv()
}

const SENDS: u64 = 20;

#[test]
fn the_loop_answers_what_needs_only_memory_and_leaves_the_rest_to_workers() {
    for history in [false, true] {
        let s = TestServer::start_with(if history { "[history]\nenabled = true\n" } else { "" });
        for via in [Via::Plain, Via::Tls] {
            let tag = format!("loop{}{}", u8::from(history), u8::from(via == Via::Tls));
            let (ua, ub) = (User::new(&format!("{tag}a")), User::new(&format!("{tag}b")));
            ua.register(&s);
            ub.register(&s);
            let before = on_loop(&s);
            let mut a = Session::login(&s, via, &ua);
            let mut b = Session::login(&s, via, &ub);
            assert_eq!(on_loop(&s), before, "a login frame is a worker's");
            befriend(&s, &mut a, &mut b);

            let send = |a: &mut Session, b: &mut Session, i: u64| {
                let v =
                    ask(&mut a.ws, json!({"toFriend": b.id, "payload": "p", "id": format!("{i}")}));
                assert_eq!(v["code"], 200, "{v}");
                assert_eq!(b.ws.recv()["id"], format!("{i}"));
                if history {
                    // The 306 that follows the push into b's socket.
                    assert_eq!(a.ws.recv()["code"], 306);
                }
            };
            let before = on_loop(&s);
            send(&mut a, &mut b, 0);
            assert_eq!(on_loop(&s), before, "a's friends were not in memory: a worker read them");
            for i in 1..=SENDS {
                send(&mut a, &mut b, i);
            }
            let ran = on_loop(&s) - before;
            // A worker still between its last reply and its sleep takes a frame; on an
            // idle machine the loop takes all of them.
            assert!((SENDS / 2..=SENDS).contains(&ran), "{ran} of {SENDS} sends on the loop");

            let before = on_loop(&s);
            for _ in 0..4 {
                assert_eq!(ask(&mut a.ws, json!({"type": "heartbeat"}))["code"], 200);
            }
            if history {
                let v = ask(&mut b.ws, json!({"type": "typing", "to": a.id}));
                assert_eq!(v["code"], 200);
                assert_eq!(a.ws.recv()["code"], 308);
                let reads = on_loop(&s);
                for seq in 1..=3 {
                    let v = ask(&mut b.ws, json!({"type": "read", "with": a.id, "seq": seq}));
                    assert_eq!(v["code"], 200, "{v}");
                    assert_eq!(a.ws.recv()["code"], 307);
                }
                assert_eq!(on_loop(&s), reads, "a read mark is written by a worker");
            }
            a.ws.expect_silence(Duration::from_millis(50));
            assert!(on_loop(&s) > before, "heartbeats and typing are the loop's too");
        }
    }
}
