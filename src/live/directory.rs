//! Who can be found (docs/protocol.md §5.1), in memory: every user's name, account and
//! `found` entry, with an index of the 1-, 2- and 3-character pieces of each lowercased
//! name, so a search reads only the users that can match, in the order it answers in,
//! and stops at its limit.
//!
//! It is loaded from the store at start and changed only through [`Directory::write`],
//! which runs the store write and applies its change under one lock: changes land here
//! in the order they committed, and only after they committed, so a search never lists
//! a user the store does not hold.
//!
//! Changes are applied on a thread of the directory's own, so that everything it keeps
//! is allocated there. Built on a worker, a user's entry would sit in the worker's malloc
//! arena between the large buffers a password hash takes and gives back (1–19 MiB), and
//! the arena could not reuse them: measured, 1 MiB more RSS per registration.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;

use crossbeam_channel::{Receiver, Sender};

use proto::FoundEntry;
use store::{DirectoryRow, NewUser, UserRow};

/// Pictures up to this many bytes are kept in memory. A picture may be 256 KiB and every
/// user is listed here, so larger ones are read from the store for the results that
/// show them.
pub const INLINE_PICTURE_BYTES: usize = 1024;

/// What a search shows of one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The account (matched exactly, ASCII case-insensitively; second sort key).
    pub account: String,
    /// The `found` entry; its picture is empty when `picture_in_store`.
    pub found: FoundEntry,
    /// The picture is too large to keep here: read it from the store when shown.
    pub picture_in_store: bool,
}

impl Listing {
    /// A listing of `found`; a picture over [`INLINE_PICTURE_BYTES`] stays in the store.
    pub fn new(account: String, mut found: FoundEntry) -> Listing {
        let picture_in_store = found.picture.len() > INLINE_PICTURE_BYTES;
        if picture_in_store {
            found.picture = String::new();
        }
        Listing { account, found, picture_in_store }
    }
}

impl From<&NewUser> for Listing {
    fn from(u: &NewUser) -> Listing {
        Listing::new(
            u.account.clone(),
            FoundEntry {
                id: u.id.clone(),
                name: u.name.clone(),
                picture: u.picture.clone(),
                sex: u.sex.clone(),
                birthday: u.birthday.clone(),
                sign: u.sign.clone(),
            },
        )
    }
}

impl From<&UserRow> for Listing {
    fn from(u: &UserRow) -> Listing {
        Listing::new(u.account.clone(), found_entry(u))
    }
}

impl From<DirectoryRow> for Listing {
    fn from(r: DirectoryRow) -> Listing {
        let picture_in_store = r.picture.is_none();
        let found = FoundEntry {
            id: r.id,
            name: r.name,
            picture: r.picture.unwrap_or_default(),
            sex: r.sex,
            birthday: r.birthday,
            sign: r.sign,
        };
        let mut listing = Listing::new(r.account, found);
        listing.picture_in_store |= picture_in_store;
        listing
    }
}

/// A user row as a `found` entry.
pub fn found_entry(u: &UserRow) -> FoundEntry {
    FoundEntry {
        id: u.id.clone(),
        name: u.name.clone(),
        picture: u.picture.clone(),
        sex: u.sex.clone(),
        birthday: u.birthday.clone(),
        sign: u.sign.clone(),
    }
}

/// How a committed store write changes the directory.
#[derive(Debug)]
pub enum Change {
    /// A user registered.
    Added(Listing),
    /// A user's profile changed; ignored when the user is not listed (erased).
    Updated(Listing),
    /// The user with this id was erased.
    Removed(String),
}

/// The directory of users, shared by every worker.
pub struct Directory {
    index: Arc<RwLock<Index>>,
    /// To the directory's thread, which applies each change and then answers on the
    /// sender that came with it. Held across a store write and its change, so changes
    /// apply in commit order. The thread ends when this is dropped.
    changes: Mutex<Sender<(Change, Sender<()>)>>,
}

/// The users a search found, in order; [`Found::reply`] encodes them.
#[derive(Debug)]
pub struct Found(Vec<Arc<Entry>>);

impl Directory {
    /// A directory of `listings` (the store's users at start), with its thread.
    pub fn load(listings: impl IntoIterator<Item = Listing>) -> std::io::Result<Directory> {
        let mut index = Index::default();
        for l in listings {
            index.append(Arc::new(Entry::new(&l)));
        }
        for users in index.grams.values_mut() {
            users.sort_unstable();
            users.shrink_to_fit();
        }
        let index = Arc::new(RwLock::new(index));
        let (changes, queue) = crossbeam_channel::unbounded();
        let shared = index.clone();
        thread::Builder::new()
            .name("imd-directory".into())
            .spawn(move || apply(&shared, &queue))?;
        Ok(Directory { index, changes: Mutex::new(changes) })
    }

    /// Runs `write` (a store write) and applies the change it returns, only if it
    /// succeeded, before any later write's change; returns once the change shows.
    pub fn write<T, E>(&self, write: impl FnOnce() -> Result<(T, Change), E>) -> Result<T, E> {
        let changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let (out, change) = write()?;
        let (done, applied) = crossbeam_channel::bounded(1);
        if changes.send((change, done)).is_err() || applied.recv().is_err() {
            log::error!("the directory's thread is gone: search misses a change");
        }
        Ok(out)
    }

    /// Users whose name contains `name`, both lowercased (see [`search_key`]), or whose
    /// account equals `name` ASCII case-insensitively, except `searcher`; by name, then
    /// account (byte order, as SQLite's BINARY collation ordered them); at most `limit`.
    /// Callers refuse an empty `name` first (516); here it matches no name.
    pub fn search(&self, searcher: &str, name: &str, limit: usize) -> Found {
        let key = search_key(name);
        let account_key = name.to_ascii_lowercase();
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let mut hits: Vec<Arc<Entry>> = Vec::new();
        if let Some(candidates) = index.fewest_candidates(&key) {
            for Ranked(e) in candidates {
                if hits.len() >= limit {
                    break;
                }
                if &*e.id != searcher && e.name_key().contains(&key) {
                    hits.push(e.clone());
                }
            }
        }
        if let Some(ByAccount(e)) = index.by_account.get(account_key.as_str()) {
            if &*e.id != searcher && !e.name_key().contains(&key) {
                let at = hits.partition_point(|h| h.rank(e) == Ordering::Less);
                if at < limit {
                    hits.insert(at, e.clone());
                    hits.truncate(limit);
                }
            }
        }
        Found(hits)
    }

    /// How many users are listed.
    pub fn len(&self) -> usize {
        self.index.read().unwrap_or_else(|p| p.into_inner()).by_id.len()
    }
}

/// The directory's thread: applies changes in the order they come until the directory
/// is dropped. Entries are built here, from copies, so they live in this thread's arena.
fn apply(index: &RwLock<Index>, queue: &Receiver<(Change, Sender<()>)>) {
    let lock = || index.write().unwrap_or_else(|p| p.into_inner());
    for (change, done) in queue {
        match change {
            Change::Added(l) => {
                let entry = Arc::new(Entry::new(&l));
                let mut index = lock();
                index.remove(&entry.id);
                index.insert(entry);
            }
            Change::Updated(l) => {
                let entry = Arc::new(Entry::new(&l));
                let mut index = lock();
                if index.remove(&entry.id) {
                    index.insert(entry);
                }
            }
            Change::Removed(id) => {
                lock().remove(&id);
            }
        }
        // The writer waits for this; if it is gone there is no one to tell.
        let _ = done.send(());
    }
}

/// `found_reply` up to the first entry (docs/protocol.md §5.1).
const FOUND_HEAD: &str = r#"{"code":200,"message":"Success","ok":true,"found":["#;
/// `found_reply` after the last entry.
const FOUND_TAIL: &str = "]}";

impl Found {
    /// The ids found, in order.
    #[cfg(test)]
    fn ids(&self) -> Vec<&str> {
        self.0.iter().map(|e| &*e.id).collect()
    }

    /// The reply of §5.1, byte for byte what `proto::found_reply` writes. An entry whose
    /// picture is in the store is read with `from_store` (the current row by id; `None`
    /// when the user has just been erased, and then it is left out).
    pub fn reply<E>(
        self,
        mut from_store: impl FnMut(&str) -> Result<Option<FoundEntry>, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for e in &self.0 {
            let fetched;
            let json = match &e.json {
                Some(json) => &**json,
                None => match from_store(&e.id)? {
                    Some(found) => {
                        fetched = entry_json(&found);
                        &*fetched
                    }
                    None => continue,
                },
            };
            if out.is_empty() {
                out.reserve(FOUND_HEAD.len() + self.0.len() * (json.len() + 1) + 2);
                out.push_str(FOUND_HEAD);
            } else {
                out.push(',');
            }
            out.push_str(json);
        }
        if out.is_empty() {
            return Ok(proto::found_reply(&[]));
        }
        out.push_str(FOUND_TAIL);
        Ok(out)
    }
}

/// One entry's JSON object as `proto::found_reply` writes it inside its list; the test
/// `replies_are_proto_s_bytes` holds the head and tail this cuts off to the encoder.
fn entry_json(found: &FoundEntry) -> Box<str> {
    let one = proto::found_reply(std::slice::from_ref(found));
    let inner = one.strip_prefix(FOUND_HEAD).and_then(|s| s.strip_suffix(FOUND_TAIL));
    inner.unwrap_or_default().into()
}

/// What names are compared by: Rust's `to_lowercase`, then the few lowercase letters
/// that SQLite's FTS5 folds further (final sigma, long s, Greek symbol forms, micro)
/// mapped as it does, so search matches as the store's trigram index did.
fn search_key(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| match c {
            'µ' => 'μ',
            'ſ' => 's',
            '\u{345}' | '\u{1fbe}' => 'ι',
            'ς' => 'σ',
            'ϐ' => 'β',
            'ϑ' => 'θ',
            'ϕ' => 'φ',
            'ϖ' => 'π',
            'ϰ' => 'κ',
            'ϱ' => 'ρ',
            'ϵ' => 'ε',
            'ẛ' => 'ṡ',
            c => c,
        })
        .collect()
}

/// One listed user.
#[derive(Debug)]
struct Entry {
    id: Box<str>,
    name: Box<str>,
    account: Box<str>,
    /// `name` as [`search_key`] makes it, when that differs from `name`.
    name_key: Option<Box<str>>,
    /// `account` ASCII-lowercased, when that differs from `account`.
    account_key: Option<Box<str>>,
    /// This user's object in a `found` list; `None` when its picture is in the store.
    json: Option<Box<str>>,
}

impl Entry {
    /// Copies every string it keeps (see the module's note on arenas).
    fn new(l: &Listing) -> Entry {
        let name_key = search_key(&l.found.name);
        let account_key = l.account.to_ascii_lowercase();
        Entry {
            json: (!l.picture_in_store).then(|| entry_json(&l.found)),
            name_key: (name_key != l.found.name).then(|| name_key.as_str().into()),
            account_key: (account_key != l.account).then(|| account_key.as_str().into()),
            id: l.found.id.as_str().into(),
            name: l.found.name.as_str().into(),
            account: l.account.as_str().into(),
        }
    }

    fn name_key(&self) -> &str {
        self.name_key.as_deref().unwrap_or(&self.name)
    }

    fn account_key(&self) -> &str {
        self.account_key.as_deref().unwrap_or(&self.account)
    }

    /// The search order: name, then account (unique, so never a tie), then id.
    fn rank(&self, other: &Entry) -> Ordering {
        (&*self.name, &*self.account, &*self.id).cmp(&(&*other.name, &*other.account, &*other.id))
    }
}

/// An entry ordered as a search answers.
#[derive(Clone, Debug)]
struct Ranked(Arc<Entry>);

impl Ord for Ranked {
    fn cmp(&self, other: &Ranked) -> Ordering {
        self.0.rank(&other.0)
    }
}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Ranked {
    fn eq(&self, other: &Ranked) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}

/// An entry keyed by its id, without a second copy of the id.
#[derive(Debug)]
struct ById(Arc<Entry>);

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}
impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}
impl PartialEq for ById {
    fn eq(&self, other: &ById) -> bool {
        self.0.id == other.0.id
    }
}
impl Eq for ById {}

/// An entry keyed by its ASCII-lowercased account.
#[derive(Debug)]
struct ByAccount(Arc<Entry>);

impl Borrow<str> for ByAccount {
    fn borrow(&self) -> &str {
        self.0.account_key()
    }
}
impl Hash for ByAccount {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.account_key().hash(state);
    }
}
impl PartialEq for ByAccount {
    fn eq(&self, other: &ByAccount) -> bool {
        self.0.account_key() == other.0.account_key()
    }
}
impl Eq for ByAccount {}

/// Up to three characters packed into one key: 21 bits each, plus one so that no
/// shorter gram packs like a longer one.
type Gram = u64;

fn pack(chars: &[char]) -> Gram {
    chars.iter().fold(0, |k, &c| (k << 21) | (u64::from(c) + 1))
}

/// Every distinct 1-, 2- and 3-character piece of `key`.
fn grams_of(key: &str) -> Vec<Gram> {
    let chars: Vec<char> = key.chars().collect();
    let mut grams: Vec<Gram> = (1..=3).flat_map(|n| chars.windows(n).map(pack)).collect();
    grams.sort_unstable();
    grams.dedup();
    grams
}

#[derive(Default)]
struct Index {
    by_id: HashSet<ById>,
    by_account: HashSet<ByAccount>,
    /// For each piece, the users whose lowercased name holds it, in search order: a
    /// sorted vector, 8 bytes a user where a tree took about twice that (the directory
    /// counts in the memory of every idle session). A change moves the tail of each of
    /// its pieces' lists: some 100 µs at 20,000 users, off the workers.
    grams: HashMap<Gram, Vec<Ranked>>,
}

impl Index {
    /// Adds `e` at the end of its pieces' lists (loading: they are sorted after).
    fn append(&mut self, e: Arc<Entry>) {
        for g in grams_of(e.name_key()) {
            self.grams.entry(g).or_default().push(Ranked(e.clone()));
        }
        self.by_account.insert(ByAccount(e.clone()));
        self.by_id.insert(ById(e));
    }

    fn insert(&mut self, e: Arc<Entry>) {
        let ranked = Ranked(e.clone());
        for g in grams_of(e.name_key()) {
            let users = self.grams.entry(g).or_default();
            if let Err(at) = users.binary_search(&ranked) {
                users.insert(at, ranked.clone());
            }
        }
        self.by_account.insert(ByAccount(e.clone()));
        self.by_id.insert(ById(e));
    }

    /// Removes the user `id`; whether it was listed.
    fn remove(&mut self, id: &str) -> bool {
        let Some(ById(e)) = self.by_id.take(id) else {
            return false;
        };
        if self.by_account.get(e.account_key()).is_some_and(|a| Arc::ptr_eq(&a.0, &e)) {
            self.by_account.remove(e.account_key());
        }
        let ranked = Ranked(e);
        for g in grams_of(ranked.0.name_key()) {
            if let Some(users) = self.grams.get_mut(&g) {
                if let Ok(at) = users.binary_search(&ranked) {
                    users.remove(at);
                }
                if users.is_empty() {
                    self.grams.remove(&g);
                }
            }
        }
        true
    }

    /// The users whose names hold every piece a name containing `key` must hold, as
    /// the smallest of those sets: `key` itself up to three characters (then exactly the
    /// names containing it), else its rarest three-character piece. `None`: no name can
    /// contain `key`.
    fn fewest_candidates(&self, key: &str) -> Option<&[Ranked]> {
        let chars: Vec<char> = key.chars().collect();
        if chars.is_empty() {
            return None;
        }
        let mut fewest: Option<&[Ranked]> = None;
        for piece in chars.windows(chars.len().min(3)) {
            let set = self.grams.get(&pack(piece))?;
            if fewest.is_none_or(|f| set.len() < f.len()) {
                fewest = Some(set.as_slice());
            }
        }
        fewest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(id: &str, account: &str, name: &str) -> Listing {
        Listing::new(
            account.into(),
            FoundEntry {
                id: id.into(),
                name: name.into(),
                picture: format!("pic-{id}"),
                sex: "x".into(),
                birthday: "2000".into(),
                sign: format!("sign \"{id}\"\n"),
            },
        )
    }

    fn load(listings: impl IntoIterator<Item = Listing>) -> Directory {
        Directory::load(listings).expect("the directory's thread starts")
    }

    fn add(d: &Directory, l: Listing) {
        d.write(|| Ok::<_, ()>(((), Change::Added(l)))).unwrap();
    }

    fn ids(d: &Directory, searcher: &str, name: &str, limit: usize) -> Vec<String> {
        d.search(searcher, name, limit).ids().into_iter().map(String::from).collect()
    }

    fn no_store(_: &str) -> Result<Option<FoundEntry>, ()> {
        panic!("nothing here is in the store")
    }

    /// The users of the store's own search test, with the answers it gave.
    fn anna() -> Directory {
        load([
            listing("me", "me", "Annabel"),
            listing("1", "zed", "anna"),
            listing("2", "yan", "Hanna"),
            listing("3", "abe", "anna"),
            listing("4", "ANNA", "Zoe"),
            listing("5", "bob", "Bob"),
            listing("6", "x50", "50%_off"),
            listing("7", "x51", "ÉLODIE"),
        ])
    }

    #[test]
    fn name_or_account_by_name_then_account_without_the_searcher() {
        let d = anna();
        // Name contains "ANNA" (any case), or account equals it; byte order, upper
        // case first; equal names by account.
        assert_eq!(ids(&d, "me", "ANNA", 50), ["2", "4", "3", "1"]);
        assert_eq!(ids(&d, "me", "anna", 2), ["2", "4"]);
        assert_eq!(ids(&d, "1", "anna", 50), ["me", "2", "4", "3"]);
        assert_eq!(ids(&d, "me", "nobody", 50), Vec::<String>::new());
        // No wildcards.
        assert_eq!(ids(&d, "me", "%", 50), ["6"]);
        assert_eq!(ids(&d, "me", "_", 50), ["6"]);
        assert_eq!(ids(&d, "me", "%_o", 50), ["6"]);
        // An account matches only whole, ASCII case-insensitively.
        assert_eq!(ids(&d, "me", "bo", 50), ["5"], "by name only");
        assert_eq!(ids(&d, "me", "ABE", 50), ["3"]);
        assert_eq!(ids(&d, "me", "Zed", 50), ["1"]);
        assert_eq!(ids(&d, "4", "anna", 50), ["me", "2", "3", "1"], "the searcher by account");
        assert_eq!(ids(&d, "me", "", 50), Vec::<String>::new());
        assert_eq!(ids(&d, "me", "anna", 0), Vec::<String>::new());
    }

    #[test]
    fn case_folding_is_unicode_on_names_and_ascii_on_accounts() {
        let d = load([
            listing("a", "élan", "ÉLODIE"),
            listing("b", "b", "Straße"),
            listing("c", "c", "ΟΔΥΣΣΕΥΣ"),
            listing("d", "d", "İstanbul"),
            listing("e", "e", "日本語の名前"),
            listing("f", "f", "ſtring"),
        ]);
        for q in ["élo", "ÉLO", "Élodie", "é", "lod", "odie"] {
            assert_eq!(ids(&d, "x", q, 50), ["a"], "{q}");
        }
        assert_eq!(
            ids(&d, "x", "STRASSE", 50),
            Vec::<String>::new(),
            "lowercase, not case folding"
        );
        assert_eq!(ids(&d, "x", "STRAẞE", 50), ["b"], "ẞ lowercases to ß");
        assert_eq!(ids(&d, "x", "straße", 50), ["b"]);
        assert_eq!(ids(&d, "x", "σσευ", 50), ["c"]);
        // "ΔΥΣ" lowercases to "δυς" (final sigma), which still finds "οδυσσευς", as
        // the store's trigram index found it.
        assert_eq!(ids(&d, "x", "ΔΥΣ", 50), ["c"]);
        assert_eq!(ids(&d, "x", "ς", 50), ["c"]);
        assert_eq!(ids(&d, "x", "STR", 50), ["b", "f"], "ſ is s");
        assert_eq!(ids(&d, "x", "i̇stan", 50), ["d"], "İ lowercases to i and a dot");
        assert_eq!(ids(&d, "x", "名", 50), ["e"]);
        assert_eq!(ids(&d, "x", "本語の名", 50), ["e"]);
        // Accounts fold ASCII only: "ÉLAN" is not "élan".
        assert_eq!(ids(&d, "x", "ÉLAN", 50), Vec::<String>::new());
        assert_eq!(ids(&d, "x", "éLAN", 50), ["a"]);
    }

    #[test]
    fn stops_at_the_limit_in_order() {
        let mut all: Vec<Listing> = (0..300)
            .map(|i| listing(&format!("id{i}"), &format!("acct{i:03}"), &format!("user {}", i % 7)))
            .collect();
        all.push(listing("other", "user", "Somebody"));
        let d = load(all);
        let got = ids(&d, "id3", "USER", 50);
        // By name ("user 0" … "user 6"), then account; the account "user" ranks first.
        let mut want: Vec<(String, String, String)> = (0..300)
            .filter(|&i| i != 3)
            .map(|i| (format!("user {}", i % 7), format!("acct{i:03}"), format!("id{i}")))
            .collect();
        want.push(("Somebody".into(), "user".into(), "other".into()));
        want.sort();
        let want: Vec<String> = want.into_iter().take(50).map(|w| w.2).collect();
        assert_eq!(got, want);
        assert_eq!(got.first().map(String::as_str), Some("other"));
        assert_eq!(ids(&d, "x", "user 6", 500).len(), 42);
        assert_eq!(ids(&d, "x", "user 6", 10).len(), 10);
    }

    #[test]
    fn an_account_match_past_the_limit_is_cut() {
        let d = load([
            listing("1", "a1", "zz first"),
            listing("2", "a2", "zz second"),
            listing("3", "zz", "Zz by account"),
            listing("4", "a4", "zzzz"),
        ]);
        assert_eq!(ids(&d, "x", "zz", 2), ["3", "1"], "Z sorts before z");
        let d = load([
            listing("1", "a1", "zz first"),
            listing("2", "a2", "zz second"),
            listing("3", "zz", "~ last"),
        ]);
        assert_eq!(ids(&d, "x", "zz", 2), ["1", "2"]);
        assert_eq!(ids(&d, "x", "zz", 3), ["1", "2", "3"]);
    }

    #[test]
    fn register_rename_and_erase() {
        let d = anna();
        add(&d, listing("8", "newbie", "Joanna"));
        assert_eq!(ids(&d, "me", "anna", 50), ["2", "8", "4", "3", "1"]);
        // Rename: the old name no longer matches, the new one does, in its new place.
        let renamed = listing("2", "yan", "Yannick");
        d.write(|| Ok::<_, ()>(((), Change::Updated(renamed)))).unwrap();
        assert_eq!(ids(&d, "me", "anna", 50), ["8", "4", "3", "1"]);
        assert_eq!(ids(&d, "me", "nnick", 50), ["2"]);
        assert_eq!(ids(&d, "me", "yan", 50), ["2"]);
        d.write(|| Ok::<_, ()>(((), Change::Removed("3".into())))).unwrap();
        assert_eq!(ids(&d, "me", "anna", 50), ["8", "4", "1"]);
        assert_eq!(ids(&d, "me", "abe", 50), Vec::<String>::new(), "its account is gone too");
        // An update of a user no longer listed (erased meanwhile) does not bring it back.
        d.write(|| Ok::<_, ()>(((), Change::Updated(listing("3", "abe", "anna"))))).unwrap();
        assert_eq!(ids(&d, "me", "anna", 50), ["8", "4", "1"]);
        // A failed store write changes nothing.
        let failed = d.write(|| Err::<((), Change), _>("store down"));
        assert_eq!(failed, Err("store down"));
        assert_eq!(d.len(), 8);
        // The account is free again once erased.
        add(&d, listing("9", "ABE", "Abe again"));
        assert_eq!(ids(&d, "me", "abe", 50), ["9"]);
        assert_eq!(d.len(), 9);
    }

    #[test]
    fn replies_are_proto_s_bytes() {
        let d = anna();
        let found = d.search("me", "anna", 50);
        let want: Vec<FoundEntry> =
            found.ids().iter().map(|id| listing(id, "", "").found).collect::<Vec<_>>();
        // Rebuild the entries as the store would hand them to proto.
        let names = ["Hanna", "Zoe", "anna", "anna"];
        let want: Vec<FoundEntry> =
            want.into_iter().zip(names).map(|(f, n)| FoundEntry { name: n.into(), ..f }).collect();
        assert_eq!(found.reply(no_store), Ok(proto::found_reply(&want)));
        let none = d.search("me", "nobody", 50);
        assert_eq!(none.reply(no_store), Ok(proto::found_reply(&[])));
        let one = d.search("me", "élodie", 50).reply(no_store).unwrap();
        let v: serde_json::Value = serde_json::from_str(&one).unwrap();
        assert_eq!(v["found"][0]["name"], "ÉLODIE");
        assert_eq!(v["found"][0]["sign"], "sign \"7\"\n");
    }

    #[test]
    fn large_pictures_are_read_from_the_store() {
        let big = "p".repeat(INLINE_PICTURE_BYTES + 1);
        let with_big = |id: &str, name: &str| {
            let mut l = listing(id, id, name);
            l.found.picture.clone_from(&big);
            Listing::new(l.account, l.found)
        };
        let a = with_big("a", "Big A");
        assert!(a.picture_in_store && a.found.picture.is_empty());
        let small = listing("b", "b", "Big B");
        assert!(!small.picture_in_store);
        let d = load([a, small, with_big("c", "Big C")]);
        let mut asked = Vec::new();
        let reply = d
            .search("x", "big", 50)
            .reply(|id| {
                asked.push(id.to_string());
                // "c" was erased between the search and the read: it is left out.
                Ok::<_, ()>((id == "a").then(|| FoundEntry {
                    picture: big.clone(),
                    ..listing("a", "a", "Big A").found
                }))
            })
            .unwrap();
        assert_eq!(asked, ["a", "c"]);
        let mut a = listing("a", "a", "Big A").found;
        a.picture.clone_from(&big);
        assert_eq!(reply, proto::found_reply(&[a, listing("b", "b", "Big B").found]));
        let failed = d.search("x", "big c", 50).reply(|_| Err("store down"));
        assert_eq!(failed, Err("store down"));
        // A row read at start without its picture stays in the store.
        let row = DirectoryRow { id: "r".into(), account: "r".into(), ..DirectoryRow::default() };
        assert!(Listing::from(row).picture_in_store);
        let row = DirectoryRow { picture: Some(String::new()), ..DirectoryRow::default() };
        assert!(!Listing::from(row).picture_in_store);
    }

    /// A tiny deterministic generator, so the comparison below covers many cases
    /// and fails the same way every time.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        /// 1 to `max` characters of `alphabet`.
        fn word(&mut self, alphabet: &[char], max: usize) -> String {
            let len = 1 + self.next(max);
            (0..len).map(|_| alphabet[self.next(alphabet.len())]).collect()
        }
    }

    #[test]
    fn agrees_with_a_plain_scan_through_changes() {
        const ALPHABET: &[char] = &['a', 'B', 'b', 'é', 'É', ' ', 'Σ', 'σ', 'ß', '_', 'z', '1'];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let d = load([]);
        // The reference: every user, scanned and sorted on each query.
        let mut users: HashMap<String, (String, String)> = HashMap::new();
        for step in 0..3000 {
            let id = format!("u{}", rng.next(120));
            let name = rng.word(ALPHABET, 6);
            let account = rng.word(&['a', 'A', 'b', '1'], 3);
            let account_taken =
                users.iter().any(|(i, (a, _))| *i != id && a.eq_ignore_ascii_case(&account));
            match rng.next(4) {
                0 if !users.contains_key(&id) && !account_taken => {
                    users.insert(id.clone(), (account.clone(), name.clone()));
                    add(&d, listing(&id, &account, &name));
                }
                1 if users.contains_key(&id) => {
                    let account = users[&id].0.clone();
                    users.insert(id.clone(), (account.clone(), name.clone()));
                    let l = listing(&id, &account, &name);
                    d.write(|| Ok::<_, ()>(((), Change::Updated(l)))).unwrap();
                }
                2 => {
                    users.remove(&id);
                    d.write(|| Ok::<_, ()>(((), Change::Removed(id.clone())))).unwrap();
                }
                _ => {}
            }
            let q = rng.word(ALPHABET, 4);
            let limit = [1, 3, 50][rng.next(3)];
            let searcher = format!("u{}", rng.next(120));
            let key = search_key(&q);
            let mut want: Vec<(&str, &str, &str)> = users
                .iter()
                .filter(|(id, (a, n))| {
                    **id != searcher && (search_key(n).contains(&key) || a.eq_ignore_ascii_case(&q))
                })
                .map(|(id, (a, n))| (n.as_str(), a.as_str(), id.as_str()))
                .collect();
            want.sort();
            let want: Vec<&str> = want.iter().take(limit).map(|w| w.2).collect();
            assert_eq!(d.search(&searcher, &q, limit).ids(), want, "step {step}: {q:?}");
        }
        assert_eq!(d.len(), users.len());
    }
}
