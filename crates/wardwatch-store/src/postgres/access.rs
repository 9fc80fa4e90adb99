//! The PostgreSQL side of [`crate::access`]: users, tokens and the audit log.

use crate::access::*;
use crate::{PgStore, StoreError};
use chrono::{DateTime, Utc};
use sqlx::Row;

impl PgStore {
    /// Creates or updates a user with their teams (replaced).
    pub async fn upsert_user(
        &self,
        id: &str,
        role: &str,
        patient: Option<&str>,
        teams: &[String],
    ) -> Result<(), StoreError> {
        check_user(id, role, patient)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, role, patient_id) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET role = excluded.role, patient_id = excluded.patient_id",
        )
        .bind(id)
        .bind(role)
        .bind(patient)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM user_teams WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for t in teams {
            sqlx::query(
                "INSERT INTO user_teams (user_id, team_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(t)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores a token's hash for a user.
    pub async fn insert_token(
        &self,
        user: &str,
        hash: &[u8],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let res = sqlx::query(
            "INSERT INTO api_tokens (user_id, token_hash, expires_at) \
             SELECT id, $2, $3 FROM users WHERE id = $1 AND disabled_at IS NULL",
        )
        .bind(user)
        .bind(hash)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Rejected(format!("no active user {user:?}")));
        }
        Ok(())
    }

    /// Revokes every token of a user; returns how many.
    pub async fn revoke_tokens(&self, user: &str) -> Result<u64, StoreError> {
        let res = sqlx::query(
            "UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }

    /// The principal behind a token hash, if the token is valid now.
    /// `last_used_at` is written at most every [`LAST_USED_EVERY_SECS`]: a
    /// read is not a write.
    pub async fn authenticate(
        &self,
        hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.role, u.patient_id, \
               ARRAY(SELECT team_id FROM user_teams WHERE user_id = u.id ORDER BY team_id) AS teams, \
               t.last_used_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 \
               AND u.disabled_at IS NULL",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let last_used: Option<DateTime<Utc>> = r.try_get("last_used_at")?;
        if last_use_is_stale(last_used, now) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE token_hash = $1")
                .bind(hash)
                .bind(now)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Principal {
            user_id: r.try_get("id")?,
            role: r.try_get("role")?,
            patient_id: r.try_get("patient_id")?,
            teams: r.try_get("teams")?,
        }))
    }

    /// Appends an audit entry.
    pub async fn audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (user_id, action, resource, patient_id, status, client, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&e.user_id)
        .bind(&e.action)
        .bind(&e.resource)
        .bind(&e.patient_id)
        .bind(e.status)
        .bind(&e.client)
        .bind(&e.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest audit entries.
    pub async fn audit_entries(&self, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        Ok(sqlx::query_as(crate::sql::access::AUDIT_ENTRIES)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }
}
