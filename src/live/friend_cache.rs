//! Who is friends with whom, in memory, for the one check every message pays. Filled
//! from the store on a sender's first message, emptied for both sides whenever a
//! friendship is made or ended and when a session closes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use store::{Store, StoreError};

/// Where a frame's checks learn whether two users are friends.
pub enum Friends {
    /// The cache, which fills itself from the store on a miss (a worker).
    Cache,
    /// The sender's friends, taken from the cache when the frame's handling began: the
    /// event loop never waits for the store ([`reactor::Handler::message_now`]).
    Known(Arc<HashSet<String>>),
}

/// Friend sets of senders with a live session.
#[derive(Default)]
pub struct FriendCache {
    sets: RwLock<HashMap<String, Arc<HashSet<String>>>>,
    /// Bumped by every [`forget`](FriendCache::forget): a set read from the store
    /// before a change must not be kept after it.
    generation: AtomicU64,
}

impl FriendCache {
    /// Whether `other` is a friend of `me`.
    pub fn are_friends(
        &self,
        me: &str,
        other: &str,
        store: impl FnOnce(&str) -> Result<Vec<String>, StoreError>,
    ) -> Result<bool, StoreError> {
        if let Some(set) = self.sets.read().unwrap_or_else(|p| p.into_inner()).get(me) {
            return Ok(set.contains(other));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let set: HashSet<String> = store(me)?.into_iter().collect();
        let found = set.contains(other);
        let mut sets = self.sets.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            sets.insert(me.to_string(), Arc::new(set));
        }
        Ok(found)
    }

    /// `me`'s friends when they are in memory.
    pub fn known(&self, me: &str) -> Option<Arc<HashSet<String>>> {
        self.sets.read().unwrap_or_else(|p| p.into_inner()).get(me).cloned()
    }

    /// Drops what is known of `users` (call after the store has changed).
    pub fn forget<'a>(&self, users: impl IntoIterator<Item = &'a str>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut sets = self.sets.write().unwrap_or_else(|p| p.into_inner());
        for u in users {
            sets.remove(u);
        }
    }

    /// The store query that fills a set.
    pub fn load(store: &mut Store, me: &str) -> Result<Vec<String>, StoreError> {
        store.friend_ids(me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_once_and_forgets() {
        let cache = FriendCache::default();
        let loads = std::cell::Cell::new(0);
        let load = |_: &str| {
            loads.set(loads.get() + 1);
            Ok(vec!["b".to_string()])
        };
        assert!(cache.are_friends("a", "b", load).unwrap());
        assert!(!cache.are_friends("a", "c", load).unwrap());
        assert_eq!(loads.get(), 1, "the second check is answered from memory");
        cache.forget(["a"]);
        assert!(cache.are_friends("a", "b", load).unwrap());
        assert_eq!(loads.get(), 2);
    }

    #[test]
    fn only_a_filled_set_is_known() {
        let cache = FriendCache::default();
        assert!(cache.known("a").is_none());
        cache.are_friends("a", "b", |_| Ok(vec!["b".to_string()])).unwrap();
        assert!(cache.known("a").is_some_and(|set| set.contains("b")));
        cache.forget(["a"]);
        assert!(cache.known("a").is_none());
    }

    #[test]
    fn a_set_read_before_a_change_is_not_kept() {
        let cache = FriendCache::default();
        // The change (and its forget) lands while the store is being read.
        let stale = cache.are_friends("a", "b", |_| {
            cache.forget(["a"]);
            Ok(vec!["b".to_string()])
        });
        assert!(stale.unwrap());
        let mut reloaded = false;
        cache
            .are_friends("a", "b", |_| {
                reloaded = true;
                Ok(Vec::new())
            })
            .unwrap();
        assert!(reloaded, "the stale set was not cached");
    }
}
