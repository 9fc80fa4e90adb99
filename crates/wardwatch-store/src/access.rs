//! Users, team memberships, API tokens (hashes only) and the audit log.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{PgStore, StoreError};

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
    /// NHS number (ten digits), when recorded.
    pub nhs_number: Option<String>,
    /// Date of birth, when recorded.
    pub date_of_birth: Option<chrono::NaiveDate>,
    /// Devices on loan to the patient now.
    pub devices: Vec<String>,
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
               ARRAY(SELECT team_id FROM user_teams WHERE user_id = u.id ORDER BY team_id), \
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
        let last_used: Option<DateTime<Utc>> = r.try_get(4)?;
        if last_use_is_stale(last_used, now) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE token_hash = $1")
                .bind(hash)
                .bind(now)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Principal {
            user_id: r.try_get(0)?,
            role: r.try_get(1)?,
            patient_id: r.try_get(2)?,
            teams: r.try_get(3)?,
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
            "SELECT id, team_id, pathway, spo2_scale, discharged_at IS NOT NULL, nhs_number, \
             date_of_birth, ARRAY(SELECT device_id FROM device_assignments \
               WHERE patient_id = p.id AND valid_to IS NULL ORDER BY device_id) \
             FROM patients p WHERE id = $1",
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
                nhs_number: r.try_get(5)?,
                date_of_birth: r.try_get(6)?,
                devices: r.try_get(7)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| StoreError::from(e))
    }
}

impl PgStore {
    /// SQL for the start of `time`'s bucket of `width` (an SQL interval):
    /// `time_bucket` on TimescaleDB, `date_bin` from the epoch otherwise, so
    /// both paths give the same buckets.
    fn bucket_of_time(&self, width: &str) -> String {
        if self.timescale {
            format!("time_bucket({width}, time)")
        } else {
            format!("date_bin({width}, time, TIMESTAMPTZ '1970-01-01 00:00:00+00')")
        }
    }
}

/// Where a page of readings ended: the last row's (time, vital, device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadingKey {
    /// Measurement time.
    pub time: DateTime<Utc>,
    /// Vital name.
    pub vital: String,
    /// Device.
    pub device_id: String,
}

/// A stored reading as the API returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingRow {
    /// Vital name.
    pub vital: String,
    /// Measurement time.
    pub time: DateTime<Utc>,
    /// Canonical value.
    pub value: f64,
    /// Device.
    pub device_id: String,
    /// `senml`, `fhir`.
    pub source: String,
}

/// Readings of one vital summarised over a time bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketRow {
    /// Start of the bucket.
    pub start: DateTime<Utc>,
    /// Readings in it.
    pub count: i64,
    /// Lowest.
    pub min: f64,
    /// Highest.
    pub max: f64,
    /// Mean.
    pub avg: f64,
}

impl PgStore {
    /// A page of a patient's readings after `after`, in (time, vital,
    /// device) order.
    pub async fn readings_page(
        &self,
        patient: &str,
        vital: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&ReadingKey>,
        limit: i64,
    ) -> Result<Vec<ReadingRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT vital, time, value, device_id, source FROM readings \
             WHERE patient_id = $1 AND ($2::text IS NULL OR vital = $2) AND time >= $3 AND time < $4 \
               AND ($6::timestamptz IS NULL OR (time, vital, device_id) > ($6, $7, $8)) \
             ORDER BY time, vital, device_id LIMIT $5",
        )
        .bind(patient)
        .bind(vital)
        .bind(from)
        .bind(to)
        .bind(limit)
        .bind(after.map(|k| k.time))
        .bind(after.map(|k| k.vital.as_str()).unwrap_or(""))
        .bind(after.map(|k| k.device_id.as_str()).unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReadingRow {
                    vital: r.try_get(0)?,
                    time: r.try_get(1)?,
                    value: r.try_get(2)?,
                    device_id: r.try_get(3)?,
                    source: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// A patient's readings in `[from, to)`, optionally of one vital, oldest
    /// first, at most `limit`.
    pub async fn readings_of(
        &self,
        patient: &str,
        vital: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ReadingRow>, StoreError> {
        self.readings_page(patient, vital, from, to, None, limit)
            .await
    }

    /// One vital of a patient downsampled into buckets of `bucket_secs`:
    /// `time_bucket` on TimescaleDB, `date_bin` on plain PostgreSQL (both
    /// align buckets to the epoch, so the two paths agree).
    pub async fn reading_buckets(
        &self,
        patient: &str,
        vital: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket_secs: i64,
    ) -> Result<Vec<BucketRow>, StoreError> {
        let bucket = self.bucket_of_time("make_interval(secs => $5)");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {bucket} AS b, count(*), min(value), max(value), avg(value) FROM readings \
             WHERE patient_id = $1 AND vital = $2 AND time >= $3 AND time < $4 \
             GROUP BY b ORDER BY b"
        )))
        .bind(patient)
        .bind(vital)
        .bind(from)
        .bind(to)
        .bind(bucket_secs as f64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BucketRow {
                    start: r.try_get(0)?,
                    count: r.try_get(1)?,
                    min: r.try_get(2)?,
                    max: r.try_get(3)?,
                    avg: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

/// What the ward board shows for one patient.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamPatient {
    /// Patient.
    pub id: String,
    /// Pathway.
    pub pathway: String,
    /// SpO2 scale.
    pub spo2_scale: i16,
    /// On oxygen per the care plan.
    pub care_plan_oxygen: bool,
    /// The most urgent open alert's severity, if any.
    pub alert_severity: Option<String>,
    /// A `no_data` flag is open (silent device).
    pub silent: bool,
    /// The devices whose own `no_data` is open, by id.
    pub silent_devices: Vec<String>,
}

impl PgStore {
    /// The latest reading of each vital of these patients: (patient, vital,
    /// value, time).
    pub async fn latest_readings(
        &self,
        patients: &[String],
    ) -> Result<Vec<(String, String, f64, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (patient_id, vital) patient_id, vital, value, time FROM readings \
             WHERE patient_id = ANY($1) AND time > now() - interval '7 days' \
             ORDER BY patient_id, vital, time DESC",
        )
        .bind(patients)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// The ids of these teams' monitored patients.
    pub async fn patients_of_teams(&self, teams: &[String]) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM patients WHERE team_id = ANY($1) AND discharged_at IS NULL",
        )
        .bind(teams)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A team's monitored patients with their open alert and silent-device state.
    pub async fn team_patients(&self, team: &str) -> Result<Vec<TeamPatient>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.id, p.pathway, p.spo2_scale, p.care_plan_oxygen, \
               (SELECT a.severity FROM alerts a WHERE a.patient_id = p.id AND a.state <> 'resolved' \
                 ORDER BY array_position(ARRAY['emergency','high','medium','low'], a.severity) LIMIT 1), \
               EXISTS (SELECT 1 FROM flags f WHERE f.patient_id = p.id \
                 AND (f.rule = 'no_data' OR f.rule LIKE 'no_data:%') AND f.cleared_at IS NULL), \
               ARRAY(SELECT substr(f.rule, 9) FROM flags f WHERE f.patient_id = p.id \
                 AND f.rule LIKE 'no_data:%' AND f.cleared_at IS NULL ORDER BY f.rule) \
             FROM patients p WHERE p.team_id = $1 AND p.discharged_at IS NULL ORDER BY p.id",
        )
        .bind(team)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TeamPatient {
                    id: r.try_get(0)?,
                    pathway: r.try_get(1)?,
                    spo2_scale: r.try_get(2)?,
                    care_plan_oxygen: r.try_get(3)?,
                    alert_severity: r.try_get(4)?,
                    silent: r.try_get(5)?,
                    silent_devices: r.try_get(6)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

impl PgStore {
    /// Hourly means of the given vitals over the last 24 h for these
    /// patients, for the board's trend lines: (patient, vital, hour, mean).
    pub async fn hourly_trends(
        &self,
        patients: &[String],
        vitals: &[&str],
    ) -> Result<Vec<(String, String, DateTime<Utc>, f64)>, StoreError> {
        let bucket = self.bucket_of_time("interval '1 hour'");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT patient_id, vital, {bucket} AS h, avg(value) FROM readings \
             WHERE patient_id = ANY($1) AND vital = ANY($2) AND time > now() - interval '24 hours' \
             GROUP BY patient_id, vital, h ORDER BY patient_id, vital, h"
        )))
        .bind(patients)
        .bind(vitals)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
