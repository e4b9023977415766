//! `GET /im/messages` (PROTOCOL.md §10.4) and retention (§10.5).

use std::time::{SystemTime, UNIX_EPOCH};

use proto::{Code, Reply};
use reactor::Request;
use store::Window;

use crate::accounts::authenticate;
use crate::app::{App, Fail, Outcome};
use crate::input::Input;

/// Messages per page when `limit` is not given.
const DEFAULT_LIMIT: i64 = 50;
/// Most messages per page.
const MAX_LIMIT: i64 = 200;

/// `/im/messages?id&token&with&after&before&limit`.
pub fn messages(app: &App, req: &Request) -> Outcome {
    let input = Input::of(req)?;
    input.known(&["id", "token", "with"])?;
    let me = authenticate(app, &input)?;
    let with = input.text("with")?;
    if with.is_empty() {
        return Err(Code::FriendInfoEmpty.into());
    }
    if !app.are_friends(&me, with)? {
        return Err(Code::NotRelationOfFriend.into());
    }
    let after = number(&input, "after")?;
    let before = number(&input, "before")?;
    let limit = number(&input, "limit")?.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Code::ProtocolError.into());
    }
    let window = match (after, before) {
        (Some(_), Some(_)) => return Err(Code::ProtocolError.into()),
        (Some(s), None) => Window::After(s),
        (None, Some(s)) => Window::Before(s),
        (None, None) => Window::Latest,
    };
    let limit = usize::try_from(limit).unwrap_or(0);
    let (state, kept) =
        app.store(|s| Ok((s.conversation(&me, with)?, s.messages(&me, with, window, limit)?)))?;
    let frames: Vec<String> = kept
        .iter()
        .map(|m| {
            proto::kept_receive_frame(
                &m.dialogue_id,
                &m.from_id,
                &m.payload,
                m.ts_ms,
                m.seq,
                m.cid.as_deref(),
            )
        })
        .collect();
    Ok(Reply::new(Code::Success)
        .raw_list("messages", &frames)
        .int("first_seq", state.first_seq)
        .int("last_seq", state.last_seq)
        .int("read_seq", state.read_seq)
        .int("peer_read_seq", state.peer_read_seq)
        .finish())
}

/// A non-negative integer parameter: from a query string or a JSON string, its
/// decimal digits; from JSON, also a number. Absent or empty → `None`; else 403.
fn number(input: &Input, key: &str) -> Result<Option<i64>, Fail> {
    let text = match input {
        Input::Json(fields) if fields.string(key).is_err() => {
            return Ok(fields.non_negative(key)?);
        }
        _ => input.text(key)?,
    };
    if text.is_empty() {
        return Ok(None);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Code::ProtocolError.into());
    }
    text.parse().map(Some).map_err(|_| Code::ProtocolError.into())
}

/// Housekeeping: deletes messages older than `[history] retention_days` (0 keeps all).
pub fn expire(app: &App) {
    let days = app.config.history.retention_days;
    if !app.config.history.enabled || days == 0 {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let cutoff = now - i64::from(days) * 86_400_000;
    match app.store(|s| s.expire_messages(cutoff)) {
        Ok(0) => {}
        Ok(n) => log::info!("history: {n} messages past retention deleted"),
        Err(f) => f.log(),
    }
}
