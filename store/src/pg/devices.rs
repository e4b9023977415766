//! Remembered logins on PostgreSQL (docs/protocol.md §11.2), as `crate::devices` keeps
//! them on SQLite: one row per device token, keyed by the token's SHA-256.

use super::conn::Queries;
use super::users::{user_row, USER_COLUMNS};
use super::{sql_limit, Postgres};
use crate::error::StoreError;
use crate::store::Result;
use crate::UserRow;

impl Postgres {
    pub(crate) fn add_device(
        &mut self,
        user: &str,
        token_sha256: &[u8; 32],
        now_ms: i64,
        keep: usize,
    ) -> Result<i64> {
        let token = &token_sha256[..];
        self.write(|tx| {
            if tx.query_opt("SELECT 1 FROM users WHERE id = $1", &[&user])?.is_none() {
                return Err(StoreError::UserGone);
            }
            let id: i64 = tx
                .query_one(
                    "INSERT INTO devices (user_id, token_sha256, created_ms, last_used_ms)
                     VALUES ($1, $2, $3, $3) RETURNING id",
                    &[&user, &token, &now_ms],
                )?
                .try_get(0)?;
            tx.execute(
                "DELETE FROM devices WHERE user_id = $1 AND id NOT IN
                    (SELECT id FROM devices WHERE user_id = $1
                     ORDER BY last_used_ms DESC, id DESC LIMIT $2)",
                &[&user, &sql_limit(keep)],
            )?;
            Ok(id)
        })
    }

    pub(crate) fn device_login(
        &mut self,
        token_sha256: &[u8; 32],
        now_ms: i64,
        max_age_ms: i64,
    ) -> Result<Option<(UserRow, i64)>> {
        let token = &token_sha256[..];
        self.write(|tx| {
            let found = tx.query_opt(
                "SELECT id, user_id, last_used_ms FROM devices WHERE token_sha256 = $1",
                &[&token],
            )?;
            let Some(found) = found else { return Ok(None) };
            let (device, user, last_used): (i64, String, i64) =
                (found.try_get(0)?, found.try_get(1)?, found.try_get(2)?);
            if now_ms.saturating_sub(last_used) > max_age_ms {
                tx.execute("DELETE FROM devices WHERE id = $1", &[&device])?;
                return Ok(None);
            }
            tx.execute(
                "UPDATE devices SET last_used_ms = GREATEST(last_used_ms, $2) WHERE id = $1",
                &[&device, &now_ms],
            )?;
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
            let row = tx.query_opt(&sql, &[&user])?.map(|r| user_row(&r)).transpose()?;
            Ok(row.map(|u| (u, device)))
        })
    }

    pub(crate) fn forget_device(&mut self, user: &str, device: i64) -> Result<bool> {
        self.write(|tx| {
            let sql = "DELETE FROM devices WHERE id = $1 AND user_id = $2";
            Ok(tx.execute(sql, &[&device, &user])? > 0)
        })
    }

    pub(crate) fn device_count(&self, user: &str) -> Result<usize> {
        let sql = "SELECT count(*) FROM devices WHERE user_id = $1";
        let n: i64 = self.client.borrow_mut().query_one(sql, &[&user])?.try_get(0)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    pub(crate) fn expire_devices(&mut self, cutoff_ms: i64) -> Result<usize> {
        self.write(|tx| {
            let n = tx.execute("DELETE FROM devices WHERE last_used_ms < $1", &[&cutoff_ms])?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}
