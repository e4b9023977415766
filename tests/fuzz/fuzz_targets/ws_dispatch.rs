//! WebSocket frames after an upgrade into the daemon's dispatcher: the real `App` (a
//! temporary SQLite store, cheap argon2) with four registered users — alice, bob,
//! carol, dave; alice–bob, alice–carol and bob–carol are friends; bob stays logged in
//! on a connection of his own — driven through `Handler::opened`, `message` and
//! `closed` as the reactor's workers would.
//!
//! Input: lines, one frame each (at most 32). A first line starting with `?` is the
//! login query string of the upgrade. A line starting with byte 1 is on a second
//! connection; then byte 2 makes it a binary frame (invalid UTF-8 is binary too).
//! `$A`, `$B`, `$C`, `$D` become the users' ids. Passwords: `alice-pw`, `carol-pw`,
//! `dave-pw` (bob's is random).
//!
//! Checked: no panic; every text the app sends is a JSON object; one with a `code`
//! carries a code of docs/protocol.md §2 with its exact message and `ok`; every frame (and a
//! URL login) gets exactly one reply, pushes aside; a deferred job always finishes; a
//! receive frame (live or stored) reaches only a logged-in friend of its sender; bob is
//! never closed or answered; once every connection has closed, only bob's session is live.
//! The login backlog is sent by the history thread after the login's job, so a slice may
//! reach a connection an earlier input closed: only receive frames and pushes may.
#![no_main]

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use imd::{App, Config};
use libfuzzer_sys::fuzz_target;
use proto::Code;
use reactor::internals::{DetachedRemote, Sent};
use reactor::{CloseReason, ConnId, Flow, Handler, Listener, Request, Upgrade, WsMessage};
use serde_json::Value;

const MAX_FRAMES: usize = 32;
/// A deferred job (a login on the password pool) that takes longer is a finding.
const DEFERRED_LIMIT: Duration = Duration::from_secs(20);

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;
const ACCOUNTS: [&str; 4] = ["alice", "bob", "carol", "dave"];
/// Friendships by index into `ACCOUNTS`.
const FRIENDS: [(usize, usize); 3] = [(ALICE, BOB), (ALICE, CAROL), (BOB, CAROL)];

struct World {
    app: Arc<App>,
    remote: DetachedRemote,
    ids: [String; 4],
    bob: ConnId,
    next_conn: AtomicU64,
}

impl World {
    fn conn(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Relaxed))
    }

    fn are_friends(&self, a: &str, b: &str) -> bool {
        let index = |id: &str| self.ids.iter().position(|i| i == id);
        match (index(a), index(b)) {
            (Some(a), Some(b)) => {
                FRIENDS.iter().any(|&(x, y)| (x, y) == (a, b) || (y, x) == (a, b))
            }
            _ => false,
        }
    }
}

fn request(method: &str, target: &str, body: &str) -> Request {
    Request {
        method: method.to_string(),
        target: target.to_string(),
        headers: vec![("Host".to_string(), b"localhost".to_vec())],
        body: body.as_bytes().to_vec(),
        peer: SocketAddr::from(([127, 0, 0, 1], 40_000)),
        listener: Listener::Plain,
    }
}

/// The JSON body of an API call during setup, which must succeed.
fn call(world_app: &App, remote: &DetachedRemote, method: &str, target: &str, body: &str) -> Value {
    let resp = world_app.request(request(method, target, body), remote.remote());
    let v: Value = serde_json::from_slice(&resp.body).expect("JSON reply");
    assert_eq!(v["code"], 200, "{target}: {v}");
    v
}

/// Opens a login WebSocket with `query` and waits for the login to finish; the texts
/// sent to it meanwhile.
fn open(app: &App, remote: &DetachedRemote, conn: ConnId, query: &str) -> Vec<String> {
    let req = request("GET", &format!("/im/login{query}"), "");
    assert!(matches!(app.upgrade(&req, conn, remote.remote()), Upgrade::Accept));
    let flow = app.opened(conn, req, remote.remote());
    let mut texts = Vec::new();
    if flow == Flow::Deferred {
        loop {
            match remote.next_within(DEFERRED_LIMIT).expect("login finishes") {
                Sent::Done(c) if c == conn => break,
                Sent::Text(c, t) if c == conn => texts.push(t),
                _ => {}
            }
        }
    }
    texts
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("imd-fuzz-ws-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www")).expect("temp dir");
        let text = format!(
            r#"
[server]
web_root = "{www}"
[store]
path = "{db}"
synchronous = "off"
[password]
argon2_m_kib = 8
argon2_t = 1
argon2_p = 1
threads = 1
[history]
enabled = true
[rate_limit]
register_per_min = 0
query_per_min = 0
login_fail_per_min = 0
send_per_s = 0
heartbeat_per_min = 0
"#,
            www = dir.join("www").display(),
            db = dir.join("imd.sqlite3").display()
        );
        let config = Config::parse(&text, &mut |w| panic!("config warning: {w}")).expect("config");
        let app = App::new(config).expect("app");
        let remote = DetachedRemote::new().expect("remote");
        let bob_password = format!("{:016x}", RandomState::new().hash_one(std::process::id()));
        let mut next = 1;
        let mut sessions = Vec::new();
        for account in ACCOUNTS {
            let password =
                if account == "bob" { bob_password.clone() } else { format!("{account}-pw") };
            let mail = format!("{account}@example.com");
            let body = serde_json::json!({
                "account": account, "password": password, "mail": mail, "name": account,
            });
            call(&app, &remote, "POST", "/im/register", &body.to_string());
            let conn = ConnId(next);
            next += 1;
            let query = format!("?account={account}&password={password}");
            let texts = open(&app, &remote, conn, &query);
            let login: Value =
                serde_json::from_str(texts.first().expect("login reply")).expect("JSON");
            assert_eq!(login["code"], 200, "{login}");
            let id = login["profile"]["id"].as_str().expect("id").to_string();
            let token = login["token"].as_str().expect("token").to_string();
            sessions.push((conn, id, token));
        }
        for (a, b) in FRIENDS {
            let ((_, a_id, a_token), (_, b_id, b_token)) = (&sessions[a], &sessions[b]);
            let target = format!("/im/friends/request?id={a_id}&token={a_token}&to={b_id}");
            call(&app, &remote, "GET", &target, "");
            let name = ACCOUNTS[a];
            let target =
                format!("/im/friends/add?id={b_id}&token={b_token}&from={a_id}&name={name}");
            call(&app, &remote, "GET", &target, "");
        }
        for (i, (conn, _, _)) in sessions.iter().enumerate() {
            if i != BOB {
                app.closed(*conn, CloseReason::Normal, remote.remote());
            }
        }
        let _ = remote.drain();
        let ids = sessions.iter().map(|(_, id, _)| id.clone()).collect::<Vec<_>>();
        World {
            app,
            remote,
            ids: ids.try_into().expect("four users"),
            bob: sessions[BOB].0,
            next_conn: AtomicU64::new(next),
        }
    })
}

/// A fuzzed login WebSocket.
struct Peer {
    conn: ConnId,
    opened: bool,
    /// The user its login reply named.
    user: Option<String>,
    /// The app asked to close it: its client sends nothing more.
    closed: bool,
    replies: usize,
}

impl Peer {
    fn new(conn: ConnId) -> Peer {
        Peer { conn, opened: false, user: None, closed: false, replies: 0 }
    }
}

const PUSHES: [Code; 11] = [
    Code::FriendOffline,
    Code::RefreshProfile,
    Code::FriendOnline,
    Code::FriendAdded,
    Code::FriendRemoved,
    Code::RequestDeclined,
    Code::MessageDelivered,
    Code::MessageRead,
    Code::FriendTyping,
    Code::LoginInOtherPlace,
    Code::ApplyForAFriend,
];

/// Takes what the app sent, checking each; waits for `until`'s deferred job to finish.
fn pump(w: &World, peers: &mut [Peer; 2], until: Option<ConnId>) {
    loop {
        let sent = match until {
            Some(_) => Some(w.remote.next_within(DEFERRED_LIMIT).expect("a deferred job finishes")),
            None => w.remote.try_next(),
        };
        let Some(sent) = sent else { return };
        match sent {
            Sent::Done(c) if Some(c) == until => return,
            Sent::Done(c) => panic!("done for {c:?}, which is not waiting"),
            Sent::Text(c, text) => check_text(w, peers, c, &text),
            Sent::Close(c, code, _) => {
                assert_ne!(c, w.bob, "bob's session was closed");
                assert!(matches!(code, 1000 | 1008), "close code {code}");
                let peer =
                    peers.iter_mut().find(|p| p.conn == c).expect("close for a fuzzed connection");
                peer.closed = true;
            }
            other => panic!("unexpected command {other:?}"),
        }
    }
}

fn check_text(w: &World, peers: &mut [Peer; 2], conn: ConnId, text: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {text}"));
    let recipient = if conn == w.bob {
        Some(w.ids[BOB].clone())
    } else if let Some(peer) = peers.iter().find(|p| p.conn == conn) {
        peer.user.clone()
    } else {
        // A connection of an earlier input, closed since (ids are never reused): the
        // history thread may still send it a slice of its login backlog, which a
        // reactor drops. Only a receive frame or a push may come so late.
        let code = obj.get("code").and_then(Value::as_u64);
        let push = code.and_then(|n| Code::from_u16(u16::try_from(n).ok()?));
        assert!(code.is_none() || push.is_some_and(|c| PUSHES.contains(&c)), "{text}");
        assert!(conn.0 < w.next_conn.load(Relaxed), "text to an unknown connection");
        return;
    };
    let Some(code) = obj.get("code") else {
        // A receive frame: only to a logged-in friend of a logged-in sender.
        let field =
            |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_else(|| panic!("{k} in {text}"));
        let (_, from, _) = (field("id"), field("from"), field("payload"));
        assert!(obj.get("ts").is_some_and(Value::is_i64), "ts in {text}");
        let to = recipient.unwrap_or_else(|| panic!("receive frame before login: {text}"));
        match obj.get("to") {
            // A copy of my own message sent from another of my sessions (§11.1): to a
            // friend of mine.
            Some(friend) => {
                let friend = friend.as_str().unwrap_or_else(|| panic!("to in {text}"));
                assert_eq!(from, to, "a copy of another user's message: {text}");
                assert!(w.are_friends(friend, &to), "{friend} is not a friend of {to}: {text}");
            }
            None => assert!(w.are_friends(from, &to), "{from} is not a friend of {to}: {text}"),
        }
        return;
    };
    let number = code
        .as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .unwrap_or_else(|| panic!("code in {text}"));
    let code = Code::from_u16(number).unwrap_or_else(|| panic!("undocumented code {number}"));
    assert_eq!(obj.get("message").and_then(Value::as_str), Some(code.message()), "{text}");
    assert_eq!(obj.get("ok").and_then(Value::as_bool), Some(code.ok()), "{text}");
    if PUSHES.contains(&code) {
        assert!(
            recipient.is_some() || code == Code::LoginInOtherPlace,
            "push before login: {text}"
        );
        return;
    }
    assert_ne!(conn, w.bob, "bob sent nothing, yet got a reply: {text}");
    let peer = peers.iter_mut().find(|p| p.conn == conn).expect("reply to a fuzzed connection");
    peer.replies += 1;
    if let Some(id) = obj.get("profile").and_then(|p| p.get("id")).and_then(Value::as_str) {
        assert_eq!(code, Code::Success);
        assert!(obj.get("token").is_some_and(Value::is_string), "login reply without token");
        peer.user = Some(id.to_string());
    }
}

/// Upgrades and opens the login WebSocket of `peers[p]` (a login when `query` names an
/// account), taking what the app sent.
fn open_peer(w: &World, peers: &mut [Peer; 2], p: usize, query: &str) {
    let (conn, remote) = (peers[p].conn, w.remote.remote());
    let req = request("GET", &format!("/im/login{query}"), "");
    assert!(matches!(w.app.upgrade(&req, conn, remote), Upgrade::Accept));
    peers[p].opened = true;
    match w.app.opened(conn, req, remote) {
        Flow::Done => pump(w, peers, None),
        Flow::Deferred => pump(w, peers, Some(conn)),
    }
}

/// `$A`…`$D` → the users' ids.
fn expand(w: &World, text: &str) -> String {
    let mut s = text.to_string();
    for (i, key) in ["$A", "$B", "$C", "$D"].iter().enumerate() {
        s = s.replace(key, &w.ids[i]);
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let remote = w.remote.remote();
    let mut peers = [Peer::new(w.conn()), Peer::new(w.conn())];
    let mut lines = data.split(|b| *b == b'\n').take(MAX_FRAMES).peekable();
    if let Some(query) = lines.next_if(|l| l.first() == Some(&b'?')) {
        let query = expand(w, &String::from_utf8_lossy(query));
        open_peer(w, &mut peers, 0, &query);
        let pairs = proto::parse_query(&query[1..]);
        let has_account = proto::query_value(&pairs, "account").is_some();
        assert_eq!(peers[0].replies, usize::from(has_account), "URL login answered once");
    }
    for line in lines {
        let (p, line) = match line.split_first() {
            Some((1, rest)) => (1, rest),
            _ => (0, line),
        };
        if peers[p].closed {
            continue;
        }
        let conn = peers[p].conn;
        if !peers[p].opened {
            open_peer(w, &mut peers, p, "");
            assert_eq!(peers[p].replies, 0);
        }
        let msg = match line.split_first() {
            Some((2, rest)) => WsMessage::Binary(rest.to_vec()),
            _ => match std::str::from_utf8(line) {
                Ok(text) => WsMessage::Text(expand(w, text)),
                Err(_) => WsMessage::Binary(line.to_vec()),
            },
        };
        let before = peers[p].replies;
        match w.app.message(conn, msg, remote) {
            Flow::Done => pump(w, &mut peers, None),
            Flow::Deferred => pump(w, &mut peers, Some(conn)),
        }
        assert_eq!(peers[p].replies, before + 1, "one reply per frame");
    }
    for peer in &peers {
        if peer.opened {
            w.app.closed(peer.conn, CloseReason::Normal, remote);
        }
    }
    pump(w, &mut peers, None);
    let metrics = w.app.request(request("GET", "/im/metrics", ""), remote);
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics.contains("\nimd_live_sessions 1\n"),
        "sessions leaked: only bob should be live"
    );
});
