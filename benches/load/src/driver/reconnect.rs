//! Reconnect mode: sessions are dropped mid-run (the socket closed without a word, as a
//! client's network goes) and log in again at once. A session back keeps every promise
//! of docs/protocol.md §10: it resends each message not yet acknowledged with the same
//! `cid` (the server answers a message it already holds with the original reply and
//! stores nothing twice), and fetches through `/im/messages` (`after` its conversation's
//! known prefix) what was queued on the dropped socket. Messages due while a sender is
//! away wait for it, as in a client's outbox.

use std::time::Instant;

use serde_json::{json, Value};

use super::receive::payload_parts;
use super::{Client, Run};
use crate::provision::Http;

/// A message not yet acknowledged: its frame as first written (a resend must match
/// it byte for byte, or the server answers 529), and whether it went out at all.
#[derive(Clone, Debug)]
pub struct Unacked {
    pub frame: String,
    pub sent: bool,
}

/// Messages per `/im/messages` page (the most the server gives).
const PAGE: u64 = 200;

/// The open-loop schedule of drops: drop k is due at `start` + k / `--drops`.
pub struct Dropper {
    start: Instant,
    done: u64,
    /// The next user to drop, in turn.
    next: usize,
    /// Past the measured part: no more drops, while dead sessions still come back.
    stopped: bool,
}

impl Dropper {
    pub fn new(start: Instant) -> Dropper {
        Dropper { start, done: 0, next: 0, stopped: false }
    }

    pub fn stop(&mut self) {
        self.stopped = true;
    }
}

impl Run<'_> {
    /// Drops every session due by now, each the next logged-in one in turn.
    pub(super) fn drop_due(&mut self) {
        let Some(mut d) = self.dropper.take() else { return };
        let due = (d.start.elapsed().as_secs_f64() * self.o.drops) as u64;
        let n = self.o.sessions;
        while !d.stopped && d.done < due {
            d.done += 1;
            let victim = (0..n).map(|k| (d.next + k) % n).find(|i| {
                self.clients[*i].as_ref().is_some_and(|c| c.phase == super::Phase::Ready)
            });
            let Some(i) = victim else { break };
            d.next = (i + 1) % n;
            if let Some(c) = self.clients[i].take() {
                self.reopen(c);
            }
        }
        self.dropper = Some(d);
    }

    /// Closes `c`'s socket and opens a new session for its user, which logs in again.
    pub(super) fn reopen(&mut self, mut c: Client) {
        let _ = self.poll.registry().deregister(&mut c.link.sock);
        let (i, id) = (c.user, std::mem::take(&mut c.id));
        // Dropping the client closes its socket.
        drop(c);
        self.summary.reconnects += 1;
        match self.open(i, false) {
            Ok(()) => {
                if let Some(n) = self.clients[i].as_mut() {
                    n.relogin = true;
                    // Its peer keeps addressing it while it is away.
                    n.id = id;
                }
            }
            Err(e) => {
                eprintln!("session {i} could not connect again: {e}");
                self.clients[i] = None;
            }
        }
    }

    /// A session back: resend what was not acknowledged, then fetch what was missed.
    pub(super) fn after_relogin(&mut self, c: &mut Client, now_us: u64) {
        let Some(ws) = c.ws.as_mut() else { return };
        if let Some(unacked) = self.unacked.get_mut(c.user) {
            for u in unacked.values_mut() {
                if u.sent {
                    self.summary.resent += 1;
                }
                u.sent = true;
                if ws.send(&mut c.link, u.frame.clone()).is_err() {
                    c.phase = super::Phase::Dead;
                    return;
                }
            }
        }
        let _ = c.link.flush();
        if self.restart.is_none() {
            self.fetch_missed(c.user, &c.id.clone(), &c.token.clone(), now_us);
        }
        // After a restart every session comes back at once: a blocking fetch each on the
        // loop would hold up the others' logins. The login backlog (§10.3) brings what
        // waited for them, and `fetch_all_missed` at the end fills any gap left.
    }

    /// At the end of a run: every logged-in session that still misses messages of its
    /// peer fetches them (one still logging in has no token to fetch with).
    pub(super) fn fetch_all_missed(&mut self, now_us: u64) {
        for user in 0..self.o.sessions {
            let missing = self.ledgers.get(user / 2).is_some_and(|l| l.lost() > 0);
            let auth = self.clients[user]
                .as_ref()
                .filter(|c| c.phase == super::Phase::Ready)
                .map(|c| (c.id.clone(), c.token.clone()));
            if let (true, Some((id, token))) = (missing, auth) {
                self.fetch_missed(user, &id, &token, now_us);
            }
        }
    }

    /// Fetches `user`'s conversation past what it knows in full, and takes in each of
    /// its peer's messages it had not had.
    fn fetch_missed(&mut self, user: usize, id: &str, token: &str, now_us: u64) {
        let (side, pair) = (user & 1, user / 2);
        let peer_id = self.ids[user ^ 1].clone();
        if peer_id.is_empty() {
            return;
        }
        let Some(mut after) = self.ledgers.get(pair).map(|l| l.known_prefix(side)) else {
            return;
        };
        loop {
            let body =
                json!({"id": id, "token": token, "with": peer_id, "after": after, "limit": PAGE});
            let page = match self.post("/im/messages", &body) {
                Ok(v) if v["code"] == 200 => v,
                Ok(v) => return eprintln!("/im/messages for session {user}: {v}"),
                Err(e) => return eprintln!("/im/messages for session {user}: {e}"),
            };
            let messages = page["messages"].as_array().cloned().unwrap_or_default();
            for m in &messages {
                let Some(seq) = m["seq"].as_u64() else { continue };
                after = after.max(seq);
                // My own messages are acknowledged by their replies (a resend gets the
                // original's), not by a fetch.
                if m["from"] != peer_id.as_str() {
                    continue;
                }
                let fresh = self.ledgers.get_mut(pair).is_some_and(|l| l.fetch(side, seq));
                let intended = m["payload"].as_str().and_then(payload_parts).map(|p| p.2);
                if let (true, Some(intended)) = (fresh, intended) {
                    self.summary.fetched += 1;
                    self.received(pair, intended, now_us);
                }
            }
            if messages.is_empty() || after >= page["last_seq"].as_u64().unwrap_or(0) {
                return;
            }
        }
    }

    /// POSTs on the kept HTTP connection, connecting again once if it broke (the server
    /// closes idle keep-alive connections).
    fn post(&mut self, path: &str, body: &Value) -> std::io::Result<Value> {
        if let Some(http) = self.http.as_mut() {
            if let Ok(v) = http.post(path, body) {
                return Ok(v);
            }
        }
        let mut http = Http::connect(self.o.http)?;
        let v = http.post(path, body);
        self.http = Some(http);
        v
    }
}
