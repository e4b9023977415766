//! The imd wire protocol (see `docs/protocol.md`): pure types and encoders, no I/O.
//!
//! - `code`   — [`Code`], the response code table of §2 (number, message, `ok`).
//! - `reply`  — server → client JSON: [`status`], [`status_with_id`], the [`Reply`]
//!   builder, the login/list/requests/found/query/heartbeat replies, the receive frame
//!   and every push of §6.3, with the entry types ([`FriendEntry`], [`Profile`],
//!   [`RequestEntry`], [`FoundEntry`]). Written by hand into one `String`: no
//!   `serde_json::Value` on the hot path.
//! - `fields` — client → server: [`Fields`] (a JSON object body or text frame; `null`
//!   is absent, wrong types are 403), the tunnel frames [`SendFrame`] and
//!   [`LoginFrame`], and [`parse_query`] for query strings.
//! - `limits` — §1 and §9 input rules: [`Limits`] (527), [`check_account`] (528),
//!   [`trimmed`] and [`is_blank`].
//! - `json`   — private: string escaping and a tiny object writer.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod code;
mod fields;
mod json;
mod limits;
mod reply;

pub use code::Code;
pub use fields::{parse_query, query_value, Fields, LoginFrame, SendFrame};
pub use limits::{check_account, check_bytes, check_chars, is_blank, trimmed, Field, Limits};
pub use reply::{
    found_reply, friend_added_push, heartbeat_reply, kept_receive_frame, list_reply, login_reply,
    profile_push, push_id, push_kept_receive_frame, query_reply, receive_frame, replaced_push,
    request_push, requests_reply, status, status_with_id, with_str, FoundEntry, FriendEntry,
    Profile, Reply, RequestEntry,
};
