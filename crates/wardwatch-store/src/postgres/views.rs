//! The PostgreSQL side of [`crate::views`]: what the API and the board
//! read (a patient, readings and their buckets, the team's patients, trends).

use crate::views::*;
use crate::{PgStore, StoreError};
use chrono::{DateTime, Utc};

impl PgStore {
    /// One patient as the API shows them.
    pub async fn patient_view(&self, id: &str) -> Result<Option<PatientView>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, team_id, pathway, spo2_scale, discharged_at IS NOT NULL AS discharged, \
             nhs_number, date_of_birth, to_jsonb(ARRAY(SELECT device_id FROM device_assignments \
               WHERE patient_id = p.id AND valid_to IS NULL ORDER BY device_id)) AS devices \
             FROM patients p WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
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
        Ok(sqlx::query_as(
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
        .await?)
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
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {bucket} AS start, count(*) AS count, min(value) AS min, max(value) AS max, \
             avg(value) AS avg FROM readings \
             WHERE patient_id = $1 AND vital = $2 AND time >= $3 AND time < $4 \
             GROUP BY start ORDER BY start"
        )))
        .bind(patient)
        .bind(vital)
        .bind(from)
        .bind(to)
        .bind(bucket_secs as f64)
        .fetch_all(&self.pool)
        .await?)
    }
}

impl PgStore {
    /// The latest reading of each vital of these patients: (patient, vital,
    /// value, time).
    pub async fn latest_readings(
        &self,
        patients: &[String],
    ) -> Result<Vec<LatestReading>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT DISTINCT ON (patient_id, vital) patient_id, vital, value, time FROM readings \
             WHERE patient_id = ANY($1) AND time > now() - interval '7 days' \
             ORDER BY patient_id, vital, time DESC",
        )
        .bind(patients)
        .fetch_all(&self.pool)
        .await?)
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
        Ok(sqlx::query_as(
            "SELECT p.id, p.pathway, p.spo2_scale, p.care_plan_oxygen, \
               (SELECT a.severity FROM alerts a WHERE a.patient_id = p.id AND a.state <> 'resolved' \
                 ORDER BY array_position(ARRAY['emergency','high','medium','low'], a.severity) LIMIT 1) \
                 AS alert_severity, \
               EXISTS (SELECT 1 FROM flags f WHERE f.patient_id = p.id \
                 AND (f.rule = 'no_data' OR f.rule LIKE 'no_data:%') AND f.cleared_at IS NULL) AS silent, \
               to_jsonb(ARRAY(SELECT substr(f.rule, 9) FROM flags f WHERE f.patient_id = p.id \
                 AND f.rule LIKE 'no_data:%' AND f.cleared_at IS NULL ORDER BY f.rule)) AS silent_devices \
             FROM patients p WHERE p.team_id = $1 AND p.discharged_at IS NULL ORDER BY p.id",
        )
        .bind(team)
        .fetch_all(&self.pool)
        .await?)
    }
}

impl PgStore {
    /// Hourly means of the given vitals over the last 24 h for these
    /// patients, for the board's trend lines: (patient, vital, hour, mean).
    pub async fn hourly_trends(
        &self,
        patients: &[String],
        vitals: &[&str],
    ) -> Result<Vec<HourlyMean>, StoreError> {
        let bucket = self.bucket_of_time("interval '1 hour'");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT patient_id, vital, {bucket} AS hour, avg(value) AS mean FROM readings \
             WHERE patient_id = ANY($1) AND vital = ANY($2) AND time > now() - interval '24 hours' \
             GROUP BY patient_id, vital, hour ORDER BY patient_id, vital, hour"
        )))
        .bind(patients)
        .bind(vitals)
        .fetch_all(&self.pool)
        .await?)
    }
}
