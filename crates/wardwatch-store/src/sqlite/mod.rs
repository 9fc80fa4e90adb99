//! The embedded SQLite backend (`./data/wardwatch.db`, WAL): the zero-setup
//! store for trials and small sites, behind the same [`Store`] trait as
//! PostgreSQL and checked by the same conformance tests.
//!
//! This module holds the ingest contract ([`Store`]: readings, quarantine,
//! relative time anchors, device names, patients and device assignments),
//! access control ([`crate::AccessStore`]) and housekeeping; the alerts and
//! outbox, the rules' tables, records and views are in the submodules.
//!
//! One connection does all the work: SQLite allows one writer at a time,
//! and write transactions take the write lock at `BEGIN` ([`begin_write`])
//! so another process on the same file makes them wait, never fail.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Row;
use wardwatch_core::QuarantineReason;

use crate::batch::{plan, Assignment, AssignmentIndex, QuarantineRow, ReadingRow};
use crate::{BatchOutcome, IngestMessage, MessageKey, NewReading, Store, StoreError};

mod access;
mod alerts;
mod records;
mod reports;
mod rules;
mod views;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// SQLite-backed store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

/// Data errors (a constraint the rows broke, including the append-only
/// triggers' aborts) are not worth retrying; the rest (busy, locked, I/O,
/// disk full) are the database's state: retry.
pub(crate) fn classify(e: sqlx::Error) -> StoreError {
    // SQLITE_CONSTRAINT's primary code, whatever its extended code.
    const CONSTRAINT: i32 = 19;
    match &e {
        sqlx::Error::Database(db)
            if !matches!(db.kind(), sqlx::error::ErrorKind::Other)
                || db
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|c| c & 0xff == CONSTRAINT) =>
        {
            StoreError::Database(e)
        }
        sqlx::Error::Database(_)
        | sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
        _ => StoreError::Database(e),
    }
}

/// Starts a write transaction holding the write lock from `BEGIN`. A
/// deferred transaction that reads and then writes fails at once
/// (`SQLITE_BUSY_SNAPSHOT`, which the busy timeout cannot wait out) when
/// another connection committed in between: the demo's simulator, the CLI
/// or a second engine on the same file.
pub(crate) async fn begin_write(
    pool: &SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
    pool.begin_with("BEGIN IMMEDIATE").await.map_err(classify)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file, in WAL mode with full
    /// synchronous commits (a committed batch survives a power cut), and
    /// applies the migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Rejected(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        if path.as_os_str().is_empty() {
            return Err(StoreError::Rejected(
                "the SQLite store needs a file name (sqlite://<file>)".into(),
            ));
        }
        // By file name, not a URL: no percent-decoding, no `?` options.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(classify)?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// Opens an existing database file read-only (SQLite refuses any
    /// write on the connection): for tools that must never change the
    /// store, such as the backtest. No migrations are run.
    pub async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Rejected(format!(
                "no SQLite store at {}",
                path.display()
            )));
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(classify)?;
        Ok(Self { pool })
    }

    /// The pool (tests and tools).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The assignments of every device in the batch, in two queries (a
    /// device missing from the index is unknown; one with an empty list is
    /// known but was never lent).
    async fn load_assignments(
        conn: &mut SqliteConnection,
        messages: &[IngestMessage],
    ) -> Result<AssignmentIndex, StoreError> {
        let devices: HashSet<&str> = messages
            .iter()
            .flat_map(|m| m.readings.iter().map(|r| r.device_id.as_str()))
            .collect();
        let mut index = AssignmentIndex::new();
        if devices.is_empty() {
            return Ok(index);
        }
        let list = serde_json::to_string(&devices)
            .map_err(|e| StoreError::Rejected(format!("device list: {e}")))?;
        let known: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM devices WHERE id IN (SELECT value FROM json_each($1))",
        )
        .bind(&list)
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
        for device in known {
            index.insert(device, Vec::new());
        }
        let rows = sqlx::query(
            "SELECT device_id, patient_id, valid_from, valid_to FROM device_assignments \
             WHERE device_id IN (SELECT value FROM json_each($1))",
        )
        .bind(&list)
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
        for r in rows {
            let device: String = r.try_get("device_id").map_err(classify)?;
            let assignment = Assignment {
                patient_id: r.try_get("patient_id").map_err(classify)?,
                valid_from: r.try_get("valid_from").map_err(classify)?,
                valid_to: r.try_get("valid_to").map_err(classify)?,
            };
            index.entry(device).or_default().push(assignment);
        }
        Ok(index)
    }

    /// Inserts the readings in multi-row statements (each statement is a
    /// round trip to sqlx's SQLite worker thread) and returns those that
    /// were new, in batch order; `RETURNING` names the rows a conflict did
    /// not skip.
    async fn insert_readings(
        conn: &mut SqliteConnection,
        rows: &[ReadingRow<'_>],
    ) -> Result<Vec<NewReading>, StoreError> {
        /// 7 parameters a row: well inside SQLite's 32,766.
        const ROWS_PER_STATEMENT: usize = 200;
        let mut new = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO readings (time, patient_id, device_id, vital, value, received_at, source) ",
            );
            insert.push_values(chunk, |mut row, r| {
                let rd = r.reading;
                row.push_bind(rd.time)
                    .push_bind(r.patient_id)
                    .push_bind(rd.device_id.as_str())
                    .push_bind(rd.vital.as_str())
                    .push_bind(rd.value)
                    .push_bind(rd.received_at)
                    .push_bind(rd.source.as_str());
            });
            insert.push(" ON CONFLICT DO NOTHING RETURNING patient_id, vital, time, device_id");
            let returned = insert
                .build()
                .fetch_all(&mut *conn)
                .await
                .map_err(classify)?;
            let mut inserted = HashSet::with_capacity(returned.len());
            // By position on purpose: the RETURNING list is just above, and
            // this runs per stored reading on the ingest path.
            for r in &returned {
                let key: (String, String, DateTime<Utc>, String) = (
                    r.try_get(0).map_err(classify)?,
                    r.try_get(1).map_err(classify)?,
                    r.try_get(2).map_err(classify)?,
                    r.try_get(3).map_err(classify)?,
                );
                inserted.insert(key);
            }
            for r in chunk {
                let rd = r.reading;
                // Removed when matched: a reading twice in one batch is new once.
                let key = (
                    r.patient_id.to_string(),
                    rd.vital.as_str().to_string(),
                    rd.time,
                    rd.device_id.as_str().to_string(),
                );
                if inserted.remove(&key) {
                    new.push(NewReading {
                        patient_id: r.patient_id.to_string(),
                        vital: rd.vital,
                        value: rd.value,
                        time: rd.time,
                        update_interval_secs: rd.update_interval_secs,
                        received_at: rd.received_at,
                        device_id: rd.device_id.as_str().to_string(),
                    });
                }
            }
        }
        Ok(new)
    }

    async fn insert_quarantine(
        conn: &mut SqliteConnection,
        rows: &[QuarantineRow],
    ) -> Result<BTreeMap<QuarantineReason, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        for q in rows {
            let inserted = sqlx::query(
                "INSERT INTO quarantine (received_at, last_seen_at, topic, device_id, reason, detail, \
                 record, message_key, part, item, times_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (message_key, part, item) DO NOTHING",
            )
            .bind(q.received_at)
            .bind(q.received_at)
            .bind(&q.topic)
            .bind(q.device_id.as_deref())
            .bind(q.reason.as_str())
            .bind(&q.detail)
            .bind(&q.record)
            .bind(&q.key[..])
            .bind(q.part)
            .bind(q.item)
            .bind(q.repeats)
            .execute(&mut *conn)
            .await
            .map_err(classify)?
            .rows_affected()
                == 1;
            if !inserted {
                sqlx::query(
                    "UPDATE quarantine SET times_seen = times_seen + ?, last_seen_at = ? \
                     WHERE message_key = ? AND part = ? AND item = ?",
                )
                .bind(q.repeats)
                .bind(q.received_at)
                .bind(&q.key[..])
                .bind(q.part)
                .bind(q.item)
                .execute(&mut *conn)
                .await
                .map_err(classify)?;
            }
            // The same counting rule as PostgreSQL: every first delivery,
            // and a redelivery whose first delivery never committed.
            let n = if inserted { q.fresh.max(1) } else { q.fresh };
            if n > 0 {
                *counts.entry(q.reason).or_insert(0) += n as u64;
            }
        }
        Ok(counts)
    }

    async fn record_device_names(
        conn: &mut SqliteConnection,
        rows: &[ReadingRow<'_>],
    ) -> Result<(), StoreError> {
        let seen = crate::batch::device_names(rows);
        for ((device, name), at) in seen {
            sqlx::query(
                "INSERT INTO device_names (device_id, name, first_seen, last_seen) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (device_id, name) DO UPDATE SET last_seen = excluded.last_seen \
                 WHERE device_names.last_seen < ?",
            )
            .bind(device)
            .bind(name)
            .bind(at)
            .bind(at)
            // As on PostgreSQL: refreshed at most hourly, never backwards.
            .bind(at - chrono::Duration::hours(1))
            .execute(&mut *conn)
            .await
            .map_err(classify)?;
        }
        Ok(())
    }

    async fn insert_anchors(
        conn: &mut SqliteConnection,
        messages: &[IngestMessage],
    ) -> Result<(), StoreError> {
        for m in messages {
            if let Some(anchor) = m.relative_anchor {
                sqlx::query(
                    "INSERT INTO relative_time_anchors (message_key, anchor) VALUES (?, ?) \
                     ON CONFLICT (message_key) DO UPDATE SET anchor = excluded.anchor",
                )
                .bind(&m.key[..])
                .bind(anchor)
                .execute(&mut *conn)
                .await
                .map_err(classify)?;
            }
        }
        Ok(())
    }
}

impl Store for SqliteStore {
    async fn write_batch(&self, messages: &[IngestMessage]) -> Result<BatchOutcome, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let index = Self::load_assignments(&mut tx, messages).await?;
        let (readings, quarantine) = plan(messages, &index);
        let new_readings = Self::insert_readings(&mut tx, &readings).await?;
        Self::record_device_names(&mut tx, &readings).await?;
        let quarantined = Self::insert_quarantine(&mut tx, &quarantine).await?;
        Self::insert_anchors(&mut tx, messages).await?;
        tx.commit().await.map_err(classify)?;
        let inserted = new_readings.len() as u64;
        Ok(BatchOutcome {
            readings_inserted: inserted,
            readings_duplicate: readings.len() as u64 - inserted,
            quarantined,
            new_readings,
        })
    }

    async fn relative_anchor(&self, key: &MessageKey) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query_scalar("SELECT anchor FROM relative_time_anchors WHERE message_key = ?")
            .bind(&key[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)
    }
}

impl crate::MaintenanceStore for SqliteStore {
    async fn sweep_retention(&self, cutoff: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM readings WHERE rowid IN \
             (SELECT rowid FROM readings WHERE time < $1 LIMIT $2)",
        )
        .bind(cutoff)
        .bind(limit)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(r.rows_affected())
    }

    async fn purge_anchors(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let r = sqlx::query(crate::sql::maintenance::PRUNE_ANCHORS)
            .bind(cutoff)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(r.rows_affected())
    }

    async fn purge_quarantine(&self, cutoff: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        let r = sqlx::query(crate::sql::maintenance::PRUNE_QUARANTINE)
            .bind(cutoff)
            .bind(limit)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(r.rows_affected())
    }
}

impl crate::LoadTestStore for SqliteStore {
    async fn count_readings_of_patients(&self, patients: &[String]) -> Result<i64, StoreError> {
        let list = serde_json::to_string(patients)
            .map_err(|e| StoreError::Rejected(format!("patient list: {e}")))?;
        sqlx::query_scalar(
            "SELECT count(*) FROM readings WHERE patient_id IN (SELECT value FROM json_each($1))",
        )
        .bind(list)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)
    }

    async fn enrol_bulk(
        &self,
        team: &str,
        pairs: &[(String, String)],
        from: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        for (patient, device) in pairs {
            sqlx::query(
                "INSERT INTO patients (id, team_id) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET team_id = excluded.team_id",
            )
            .bind(patient)
            .bind(team)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            sqlx::query(crate::sql::records::INSERT_DEVICE)
                .bind(device)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            // Ends an open loan at `from` (or just after it began, so the
            // half-open interval stays non-empty).
            let open: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
                "SELECT id, valid_from FROM device_assignments WHERE device_id = $1 AND valid_to IS NULL",
            )
            .bind(device)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
            if let Some((id, valid_from)) = open {
                let end = from.max(valid_from + chrono::Duration::microseconds(1));
                sqlx::query("UPDATE device_assignments SET valid_to = $2 WHERE id = $1")
                    .bind(id)
                    .bind(end)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
            }
            sqlx::query(crate::sql::records::INSERT_ASSIGNMENT)
                .bind(device)
                .bind(patient)
                .bind(from)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(())
    }
}
