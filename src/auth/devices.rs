//! Remembered logins (docs/protocol.md §11.2): a device token is made for a login with
//! `"remember":true`, checked without any password hash, and kept in the store only as
//! its SHA-256. It stays valid `[session] remember_days` after its last use.

use proto::Field;

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
/// are off (`remember_days = 0`).
pub fn remember(app: &App, user: &str) -> Result<Option<Remembered>, Fail> {
    if app.config.session.remember_days == 0 {
        return Ok(None);
    }
    let token = new_device_token();
    let sha = device_token_sha256(&token);
    let id = app.store(|s| s.add_device(user, &sha, now_ms(), REMEMBERED_PER_USER))?;
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
