//! The daemon's side of the cluster: what a node does with Redis around its own work.
//! Every call is a no-op without `[cluster]`. A failure of Redis is logged and the
//! local work goes on: live state is best effort, the store is the truth.

use reactor::{ConnId, Remote};

use crate::app::App;
use crate::cluster::{KeptFrame, Place};

/// Logs a failed Redis command once per call site.
fn logged<T: Default>(what: &str, r: redis::RedisResult<T>) -> T {
    r.unwrap_or_else(|e| {
        log::warn!("cluster: {what}: {e}");
        T::default()
    })
}

/// Sends `frame` to `user`'s sessions held by other nodes.
pub(crate) fn push_elsewhere(app: &App, user: &str, frame: &str) {
    let Some(cluster) = &app.cluster else { return };
    for place in logged("sessions of a user", cluster.elsewhere(user)) {
        logged("publish", cluster.publish(&place, frame));
    }
}

/// Sends `frame` to every session of each of `users` held by other nodes.
pub(crate) fn push_elsewhere_all<'a>(
    app: &App,
    users: impl IntoIterator<Item = &'a str>,
    frame: &str,
) {
    if app.cluster.is_none() {
        return;
    }
    for u in users {
        push_elsewhere(app, u, frame);
    }
}

/// Whether `user` has a session on another node.
pub(crate) fn online_elsewhere(app: &App, user: &str) -> bool {
    let Some(cluster) = &app.cluster else { return false };
    !logged("sessions of a user", cluster.elsewhere(user)).is_empty()
}

/// A session started on this node.
pub(crate) fn started(app: &App, user: &str, conn: ConnId, token: &str) {
    let Some(cluster) = &app.cluster else { return };
    let now = crate::routes::tunnel::now_ms();
    logged("session start", cluster.session_started(user, conn, token, now));
}

/// `[session] max_devices` across nodes, after a login of `user` on this node: the
/// oldest sessions beyond it, wherever they are, get 513 and are closed (§11.1).
pub(crate) fn replace_beyond_max(app: &App, remote: &Remote, user: &str) {
    let Some(cluster) = &app.cluster else { return };
    let aged = logged("sessions of a user", cluster.sessions_by_age(user));
    let over = aged.len().saturating_sub(app.config.session.max_devices);
    let replaced = proto::replaced_push();
    for (_, place) in aged.into_iter().take(over) {
        if place.node == cluster.node() {
            let (gone, ()) = app.sessions.end_session(user, place.conn, |_, _| ());
            if gone.is_some() {
                crate::routes::tunnel::end_replaced(
                    app,
                    remote,
                    &[place.conn],
                    "login in other place",
                );
            }
            ended(app, user, place.conn);
        } else {
            logged("end a session", cluster.end(user, &place, Some(&replaced)));
        }
    }
}

/// A session on this node ended.
pub(crate) fn ended(app: &App, user: &str, conn: ConnId) {
    let Some(cluster) = &app.cluster else { return };
    logged("session end", cluster.session_ended(user, conn));
}

/// The user whose session `token` is on another node, when `id` is that user.
pub(crate) fn token_elsewhere(app: &App, id: &str, token: &str) -> bool {
    let Some(cluster) = &app.cluster else { return false };
    let owner = logged("token owner", cluster.owner_of(token));
    owner.is_some_and(|o| o.user == id && o.place.node != cluster.node())
}

/// Ends `user`'s sessions on other nodes: `frame` (if any), then their sockets close.
pub(crate) fn end_elsewhere(app: &App, user: &str, frame: Option<&str>) {
    let Some(cluster) = &app.cluster else { return };
    for place in logged("sessions of a user", cluster.elsewhere(user)) {
        logged("end a session", cluster.end(user, &place, frame));
    }
}

/// Tells every node that user `id`'s search listing changed (each reads it again).
pub(crate) fn directory_changed(app: &App, id: &str) {
    let Some(cluster) = &app.cluster else { return };
    logged("directory broadcast", cluster.broadcast_directory(id));
}

/// Tells every other node that the friend sets of `users` changed.
pub(crate) fn friends_changed(app: &App, users: &[&str]) {
    let Some(cluster) = &app.cluster else { return };
    logged("friend cache broadcast", cluster.broadcast_forget(users));
}

/// Housekeeping, every second: refresh this node's liveness, reap dead nodes and
/// tell the friends of their users, now offline, with 300.
pub(crate) fn tick(app: &App, remote: &Remote) {
    let Some(cluster) = &app.cluster else { return };
    match cluster.heartbeat() {
        Ok(true) => {}
        Ok(false) => {
            // Redis lost this node's state (or the node was reaped): register it again.
            let sessions = app.sessions.all();
            log::info!("cluster: registering {} live sessions again", sessions.len());
            for (user, conn, token) in sessions {
                started(app, &user, conn, &token);
            }
        }
        Err(e) => return log::warn!("cluster: liveness: {e}"),
    }
    let orphans = logged("reaping", cluster.reap_dead());
    announce_offline(app, remote, &orphans);
}

/// 300 for each of `users` (no session left anywhere) to every session of its friends.
pub(crate) fn announce_offline(app: &App, remote: &Remote, users: &[String]) {
    for user in users {
        if app.sessions.is_online(user) {
            continue;
        }
        let friends = match app.store(|s| s.friend_ids(user)) {
            Ok(f) => f,
            Err(f) => {
                f.log();
                continue;
            }
        };
        let push = proto::push_id(proto::Code::FriendOffline, user);
        for f in &friends {
            for c in app.sessions.conns_of(f) {
                remote.send_text(c, push.clone());
                app.metrics.pushed(proto::Code::FriendOffline);
            }
            push_elsewhere(app, f, &push);
        }
    }
}

/// `user`'s sessions held by other nodes (none without `[cluster]`).
pub(crate) fn sessions_elsewhere(app: &App, user: &str) -> Vec<Place> {
    let Some(cluster) = &app.cluster else { return Vec::new() };
    logged("sessions of a user", cluster.elsewhere(user))
}

/// Sends `frame` to each of `places` (sessions on other nodes).
pub(crate) fn publish_to(app: &App, places: &[Place], frame: &str) {
    let Some(cluster) = &app.cluster else { return };
    for place in places {
        logged("publish", cluster.publish(place, frame));
    }
}

/// Sends a kept message's frame to each of `places` (sessions on other nodes), whose
/// history threads deliver it in order and move the marks.
pub(crate) fn publish_kept(app: &App, places: &[Place], kept: &KeptFrame) {
    let Some(cluster) = &app.cluster else { return };
    for place in places {
        logged("publish", cluster.publish_kept(place, kept));
    }
}
