//! The daemon's configuration: one typed struct, read from TOML and checked once at
//! load. Every key has a documented default (the shipped `conf/imd.conf` lists them
//! all); unknown keys are warned about; a bad value stops the start with one line.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reactor::TlsSource;

/// Everything imd can be told, after validation.
#[derive(Clone, Debug)]
pub struct Config {
    /// Transport settings handed to the reactor (listeners, workers, limits, timeouts).
    pub transport: reactor::Config,
    /// Directory served at `/im/www/v1/`.
    pub web_root: PathBuf,
    /// Memory the web root's file cache may hold, in bytes.
    pub static_cache_bytes: usize,
    /// SQLite database file and its durability.
    pub store: StoreConfig,
    /// argon2id cost parameters.
    pub password: PasswordConfig,
    /// Session behaviour.
    pub session: SessionConfig,
    /// Conversations that are kept (docs/protocol.md §10).
    pub history: HistoryConfig,
    /// Browser origins allowed to open the login WebSocket; empty = any.
    pub allowed_origins: Vec<String>,
    /// Token-bucket limits of docs/protocol.md §8.
    pub rate_limit: RateLimits,
    /// Field limits of docs/protocol.md §9.
    pub fields: proto::Limits,
    /// Pending friend requests (docs/protocol.md §5.7).
    pub requests: RequestLimits,
    /// Several nodes sharing live state through Redis (docs/cluster.md); `None` alone.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: given together, `redis` and `node` make this process one node of
/// several; both need `[store] url` (the nodes share one PostgreSQL database).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// `redis://host:port[/db]`.
    pub redis: String,
    /// This node's name, unique among the nodes: 1 to 64 of `[A-Za-z0-9_.-]`.
    pub node: String,
}

/// `[limits]` on pending friend requests: a user flooded with requests still logs in
/// with a bounded reply, and the store holds a bounded number per user.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    /// The newest requests listed in the login reply (default 100).
    pub login_requests: usize,
    /// Most pending requests a user holds; a new one beyond answers 524 (default 1000).
    pub pending_per_user: usize,
}

/// `[store]`.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// SQLite database file, when `url` is `None`; its directory is created at start.
    pub path: PathBuf,
    /// PostgreSQL instead of the file (several nodes on one database); set only when
    /// `path` is not.
    pub url: Option<store::PostgresUrl>,
    /// `PRAGMA synchronous`.
    pub synchronous: store::Synchronous,
}

/// `[password]`: argon2id parameters.
#[derive(Clone, Copy, Debug)]
pub struct PasswordConfig {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Parallelism.
    pub p: u32,
    /// Threads that check and hash passwords, apart from the workers.
    pub threads: usize,
}

/// `[history]`: conversations that are kept (docs/protocol.md §10).
#[derive(Clone, Copy, Debug)]
pub struct HistoryConfig {
    /// Keep every message, numbered per conversation, and deliver to offline friends at
    /// their next login (202); off, sending is the seed's (508 for an offline friend).
    pub enabled: bool,
    /// Messages older than this many days are deleted by housekeeping; 0 keeps them.
    pub retention_days: u32,
    /// Most undelivered messages sent right after a login.
    pub login_backlog: usize,
}

/// `[session]`.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// How long a login without credentials in the URL waits for its first frame.
    pub login_frame_timeout: Duration,
    /// Live sessions a user may hold (docs/protocol.md §11.1); a login beyond replaces
    /// the oldest. 1 is the seed's single session.
    pub max_devices: usize,
    /// Days a remembered login stays valid after its last use (§11.2); 0 turns
    /// remembered logins off.
    pub remember_days: u32,
}

/// `[rate_limit]`: 0 turns a limit off.
#[derive(Clone, Copy, Debug)]
pub struct RateLimits {
    /// Registrations per minute per client IP.
    pub register_per_min: u32,
    /// Account queries per minute per client IP.
    pub query_per_min: u32,
    /// Failed logins per minute per client IP.
    pub login_fail_per_min: u32,
    /// Messages sent per second per session.
    pub send_per_s: u32,
    /// Burst of messages a session may send at once.
    pub send_burst: u32,
    /// JSON heartbeats per minute per session.
    pub heartbeat_per_min: u32,
    /// Searches (`/im/friends/found`) per minute per user.
    pub search_per_min: u32,
    /// Typing notices per second per session (§10.3).
    pub typing_per_s: u32,
    /// Burst of typing notices a session may send at once.
    pub typing_burst: u32,
}

impl Default for Config {
    fn default() -> Self {
        let transport = reactor::Config {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8443))),
            tls: Some(TlsSource::SelfSigned),
            ..reactor::Config::default()
        };
        Config {
            transport,
            web_root: PathBuf::from("www"),
            static_cache_bytes: reactor::StaticFiles::DEFAULT_CACHE_BYTES,
            store: StoreConfig {
                path: PathBuf::from("data/imd.sqlite3"),
                url: None,
                synchronous: store::Synchronous::Full,
            },
            password: PasswordConfig {
                m_kib: 19456,
                t: 2,
                p: 1,
                threads: std::thread::available_parallelism().map_or(1, |n| n.get() / 2).max(1),
            },
            history: HistoryConfig { enabled: true, retention_days: 0, login_backlog: 1000 },
            session: SessionConfig {
                login_frame_timeout: Duration::from_secs(10),
                max_devices: 5,
                remember_days: 30,
            },
            allowed_origins: Vec::new(),
            rate_limit: RateLimits {
                register_per_min: 10,
                query_per_min: 60,
                login_fail_per_min: 20,
                send_per_s: 20,
                send_burst: 40,
                heartbeat_per_min: 12,
                search_per_min: 30,
                typing_per_s: 2,
                typing_burst: 5,
            },
            fields: proto::Limits::default(),
            requests: RequestLimits { login_requests: 100, pending_per_user: 1000 },
            cluster: None,
        }
    }
}

/// Why a configuration was refused: one line naming the file, the key and the problem.
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and checks `path`. Warnings (unknown keys) go to `warn`.
    pub fn load(path: &Path, warn: &mut dyn FnMut(String)) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        Config::parse(&text, warn).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str, warn: &mut dyn FnMut(String)) -> Result<Config, ConfigError> {
        let table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| ConfigError(one_line(&e.to_string())))?;
        let mut c = Config::default();
        let mut doc = Doc { table, warn, asked: Vec::new() };
        doc.read(&mut c)?;
        doc.finish();
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let t = &self.transport;
        if t.listen.is_none() && t.tls_listen.is_none() {
            return Err(err("[server] listen and [tls] listen are both empty: nothing to serve"));
        }
        if t.tls_listen.is_some() && t.tls.is_none() {
            return Err(err(
                "[tls] listen is set but there is no cert/key and self_signed = false",
            ));
        }
        if t.ws_idle_timeout <= t.ws_ping_interval {
            return Err(err("[websocket] idle_timeout_s must be greater than ping_interval_s"));
        }
        if argon2::Params::new(self.password.m_kib, self.password.t, self.password.p, None).is_err()
        {
            return Err(err(
                "[password] argon2 parameters out of range (m_kib >= 8 * p, t >= 1, p >= 1)",
            ));
        }
        Ok(())
    }
}

fn err(msg: &str) -> ConfigError {
    ConfigError(msg.to_string())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A TOML document being consumed key by key: what is left at the end is unknown.
struct Doc<'w> {
    table: toml::Table,
    warn: &'w mut dyn FnMut(String),
    /// Every `(section, key)` a reader asked for: the keys imd knows, so a test can hold
    /// conf/imd.conf and README.md to the full list.
    asked: Vec<(String, String)>,
}

impl Doc<'_> {
    fn read(&mut self, c: &mut Config) -> Result<(), ConfigError> {
        let t = &mut c.transport;

        self.addr("server", "listen", &mut t.listen)?;
        self.count("server", "workers", 0, 1024, &mut t.workers)?;
        if t.workers == 0 {
            t.workers = reactor::Config::default().workers;
        }
        self.path("server", "web_root", &mut c.web_root)?;
        self.count("server", "static_cache_bytes", 0, 1 << 34, &mut c.static_cache_bytes)?;
        self.count("server", "max_connections", 1, 10_000_000, &mut t.max_connections)?;
        self.secs("server", "shutdown_deadline_s", &mut t.shutdown_deadline)?;

        self.addr("tls", "listen", &mut t.tls_listen)?;
        let mut cert = PathBuf::new();
        let mut key = PathBuf::new();
        let mut self_signed = true;
        self.path("tls", "cert", &mut cert)?;
        self.path("tls", "key", &mut key)?;
        self.flag("tls", "self_signed", &mut self_signed)?;
        t.tls = match (cert.as_os_str().is_empty(), key.as_os_str().is_empty()) {
            (false, false) => Some(TlsSource::Files { cert, key }),
            (true, true) if self_signed => Some(TlsSource::SelfSigned),
            (true, true) => None,
            _ => return Err(err("[tls] cert and key must be given together")),
        };
        self.secs("tls", "handshake_timeout_s", &mut t.tls_handshake_timeout)?;

        self.count("limits", "head_bytes", 1024, 1 << 20, &mut t.head_bytes)?;
        self.count("limits", "max_headers", 8, 1000, &mut t.max_headers)?;
        self.count("limits", "body_bytes", 1024, 1 << 30, &mut t.body_bytes)?;
        self.secs("limits", "head_timeout_s", &mut t.head_timeout)?;
        self.secs("limits", "keepalive_timeout_s", &mut t.keepalive_timeout)?;
        self.count("limits", "output_cap_bytes", 64 * 1024, 1 << 30, &mut t.output_cap_bytes)?;
        self.count(
            "limits",
            "output_budget_bytes",
            64 * 1024,
            1 << 40,
            &mut t.output_budget_bytes,
        )?;
        self.secs("limits", "linger_timeout_s", &mut t.linger_timeout)?;
        self.count("limits", "linger_bytes", 0, 1 << 30, &mut t.linger_bytes)?;
        self.count("limits", "connections_per_ip", 0, 10_000_000, &mut t.connections_per_ip)?;
        let f = &mut c.fields;
        self.count("limits", "account_chars", 1, 4096, &mut f.account)?;
        self.count("limits", "password_chars", 1, 65536, &mut f.password)?;
        self.count("limits", "name_chars", 1, 4096, &mut f.name)?;
        self.count("limits", "sex_chars", 1, 4096, &mut f.sex)?;
        self.count("limits", "birthday_chars", 1, 4096, &mut f.birthday)?;
        self.count("limits", "sign_chars", 1, 65536, &mut f.sign)?;
        self.count("limits", "mail_chars", 1, 4096, &mut f.mail)?;
        self.count("limits", "note_chars", 1, 65536, &mut f.note)?;
        self.count("limits", "alias_chars", 1, 4096, &mut f.alias)?;
        self.count("limits", "search_chars", 1, 4096, &mut f.search)?;
        self.count("limits", "picture_bytes", 1, 64 << 20, &mut f.picture)?;
        self.count("limits", "payload_bytes", 1, 64 << 20, &mut f.payload)?;
        self.count("limits", "dialogue_id_chars", 1, 4096, &mut f.dialogue_id)?;
        let q = &mut c.requests;
        self.count("limits", "login_requests", 1, 1_000_000, &mut q.login_requests)?;
        self.count("limits", "pending_requests_per_user", 1, 10_000_000, &mut q.pending_per_user)?;

        self.secs("websocket", "ping_interval_s", &mut t.ws_ping_interval)?;
        self.secs("websocket", "idle_timeout_s", &mut t.ws_idle_timeout)?;
        self.count("websocket", "max_message_bytes", 1024, 1 << 30, &mut t.ws_max_message_bytes)?;
        self.strings("websocket", "allowed_origins", &mut c.allowed_origins)?;

        let path_given = self.has("store", "path");
        self.path("store", "path", &mut c.store.path)?;
        if c.store.path.as_os_str().is_empty() {
            return Err(err("[store] path: must not be empty"));
        }
        let mut url = String::new();
        self.string("store", "url", &mut url)?;
        if !url.is_empty() {
            if path_given {
                return Err(err("[store] path and url: give one, not both"));
            }
            let parsed = store::PostgresUrl::parse(&url)
                .map_err(|e| ConfigError(format!("[store] url: {e}")))?;
            c.store.url = Some(parsed);
        }
        self.cluster(c)?;
        let mut sync = String::from("full");
        self.string("store", "synchronous", &mut sync)?;
        c.store.synchronous = match sync.to_ascii_lowercase().as_str() {
            "off" => store::Synchronous::Off,
            "normal" => store::Synchronous::Normal,
            "full" => store::Synchronous::Full,
            other => {
                return Err(ConfigError(format!(
                    "[store] synchronous: \"{other}\" is not one of off, normal, full"
                )))
            }
        };

        let p = &mut c.password;
        self.count("password", "argon2_m_kib", 8, 4 << 20, &mut p.m_kib)?;
        self.count("password", "argon2_t", 1, 100, &mut p.t)?;
        self.count("password", "argon2_p", 1, 64, &mut p.p)?;
        self.count("password", "threads", 0, 256, &mut p.threads)?;
        if p.threads == 0 {
            p.threads = Config::default().password.threads;
        }

        let s = &mut c.session;
        self.secs("session", "login_frame_timeout_s", &mut s.login_frame_timeout)?;
        self.count("session", "max_devices", 1, 1000, &mut s.max_devices)?;
        self.count("session", "remember_days", 0, 3650, &mut s.remember_days)?;

        let h = &mut c.history;
        self.flag("history", "enabled", &mut h.enabled)?;
        self.count("history", "retention_days", 0, 100_000, &mut h.retention_days)?;
        self.count("history", "login_backlog", 0, 1_000_000, &mut h.login_backlog)?;

        let r = &mut c.rate_limit;
        self.count("rate_limit", "register_per_min", 0, 1_000_000, &mut r.register_per_min)?;
        self.count("rate_limit", "query_per_min", 0, 1_000_000, &mut r.query_per_min)?;
        self.count("rate_limit", "login_fail_per_min", 0, 1_000_000, &mut r.login_fail_per_min)?;
        self.count("rate_limit", "send_per_s", 0, 1_000_000, &mut r.send_per_s)?;
        self.count("rate_limit", "send_burst", 0, 1_000_000, &mut r.send_burst)?;
        self.count("rate_limit", "heartbeat_per_min", 0, 1_000_000, &mut r.heartbeat_per_min)?;
        self.count("rate_limit", "search_per_min", 0, 1_000_000, &mut r.search_per_min)?;
        self.count("rate_limit", "typing_per_s", 0, 1_000_000, &mut r.typing_per_s)?;
        self.count("rate_limit", "typing_burst", 0, 1_000_000, &mut r.typing_burst)?;
        Ok(())
    }

    /// Takes `[section] key` out of the document, if present.
    fn take(&mut self, section: &str, key: &str) -> Result<Option<toml::Value>, ConfigError> {
        self.asked.push((section.to_string(), key.to_string()));
        match self.table.get_mut(section) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(t.remove(key)),
            Some(_) => Err(ConfigError(format!("[{section}] must be a table"))),
        }
    }

    fn has(&self, section: &str, key: &str) -> bool {
        self.table.get(section).and_then(|t| t.as_table()).is_some_and(|t| t.contains_key(key))
    }

    fn string(&mut self, s: &str, k: &str, out: &mut String) -> Result<(), ConfigError> {
        match self.take(s, k)? {
            None => Ok(()),
            Some(toml::Value::String(v)) => {
                *out = v;
                Ok(())
            }
            Some(v) => Err(ConfigError(format!("[{s}] {k}: expected a string, got {v}"))),
        }
    }

    fn path(&mut self, s: &str, k: &str, out: &mut PathBuf) -> Result<(), ConfigError> {
        let mut v = out.to_string_lossy().into_owned();
        self.string(s, k, &mut v)?;
        *out = PathBuf::from(v);
        Ok(())
    }

    fn addr(&mut self, s: &str, k: &str, out: &mut Option<SocketAddr>) -> Result<(), ConfigError> {
        let mut v = out.map(|a| a.to_string()).unwrap_or_default();
        self.string(s, k, &mut v)?;
        *out = if v.trim().is_empty() {
            None
        } else {
            Some(v.trim().parse().map_err(|_| {
                ConfigError(format!("[{s}] {k}: \"{v}\" is not an address like 127.0.0.1:8080"))
            })?)
        };
        Ok(())
    }

    fn flag(&mut self, s: &str, k: &str, out: &mut bool) -> Result<(), ConfigError> {
        match self.take(s, k)? {
            None => Ok(()),
            Some(toml::Value::Boolean(v)) => {
                *out = v;
                Ok(())
            }
            Some(v) => Err(ConfigError(format!("[{s}] {k}: expected true or false, got {v}"))),
        }
    }

    fn count<T>(
        &mut self,
        s: &str,
        k: &str,
        min: i64,
        max: i64,
        out: &mut T,
    ) -> Result<(), ConfigError>
    where
        T: TryFrom<i64>,
    {
        match self.take(s, k)? {
            None => Ok(()),
            Some(toml::Value::Integer(v)) if (min..=max).contains(&v) => {
                *out = T::try_from(v).map_err(|_| {
                    ConfigError(format!("[{s}] {k}: {v} does not fit this machine"))
                })?;
                Ok(())
            }
            Some(v) => Err(ConfigError(format!(
                "[{s}] {k}: expected an integer from {min} to {max}, got {v}"
            ))),
        }
    }

    fn secs(&mut self, s: &str, k: &str, out: &mut Duration) -> Result<(), ConfigError> {
        match self.take(s, k)? {
            None => Ok(()),
            Some(toml::Value::Integer(v)) if (1..=86_400).contains(&v) => {
                *out = Duration::from_secs(v as u64);
                Ok(())
            }
            Some(toml::Value::Float(v)) if (0.01..=86_400.0).contains(&v) => {
                *out = Duration::from_secs_f64(v);
                Ok(())
            }
            Some(v) => {
                Err(ConfigError(format!("[{s}] {k}: expected seconds from 0.01 to 86400, got {v}")))
            }
        }
    }

    fn strings(&mut self, s: &str, k: &str, out: &mut Vec<String>) -> Result<(), ConfigError> {
        match self.take(s, k)? {
            None => Ok(()),
            Some(toml::Value::Array(items)) => {
                out.clear();
                for item in items {
                    match item {
                        toml::Value::String(v) => out.push(v),
                        v => {
                            return Err(ConfigError(format!(
                                "[{s}] {k}: expected a list of strings, got {v}"
                            )))
                        }
                    }
                }
                Ok(())
            }
            Some(v) => Err(ConfigError(format!("[{s}] {k}: expected a list of strings, got {v}"))),
        }
    }

    /// `[cluster]`: both keys or neither, and only on PostgreSQL.
    fn cluster(&mut self, c: &mut Config) -> Result<(), ConfigError> {
        let (mut redis, mut node) = (String::new(), String::new());
        self.string("cluster", "redis", &mut redis)?;
        self.string("cluster", "node", &mut node)?;
        match (redis.is_empty(), node.is_empty()) {
            (true, true) => return Ok(()),
            (false, false) => {}
            _ => return Err(err("[cluster] redis and node: give both or neither")),
        }
        if c.store.url.is_none() {
            return Err(err(
                "[cluster] needs [store] url: the nodes share one PostgreSQL database",
            ));
        }
        if !redis.starts_with("redis://") {
            return Err(err("[cluster] redis: expected redis://host:port"));
        }
        let name_ok = node.len() <= 64
            && node.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !name_ok {
            return Err(err("[cluster] node: 1 to 64 of A-Z a-z 0-9 _ . -"));
        }
        c.cluster = Some(ClusterConfig { redis, node });
        Ok(())
    }

    /// Warns about every key no reader took.
    fn finish(self) {
        for (section, value) in &self.table {
            match value {
                toml::Value::Table(t) if KNOWN_SECTIONS.contains(&section.as_str()) => {
                    for key in t.keys() {
                        (self.warn)(format!("unknown key [{section}] {key} ignored"));
                    }
                }
                _ => (self.warn)(format!("unknown section or key {section} ignored")),
            }
        }
    }
}

const KNOWN_SECTIONS: &[&str] = &[
    "server",
    "tls",
    "limits",
    "websocket",
    "store",
    "password",
    "session",
    "history",
    "rate_limit",
    "cluster",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Result<Config, ConfigError>, Vec<String>) {
        let mut warnings = Vec::new();
        let r = Config::parse(text, &mut |w| warnings.push(w));
        (r, warnings)
    }

    #[test]
    fn shipped_config_loads_without_warnings() {
        let text = include_str!("../../conf/imd.conf");
        let (c, w) = parse(text);
        let c = c.expect("shipped config is valid");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.transport.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.transport.tls_listen, Some("127.0.0.1:8443".parse().unwrap()));
        assert_eq!(c.transport.tls, Some(TlsSource::SelfSigned));
        assert_eq!(c.password.m_kib, 19456);
        assert_eq!(c.transport.connections_per_ip, 256);
        assert!(c.history.enabled, "conversations are kept by default (§10)");
        assert_eq!((c.history.retention_days, c.history.login_backlog), (0, 1000));
        assert_eq!((c.rate_limit.typing_per_s, c.rate_limit.typing_burst), (2, 5));
        assert_eq!((c.session.max_devices, c.session.remember_days), (5, 30));
    }

    /// Every `(section, key)` imd reads.
    fn known_keys() -> Vec<(String, String)> {
        let mut doc = Doc { table: toml::Table::new(), warn: &mut |_| {}, asked: Vec::new() };
        doc.read(&mut Config::default()).expect("an empty document reads");
        doc.asked
    }

    /// A value as README.md's Configuration table writes a default.
    fn as_readme(v: &toml::Value) -> String {
        match v {
            toml::Value::String(s) if s.is_empty() => "\"\"".to_string(),
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// The shipped file is where an operator looks first: a key missing there, shipped
    /// with another value than the default, or left without a comment misleads them.
    #[test]
    fn the_shipped_config_lists_every_key_with_its_default_and_a_comment() {
        let text = include_str!("../../conf/imd.conf");
        let table: toml::Table = text.parse().expect("TOML");
        for (s, k) in known_keys() {
            // A key with no default (`[store] url`) is shown commented out.
            let shown = table.get(&s).and_then(|t| t.get(&k)).is_some()
                || text.lines().any(|l| l.starts_with(&format!("#{k} = ")));
            assert!(shown, "conf/imd.conf lacks [{s}] {k}");
        }
        let (c, _) = parse(text);
        assert_eq!(format!("{:?}", c.expect("valid")), format!("{:?}", Config::default()));
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.contains(" = ") || line.starts_with('#') {
                continue;
            }
            // A group of keys may share the comment above its first line.
            let above = lines[..i].iter().rev().find(|l| !l.contains(" = ") || l.starts_with('#'));
            assert!(
                above.is_some_and(|l| l.starts_with('#')),
                "conf/imd.conf line {}: `{line}` has no comment above it",
                i + 1
            );
        }
    }

    #[test]
    fn the_readme_lists_every_key_with_its_default() {
        let readme = include_str!("../../README.md");
        let section = readme.split("\n## Configuration").nth(1).expect("a Configuration section");
        let section = section.split("\n## ").next().unwrap_or_default();
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`').skip(1).step_by(2).map(str::to_string).collect()
        };
        let mut documented = std::collections::BTreeMap::new();
        for row in section.lines().filter(|l| l.starts_with("| `[")) {
            let cells: Vec<&str> = row.split(" | ").collect();
            let (names, mut defaults) = (ticked(cells[0]), ticked(cells[1]));
            if cells[1] == "none" {
                defaults.push("none".to_string());
            }
            let (s, first) = names[0].split_once("] ").expect("`[section] key`");
            let s = s.trim_start_matches('[');
            let keys: Vec<&str> =
                std::iter::once(first).chain(names[1..].iter().map(|k| k.as_str())).collect();
            assert!(defaults.len() == 1 || defaults.len() == keys.len(), "README row: {row}");
            for (i, k) in keys.iter().enumerate() {
                let d = &defaults[if defaults.len() == 1 { 0 } else { i }];
                documented.insert((s.to_string(), k.to_string()), d.clone());
            }
        }
        let conf: toml::Table = include_str!("../../conf/imd.conf").parse().expect("TOML");
        for (s, k) in known_keys() {
            let shipped = conf.get(&s).and_then(|t| t.get(&k)).map_or("none".into(), as_readme);
            let Some(d) = documented.remove(&(s.clone(), k.clone())) else {
                panic!("README's Configuration table lacks [{s}] {k}");
            };
            assert_eq!(d, shipped, "README's default of [{s}] {k}");
        }
        assert!(documented.is_empty(), "README documents keys imd does not read: {documented:?}");
    }

    #[test]
    fn devices_are_bounded() {
        let (c, _) = parse("[session]\nmax_devices = 1\nremember_days = 0\n");
        let c = c.unwrap();
        assert_eq!((c.session.max_devices, c.session.remember_days), (1, 0));
        for bad in ["max_devices = 0", "max_devices = 1001", "remember_days = 3651"] {
            let (c, _) = parse(&format!("[session]\n{bad}\n"));
            assert!(c.unwrap_err().to_string().contains("[session]"), "{bad}");
        }
    }

    #[test]
    fn offline_messages_is_an_unknown_key_now() {
        let (c, w) = parse("[session]\noffline_messages = true\n[history]\nenabled = true\n");
        assert!(c.unwrap().history.enabled);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("offline_messages"), "{w:?}");
    }

    #[test]
    fn empty_config_is_the_defaults() {
        let (c, w) = parse("");
        let c = c.unwrap();
        assert!(w.is_empty());
        assert_eq!(c.rate_limit.register_per_min, 10);
        assert_eq!(c.transport.head_bytes, 16 * 1024);
        assert_eq!(c.fields.payload, 64 * 1024);
        assert_eq!(c.requests.login_requests, 100);
        assert_eq!(c.requests.pending_per_user, 1000);
        assert_eq!(c.transport.connections_per_ip, 256);
        assert_eq!(c.static_cache_bytes, 16 << 20);
    }

    #[test]
    fn request_limits_are_read_and_checked() {
        let (c, w) = parse("[limits]\nlogin_requests = 5\npending_requests_per_user = 7");
        let c = c.unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!((c.requests.login_requests, c.requests.pending_per_user), (5, 7));
        let (c, _) = parse("[limits]\npending_requests_per_user = 0");
        assert!(c.unwrap_err().to_string().contains("pending_requests_per_user"));
    }

    #[test]
    fn unknown_keys_are_warned_about() {
        let (c, w) = parse("[server]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n[nope]\nx = 1\n");
        assert!(c.is_ok());
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().any(|w| w.contains("listne")));
        assert!(w.iter().any(|w| w.contains("nope")));
    }

    #[test]
    fn bad_values_stop_with_one_line() {
        for (text, needle) in [
            ("[server]\nworkers = -1", "workers"),
            ("[server]\nlisten = \"nowhere\"", "listen"),
            ("[store]\nsynchronous = \"sometimes\"", "synchronous"),
            ("[store]\npath = \"a.db\"\nurl = \"postgres://h/imd\"", "not both"),
            ("[store]\nurl = \"imd.sqlite3\"", "url"),
            ("[store]\nurl = \"postgres://h/imd?sslmode=require\"", "TLS"),
            ("[websocket]\nping_interval_s = 100\nidle_timeout_s = 50", "idle_timeout_s"),
            ("[tls]\ncert = \"a.pem\"", "together"),
            ("[server]\nlisten = \"\"\n[tls]\nlisten = \"\"", "nothing to serve"),
            ("[limits]\nhead_bytes = \"big\"", "head_bytes"),
            ("[server\nlisten=1", ""),
        ] {
            let (c, _) = parse(text);
            let e = c.expect_err(text).to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn cluster_needs_both_keys_and_postgres() {
        let pg = "[store]\nurl = \"postgres://h/imd\"\n";
        let (c, w) =
            parse(&format!("{pg}[cluster]\nredis = \"redis://127.0.0.1:6379\"\nnode = \"a-1\"\n"));
        let cluster = c.unwrap().cluster.expect("cluster");
        assert_eq!(
            (cluster.redis.as_str(), cluster.node.as_str()),
            ("redis://127.0.0.1:6379", "a-1")
        );
        assert!(w.is_empty(), "{w:?}");
        assert!(parse(pg).0.unwrap().cluster.is_none());
        for (bad, why) in [
            (format!("{pg}[cluster]\nredis = \"redis://r\"\n"), "both or neither"),
            (format!("{pg}[cluster]\nnode = \"a\"\n"), "both or neither"),
            ("[cluster]\nredis = \"redis://r\"\nnode = \"a\"\n".to_string(), "[store] url"),
            (format!("{pg}[cluster]\nredis = \"http://r\"\nnode = \"a\"\n"), "redis://"),
            (format!("{pg}[cluster]\nredis = \"redis://r\"\nnode = \"a b\"\n"), "[cluster] node"),
        ] {
            let e = parse(&bad).0.unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_url_chooses_postgres_and_the_default_is_the_file() {
        let (c, w) = parse("[store]\nurl = \"postgres://imd:pw@db:5432/imd\"");
        let url = c.unwrap().store.url.expect("url");
        assert_eq!(url.as_str(), "postgres://imd:pw@db:5432/imd");
        assert!(w.is_empty(), "{w:?}");
        let (c, _) = parse("[store]\npath = \"x.sqlite3\"");
        assert!(c.unwrap().store.url.is_none());
        assert!(Config::default().store.url.is_none());
    }

    #[test]
    fn empty_listen_disables_a_listener() {
        let (c, _) = parse("[tls]\nlisten = \"\"");
        assert_eq!(c.unwrap().transport.tls_listen, None);
    }
}
