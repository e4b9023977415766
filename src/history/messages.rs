//! `GET /im/messages` (docs/protocol.md §10.4) and retention (§10.5).

use std::time::{SystemTime, UNIX_EPOCH};

use proto::{Code, Reply};
use reactor::Request;
use store::Window;

use crate::app::{App, Fail, Outcome};
use crate::routes::accounts::authenticate;
use crate::routes::input::Input;

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
    let frames: Vec<String> = kept.iter().map(super::stored_frame).collect();
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
/// Digits beyond `i64::MAX` count as `i64::MAX`, as a JSON number does (see
/// `proto::Fields::non_negative`).
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
    // Only digits: the parse fails only on overflow.
    Ok(Some(text.parse().unwrap_or(i64::MAX)))
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

#[cfg(test)]
mod tests {
    use store::{Appended, NewHistoryMessage, NewUser, Window};

    use super::*;
    use crate::daemon::config::Config;

    #[test]
    fn housekeeping_deletes_messages_past_retention_and_keeps_the_counter() {
        let dir = std::env::temp_dir().join(format!("imd-retention-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nweb_root = \"{www}\"\n[tls]\nlisten = \"\"\n\
             [store]\npath = \"{db}\"\n[history]\nenabled = true\nretention_days = 2\n",
            www = concat!(env!("CARGO_MANIFEST_DIR"), "/www"),
            db = dir.join("imd.sqlite3").display()
        );
        let app = App::new(Config::parse(&text, &mut |w| panic!("{w}")).unwrap()).unwrap();
        let day = 86_400_000;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        let seqs = app
            .store(|s| {
                for id in ["a", "b"] {
                    let user = NewUser { id: id.into(), account: id.into(), ..NewUser::default() };
                    s.create_user(&user)?;
                }
                s.make_friends("a", "B", "b", "A")?;
                let at = |ts_ms| NewHistoryMessage {
                    from_id: "a".into(),
                    to_id: "b".into(),
                    dialogue_id: "d".into(),
                    cid: None,
                    payload: "p".into(),
                    ts_ms,
                    live: false,
                };
                s.append_messages(&[at(now - 3 * day), at(now - day), at(now)])
            })
            .unwrap();
        assert_eq!(seqs.len(), 3);
        expire(&app);
        let (kept, state) = app
            .store(|s| Ok((s.messages("b", "a", Window::Latest, 10)?, s.conversation("b", "a")?)))
            .unwrap();
        assert_eq!(kept.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!((state.first_seq, state.last_seq), (2, 3));
        let next = app.store(|s| {
            s.append_messages(&[NewHistoryMessage {
                from_id: "b".into(),
                to_id: "a".into(),
                dialogue_id: "d".into(),
                cid: None,
                payload: "p".into(),
                ts_ms: now,
                live: false,
            }])
        });
        assert_eq!(next.unwrap(), vec![Appended::New { seq: 4 }]);
        drop(app);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
