//! The budgets of docs/protocol.md §8 that a client could spread over nodes: per client
//! IP (register, query, failed logins) and per user (search). On a node of several they
//! are counted in Redis, so that the balancer sending a client to each node in turn does
//! not multiply them; per-session budgets live with their session on one node already.
//!
//! Redis counts a sliding window of one minute: a counter per key and minute, and the
//! previous minute's counter weighted by how much of it is still inside the window
//! (`imd:budget:{name}:{key}:{minute}`, expiring after two minutes). A refused
//! attempt is not counted; a refund takes one back from the current minute (one
//! reserved in the minute before is lost, the budget erring on the strict side).
//! When Redis does not answer, the node counts alone in its own token buckets, as a
//! single node does.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redis::RedisResult;

use super::Cluster;
use crate::live::rate_limit::{Key, PerKey, Rate};

const WINDOW_MS: u64 = 60_000;

/// Counts one attempt in the current minute unless the window is full: 1 taken, 0 not.
/// KEYS: this minute, the previous one; ARGV: the budget, the previous minute's weight,
/// the counters' lifetime in ms.
const TAKE: &str = "
local cur = redis.call('INCR', KEYS[1])
if cur == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
if math.ceil(prev * tonumber(ARGV[2])) + cur > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1";

/// Takes back one attempt of the current minute, never below zero.
const REFUND: &str = "
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur > 0 then redis.call('DECR', KEYS[1]) end
return 0";

/// A budget of `per_min` attempts a minute per key, shared by the nodes when there
/// are several.
pub struct Budget<K> {
    name: &'static str,
    per_min: u32,
    local: PerKey<K>,
    shared: Option<Arc<Cluster>>,
    /// Whether the last Redis failure was logged (one line per outage, not per request).
    failing: AtomicBool,
}

impl<K: Key + Display> Budget<K> {
    /// `per_min` a minute (0: unlimited) per key, named `name` in Redis.
    pub fn new(name: &'static str, per_min: u32, shared: Option<Arc<Cluster>>) -> Budget<K> {
        Budget {
            name,
            per_min,
            local: PerKey::new(Rate::per_min(per_min)),
            shared,
            failing: AtomicBool::new(false),
        }
    }

    /// Takes one attempt for `key`; false when its budget is spent.
    pub fn take(&self, key: K) -> bool {
        if self.per_min == 0 {
            return true;
        }
        let key = key.bucket_key();
        if let Some(cluster) = &self.shared {
            if let Some(taken) = self.answered(cluster.take_budget(self.name, &key, self.per_min)) {
                return taken;
            }
        }
        self.local.take(key)
    }

    /// Gives back an attempt taken for `key` (a password that was right).
    pub fn refund(&self, key: K) {
        if self.per_min == 0 {
            return;
        }
        let key = key.bucket_key();
        if let Some(cluster) = &self.shared {
            if self.answered(cluster.refund_budget(self.name, &key)).is_some() {
                return;
            }
        }
        self.local.refund(key);
    }

    /// Forgets local buckets that have refilled.
    pub fn prune(&self) {
        self.local.prune();
    }

    /// Redis's answer, or `None` (logged once per outage) when it gave none.
    fn answered<T>(&self, r: RedisResult<T>) -> Option<T> {
        match r {
            Ok(v) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    log::info!("cluster: {} budget counted in Redis again", self.name);
                }
                Some(v)
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    log::warn!("cluster: {} budget counted on this node alone: {e}", self.name);
                }
                None
            }
        }
    }
}

impl Cluster {
    /// Takes one of `per_min` attempts a minute for `key` in budget `name`.
    pub fn take_budget(&self, name: &str, key: &impl Display, per_min: u32) -> RedisResult<bool> {
        let now = now_ms();
        let minute = now / WINDOW_MS;
        let weight = 1.0 - (now % WINDOW_MS) as f64 / WINDOW_MS as f64;
        let taken: i64 = self.with(|c| {
            redis::cmd("EVAL")
                .arg(TAKE)
                .arg(2)
                .arg(budget_key(name, key, minute))
                .arg(budget_key(name, key, minute.saturating_sub(1)))
                .arg(per_min)
                .arg(format!("{weight:.4}"))
                .arg(2 * WINDOW_MS)
                .query(c)
        })?;
        Ok(taken == 1)
    }

    /// Gives back one attempt of the current minute for `key` in budget `name`.
    pub fn refund_budget(&self, name: &str, key: &impl Display) -> RedisResult<()> {
        let minute = now_ms() / WINDOW_MS;
        self.with(|c| {
            redis::cmd("EVAL").arg(REFUND).arg(1).arg(budget_key(name, key, minute)).query(c)
        })
    }
}

fn budget_key(name: &str, key: &impl Display, minute: u64) -> String {
    format!("imd:budget:{name}:{key}:{minute}")
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::super::test_redis::RedisServer;
    use super::super::LIVENESS_TTL;
    use super::*;

    #[test]
    fn two_nodes_share_one_budget_and_fall_back_to_their_own_without_redis() {
        let mut redis = RedisServer::start();
        let node = |name| Arc::new(Cluster::new(&redis.url(), name, LIVENESS_TTL).unwrap());
        let a: Budget<IpAddr> = Budget::new("t", 4, Some(node("a")));
        let b: Budget<IpAddr> = Budget::new("t", 4, Some(node("b")));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(a.take(ip) && a.take(ip) && b.take(ip) && b.take(ip));
        assert!(!a.take(ip) && !b.take(ip), "the fifth is refused on either node");
        assert!(a.take(other), "another client has its own");
        // A refund gives one back, to whichever node.
        a.refund(ip);
        assert!(b.take(ip));
        assert!(!a.take(ip));

        // Redis gone: each node counts alone, with its own full budget.
        redis.restart(std::time::Duration::from_secs(0));
        drop(redis);
        for _ in 0..4 {
            assert!(a.take(ip));
        }
        assert!(!a.take(ip));
        assert!(b.take(ip));
    }

    #[test]
    fn unlimited_is_never_asked() {
        // No Redis behind the URL: an unlimited budget does not try it.
        let c = Arc::new(Cluster::new("redis://127.0.0.1:1", "a", LIVENESS_TTL).unwrap());
        let b: Budget<String> = Budget::new("t", 0, Some(c));
        assert!((0..100).all(|_| b.take("u".to_string())));
    }
}
