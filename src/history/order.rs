//! Each session's place in each of its conversations, kept by the history thread on a
//! node of several (docs/cluster.md, "Gaps").
//!
//! On one node every frame of a conversation leaves the one history thread in `seq`
//! order. With several nodes a frame may come late or never (pub/sub is at most once),
//! so before a frame with `seq` goes to a session the thread looks at the newest `seq`
//! that session already has in that conversation: nothing newer than the frame is let
//! through twice, and a gap below it is read from the store first.
//!
//! An unfriending deletes the conversation, and a new friendship numbers it from 1
//! again: a frame at or below the newest is then checked against the store (whose
//! counter is below the newest the session had) before it is taken for one already
//! sent.

use std::collections::HashMap;

use reactor::ConnId;

/// What to do with a frame of one conversation for one session.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The session's newest is this `seq`, at or above the frame's: it has it already
    /// (filled from the store, brought by its backlog), or the conversation started
    /// again.
    Had(i64),
    /// It follows what the session has (`seq` 1 of a conversation it knows nothing of).
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
            Some(n) if seq <= *n => Verdict::Had(*n),
            Some(n) if seq == *n + 1 => {
                *n = seq;
                Verdict::Next
            }
            Some(n) => Verdict::After(std::mem::replace(n, seq)),
            // Unknown: a conversation begun after the login reply (which gave every
            // friend's `last_seq`), so the session has none of it yet. Its first frame
            // may not be `seq` 1: the session's own send can overtake the peer's first
            // message from another node.
            None => {
                newest.insert(peer.to_string(), seq);
                if seq == 1 {
                    Verdict::Next
                } else {
                    Verdict::After(0)
                }
            }
        }
    }

    /// The conversation with `peer` started again: `conn` has it up to `seq` of the
    /// new one.
    pub fn restart(&mut self, conn: ConnId, peer: &str, seq: i64) {
        self.newest.entry(conn).or_default().insert(peer.to_string(), seq);
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
        assert_eq!(o.next(c, "p", 4), Verdict::Had(4));
        assert_eq!(o.next(c, "p", 2), Verdict::Had(4));
        assert_eq!(o.next(c, "p", 7), Verdict::After(4));
        assert_eq!(o.next(c, "p", 5), Verdict::Had(7), "filled with the gap");
        assert_eq!(o.next(c, "p", 8), Verdict::Next);
        // Nothing known of a conversation: it began after the login, so all below the
        // first frame is missing (the peer's seq 1 overtaken by my own seq 2 here).
        assert_eq!(o.next(c, "q", 2), Verdict::After(0));
        assert_eq!(o.next(c, "q", 1), Verdict::Had(2), "filled with the gap");
        assert_eq!(o.next(c, "q", 4), Verdict::After(2));
        assert_eq!(o.next(c, "r", 1), Verdict::Next);
        // A lower `has` never moves a session back.
        o.has(c, [("p".to_string(), 2)]);
        assert_eq!(o.next(c, "p", 9), Verdict::Next);
    }

    #[test]
    fn a_restarted_conversation_or_a_closed_connection_forgets_the_place() {
        let mut o = Order::default();
        let c = ConnId(1);
        o.has(c, [("p".to_string(), 10), ("q".to_string(), 5)]);
        assert_eq!(o.next(c, "p", 1), Verdict::Had(10));
        o.restart(c, "p", 1);
        assert_eq!(o.next(c, "p", 2), Verdict::Next, "a new friendship counts from 1");
        assert_eq!(o.next(c, "q", 5), Verdict::Had(5), "another conversation is kept");
        o.forget(c);
        assert_eq!(o.next(c, "q", 1), Verdict::Next);
    }
}
