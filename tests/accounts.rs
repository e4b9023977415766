//! docs/protocol.md §3: register, query, erase, profile update — every code, in the
//! contract's check order, over the plain and the TLS listener.

mod common;

use common::*;
use serde_json::{json, Value};

fn both(test: impl Fn(&TestServer, Via)) {
    let server = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        test(&server, via);
    }
}

#[test]
fn register_codes_in_order() {
    both(|s, via| {
        let u = User::new("reg");
        let acct = u.account.as_str();
        // Wrong method → 403.
        assert_code(&get(s, via, "/im/register"), 403, "Protocol Error");
        // Body not an object, bad JSON, field of the wrong type → 403.
        for body in ["[1,2]", "{", "\"x\"", "{\"account\":5,\"password\":\"p\",\"mail\":\"m\"}"] {
            let r = http(s, via, "POST", "/im/register", body);
            assert_eq!(r.status, 200);
            assert_code(&r.json(), 403, "Protocol Error");
        }
        // 403 comes before the emptiness checks.
        let v = post(s, via, "/im/register", &json!({"account": "", "sign": 7}));
        assert_code(&v, 403, "Protocol Error");
        let v =
            post(s, via, "/im/register", &json!({"account": "  ", "password": "p", "mail": "m"}));
        assert_code(&v, 501, "Account Info Empty");
        let v =
            post(s, via, "/im/register", &json!({"account": acct, "password": "   ", "mail": "m"}));
        assert_code(&v, 502, "Password Info Empty");
        let v =
            post(s, via, "/im/register", &json!({"account": acct, "password": "p", "mail": null}));
        assert_code(&v, 503, "Secure Mail Info Empty");
        let long = "x".repeat(65);
        let v =
            post(s, via, "/im/register", &json!({"account": long, "password": "p", "mail": "m"}));
        assert_code(&v, 527, "Field Too Long");
        let v = post(
            s,
            via,
            "/im/register",
            &json!({"account": acct, "password": "p", "mail": "m", "sign": "s".repeat(257)}),
        );
        assert_code(&v, 527, "Field Too Long");
        for bad in ["a b", "a\u{7}b", "a\tb", "a\u{200B}b", "a\u{202E}b", "\u{3164}", "a\u{E0041}"]
        {
            let v = post(
                s,
                via,
                "/im/register",
                &json!({"account": bad, "password": "p", "mail": "m"}),
            );
            assert_code(&v, 528, "Field Invalid");
        }
        let body = json!({"account": acct, "password": "p", "mail": "m", "friends": {"x": 1}});
        assert_code(&post(s, via, "/im/register", &body), 200, "Success");
        // Taken, case-insensitively.
        let body = json!({"account": acct.to_uppercase(), "password": "p", "mail": "m"});
        assert_code(&post(s, via, "/im/register", &body), 504, "Account Already Exists");
    });
}

#[test]
fn register_defaults_name_to_account_and_profile_fields_to_empty() {
    let s = TestServer::start();
    let acct = User::new("Defaults").account;
    let body = json!({"account": format!("  {acct} "), "password": " secret ", "mail": "m@x"});
    assert_code(&post(&s, Via::Plain, "/im/register", &body), 200, "Success");
    let user = User { account: acct.clone(), password: " secret ".into(), name: acct.clone() };
    let session = Session::login(&s, Via::Plain, &user);
    let p = &session.login["profile"];
    assert_eq!(p["name"], acct.as_str(), "name defaults to the (trimmed) account");
    for k in ["picture", "sex", "birthday", "sign"] {
        assert_eq!(p[k], "", "{k} never set comes back as \"\"");
    }
    assert!(session.login["friends"].is_null());
    assert!(session.login["requests"].is_null());
}

#[test]
fn query_reports_existence() {
    both(|s, via| {
        let u = User::new("q");
        u.register(s);
        assert_code(&get(s, via, "/im/query?account="), 501, "Account Info Empty");
        assert_code(&get(s, via, "/im/query"), 501, "Account Info Empty");
        let v = get(s, via, &format!("/im/query?account={}", enc(&u.account.to_uppercase())));
        assert_code(&v, 200, "Success");
        assert_eq!(v["exists"], true);
        let v = post(s, via, "/im/query", &json!({"account": "nobody-at-all"}));
        assert_eq!(v["exists"], false);
        let r = http(s, via, "PUT", "/im/query?account=x", "");
        assert_code(&r.json(), 403, "Protocol Error");
    });
}

#[test]
fn rate_limits_answer_524() {
    let s = TestServer::start_with("[rate_limit]\nregister_per_min = 2\nquery_per_min = 3\n");
    for _ in 0..3 {
        assert_code(&get(&s, Via::Plain, "/im/query?account=x"), 200, "Success");
    }
    assert_code(&get(&s, Via::Plain, "/im/query?account=x"), 524, "Too Many Requests");
    User::new("rl1").register(&s);
    User::new("rl2").register(&s);
    let u = User::new("rl3");
    let body = json!({"account": u.account, "password": "p", "mail": "m"});
    assert_code(&post(&s, Via::Plain, "/im/register", &body), 524, "Too Many Requests");
}

#[test]
fn invisible_characters_are_refused_wherever_an_account_is_taken() {
    let s = TestServer::start();
    let u = User::new("visible");
    u.register(&s);
    // Each of these looks like `u.account` (or like nothing at all) on a screen.
    let lookalikes = [
        format!("{}\u{200B}", u.account),
        format!("\u{FEFF}{}", u.account),
        format!("{}\u{200D}", u.account),
        format!("\u{202E}{}", u.account),
        format!("{}\u{AD}", u.account),
        format!("{}\u{FE0F}", u.account),
        format!("{}\u{E0020}", u.account),
        "\u{3164}".to_string(),
        "\u{115F}\u{1160}".to_string(),
    ];
    for account in &lookalikes {
        let body = json!({"account": account, "password": "p", "mail": "m"});
        assert_code(&post(&s, Via::Plain, "/im/register", &body), 528, "Field Invalid");
        let v = get(&s, Via::Plain, &format!("/im/query?account={}", enc(account)));
        assert_code(&v, 528, "Field Invalid");
        let mut ws = Ws::open(&s, Via::Plain, "/im/login");
        ws.send_json(&json!({"account": account, "password": u.password}));
        assert_code(&ws.recv(), 505, "Account & Password Wrong");
    }
}

#[test]
fn rate_limits_come_before_the_method_check() {
    let s = TestServer::start_with("[rate_limit]\nregister_per_min = 1\nquery_per_min = 1\n");
    User::new("first").register(&s);
    // docs/protocol.md §2: where an operation does not place 524, it is checked first.
    assert_code(&get(&s, Via::Plain, "/im/register"), 524, "Too Many Requests");
    assert_code(&get(&s, Via::Plain, "/im/query?account=x"), 200, "Success");
    let r = http(&s, Via::Plain, "PUT", "/im/query?account=x", "");
    assert_code(&r.json(), 524, "Too Many Requests");
}

#[test]
fn racing_registrations_of_one_account_have_one_winner() {
    let s = TestServer::start();
    let acct = User::new("race").account;
    let oks: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let (s, acct) = (&s, acct.clone());
                scope.spawn(move || {
                    let body = json!({"account": acct, "password": "p", "mail": "m"});
                    post(s, Via::Plain, "/im/register", &body)["code"].as_u64().unwrap_or(0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(oks.iter().filter(|c| **c == 200).count(), 1, "{oks:?}");
    assert_eq!(oks.iter().filter(|c| **c == 504).count(), 19, "{oks:?}");
}

#[test]
fn erase_checks_and_purges_everything() {
    both(|s, via| {
        let (ua, ub, uc) = (User::new("era"), User::new("erb"), User::new("erc"));
        for u in [&ua, &ub, &uc] {
            u.register(s);
        }
        let mut a = Session::login(s, via, &ua);
        let mut b = Session::login(s, via, &ub);
        let mut c = Session::login(s, via, &uc);
        befriend(s, &mut a, &mut b);
        // A pending request from a to c, and one from c to a.
        let r = get(s, via, &format!("/im/friends/request?{}&to={}", a.auth(), c.id));
        assert_code(&r, 200, "Success");
        assert_code(&c.ws.recv(), 520, "Apply For a Friend");

        let erase = |body: serde_json::Value| post(s, via, "/im/erase", &body);
        assert_code(&get(s, via, "/im/erase"), 403, "Protocol Error");
        assert_code(&erase(json!({"id": a.id})), 514, "Auth Info Empty");
        assert_code(&erase(json!({"token": a.token})), 517, "Account ID Empty");
        assert_code(&erase(json!({"id": a.id, "token": b.token})), 515, "Auth Illegal");
        assert_code(&erase(json!({"id": a.id, "token": a.token})), 502, "Password Info Empty");
        let wrong = json!({"id": a.id, "token": a.token, "password": "nope"});
        assert_code(&erase(wrong), 505, "Account & Password Wrong");
        let right = json!({"id": a.id, "token": a.token, "password": ua.password});
        assert_code(&erase(right), 200, "Success");

        // The former friend hears 304; a's socket closes; a's token is dead.
        let push = b.ws.recv();
        assert_code(&push, 304, "Friend Removed");
        assert_eq!(push["id"], a.id.as_str());
        a.ws.expect_close();
        let r = get(s, via, &format!("/im/friends/list?{}", a.auth()));
        assert_code(&r, 515, "Auth Illegal");
        // Nothing of a is left: account free, friendship and requests gone.
        let v = get(s, via, &format!("/im/query?account={}", ua.account));
        assert_eq!(v["exists"], false);
        assert!(get(s, via, &format!("/im/friends/list?{}", b.auth()))["friends"].is_null());
        assert!(get(s, via, &format!("/im/friends/requests?{}", c.auth()))["requests"].is_null());
        ua.register(s);
    });
}

#[test]
fn profile_update_checks_and_pushes_301() {
    both(|s, via| {
        let (ua, ub) = (User::new("pa"), User::new("pb"));
        ua.register(s);
        ub.register(s);
        let mut a = Session::login(s, via, &ua);
        let mut b = Session::login(s, via, &ub);
        befriend(s, &mut a, &mut b);
        let upd = |body: serde_json::Value| post(s, via, "/im/profile/update", &body);
        assert_code(
            &get(s, via, &format!("/im/profile/update?{}", a.auth())),
            403,
            "Protocol Error",
        );
        assert_code(&upd(json!({"id": a.id, "token": a.token, "sign": 3})), 403, "Protocol Error");
        assert_code(&upd(json!({"id": a.id})), 514, "Auth Info Empty");
        assert_code(&upd(json!({"id": a.id, "token": "0".repeat(32)})), 515, "Auth Illegal");
        let v = upd(json!({"id": a.id, "token": a.token, "new_password": "x"}));
        assert_code(&v, 502, "Password Info Empty");
        let v = upd(
            json!({"id": a.id, "token": a.token, "password": "bad", "new_password": "x", "sign": "new"}),
        );
        assert_code(&v, 505, "Account & Password Wrong");
        let v = upd(json!({"id": a.id, "token": a.token, "name": "n".repeat(65)}));
        assert_code(&v, 527, "Field Too Long");
        // A refused update changed nothing: b hears no 301 yet.
        b.ws.expect_silence(std::time::Duration::from_millis(200));

        let v = upd(json!({"id": a.id, "token": a.token, "sign": " a new sign ", "name": "",
            "account": "ignored", "password": ua.password, "new_password": "fresh pw"}));
        assert_code(&v, 200, "Success");
        let push = b.ws.recv();
        assert_code(&push, 301, "Refresh Friend's Profile");
        assert_eq!(push["id"], a.id.as_str());
        assert_eq!(push["name"], "pal", "b sees a under b's alias");
        assert_eq!(push["sign"], "a new sign");
        for k in ["picture", "sex", "birthday"] {
            assert_eq!(push[k], "");
        }
        // The new password works, the old one does not, the account did not change.
        drop(a);
        let renamed = User { password: "fresh pw".into(), ..ua.clone() };
        let a2 = Session::login(s, via, &renamed);
        assert_eq!(a2.login["profile"]["name"], "pa");
        assert_eq!(a2.login["profile"]["sign"], "a new sign");
    });
}

#[test]
fn profile_update_clears_listed_fields_and_name_goes_back_to_the_account() {
    both(|s, via| {
        let (ua, ub) = (User::new("ca"), User::new("cb"));
        ua.register(s);
        ub.register(s);
        let mut a = Session::login(s, via, &ua);
        let mut b = Session::login(s, via, &ub);
        befriend(s, &mut a, &mut b);
        let upd = |body: serde_json::Value| post(s, via, "/im/profile/update", &body);
        let set = json!({"id": a.id, "token": a.token, "name": "Nick", "sign": "hello",
            "sex": "other", "birthday": "1990-01-02", "picture": "data:image/png;base64,AA=="});
        assert_code(&upd(set), 200, "Success");
        assert_code(&b.ws.recv(), 301, "Refresh Friend's Profile");

        // Not a list of strings, a name outside the list, a field set and cleared: 403,
        // before the auth checks, and nothing changes.
        for clear in [json!("sign"), json!(["sign", 1]), json!(["mail"]), json!(["account"])] {
            let v = upd(json!({"id": a.id, "token": a.token, "clear": clear}));
            assert_code(&v, 403, "Protocol Error");
        }
        assert_code(&upd(json!({"id": a.id, "clear": ["x"]})), 403, "Protocol Error");
        let v = upd(json!({"id": a.id, "token": a.token, "sign": "s", "clear": ["sign"]}));
        assert_code(&v, 403, "Protocol Error");
        b.ws.expect_silence(std::time::Duration::from_millis(200));

        let v = upd(json!({"id": a.id, "token": a.token, "sign": "  ", "clear":
            ["sign", "picture", "sex", "birthday", "name"]}));
        assert_code(&v, 200, "Success");
        let push = b.ws.recv();
        assert_code(&push, 301, "Refresh Friend's Profile");
        for k in ["picture", "sex", "birthday", "sign"] {
            assert_eq!(push[k], "", "{k} cleared");
        }
        // An empty list and null change nothing.
        assert_code(&upd(json!({"id": a.id, "token": a.token, "clear": []})), 200, "Success");
        assert_code(&upd(json!({"id": a.id, "token": a.token, "clear": null})), 200, "Success");
        drop(a);
        let a2 = Session::login(s, via, &ua);
        let p = &a2.login["profile"];
        assert_eq!(p["name"], ua.account.as_str(), "a cleared name is the account again");
        for k in ["picture", "sex", "birthday", "sign"] {
            assert_eq!(p[k], "", "{k} stays cleared");
        }
        let v = get(s, via, &format!("/im/friends/found?{}&name={}", b.auth(), ua.account));
        assert_eq!(v["found"][0]["name"], ua.account.as_str(), "search sees the cleared name");
    });
}

#[test]
fn own_mail_is_in_the_login_profile_and_never_reaches_friends() {
    let s = TestServer::start();
    let (ua, ub) = (User::new("ma"), User::new("mb"));
    ua.register(&s);
    ub.register(&s);
    let mut a = Session::login(&s, Via::Plain, &ua);
    let mut b = Session::login(&s, Via::Plain, &ub);
    assert_eq!(a.login["profile"]["mail"], format!("{}@example.com", ua.account));
    befriend(&s, &mut a, &mut b);
    let v = post(
        &s,
        Via::Plain,
        "/im/profile/update",
        &json!({"id": a.id, "token": a.token, "mail": "new@example.com", "sign": "x"}),
    );
    assert_code(&v, 200, "Success");
    let push = b.ws.recv();
    assert_code(&push, 301, "Refresh Friend's Profile");
    assert!(push.get("mail").is_none(), "{push}");
    let v = get(&s, Via::Plain, &format!("/im/friends/found?{}&name={}", b.auth(), ua.account));
    assert!(v["found"][0].get("mail").is_none(), "{v}");
    drop(b);
    let b2 = Session::login(&s, Via::Plain, &ub);
    assert!(b2.login["friends"][0].get("mail").is_none());
    assert_eq!(b2.login["profile"]["mail"], format!("{}@example.com", ub.account));
    drop(a);
    let a2 = Session::login(&s, Via::Plain, &ua);
    assert_eq!(a2.login["profile"]["mail"], "new@example.com");
}

/// A request through `Handler::request`, with no connection to answer later: what the
/// fuzz targets do.
fn inline(app: &imd::App, remote: &reactor::Remote, target: &str, body: &Value) -> Value {
    use reactor::Handler;
    let req = reactor::Request {
        method: "POST".to_string(),
        target: target.to_string(),
        headers: vec![("Host".to_string(), b"localhost".to_vec())],
        body: body.to_string().into_bytes(),
        peer: std::net::SocketAddr::from(([127, 0, 0, 1], 40_000)),
        listener: reactor::Listener::Plain,
    };
    serde_json::from_slice(&app.request(req, remote).body).expect("JSON reply")
}

#[test]
fn without_a_connection_password_work_answers_on_the_calling_thread() {
    let dir = temp_dir();
    let app = imd::App::new(config(&dir, "")).expect("app");
    let detached = reactor::internals::DetachedRemote::new().expect("remote");
    let body = json!({"account": "inline", "password": "p", "mail": "m"});
    assert_code(&inline(&app, detached.remote(), "/im/register", &body), 200, "Success");
    assert_code(
        &inline(&app, detached.remote(), "/im/register", &body),
        504,
        "Account Already Exists",
    );
    let body = json!({"id": "f".repeat(32), "token": "f".repeat(32), "password": "p"});
    assert_code(&inline(&app, detached.remote(), "/im/erase", &body), 515, "Auth Illegal");
    let _ = std::fs::remove_dir_all(dir);
}
