//! Remembered logins (docs/protocol.md §11.2): one row per device token, keyed by the
//! token's SHA-256. The daemon hashes; the store never sees a token.
//!
//! A token's expiry slides: each login with it moves `last_used_ms`, and a token
//! unused for longer than the caller's `max_age_ms` is refused and deleted. A user
//! holds at most [`Store::add_device`](crate::Store::add_device)'s `keep` tokens; a new one beyond that
//! revokes the least recently used.

use rusqlite::{params, OptionalExtension};

use crate::error::StoreError;
use crate::store::{user_row, Result, Sqlite, USER_COLUMNS};
use crate::UserRow;

impl Sqlite {
    /// Remembers a new device of `user` by its token's SHA-256 and returns the
    /// device's id. Keeps at most `keep` devices per user (the least recently used
    /// go). [`StoreError::UserGone`] when the user was erased meanwhile.
    pub fn add_device(
        &mut self,
        user: &str,
        token_sha256: &[u8; 32],
        now_ms: i64,
        keep: usize,
    ) -> Result<i64> {
        let tx = self.write()?;
        let exists = tx.prepare_cached("SELECT 1 FROM users WHERE id = ?1")?.exists([user])?;
        if !exists {
            return Err(StoreError::UserGone);
        }
        tx.prepare_cached(
            "INSERT INTO devices (user_id, token_sha256, created_ms, last_used_ms)
             VALUES (?1, ?2, ?3, ?3)",
        )?
        .execute(params![user, &token_sha256[..], now_ms])?;
        let id = tx.last_insert_rowid();
        tx.prepare_cached(
            "DELETE FROM devices WHERE user_id = ?1 AND id NOT IN
                (SELECT id FROM devices WHERE user_id = ?1
                 ORDER BY last_used_ms DESC, id DESC LIMIT ?2)",
        )?
        .execute(params![user, i64::try_from(keep).unwrap_or(i64::MAX)])?;
        tx.commit()?;
        Ok(id)
    }

    /// The user a device token belongs to and the device's id, if the token is known
    /// and was used within `max_age_ms`; its use is recorded (the expiry slides). An
    /// expired token is deleted. One transaction, so a token revoked meanwhile is
    /// never renewed.
    pub fn device_login(
        &mut self,
        token_sha256: &[u8; 32],
        now_ms: i64,
        max_age_ms: i64,
    ) -> Result<Option<(UserRow, i64)>> {
        let tx = self.write()?;
        let found: Option<(i64, String, i64)> = tx
            .prepare_cached(
                "SELECT id, user_id, last_used_ms FROM devices WHERE token_sha256 = ?1",
            )?
            .query_row([&token_sha256[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((device, user, last_used)) = found else { return Ok(None) };
        if now_ms.saturating_sub(last_used) > max_age_ms {
            tx.prepare_cached("DELETE FROM devices WHERE id = ?1")?.execute([device])?;
            tx.commit()?;
            return Ok(None);
        }
        tx.prepare_cached("UPDATE devices SET last_used_ms = max(last_used_ms, ?2) WHERE id = ?1")?
            .execute(params![device, now_ms])?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
        let row = tx.prepare_cached(&sql)?.query_row([&user], user_row).optional()?;
        tx.commit()?;
        Ok(row.map(|u| (u, device)))
    }

    /// Revokes the device `device` of `user` (logoff with `forget`); false if it was
    /// gone already.
    pub fn forget_device(&mut self, user: &str, device: i64) -> Result<bool> {
        let tx = self.write()?;
        let n = tx
            .prepare_cached("DELETE FROM devices WHERE id = ?1 AND user_id = ?2")?
            .execute(params![device, user])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// How many devices `user` has remembered.
    pub fn device_count(&self, user: &str) -> Result<usize> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM devices WHERE user_id = ?1")?
            .query_row([user], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Housekeeping: deletes every device token last used before `cutoff_ms`.
    pub fn expire_devices(&mut self, cutoff_ms: i64) -> Result<usize> {
        let tx = self.write()?;
        let n = tx.execute("DELETE FROM devices WHERE last_used_ms < ?1", [cutoff_ms])?;
        tx.commit()?;
        Ok(n)
    }
}
