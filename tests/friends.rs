//! docs/protocol.md §5: search, request, add, decline, remove, list, requests — every code
//! in the contract's order and every push (520, 303, 305, 304), plain and TLS.

mod common;

use common::*;
use serde_json::json;

/// Three logged-in users on `via`.
fn trio(s: &TestServer, via: Via, tag: &str) -> (Session, Session, Session) {
    let users: Vec<User> =
        ["a", "b", "c"].iter().map(|n| User::new(&format!("{tag}{n}"))).collect();
    for u in &users {
        u.register(s);
    }
    let a = Session::login(s, via, &users[0]);
    let b = Session::login(s, via, &users[1]);
    let c = Session::login(s, via, &users[2]);
    (a, b, c)
}

#[test]
fn auth_checks_come_first_on_every_route() {
    let s = TestServer::start();
    let (a, b, _) = trio(&s, Via::Plain, "auth");
    for route in ["found", "request", "add", "decline", "remove", "list", "requests"] {
        let path = format!("/im/friends/{route}");
        assert_code(&get(&s, Via::Plain, &format!("{path}?id={}", a.id)), 514, "Auth Info Empty");
        assert_code(
            &get(&s, Via::Plain, &format!("{path}?token={}", a.token)),
            517,
            "Account ID Empty",
        );
        let cross = format!("{path}?id={}&token={}", a.id, b.token);
        assert_code(&get(&s, Via::Plain, &cross), 515, "Auth Illegal");
        let v = post(&s, Via::Tls, &path, &json!({"id": a.id, "token": "f".repeat(32)}));
        assert_code(&v, 515, "Auth Illegal");
        let v = post(&s, Via::Tls, &path, &json!({"id": a.id, "token": 12}));
        assert_code(&v, 403, "Protocol Error");
        let r = http(&s, Via::Plain, "DELETE", &format!("{path}?{}", a.auth()), "");
        assert_code(&r.json(), 403, "Protocol Error");
    }
}

#[test]
fn search() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        let (a, b, c) = trio(&s, via, "Srch");
        let found = |name: &str| {
            get(&s, via, &format!("/im/friends/found?{}&name={}", a.auth(), enc(name)))
        };
        assert_code(&found(""), 516, "Name Empty");
        assert_code(&found("   "), 516, "Name Empty");
        assert_code(&found(&"n".repeat(65)), 527, "Field Too Long");
        // Case-insensitive substring of the name; the searcher is excluded.
        let v = found(&b.login["profile"]["name"].as_str().expect("name")[..4].to_lowercase());
        assert_code(&v, 200, "Success");
        let ids: Vec<&str> = v["found"]
            .as_array()
            .expect("found")
            .iter()
            .map(|e| e["id"].as_str().unwrap_or(""))
            .collect();
        assert!(ids.contains(&b.id.as_str()) && ids.contains(&c.id.as_str()));
        assert!(!ids.contains(&a.id.as_str()), "the searcher is not listed");
        let entry = &v["found"][0];
        for k in ["id", "name", "picture", "sex", "birthday", "sign"] {
            assert!(entry[k].is_string(), "{k}: {entry}");
        }
        assert!(found("zzz-nobody-zzz")["found"].is_null(), "no match → null");
    }
}

/// Search answers from the daemon's memory: every change to who exists and what they
/// are called shows in the next search, and nothing erased is listed.
#[test]
fn search_follows_registration_rename_and_erase() {
    let s = TestServer::start();
    let via = Via::Plain;
    let seeker = User::new("seeker");
    let (ua, ub, uc) = (User::new("Quokka"), User::new("quokkab"), User::new("Zebra"));
    for u in [&seeker, &ua, &ub, &uc] {
        u.register(&s);
    }
    let me = Session::login(&s, via, &seeker);
    let mut a = Session::login(&s, via, &ua);
    let b = Session::login(&s, via, &ub);
    let c = Session::login(&s, via, &uc);
    let found = |name: &str| {
        let v = get(&s, via, &format!("/im/friends/found?{}&name={}", me.auth(), enc(name)));
        assert_code(&v, 200, "Success");
        v
    };
    let ids = |name: &str| -> Vec<String> {
        let v = found(name);
        v["found"].as_array().map_or(Vec::new(), |a| {
            a.iter().map(|e| e["id"].as_str().unwrap_or("").to_string()).collect()
        })
    };
    // "Quokka" sorts before "quokkab" (upper case first); Zebra matches by account only.
    assert_eq!(ids("QUOKKA"), [a.id.as_str(), b.id.as_str()]);
    assert_eq!(ids(&uc.account.to_uppercase()), [c.id.as_str()]);

    // A rename moves b out of one search and into another, in its new place.
    let upd = |who: &Session, body: serde_json::Value| {
        let mut body = body;
        body["id"] = json!(who.id);
        body["token"] = json!(who.token);
        let v = post(&s, via, "/im/profile/update", &body);
        assert_code(&v, 200, "Success");
    };
    upd(&b, json!({"name": "Aardvark", "sign": "renamed"}));
    assert_eq!(ids("quokka"), [a.id.as_str()]);
    let v = found("AARDV");
    assert_eq!(v["found"][0]["id"], b.id.as_str());
    assert_eq!(v["found"][0]["name"], "Aardvark");
    assert_eq!(v["found"][0]["sign"], "renamed");

    // A picture too large to keep in memory is still shown, from the store.
    let picture = format!("data:image/png;base64,{}", "A".repeat(4000));
    upd(&a, json!({"picture": picture}));
    let v = found("quokka");
    assert_eq!(v["found"][0]["picture"], picture.as_str());
    assert_eq!(v["found"][0]["name"], "Quokka");

    // Erased: gone from search at once, account and name alike.
    let erase = json!({"id": a.id, "token": a.token, "password": ua.password});
    assert_code(&post(&s, via, "/im/erase", &erase), 200, "Success");
    a.ws.expect_close();
    assert!(found("quokka")["found"].is_null(), "{}", found("quokka"));
    assert!(found(&ua.account)["found"].is_null());

    // Registered: found at once, the same account now a new user.
    ua.register(&s);
    let again = Session::login(&s, via, &ua);
    assert_ne!(again.id, a.id);
    assert_eq!(ids("quokka"), [again.id.as_str()]);
    assert_eq!(ids("aardvark"), [b.id.as_str()]);
    // The searcher is never listed, even by its own account.
    assert!(found(&seeker.account)["found"].is_null());
}

#[test]
fn request_add_and_their_codes() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        let (mut a, mut b, c) = trio(&s, via, "req");
        let req =
            |me: &Session, q: &str| get(&s, via, &format!("/im/friends/request?{}&{q}", me.auth()));
        assert_code(&req(&a, "to="), 519, "Friend Info Empty");
        assert_code(
            &req(&a, &format!("to={}&note={}", b.id, "n".repeat(257))),
            527,
            "Field Too Long",
        );
        assert_code(&req(&a, &format!("to={}", a.id)), 526, "Cannot Befriend Yourself");
        assert_code(&req(&a, &format!("to={}", "0".repeat(32))), 523, "Friend Not Exists");
        assert_code(&req(&a, &format!("to={}&note=hello%20b", b.id)), 200, "Success");
        let push = b.ws.recv();
        assert_code(&push, 520, "Apply For a Friend");
        assert_eq!(
            push["request"],
            json!({"id": a.id, "name": a.login["profile"]["name"], "to": b.id, "note": "hello b"})
        );
        // A repeat replaces the note; b's pending list holds one request.
        assert_code(&req(&a, &format!("to={}&note=again", b.id)), 200, "Success");
        assert_code(&b.ws.recv(), 520, "Apply For a Friend");
        let v = get(&s, via, &format!("/im/friends/requests?{}", b.auth()));
        assert_eq!(v["requests"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["requests"][0]["note"], "again");

        let add =
            |me: &Session, q: &str| get(&s, via, &format!("/im/friends/add?{}&{q}", me.auth()));
        assert_code(&add(&b, "from=&name=x"), 519, "Friend Info Empty");
        assert_code(&add(&b, &format!("from={}&name=", a.id)), 521, "Alias Empty");
        assert_code(
            &add(&b, &format!("from={}&name={}", a.id, "x".repeat(65))),
            527,
            "Field Too Long",
        );
        assert_code(&add(&b, &format!("from={}&name=me", b.id)), 526, "Cannot Befriend Yourself");
        assert_code(&add(&b, &format!("from={}&name=x", "0".repeat(32))), 523, "Friend Not Exists");
        assert_code(&add(&b, &format!("from={}&name=x", c.id)), 525, "Request Not Exists");
        assert_code(&add(&b, &format!("from={}&name=Ally", a.id)), 200, "Success");
        let push = a.ws.recv();
        assert_code(&push, 303, "Friend Added");
        let f = &push["friend"];
        assert_eq!(f["id"], b.id.as_str());
        assert_eq!(f["name"], b.login["profile"]["name"], "a's alias for b defaults to b's name");
        assert_eq!(f["online"], true);
        assert_code(&add(&b, &format!("from={}&name=Ally", a.id)), 522, "Already Be Friend");
        assert_code(&req(&a, &format!("to={}", b.id)), 522, "Already Be Friend");
        // Lists on both sides, with aliases and online flags.
        let v = get(&s, via, &format!("/im/friends/list?{}", b.auth()));
        assert_eq!(v["friends"][0]["name"], "Ally");
        assert_eq!(v["friends"][0]["online"], true);
        assert!(get(&s, via, &format!("/im/friends/requests?{}", b.auth()))["requests"].is_null());
        let _ = (&mut a, &mut b);
    }
}

#[test]
fn crossing_requests_make_friends_at_once() {
    let s = TestServer::start();
    let (mut a, mut b, _) = trio(&s, Via::Tls, "cross");
    let r = get(&s, Via::Tls, &format!("/im/friends/request?{}&to={}", a.auth(), b.id));
    assert_code(&r, 200, "Success");
    assert_code(&b.ws.recv(), 520, "Apply For a Friend");
    let r = get(&s, Via::Tls, &format!("/im/friends/request?{}&to={}", b.auth(), a.id));
    assert_code(&r, 200, "Success");
    let pa = a.ws.recv();
    let pb = b.ws.recv();
    assert_code(&pa, 303, "Friend Added");
    assert_code(&pb, 303, "Friend Added");
    assert_eq!(pa["friend"]["id"], b.id.as_str());
    assert_eq!(pb["friend"]["id"], a.id.as_str());
    assert!(get(&s, Via::Tls, &format!("/im/friends/requests?{}", a.auth()))["requests"].is_null());
    let v = get(&s, Via::Tls, &format!("/im/friends/list?{}", a.auth()));
    assert_eq!(v["friends"][0]["name"], b.login["profile"]["name"]);
}

#[test]
fn decline_and_remove() {
    let s = TestServer::start();
    for via in [Via::Plain, Via::Tls] {
        let (mut a, mut b, c) = trio(&s, via, "dr");
        let dec =
            |me: &Session, q: &str| get(&s, via, &format!("/im/friends/decline?{}&{q}", me.auth()));
        assert_code(&dec(&b, "from="), 519, "Friend Info Empty");
        assert_code(&dec(&b, &format!("from={}", a.id)), 525, "Request Not Exists");
        assert_code(
            &get(&s, via, &format!("/im/friends/request?{}&to={}", a.auth(), b.id)),
            200,
            "Success",
        );
        assert_code(&b.ws.recv(), 520, "Apply For a Friend");
        assert_code(&dec(&b, &format!("from={}", a.id)), 200, "Success");
        let push = a.ws.recv();
        assert_code(&push, 305, "Request Declined");
        assert_eq!(push["id"], b.id.as_str());
        assert_code(&dec(&b, &format!("from={}", a.id)), 525, "Request Not Exists");

        let rm =
            |me: &Session, q: &str| get(&s, via, &format!("/im/friends/remove?{}&{q}", me.auth()));
        assert_code(&rm(&a, "to="), 519, "Friend Info Empty");
        assert_code(&rm(&a, &format!("to={}", c.id)), 512, "Not Relation of Friend");
        befriend(&s, &mut a, &mut b);
        assert_code(&rm(&b, &format!("to={}", a.id)), 200, "Success");
        let push = a.ws.recv();
        assert_code(&push, 304, "Friend Removed");
        assert_eq!(push["id"], b.id.as_str());
        // Both sides are gone.
        assert!(get(&s, via, &format!("/im/friends/list?{}", a.auth()))["friends"].is_null());
        assert!(get(&s, via, &format!("/im/friends/list?{}", b.auth()))["friends"].is_null());
        assert_code(&rm(&a, &format!("to={}", b.id)), 512, "Not Relation of Friend");
    }
}

#[test]
fn requests_survive_an_offline_target_and_show_at_login() {
    let s = TestServer::start();
    let (ua, ub) = (User::new("offa"), User::new("offb"));
    ua.register(&s);
    ub.register(&s);
    let a = Session::login(&s, Via::Plain, &ua);
    let b = Session::login(&s, Via::Plain, &ub);
    let b_id = b.id.clone();
    drop(b);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let r = get(&s, Via::Plain, &format!("/im/friends/request?{}&to={b_id}&note=later", a.auth()));
    assert_code(&r, 200, "Success");
    let b = Session::login(&s, Via::Plain, &ub);
    assert_eq!(
        b.login["requests"],
        json!([{"id": a.id, "name": a.login["profile"]["name"], "to": b_id, "note": "later"}])
    );
}

#[test]
fn search_has_a_budget_per_user_after_the_auth_checks() {
    let s = TestServer::start_with("[rate_limit]\nsearch_per_min = 3\nquery_per_min = 2\n");
    let users: Vec<User> = ["a", "b"].iter().map(|n| User::new(&format!("budget{n}"))).collect();
    for u in &users {
        u.register(&s);
    }
    let a = Session::login(&s, Via::Plain, &users[0]);
    let b = Session::login(&s, Via::Plain, &users[1]);
    let target = b.login["profile"]["name"].as_str().expect("name").to_string();
    let found = |who: &Session, name: &str| {
        get(&s, Via::Plain, &format!("/im/friends/found?{}&name={}", who.auth(), enc(name)))
    };
    // /im/query is spent…
    for _ in 0..2 {
        assert_code(&get(&s, Via::Plain, "/im/query?account=x"), 200, "Success");
    }
    assert_code(&get(&s, Via::Plain, "/im/query?account=x"), 524, "Too Many Requests");
    // …and search, which confirms an exact account, stops at its own budget.
    for _ in 0..3 {
        assert_code(&found(&a, &target), 200, "Success");
    }
    assert_code(&found(&a, &target), 524, "Too Many Requests");
    // After the auth checks: a stranger still learns only that the auth failed.
    let path = format!("/im/friends/found?id={}&token={}&name=x", a.id, b.token);
    assert_code(&get(&s, Via::Plain, &path), 515, "Auth Illegal");
    // Before the name checks, and per user: another user still searches.
    assert_code(&found(&a, ""), 524, "Too Many Requests");
    assert_code(&found(&b, ""), 516, "Name Empty");
    // Logging in again does not refill it.
    let again = Session::login(&s, Via::Plain, &users[0]);
    assert_code(&found(&again, &target), 524, "Too Many Requests");
}
