//! Users, team memberships, API tokens (hashes only) and the audit log.

use crate::StoreError;
use chrono::{DateTime, Utc};

/// How often a token's `last_used_at` is written, at most.
pub const LAST_USED_EVERY_SECS: i64 = 300;

/// Whether a token's recorded last use is old enough to write again.
pub(crate) fn last_use_is_stale(last_used: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last_used.is_none_or(|t| (now - t).num_seconds() >= LAST_USED_EVERY_SECS)
}

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
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
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
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditRow {
    /// Id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The entry (its columns under their own names).
    #[sqlx(flatten)]
    pub entry: AuditEntry,
}

const ROLES: [&str; 5] = ["admin", "clinician", "nurse", "patient", "proxy"];

/// The rules every backend applies to a user before storing it.
pub(crate) fn check_user(id: &str, role: &str, patient: Option<&str>) -> Result<(), StoreError> {
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
    Ok(())
}
