//! Each session's place in each of its conversations, kept by the history thread on a
//! node of several (docs/cluster.md, "Gaps").
//!
//! On one node every frame of a conversation leaves the one history thread in `seq`
//! order. With several nodes a frame may come late or never (pub/sub is at most once),
//! so before a frame with `seq` goes to a session the thread looks at the newest `seq`
//! that session already has in that conversation: nothing newer than the frame is let
//! through twice, and a gap below it is read from the store first.

use std::collections::HashMap;

use reactor::ConnId;

/// What to do with a frame of one conversation for one session.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The session has it already (filled from the store, or brought by its backlog).
    Had,
    /// It follows what the session has, or nothing is known of the conversation yet.
    Next,
    /// The session's newest is this `seq`: what lies between is missing.
    After(i64),
}

/// Per session, per conversation (the other user), the newest `seq` queued to it.
#[derive(Default)]
pub struct Order {
    newest: HashMap<ConnId, HashMap<String, i64>>,
}

impl Order {
    /// Records that `conn` has the conversations with each peer up to its `seq` (the
    /// login reply's `last_seq`s, a backlog's newest).
    pub fn has(&mut self, conn: ConnId, seqs: impl IntoIterator<Item = (String, i64)>) {
        let newest = self.newest.entry(conn).or_default();
        for (peer, seq) in seqs {
            let n = newest.entry(peer).or_default();
            *n = (*n).max(seq);
        }
    }

    /// The verdict on a frame `seq` of the conversation with `peer` for `conn`; unless
    /// it was had, `conn` has it from now on.
    pub fn next(&mut self, conn: ConnId, peer: &str, seq: i64) -> Verdict {
        let newest = self.newest.entry(conn).or_default();
        match newest.get_mut(peer) {
            Some(n) if seq <= *n => Verdict::Had,
            Some(n) if seq == *n + 1 => {
                *n = seq;
                Verdict::Next
            }
            Some(n) => Verdict::After(std::mem::replace(n, seq)),
            None => {
                newest.insert(peer.to_string(), seq);
                Verdict::Next
            }
        }
    }

    /// The conversation of each two of `users` may have ended (and its numbers start
    /// again at 1 with a new friendship): what their sessions had of it is forgotten.
    pub fn forget_pairs(&mut self, conns: &[(String, ConnId)], users: &[String]) {
        for (user, conn) in conns {
            if let Some(newest) = self.newest.get_mut(conn) {
                newest.retain(|peer, _| peer == user || !users.contains(peer));
            }
        }
    }

    /// `conn` closed.
    pub fn forget(&mut self, conn: ConnId) {
        self.newest.remove(&conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_in_order_pass_older_ones_are_had_and_a_jump_names_the_gap() {
        let mut o = Order::default();
        let c = ConnId(1);
        o.has(c, [("p".to_string(), 3)]);
        assert_eq!(o.next(c, "p", 4), Verdict::Next);
        assert_eq!(o.next(c, "p", 4), Verdict::Had);
        assert_eq!(o.next(c, "p", 2), Verdict::Had);
        assert_eq!(o.next(c, "p", 7), Verdict::After(4));
        assert_eq!(o.next(c, "p", 5), Verdict::Had, "filled with the gap");
        assert_eq!(o.next(c, "p", 8), Verdict::Next);
        // Nothing known of a conversation: its first frame sets the place.
        assert_eq!(o.next(c, "q", 9), Verdict::Next);
        assert_eq!(o.next(c, "q", 11), Verdict::After(9));
        // A lower `has` never moves a session back.
        o.has(c, [("p".to_string(), 2)]);
        assert_eq!(o.next(c, "p", 9), Verdict::Next);
    }

    #[test]
    fn an_ended_friendship_or_a_closed_connection_forgets_the_place() {
        let mut o = Order::default();
        let (c, d) = (ConnId(1), ConnId(2));
        o.has(c, [("p".to_string(), 10), ("q".to_string(), 5)]);
        o.has(d, [("u".to_string(), 10)]);
        o.forget_pairs(&[("u".to_string(), c), ("p".to_string(), d)], &["u".into(), "p".into()]);
        assert_eq!(o.next(c, "p", 1), Verdict::Next, "a new friendship counts from 1");
        assert_eq!(o.next(c, "q", 5), Verdict::Had, "another conversation is kept");
        assert_eq!(o.next(d, "u", 1), Verdict::Next);
        o.forget(c);
        assert_eq!(o.next(c, "q", 1), Verdict::Next);
    }
}
