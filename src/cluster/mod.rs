//! Several imd nodes as one service (docs/cluster.md): the live state that must be seen
//! by every node, kept in Redis. PostgreSQL stays the truth; what is here is rebuilt by
//! the nodes themselves (a lost Redis costs live sessions' routing for a moment, never
//! a message that was acknowledged).
//!
//! - this file  — [`Cluster`]: the connection used for commands, and the key names.
//! - `nodes`    — node liveness: a key with a TTL each node refreshes, and the reaping
//!   of a dead node's sessions by a live one.
//! - `registry` — live sessions of every node: user → (node, connection), by token.
//! - `bus`      — one subscriber thread per node: frames other nodes address to this
//!   node's connections, handed to the reactor; and publishing them.
//! - `fanout`   — the daemon's calls: pushes to other nodes, presence, tokens, the
//!   housekeeping tick. No-ops without `[cluster]`.
//!
//! Redis layout (every key starts `imd:`):
//!
//! | key | type | what |
//! |---|---|---|
//! | `imd:nodes` | set | every node that joined and was not reaped |
//! | `imd:node:{node}:alive` | string, TTL | refreshed by the node's housekeeping |
//! | `imd:node:{node}:sessions` | set of `{user}/{conn}` | what to reap when it dies |
//! | `imd:node:{node}:reaping` | string, TTL | one live node reaps a dead one |
//! | `imd:user:{user}:sessions` | hash `{node}/{conn}` → token | the user's sessions |
//! | `imd:token:{token}` | string `{user}/{node}/{conn}` | a session token on every node |
//! | channel `imd:to:{node}` | pub/sub | `{conn}\n{frame}` for a connection of the node; `kept …` a kept message's frame with its `seq` |
//! | channel `imd:all` | pub/sub | `forget\n{user} {user}…`: friend sets changed |

mod bus;
pub(crate) mod fanout;
mod nodes;
mod registry;

#[cfg(test)]
#[path = "../../tests/common/redis_server.rs"]
pub(crate) mod test_redis;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::{Connection, RedisResult};

pub use bus::{Inbox, KeptFrame};
pub use registry::Place;

/// How long a node counts as alive after its last refresh. Housekeeping refreshes it
/// every second and reaps dead nodes every second, so a node killed with -9 has its
/// sessions gone from the registry within about six seconds.
pub const LIVENESS_TTL: Duration = Duration::from_secs(5);

/// How long one command may wait for Redis before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// This node's handle on Redis.
pub struct Cluster {
    client: redis::Client,
    node: String,
    ttl: Duration,
    /// The connection for commands, opened again after a failure. One for the node:
    /// commands are short, and a session's start or end is rare next to its frames.
    conn: Mutex<Option<Connection>>,
}

impl Cluster {
    /// A handle for node `node` on the Redis at `url` (nothing is sent yet).
    pub fn new(url: &str, node: &str, ttl: Duration) -> RedisResult<Cluster> {
        Ok(Cluster {
            client: redis::Client::open(url)?,
            node: node.to_string(),
            ttl,
            conn: Mutex::new(None),
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs `f` on the command connection, opening it first if needed; a failed
    /// connection is dropped so that the next command opens a new one.
    fn with<R>(&self, f: impl FnOnce(&mut Connection) -> RedisResult<R>) -> RedisResult<R> {
        let mut guard: MutexGuard<'_, Option<Connection>> =
            self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let c = match guard.as_mut() {
            Some(c) => c,
            None => {
                let c = self.client.get_connection_with_timeout(COMMAND_TIMEOUT)?;
                c.set_read_timeout(Some(COMMAND_TIMEOUT))?;
                c.set_write_timeout(Some(COMMAND_TIMEOUT))?;
                guard.insert(c)
            }
        };
        let r = f(c);
        if r.as_ref().is_err_and(|e| e.is_io_error() || e.is_connection_dropped() || e.is_timeout())
        {
            *guard = None;
        }
        r
    }
}

fn alive_key(node: &str) -> String {
    format!("imd:node:{node}:alive")
}

fn node_sessions_key(node: &str) -> String {
    format!("imd:node:{node}:sessions")
}

fn reaping_key(node: &str) -> String {
    format!("imd:node:{node}:reaping")
}

fn user_sessions_key(user: &str) -> String {
    format!("imd:user:{user}:sessions")
}

fn token_key(token: &str) -> String {
    format!("imd:token:{token}")
}

fn channel(node: &str) -> String {
    format!("imd:to:{node}")
}

const NODES: &str = "imd:nodes";

/// The channel every node listens on: friend sets changed.
const BROADCAST: &str = "imd:all";
