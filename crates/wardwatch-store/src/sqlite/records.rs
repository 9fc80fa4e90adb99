//! Enrolment, transfers, the device catalogue, manual observations and
//! notes on SQLite: the twin of [`crate::records`] for [`SqliteStore`].

use super::rules::{audit, move_open_alerts};
use super::{begin_write, classify, SqliteStore};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row};
use wardwatch_core::{DeviceId, NhsNumber, PatientId};

use crate::records::{
    DeviceRow, Enrolment, ManualEntry, NoteRow, PatientPlace, DEVICE_KINDS, MANUAL_DEVICE,
};
use crate::rules::clean;
use crate::{NewReading, StoreError};

fn note_row(r: &SqliteRow) -> Result<NoteRow, StoreError> {
    NoteRow::from_row(r).map_err(classify)
}

impl SqliteStore {
    /// The catalogue, or one device of it.
    async fn device_rows(&self, id: Option<&str>) -> Result<Vec<DeviceRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.model, d.kind, \
               CASE WHEN d.retired_at IS NOT NULL THEN 'retired' \
                    WHEN a.patient_id IS NOT NULL THEN 'assigned' ELSE 'available' END AS status, \
               a.patient_id, a.valid_from AS assigned_from \
             FROM devices d LEFT JOIN device_assignments a \
               ON a.device_id = d.id AND a.valid_to IS NULL \
             WHERE $1 IS NULL OR d.id = $1 ORDER BY d.id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|r| DeviceRow::from_row(r).map_err(classify))
            .collect()
    }

    /// One device, after a change that must have left it in the catalogue.
    async fn device_after(&self, device: &DeviceId) -> Result<DeviceRow, StoreError> {
        self.device_rows(Some(device.as_str()))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Rejected(format!("device {device} vanished")))
    }
}

impl crate::RecordStore for SqliteStore {
    async fn assign_device(
        &self,
        device: &DeviceId,
        patient: &PatientId,
        from: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let known: Option<String> = sqlx::query_scalar("SELECT id FROM patients WHERE id = ?")
            .bind(patient.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        if known.is_none() {
            return Err(StoreError::Rejected(format!(
                "patient {patient} is not enrolled; add it first (wardwatch patient add --id {patient} --team T)"
            )));
        }
        sqlx::query("INSERT INTO devices (id) VALUES (?) ON CONFLICT DO NOTHING")
            .bind(device.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        // Assignments of this device that start at or after `from`: a new
        // one may not start before an existing one (history is append-only).
        let assignments = sqlx::query(
            "SELECT patient_id, valid_from, valid_to FROM device_assignments WHERE device_id = ?",
        )
        .bind(device.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        for r in &assignments {
            let p: String = r.try_get("patient_id").map_err(classify)?;
            let since: DateTime<Utc> = r.try_get("valid_from").map_err(classify)?;
            let until: Option<DateTime<Utc>> = r.try_get("valid_to").map_err(classify)?;
            if since >= from && until.is_none_or(|u| u > from) {
                return Err(StoreError::Rejected(format!(
                    "device {device} is assigned to {p} from {}; an assignment cannot start at or before it ({})",
                    since.to_rfc3339(),
                    from.to_rfc3339()
                )));
            }
        }
        sqlx::query(
            "UPDATE device_assignments SET valid_to = ? WHERE device_id = ? AND valid_to IS NULL",
        )
        .bind(from)
        .bind(device.as_str())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query(
            "INSERT INTO device_assignments (device_id, patient_id, valid_from) VALUES (?, ?, ?)",
        )
        .bind(device.as_str())
        .bind(patient.as_str())
        .bind(from)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    async fn unassign_device(
        &self,
        device: &DeviceId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let open: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT valid_from FROM device_assignments WHERE device_id = ? AND valid_to IS NULL",
        )
        .bind(device.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
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
            "UPDATE device_assignments SET valid_to = ? WHERE device_id = ? AND valid_to IS NULL",
        )
        .bind(at)
        .bind(device.as_str())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    async fn patient_by_nhs_number(
        &self,
        nhs_number: &str,
    ) -> Result<Option<PatientPlace>, StoreError> {
        sqlx::query_as(crate::sql::records::PATIENT_BY_NHS_NUMBER)
            .bind(nhs_number)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)
    }

    async fn enrol_patient(&self, e: &Enrolment, actor: &str) -> Result<(), StoreError> {
        let team = clean(&e.team, "team")?;
        let actor = clean(actor, "who")?;
        let mut tx = begin_write(&self.pool).await?;
        // Without a target, DO NOTHING covers the id and the NHS number alike.
        let inserted = sqlx::query(crate::sql::records::INSERT_PATIENT_WITH_IDENTITY)
            .bind(e.id.as_str())
            .bind(&team)
            .bind(&e.pathway)
            .bind(e.nhs_number.as_ref().map(NhsNumber::as_str))
            .bind(e.date_of_birth)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if inserted.rows_affected() == 0 {
            let id_taken: bool = sqlx::query_scalar(crate::sql::records::PATIENT_EXISTS)
                .bind(e.id.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
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
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    async fn transfer(
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
        let mut tx = begin_write(&self.pool).await?;
        let current: Option<String> = sqlx::query_scalar(crate::sql::rules::TEAM_OF_PATIENT)
            .bind(patient.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
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
            .await
            .map_err(classify)?;
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
        tx.commit().await.map_err(classify)?;
        Ok(moved)
    }

    async fn register_device(
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
            .await
            .map_err(classify)?;
        self.device_after(device).await
    }

    async fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        self.device_rows(None).await
    }

    async fn device(&self, id: &str) -> Result<Option<DeviceRow>, StoreError> {
        Ok(self.device_rows(Some(id)).await?.into_iter().next())
    }

    async fn retire_device(&self, device: &DeviceId) -> Result<DeviceRow, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let row: Option<(Option<String>, bool)> = sqlx::query_as(
            "SELECT retired_at, EXISTS (SELECT 1 FROM device_assignments \
               WHERE device_id = $1 AND valid_to IS NULL) FROM devices WHERE id = $1",
        )
        .bind(device.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
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
        sqlx::query("UPDATE devices SET retired_at = $2 WHERE id = $1")
            .bind(device.as_str())
            .bind(wardwatch_core::clock::engine::now())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        self.device_after(device).await
    }

    async fn record_manual(
        &self,
        e: &ManualEntry<'_>,
        received_at: DateTime<Utc>,
    ) -> Result<Vec<NewReading>, StoreError> {
        let recorded_by = clean(e.recorded_by, "who")?;
        let mut tx = begin_write(&self.pool).await?;
        let discharged: Option<bool> =
            sqlx::query_scalar("SELECT discharged_at IS NOT NULL FROM patients WHERE id = $1")
                .bind(e.patient.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?;
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
        // One row at a time, in the entry's order (PostgreSQL's UNNEST):
        // a reading already stored under the same key is skipped.
        let mut inserted: Vec<String> = Vec::with_capacity(e.values.len());
        for (vital, value) in e.values {
            let done = sqlx::query(
                "INSERT INTO readings (time, patient_id, device_id, vital, value, received_at, source) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'manual') ON CONFLICT DO NOTHING",
            )
            .bind(e.taken_at)
            .bind(e.patient.as_str())
            .bind(MANUAL_DEVICE)
            .bind(vital.as_str())
            .bind(*value)
            .bind(received_at)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            if done.rows_affected() > 0 {
                inserted.push(vital.as_str().to_string());
            }
        }
        if inserted.len() < e.values.len() {
            let vitals: Vec<&str> = e.values.iter().map(|(v, _)| v.as_str()).collect();
            let vitals = serde_json::to_string(&vitals)
                .map_err(|err| StoreError::Rejected(format!("vital list: {err}")))?;
            let existing: Vec<(String, f64)> = sqlx::query_as(
                "SELECT vital, value FROM readings WHERE patient_id = $1 AND time = $2 \
                 AND device_id = $3 AND vital IN (SELECT value FROM json_each($4))",
            )
            .bind(e.patient.as_str())
            .bind(e.taken_at)
            .bind(MANUAL_DEVICE)
            .bind(vitals)
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
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
            let vitals = serde_json::to_string(&inserted)
                .map_err(|err| StoreError::Rejected(format!("vital list: {err}")))?;
            sqlx::query(
                "INSERT INTO manual_entries (patient_id, taken_at, vitals, recorded_by, note, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(e.patient.as_str())
            .bind(e.taken_at)
            .bind(vitals)
            .bind(&recorded_by)
            .bind(e.note)
            .bind(wardwatch_core::clock::engine::now())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
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

    async fn add_reading_note(
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
            "INSERT INTO reading_notes (patient_id, vital, time, device_id, author, text, created_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM readings \
               WHERE patient_id = $1 AND vital = $2 AND time = $3 AND device_id = $4) \
             RETURNING id, vital, time, device_id, author, text, created_at",
        )
        .bind(patient)
        .bind(vital)
        .bind(time)
        .bind(device_id)
        .bind(&author)
        .bind(&text)
        .bind(wardwatch_core::clock::engine::now())
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.map(|r| note_row(&r)).transpose()
    }

    async fn reading_notes(
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
            .await
            .map_err(classify)?;
        rows.iter().map(note_row).collect()
    }
}
