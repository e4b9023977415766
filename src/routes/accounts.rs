//! Accounts (docs/protocol.md §3): register, query, erase, profile update.

use std::net::IpAddr;

use proto::{Code, Field};
use reactor::{ConnId, Remote, Request};
use store::{NewUser, ProfileUpdate, StoreError};

use crate::app::{App, Deferrable, Fail, Later, Outcome};
use crate::cluster::{fanout, Owner};
use crate::live::directory::{Change, Listing};
use crate::live::token::new_user_id;
use crate::routes::input::Input;

/// Text profile fields a client may set, with their limits.
const PROFILE: [(&str, Field); 5] = [
    ("name", Field::Name),
    ("sex", Field::Sex),
    ("birthday", Field::Birthday),
    ("sign", Field::Sign),
    ("mail", Field::Mail),
];

/// The fields `"clear"` may empty (docs/protocol.md §3.4 ext); `name` goes back to the account.
const CLEARABLE: [&str; 5] = ["name", "picture", "sex", "birthday", "sign"];

/// `POST /im/register` (its rate limit is checked by the router, first of all). The
/// hash is made on the hasher pool, which answers.
pub fn register(app: &App, req: &Request, later: Later<'_>) -> Deferrable {
    let input = Input::json(req)?;
    input.known(&["account", "password", "name", "picture", "sex", "birthday", "sign", "mail"])?;
    let account = input.text("account")?;
    let password = input.raw("password")?.unwrap_or("");
    let mail = input.text("mail")?;
    if account.is_empty() {
        return Err(Code::AccountEmpty.into());
    }
    if proto::is_blank(password) {
        return Err(Code::PasswordEmpty.into());
    }
    if mail.is_empty() {
        return Err(Code::MailEmpty.into());
    }
    let limits = &app.config.fields;
    limits.check(Field::Account, account)?;
    limits.check(Field::Password, password)?;
    for (key, field) in PROFILE {
        limits.check(field, input.text(key)?)?;
    }
    let picture = input.text("picture")?;
    limits.check(Field::Picture, picture)?;
    proto::check_account(account)?;

    let name = match input.text("name")? {
        "" => account,
        n => n,
    };
    let mut user = NewUser {
        id: new_user_id(),
        account: account.to_string(),
        password_hash: String::new(),
        name: name.to_string(),
        picture: picture.to_string(),
        sex: input.text("sex")?.to_string(),
        birthday: input.text("birthday")?.to_string(),
        sign: input.text("sign")?.to_string(),
        mail: mail.to_string(),
    };
    let (ip, password) = (req.peer.ip(), password.to_string());
    app.answer_later(later, move |app, _| {
        // Hash before touching the store: the unique index decides who wins a race.
        user.password_hash = app.passwords.hash(&password).map_err(|_| Fail::Hash)?;
        let listing = Listing::from(&user);
        app.directory.write(|| {
            app.store(|s| s.create_user(&user))?;
            Ok::<_, Fail>(((), Change::Added(listing)))
        })?;
        crate::cluster::fanout::directory_changed(app, &user.id);
        log::debug!("registered a user from {ip}");
        Ok(proto::status(Code::Success))
    })
}

/// `GET /im/query?account=…` (its rate limit is checked by the router, first of all).
pub fn query(app: &App, req: &Request) -> Outcome {
    let input = Input::of(req)?;
    input.known(&["account"])?;
    let account = input.text("account")?;
    if account.is_empty() {
        return Err(Code::AccountEmpty.into());
    }
    app.config.fields.check(Field::Account, account)?;
    proto::check_account(account)?;
    let exists = app.store(|s| s.account_exists(account))?;
    Ok(proto::query_reply(exists))
}

/// `POST /im/erase`: the password is checked on the hasher pool, which answers.
pub fn erase(app: &App, req: &Request, later: Later<'_>) -> Deferrable {
    let input = Input::json(req)?;
    input.known(&["id", "token", "password"])?;
    let me = authenticate(app, &input)?;
    let password = input.raw("password")?.unwrap_or("");
    if proto::is_blank(password) {
        return Err(Code::PasswordEmpty.into());
    }
    app.config.fields.check(Field::Password, password)?;
    let password = password.to_string();
    with_password(app, later, req.peer.ip(), me, password, |app, remote, me| {
        erase_user(app, me, remote)
    })
}

fn erase_user(app: &App, me: &str, remote: &Remote) -> Outcome {
    let former_friends = app.directory.write(|| {
        let former_friends = app.store(|s| s.delete_user(me))?;
        Ok::<_, Fail>((former_friends, Change::Removed(me.to_string())))
    })?;
    app.friend_cache.forget(former_friends.iter().map(String::as_str).chain([me]));
    let changed: Vec<&str> = former_friends.iter().map(String::as_str).chain([me]).collect();
    crate::cluster::fanout::friends_changed(app, &changed);
    crate::cluster::fanout::directory_changed(app, me);
    let push = proto::push_id(Code::FriendRemoved, me);
    crate::cluster::fanout::push_elsewhere_all(
        app,
        changed[..former_friends.len()].iter().copied(),
        &push,
    );
    // Every session of the account ends (§11.1); its devices went with it in the store.
    let (conns, ()) = app.sessions.end_user(me, |online| {
        for c in former_friends.iter().flat_map(|f| online.conns(f)) {
            remote.send_text(c, push.clone());
            app.metrics.pushed(Code::FriendRemoved);
        }
    });
    for conn in conns {
        fanout::ended(app, me, conn);
        remote.close(conn, 1000, "account erased");
    }
    fanout::end_elsewhere(app, me, None, None);
    log::debug!("erased a user");
    Ok(proto::status(Code::Success))
}

/// Checks the password of `me` on the hasher pool, then `then` answers. A wrong one
/// counts against the failed-login budget of `ip` like a failed login: the failure is
/// charged before the check and refunded when the password was right, and a spent
/// budget answers 524 without a check.
fn with_password(
    app: &App,
    later: Later<'_>,
    ip: IpAddr,
    me: String,
    password: String,
    then: impl FnOnce(&App, &Remote, &str) -> Outcome + Send + 'static,
) -> Deferrable {
    if !app.login_fail_limit.take(ip) {
        app.metrics.rate_limited("login");
        log::debug!("password check from {ip} refused: too many failures");
        return Err(Code::TooManyRequests.into());
    }
    let answered = app.answer_later(later, move |app, remote| {
        let user = app.store(|s| s.user_by_id(&me)).inspect_err(|_| {
            app.login_fail_limit.refund(ip);
        })?;
        // An account erased since the session was checked (a racing erase) answers as
        // its session does now: 515.
        let Some(user) = user else {
            app.login_fail_limit.refund(ip);
            return Err(StoreError::UserGone.into());
        };
        if !app.passwords.verify(&password, Some(&user.password_hash)).ok {
            log::debug!("wrong password from {ip}");
            return Err(Code::AccountPasswordWrong.into());
        }
        app.login_fail_limit.refund(ip);
        then(app, remote, &me)
    });
    if answered.is_err() {
        app.login_fail_limit.refund(ip);
    }
    answered
}

/// `POST /im/profile/update`.
pub fn update_profile(app: &App, req: &Request, later: Later<'_>) -> Deferrable {
    let input = Input::json(req)?;
    input.known(&[
        "id",
        "token",
        "name",
        "picture",
        "sex",
        "birthday",
        "sign",
        "mail",
        "password",
        "new_password",
    ])?;
    let clear = cleared(&input)?;
    let (me, session) = authenticate_session(app, &input)?;
    let limits = &app.config.fields;

    let old = input.raw("password")?;
    let new = input.raw("new_password")?;
    let password_change = old.is_some() || new.is_some();
    let (old, new) = (old.unwrap_or(""), new.unwrap_or(""));
    if password_change && (proto::is_blank(old) || proto::is_blank(new)) {
        return Err(Code::PasswordEmpty.into());
    }
    let mut update = ProfileUpdate::default();
    let fields: [(&str, &mut Option<String>); 5] = [
        ("name", &mut update.name),
        ("sex", &mut update.sex),
        ("birthday", &mut update.birthday),
        ("sign", &mut update.sign),
        ("mail", &mut update.mail),
    ];
    for ((key, slot), (_, field)) in fields.into_iter().zip(PROFILE) {
        let v = input.text(key)?;
        limits.check(field, v)?;
        if !v.is_empty() {
            *slot = Some(v.to_string());
        }
    }
    let picture = input.text("picture")?;
    limits.check(Field::Picture, picture)?;
    if !picture.is_empty() {
        update.picture = Some(picture.to_string());
    }
    for key in &clear {
        let slot = match *key {
            "name" => &mut update.name,
            "picture" => &mut update.picture,
            "sex" => &mut update.sex,
            "birthday" => &mut update.birthday,
            _ => &mut update.sign,
        };
        *slot = Some(String::new());
    }
    if !password_change {
        return apply_update(app, &me, update, later.remote).map(Some);
    }
    limits.check(Field::Password, old)?;
    limits.check(Field::Password, new)?;
    let (old, new) = (old.to_string(), new.to_string());
    with_password(app, later, req.peer.ip(), me, old, move |app, remote, me| {
        update.password_hash = Some(app.passwords.hash(&new).map_err(|_| Fail::Hash)?);
        // The store revokes every device token with the new password (§11.2).
        let reply = apply_update(app, me, update, remote)?;
        end_other_sessions(app, remote, me, &session)?;
        Ok(reply)
    })
}

/// After a password change: every session of `me` but `keep`, the one that changed
/// it (on this node or another), gets 513 and is closed (§11.1).
fn end_other_sessions(app: &App, remote: &Remote, me: &str, keep: &Holder) -> Result<(), Fail> {
    let others = match keep {
        Holder::Here(keep) => {
            let friends = app.store(|s| s.friend_ids(me))?;
            app.sessions
                .end_others(me, *keep, |online, last| {
                    // Only when the changing session itself closed meanwhile.
                    if last {
                        crate::routes::tunnel::announce_offline(app, remote, online, me, &friends);
                    }
                })
                .0
        }
        // The changing session lives on on its node: the user stays online.
        Holder::There(_) => app.sessions.end_user(me, |_| ()).0,
    };
    crate::routes::tunnel::end_replaced(app, remote, &others, "password changed");
    for conn in others {
        fanout::ended(app, me, conn);
    }
    let keep = match keep {
        Holder::Here(_) => None,
        Holder::There(owner) => Some(&owner.place),
    };
    fanout::end_elsewhere(app, me, Some(&proto::replaced_push()), keep);
    Ok(())
}

/// Stores a checked update, then pushes 301 to every online friend.
fn apply_update(app: &App, me: &str, mut update: ProfileUpdate, remote: &Remote) -> Outcome {
    if update.name.as_deref() == Some("") {
        let user = app.store(|s| s.user_by_id(me))?;
        update.name = user.map(|u| u.account);
    }
    let profile = app.directory.write(|| {
        // Written and read back in one transaction: an erase racing it answers 515.
        let p = app.store(|s| s.update_profile(me, &update))?;
        let change = Change::Updated((&p).into());
        Ok::<_, Fail>((p, change))
    })?;
    fanout::directory_changed(app, me);

    // Each friend sees the change under the alias they gave me.
    let watchers = app.store(|s| s.aliases_for(me))?;
    app.sessions.with_online(|online| {
        for (friend, alias) in &watchers {
            for c in online.conns(friend) {
                let push = proto::profile_push(
                    me,
                    alias,
                    &profile.picture,
                    &profile.sex,
                    &profile.birthday,
                    &profile.sign,
                );
                remote.send_text(c, push);
                app.metrics.pushed(Code::RefreshProfile);
            }
        }
    });
    for (friend, alias) in &watchers {
        let push = proto::profile_push(
            me,
            alias,
            &profile.picture,
            &profile.sex,
            &profile.birthday,
            &profile.sign,
        );
        crate::cluster::fanout::push_elsewhere(app, friend, &push);
    }
    Ok(proto::status(Code::Success))
}

/// The fields a profile update's `"clear"` lists, checked with the other types: a
/// list that is not of clearable names, or one naming a field the update also sets,
/// is a protocol error (403).
fn cleared(input: &Input) -> Result<Vec<&str>, Code> {
    let clear = input.strings("clear")?.unwrap_or_default();
    for key in &clear {
        if !CLEARABLE.contains(key) || !input.text(key)?.is_empty() {
            return Err(Code::ProtocolError);
        }
    }
    Ok(clear)
}

/// The common checks of docs/protocol.md §5; the caller's user id on success.
pub fn authenticate(app: &App, input: &Input) -> Result<String, Fail> {
    let token = input.text("token")?;
    let id = input.text("id")?;
    match app.sessions.authenticate(id, token) {
        Ok(_) => Ok(id.to_string()),
        // A session of another node (docs/cluster.md): the token is as good here.
        Err(Code::AuthIllegal) if fanout::token_elsewhere(app, id, token).is_some() => {
            Ok(id.to_string())
        }
        Err(c) => Err(c.into()),
    }
}

/// Where the session a token names lives.
#[derive(Clone, Debug)]
pub enum Holder {
    /// On this node, on this connection.
    Here(ConnId),
    /// On another node (docs/cluster.md): what is done to it goes through Redis.
    There(Owner),
}

/// [`authenticate`], with where the session whose token it is lives (a user may have
/// several, §11.1): what the caller acts on (logoff, a password change).
pub fn authenticate_session(app: &App, input: &Input) -> Result<(String, Holder), Fail> {
    let token = input.text("token")?;
    let id = input.text("id")?;
    match app.sessions.authenticate(id, token) {
        Ok(conn) => Ok((id.to_string(), Holder::Here(conn))),
        Err(Code::AuthIllegal) => match fanout::token_elsewhere(app, id, token) {
            Some(owner) => Ok((id.to_string(), Holder::There(owner))),
            None => Err(Code::AuthIllegal.into()),
        },
        Err(c) => Err(c.into()),
    }
}
