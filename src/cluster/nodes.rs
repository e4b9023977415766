//! Node liveness. Each node refreshes `imd:node:{node}:alive` (a TTL of
//! [`LIVENESS_TTL`](super::LIVENESS_TTL)) from housekeeping; every node looks for nodes
//! whose key has expired, and the first to claim one removes its sessions from the
//! registry and reports the users left with none, whose friends then hear 300.

use std::collections::BTreeSet;

use redis::{Commands, RedisResult};

use super::{alive_key, node_sessions_key, reaping_key, user_sessions_key, Cluster, NODES};

impl Cluster {
    /// Marks this node alive for another TTL. False when the mark had gone (a Redis
    /// that restarted empty, or a refresh later than the TTL): this node's sessions
    /// are then to be registered again.
    pub fn heartbeat(&self) -> RedisResult<bool> {
        let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let (old,): (Option<String>,) = self.with(|c| {
            redis::pipe()
                .sadd(NODES, &self.node)
                .ignore()
                .cmd("SET")
                .arg(alive_key(&self.node))
                .arg(1)
                .arg("PX")
                .arg(ttl)
                .arg("GET")
                .query(c)
        })?;
        Ok(old.is_some())
    }

    /// Starts this node: sessions a previous process of the same name left behind (a
    /// crash, a restart quicker than the TTL) are removed, and the node marked alive.
    /// Returns the users left with no session.
    pub fn join(&self) -> RedisResult<Vec<String>> {
        let orphans = self.remove_sessions_of(&self.node)?;
        self.heartbeat()?;
        Ok(orphans)
    }

    /// Stops this node: its sessions and liveness are removed at once rather than
    /// after the TTL. Returns the users left with no session.
    pub fn leave(&self) -> RedisResult<Vec<String>> {
        let orphans = self.remove_sessions_of(&self.node)?;
        self.with(|c| {
            redis::pipe()
                .srem(NODES, &self.node)
                .ignore()
                .del(alive_key(&self.node))
                .ignore()
                .query::<()>(c)
        })?;
        Ok(orphans)
    }

    /// Reaps every node whose liveness key has expired and that no other node is
    /// reaping. Returns the users left with no session.
    pub fn reap_dead(&self) -> RedisResult<Vec<String>> {
        let nodes: Vec<String> = self.with(|c| c.smembers(NODES))?;
        let mut orphans = Vec::new();
        for node in nodes.into_iter().filter(|n| *n != self.node) {
            if self.with(|c| c.exists(alive_key(&node)))? {
                continue;
            }
            let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
            let claimed: bool = self.with(|c| {
                redis::cmd("SET")
                    .arg(reaping_key(&node))
                    .arg(&self.node)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .query::<Option<String>>(c)
                    .map(|r| r.is_some())
            })?;
            if !claimed {
                continue;
            }
            log::warn!("cluster: node {node} stopped refreshing its liveness; its sessions end");
            orphans.extend(self.remove_sessions_of(&node)?);
            // A node that came back meanwhile has marked itself alive and stays listed.
            self.with(|c| {
                let alive: bool = c.exists(alive_key(&node))?;
                if !alive {
                    let _: () = c.srem(NODES, &node)?;
                }
                Ok(())
            })?;
        }
        Ok(orphans)
    }

    /// Removes `node`'s sessions from the registry (and their tokens); the users of
    /// those sessions that now have none anywhere.
    fn remove_sessions_of(&self, node: &str) -> RedisResult<Vec<String>> {
        let members: Vec<String> = self.with(|c| c.smembers(node_sessions_key(node)))?;
        let mut users = BTreeSet::new();
        for m in &members {
            let Some((user, conn)) = m.split_once('/') else { continue };
            let field = format!("{node}/{conn}");
            self.with(|c| {
                let value: Option<String> = c.hget(user_sessions_key(user), &field)?;
                let token = value.as_deref().map(super::registry::token_of);
                let mut p = redis::pipe();
                p.hdel(user_sessions_key(user), &field).ignore();
                p.srem(node_sessions_key(node), m).ignore();
                if let Some(t) = token {
                    p.del(super::token_key(t)).ignore();
                }
                p.query::<()>(c)
            })?;
            users.insert(user.to_string());
        }
        let mut orphans = Vec::new();
        for user in users {
            if !self.is_online(&user)? {
                orphans.push(user);
            }
        }
        Ok(orphans)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reactor::ConnId;

    use super::super::test_redis::RedisServer;
    use super::*;

    #[test]
    fn a_node_that_stops_refreshing_is_reaped_with_its_sessions() {
        let redis = RedisServer::start();
        let ttl = Duration::from_millis(300);
        let a = Cluster::new(&redis.url(), "a", ttl).unwrap();
        let b = Cluster::new(&redis.url(), "b", ttl).unwrap();
        assert!(a.join().unwrap().is_empty());
        assert!(b.join().unwrap().is_empty());
        a.session_started("u1", ConnId(1), "t1", None, 0).unwrap();
        b.session_started("u1", ConnId(2), "t2", None, 0).unwrap();
        b.session_started("u2", ConnId(3), "t3", None, 0).unwrap();
        // Both alive: nothing is reaped however often it is asked.
        assert!(a.reap_dead().unwrap().is_empty());
        assert!(b.reap_dead().unwrap().is_empty());
        // b stops refreshing (killed); a keeps refreshing.
        std::thread::sleep(ttl + Duration::from_millis(200));
        a.heartbeat().unwrap();
        assert_eq!(a.reap_dead().unwrap(), vec!["u2".to_string()]);
        assert_eq!(a.sessions_of("u1").unwrap().len(), 1, "u1's session on a lives on");
        assert!(!a.is_online("u2").unwrap());
        assert_eq!(a.owner_of("t3").unwrap(), None, "the dead node's tokens are gone");
        // Reaped once: a second pass finds nothing.
        assert!(a.reap_dead().unwrap().is_empty());
    }

    #[test]
    fn a_restarted_node_clears_what_its_previous_process_left() {
        let redis = RedisServer::start();
        let a = Cluster::new(&redis.url(), "a", super::super::LIVENESS_TTL).unwrap();
        a.join().unwrap();
        a.session_started("u1", ConnId(1), "t1", None, 0).unwrap();
        let again = Cluster::new(&redis.url(), "a", super::super::LIVENESS_TTL).unwrap();
        assert_eq!(again.join().unwrap(), vec!["u1".to_string()]);
        assert!(again.heartbeat().unwrap(), "the mark was there");
        again.with(|c| redis::cmd("FLUSHALL").query::<()>(c)).unwrap();
        assert!(!again.heartbeat().unwrap(), "a Redis that lost the mark says so");
        assert!(!again.is_online("u1").unwrap());
        again.session_started("u1", ConnId(1), "t9", None, 0).unwrap();
        assert_eq!(again.leave().unwrap(), vec!["u1".to_string()]);
    }
}
