//! What each request does: the HTTP routes of docs/protocol.md §3–5 and the frames of the
//! login WebSocket (§4, §6).
//!
//! - this file  — [`Route`]: the API routes and the methods each accepts.
//! - `input`    — request fields from a query string or a JSON body, trimmed per §1.
//! - `accounts` — register, query, erase, profile update (§3).
//! - `friends`  — search, request, add, decline, remove, list, requests (§5).
//! - `tunnel`   — the login WebSocket: login, send, heartbeat, presence (§4, §6).

pub(crate) mod accounts;
pub(crate) mod friends;
pub(crate) mod input;
pub(crate) mod tunnel;

/// An HTTP route of the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /im/register`
    Register,
    /// `/im/query`
    Query,
    /// `POST /im/erase`
    Erase,
    /// `POST /im/profile/update`
    ProfileUpdate,
    /// `/im/login` (WebSocket only)
    Login,
    /// `/im/logoff`
    Logoff,
    /// `/im/friends/found`
    Found,
    /// `/im/friends/request`
    Request,
    /// `/im/friends/add`
    Add,
    /// `/im/friends/decline`
    Decline,
    /// `/im/friends/remove`
    Remove,
    /// `/im/friends/list`
    List,
    /// `/im/friends/requests`
    Requests,
    /// `/im/messages` (history on)
    Messages,
    /// `GET /im/health`
    Health,
    /// `GET /im/metrics`
    Metrics,
    /// `/im/www/v1/…`, and `/` and `/im/www/v1` that redirect there.
    Static,
    /// Anything else.
    NotFound,
}

impl Route {
    /// Every route, in metrics order.
    pub const ALL: [Route; 18] = [
        Route::Register,
        Route::Query,
        Route::Erase,
        Route::ProfileUpdate,
        Route::Login,
        Route::Logoff,
        Route::Found,
        Route::Request,
        Route::Add,
        Route::Decline,
        Route::Remove,
        Route::List,
        Route::Requests,
        Route::Messages,
        Route::Health,
        Route::Metrics,
        Route::Static,
        Route::NotFound,
    ];

    /// The route of a (still percent-encoded) path.
    pub fn of(path: &str) -> Route {
        match path {
            "/im/register" => Route::Register,
            "/im/query" => Route::Query,
            "/im/erase" => Route::Erase,
            "/im/profile/update" => Route::ProfileUpdate,
            "/im/login" => Route::Login,
            "/im/logoff" => Route::Logoff,
            "/im/friends/found" => Route::Found,
            "/im/friends/request" => Route::Request,
            "/im/friends/add" => Route::Add,
            "/im/friends/decline" => Route::Decline,
            "/im/friends/remove" => Route::Remove,
            "/im/friends/list" => Route::List,
            "/im/friends/requests" => Route::Requests,
            "/im/messages" => Route::Messages,
            "/im/health" => Route::Health,
            "/im/metrics" => Route::Metrics,
            p if p.starts_with("/im/www/v1/") || p == "/im/www/v1" || p == "/" => Route::Static,
            _ => Route::NotFound,
        }
    }

    /// Whether `method` is allowed (docs/protocol.md §1: register, erase and profile update
    /// are POST only; the rest take GET or POST).
    pub fn allows(self, method: &str) -> bool {
        match self {
            Route::Register | Route::Erase | Route::ProfileUpdate => method == "POST",
            _ => method == "GET" || method == "POST",
        }
    }

    /// The label used in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Route::Register => "register",
            Route::Query => "query",
            Route::Erase => "erase",
            Route::ProfileUpdate => "profile_update",
            Route::Login => "login",
            Route::Logoff => "logoff",
            Route::Found => "friends_found",
            Route::Request => "friends_request",
            Route::Add => "friends_add",
            Route::Decline => "friends_decline",
            Route::Remove => "friends_remove",
            Route::List => "friends_list",
            Route::Requests => "friends_requests",
            Route::Messages => "messages",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::Static => "static",
            Route::NotFound => "not_found",
        }
    }

    /// Index in [`Route::ALL`].
    pub fn index(self) -> usize {
        Route::ALL.iter().position(|r| *r == self).unwrap_or(Route::ALL.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        assert_eq!(Route::of("/im/friends/found"), Route::Found);
        assert_eq!(Route::of("/im/www/v1/chat.html"), Route::Static);
        assert_eq!(Route::of("/im/login/im/login"), Route::NotFound);
        assert!(!Route::Register.allows("GET"));
        assert!(Route::Query.allows("POST"));
        assert!(!Route::Query.allows("PUT"));
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
