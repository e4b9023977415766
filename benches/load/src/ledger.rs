//! The conversation checker of a run with history on (docs/protocol.md §10.1): every
//! message accepted into a pair's conversation takes its next `seq`, 1, 2, 3 … in both
//! directions together, with no gap and no repeat. A pair's ledger holds the seqs each
//! side was acknowledged for its own messages (200 and 202 carry `seq`), was delivered on
//! its sessions (receive frames carry `seq`) and fetched (`/im/messages`); from them it
//! counts what was lost, delivered twice, and delivered out of order.
//!
//! Seqs up to the ledger's base belong to messages from before the run (accounts and
//! friendships outlive a run) and are left out.

/// The two users of a pair: side 0 is user 2k, side 1 is user 2k+1.
pub type Side = usize;

/// Farthest a seq may lie above the base: a number this far beyond a run's messages
/// can only be wrong, and must not grow a bit set without bound.
const MAX_SPAN: u64 = 1 << 24;

/// What a receive frame's `seq` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// From before the run: not counted.
    Old,
    /// First sight of the message: received.
    Fresh { misordered: bool },
    /// Already fetched through `/im/messages` (the fetch ran ahead of the push): neither
    /// new nor a duplicate; still checked for order.
    Fetched { misordered: bool },
    /// Delivered before, or the number of another message (one of mine).
    Duplicate,
    /// Beyond anything the run can have sent.
    OutOfRange,
}

/// A pair's conversation as its two users saw it.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    base: u64,
    acked: [Seqs; 2],
    pushed: [Seqs; 2],
    fetched: [Seqs; 2],
    /// The highest seq pushed to each side, for order.
    highest_push: [u64; 2],
    /// The highest seq seen in any way, relative to the base.
    top: u64,
}

impl Ledger {
    /// A ledger whose messages start after `base` (the conversation's `last_seq` at login).
    pub fn new(base: u64) -> Ledger {
        Ledger { base, ..Ledger::default() }
    }

    /// A ledger that starts where this one has seen up to: the next phase of a run
    /// checks its own messages only.
    pub fn rebased(&self) -> Ledger {
        Ledger::new(self.base + self.top)
    }

    /// The seq relative to the base, when it can belong to this run.
    fn place(&mut self, seq: u64) -> Option<u64> {
        let n = seq.checked_sub(self.base).filter(|n| *n > 0 && *n <= MAX_SPAN)?;
        self.top = self.top.max(n);
        Some(n)
    }

    /// `side` was acknowledged one of its messages as `seq`. False when the number is
    /// already another message's: a repeat, counted as a duplicate.
    pub fn ack(&mut self, side: Side, seq: u64) -> bool {
        let Some(n) = self.place(seq) else { return false };
        if self.acked[1 - side].contains(n) || self.pushed[side].contains(n) {
            return false;
        }
        self.acked[side].insert(n)
    }

    /// A receive frame with `seq` reached `side`.
    pub fn push(&mut self, side: Side, seq: u64) -> Push {
        if seq <= self.base {
            return Push::Old;
        }
        let Some(n) = self.place(seq) else { return Push::OutOfRange };
        if self.acked[side].contains(n) || !self.pushed[side].insert(n) {
            return Push::Duplicate;
        }
        let misordered = seq < self.highest_push[side];
        self.highest_push[side] = self.highest_push[side].max(seq);
        if self.fetched[side].contains(n) {
            Push::Fetched { misordered }
        } else {
            Push::Fresh { misordered }
        }
    }

    /// `side` fetched its peer's message `seq`; true when it had not had it before.
    pub fn fetch(&mut self, side: Side, seq: u64) -> bool {
        let Some(n) = self.place(seq) else { return false };
        !self.pushed[side].contains(n) && self.fetched[side].insert(n)
    }

    /// The highest seq up to which `side` knows every message, its own and its peer's:
    /// where a fetch of what it missed starts (`after`).
    pub fn known_prefix(&self, side: Side) -> u64 {
        let mut n = 0;
        while n < self.top {
            let next = n + 1;
            let known = self.acked[side].contains(next)
                || self.pushed[side].contains(next)
                || self.fetched[side].contains(next);
            if !known {
                break;
            }
            n = next;
        }
        self.base + n
    }

    /// Messages acknowledged to the peer of `side` that `side` has neither been
    /// delivered nor fetched.
    pub fn missing(&self, side: Side) -> u64 {
        self.acked[1 - side]
            .iter()
            .filter(|n| !self.pushed[side].contains(*n) && !self.fetched[side].contains(*n))
            .count() as u64
    }

    /// Seqs below the highest seen that nobody was acknowledged, delivered or fetched:
    /// a gap in the conversation.
    pub fn holes(&self) -> u64 {
        (1..=self.top)
            .filter(|n| {
                !(0..2).any(|s| {
                    self.acked[s].contains(*n)
                        || self.pushed[s].contains(*n)
                        || self.fetched[s].contains(*n)
                })
            })
            .count() as u64
    }

    /// Everything lost so far: what each side misses, and the gaps.
    pub fn lost(&self) -> u64 {
        self.missing(0) + self.missing(1) + self.holes()
    }
}

/// A set of small positive numbers, as bits.
#[derive(Clone, Debug, Default)]
struct Seqs {
    words: Vec<u64>,
}

impl Seqs {
    /// Adds `n`; false when it was there.
    fn insert(&mut self, n: u64) -> bool {
        let (word, bit) = ((n / 64) as usize, n % 64);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let was = self.words[word] & (1 << bit) != 0;
        self.words[word] |= 1 << bit;
        !was
    }

    fn contains(&self, n: u64) -> bool {
        self.words.get((n / 64) as usize).is_some_and(|w| w & (1 << (n % 64)) != 0)
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(i, w)| {
            (0..64).filter(move |b| w & (1 << b) != 0).map(move |b| i as u64 * 64 + b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Side 0 sends `mine`, side 1 sends `theirs`, each acknowledged, and each delivered
    /// to the other side.
    fn exchanged(base: u64, mine: &[u64], theirs: &[u64]) -> Ledger {
        let mut l = Ledger::new(base);
        for s in mine {
            assert!(l.ack(0, *s));
            assert!(matches!(l.push(1, *s), Push::Fresh { misordered: false }));
        }
        for s in theirs {
            assert!(l.ack(1, *s));
            assert!(matches!(l.push(0, *s), Push::Fresh { misordered: false }));
        }
        l
    }

    #[test]
    fn a_whole_conversation_loses_nothing() {
        let l = exchanged(0, &[1, 2, 4, 6], &[3, 5]);
        assert_eq!(l.lost(), 0);
        assert_eq!(l.known_prefix(0), 6);
        assert_eq!(l.known_prefix(1), 6);
    }

    #[test]
    fn a_delivery_gap_is_lost_until_fetched() {
        let mut l = Ledger::new(10);
        for s in [11, 12, 13, 14] {
            assert!(l.ack(0, s));
        }
        for s in [11, 12, 14] {
            assert!(matches!(l.push(1, s), Push::Fresh { misordered: false }));
        }
        assert_eq!((l.missing(1), l.holes(), l.lost()), (1, 0, 1));
        // The fetch starts at the gap, and fills it.
        assert_eq!(l.known_prefix(1), 12);
        assert!(l.fetch(1, 13));
        assert!(!l.fetch(1, 14), "14 was delivered already");
        assert_eq!(l.lost(), 0);
    }

    #[test]
    fn a_seq_nobody_saw_is_a_hole() {
        let mut l = exchanged(0, &[1, 2], &[]);
        assert!(l.ack(0, 4));
        assert!(matches!(l.push(1, 4), Push::Fresh { .. }));
        assert_eq!(l.holes(), 1);
        assert_eq!(l.lost(), 1);
    }

    #[test]
    fn a_second_delivery_is_a_duplicate_and_a_late_one_misordered() {
        let mut l = exchanged(0, &[1, 2, 3], &[]);
        assert_eq!(l.push(1, 2), Push::Duplicate);
        assert!(l.ack(0, 4) && l.ack(0, 5));
        assert_eq!(l.push(1, 5), Push::Fresh { misordered: false });
        assert_eq!(l.push(1, 4), Push::Fresh { misordered: true });
        // My own message's number delivered to me as my peer's, or acknowledged twice.
        assert_eq!(l.push(0, 1), Push::Duplicate);
        assert!(!l.ack(1, 3));
        assert!(!l.ack(0, 3));
    }

    #[test]
    fn a_push_after_a_fetch_is_not_a_duplicate() {
        let mut l = Ledger::new(0);
        assert!(l.ack(0, 1));
        assert!(l.fetch(1, 1));
        assert_eq!(l.push(1, 1), Push::Fetched { misordered: false });
        assert_eq!(l.push(1, 1), Push::Duplicate);
    }

    #[test]
    fn earlier_runs_and_absurd_numbers_are_kept_out() {
        let mut l = Ledger::new(100);
        assert_eq!(l.push(0, 100), Push::Old);
        assert_eq!(l.push(0, 100 + MAX_SPAN + 1), Push::OutOfRange);
        assert!(!l.ack(0, 50));
        assert_eq!(l.lost(), 0);
        let mut next = exchanged(100, &[101, 102], &[103]).rebased();
        assert_eq!(next.push(0, 103), Push::Old);
        assert!(next.ack(0, 104));
        assert_eq!(next.lost(), 1, "104 is not delivered yet");
        assert_eq!(next.push(1, 104), Push::Fresh { misordered: false });
        assert_eq!(next.lost(), 0);
        assert_eq!(next.known_prefix(0), 104);
    }
}
