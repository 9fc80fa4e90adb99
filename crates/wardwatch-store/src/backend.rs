//! The engine's store contract beyond ingest, as traits both backends
//! implement, and [`Backend`], the one store type the engine holds: either
//! PostgreSQL (production) or SQLite (trials and small sites).
//!
//! Each trait is declared once in a [`store_trait!`] list, which also
//! writes PostgreSQL's implementation (its inherent methods) and
//! [`Backend`]'s dispatch; SQLite implements the traits in [`crate::sqlite`].
//! The compiler then holds both backends to the same signatures, and
//! this crate's `tests/` hold them to the same behaviour.

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use wardwatch_core::{DeviceId, PatientId};

use crate::access::{AuditEntry, AuditRow, Principal};
use crate::alerts::{
    Acknowledgement, AlertAction, AlertEventRow, AlertFilter, AlertRow, AppliedEvents,
    ClaimedDelivery, DueAlert, EscalationApply, NewDelivery, OpenAlertRow, PendingFlagEvent,
    SnoozeLimits, SnoozeRow, StateFilter,
};
use crate::records::{DeviceRow, Enrolment, ManualEntry, NoteRow, PatientPlace, UserRow};
use crate::reports::TeamReport;
use crate::rules::{
    FlagRecord, FlagsOutcome, LimitRow, OpenFlagRow, PatientFilter, PatientRow, ReplayRow, Setting,
    StoredOutcomes,
};
use crate::views::{
    BucketRow, HourlyMean, LatestReading, PatientView, ReadingKey, ReadingRow, TeamPatient,
};
use crate::{
    BatchOutcome, IngestMessage, MessageKey, NewReading, PgStore, SqliteStore, Store, StoreError,
};

/// The store the engine runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    /// PostgreSQL, with TimescaleDB when the extension exists.
    Pg(PgStore),
    /// The embedded SQLite file.
    Sqlite(SqliteStore),
}

impl Backend {
    /// `postgres` or `sqlite`, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Pg(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// A trivial query: the health check's "can I reach my database".
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Pg(s) => {
                sqlx::query("SELECT 1").execute(s.pool()).await?;
            }
            Self::Sqlite(s) => {
                sqlx::query("SELECT 1")
                    .execute(s.pool())
                    .await
                    .map_err(crate::sqlite::classify)?;
            }
        }
        Ok(())
    }

    /// Closes the connections (after the last write).
    pub async fn close(&self) {
        match self {
            Self::Pg(s) => s.pool().close().await,
            Self::Sqlite(s) => s.pool().close().await,
        }
    }
}

/// Declares a store trait from a list of async methods: the trait, its
/// PostgreSQL implementation by the inherent method of the same name, and
/// [`Backend`]'s dispatch.
macro_rules! store_trait {
    (
        $(#[$doc:meta])*
        pub trait $trait:ident {
            $( $(#[$m:meta])* fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty; )*
        }
    ) => {
        $(#[$doc])*
        pub trait $trait: Clone + Send + Sync + 'static {
            $(
                $(#[$m])*
                fn $name(&self $(, $arg: $ty)*)
                    -> impl Future<Output = Result<$ret, StoreError>> + Send;
            )*
        }

        impl $trait for PgStore {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                    PgStore::$name(self $(, $arg)*).await
                }
            )*
        }

        impl $trait for Backend {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                    match self {
                        Backend::Pg(s) => <PgStore as $trait>::$name(s $(, $arg)*).await,
                        Backend::Sqlite(s) => <SqliteStore as $trait>::$name(s $(, $arg)*).await,
                    }
                }
            )*
        }
    };
}

store_trait! {
    /// Housekeeping the engine runs on a timer.
    pub trait MaintenanceStore {
        /// Deletes up to `limit` readings older than `cutoff` (the plain
        /// retention sweep; TimescaleDB drops chunks on its own).
        fn sweep_retention(&self, cutoff: DateTime<Utc>, limit: i64) -> u64;
        /// Forgets relative-time anchors older than `cutoff`.
        fn purge_anchors(&self, cutoff: DateTime<Utc>) -> u64;
        /// Deletes up to `limit` quarantine rows last seen before `cutoff`.
        fn purge_quarantine(&self, cutoff: DateTime<Utc>, limit: i64) -> u64;
    }
}

store_trait! {
    /// What load generators and benchmarks set up and count: kept apart so
    /// no engine path can reach a bulk enrolment that skips the audit.
    pub trait LoadTestStore {
        /// Counts these patients' readings.
        fn count_readings_of_patients(&self, patients: &[String]) -> i64;
        /// Enrols many patients with one device each, lent from `from`.
        fn enrol_bulk(&self, team: &str, pairs: &[(String, String)], from: DateTime<Utc>) -> ();
    }
}

store_trait! {
    /// Users, their tokens and the audit trail: what the API's access
    /// control needs.
    pub trait AccessStore {
        /// Creates or updates a user with their teams (replaced).
        fn upsert_user(&self, id: &str, role: &str, patient: Option<&str>, teams: &[String]) -> ();
        /// Stores a token's hash for an active user.
        fn insert_token(&self, user: &str, hash: &[u8], expires_at: DateTime<Utc>) -> ();
        /// Revokes every token of a user; returns how many.
        fn revoke_tokens(&self, user: &str) -> u64;
        /// The principal behind a token hash, if the token is valid at `now`.
        fn authenticate(&self, hash: &[u8], now: DateTime<Utc>) -> Option<Principal>;
        /// Appends an audit entry.
        fn audit(&self, e: &AuditEntry) -> ();
        /// The newest audit entries, newest first.
        fn audit_entries(&self, limit: i64) -> Vec<AuditRow>;
        /// Every user with their teams.
        fn users(&self) -> Vec<UserRow>;
        /// Disables a user and revokes their tokens; false if there was no active one.
        fn disable_user(&self, id: &str) -> bool;
    }
}

store_trait! {
    /// Alerts as clinicians and the live feed see them, and the outbox's
    /// delivery side.
    pub trait AlertStore {
        /// Claims up to `limit` due pending deliveries for `lease`.
        fn claim_deliveries(&self, now: DateTime<Utc>, limit: i64, lease: Duration) -> Vec<ClaimedDelivery>;
        /// Records a delivery's outcome: sent, retry at, or failed for good.
        fn finish_delivery(&self, id: i64, now: DateTime<Utc>, error: Option<&str>, retry_at: Option<DateTime<Utc>>) -> ();
        /// When every page of a step failed: a delivery alert to the fallback.
        fn fallback_if_undeliverable(&self, alert_id: i64, tier: i32, round: i32, fallback: NewDelivery) -> bool;
        /// Acknowledgements after `since`: (team, seconds to acknowledge, at).
        fn acknowledgements_since(&self, since: DateTime<Utc>) -> Vec<Acknowledgement>;
        /// Alert events after `after` and in `gaps`, with the alert as it stands.
        fn alert_events_since(&self, after: i64, gaps: &[i64], limit: i64) -> Vec<AlertEventRow>;
        /// Alerts opened for a team since `since`.
        fn alerts_opened_since(&self, team: &str, since: DateTime<Utc>) -> i64;
        /// The newest alert event id.
        fn last_alert_event_id(&self) -> i64;
        /// A named user takes an open alert; pending pages are cancelled.
        fn acknowledge_alert(&self, alert_id: i64, user: &str, now: DateTime<Utc>) -> AlertRow;
        /// Closes an alert with an outcome.
        fn resolve_alert(&self, alert_id: i64, user: &str, outcome: &str, note: Option<&str>, now: DateTime<Utc>) -> AlertRow;
        /// Snoozes a rule for a patient; returns the severity it holds back.
        fn snooze(&self, patient: &str, rule: &str, until: DateTime<Utc>, user: &str, reason: &str, limits: &SnoozeLimits) -> String;
        /// Hands ended snoozes' open flags back to alerting.
        fn end_snoozes(&self, now: DateTime<Utc>) -> u64;
        /// Alerts, newest first, optionally of one state.
        fn list_alerts(&self, state: Option<StateFilter>, limit: i64) -> Vec<AlertRow>;
        /// Alerts matching a filter, newest first.
        fn find_alerts(&self, filter: &AlertFilter<'_>, limit: i64) -> Vec<AlertRow>;
        /// One alert.
        fn alert(&self, id: i64) -> Option<AlertRow>;
    }
}

store_trait! {
    /// What the rules core reads and writes: settings, limits, flags and
    /// the start-up replay.
    pub trait RulesStore {
        /// The patient's team.
        fn team_of(&self, patient: &str) -> Option<String>;
        /// Patients' settings and limits.
        fn patient_rows(&self, filter: PatientFilter<'_>) -> Vec<PatientRow>;
        /// Changes one clinical setting, audited.
        fn set_patient(&self, patient: &PatientId, setting: Setting, actor: &str, reason: &str) -> ();
        /// Sets a personal limit, audited.
        fn set_limit(&self, patient: &PatientId, limit: &LimitRow, actor: &str, reason: &str) -> ();
        /// Removes a personal limit, audited.
        fn remove_limit(&self, patient: &PatientId, vital: &str, actor: &str, reason: &str) -> ();
        /// Writes flag changes and their events.
        fn write_flags(&self, flags: &[FlagRecord]) -> FlagsOutcome;
        /// Sets aside a flag change the database refused, with the reason.
        fn set_aside_flag(&self, flag: &FlagRecord, reason: &str, now: DateTime<Utc>) -> ();
        /// Every open flag.
        fn open_flags(&self) -> Vec<OpenFlagRow>;
        /// Readings in [from, to) for the replay.
        fn replay_slice(&self, from: DateTime<Utc>, to: DateTime<Utc>, horizons: &[(String, DateTime<Utc>)]) -> Vec<ReplayRow>;
        /// Flags raised and alerts opened in [from, to) (the backtest's "actually raised").
        fn outcomes_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoredOutcomes;
    }
}

store_trait! {
    /// What the API manages: identity, transfers, devices, manual
    /// observations and notes.
    pub trait RecordStore {
        /// Assigns a device to a patient from `from`, ending any open assignment at `from`.
        fn assign_device(&self, device: &DeviceId, patient: &PatientId, from: DateTime<Utc>) -> ();
        /// Ends the device's open assignment at `at`.
        fn unassign_device(&self, device: &DeviceId, at: DateTime<Utc>) -> ();
        /// Enrols a patient with identity.
        fn enrol_patient(&self, e: &Enrolment, actor: &str) -> ();
        /// The record (id, team) holding an NHS number, if any.
        fn patient_by_nhs_number(&self, nhs_number: &str) -> Option<PatientPlace>;
        /// Moves a patient to another team with their open alerts.
        fn transfer(&self, patient: &PatientId, team: &str, team_policy: Option<&Value>, actor: &str, reason: &str) -> u64;
        /// Adds a device to the catalogue.
        fn register_device(&self, device: &DeviceId, model: &str, kind: &str) -> DeviceRow;
        /// The catalogue.
        fn devices(&self) -> Vec<DeviceRow>;
        /// One device.
        fn device(&self, id: &str) -> Option<DeviceRow>;
        /// Retires a returned device.
        fn retire_device(&self, device: &DeviceId) -> DeviceRow;
        /// Stores typed-in observations as readings.
        fn record_manual(&self, e: &ManualEntry<'_>, received_at: DateTime<Utc>) -> Vec<NewReading>;
        /// A note on one reading.
        fn add_reading_note(&self, patient: &str, vital: &str, time: DateTime<Utc>, device_id: &str, author: &str, text: &str) -> Option<NoteRow>;
        /// Notes on a patient's readings in [from, to].
        fn reading_notes(&self, patient: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<NoteRow>;
    }
}

store_trait! {
    /// What the API reads: patients' views, readings and team reports.
    pub trait ViewStore {
        /// One patient as the API shows them.
        fn patient_view(&self, id: &str) -> Option<PatientView>;
        /// A patient's readings, newest first.
        fn readings_of(&self, patient: &str, vital: Option<&str>, from: DateTime<Utc>, to: DateTime<Utc>, limit: i64) -> Vec<ReadingRow>;
        /// A page of a patient's readings in [from, to), in (time, vital,
        /// device) order, after the row `after` names: for paging.
        fn readings_page(&self, patient: &str, vital: Option<&str>, from: DateTime<Utc>, to: DateTime<Utc>, after: Option<&ReadingKey>, limit: i64) -> Vec<ReadingRow>;
        /// Downsampled readings.
        fn reading_buckets(&self, patient: &str, vital: &str, from: DateTime<Utc>, to: DateTime<Utc>, bucket_secs: i64) -> Vec<BucketRow>;
        /// Each patient's latest reading per vital.
        fn latest_readings(&self, patients: &[String]) -> Vec<LatestReading>;
        /// Monitored patients of these teams.
        fn patients_of_teams(&self, teams: &[String]) -> Vec<String>;
        /// A team's patients for the board.
        fn team_patients(&self, team: &str) -> Vec<TeamPatient>;
        /// Hourly means of these vitals over the last day.
        fn hourly_trends(&self, patients: &[String], vitals: &[&str]) -> Vec<HourlyMean>;
        /// A team's figures over [from, to).
        fn team_report(&self, team: &str, from: DateTime<Utc>, to: DateTime<Utc>, expected_interval_mins: &HashMap<String, u32>) -> TeamReport;
    }
}

/// Applies the alerting lifecycle's plans in one transaction each: flag
/// events to alerts, and due escalations. Written by hand because the plans
/// come as closures.
pub trait EscalationStore: Clone + Send + Sync + 'static {
    /// Applies up to `limit` pending flag events with `decide`'s plans and
    /// marks them applied: each event exactly once.
    fn apply_flag_events<F>(
        &self,
        limit: i64,
        now: DateTime<Utc>,
        decide: F,
    ) -> impl Future<Output = Result<AppliedEvents, StoreError>> + Send
    where
        F: FnMut(&PendingFlagEvent, Option<&OpenAlertRow>, Option<&SnoozeRow>) -> AlertAction
            + Send;
    /// Escalates up to `limit` due open alerts with `plan`'s steps.
    fn escalate_due<F>(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        plan: F,
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send
    where
        F: FnMut(&DueAlert) -> Option<EscalationApply> + Send;
}

impl EscalationStore for PgStore {
    async fn apply_flag_events<F>(
        &self,
        limit: i64,
        now: DateTime<Utc>,
        decide: F,
    ) -> Result<AppliedEvents, StoreError>
    where
        F: FnMut(&PendingFlagEvent, Option<&OpenAlertRow>, Option<&SnoozeRow>) -> AlertAction
            + Send,
    {
        PgStore::apply_flag_events(self, limit, now, decide).await
    }
    async fn escalate_due<F>(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        plan: F,
    ) -> Result<Vec<i64>, StoreError>
    where
        F: FnMut(&DueAlert) -> Option<EscalationApply> + Send,
    {
        PgStore::escalate_due(self, now, limit, plan).await
    }
}

impl EscalationStore for Backend {
    async fn apply_flag_events<F>(
        &self,
        limit: i64,
        now: DateTime<Utc>,
        decide: F,
    ) -> Result<AppliedEvents, StoreError>
    where
        F: FnMut(&PendingFlagEvent, Option<&OpenAlertRow>, Option<&SnoozeRow>) -> AlertAction
            + Send,
    {
        match self {
            Self::Pg(s) => PgStore::apply_flag_events(s, limit, now, decide).await,
            Self::Sqlite(s) => {
                <SqliteStore as EscalationStore>::apply_flag_events(s, limit, now, decide).await
            }
        }
    }
    async fn escalate_due<F>(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        plan: F,
    ) -> Result<Vec<i64>, StoreError>
    where
        F: FnMut(&DueAlert) -> Option<EscalationApply> + Send,
    {
        match self {
            Self::Pg(s) => PgStore::escalate_due(s, now, limit, plan).await,
            Self::Sqlite(s) => {
                <SqliteStore as EscalationStore>::escalate_due(s, now, limit, plan).await
            }
        }
    }
}

impl Store for Backend {
    async fn write_batch(&self, messages: &[IngestMessage]) -> Result<BatchOutcome, StoreError> {
        match self {
            Self::Pg(s) => Store::write_batch(s, messages).await,
            Self::Sqlite(s) => Store::write_batch(s, messages).await,
        }
    }
    async fn relative_anchor(&self, key: &MessageKey) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self {
            Self::Pg(s) => Store::relative_anchor(s, key).await,
            Self::Sqlite(s) => Store::relative_anchor(s, key).await,
        }
    }
}
