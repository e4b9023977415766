//! Token buckets for docs/protocol.md §8: per client IP (register, query, failed logins),
//! per user (search) and per session (send, heartbeat).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bucket holding up to `burst` tokens, refilled at `per_sec`.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The shape of a limit: refill rate and burst. A rate of 0 means unlimited.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    per_sec: f64,
    burst: f64,
}

impl Rate {
    /// `n` per minute, bursting to `n`.
    pub fn per_min(n: u32) -> Rate {
        Rate { per_sec: f64::from(n) / 60.0, burst: f64::from(n) }
    }

    /// `n` per second, bursting to `burst` (at least `n`).
    pub fn per_sec(n: u32, burst: u32) -> Rate {
        Rate { per_sec: f64::from(n), burst: f64::from(burst.max(n)) }
    }

    /// Whether this rate limits anything.
    pub fn is_off(self) -> bool {
        self.per_sec == 0.0
    }

    /// A full bucket.
    pub fn bucket(self, now: Instant) -> Bucket {
        Bucket { tokens: self.burst, last: now }
    }

    fn refill(self, b: &mut Bucket, now: Instant) {
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * self.per_sec).min(self.burst);
        b.last = now;
    }

    /// Takes one token if there is one.
    pub fn take(self, b: &mut Bucket, now: Instant) -> bool {
        if self.is_off() {
            return true;
        }
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Puts back a token taken for something that did not happen.
    pub fn give_back(self, b: &mut Bucket, now: Instant) {
        if !self.is_off() {
            self.refill(b, now);
            b.tokens = (b.tokens + 1.0).min(self.burst);
        }
    }

    /// When a bucket that is left alone is full again (so it can be forgotten).
    fn full_after(self, b: &Bucket) -> Duration {
        Duration::from_secs_f64(((self.burst - b.tokens) / self.per_sec).max(0.0))
    }
}

/// What a table is keyed by, as the table keeps it.
pub trait Key: Hash + Eq {
    /// The key whose bucket this one spends: one host may hold many IPv6 addresses, so
    /// an address counts as its client (its /64), or rotating addresses would escape.
    fn bucket_key(self) -> Self;
}

impl Key for IpAddr {
    fn bucket_key(self) -> IpAddr {
        reactor::client(self)
    }
}

impl Key for String {
    fn bucket_key(self) -> String {
        self
    }
}

/// Buckets keyed by `K`: a client ([`reactor::client`]: an IPv4 address or an IPv6
/// /64), or a user id (a budget that a new login does not refill).
pub struct PerKey<K> {
    rate: Rate,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Key> PerKey<K> {
    /// An empty table for `rate`.
    pub fn new(rate: Rate) -> PerKey<K> {
        PerKey { rate, buckets: Mutex::new(HashMap::new()) }
    }

    fn with<R>(&self, key: K, f: impl FnOnce(Rate, &mut Bucket, Instant) -> R) -> R {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.entry(key.bucket_key()).or_insert_with(|| self.rate.bucket(now));
        f(self.rate, b, now)
    }

    /// Takes a token for `ip`; false when its budget is spent.
    pub fn take(&self, ip: K) -> bool {
        self.rate.is_off() || self.with(ip, |r, b, now| r.take(b, now))
    }

    /// Gives back a token taken for `ip`: a budget reserved before a password check is
    /// refunded when the check succeeds (or never ran).
    pub fn refund(&self, ip: K) {
        if !self.rate.is_off() {
            self.with(ip, |r, b, now| r.give_back(b, now));
        }
    }

    /// Forgets buckets that have refilled, so the table only holds recent keys.
    pub fn prune(&self) {
        if self.rate.is_off() {
            return;
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, b| now.saturating_duration_since(b.last) < self.rate.full_after(b));
    }

    /// Number of IPs tracked.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_spends_and_refills() {
        let r = Rate::per_sec(1, 2);
        let t0 = Instant::now();
        let mut b = r.bucket(t0);
        assert!(r.take(&mut b, t0));
        assert!(r.take(&mut b, t0));
        assert!(!r.take(&mut b, t0));
        assert!(!r.take(&mut b, t0 + Duration::from_millis(500)));
        assert!(r.take(&mut b, t0 + Duration::from_millis(1100)));
    }

    #[test]
    fn zero_is_off() {
        let r = Rate::per_min(0);
        let t0 = Instant::now();
        let mut b = r.bucket(t0);
        for _ in 0..1000 {
            assert!(r.take(&mut b, t0));
        }
    }

    #[test]
    fn a_refund_puts_one_token_back_and_never_overfills() {
        let t = PerKey::<IpAddr>::new(Rate::per_min(2));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(t.take(a) && t.take(a) && !t.take(a));
        t.refund(a);
        assert!(t.take(a));
        assert!(!t.take(a));
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        t.refund(b);
        t.refund(b);
        assert!(t.take(b) && t.take(b) && !t.take(b), "the burst is the ceiling");
    }

    #[test]
    fn per_ip_is_per_ip_and_prunes() {
        let t = PerKey::<IpAddr>::new(Rate::per_min(2));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(t.take(a) && t.take(a));
        assert!(!t.take(a));
        assert!(t.take(b));
        t.prune();
        assert_eq!(t.len(), 2, "spent buckets are kept");
    }

    #[test]
    fn an_ipv6_host_has_one_budget_across_its_64() {
        let t = PerKey::<IpAddr>::new(Rate::per_min(2));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(t.take(ip("2001:db8:0:1::1")) && t.take(ip("2001:db8:0:1::2")));
        assert!(!t.take(ip("2001:db8:0:1:ffff::3")), "another address of the same /64");
        assert!(t.take(ip("2001:db8:0:2::1")), "another /64");
        assert_eq!(t.len(), 2);
    }
}
