//! The descriptor limit: raised at start to what the system allows, and checked against
//! what the configuration may open. A daemon that meets `EMFILE` below `max_connections`
//! turns clients away that its own limits would have let in.

use crate::Config;

/// Descriptors the daemon holds apart from its connections: standard streams, the
/// epoll and waker, the listeners, three SQLite files (database, WAL, shared memory)
/// per worker and for the start-up connection, and a margin for the certificate and
/// web-root files read while serving.
pub fn reserve(workers: usize) -> u64 {
    const FIXED: u64 = 3 + 2 + 2 + 32;
    FIXED + 3 * (workers as u64 + 1)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the soft limit now in force, or
/// the error that kept it unknown.
pub fn raise() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The warning to give when `limit` cannot hold every connection the config allows.
pub fn shortfall(config: &Config, limit: u64) -> Option<String> {
    let t = &config.transport;
    let needed = t.max_connections as u64 + reserve(t.workers);
    (needed > limit).then(|| {
        format!(
            "the descriptor limit is {limit}, but max_connections = {} and {} descriptors \
             for the daemon itself need {needed}: connections past the limit wait in the \
             kernel's queue until others close (raise LimitNOFILE / ulimit -n, or lower \
             max_connections)",
            t.max_connections,
            reserve(t.workers)
        )
    })
}

/// Raises the limit, and warns when it is still too low or cannot be read.
pub fn prepare(config: &Config) {
    match raise() {
        Ok(limit) => {
            if let Some(w) = shortfall(config, limit) {
                log::warn!("{w}");
            }
        }
        Err(e) => log::warn!("the descriptor limit could not be read or raised: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_below_connections_plus_reserve_is_a_shortfall() {
        let mut c = Config::default();
        c.transport.max_connections = 1000;
        c.transport.workers = 4;
        let needed = 1000 + reserve(4);
        assert!(shortfall(&c, needed).is_none());
        let w = shortfall(&c, needed - 1).expect("one short");
        assert!(w.contains("max_connections = 1000"), "{w}");
        assert!(shortfall(&c, 1024).is_some(), "the usual default soft limit");
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        let limit = raise().expect("limit");
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
        assert_eq!((limit, soft), (hard, hard));
    }
}
