//! Live sessions of every node: which node holds each of a user's sessions, and whose
//! session a token is. Written when a session starts and ends; a dead node's are
//! removed by the node that reaps it (`nodes`).

use reactor::ConnId;
use redis::{Commands, RedisResult};

use super::{node_sessions_key, token_key, user_sessions_key, Cluster};

/// Where a session lives: a node and its connection there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub node: String,
    pub conn: ConnId,
}

/// Whose session a token is, and where it lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub user: String,
    pub place: Place,
    /// The remembered device it logged in with or was given (§11.2): a logoff with
    /// `forget` on another node revokes it there.
    pub device: Option<i64>,
}

impl Place {
    /// The hash field `{node}/{conn}`.
    fn field(&self) -> String {
        format!("{}/{}", self.node, self.conn.0)
    }

    fn parse(s: &str) -> Option<Place> {
        let (node, conn) = s.rsplit_once('/')?;
        Some(Place { node: node.to_string(), conn: ConnId(conn.parse().ok()?) })
    }
}

impl Cluster {
    /// Records `user`'s session on this node's `conn`, with its token and device.
    /// `started_ms` orders a user's sessions across nodes for `max_devices`.
    pub fn session_started(
        &self,
        user: &str,
        conn: ConnId,
        token: &str,
        device: Option<i64>,
        started_ms: i64,
    ) -> RedisResult<()> {
        let place = Place { node: self.node.clone(), conn };
        let device = device.map_or("-".to_string(), |d| d.to_string());
        let owner = format!("{device} {user}/{}", place.field());
        self.with(|c| {
            redis::pipe()
                .atomic()
                .hset(user_sessions_key(user), place.field(), format!("{started_ms} {token}"))
                .ignore()
                .sadd(node_sessions_key(&self.node), format!("{user}/{}", conn.0))
                .ignore()
                .set(token_key(token), owner)
                .ignore()
                .query::<()>(c)
        })
    }

    /// Forgets `user`'s session on this node's `conn`.
    pub fn session_ended(&self, user: &str, conn: ConnId) -> RedisResult<()> {
        self.session_ended_at(user, &Place { node: self.node.clone(), conn })
    }

    /// Forgets `user`'s session at `place`, on whichever node (its node may be gone or
    /// may not hear that it was ended).
    pub fn session_ended_at(&self, user: &str, place: &Place) -> RedisResult<()> {
        self.with(|c| {
            let value: Option<String> = c.hget(user_sessions_key(user), place.field())?;
            let token = value.as_deref().map(token_of);
            let mut p = redis::pipe();
            p.atomic().hdel(user_sessions_key(user), place.field()).ignore();
            p.srem(node_sessions_key(&place.node), format!("{user}/{}", place.conn.0)).ignore();
            if let Some(token) = token {
                p.del(token_key(token)).ignore();
            }
            p.query::<()>(c)
        })
    }

    /// Every live session of `user`, on any node (this one included).
    pub fn sessions_of(&self, user: &str) -> RedisResult<Vec<Place>> {
        let fields: Vec<String> = self.with(|c| c.hkeys(user_sessions_key(user)))?;
        Ok(fields.iter().filter_map(|f| Place::parse(f)).collect())
    }

    /// Every live session of `user` with its start (ms), the oldest first.
    pub fn sessions_by_age(&self, user: &str) -> RedisResult<Vec<(i64, Place)>> {
        let all: Vec<(String, String)> = self.with(|c| c.hgetall(user_sessions_key(user)))?;
        let mut aged: Vec<(i64, Place)> = all
            .iter()
            .filter_map(|(f, v)| Some((v.split_once(' ')?.0.parse().ok()?, Place::parse(f)?)))
            .collect();
        aged.sort_by_key(|(ms, p)| (*ms, p.node.clone(), p.conn.0));
        Ok(aged)
    }

    /// `user`'s sessions held by other nodes.
    pub fn elsewhere(&self, user: &str) -> RedisResult<Vec<Place>> {
        let mut all = self.sessions_of(user)?;
        all.retain(|p| p.node != self.node);
        Ok(all)
    }

    /// Whether `user` has a live session on any node.
    pub fn is_online(&self, user: &str) -> RedisResult<bool> {
        self.with(|c| c.exists(user_sessions_key(user)))
    }

    /// Whose session `token` is, on whichever node.
    pub fn owner_of(&self, token: &str) -> RedisResult<Option<Owner>> {
        let v: Option<String> = self.with(|c| c.get(token_key(token)))?;
        Ok(v.and_then(|v| {
            let (device, owner) = v.split_once(' ')?;
            let device = match device {
                "-" => None,
                d => Some(d.parse().ok()?),
            };
            let (user, place) = owner.split_once('/')?;
            Some(Owner { user: user.to_string(), place: Place::parse(place)?, device })
        }))
    }
}

/// The token of a registry value `{started_ms} {token}`.
pub(super) fn token_of(value: &str) -> &str {
    value.split_once(' ').map_or(value, |(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::super::test_redis::RedisServer;
    use super::*;

    #[test]
    fn sessions_are_seen_from_every_node_until_they_end() {
        let redis = RedisServer::start();
        let a = Cluster::new(&redis.url(), "a", super::super::LIVENESS_TTL).unwrap();
        let b = Cluster::new(&redis.url(), "b", super::super::LIVENESS_TTL).unwrap();
        a.session_started("u1", ConnId(7), "tok-a", Some(3), 20).unwrap();
        b.session_started("u1", ConnId(9), "tok-b", None, 10).unwrap();
        let mut all = a.sessions_of("u1").unwrap();
        all.sort_by_key(|p| p.conn.0);
        let on = |node: &str, conn| Place { node: node.into(), conn: ConnId(conn) };
        assert_eq!(all, vec![on("a", 7), on("b", 9)]);
        assert_eq!(a.elsewhere("u1").unwrap(), vec![on("b", 9)]);
        assert_eq!(a.sessions_by_age("u1").unwrap(), vec![(10, on("b", 9)), (20, on("a", 7))]);
        assert_eq!(
            a.owner_of("tok-b").unwrap(),
            Some(Owner { user: "u1".into(), place: on("b", 9), device: None })
        );
        assert_eq!(a.owner_of("tok-a").unwrap().and_then(|o| o.device), Some(3));
        assert!(b.is_online("u1").unwrap());
        b.session_ended("u1", ConnId(9)).unwrap();
        assert_eq!(b.sessions_of("u1").unwrap(), vec![on("a", 7)]);
        assert_eq!(a.owner_of("tok-b").unwrap(), None);
        a.session_ended("u1", ConnId(7)).unwrap();
        assert!(!b.is_online("u1").unwrap());
        assert!(!a.is_online("nobody").unwrap());
    }
}
