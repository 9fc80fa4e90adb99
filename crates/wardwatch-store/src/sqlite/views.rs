//! What the API reads on SQLite: patients' views, readings, buckets and
//! trends (the twin of the reads in [`crate::access`]) and team reports
//! (the twin of [`crate::reports`]).
//!
//! PostgreSQL keeps times to the microsecond (sqlx truncates what it binds)
//! and computes durations exactly; here times are text, so durations and the
//! report's clipping are computed in Rust on microsecond-truncated instants,
//! giving the same figures. Buckets are epoch-aligned, as `date_bin` from
//! 1970-01-01 is, on whole epoch seconds (the widths are whole seconds).

use super::{classify, SqliteStore};

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

use crate::reports::TeamReport;
use crate::views::{BucketRow, HourlyMean, LatestReading, PatientView, ReadingRow, TeamPatient};
use crate::StoreError;

/// A list parameter as JSON text (for `json_each`).
fn json_list<T: serde::Serialize + ?Sized>(list: &T) -> Result<String, StoreError> {
    serde_json::to_string(list).map_err(|e| StoreError::Rejected(format!("a list parameter: {e}")))
}

/// The argument errors PostgreSQL raises (SQLSTATE 22023, a data error).
fn invalid(what: &str) -> StoreError {
    StoreError::Database(sqlx::Error::InvalidArgument(what.into()))
}

/// An instant as PostgreSQL stores one bound by sqlx: whole microseconds.
pub(super) fn trunc_us(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Seconds from `a` to `b` as PostgreSQL's `EXTRACT(EPOCH FROM b - a)::float8`
/// gives them: the exact microsecond difference, rounded once to a double.
pub(super) fn secs_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b.timestamp_micros() - a.timestamp_micros()) as f64 / 1e6
}

/// A bucket's start from its epoch seconds.
fn bucket_start(secs: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| invalid("a bucket start out of the range of times"))
}

/// SQL for the epoch second starting `time`'s bucket of `width` seconds (an
/// SQL expression): a floor division (`unixepoch` already floors to the
/// second), as `date_bin(width, time, '1970-01-01')` does.
fn bucket_of_time(width: &str) -> String {
    format!("(unixepoch(time) - ((unixepoch(time) % {width}) + {width}) % {width})")
}

/// PostgreSQL's `percentile_cont(p)` over sorted values: linear
/// interpolation between the rows around `p * (n - 1)`.
pub(super) fn percentile_cont(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rownum = p * (sorted.len() - 1) as f64;
    let (first, second) = (rownum.floor(), rownum.ceil());
    let lo = *sorted.get(first as usize)?;
    if second > first {
        let hi = *sorted.get(second as usize)?;
        Some(lo + (hi - lo) * (rownum - first))
    } else {
        Some(lo)
    }
}

impl crate::ViewStore for SqliteStore {
    async fn patient_view(&self, id: &str) -> Result<Option<PatientView>, StoreError> {
        sqlx::query_as(
            "SELECT id, team_id, pathway, spo2_scale, discharged_at IS NOT NULL AS discharged, \
             nhs_number, date_of_birth, (SELECT json_group_array(device_id ORDER BY device_id) \
               FROM device_assignments WHERE patient_id = p.id AND valid_to IS NULL) AS devices \
             FROM patients p WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)
    }

    async fn readings_page(
        &self,
        patient: &str,
        vital: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&crate::views::ReadingKey>,
        limit: i64,
    ) -> Result<Vec<ReadingRow>, StoreError> {
        if limit < 0 {
            return Err(invalid("LIMIT must not be negative"));
        }
        sqlx::query_as(
            "SELECT vital, time, value, device_id, source FROM readings \
             WHERE patient_id = $1 AND ($2 IS NULL OR vital = $2) AND time >= $3 AND time < $4 \
               AND ($6 IS NULL OR (time, vital, device_id) > ($6, $7, $8)) \
             ORDER BY time, vital, device_id LIMIT $5",
        )
        .bind(patient)
        .bind(vital)
        .bind(trunc_us(from))
        .bind(trunc_us(to))
        .bind(limit)
        .bind(after.map(|k| trunc_us(k.time)))
        .bind(after.map(|k| k.vital.as_str()).unwrap_or(""))
        .bind(after.map(|k| k.device_id.as_str()).unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
    }

    async fn readings_of(
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

    async fn reading_buckets(
        &self,
        patient: &str,
        vital: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket_secs: i64,
    ) -> Result<Vec<BucketRow>, StoreError> {
        // date_bin's own refusal; SQLite would divide by zero into NULL.
        if bucket_secs <= 0 {
            return Err(invalid("stride must be greater than zero"));
        }
        let bucket = bucket_of_time("$5");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {bucket} AS start, count(*) AS count, min(value) AS min, max(value) AS max, \
             avg(value) AS avg FROM readings \
             WHERE patient_id = $1 AND vital = $2 AND time >= $3 AND time < $4 \
             GROUP BY start ORDER BY start"
        )))
        .bind(patient)
        .bind(vital)
        .bind(trunc_us(from))
        .bind(trunc_us(to))
        .bind(bucket_secs)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            // The bucket is epoch seconds here (no date_bin in SQLite).
            out.push(BucketRow {
                start: bucket_start(r.try_get("start").map_err(classify)?)?,
                count: r.try_get("count").map_err(classify)?,
                min: r.try_get("min").map_err(classify)?,
                max: r.try_get("max").map_err(classify)?,
                avg: r.try_get("avg").map_err(classify)?,
            });
        }
        Ok(out)
    }

    async fn latest_readings(&self, patients: &[String]) -> Result<Vec<LatestReading>, StoreError> {
        // DISTINCT ON (patient_id, vital) ... ORDER BY time DESC.
        sqlx::query_as(
            "SELECT patient_id, vital, value, time FROM ( \
               SELECT patient_id, vital, value, time, row_number() OVER \
                 (PARTITION BY patient_id, vital ORDER BY time DESC) AS n \
               FROM readings WHERE patient_id IN (SELECT value FROM json_each($1)) AND time > $2) \
             WHERE n = 1 ORDER BY patient_id, vital",
        )
        .bind(json_list(patients)?)
        .bind(trunc_us(
            wardwatch_core::clock::engine::now() - Duration::days(7),
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
    }

    async fn patients_of_teams(&self, teams: &[String]) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT id FROM patients WHERE team_id IN (SELECT value FROM json_each($1)) \
               AND discharged_at IS NULL ORDER BY id",
        )
        .bind(json_list(teams)?)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
    }

    async fn team_patients(&self, team: &str) -> Result<Vec<TeamPatient>, StoreError> {
        sqlx::query_as(
            "SELECT p.id, p.pathway, p.spo2_scale, p.care_plan_oxygen, \
               (SELECT a.severity FROM alerts a WHERE a.patient_id = p.id AND a.state <> 'resolved' \
                 ORDER BY CASE a.severity WHEN 'emergency' THEN 1 WHEN 'high' THEN 2 \
                   WHEN 'medium' THEN 3 WHEN 'low' THEN 4 ELSE 5 END LIMIT 1) AS alert_severity, \
               EXISTS (SELECT 1 FROM flags f WHERE f.patient_id = p.id \
                 AND (f.rule = 'no_data' OR f.rule LIKE 'no_data:%') AND f.cleared_at IS NULL) AS silent, \
               (SELECT json_group_array(d) FROM (SELECT substr(f.rule, 9) AS d FROM flags f \
                 WHERE f.patient_id = p.id AND f.rule LIKE 'no_data:%' AND f.cleared_at IS NULL \
                 ORDER BY f.rule)) AS silent_devices \
             FROM patients p WHERE p.team_id = $1 AND p.discharged_at IS NULL ORDER BY p.id",
        )
        .bind(team)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
    }

    async fn hourly_trends(
        &self,
        patients: &[String],
        vitals: &[&str],
    ) -> Result<Vec<HourlyMean>, StoreError> {
        let bucket = bucket_of_time("3600");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT patient_id, vital, {bucket} AS hour, avg(value) AS mean FROM readings \
             WHERE patient_id IN (SELECT value FROM json_each($1)) \
               AND vital IN (SELECT value FROM json_each($2)) AND time > $3 \
             GROUP BY patient_id, vital, hour ORDER BY patient_id, vital, hour"
        )))
        .bind(json_list(patients)?)
        .bind(json_list(vitals)?)
        .bind(trunc_us(
            wardwatch_core::clock::engine::now() - Duration::hours(24),
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(HourlyMean {
                patient_id: r.try_get("patient_id").map_err(classify)?,
                vital: r.try_get("vital").map_err(classify)?,
                hour: bucket_start(r.try_get("hour").map_err(classify)?)?,
                mean: r.try_get("mean").map_err(classify)?,
            });
        }
        Ok(out)
    }

    async fn team_report(
        &self,
        team: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        expected_interval_mins: &HashMap<String, u32>,
    ) -> Result<TeamReport, StoreError> {
        self.team_report_of(team, from, to, expected_interval_mins)
            .await
    }
}
