//! Users, team memberships, API tokens (hashes only) and the audit log.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{PgStore, StoreError};

/// Who is calling, as the API's access checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User id.
    pub user_id: String,
    /// `admin`, `clinician`, `nurse`, `patient` or `proxy`.
    pub role: String,
    /// For patients and proxies: whose record.
    pub patient_id: Option<String>,
    /// Team memberships.
    pub teams: Vec<String>,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Who (none when authentication failed).
    pub user_id: Option<String>,
    /// e.g. `GET`, `POST`.
    pub action: String,
    /// The path.
    pub resource: String,
    /// The patient whose record was touched, if any.
    pub patient_id: Option<String>,
    /// The answer's status.
    pub status: i32,
    /// The client's address.
    pub client: Option<String>,
    /// Anything else worth keeping.
    pub detail: serde_json::Value,
}

/// An audit row as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The entry.
    pub entry: AuditEntry,
}

/// A patient as the API shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientView {
    /// Id.
    pub id: String,
    /// Responsible team.
    pub team_id: String,
    /// Pathway.
    pub pathway: String,
    /// SpO2 scale.
    pub spo2_scale: i16,
    /// Discharged.
    pub discharged: bool,
}

const ROLES: [&str; 5] = ["admin", "clinician", "nurse", "patient", "proxy"];

impl PgStore {
    /// Creates or updates a user with their teams (replaced).
    pub async fn upsert_user(
        &self,
        id: &str,
        role: &str,
        patient: Option<&str>,
        teams: &[String],
    ) -> Result<(), StoreError> {
        if id.trim().is_empty() {
            return Err(StoreError::Rejected("user id must not be empty".into()));
        }
        if !ROLES.contains(&role) {
            return Err(StoreError::Rejected(format!(
                "role must be one of {}, not {role:?}",
                ROLES.join(", ")
            )));
        }
        if matches!(role, "patient" | "proxy") != patient.is_some() {
            return Err(StoreError::Rejected(
                "patients and proxies need --patient (whose record); other roles must not have one"
                    .into(),
            ));
        }
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
    pub async fn authenticate(
        &self,
        hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(
            "UPDATE api_tokens t SET last_used_at = $2 FROM users u \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 \
               AND u.id = t.user_id AND u.disabled_at IS NULL \
             RETURNING u.id, u.role, u.patient_id, \
               ARRAY(SELECT team_id FROM user_teams WHERE user_id = u.id ORDER BY team_id)",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Principal {
                user_id: r.try_get(0)?,
                role: r.try_get(1)?,
                patient_id: r.try_get(2)?,
                teams: r.try_get(3)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| StoreError::from(e))
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
        let rows = sqlx::query(
            "SELECT id, at, user_id, action, resource, patient_id, status, client, detail \
             FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    entry: AuditEntry {
                        user_id: r.try_get(2)?,
                        action: r.try_get(3)?,
                        resource: r.try_get(4)?,
                        patient_id: r.try_get(5)?,
                        status: r.try_get(6)?,
                        client: r.try_get(7)?,
                        detail: r.try_get(8)?,
                    },
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// One patient as the API shows them.
    pub async fn patient_view(&self, id: &str) -> Result<Option<PatientView>, StoreError> {
        let row = sqlx::query(
            "SELECT id, team_id, pathway, spo2_scale, discharged_at IS NOT NULL FROM patients WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(PatientView {
                id: r.try_get(0)?,
                team_id: r.try_get(1)?,
                pathway: r.try_get(2)?,
                spo2_scale: r.try_get(3)?,
                discharged: r.try_get(4)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| StoreError::from(e))
    }
}
