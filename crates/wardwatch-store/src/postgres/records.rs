//! The PostgreSQL side of [`crate::records`]: enrolment, transfers,
//! devices, manual observations, notes and users.

use crate::postgres::rules::{audit, move_open_alerts};
use crate::records::*;
use crate::rules::clean;
use crate::{NewReading, PgStore, StoreError};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, Row};
use wardwatch_core::{DeviceId, NhsNumber, PatientId};

impl PgStore {
    /// Assigns a device to a patient from `from`, ending any open assignment at `from`.
    pub async fn assign_device(
        &self,
        device: &DeviceId,
        patient: &PatientId,
        from: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let known: Option<String> = sqlx::query_scalar("SELECT id FROM patients WHERE id = $1")
            .bind(patient.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(StoreError::Rejected(format!(
                "patient {patient} is not enrolled; add it first (wardwatch patient add --id {patient} --team T)"
            )));
        }
        sqlx::query(crate::sql::records::INSERT_DEVICE)
            .bind(device.as_str())
            .execute(&mut *tx)
            .await?;
        // Serialise concurrent assignments of the same device.
        let retired: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT retired_at FROM devices WHERE id = $1 FOR UPDATE")
                .bind(device.as_str())
                .fetch_one(&mut *tx)
                .await?;
        if retired.is_some() {
            return Err(StoreError::Rejected(format!(
                "device {device} is retired and cannot be lent"
            )));
        }
        let later: Option<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT patient_id, valid_from FROM device_assignments \
             WHERE device_id = $1 AND (valid_to IS NULL OR valid_to > $2) AND valid_from >= $2 \
             ORDER BY valid_from LIMIT 1",
        )
        .bind(device.as_str())
        .bind(from)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((p, since)) = later {
            return Err(StoreError::Rejected(format!(
                "device {device} is assigned to {p} from {}; an assignment cannot start at or before it ({})",
                since.to_rfc3339(),
                from.to_rfc3339()
            )));
        }
        sqlx::query(
            "UPDATE device_assignments SET valid_to = $2 WHERE device_id = $1 AND valid_to IS NULL",
        )
        .bind(device.as_str())
        .bind(from)
        .execute(&mut *tx)
        .await?;
        sqlx::query(crate::sql::records::INSERT_ASSIGNMENT)
            .bind(device.as_str())
            .bind(patient.as_str())
            .bind(from)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends the device's open assignment at `at`.
    pub async fn unassign_device(
        &self,
        device: &DeviceId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let open: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT valid_from FROM device_assignments WHERE device_id = $1 AND valid_to IS NULL FOR UPDATE",
        )
        .bind(device.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(since) = open else {
            return Err(StoreError::Rejected(format!(
                "device {device} is not assigned to anyone"
            )));
        };
        if at <= since {
            return Err(StoreError::Rejected(format!(
                "device {device} was assigned at {}; it cannot be returned at {}",
                since.to_rfc3339(),
                at.to_rfc3339()
            )));
        }
        sqlx::query(
            "UPDATE device_assignments SET valid_to = $2 WHERE device_id = $1 AND valid_to IS NULL",
        )
        .bind(device.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The record (id, team) holding an NHS number, if any.
    pub async fn patient_by_nhs_number(
        &self,
        nhs_number: &str,
    ) -> Result<Option<PatientPlace>, StoreError> {
        Ok(sqlx::query_as(crate::sql::records::PATIENT_BY_NHS_NUMBER)
            .bind(nhs_number)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Enrols a new patient; a known id or NHS number is refused rather
    /// than merged (two records for one person, or one for two, both harm).
    pub async fn enrol_patient(&self, e: &Enrolment, actor: &str) -> Result<(), StoreError> {
        let team = clean(&e.team, "team")?;
        let actor = clean(actor, "who")?;
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(crate::sql::records::INSERT_PATIENT_WITH_IDENTITY)
            .bind(e.id.as_str())
            .bind(&team)
            .bind(&e.pathway)
            .bind(e.nhs_number.as_ref().map(NhsNumber::as_str))
            .bind(e.date_of_birth)
            .execute(&mut *tx)
            .await?;
        if inserted.rows_affected() == 0 {
            let id_taken: bool = sqlx::query_scalar(crate::sql::records::PATIENT_EXISTS)
                .bind(e.id.as_str())
                .fetch_one(&mut *tx)
                .await?;
            return Err(StoreError::Rejected(if id_taken {
                format!("patient id {} is already in use", e.id)
            } else {
                "this NHS number is already enrolled; find the existing record (transfer it if it is on another team)".into()
            }));
        }
        audit(
            &mut tx,
            e.id.as_str(),
            &actor,
            "enrolled",
            None,
            Some(format!("team {team}, pathway {}", e.pathway)),
            "enrolment",
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves a patient to another team, with their open alerts (which take
    /// the new team's policy), audited with who and why. Returns how many
    /// alerts moved.
    pub async fn transfer(
        &self,
        patient: &PatientId,
        team: &str,
        team_policy: Option<&Value>,
        actor: &str,
        reason: &str,
    ) -> Result<u64, StoreError> {
        let (team, actor, reason) = (
            clean(team, "team")?,
            clean(actor, "who")?,
            clean(reason, "the reason")?,
        );
        let mut tx = self.pool.begin().await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT team_id FROM patients WHERE id = $1 FOR UPDATE")
                .bind(patient.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(current) = current else {
            return Err(StoreError::Rejected(format!(
                "patient {patient} is not enrolled"
            )));
        };
        if current == team {
            return Err(StoreError::Rejected(format!(
                "patient {patient} is already on team {team}"
            )));
        }
        sqlx::query(crate::sql::records::SET_PATIENT_TEAM)
            .bind(patient.as_str())
            .bind(&team)
            .execute(&mut *tx)
            .await?;
        let moved = move_open_alerts(&mut tx, patient.as_str(), &team, team_policy).await?;
        audit(
            &mut tx,
            patient.as_str(),
            &actor,
            "team_id",
            Some(current),
            Some(team),
            &reason,
        )
        .await?;
        tx.commit().await?;
        Ok(moved)
    }

    /// Adds a device to the catalogue or corrects its model and kind.
    pub async fn register_device(
        &self,
        device: &DeviceId,
        model: &str,
        kind: &str,
    ) -> Result<DeviceRow, StoreError> {
        let model = clean(model, "model")?;
        if !DEVICE_KINDS.contains(&kind) {
            return Err(StoreError::Rejected(format!(
                "kind must be one of {}, not {kind:?}",
                DEVICE_KINDS.join(", ")
            )));
        }
        sqlx::query(crate::sql::records::UPSERT_DEVICE)
            .bind(device.as_str())
            .bind(&model)
            .bind(kind)
            .execute(&self.pool)
            .await?;
        self.device(device.as_str())
            .await?
            .ok_or_else(|| StoreError::Rejected(format!("device {device} vanished")))
    }

    /// The catalogue, or one device of it.
    async fn device_rows(&self, id: Option<&str>) -> Result<Vec<DeviceRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT d.id, d.model, d.kind, \
               CASE WHEN d.retired_at IS NOT NULL THEN 'retired' \
                    WHEN a.patient_id IS NOT NULL THEN 'assigned' ELSE 'available' END AS status, \
               a.patient_id, a.valid_from AS assigned_from \
             FROM devices d LEFT JOIN device_assignments a \
               ON a.device_id = d.id AND a.valid_to IS NULL \
             WHERE $1::text IS NULL OR d.id = $1 ORDER BY d.id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The whole catalogue.
    pub async fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        self.device_rows(None).await
    }

    /// One device.
    pub async fn device(&self, id: &str) -> Result<Option<DeviceRow>, StoreError> {
        Ok(self.device_rows(Some(id)).await?.into_iter().next())
    }

    /// Takes a device out of service for good; it must be returned first,
    /// so no patient is left with a device nobody reads.
    pub async fn retire_device(&self, device: &DeviceId) -> Result<DeviceRow, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(Option<DateTime<Utc>>, bool)> = sqlx::query_as(
            "SELECT retired_at, EXISTS (SELECT 1 FROM device_assignments \
               WHERE device_id = $1 AND valid_to IS NULL) FROM devices WHERE id = $1 FOR UPDATE",
        )
        .bind(device.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        match row {
            None => {
                return Err(StoreError::Rejected(format!(
                    "device {device} is not in the catalogue"
                )))
            }
            Some((Some(_), _)) => {
                return Err(StoreError::Rejected(format!(
                    "device {device} is already retired"
                )))
            }
            Some((None, true)) => {
                return Err(StoreError::Rejected(format!(
                    "device {device} is assigned to a patient; return it first"
                )))
            }
            Some((None, false)) => {}
        }
        sqlx::query("UPDATE devices SET retired_at = now() WHERE id = $1")
            .bind(device.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.device(device.as_str())
            .await?
            .ok_or_else(|| StoreError::Rejected(format!("device {device} vanished")))
    }

    /// Stores typed-in observations as readings (source `manual`) and who
    /// entered them, in one transaction. Sending the same entry again adds
    /// nothing (an idempotent retry); a different value for a vital already
    /// recorded at that time is refused. Returns the new readings for the
    /// rules.
    pub async fn record_manual(
        &self,
        e: &ManualEntry<'_>,
        received_at: DateTime<Utc>,
    ) -> Result<Vec<NewReading>, StoreError> {
        let recorded_by = clean(e.recorded_by, "who")?;
        let mut tx = self.pool.begin().await?;
        let discharged: Option<bool> = sqlx::query_scalar(
            "SELECT discharged_at IS NOT NULL FROM patients WHERE id = $1 FOR SHARE",
        )
        .bind(e.patient.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        match discharged {
            None => {
                return Err(StoreError::Rejected(format!(
                    "patient {} is not enrolled",
                    e.patient
                )))
            }
            Some(true) => {
                return Err(StoreError::Rejected(format!(
                    "patient {} is discharged; readmit them before recording observations",
                    e.patient
                )))
            }
            Some(false) => {}
        }
        let vitals: Vec<&str> = e.values.iter().map(|(v, _)| v.as_str()).collect();
        let values: Vec<f64> = e.values.iter().map(|(_, x)| *x).collect();
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO readings (time, patient_id, device_id, vital, value, received_at, source) \
             SELECT $1, $2, $3, v, x, $6, 'manual' FROM UNNEST($4::text[], $5::float8[]) AS u(v, x) \
             ON CONFLICT DO NOTHING RETURNING vital",
        )
        .bind(e.taken_at)
        .bind(e.patient.as_str())
        .bind(MANUAL_DEVICE)
        .bind(&vitals)
        .bind(&values)
        .bind(received_at)
        .fetch_all(&mut *tx)
        .await?;
        if inserted.len() < e.values.len() {
            let existing: Vec<(String, f64)> = sqlx::query_as(
                "SELECT vital, value FROM readings WHERE patient_id = $1 AND time = $2 \
                 AND device_id = $3 AND vital = ANY($4)",
            )
            .bind(e.patient.as_str())
            .bind(e.taken_at)
            .bind(MANUAL_DEVICE)
            .bind(&vitals)
            .fetch_all(&mut *tx)
            .await?;
            for (vital, value) in e.values {
                let same = existing
                    .iter()
                    .any(|(v, x)| v == vital.as_str() && (x - value).abs() < 1e-9);
                if !inserted.iter().any(|v| v == vital.as_str()) && !same {
                    return Err(StoreError::Rejected(format!(
                        "a different {vital} is already recorded for {} at {}; \
                         add a note to it rather than a second value",
                        e.patient,
                        e.taken_at.to_rfc3339()
                    )));
                }
            }
        }
        if !inserted.is_empty() {
            sqlx::query(
                "INSERT INTO manual_entries (patient_id, taken_at, vitals, recorded_by, note) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(e.patient.as_str())
            .bind(e.taken_at)
            .bind(&inserted)
            .bind(&recorded_by)
            .bind(e.note)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(e.values
            .iter()
            .filter(|(v, _)| inserted.iter().any(|i| i == v.as_str()))
            .map(|(vital, value)| NewReading {
                patient_id: e.patient.as_str().to_string(),
                vital: *vital,
                value: *value,
                time: e.taken_at,
                update_interval_secs: None,
                received_at,
                device_id: "manual".into(),
            })
            .collect())
    }

    /// Attaches a note to one reading; `None` when there is no such reading.
    pub async fn add_reading_note(
        &self,
        patient: &str,
        vital: &str,
        time: DateTime<Utc>,
        device_id: &str,
        author: &str,
        text: &str,
    ) -> Result<Option<NoteRow>, StoreError> {
        let author = clean(author, "who")?;
        let text = clean(text, "the note")?;
        if text.chars().count() > 2000 {
            return Err(StoreError::Rejected(
                "a note is at most 2000 characters".into(),
            ));
        }
        let row = sqlx::query(
            "INSERT INTO reading_notes (patient_id, vital, time, device_id, author, text) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM readings \
               WHERE patient_id = $1 AND vital = $2 AND time = $3 AND device_id = $4) \
             RETURNING id, vital, time, device_id, author, text, created_at",
        )
        .bind(patient)
        .bind(vital)
        .bind(time)
        .bind(device_id)
        .bind(&author)
        .bind(&text)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| note_row(&r))
            .transpose()
            .map_err(StoreError::from)
    }

    /// Notes on a patient's readings taken in `[from, to)`.
    pub async fn reading_notes(
        &self,
        patient: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<NoteRow>, StoreError> {
        let rows = sqlx::query(crate::sql::records::READING_NOTES_IN_RANGE)
            .bind(patient)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(note_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Every user with their teams.
    pub async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.id, u.role, u.patient_id, \
               ARRAY(SELECT team_id FROM user_teams WHERE user_id = u.id ORDER BY team_id) AS teams, \
               u.disabled_at IS NOT NULL AS disabled FROM users u ORDER BY u.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UserRow {
                    id: r.try_get("id")?,
                    role: r.try_get("role")?,
                    patient_id: r.try_get("patient_id")?,
                    teams: r.try_get("teams")?,
                    disabled: r.try_get("disabled")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Disables a user (they keep their history) and revokes their tokens.
    pub async fn disable_user(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "UPDATE users SET disabled_at = now() WHERE id = $1 AND disabled_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }
}

fn note_row(r: &sqlx::postgres::PgRow) -> Result<NoteRow, sqlx::Error> {
    NoteRow::from_row(r)
}
