//! What the sessions read while a run counts: messages (checked per sender by the
//! payload's own sequence with history off, per conversation by `seq` with it on),
//! replies to our send frames by code, and pushes by code.

use super::Run;
use crate::frames::Frame;
use crate::ledger::Push;
use crate::Mode;

/// The parts of a payload the generator wrote: sender, its sequence, intended send time.
pub(super) fn payload_parts(payload: &str) -> Option<(usize, u64, u64)> {
    let mut parts = payload.splitn(4, ':');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

impl Run<'_> {
    /// A frame to `user` while counting.
    pub(super) fn on_counted(&mut self, user: usize, text: &str, now_us: u64) {
        match Frame::read(text, self.o.mode == Mode::Echo) {
            // My own message, copied to my other sessions: not one my peer sent.
            Frame::Receive { copy: true, .. } => {}
            Frame::Receive { payload, seq: None, .. } => self.on_tracked(payload, now_us),
            Frame::Receive { payload, seq: Some(seq), .. } => {
                self.on_kept(user, payload, seq, now_us)
            }
            Frame::Reply { code, n, seq } => self.on_reply(user, code, n, seq),
            Frame::Push(code) => *self.summary.pushes.entry(code).or_insert(0) += 1,
            Frame::Other => {}
        }
    }

    /// A message without `seq` (history off, echo): checked against its sender's
    /// sequence in the payload.
    fn on_tracked(&mut self, payload: &str, now_us: u64) {
        let Some((sender, seq, intended)) = payload_parts(payload) else { return };
        let Some(track) = self.tracks.get_mut(sender) else { return };
        let (dup, misordered) = track.record(seq);
        self.summary.duplicated += u64::from(dup);
        self.summary.misordered += u64::from(misordered);
        if !dup {
            self.received(sender / 2, intended, now_us);
        }
    }

    /// A kept message (history on): checked in its conversation's ledger.
    fn on_kept(&mut self, user: usize, payload: &str, seq: u64, now_us: u64) {
        self.history = Some(true);
        let Some(ledger) = self.ledgers.get_mut(user / 2) else { return };
        match ledger.push(user & 1, seq) {
            Push::Old => {}
            Push::Fresh { misordered } => {
                self.summary.misordered += u64::from(misordered);
                if let Some((_, _, intended)) = payload_parts(payload) {
                    self.received(user / 2, intended, now_us);
                }
            }
            Push::Fetched { misordered } => self.summary.misordered += u64::from(misordered),
            Push::Duplicate => self.summary.duplicated += 1,
            // A number that cannot be placed is out of its place.
            Push::OutOfRange => self.summary.misordered += 1,
        }
    }

    /// A message of pair `pair` reached its receiver for the first time. With several
    /// nodes its latency also goes to the histogram of its kind: across nodes or not.
    pub(super) fn received(&mut self, pair: usize, intended_us: u64, now_us: u64) {
        self.summary.received += 1;
        let latency = now_us.saturating_sub(intended_us).max(1);
        let _ = self.summary.latency_us.record(latency);
        let nodes = self.o.ws.len();
        if nodes > 1 {
            let s = &mut self.summary;
            let kind = if self.o.placement.crosses(pair, nodes) {
                &mut s.cross_us
            } else {
                &mut s.same_us
            };
            let _ = kind.record(latency);
        }
    }

    /// The reply to `user`'s send frame `d<n>`. 200 and 202 accept the message (202:
    /// stored for an offline friend, history on).
    fn on_reply(&mut self, user: usize, code: u16, n: u64, seq: Option<u64>) {
        let accepted = code == 200 || code == 202;
        if self.o.mode.keeps_outbox() && accepted {
            let was_unacked = self.unacked.get_mut(user).and_then(|u| u.remove(&n)).is_some();
            if !was_unacked {
                // A second reply to one message: it was counted once.
                return;
            }
        }
        *self.summary.acks.entry(code).or_insert(0) += 1;
        if !accepted {
            return;
        }
        self.history = Some(seq.is_some());
        if let (Some(seq), Some(ledger)) = (seq, self.ledgers.get_mut(user / 2)) {
            if !ledger.ack(user & 1, seq) {
                self.summary.duplicated += 1;
            }
        }
    }
}
