//! The PostgreSQL backend, with TimescaleDB when the extension is available.
//!
//! Batches go in through one bulk statement per table (array `UNNEST`, or
//! `COPY` into a staging table), never row by row, inside one transaction
//! per batch. Idempotency comes from unique keys and `ON CONFLICT`, so a
//! redelivered message changes nothing.

mod access;
mod alerts;
mod records;
mod reports;
pub(crate) mod rules;
mod views;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Row};
use tracing::{info, warn};
use wardwatch_core::QuarantineReason;

use crate::batch::NewReading;
use crate::batch::{plan, Assignment, AssignmentIndex, QuarantineRow, ReadingRow};
use crate::{BatchOutcome, IngestMessage, MessageKey, Store, StoreError};

/// How readings are bulk-inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMethod {
    /// `INSERT … SELECT FROM UNNEST($arrays) ON CONFLICT DO NOTHING`.
    #[default]
    Unnest,
    /// `COPY` into a temporary staging table, then `INSERT … SELECT … ON CONFLICT DO NOTHING`
    /// (COPY itself cannot skip conflicts).
    Copy,
}

/// Which storage path is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageMode {
    /// `readings` is a TimescaleDB hypertable with compression and retention policies.
    Timescale,
    /// Plain PostgreSQL tables; retention by a periodic sweep.
    Plain,
}

/// TimescaleDB settings, applied at start-up when the extension exists.
#[derive(Debug, Clone)]
pub struct TimescalePolicy {
    /// Hypertable chunk interval.
    pub chunk_interval: Duration,
    /// Compress chunks older than this.
    pub compress_after: Duration,
    /// Drop chunks older than this (also the `too_old` validation limit).
    pub retention: Duration,
}

/// The PostgreSQL store. Cheap to clone (shares the pool).
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    method: WriteMethod,
    /// Filter out already-stored readings before `ON CONFLICT DO NOTHING`.
    /// TimescaleDB before 2.18.1 stops inserting the rest of a statement at
    /// the first conflict in a compressed chunk (timescale/timescaledb#7672),
    /// silently dropping new readings that follow a redelivered one.
    conflict_guard: bool,
    /// `readings` is a TimescaleDB hypertable (`time_bucket` available).
    pub(crate) timescale: bool,
}

/// The first TimescaleDB release with the fix for timescale/timescaledb#7672.
const TIMESCALE_CONFLICT_FIX: (u32, u32, u32) = (2, 18, 1);

/// Parses "2.17.2" (or "2.17.2-dev") into a comparable triple.
fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next().unwrap_or("0").parse().ok()?,
    ))
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl PgStore {
    /// Connects with a bounded pool.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let opts: PgConnectOptions = url.parse().map_err(StoreError::Database)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(
                opts.application_name("wardwatch")
                    // A black-holed statement must not stall a writer (and,
                    // behind it, every acknowledgement) forever: it fails,
                    // counts as transient, and is retried.
                    .options([("statement_timeout", "60s")]),
            )
            .await?;
        Ok(Self {
            pool,
            method: WriteMethod::default(),
            conflict_guard: false,
            timescale: false,
        })
    }

    /// A second store on the same database with its own pool, for the API:
    /// a caller's expensive read waits for the API's connections, never
    /// for the ingest writers', and is cut off after `statement_timeout`.
    pub async fn api_pool(
        &self,
        url: &str,
        max_connections: u32,
        statement_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let opts: PgConnectOptions = url.parse().map_err(StoreError::Database)?;
        let timeout = format!("{}ms", statement_timeout.as_millis().max(1));
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(
                opts.application_name("wardwatch-api")
                    .options([("statement_timeout", timeout.as_str())]),
            )
            .await?;
        Ok(Self {
            pool,
            method: self.method,
            conflict_guard: self.conflict_guard,
            timescale: self.timescale,
        })
    }

    /// Connects with every transaction read-only (the server refuses any
    /// write): for tools that must never change the store, such as the
    /// backtest. No migrations are run.
    pub async fn connect_read_only(url: &str) -> Result<Self, StoreError> {
        let opts: PgConnectOptions = url.parse().map_err(StoreError::Database)?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts.application_name("wardwatch-read-only").options([
                ("statement_timeout", "300s"),
                ("default_transaction_read_only", "on"),
            ]))
            .await?;
        Ok(Self {
            pool,
            method: WriteMethod::default(),
            conflict_guard: false,
            timescale: false,
        })
    }

    /// Forces the pre-insert conflict filter on or off (normally decided by
    /// [`PgStore::prepare_storage`] from the TimescaleDB version).
    pub fn with_conflict_guard(mut self, on: bool) -> Self {
        self.conflict_guard = on;
        self
    }

    /// Chooses the bulk insert method.
    pub fn with_write_method(mut self, method: WriteMethod) -> Self {
        self.method = method;
        self
    }

    /// The pool, for tests and tools that need a direct query.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The database server's clock now: the engine's time reference.
    pub async fn clock(&self) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        Ok(sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Applies the embedded migrations. When every one is already applied
    /// (same checksums) nothing is run, so an engine connected as a role
    /// without DDL rights (see [`PgStore::grant_engine_role`]) starts on a
    /// database its owner has migrated.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        if self.migrations_current().await? {
            return Ok(());
        }
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn migrations_current(&self) -> Result<bool, StoreError> {
        let table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(&self.pool)
                .await?;
        if table.is_none() {
            return Ok(false);
        }
        let applied: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?;
        Ok(MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .all(|m| {
                applied
                    .iter()
                    .any(|(v, sum)| *v == m.version && sum.as_slice() == &*m.checksum)
            }))
    }

    /// Creates (if absent) the login role the engine should run as and
    /// grants it exactly what the engine does: read and write the working
    /// tables, but only read and append to the audit trails (`audit_log`,
    /// `patient_settings_audit`, `alert_events`) and only read the
    /// migration history. Not the owner, it cannot drop the append-only
    /// triggers either. Run by the database owner after [`PgStore::migrate`];
    /// safe to repeat (a later migration's tables get their grants).
    pub async fn grant_engine_role(&self, role: &str) -> Result<(), StoreError> {
        if role.is_empty()
            || role.len() > 63
            || !role
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            || role.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(StoreError::Rejected(format!(
                "engine role {role:?}: use lower-case letters, digits and _ (at most 63, not starting with a digit)"
            )));
        }
        let r = format!("\"{role}\"");
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(role)
                .fetch_one(&self.pool)
                .await?;
        let db: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&self.pool)
            .await?;
        let mut tx = self.pool.begin().await?;
        if !exists {
            // The role name is checked above (letters, digits, _) and quoted.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {r} LOGIN")))
                .execute(&mut *tx)
                .await?;
        }
        for stmt in [
            format!("GRANT CONNECT, TEMPORARY ON DATABASE \"{}\" TO {r}", db.replace('"', "\"\"")),
            format!("GRANT USAGE ON SCHEMA public TO {r}"),
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r}"),
            format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r}"),
            format!(
                "REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, patient_settings_audit, alert_events FROM {r}"
            ),
            format!("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM {r}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(stmt))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Turns `readings` into a hypertable with compression and retention when
    /// TimescaleDB can be loaded; otherwise stays on plain PostgreSQL. Logs
    /// which path is active.
    pub async fn prepare_storage(
        &mut self,
        policy: &TimescalePolicy,
    ) -> Result<StorageMode, StoreError> {
        let available: Option<String> = sqlx::query_scalar(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'",
        )
        .fetch_optional(&self.pool)
        .await?;
        if available.is_none() {
            info!(
                message = "Storage path: plain PostgreSQL (timescaledb extension not available).",
                retention_days = policy.retention.as_secs() / 86_400
            );
            return Ok(StorageMode::Plain);
        }
        if let Err(error) = sqlx::query("CREATE EXTENSION IF NOT EXISTS timescaledb")
            .execute(&self.pool)
            .await
        {
            warn!(message = "Storage path: plain PostgreSQL (timescaledb is installed but could not be loaded; is it in shared_preload_libraries?).", %error);
            return Ok(StorageMode::Plain);
        }
        self.apply_timescale(policy).await?;
        let version: String =
            sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
                .fetch_one(&self.pool)
                .await?;
        if parse_version(&version).is_none_or(|v| v < TIMESCALE_CONFLICT_FIX) {
            self.conflict_guard = true;
            warn!(
                message = "TimescaleDB before 2.18.1 can drop rows after a conflict in a compressed chunk; filtering stored readings before insert. Upgrade TimescaleDB.",
                version = %version
            );
        }
        info!(
            message = "Storage path: TimescaleDB hypertable with compression and retention.",
            chunk_hours = policy.chunk_interval.as_secs() / 3600,
            compress_after_days = policy.compress_after.as_secs() / 86_400,
            retention_days = policy.retention.as_secs() / 86_400
        );
        self.timescale = true;
        Ok(StorageMode::Timescale)
    }

    async fn apply_timescale(&self, p: &TimescalePolicy) -> Result<(), StoreError> {
        let secs = |d: Duration| format!("{} seconds", d.as_secs());
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "SELECT create_hypertable('readings', 'time', chunk_time_interval => $1::interval, \
             if_not_exists => TRUE, migrate_data => TRUE)",
        )
        .bind(secs(p.chunk_interval))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "ALTER TABLE readings SET (timescaledb.compress, \
             timescaledb.compress_segmentby = 'patient_id', \
             timescaledb.compress_orderby = 'vital, time DESC, device_id')",
        )
        .execute(&mut *tx)
        .await?;
        // Re-create the policies so a changed configuration takes effect.
        sqlx::query("SELECT remove_compression_policy('readings', if_exists => TRUE)")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT add_compression_policy('readings', $1::interval)")
            .bind(secs(p.compress_after))
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT remove_retention_policy('readings', if_exists => TRUE)")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT add_retention_policy('readings', $1::interval)")
            .bind(secs(p.retention))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Plain-PostgreSQL retention: deletes up to `limit` readings older than
    /// `cutoff` and returns how many went. Small slices keep locks short.
    pub async fn sweep_retention(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM readings WHERE ctid = ANY (ARRAY(\
               SELECT ctid FROM readings WHERE time < $1 LIMIT $2))",
        )
        .bind(cutoff)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Forgets relative-time anchors older than `cutoff`: a redelivery comes
    /// within minutes of a reconnect, not weeks. Needed on both storage paths.
    pub async fn purge_anchors(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let r = sqlx::query(crate::sql::maintenance::PRUNE_ANCHORS)
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Deletes up to `limit` quarantine rows last seen before `cutoff`
    /// (a device that keeps sending bad data keeps its rows).
    pub async fn purge_quarantine(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query(crate::sql::maintenance::PRUNE_QUARANTINE)
            .bind(cutoff)
            .bind(limit)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn load_assignments(
        conn: &mut PgConnection,
        messages: &[IngestMessage],
    ) -> Result<AssignmentIndex, StoreError> {
        let devices: Vec<String> = messages
            .iter()
            .flat_map(|m| m.readings.iter().map(|r| r.device_id.as_str()))
            .collect::<HashSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut index = AssignmentIndex::new();
        if devices.is_empty() {
            return Ok(index);
        }
        let rows = sqlx::query(
            "SELECT d.id, a.patient_id, a.valid_from, a.valid_to \
             FROM UNNEST($1::text[]) AS q(id) JOIN devices d ON d.id = q.id \
             LEFT JOIN LATERAL (SELECT patient_id, valid_from, valid_to FROM device_assignments \
                                WHERE device_id = d.id) a ON TRUE",
        )
        .bind(&devices)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let device: String = row.try_get("id")?;
            let entry = index.entry(device).or_default();
            let patient: Option<String> = row.try_get("patient_id")?;
            if let Some(patient_id) = patient {
                entry.push(Assignment {
                    patient_id,
                    valid_from: row.try_get("valid_from")?,
                    valid_to: row.try_get("valid_to")?,
                });
            }
        }
        Ok(index)
    }

    async fn insert_readings_unnest(
        conn: &mut PgConnection,
        rows: &[ReadingRow<'_>],
        guard: bool,
    ) -> Result<Vec<NewReading>, StoreError> {
        let n = rows.len();
        let mut time = Vec::with_capacity(n);
        let mut patient = Vec::with_capacity(n);
        let mut device = Vec::with_capacity(n);
        let mut vital = Vec::with_capacity(n);
        let mut value = Vec::with_capacity(n);
        let mut received = Vec::with_capacity(n);
        let mut source = Vec::with_capacity(n);
        for r in rows {
            time.push(r.reading.time);
            patient.push(r.patient_id);
            device.push(r.reading.device_id.as_str());
            vital.push(r.reading.vital.as_str());
            value.push(r.reading.value);
            received.push(r.reading.received_at);
            source.push(r.reading.source.as_str());
        }
        let sql = if guard {
            "INSERT INTO readings (time, patient_id, device_id, vital, value, received_at, source) \
             SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], \
                                  $5::float8[], $6::timestamptz[], $7::text[]) AS u(t, p, d, v, x, r, s) \
             WHERE NOT EXISTS (SELECT 1 FROM readings e WHERE e.patient_id = u.p AND e.vital = u.v \
                               AND e.time = u.t AND e.device_id = u.d) \
             ON CONFLICT DO NOTHING RETURNING patient_id, vital, time, device_id"
        } else {
            "INSERT INTO readings (time, patient_id, device_id, vital, value, received_at, source) \
             SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], \
                                  $5::float8[], $6::timestamptz[], $7::text[]) \
             ON CONFLICT DO NOTHING RETURNING patient_id, vital, time, device_id"
        };
        let inserted = sqlx::query(sql)
            .bind(time)
            .bind(patient)
            .bind(device)
            .bind(vital)
            .bind(value)
            .bind(received)
            .bind(source)
            .fetch_all(&mut *conn)
            .await?;
        new_readings(rows, &inserted)
    }

    async fn insert_readings_copy(
        conn: &mut PgConnection,
        rows: &[ReadingRow<'_>],
        guard: bool,
    ) -> Result<Vec<NewReading>, StoreError> {
        sqlx::query(
            "CREATE TEMP TABLE IF NOT EXISTS readings_stage \
             (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        )
        .execute(&mut *conn)
        .await?;
        let mut buf = String::with_capacity(rows.len() * 96);
        for r in rows {
            let rd = r.reading;
            let _ = writeln!(
                buf,
                "{}\t{}\t{}\t{}\t{:?}\t{}\t{}",
                rd.time.format("%Y-%m-%d %H:%M:%S%.6f+00"),
                copy_escape(r.patient_id),
                copy_escape(rd.device_id.as_str()),
                rd.vital.as_str(),
                rd.value,
                rd.received_at.format("%Y-%m-%d %H:%M:%S%.6f+00"),
                rd.source.as_str(),
            );
        }
        let mut copy = conn
            .copy_in_raw(
                "COPY readings_stage (time, patient_id, device_id, vital, value, received_at, source) FROM STDIN",
            )
            .await?;
        copy.send(buf.as_bytes()).await?;
        copy.finish().await?;
        let sql = if guard {
            "INSERT INTO readings SELECT * FROM readings_stage u WHERE NOT EXISTS \
             (SELECT 1 FROM readings e WHERE e.patient_id = u.patient_id AND e.vital = u.vital \
              AND e.time = u.time AND e.device_id = u.device_id) ON CONFLICT DO NOTHING \
             RETURNING patient_id, vital, time, device_id"
        } else {
            "INSERT INTO readings SELECT * FROM readings_stage ON CONFLICT DO NOTHING \
             RETURNING patient_id, vital, time, device_id"
        };
        let inserted = sqlx::query(sql).fetch_all(&mut *conn).await?;
        new_readings(rows, &inserted)
    }

    async fn insert_quarantine(
        conn: &mut PgConnection,
        rows: &[QuarantineRow],
    ) -> Result<BTreeMap<QuarantineReason, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        if rows.is_empty() {
            return Ok(counts);
        }
        let received: Vec<_> = rows.iter().map(|r| r.received_at).collect();
        let topic: Vec<_> = rows.iter().map(|r| r.topic.as_str()).collect();
        let device: Vec<_> = rows.iter().map(|r| r.device_id.as_deref()).collect();
        let reason: Vec<_> = rows.iter().map(|r| r.reason.as_str()).collect();
        let detail: Vec<_> = rows.iter().map(|r| r.detail.as_str()).collect();
        let record: Vec<_> = rows.iter().map(|r| r.record.as_str()).collect();
        let key: Vec<_> = rows.iter().map(|r| r.key.to_vec()).collect();
        let part: Vec<_> = rows.iter().map(|r| r.part).collect();
        let item: Vec<_> = rows.iter().map(|r| r.item).collect();
        let repeats: Vec<_> = rows.iter().map(|r| r.repeats).collect();
        let returned = sqlx::query(
            "INSERT INTO quarantine (received_at, last_seen_at, topic, device_id, reason, detail, record, message_key, part, item, times_seen) \
             SELECT r, r, t, d, re, de, rc, k, p, i, n FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], \
                 $5::text[], $6::text[], $7::bytea[], $8::int2[], $9::int4[], $10::int4[]) AS u(r, t, d, re, de, rc, k, p, i, n) \
             ON CONFLICT (message_key, part, item) DO UPDATE \
               SET times_seen = quarantine.times_seen + excluded.times_seen, last_seen_at = excluded.last_seen_at \
             RETURNING message_key, part, item, (xmax = 0) AS inserted",
        )
        .bind(received)
        .bind(topic)
        .bind(device)
        .bind(reason)
        .bind(detail)
        .bind(record)
        .bind(key)
        .bind(part)
        .bind(item)
        .bind(repeats)
        .fetch_all(&mut *conn)
        .await?;
        // Count every first delivery of a refused record (a device repeating
        // the same bad payload keeps counting), plus a redelivery whose first
        // delivery never committed; never a redelivery already counted.
        let by_key: HashMap<(&[u8], i16, i32), &QuarantineRow> = rows
            .iter()
            .map(|r| ((&r.key[..], r.part, r.item), r))
            .collect();
        // By position on purpose: the RETURNING list is just above, and
        // this runs per refused record on the ingest path.
        for row in returned {
            let key: Vec<u8> = row.try_get(0)?;
            let part: i16 = row.try_get(1)?;
            let item: i32 = row.try_get(2)?;
            let fresh_row: bool = row.try_get(3)?;
            let Some(q) = by_key.get(&(&key[..], part, item)) else {
                continue;
            };
            let n = if fresh_row { q.fresh.max(1) } else { q.fresh };
            if n > 0 {
                *counts.entry(q.reason).or_insert(0) += n as u64;
            }
        }
        Ok(counts)
    }

    async fn record_device_names(
        conn: &mut PgConnection,
        rows: &[ReadingRow<'_>],
    ) -> Result<(), StoreError> {
        let seen = crate::batch::device_names(rows);
        if seen.is_empty() {
            return Ok(());
        }
        let mut devices = Vec::with_capacity(seen.len());
        let mut names = Vec::with_capacity(seen.len());
        let mut times = Vec::with_capacity(seen.len());
        for ((d, n), t) in seen {
            devices.push(d);
            names.push(n);
            times.push(t);
        }
        // last_seen is refreshed at most hourly so steady traffic causes no updates.
        sqlx::query(
            "INSERT INTO device_names (device_id, name, first_seen, last_seen) \
             SELECT d, n, t, t FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS u(d, n, t) \
             ON CONFLICT (device_id, name) DO UPDATE SET last_seen = excluded.last_seen \
             WHERE device_names.last_seen < excluded.last_seen - interval '1 hour'",
        )
        .bind(devices)
        .bind(names)
        .bind(times)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn insert_anchors(
        conn: &mut PgConnection,
        messages: &[IngestMessage],
    ) -> Result<(), StoreError> {
        // One row per key: `DO UPDATE` may not touch a row twice in one statement.
        let mut seen = HashSet::new();
        let (keys, anchors): (Vec<Vec<u8>>, Vec<DateTime<Utc>>) = messages
            .iter()
            .filter(|m| seen.insert(m.key))
            .filter_map(|m| m.relative_anchor.map(|a| (m.key.to_vec(), a)))
            .unzip();
        if keys.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO relative_time_anchors (message_key, anchor) \
             SELECT * FROM UNNEST($1::bytea[], $2::timestamptz[]) \
             ON CONFLICT (message_key) DO UPDATE SET anchor = excluded.anchor",
        )
        .bind(keys)
        .bind(anchors)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Counts the readings of these patients (load generator bookkeeping);
    /// uses the unique key's leading column rather than scanning the table.
    pub async fn count_readings_of_patients(&self, patients: &[String]) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM readings WHERE patient_id = ANY($1)")
                .bind(patients)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Enrols many patients with one device each, assigned from `from` (load generator set-up).
    pub async fn enrol_bulk(
        &self,
        team: &str,
        pairs: &[(String, String)],
        from: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let patients: Vec<&str> = pairs.iter().map(|(p, _)| p.as_str()).collect();
        let devices: Vec<&str> = pairs.iter().map(|(_, d)| d.as_str()).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO patients (id, team_id) SELECT p, $2 FROM UNNEST($1::text[]) p \
             ON CONFLICT (id) DO UPDATE SET team_id = excluded.team_id",
        )
        .bind(&patients)
        .bind(team)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO devices (id) SELECT UNNEST($1::text[]) ON CONFLICT DO NOTHING")
            .bind(&devices)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE device_assignments SET valid_to = GREATEST($2, valid_from + interval '1 microsecond') \
             WHERE device_id = ANY($1) AND valid_to IS NULL",
        )
        .bind(&devices)
        .bind(from)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO device_assignments (device_id, patient_id, valid_from) \
             SELECT d, p, $3 FROM UNNEST($1::text[], $2::text[]) AS u(d, p)",
        )
        .bind(&devices)
        .bind(&patients)
        .bind(from)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Escapes a value for COPY's text format.
/// The rows an insert actually added (its `RETURNING` rows), in batch order.
/// Usually every row is new and no lookup is needed.
fn new_readings(
    rows: &[ReadingRow<'_>],
    returned: &[sqlx::postgres::PgRow],
) -> Result<Vec<NewReading>, StoreError> {
    let new = |r: &ReadingRow<'_>| NewReading {
        patient_id: r.patient_id.to_string(),
        vital: r.reading.vital,
        value: r.reading.value,
        time: r.reading.time,
        update_interval_secs: r.reading.update_interval_secs,
        received_at: r.reading.received_at,
        device_id: r.reading.device_id.as_str().to_string(),
    };
    if returned.len() == rows.len() {
        return Ok(rows.iter().map(new).collect());
    }
    let mut keys = HashSet::with_capacity(returned.len());
    // By position on purpose: the RETURNING list is the statement's own, and
    // this runs per stored reading on the ingest path.
    for row in returned {
        let key: (String, String, DateTime<Utc>, String) = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        );
        keys.insert(key);
    }
    Ok(rows
        .iter()
        .filter(|r| {
            keys.remove(&(
                r.patient_id.to_string(),
                r.reading.vital.as_str().to_string(),
                r.reading.time,
                r.reading.device_id.as_str().to_string(),
            ))
        })
        .map(new)
        .collect())
}

fn copy_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

impl Store for PgStore {
    async fn write_batch(&self, messages: &[IngestMessage]) -> Result<BatchOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let index = Self::load_assignments(&mut tx, messages).await?;
        let (readings, quarantine) = plan(messages, &index);
        let new_readings = if readings.is_empty() {
            Vec::new()
        } else {
            match self.method {
                WriteMethod::Unnest => {
                    Self::insert_readings_unnest(&mut tx, &readings, self.conflict_guard).await?
                }
                WriteMethod::Copy => {
                    Self::insert_readings_copy(&mut tx, &readings, self.conflict_guard).await?
                }
            }
        };
        Self::record_device_names(&mut tx, &readings).await?;
        let quarantined = Self::insert_quarantine(&mut tx, &quarantine).await?;
        Self::insert_anchors(&mut tx, messages).await?;
        tx.commit().await?;
        let inserted = new_readings.len() as u64;
        Ok(BatchOutcome {
            readings_inserted: inserted,
            readings_duplicate: readings.len() as u64 - inserted,
            quarantined,
            new_readings,
        })
    }

    async fn relative_anchor(&self, key: &MessageKey) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT anchor FROM relative_time_anchors WHERE message_key = $1")
                .bind(key.to_vec())
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timescale_versions_before_the_conflict_fix_are_recognised() {
        assert!(parse_version("2.17.2").unwrap() < TIMESCALE_CONFLICT_FIX);
        assert!(parse_version("2.18.0").unwrap() < TIMESCALE_CONFLICT_FIX);
        assert!(parse_version("2.18.1").unwrap() >= TIMESCALE_CONFLICT_FIX);
        assert!(parse_version("2.26.4-dev").unwrap() >= TIMESCALE_CONFLICT_FIX);
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn copy_escaping_keeps_separators_out_of_fields() {
        assert_eq!(copy_escape("a\tb\nc\\d\re"), "a\\tb\\nc\\\\d\\re");
    }
}
