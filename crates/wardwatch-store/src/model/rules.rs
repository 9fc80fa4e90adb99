//! What the rules core reads and writes: patients' clinical settings and
//! personalised limits (every change audited), the recent readings replayed
//! at start-up, and flags with their append-only events.

use crate::StoreError;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

/// A personalised limit as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LimitRow {
    /// The vital's stored name.
    pub vital: String,
    /// Lower limit.
    pub low: Option<f64>,
    /// Upper limit.
    pub high: Option<f64>,
    /// `low`, `medium`, `high` or `emergency`.
    pub severity: String,
    /// Raise after this many consecutive breaching readings ...
    pub persist_readings: i32,
    /// ... or after the breach has lasted this long.
    pub persist_secs: i32,
    /// Clear only this far inside the limits ...
    pub clear_margin: f64,
    /// ... for this long.
    pub clear_hold_secs: i32,
}

/// A patient's settings as the rules need them.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientRow {
    /// Patient id.
    pub id: String,
    /// Pathway name.
    pub pathway: String,
    /// 1 or 2.
    pub spo2_scale: i16,
    /// On oxygen per the care plan.
    pub care_plan_oxygen: bool,
    /// For the NEWS2 age rule.
    pub date_of_birth: Option<NaiveDate>,
    /// NEWS2 does not apply in pregnancy.
    pub pregnant: bool,
    /// Discharged: no longer monitored.
    pub discharged: bool,
    /// Bumped on every change.
    pub settings_version: i64,
    /// Personalised limits.
    pub limits: Vec<LimitRow>,
    /// Devices on loan to the patient now (their silence is watched one by one).
    pub devices: Vec<String>,
}

/// Which patients to read.
#[derive(Debug, Clone, Copy)]
pub enum PatientFilter<'a> {
    /// Everyone (start-up).
    All,
    /// These ids (readings arrived for patients the rules do not know yet).
    Ids(&'a [String]),
    /// Changed after this settings version, or in the last two minutes
    /// (the periodic refresh; re-applying an unchanged patient is a no-op).
    ChangedSince(i64),
}

/// A clinician's change to one setting of a patient.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    /// Move to another pathway.
    Pathway(String),
    /// SpO2 scale 1 or 2.
    Spo2Scale(i16),
    /// On oxygen per the care plan.
    CarePlanOxygen(bool),
    /// Pregnancy (NEWS2 does not apply).
    Pregnant(bool),
    /// Date of birth (NEWS2 applies from 16).
    DateOfBirth(NaiveDate),
    /// Discharge at a time (history kept, monitoring stops).
    Discharged(DateTime<Utc>),
    /// Re-admit a discharged patient.
    Readmitted,
}

impl Setting {
    pub(crate) fn column(&self) -> &'static str {
        match self {
            Self::Pathway(_) => "pathway",
            Self::Spo2Scale(_) => "spo2_scale",
            Self::CarePlanOxygen(_) => "care_plan_oxygen",
            Self::Pregnant(_) => "pregnant",
            Self::DateOfBirth(_) => "date_of_birth",
            Self::Discharged(_) | Self::Readmitted => "discharged_at",
        }
    }

    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Self::Pathway(p) => Some(p.clone()),
            Self::Spo2Scale(s) => Some(s.to_string()),
            Self::CarePlanOxygen(b) | Self::Pregnant(b) => Some(b.to_string()),
            Self::DateOfBirth(d) => Some(d.to_string()),
            Self::Discharged(t) => Some(t.to_rfc3339()),
            Self::Readmitted => None,
        }
    }
}

/// What happened to a flag, as the store applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagChange {
    /// Raised or updated: opens the flag if none is open, else updates it.
    Open,
    /// Cleared: closes the open flag, if any.
    Clear,
}

impl FlagChange {
    /// `open` or `clear`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Clear => "clear",
        }
    }
}

/// One flag transition to record.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagRecord {
    /// Whose.
    pub patient_id: String,
    /// The rule's stable key.
    pub rule: String,
    /// A technical flag (silent device), never merged into a clinical alert.
    pub technical: bool,
    /// `low`, `medium`, `high` or `emergency`.
    pub severity: &'static str,
    /// Open (raise or update) or clear.
    pub change: FlagChange,
    /// When it happened (the reading's or the tick's time).
    pub at: DateTime<Utc>,
    /// The evidence in words.
    pub summary: String,
    /// The readings and the NEWS2 breakdown.
    pub evidence: Value,
}

/// What [`PgStore::write_flags`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlagsOutcome {
    /// Flags opened.
    pub raised: u64,
    /// Open flags updated.
    pub updated: u64,
    /// Flags cleared.
    pub cleared: u64,
    /// Clears with no open flag (already cleared): nothing to do.
    pub ignored: u64,
}

/// A flag open in the store.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OpenFlagRow {
    /// Whose.
    pub patient_id: String,
    /// Rule key.
    pub rule: String,
    /// Severity.
    pub severity: String,
}

/// A stored reading replayed into the rules at start-up.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReplayRow {
    /// Patient.
    pub patient_id: String,
    /// Stored vital name.
    pub vital: String,
    /// Canonical value.
    pub value: f64,
    /// Measurement time.
    pub time: DateTime<Utc>,
    /// The device that sent it.
    pub device_id: String,
}

/// What the store holds as actually raised over a period: the backtest's
/// comparison.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredOutcomes {
    /// Flags raised in the period.
    pub flags: Vec<RaisedFlagRow>,
    /// Alerts opened in the period.
    pub alerts: Vec<OpenedAlertRow>,
}

/// One flag as raised.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RaisedFlagRow {
    /// Whose.
    pub patient_id: String,
    /// The rule's key (`news2`, `threshold:spo2`, `no_data:<device>`, ...).
    pub rule: String,
    /// Its severity as it stands.
    pub severity: String,
    /// Raised.
    pub raised_at: DateTime<Utc>,
}

/// One alert as opened.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedAlertRow {
    /// Whose.
    pub patient_id: String,
    /// `clinical` or `technical`.
    pub kind: String,
    /// The rules of its flags.
    pub rules: Vec<String>,
    /// Opened.
    pub opened_at: DateTime<Utc>,
}

pub(crate) fn clean(s: &str, what: &str) -> Result<String, StoreError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(StoreError::Rejected(format!("{what} must not be empty")));
    }
    Ok(s.to_string())
}

pub(crate) fn limit_text(l: &LimitRow) -> String {
    let side = |x: Option<f64>| x.map_or("none".to_string(), |v| v.to_string());
    format!(
        "low {} high {} severity {} persist {} readings or {} s, clear {} inside for {} s",
        side(l.low),
        side(l.high),
        l.severity,
        l.persist_readings,
        l.persist_secs,
        l.clear_margin,
        l.clear_hold_secs
    )
}
