//! The daemon configuration every in-process test starts from, one source for the
//! daemon's tests (`tests/common`) and imd-load's (`benches/load/tests`, which include
//! this file by its path): both listeners on 127.0.0.1:0, two workers, the store in the
//! test's own directory at `synchronous = "normal"`, the cheapest argon2 and no rate
//! limits. Each suite lays its own sections and keys over it.

use std::path::Path;

/// The base configuration, with the store in `dir` and static files from `web_root`,
/// then each of `layers` (TOML) over it in turn.
pub fn config_text(dir: &Path, web_root: &str, layers: &[&str]) -> String {
    let base = format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 2
web_root = "{web_root}"
[tls]
listen = "127.0.0.1:0"
self_signed = true
[store]
path = "{db}"
synchronous = "normal"
[password]
argon2_m_kib = 64
argon2_t = 1
argon2_p = 1
[rate_limit]
register_per_min = 0
query_per_min = 0
login_fail_per_min = 0
send_per_s = 0
heartbeat_per_min = 0
search_per_min = 0
"#,
        db = dir.join("imd.sqlite3").display()
    );
    layers.iter().fold(base, |text, layer| merge_toml(&text, layer))
}

/// `extra` over `base`: a section in both gets `extra`'s keys (a key in both takes
/// `extra`'s value, and a `[store] url` drops the `path`); a section only in `extra`
/// is added.
fn merge_toml(base: &str, extra: &str) -> String {
    let mut t: toml::Table = base.parse().expect("base toml");
    let e: toml::Table = extra.parse().expect("extra toml");
    for (section, v) in e {
        match (t.get_mut(&section), v) {
            (Some(toml::Value::Table(dst)), toml::Value::Table(src)) => {
                // A PostgreSQL URL replaces the test's SQLite file: one or the other.
                if section == "store" && src.contains_key("url") {
                    dst.remove("path");
                }
                dst.extend(src)
            }
            (_, v) => {
                t.insert(section, v);
            }
        }
    }
    t.to_string()
}
