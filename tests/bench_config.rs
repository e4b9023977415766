//! The load bench's configuration (benches/load.conf) against the crowds `make bench`
//! makes: imd-load opens up to 500 sessions at once, and a login refused with 524
//! counts as a failed session, which fails every rate of the search for the maximum.

mod common;

use common::*;
use serde_json::json;

/// Sessions imd-load logs in at once (`MAX_OPENING` of its driver).
const IMD_LOAD_OPENING: usize = 500;

/// One section of benches/load.conf, as TOML for [`TestServer::start_with`].
fn bench_section(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/load.conf");
    let text = std::fs::read_to_string(path).expect("benches/load.conf");
    let conf: toml::Table = text.parse().expect("load.conf is TOML");
    let section = conf.get(name).and_then(toml::Value::as_table).expect("section");
    format!("[{name}]\n{}", toml::to_string(section).expect("section as TOML"))
}

#[test]
fn the_bench_password_pool_takes_imd_loads_logins_at_once() {
    // Each login here is a socket on both sides of this process.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    // The bench's per-address cap is off too: every load session comes from loopback.
    let s = TestServer::start_with(&(bench_section("password") + &bench_section("limits")));
    let users: Vec<User> = (0..IMD_LOAD_OPENING).map(|i| User::new(&format!("crowd{i}"))).collect();
    for u in &users {
        u.register(&s);
    }
    let mut sockets: Vec<Ws> =
        users.iter().map(|_| Ws::open(&s, Via::Plain, "/im/login")).collect();
    for (ws, u) in sockets.iter_mut().zip(&users) {
        ws.send_json(&json!({"account": u.account, "password": u.password}));
    }
    let refused = sockets.iter_mut().map(|ws| ws.recv()).filter(|r| r["code"] != 200).count();
    assert_eq!(refused, 0, "of {IMD_LOAD_OPENING} logins at once");
}
