//! What the rules core reads and writes, on SQLite: the twin of
//! [`crate::rules`] for [`SqliteStore`]. The settings version and its time
//! are kept by triggers (migration 0003), as PostgreSQL's are.

use super::{begin_write, classify, SqliteStore};

use chrono::{DateTime, Duration, SecondsFormat, Timelike, Utc};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{FromRow, Row};
use wardwatch_core::PatientId;

use crate::rules::{
    clean, limit_text, FlagChange, FlagRecord, FlagsOutcome, LimitRow, OpenFlagRow, OpenedAlertRow,
    PatientFilter, PatientRow, RaisedFlagRow, ReplayRow, Setting, StoredOutcomes,
};
use crate::StoreError;

/// A time as sqlx binds it on SQLite, for times carried inside JSON
/// parameters: the same text, so comparisons with stored times hold.
fn bound_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// A list parameter as JSON text (for `json_each`).
fn json_list<T: serde::Serialize>(list: &T) -> Result<String, StoreError> {
    serde_json::to_string(list).map_err(|e| StoreError::Rejected(format!("a list parameter: {e}")))
}

/// A time as PostgreSQL's `timestamptz::text` writes it in UTC (the audit's
/// old values read the same on both backends): microseconds, trailing
/// zeros dropped.
fn pg_time_text(t: DateTime<Utc>) -> String {
    let micros = t.nanosecond() % 1_000_000_000 / 1000;
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if micros > 0 {
        let frac = format!("{micros:06}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str("+00");
    s
}

/// Hands a transferred patient's open alerts to the new team and its
/// escalation policy, recording the move on each; returns how many.
pub(crate) async fn move_open_alerts(
    conn: &mut SqliteConnection,
    patient: &str,
    team: &str,
    team_policy: Option<&Value>,
) -> Result<u64, StoreError> {
    let alerts = sqlx::query_scalar::<_, i64>(crate::sql::rules::MOVE_OPEN_ALERTS_TO_TEAM)
        .bind(patient)
        .bind(team)
        .bind(team_policy.map(Value::to_string))
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
    for id in &alerts {
        sqlx::query(
            "INSERT INTO alert_events (alert_id, actor, kind, detail, at) \
             VALUES ($1, 'wardwatch', 'transferred', $2, $3)",
        )
        .bind(id)
        .bind(serde_json::json!({"team": team}).to_string())
        .bind(wardwatch_core::clock::engine::now())
        .execute(&mut *conn)
        .await
        .map_err(classify)?;
    }
    Ok(alerts.len() as u64)
}

/// One row of `patient_settings_audit` (append-only).
pub(crate) async fn audit(
    conn: &mut SqliteConnection,
    patient: &str,
    actor: &str,
    field: &str,
    old: Option<String>,
    new: Option<String>,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO patient_settings_audit (patient_id, actor, field, old_value, new_value, reason, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(patient)
    .bind(actor)
    .bind(field)
    .bind(old)
    .bind(new)
    .bind(reason)
    .bind(wardwatch_core::clock::engine::now())
    .execute(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(())
}

/// A `patient_limits` row, its columns read by name (a query may add others).
fn limit_row(r: &SqliteRow) -> Result<LimitRow, StoreError> {
    LimitRow::from_row(r).map_err(classify)
}

/// The current value of `setting`'s column as PostgreSQL's `::text` shows
/// it (`true`/`false`, ISO dates and times), `None` when NULL.
fn old_text(r: &SqliteRow, setting: &Setting) -> Result<Option<String>, StoreError> {
    Ok(match setting {
        Setting::Pathway(_) => r.try_get::<Option<String>, _>(0).map_err(classify)?,
        Setting::Spo2Scale(_) => r
            .try_get::<Option<i64>, _>(0)
            .map_err(classify)?
            .map(|v| v.to_string()),
        Setting::CarePlanOxygen(_) | Setting::Pregnant(_) => r
            .try_get::<Option<bool>, _>(0)
            .map_err(classify)?
            .map(|v| v.to_string()),
        Setting::DateOfBirth(_) => r
            .try_get::<Option<chrono::NaiveDate>, _>(0)
            .map_err(classify)?
            .map(|d| d.to_string()),
        Setting::Discharged(_) | Setting::Readmitted => r
            .try_get::<Option<DateTime<Utc>>, _>(0)
            .map_err(classify)?
            .map(pg_time_text),
    })
}

impl crate::RulesStore for SqliteStore {
    async fn team_of(&self, patient: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(crate::sql::rules::TEAM_OF_PATIENT)
            .bind(patient)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)
    }

    async fn patient_rows(&self, filter: PatientFilter<'_>) -> Result<Vec<PatientRow>, StoreError> {
        const COLUMNS: &str = "SELECT id, pathway, spo2_scale, care_plan_oxygen, date_of_birth, \
             pregnant, discharged_at IS NOT NULL AS discharged, settings_version FROM patients";
        let rows = match filter {
            PatientFilter::All => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} ORDER BY id")))
                    .fetch_all(&self.pool)
                    .await
            }
            PatientFilter::Ids(ids) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id"
                )))
                .bind(json_list(&ids)?)
                .fetch_all(&self.pool)
                .await
            }
            PatientFilter::ChangedSince(v) => {
                // Also the last two minutes, as on PostgreSQL: a change with
                // a version below the highest already seen is not missed.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE settings_version > $1 OR settings_changed_at > $2 ORDER BY id"
                )))
                .bind(v)
                .bind(wardwatch_core::clock::engine::now() - Duration::minutes(2))
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(classify)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(PatientRow {
                id: r.try_get("id").map_err(classify)?,
                pathway: r.try_get("pathway").map_err(classify)?,
                spo2_scale: r.try_get("spo2_scale").map_err(classify)?,
                care_plan_oxygen: r.try_get("care_plan_oxygen").map_err(classify)?,
                date_of_birth: r.try_get("date_of_birth").map_err(classify)?,
                pregnant: r.try_get("pregnant").map_err(classify)?,
                discharged: r.try_get("discharged").map_err(classify)?,
                settings_version: r.try_get("settings_version").map_err(classify)?,
                limits: Vec::new(),
                devices: Vec::new(),
            });
        }
        let ids: Vec<String> = out.iter().map(|p| p.id.clone()).collect();
        // By id, as on PostgreSQL: never a search that assumes the
        // database sorts ids as Rust compares them.
        let position: std::collections::HashMap<String, usize> = out
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        let limits = sqlx::query(
            "SELECT patient_id, vital, low, high, severity, persist_readings, persist_secs, \
             clear_margin, clear_hold_secs FROM patient_limits \
             WHERE patient_id IN (SELECT value FROM json_each($1)) ORDER BY patient_id, vital",
        )
        .bind(json_list(&ids)?)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        for r in limits {
            let patient: String = r.try_get("patient_id").map_err(classify)?;
            if let Some(p) = position.get(&patient).and_then(|&i| out.get_mut(i)) {
                p.limits.push(limit_row(&r)?);
            }
        }
        let devices = sqlx::query(
            "SELECT patient_id, device_id FROM device_assignments \
             WHERE patient_id IN (SELECT value FROM json_each($1)) \
             AND valid_from <= $2 AND (valid_to IS NULL OR valid_to > $2) ORDER BY patient_id, device_id",
        )
        .bind(json_list(&ids)?)
        .bind(wardwatch_core::clock::engine::now())
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        for r in devices {
            let patient: String = r.try_get("patient_id").map_err(classify)?;
            if let Some(p) = position.get(&patient).and_then(|&i| out.get_mut(i)) {
                p.devices.push(r.try_get("device_id").map_err(classify)?);
            }
        }
        Ok(out)
    }

    async fn set_patient(
        &self,
        patient: &PatientId,
        setting: Setting,
        actor: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (actor, reason) = (clean(actor, "who")?, clean(reason, "the reason")?);
        let column = setting.column();
        let mut tx = begin_write(&self.pool).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {column} FROM patients WHERE id = $1"
        )))
        .bind(patient.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let Some(row) = row else {
            return Err(StoreError::Rejected(format!(
                "patient {patient} is not enrolled"
            )));
        };
        let old = old_text(&row, &setting)?;
        let sql = sqlx::AssertSqlSafe(format!("UPDATE patients SET {column} = $2 WHERE id = $1"));
        let q = sqlx::query(sql).bind(patient.as_str());
        let q = match &setting {
            Setting::Pathway(p) => q.bind(p.clone()),
            Setting::Spo2Scale(s) => {
                if !matches!(s, 1 | 2) {
                    return Err(StoreError::Rejected(format!(
                        "SpO2 scale must be 1 or 2, not {s}"
                    )));
                }
                // Scale 2 scores SpO2 of 93% and above by whether the
                // patient is on oxygen: the care plan must say which, not
                // default to air.
                if *s == 2 {
                    let stated: bool =
                        sqlx::query_scalar(crate::sql::rules::CARE_PLAN_OXYGEN_AUDITED)
                            .bind(patient.as_str())
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(classify)?;
                    if !stated {
                        return Err(StoreError::Rejected(
                            "a Scale 2 decision needs the care plan's oxygen status stated first \
                             (on air or on oxygen): set care_plan_oxygen"
                                .into(),
                        ));
                    }
                }
                q.bind(*s)
            }
            Setting::CarePlanOxygen(b) | Setting::Pregnant(b) => q.bind(*b),
            Setting::DateOfBirth(d) => q.bind(*d),
            Setting::Discharged(t) => q.bind(*t),
            Setting::Readmitted => q.bind(None::<DateTime<Utc>>),
        };
        q.execute(&mut *tx).await.map_err(classify)?;
        audit(
            &mut tx,
            patient.as_str(),
            &actor,
            column,
            old,
            setting.text(),
            &reason,
        )
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    async fn set_limit(
        &self,
        patient: &PatientId,
        limit: &LimitRow,
        actor: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (actor, reason) = (clean(actor, "who")?, clean(reason, "the reason")?);
        let mut tx = begin_write(&self.pool).await?;
        let old = sqlx::query(
            "SELECT vital, low, high, severity, persist_readings, persist_secs, clear_margin, \
             clear_hold_secs FROM patient_limits WHERE patient_id = $1 AND vital = $2",
        )
        .bind(patient.as_str())
        .bind(&limit.vital)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?
        .map(|r| limit_row(&r))
        .transpose()?;
        // The WHERE is required by SQLite's parser for an upsert from a SELECT.
        let res = sqlx::query(
            "INSERT INTO patient_limits (patient_id, vital, low, high, severity, persist_readings, \
             persist_secs, clear_margin, clear_hold_secs, set_by, reason, set_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 \
             WHERE EXISTS (SELECT 1 FROM patients WHERE id = $1) \
             ON CONFLICT (patient_id, vital) DO UPDATE SET low = excluded.low, high = excluded.high, \
             severity = excluded.severity, persist_readings = excluded.persist_readings, \
             persist_secs = excluded.persist_secs, clear_margin = excluded.clear_margin, \
             clear_hold_secs = excluded.clear_hold_secs, set_by = excluded.set_by, \
             reason = excluded.reason, set_at = excluded.set_at",
        )
        .bind(patient.as_str())
        .bind(&limit.vital)
        .bind(limit.low)
        .bind(limit.high)
        .bind(&limit.severity)
        .bind(limit.persist_readings)
        .bind(limit.persist_secs)
        .bind(limit.clear_margin)
        .bind(limit.clear_hold_secs)
        .bind(&actor)
        .bind(&reason)
        .bind(wardwatch_core::clock::engine::now())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Rejected(format!(
                "patient {patient} is not enrolled"
            )));
        }
        let field = format!("limit:{}", limit.vital);
        audit(
            &mut tx,
            patient.as_str(),
            &actor,
            &field,
            old.as_ref().map(limit_text),
            Some(limit_text(limit)),
            &reason,
        )
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    async fn remove_limit(
        &self,
        patient: &PatientId,
        vital: &str,
        actor: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (actor, reason) = (clean(actor, "who")?, clean(reason, "the reason")?);
        let mut tx = begin_write(&self.pool).await?;
        let res = sqlx::query(crate::sql::rules::DELETE_PATIENT_LIMIT)
            .bind(patient.as_str())
            .bind(vital)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Rejected(format!(
                "patient {patient} has no personal {vital} limit"
            )));
        }
        let field = format!("limit:{vital}");
        audit(
            &mut tx,
            patient.as_str(),
            &actor,
            &field,
            Some("set".into()),
            None,
            &reason,
        )
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    async fn write_flags(&self, flags: &[FlagRecord]) -> Result<FlagsOutcome, StoreError> {
        let mut out = FlagsOutcome::default();
        let mut tx = begin_write(&self.pool).await?;
        for f in flags {
            let evidence = f.evidence.to_string();
            let (id, state) = match f.change {
                // SQLite's upsert cannot say whether it inserted, so look
                // first; the one writer connection makes that safe.
                FlagChange::Open => {
                    let open: Option<i64> = sqlx::query_scalar(
                        "SELECT id FROM flags WHERE patient_id = $1 AND rule = $2 AND cleared_at IS NULL",
                    )
                    .bind(&f.patient_id)
                    .bind(&f.rule)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(classify)?;
                    match open {
                        Some(id) => {
                            sqlx::query(
                                "UPDATE flags SET severity = $2, updated_at = $3, summary = $4, \
                                 evidence = $5 WHERE id = $1",
                            )
                            .bind(id)
                            .bind(f.severity)
                            .bind(f.at)
                            .bind(&f.summary)
                            .bind(&evidence)
                            .execute(&mut *tx)
                            .await
                            .map_err(classify)?;
                            out.updated += 1;
                            (id, "updated")
                        }
                        None => {
                            let id: i64 = sqlx::query_scalar(
                                "INSERT INTO flags (patient_id, rule, technical, severity, raised_at, \
                                 updated_at, summary, evidence) VALUES ($1, $2, $3, $4, $5, $5, $6, $7) \
                                 RETURNING id",
                            )
                            .bind(&f.patient_id)
                            .bind(&f.rule)
                            .bind(f.technical)
                            .bind(f.severity)
                            .bind(f.at)
                            .bind(&f.summary)
                            .bind(&evidence)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(classify)?;
                            out.raised += 1;
                            (id, "raised")
                        }
                    }
                }
                FlagChange::Clear => {
                    let id: Option<i64> = sqlx::query_scalar(crate::sql::rules::CLEAR_FLAG)
                        .bind(&f.patient_id)
                        .bind(&f.rule)
                        .bind(f.at)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(classify)?;
                    let Some(id) = id else {
                        out.ignored += 1;
                        continue;
                    };
                    out.cleared += 1;
                    (id, "cleared")
                }
            };
            sqlx::query(
                "INSERT INTO flag_events (flag_id, patient_id, rule, state, severity, at, summary, \
                 evidence, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(id)
            .bind(&f.patient_id)
            .bind(&f.rule)
            .bind(state)
            .bind(f.severity)
            .bind(f.at)
            .bind(&f.summary)
            .bind(&evidence)
            .bind(wardwatch_core::clock::engine::now())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(out)
    }

    async fn open_flags(&self) -> Result<Vec<OpenFlagRow>, StoreError> {
        let rows = sqlx::query(crate::sql::rules::OPEN_FLAGS)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.into_iter()
            .map(|r| OpenFlagRow::from_row(&r).map_err(classify))
            .collect()
    }

    async fn replay_slice(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        horizons: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<ReplayRow>, StoreError> {
        // PostgreSQL's UNNEST of two arrays: a JSON array of [vital, since]
        // pairs, the time in the text shape readings are stored in.
        let pairs: Vec<(&str, String)> = horizons
            .iter()
            .map(|(v, t)| (v.as_str(), bound_text(*t)))
            .collect();
        let rows = sqlx::query(
            "SELECT r.patient_id, r.vital, r.value, r.time, r.device_id FROM readings r \
             JOIN json_each($3) h ON r.vital = (h.value ->> 0) AND r.time >= (h.value ->> 1) \
             WHERE r.time >= $1 AND r.time < $2 ORDER BY r.time, r.patient_id, r.vital",
        )
        .bind(from)
        .bind(to)
        .bind(json_list(&pairs)?)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.into_iter()
            .map(|r| ReplayRow::from_row(&r).map_err(classify))
            .collect()
    }

    async fn outcomes_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<StoredOutcomes, StoreError> {
        let flags = sqlx::query(crate::sql::rules::FLAGS_RAISED_BETWEEN)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(|r| RaisedFlagRow::from_row(&r).map_err(classify))
            .collect::<Result<Vec<_>, StoreError>>()?;
        // PostgreSQL's ARRAY(...): a JSON array of the alert's flag rules.
        let alerts = sqlx::query(
            "SELECT a.patient_id, a.kind, a.opened_at, \
               (SELECT json_group_array(rule) FROM (SELECT DISTINCT f.rule AS rule \
                  FROM alert_flags af JOIN flags f ON f.id = af.flag_id \
                  WHERE af.alert_id = a.id ORDER BY f.rule)) AS rules \
             FROM alerts a WHERE a.opened_at >= $1 AND a.opened_at < $2 \
             ORDER BY a.opened_at, a.patient_id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?
        .into_iter()
        .map(|r| {
            let rules: String = r.try_get("rules").map_err(classify)?;
            Ok(OpenedAlertRow {
                patient_id: r.try_get("patient_id").map_err(classify)?,
                kind: r.try_get("kind").map_err(classify)?,
                opened_at: r.try_get("opened_at").map_err(classify)?,
                rules: serde_json::from_str(&rules)
                    .map_err(|e| StoreError::Rejected(format!("an alert's rules: {e}")))?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(StoredOutcomes { flags, alerts })
    }

    async fn set_aside_flag(
        &self,
        f: &FlagRecord,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        sqlx::query(crate::sql::rules::INSERT_SET_ASIDE_FLAG)
            .bind(now)
            .bind(&f.patient_id)
            .bind(&f.rule)
            .bind(f.technical)
            .bind(f.severity)
            .bind(f.change.as_str())
            .bind(f.at)
            .bind(&f.summary)
            .bind(f.evidence.to_string())
            .bind(reason)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(())
    }
}
