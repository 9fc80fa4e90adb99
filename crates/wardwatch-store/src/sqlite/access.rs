//! The SQLite side of [`crate::access`]: users, tokens and the audit log.

use super::{begin_write, classify, SqliteStore};
use crate::StoreError;
use chrono::{DateTime, Utc};
use sqlx::Row;

impl crate::AccessStore for SqliteStore {
    async fn upsert_user(
        &self,
        id: &str,
        role: &str,
        patient: Option<&str>,
        teams: &[String],
    ) -> Result<(), StoreError> {
        crate::access::check_user(id, role, patient)?;
        let mut tx = begin_write(&self.pool).await?;
        sqlx::query(
            "INSERT INTO users (id, role, patient_id) VALUES (?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET role = excluded.role, patient_id = excluded.patient_id",
        )
        .bind(id)
        .bind(role)
        .bind(patient)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query("DELETE FROM user_teams WHERE user_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        for t in teams {
            sqlx::query(
                "INSERT INTO user_teams (user_id, team_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(t)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    async fn insert_token(
        &self,
        user: &str,
        hash: &[u8],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let res = sqlx::query(
            "INSERT INTO api_tokens (user_id, token_hash, expires_at) \
             SELECT id, ?, ? FROM users WHERE id = ? AND disabled_at IS NULL",
        )
        .bind(hash)
        .bind(expires_at)
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Rejected(format!("no active user {user:?}")));
        }
        Ok(())
    }

    async fn revoke_tokens(&self, user: &str) -> Result<u64, StoreError> {
        let res = sqlx::query(
            "UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
        )
        .bind(wardwatch_core::clock::engine::now())
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(res.rows_affected())
    }

    async fn authenticate(
        &self,
        hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<crate::access::Principal>, StoreError> {
        // Times are compared here, not as text in SQL.
        let row = sqlx::query(
            "SELECT t.id AS token_id, t.expires_at, t.revoked_at IS NOT NULL AS revoked, \
               u.id AS user_id, u.role, u.patient_id, u.disabled_at IS NOT NULL AS disabled, \
               t.last_used_at FROM api_tokens t \
               JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = ?",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        let Some(r) = row else { return Ok(None) };
        let token_id: i64 = r.try_get("token_id").map_err(classify)?;
        let expires_at: DateTime<Utc> = r.try_get("expires_at").map_err(classify)?;
        let revoked: bool = r.try_get("revoked").map_err(classify)?;
        let disabled: bool = r.try_get("disabled").map_err(classify)?;
        if revoked || disabled || expires_at <= now {
            return Ok(None);
        }
        let user_id: String = r.try_get("user_id").map_err(classify)?;
        let last_used: Option<DateTime<Utc>> = r.try_get("last_used_at").map_err(classify)?;
        if crate::access::last_use_is_stale(last_used, now) {
            sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
                .bind(now)
                .bind(token_id)
                .execute(&self.pool)
                .await
                .map_err(classify)?;
        }
        let teams: Vec<String> =
            sqlx::query_scalar("SELECT team_id FROM user_teams WHERE user_id = ? ORDER BY team_id")
                .bind(&user_id)
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        Ok(Some(crate::access::Principal {
            user_id,
            role: r.try_get("role").map_err(classify)?,
            patient_id: r.try_get("patient_id").map_err(classify)?,
            teams,
        }))
    }

    async fn audit(&self, e: &crate::access::AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, user_id, action, resource, patient_id, status, client, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(wardwatch_core::clock::engine::now())
        .bind(&e.user_id)
        .bind(&e.action)
        .bind(&e.resource)
        .bind(&e.patient_id)
        .bind(e.status)
        .bind(&e.client)
        .bind(e.detail.to_string())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn audit_entries(&self, limit: i64) -> Result<Vec<crate::access::AuditRow>, StoreError> {
        let rows = sqlx::query(crate::sql::access::AUDIT_ENTRIES)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            // Lenient on purpose: one unreadable detail must not hide the
            // whole trail (the entry is kept, its detail shown as null).
            let detail: String = r.try_get("detail").map_err(classify)?;
            out.push(crate::access::AuditRow {
                id: r.try_get("id").map_err(classify)?,
                at: r.try_get("at").map_err(classify)?,
                entry: crate::access::AuditEntry {
                    user_id: r.try_get("user_id").map_err(classify)?,
                    action: r.try_get("action").map_err(classify)?,
                    resource: r.try_get("resource").map_err(classify)?,
                    patient_id: r.try_get("patient_id").map_err(classify)?,
                    status: r.try_get("status").map_err(classify)?,
                    client: r.try_get("client").map_err(classify)?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                },
            });
        }
        Ok(out)
    }

    async fn users(&self) -> Result<Vec<crate::records::UserRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, role, patient_id, disabled_at IS NOT NULL AS disabled FROM users ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get("id").map_err(classify)?;
            let teams: Vec<String> = sqlx::query_scalar(
                "SELECT team_id FROM user_teams WHERE user_id = ? ORDER BY team_id",
            )
            .bind(&id)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
            out.push(crate::records::UserRow {
                id,
                role: r.try_get("role").map_err(classify)?,
                patient_id: r.try_get("patient_id").map_err(classify)?,
                teams,
                disabled: r.try_get("disabled").map_err(classify)?,
            });
        }
        Ok(out)
    }

    async fn disable_user(&self, id: &str) -> Result<bool, StoreError> {
        let now = wardwatch_core::clock::engine::now();
        let mut tx = begin_write(&self.pool).await?;
        let res =
            sqlx::query("UPDATE users SET disabled_at = ? WHERE id = ? AND disabled_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(res.rows_affected() > 0)
    }
}
