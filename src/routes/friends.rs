//! Friends (docs/protocol.md §5): search, request, add, decline, remove, list, requests.

use proto::{Code, Field, FriendEntry, RequestEntry};
use reactor::{Remote, Request};
use store::{FriendRow, Requested, UserRow};

use crate::app::{App, Outcome};
use crate::cluster::fanout;
use crate::live::directory::found_entry;
use crate::live::sessions::Online;
use crate::routes::accounts::authenticate;
use crate::routes::input::Input;

/// Most results of one search.
const SEARCH_LIMIT: usize = 50;

/// `/im/friends/found?id&token&name`.
pub fn found(app: &App, req: &Request) -> Outcome {
    let input = Input::of(req)?;
    input.known(&["id", "token", "name"])?;
    let me = authenticate(app, &input)?;
    // Search confirms accounts by exact match: without a budget a user could
    // enumerate them where /im/query already answers 524. Per user, not per
    // connection, so logging in again does not refill it.
    if !app.search_limit.take(me.clone()) {
        app.metrics.rate_limited("search");
        return Err(Code::TooManyRequests.into());
    }
    let name = input.text("name")?;
    if name.is_empty() {
        return Err(Code::NameEmpty.into());
    }
    app.config.fields.check(Field::Search, name)?;
    let found = app.directory.search(&me, name, SEARCH_LIMIT);
    found.reply(|id| Ok(app.store(|s| s.user_by_id(id))?.as_ref().map(found_entry)))
}

/// `/im/friends/request?id&token&to&note`.
pub fn request(app: &App, req: &Request, remote: &Remote) -> Outcome {
    let input = Input::of(req)?;
    input.known(&["id", "token", "to", "note"])?;
    let me = authenticate(app, &input)?;
    let to = input.text("to")?;
    if to.is_empty() {
        return Err(Code::FriendInfoEmpty.into());
    }
    let note = input.text("note")?;
    app.config.fields.check(Field::Note, note)?;
    if to == me {
        return Err(Code::CannotBefriendYourself.into());
    }
    // Every check from "already friends" on, and the write, in one transaction: two
    // crossing requests make one friendship, and an erase racing either side answers
    // as if it ran first or after.
    let cap = app.config.requests.pending_per_user;
    match app.store(|s| s.request_friend(&me, to, note, cap))? {
        Requested::Befriended { requester: mine, target } => {
            // They already asked me: this request is their answer.
            app.friend_cache.forget([me.as_str(), to]);
            fanout::friends_changed(app, &[me.as_str(), to]);
            app.sessions.with_online(|online| {
                push_added(app, remote, online, to, &mine, &me);
                push_added(app, remote, online, &me, &target, to);
            });
        }
        Requested::Stored { requester: mine } => {
            let targets = app.sessions.conns_of(to);
            if !targets.is_empty() {
                let entry = RequestEntry {
                    id: me.clone(),
                    name: mine.name.clone(),
                    to: to.to_string(),
                    note: note.to_string(),
                };
                let push = proto::request_push(&entry);
                for conn in targets {
                    remote.send_text(conn, push.clone());
                    app.metrics.pushed(Code::ApplyForAFriend);
                }
            }
            let places = fanout::sessions_elsewhere(app, to);
            if !places.is_empty() {
                let entry = RequestEntry {
                    id: me.clone(),
                    name: mine.name,
                    to: to.to_string(),
                    note: note.to_string(),
                };
                fanout::publish_to(app, &places, &proto::request_push(&entry));
            }
        }
    }
    Ok(proto::status(Code::Success))
}

/// `/im/friends/add?id&token&from&name`.
pub fn add(app: &App, req: &Request, remote: &Remote) -> Outcome {
    let input = Input::of(req)?;
    input.known(&["id", "token", "from", "name"])?;
    let me = authenticate(app, &input)?;
    let from = input.text("from")?;
    if from.is_empty() {
        return Err(Code::FriendInfoEmpty.into());
    }
    let alias = input.text("name")?;
    if alias.is_empty() {
        return Err(Code::AliasEmpty.into());
    }
    app.config.fields.check(Field::Alias, alias)?;
    if from == me {
        return Err(Code::CannotBefriendYourself.into());
    }
    // The checks from "already friends" on and the write in one transaction (see
    // `request`): a requester erased meanwhile answers 523, not a failed write.
    let mine = app.store(|s| s.accept_request(&me, from, alias))?;
    app.friend_cache.forget([me.as_str(), from]);
    fanout::friends_changed(app, &[me.as_str(), from]);
    app.sessions.with_online(|online| push_added(app, remote, online, from, &mine, &me));
    Ok(proto::status(Code::Success))
}

/// `/im/friends/decline?id&token&from`.
pub fn decline(app: &App, req: &Request, remote: &Remote) -> Outcome {
    let input = Input::of(req)?;
    input.known(&["id", "token", "from"])?;
    let me = authenticate(app, &input)?;
    let from = input.text("from")?;
    if from.is_empty() {
        return Err(Code::FriendInfoEmpty.into());
    }
    if !app.store(|s| s.delete_request(from, &me))? {
        return Err(Code::RequestNotExists.into());
    }
    let push = proto::push_id(Code::RequestDeclined, &me);
    for conn in app.sessions.conns_of(from) {
        remote.send_text(conn, push.clone());
        app.metrics.pushed(Code::RequestDeclined);
    }
    fanout::push_elsewhere(app, from, &push);
    Ok(proto::status(Code::Success))
}

/// `/im/friends/remove?id&token&to`.
pub fn remove(app: &App, req: &Request, remote: &Remote) -> Outcome {
    let input = Input::of(req)?;
    input.known(&["id", "token", "to"])?;
    let me = authenticate(app, &input)?;
    let to = input.text("to")?;
    if to.is_empty() {
        return Err(Code::FriendInfoEmpty.into());
    }
    if !app.store(|s| s.remove_friendship(&me, to))? {
        return Err(Code::NotRelationOfFriend.into());
    }
    app.friend_cache.forget([me.as_str(), to]);
    fanout::friends_changed(app, &[me.as_str(), to]);
    let push = proto::push_id(Code::FriendRemoved, &me);
    for conn in app.sessions.conns_of(to) {
        remote.send_text(conn, push.clone());
        app.metrics.pushed(Code::FriendRemoved);
    }
    fanout::push_elsewhere(app, to, &push);
    Ok(proto::status(Code::Success))
}

/// `/im/friends/list?id&token`.
pub fn list(app: &App, req: &Request) -> Outcome {
    let input = Input::of(req)?;
    input.known(&["id", "token"])?;
    let me = authenticate(app, &input)?;
    let rows = app.store(|s| s.friends_of(&me))?;
    let mut friends = app.sessions.with_online(|online| friend_entries(rows, online));
    // Presence is the cluster's, as in the login reply: a friend whose sessions are all
    // on other nodes is online too.
    for f in friends.iter_mut().filter(|f| !f.online) {
        f.online = fanout::online_elsewhere(app, &f.id);
    }
    crate::history::mark_entries(app, &me, &mut friends)?;
    Ok(proto::list_reply(&friends))
}

/// `/im/friends/requests?id&token`.
pub fn requests(app: &App, req: &Request) -> Outcome {
    let input = Input::of(req)?;
    input.known(&["id", "token"])?;
    let me = authenticate(app, &input)?;
    let rows = app.store(|s| s.requests_to(&me, usize::MAX))?;
    Ok(proto::requests_reply(&request_entries(rows)))
}

/// Friend rows as login-format entries, `online` from the registry.
pub fn friend_entries(rows: Vec<FriendRow>, online: &Online<'_>) -> Vec<FriendEntry> {
    rows.into_iter()
        .map(|r| FriendEntry {
            online: online.is_online(&r.id),
            id: r.id,
            name: r.alias,
            picture: r.picture,
            sex: r.sex,
            birthday: r.birthday,
            sign: r.sign,
            ..FriendEntry::default()
        })
        .collect()
}

/// Pending request rows as login-format entries.
pub fn request_entries(rows: Vec<store::RequestRow>) -> Vec<RequestEntry> {
    rows.into_iter()
        .map(|r| RequestEntry { id: r.from_id, name: r.from_name, to: r.to_id, note: r.note })
        .collect()
}

/// Tells each session of `to` that `friend` (whose id is `friend_id`) is now its friend,
/// under the alias `to` got by default: `friend`'s profile name.
fn push_added(
    app: &App,
    remote: &Remote,
    online: &Online<'_>,
    to: &str,
    friend: &UserRow,
    friend_id: &str,
) {
    // With [cluster], Redis is asked under the registry lock: rare (a friendship made).
    let elsewhere = fanout::sessions_elsewhere(app, to);
    if online.is_online(to) || !elsewhere.is_empty() {
        let entry = FriendEntry {
            id: friend_id.to_string(),
            name: friend.name.clone(),
            picture: friend.picture.clone(),
            sex: friend.sex.clone(),
            birthday: friend.birthday.clone(),
            sign: friend.sign.clone(),
            online: online.is_online(friend_id) || fanout::online_elsewhere(app, friend_id),
            ..FriendEntry::default()
        };
        // A new friendship starts an empty conversation (§10.5).
        let kept = app.config.history.enabled.then_some(0);
        let entry = FriendEntry { last_seq: kept, read_seq: kept, unread: kept, ..entry };
        let push = proto::friend_added_push(&entry);
        for conn in online.conns(to) {
            remote.send_text(conn, push.clone());
            app.metrics.pushed(Code::FriendAdded);
        }
        fanout::publish_to(app, &elsewhere, &push);
    }
}
