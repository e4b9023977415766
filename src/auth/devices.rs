//! Remembered logins (docs/protocol.md §11.2): a device token is made for a login with
//! `"remember":true`, checked without any password hash, and kept in the store only as
//! its SHA-256. It stays valid `[session] remember_days` after its last use.

use proto::{Code, Field};
use store::StoreError;

use crate::app::{App, Fail};
use crate::live::token::{device_token_sha256, is_device_token, new_device_token};
use crate::routes::tunnel::now_ms;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// Most devices a user keeps remembered; a new one beyond revokes the least recently
/// used, so remembering cannot grow the store without bound.
const REMEMBERED_PER_USER: usize = 100;

/// A device remembered for a session: its id, and its token when it is new (the login
/// reply carries it, once).
pub struct Remembered {
    /// The device's id in the store (what a logoff with `forget` revokes).
    pub id: i64,
    /// The new token, for the login reply; `None` for a login by device token.
    pub token: Option<String>,
}

/// A new device token for `user` (`"remember":true`); `None` when remembered logins
/// are off (`remember_days = 0`). A user erased while its password was being checked
/// is a refused login, 505 (docs/protocol.md §11.1), not a dead session's 515.
pub fn remember(app: &App, user: &str) -> Result<Option<Remembered>, Fail> {
    if app.config.session.remember_days == 0 {
        return Ok(None);
    }
    let token = new_device_token();
    let sha = device_token_sha256(&token);
    let id = match app.store(|s| s.add_device(user, &sha, now_ms(), REMEMBERED_PER_USER)) {
        Err(Fail::Store(StoreError::UserGone)) => return Err(Code::AccountPasswordWrong.into()),
        added => added?,
    };
    Ok(Some(Remembered { id, token: Some(token) }))
}

/// The user and device a device token logs in, if it is well formed, known, used
/// within `[session] remember_days`, and belongs to `account` (ASCII
/// case-insensitively). Its use slides its expiry.
pub fn check(app: &App, account: &str, token: &str) -> Result<Option<(store::UserRow, i64)>, Fail> {
    let days = app.config.session.remember_days;
    if days == 0
        || account.is_empty()
        || !is_device_token(token)
        || app.config.fields.check(Field::Account, account).is_err()
    {
        return Ok(None);
    }
    let sha = device_token_sha256(token);
    let found = app.store(|s| s.device_login(&sha, now_ms(), i64::from(days) * DAY_MS))?;
    Ok(found.filter(|(user, _)| user.account.eq_ignore_ascii_case(account)))
}

/// Housekeeping: deletes device tokens unused for longer than `remember_days` (with
/// remembered logins off, every one: none can log in any more).
pub fn expire(app: &App) {
    let days = app.config.session.remember_days;
    let cutoff = now_ms().saturating_sub(i64::from(days) * DAY_MS);
    let cutoff = if days == 0 { i64::MAX } else { cutoff };
    match app.store(|s| s.expire_devices(cutoff)) {
        Ok(0) => {}
        Ok(n) => log::info!("{n} remembered logins past remember_days deleted"),
        Err(f) => f.log(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::config::Config;

    #[test]
    fn remembering_a_user_erased_meanwhile_is_a_refused_login() {
        let dir = std::env::temp_dir().join(format!("imd-remember-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nweb_root = \"{www}\"\n[tls]\nlisten = \"\"\n\
             [store]\npath = \"{db}\"\n",
            www = concat!(env!("CARGO_MANIFEST_DIR"), "/www"),
            db = dir.join("imd.sqlite3").display()
        );
        let app = App::new(Config::parse(&text, &mut |w| panic!("{w}")).unwrap()).unwrap();
        let refused = remember(&app, "0123456789abcdef0123456789abcdef").err().map(|f| f.code());
        assert_eq!(refused, Some(Code::AccountPasswordWrong));
        drop(app);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
