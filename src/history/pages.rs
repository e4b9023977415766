//! The newest page of each conversation read through `/im/messages`, kept encoded, so
//! reading it again costs neither a store read nor encoding (docs/protocol.md §10.4).
//!
//! A page is one snapshot of the store: the conversation's newest messages as receive
//! frames joined with commas, its `first_seq` and `last_seq`, and both read marks. It
//! answers the newest `limit` messages, and `after`/`before` windows that lie wholly
//! inside it. Delivered marks are not part of any reply, so their moves leave it be.
//!
//! Why a page is never stale:
//! - Every change to what a page holds is followed, before anyone is told of it, by
//!   [`Pages::forget`] of its conversation: the writer's commit of new messages (before
//!   their acks and pushes), a read mark that moved (before the 200 and 307), a
//!   friendship ended (its conversation deleted, before the 200) and an erase.
//!   Retention deletes across conversations and forgets them all.
//! - A fill carries the ticket its conversation had when the store read began and is
//!   kept only if the ticket still stands: a forget between that read and the fill
//!   replaces the ticket (tickets are never reused, even after a slot is dropped), so
//!   a page read before a change is dropped, not kept after it.
//! - Hence a page held at any moment includes every change forgotten before that
//!   moment: a request made after an ack, a 200 or a push sees what it announced.
//! - Only SQLite is cached: its file is locked by this process (`unix-excl`), so every
//!   write passes the points above. On PostgreSQL other nodes write the same rows.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use proto::{Code, Reply};
use store::{ConversationState, HistoryMessage, Window};

/// Bytes of frames kept in all: past it, pages go (arbitrary ones first).
const MAX_BYTES: usize = 32 << 20;
/// Conversations with a page or a fill under way.
const MAX_SLOTS: usize = 16_384;
/// A page larger than this is answered but not kept: it would evict many small ones.
const MAX_PAGE_BYTES: usize = MAX_BYTES / 16;

/// The pages of conversations, by pair of ids (the smaller first).
pub(crate) struct Pages {
    /// Off on PostgreSQL (other nodes write the same conversations).
    on: bool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The last ticket given out.
    last_ticket: u64,
    slots: HashMap<(String, String), Slot>,
    /// Frame bytes of the pages held.
    bytes: usize,
}

struct Slot {
    /// Replaced by every forget of this conversation.
    ticket: u64,
    page: Option<Arc<Page>>,
}

/// A ticket for the fill of one conversation's page.
pub(crate) struct Ticket {
    key: (String, String),
    ticket: u64,
}

/// What the cache has for a request.
pub(crate) enum Lookup {
    /// The reply.
    Hit(String),
    /// Read the store; a fill with this ticket (if any) keeps the page.
    Miss(Option<Ticket>),
}

/// One read of a conversation, encoded.
#[derive(Debug)]
pub(crate) struct Page {
    /// The pair's smaller id: `read.0` is its read mark, `read.1` the other's.
    a: String,
    first_seq: i64,
    last_seq: i64,
    read: (i64, i64),
    /// The `seq` of each frame, ascending.
    seqs: Vec<i64>,
    /// Where each frame ends in `frames`.
    ends: Vec<usize>,
    /// The frames, joined with commas.
    frames: String,
    /// The frames are every message kept (none older).
    complete: bool,
}

impl Pages {
    /// `on`: the store is SQLite, written by this process alone.
    pub(crate) fn new(on: bool) -> Pages {
        Pages { on, inner: Mutex::new(Inner::default()) }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `me`'s reply for the window of the conversation with `with`, when a page holds
    /// it; else a ticket for the fill of a newest page.
    pub(crate) fn lookup(&self, me: &str, with: &str, window: Window, limit: usize) -> Lookup {
        if !self.on {
            return Lookup::Miss(None);
        }
        let key = key(me, with);
        let mut inner = self.inner();
        if let Some(slot) = inner.slots.get(&key) {
            let page = slot.page.as_ref();
            if let Some((page, range)) = page.and_then(|p| Some((p, p.covers(window, limit)?))) {
                let page = Arc::clone(page);
                drop(inner);
                return Lookup::Hit(page.reply(me, range));
            }
            if window != Window::Latest {
                return Lookup::Miss(None);
            }
            return Lookup::Miss(Some(Ticket { key, ticket: slot.ticket }));
        }
        if window != Window::Latest {
            return Lookup::Miss(None);
        }
        let ticket = inner.next_ticket();
        inner.slots.insert(key.clone(), Slot { ticket, page: None });
        inner.evict();
        Lookup::Miss(Some(Ticket { key, ticket }))
    }

    /// Keeps `page` unless its conversation was forgotten since `ticket` was given.
    pub(crate) fn fill(&self, ticket: Ticket, page: Arc<Page>) {
        let size = page.frames.len();
        if size > MAX_PAGE_BYTES {
            return;
        }
        let mut inner = self.inner();
        let Some(slot) = inner.slots.get_mut(&ticket.key) else { return };
        if slot.ticket != ticket.ticket {
            return;
        }
        let old = slot.page.replace(page).map_or(0, |p| p.frames.len());
        inner.bytes = inner.bytes - old + size;
        inner.evict();
    }

    /// The conversation of `x` and `y` changed (call after the store committed it,
    /// before anyone hears of the change).
    pub(crate) fn forget(&self, x: &str, y: &str) {
        if !self.on {
            return;
        }
        let mut inner = self.inner();
        // No slot, nothing to do: a fill under way holds one, so it is never missed.
        if inner.slots.is_empty() {
            return;
        }
        let ticket = inner.next_ticket();
        if let Some(slot) = inner.slots.get_mut(&key(x, y)) {
            slot.ticket = ticket;
            if let Some(page) = slot.page.take() {
                inner.bytes -= page.frames.len();
            }
        }
    }

    /// Every conversation of `user` changed (an erase).
    pub(crate) fn forget_user(&self, user: &str) {
        if !self.on {
            return;
        }
        let mut inner = self.inner();
        inner.slots.retain(|(a, b), _| a != user && b != user);
        inner.recount();
    }

    /// Every conversation may have changed (retention).
    pub(crate) fn forget_all(&self) {
        if !self.on {
            return;
        }
        let mut inner = self.inner();
        inner.slots.clear();
        inner.bytes = 0;
    }
}

impl Inner {
    fn next_ticket(&mut self) -> u64 {
        self.last_ticket += 1;
        self.last_ticket
    }

    /// Past either bound, drops arbitrary slots (the one just added may go too) down to
    /// seven eighths of both, in one pass: the next eviction is many fills away. A
    /// dropped slot's fill finds no slot and keeps nothing.
    fn evict(&mut self) {
        if self.slots.len() <= MAX_SLOTS && self.bytes <= MAX_BYTES {
            return;
        }
        let (mut slots, mut bytes) = (self.slots.len(), self.bytes);
        self.slots.retain(|_, slot| {
            if slots <= MAX_SLOTS / 8 * 7 && bytes <= MAX_BYTES / 8 * 7 {
                return true;
            }
            slots -= 1;
            bytes -= slot.page.as_ref().map_or(0, |p| p.frames.len());
            false
        });
        self.bytes = bytes;
    }

    fn recount(&mut self) {
        self.bytes =
            self.slots.values().filter_map(|s| s.page.as_ref()).map(|p| p.frames.len()).sum();
    }
}

fn key(x: &str, y: &str) -> (String, String) {
    if x <= y {
        (x.to_string(), y.to_string())
    } else {
        (y.to_string(), x.to_string())
    }
}

impl Page {
    /// Encodes a read of `me`'s conversation with `with`: its `state` and the messages
    /// `kept`, ascending; `complete` when no message older than them is kept.
    pub(crate) fn new(
        me: &str,
        with: &str,
        state: &ConversationState,
        kept: &[HistoryMessage],
        complete: bool,
    ) -> Page {
        let size: usize = kept
            .iter()
            .map(|m| m.dialogue_id.len() + m.from_id.len() + m.payload.len() + 100)
            .sum();
        let mut frames = String::with_capacity(size);
        let mut ends = Vec::with_capacity(kept.len());
        for m in kept {
            if !frames.is_empty() {
                frames.push(',');
            }
            proto::push_kept_receive_frame(
                &mut frames,
                &m.dialogue_id,
                &m.from_id,
                &m.payload,
                m.ts_ms,
                m.seq,
                m.cid.as_deref(),
            );
            ends.push(frames.len());
        }
        let (a, read) = if me <= with {
            (me, (state.read_seq, state.peer_read_seq))
        } else {
            (with, (state.peer_read_seq, state.read_seq))
        };
        Page {
            a: a.to_string(),
            first_seq: state.first_seq,
            last_seq: state.last_seq,
            read,
            seqs: kept.iter().map(|m| m.seq).collect(),
            ends,
            frames,
            complete,
        }
    }

    /// The frames of the window, as indices; `None` when messages outside the page
    /// could belong to it.
    fn covers(&self, window: Window, limit: usize) -> Option<Range<usize>> {
        let n = self.seqs.len();
        match window {
            Window::Latest => (self.complete || limit <= n).then(|| n.saturating_sub(limit)..n),
            Window::After(s) => {
                // Every message above s is here when the page starts at or below s + 1.
                let whole = self.complete || self.seqs.first().is_some_and(|&f| f - 1 <= s);
                let from = self.seqs.partition_point(|&q| q <= s);
                whole.then(|| from..n.min(from.saturating_add(limit)))
            }
            Window::Before(s) => {
                let to = self.seqs.partition_point(|&q| q < s);
                (self.complete || limit <= to).then(|| to.saturating_sub(limit)..to)
            }
        }
    }

    /// All its frames, as indices.
    pub(crate) fn all(&self) -> Range<usize> {
        0..self.seqs.len()
    }

    /// The frames `range` joined with commas.
    fn joined(&self, range: Range<usize>) -> &str {
        if range.is_empty() {
            return "";
        }
        // A frame's comma follows it: the range starts after the one before it.
        let start = if range.start == 0 { 0 } else { self.ends[range.start - 1] + 1 };
        &self.frames[start..self.ends[range.end - 1]]
    }

    /// `me`'s 200 with the frames `range`.
    pub(crate) fn reply(&self, me: &str, range: Range<usize>) -> String {
        let joined = self.joined(range);
        let (read_seq, peer_read_seq) =
            if me == self.a { self.read } else { (self.read.1, self.read.0) };
        Reply::with_capacity(Code::Success, joined.len() + 112)
            .raw_array("messages", joined)
            .int("first_seq", self.first_seq)
            .int("last_seq", self.last_seq)
            .int("read_seq", read_seq)
            .int("peer_read_seq", peer_read_seq)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: i64) -> HistoryMessage {
        let from = if seq % 2 == 0 { "a" } else { "b" };
        HistoryMessage {
            seq,
            from_id: from.into(),
            to_id: if from == "a" { "b" } else { "a" }.into(),
            dialogue_id: format!("d{seq}"),
            cid: (seq % 3 == 0).then(|| format!("c{seq}")),
            payload: format!("p\"{seq}"),
            ts_ms: seq * 10,
            code: 200,
        }
    }

    fn state(kept: &[HistoryMessage]) -> ConversationState {
        ConversationState {
            first_seq: kept.first().map_or(0, |m| m.seq),
            last_seq: kept.last().map_or(0, |m| m.seq),
            read_seq: 3,
            peer_read_seq: 7,
            unread: 0,
        }
    }

    /// What the store answers (`Store::messages`), from every message kept.
    fn store_answer(all: &[i64], window: Window, limit: usize) -> Vec<i64> {
        match window {
            Window::Latest => all[all.len().saturating_sub(limit)..].to_vec(),
            Window::After(s) => all.iter().copied().filter(|&q| q > s).take(limit).collect(),
            Window::Before(s) => {
                let below: Vec<i64> = all.iter().copied().filter(|&q| q < s).collect();
                below[below.len().saturating_sub(limit)..].to_vec()
            }
        }
    }

    fn seqs_of(reply: &str) -> Vec<i64> {
        let v: serde_json::Value = serde_json::from_str(reply).unwrap();
        v["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect()
    }

    #[test]
    fn a_page_answers_a_window_only_as_the_store_would() {
        // Gaps, as retention leaves when timestamps cross seq order.
        let all: Vec<i64> = vec![3, 4, 6, 7, 8, 10, 11];
        let messages: Vec<HistoryMessage> = all.iter().map(|&s| message(s)).collect();
        for held in 0..=all.len() {
            let kept = &messages[all.len() - held..];
            let page = Page::new("a", "b", &state(&messages), kept, held == all.len());
            let mut windows = vec![Window::Latest];
            windows.extend((0..=12).map(Window::After));
            windows.extend((0..=13).map(Window::Before));
            windows.push(Window::After(i64::MAX));
            windows.push(Window::Before(i64::MAX));
            for window in windows {
                for limit in 1..=9 {
                    let Some(range) = page.covers(window, limit) else {
                        assert!(
                            window != Window::Latest || limit > held,
                            "the newest {limit} of {held} held"
                        );
                        continue;
                    };
                    let reply = page.reply("a", range);
                    assert_eq!(
                        seqs_of(&reply),
                        store_answer(&all, window, limit),
                        "{held} held, {window:?}, limit {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_reply_is_the_frames_and_marks_of_its_reader() {
        let kept: Vec<HistoryMessage> = (1..=3).map(message).collect();
        let page = Page::new("b", "a", &state(&kept), &kept, true);
        let frames: Vec<String> = kept.iter().map(crate::history::stored_frame).collect();
        let reply = page.reply("b", page.all());
        assert_eq!(
            reply,
            format!(
                r#"{{"code":200,"message":"Success","ok":true,"messages":[{}],"first_seq":1,"last_seq":3,"read_seq":3,"peer_read_seq":7}}"#,
                frames.join(",")
            )
        );
        let theirs = page.reply("a", 1..2);
        assert!(theirs.contains(&format!(r#""messages":[{}],"#, frames[1])), "{theirs}");
        assert!(theirs.ends_with(r#""read_seq":7,"peer_read_seq":3}"#), "{theirs}");
        assert!(page.reply("a", 0..0).contains(r#""messages":[],"#));
    }

    fn filled(pages: &Pages, me: &str, with: &str, seqs: std::ops::RangeInclusive<i64>) {
        let Lookup::Miss(Some(ticket)) = pages.lookup(me, with, Window::Latest, 50) else {
            panic!("a miss with a ticket");
        };
        let kept: Vec<HistoryMessage> = seqs.map(message).collect();
        pages.fill(ticket, Arc::new(Page::new(me, with, &state(&kept), &kept, true)));
    }

    fn hit(pages: &Pages, me: &str, with: &str) -> Option<Vec<i64>> {
        match pages.lookup(me, with, Window::Latest, 50) {
            Lookup::Hit(reply) => Some(seqs_of(&reply)),
            Lookup::Miss(_) => None,
        }
    }

    #[test]
    fn a_page_is_kept_until_its_conversation_changes() {
        let pages = Pages::new(true);
        assert_eq!(hit(&pages, "a", "b"), None);
        filled(&pages, "a", "b", 1..=2);
        assert_eq!(hit(&pages, "a", "b"), Some(vec![1, 2]));
        assert_eq!(hit(&pages, "b", "a"), Some(vec![1, 2]), "one page for both sides");
        filled(&pages, "a", "c", 1..=1);
        pages.forget("b", "a");
        assert_eq!(hit(&pages, "a", "b"), None);
        assert_eq!(hit(&pages, "a", "c"), Some(vec![1]), "other conversations stay");
        filled(&pages, "a", "b", 1..=3);
        filled(&pages, "b", "c", 1..=1);
        pages.forget_user("a");
        assert_eq!((hit(&pages, "a", "b"), hit(&pages, "c", "a")), (None, None));
        assert_eq!(hit(&pages, "b", "c"), Some(vec![1]));
        pages.forget_all();
        assert_eq!(hit(&pages, "b", "c"), None);
    }

    #[test]
    fn a_page_read_before_a_change_is_not_kept() {
        let pages = Pages::new(true);
        // The change (and its forget) lands while the store is being read.
        let Lookup::Miss(Some(ticket)) = pages.lookup("a", "b", Window::Latest, 50) else {
            panic!("a ticket");
        };
        pages.forget("a", "b");
        let kept = vec![message(1)];
        pages.fill(ticket, Arc::new(Page::new("a", "b", &state(&kept), &kept, true)));
        assert_eq!(hit(&pages, "a", "b"), None);
        // The slot dropped and made again while the read ran: its old ticket is dead.
        let Lookup::Miss(Some(old)) = pages.lookup("a", "b", Window::Latest, 50) else {
            panic!("a ticket");
        };
        pages.forget_all();
        let Lookup::Miss(Some(new)) = pages.lookup("a", "b", Window::Latest, 50) else {
            panic!("a ticket");
        };
        pages.fill(old, Arc::new(Page::new("a", "b", &state(&kept), &kept, true)));
        assert_eq!(hit(&pages, "a", "b"), None);
        pages.fill(new, Arc::new(Page::new("a", "b", &state(&kept), &kept, true)));
        assert_eq!(hit(&pages, "a", "b"), Some(vec![1]));
    }

    #[test]
    fn only_the_newest_page_is_filled_and_nothing_when_off() {
        let pages = Pages::new(true);
        assert!(matches!(pages.lookup("a", "b", Window::After(3), 50), Lookup::Miss(None)));
        assert!(matches!(pages.lookup("a", "b", Window::Before(3), 50), Lookup::Miss(None)));
        let off = Pages::new(false);
        assert!(matches!(off.lookup("a", "b", Window::Latest, 50), Lookup::Miss(None)));
    }

    #[test]
    fn slots_and_bytes_stay_bounded() {
        let pages = Pages::new(true);
        for i in 0..MAX_SLOTS + 10 {
            filled(&pages, "a", &format!("u{i}"), 1..=1);
        }
        let inner = pages.inner();
        assert!((MAX_SLOTS / 8 * 7..=MAX_SLOTS).contains(&inner.slots.len()));
        let held: usize =
            inner.slots.values().filter_map(|s| s.page.as_ref()).map(|p| p.frames.len()).sum();
        assert_eq!(inner.bytes, held);
        drop(inner);
        // Large pages: the bytes bound; one over the page bound is answered, not kept.
        let big = |payload: usize| {
            let mut m = message(1);
            m.payload = "x".repeat(payload);
            vec![m]
        };
        for i in 0..2 * MAX_BYTES / MAX_PAGE_BYTES {
            let Lookup::Miss(Some(t)) = pages.lookup("b", &format!("u{i}"), Window::Latest, 50)
            else {
                panic!("a ticket");
            };
            let kept = big(MAX_PAGE_BYTES - 200);
            pages.fill(t, Arc::new(Page::new("b", "u", &state(&kept), &kept, true)));
            let inner = pages.inner();
            assert!(inner.bytes <= MAX_BYTES, "{} bytes held", inner.bytes);
        }
        assert!(pages.inner().bytes > MAX_BYTES / 2, "large pages are kept");
        let Lookup::Miss(Some(t)) = pages.lookup("b", "c", Window::Latest, 50) else {
            panic!("a ticket");
        };
        let kept = big(MAX_PAGE_BYTES);
        pages.fill(t, Arc::new(Page::new("b", "c", &state(&kept), &kept, true)));
        assert_eq!(hit(&pages, "b", "c"), None);
    }
}
