//! The PostgreSQL side of [`crate::rules`]: patients' settings and limits
//! (audited), the start-up replay, flags and their events.

use crate::rules::*;
use crate::{PgStore, StoreError};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, Row};
use wardwatch_core::PatientId;

/// Hands a transferred patient's open alerts to the new team and its
/// escalation policy, recording the move on each; returns how many.
pub(crate) async fn move_open_alerts(
    conn: &mut PgConnection,
    patient: &str,
    team: &str,
    team_policy: Option<&Value>,
) -> Result<u64, StoreError> {
    let alerts = sqlx::query_scalar::<_, i64>(crate::sql::rules::MOVE_OPEN_ALERTS_TO_TEAM)
        .bind(patient)
        .bind(team)
        .bind(team_policy)
        .fetch_all(&mut *conn)
        .await?;
    for id in &alerts {
        sqlx::query(
            "INSERT INTO alert_events (alert_id, actor, kind, detail) \
             VALUES ($1, 'wardwatch', 'transferred', $2)",
        )
        .bind(id)
        .bind(serde_json::json!({"team": team}))
        .execute(&mut *conn)
        .await?;
    }
    Ok(alerts.len() as u64)
}

pub(crate) async fn audit(
    conn: &mut PgConnection,
    patient: &str,
    actor: &str,
    field: &str,
    old: Option<String>,
    new: Option<String>,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO patient_settings_audit (patient_id, actor, field, old_value, new_value, reason) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(patient)
    .bind(actor)
    .bind(field)
    .bind(old)
    .bind(new)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A `patient_limits` row, its columns read by name (a query may add others).
fn limit_row(r: &sqlx::postgres::PgRow) -> Result<LimitRow, sqlx::Error> {
    LimitRow::from_row(r)
}

impl PgStore {
    /// A patient's team.
    pub async fn team_of(&self, patient: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(crate::sql::rules::TEAM_OF_PATIENT)
            .bind(patient)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Patients' settings and limits.
    pub async fn patient_rows(
        &self,
        filter: PatientFilter<'_>,
    ) -> Result<Vec<PatientRow>, StoreError> {
        const COLUMNS: &str = "SELECT id, pathway, spo2_scale, care_plan_oxygen, date_of_birth, \
             pregnant, discharged_at IS NOT NULL AS discharged, settings_version FROM patients";
        let rows = match filter {
            PatientFilter::All => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} ORDER BY id")))
                    .fetch_all(&self.pool)
                    .await?
            }
            PatientFilter::Ids(ids) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE id = ANY($1) ORDER BY id"
                )))
                .bind(ids)
                .fetch_all(&self.pool)
                .await?
            }
            PatientFilter::ChangedSince(v) => {
                // Also the last two minutes: a change committed late, with a
                // version below the highest already seen, is not missed.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE settings_version > $1 \
                     OR settings_changed_at > now() - interval '2 minutes' ORDER BY id"
                )))
                .bind(v)
                .fetch_all(&self.pool)
                .await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(PatientRow {
                id: r.try_get("id")?,
                pathway: r.try_get("pathway")?,
                spo2_scale: r.try_get("spo2_scale")?,
                care_plan_oxygen: r.try_get("care_plan_oxygen")?,
                date_of_birth: r.try_get("date_of_birth")?,
                pregnant: r.try_get("pregnant")?,
                discharged: r.try_get("discharged")?,
                settings_version: r.try_get("settings_version")?,
                limits: Vec::new(),
                devices: Vec::new(),
            });
        }
        let ids: Vec<String> = out.iter().map(|p| p.id.clone()).collect();
        let position: std::collections::HashMap<String, usize> = out
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        let limits = sqlx::query(
            "SELECT patient_id, vital, low, high, severity, persist_readings, persist_secs, \
             clear_margin, clear_hold_secs FROM patient_limits WHERE patient_id = ANY($1) \
             ORDER BY patient_id, vital",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        for r in limits {
            let patient: String = r.try_get("patient_id")?;
            // By position, not by searching `out`: the database's collation
            // (en_US, say) need not sort ids as Rust compares bytes, and a
            // missed search would drop a personal limit without a word.
            if let Some(&i) = position.get(patient.as_str()) {
                if let Some(p) = out.get_mut(i) {
                    p.limits.push(limit_row(&r)?);
                }
            }
        }
        let devices = sqlx::query(
            "SELECT patient_id, device_id FROM device_assignments WHERE patient_id = ANY($1) \
             AND valid_from <= $2 AND (valid_to IS NULL OR valid_to > $2) ORDER BY patient_id, device_id",
        )
        .bind(&ids)
        .bind(wardwatch_core::clock::engine::now())
        .fetch_all(&self.pool)
        .await?;
        for r in devices {
            let patient: String = r.try_get("patient_id")?;
            if let Some(p) = position.get(patient.as_str()).and_then(|&i| out.get_mut(i)) {
                p.devices.push(r.try_get("device_id")?);
            }
        }
        Ok(out)
    }

    /// Changes one clinical setting, recording who, from what, to what and
    /// why in the same transaction.
    pub async fn set_patient(
        &self,
        patient: &PatientId,
        setting: Setting,
        actor: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (actor, reason) = (clean(actor, "who")?, clean(reason, "the reason")?);
        let column = setting.column();
        let mut tx = self.pool.begin().await?;
        let old: Option<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {column}::text FROM patients WHERE id = $1 FOR UPDATE"
        )))
        .bind(patient.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(old) = old else {
            return Err(StoreError::Rejected(format!(
                "patient {patient} is not enrolled"
            )));
        };
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
                            .await?;
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
        q.execute(&mut *tx).await?;
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
        tx.commit().await?;
        Ok(())
    }

    /// Sets (or replaces) a personalised limit, audited.
    pub async fn set_limit(
        &self,
        patient: &PatientId,
        limit: &LimitRow,
        actor: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (actor, reason) = (clean(actor, "who")?, clean(reason, "the reason")?);
        let mut tx = self.pool.begin().await?;
        let old: Option<LimitRow> = sqlx::query(
            "SELECT vital, low, high, severity, persist_readings, persist_secs, clear_margin, \
             clear_hold_secs FROM patient_limits WHERE patient_id = $1 AND vital = $2 FOR UPDATE",
        )
        .bind(patient.as_str())
        .bind(&limit.vital)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| limit_row(&r))
        .transpose()?;
        let res = sqlx::query(
            "INSERT INTO patient_limits (patient_id, vital, low, high, severity, persist_readings, \
             persist_secs, clear_margin, clear_hold_secs, set_by, reason) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 WHERE EXISTS (SELECT 1 FROM patients WHERE id = $1) \
             ON CONFLICT (patient_id, vital) DO UPDATE SET low = excluded.low, high = excluded.high, \
             severity = excluded.severity, persist_readings = excluded.persist_readings, \
             persist_secs = excluded.persist_secs, clear_margin = excluded.clear_margin, \
             clear_hold_secs = excluded.clear_hold_secs, set_by = excluded.set_by, \
             reason = excluded.reason, set_at = now()",
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
        .execute(&mut *tx)
        .await?;
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
        tx.commit().await?;
        Ok(())
    }

    /// Removes a personalised limit (the pathway's thresholds apply again), audited.
    pub async fn remove_limit(
        &self,
        patient: &PatientId,
        vital: &str,
        actor: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (actor, reason) = (clean(actor, "who")?, clean(reason, "the reason")?);
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(crate::sql::rules::DELETE_PATIENT_LIMIT)
            .bind(patient.as_str())
            .bind(vital)
            .execute(&mut *tx)
            .await?;
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
        tx.commit().await?;
        Ok(())
    }

    /// Records flag transitions in one transaction: at most one open flag
    /// per patient and rule (a unique index), and an event for each change.
    /// Retrying the whole batch after a failure is safe: it rolled back.
    /// Sets aside a flag change the database refused, with the reason.
    pub async fn set_aside_flag(
        &self,
        f: &FlagRecord,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(crate::sql::rules::INSERT_SET_ASIDE_FLAG)
            .bind(now)
            .bind(&f.patient_id)
            .bind(&f.rule)
            .bind(f.technical)
            .bind(f.severity)
            .bind(f.change.as_str())
            .bind(f.at)
            .bind(&f.summary)
            .bind(&f.evidence)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn write_flags(&self, flags: &[FlagRecord]) -> Result<FlagsOutcome, StoreError> {
        let mut out = FlagsOutcome::default();
        let mut tx = self.pool.begin().await?;
        for f in flags {
            let (id, state) = match f.change {
                FlagChange::Open => {
                    let row = sqlx::query(
                        "INSERT INTO flags (patient_id, rule, technical, severity, raised_at, updated_at, summary, evidence) \
                         VALUES ($1, $2, $3, $4, $5, $5, $6, $7) \
                         ON CONFLICT (patient_id, rule) WHERE cleared_at IS NULL DO UPDATE SET \
                         severity = excluded.severity, updated_at = excluded.updated_at, \
                         summary = excluded.summary, evidence = excluded.evidence \
                         RETURNING id, (xmax = 0) AS inserted",
                    )
                    .bind(&f.patient_id)
                    .bind(&f.rule)
                    .bind(f.technical)
                    .bind(f.severity)
                    .bind(f.at)
                    .bind(&f.summary)
                    .bind(&f.evidence)
                    .fetch_one(&mut *tx)
                    .await?;
                    let id: i64 = row.try_get("id")?;
                    if row.try_get::<bool, _>("inserted")? {
                        out.raised += 1;
                        (id, "raised")
                    } else {
                        out.updated += 1;
                        (id, "updated")
                    }
                }
                FlagChange::Clear => {
                    let id: Option<i64> = sqlx::query_scalar(crate::sql::rules::CLEAR_FLAG)
                        .bind(&f.patient_id)
                        .bind(&f.rule)
                        .bind(f.at)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(id) = id else {
                        out.ignored += 1;
                        continue;
                    };
                    out.cleared += 1;
                    (id, "cleared")
                }
            };
            sqlx::query(
                "INSERT INTO flag_events (flag_id, patient_id, rule, state, severity, at, summary, evidence) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(&f.patient_id)
            .bind(&f.rule)
            .bind(state)
            .bind(f.severity)
            .bind(f.at)
            .bind(&f.summary)
            .bind(&f.evidence)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Every open flag.
    pub async fn open_flags(&self) -> Result<Vec<OpenFlagRow>, StoreError> {
        Ok(sqlx::query_as(crate::sql::rules::OPEN_FLAGS)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Flags raised and alerts opened with `from <= time < to`, oldest
    /// first: what the store says actually happened.
    pub async fn outcomes_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<StoredOutcomes, StoreError> {
        let flags = sqlx::query(crate::sql::rules::FLAGS_RAISED_BETWEEN)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| RaisedFlagRow::from_row(&r))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let alerts = sqlx::query(
            "SELECT a.patient_id, a.kind, a.opened_at, \
               ARRAY(SELECT DISTINCT f.rule FROM alert_flags af JOIN flags f ON f.id = af.flag_id \
                     WHERE af.alert_id = a.id ORDER BY f.rule) AS rules \
             FROM alerts a WHERE a.opened_at >= $1 AND a.opened_at < $2 \
             ORDER BY a.opened_at, a.patient_id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| {
            Ok(OpenedAlertRow {
                patient_id: r.try_get("patient_id")?,
                kind: r.try_get("kind")?,
                opened_at: r.try_get("opened_at")?,
                rules: r.try_get("rules")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(StoredOutcomes { flags, alerts })
    }

    /// Stored readings with `from <= time < to`, keeping for each vital only
    /// those at or after its own horizon (`horizons`: vital name → earliest
    /// time worth replaying), in time order. Called for successive slices
    /// of time so memory stays bounded.
    pub async fn replay_slice(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        horizons: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<ReplayRow>, StoreError> {
        let vitals: Vec<&str> = horizons.iter().map(|(v, _)| v.as_str()).collect();
        let since: Vec<DateTime<Utc>> = horizons.iter().map(|(_, t)| *t).collect();
        Ok(sqlx::query_as(
            "SELECT r.patient_id, r.vital, r.value, r.time, r.device_id FROM readings r \
             JOIN UNNEST($3::text[], $4::timestamptz[]) AS h(vital, since) \
               ON r.vital = h.vital AND r.time >= h.since \
             WHERE r.time >= $1 AND r.time < $2 ORDER BY r.time, r.patient_id, r.vital",
        )
        .bind(from)
        .bind(to)
        .bind(&vitals)
        .bind(&since)
        .fetch_all(&self.pool)
        .await?)
    }
}
