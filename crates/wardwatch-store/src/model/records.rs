//! What the API manages besides alerts: enrolment with identity, transfers
//! between teams (audited with who and why), the device catalogue, manual
//! observations, correction notes on readings, and users.

use chrono::{DateTime, NaiveDate, Utc};
use wardwatch_core::{NhsNumber, PatientId, Vital};

/// A new patient.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// wardwatch's id for them.
    pub id: PatientId,
    /// The responsible team.
    pub team: String,
    /// The monitoring pathway.
    pub pathway: String,
    /// Checked NHS number, if they have one (visitors may not).
    pub nhs_number: Option<NhsNumber>,
    /// Date of birth (NEWS2 applies to adults only); `None` when it is
    /// not known yet (set later with `patient set`, audited).
    pub date_of_birth: Option<NaiveDate>,
}

/// Which record holds an identity, and on which team.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PatientPlace {
    /// wardwatch's id for them.
    pub id: String,
    /// Their team.
    pub team_id: String,
}

/// A device in the catalogue with its derived status.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeviceRow {
    /// Id, as in its MQTT topic.
    pub id: String,
    /// Make and model.
    pub model: Option<String>,
    /// What it measures (`pulse_oximeter`, ...).
    pub kind: Option<String>,
    /// `available`, `assigned` or `retired`.
    pub status: String,
    /// Who has it, while assigned.
    pub patient_id: Option<String>,
    /// Since when.
    pub assigned_from: Option<DateTime<Utc>>,
}

/// The device kinds the catalogue knows.
pub const DEVICE_KINDS: [&str; 7] = [
    "pulse_oximeter",
    "blood_pressure_monitor",
    "thermometer",
    "patch",
    "weighing_scale",
    "glucometer",
    "other",
];

/// Observations taken by phone or on a visit, already checked and in
/// canonical units.
#[derive(Debug, Clone)]
pub struct ManualEntry<'a> {
    /// Whose.
    pub patient: &'a PatientId,
    /// When they were taken.
    pub taken_at: DateTime<Utc>,
    /// What was measured.
    pub values: &'a [(Vital, f64)],
    /// Who typed them in.
    pub recorded_by: &'a str,
    /// Free text (how taken, by whom on the phone).
    pub note: Option<&'a str>,
}

/// The device id manual readings are stored under.
pub const MANUAL_DEVICE: &str = "manual";

/// A note on a reading.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct NoteRow {
    /// Id.
    pub id: i64,
    /// The reading's vital.
    pub vital: String,
    /// The reading's time.
    pub time: DateTime<Utc>,
    /// The reading's device.
    pub device_id: String,
    /// Who wrote it.
    pub author: String,
    /// What it says.
    pub text: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A user as admins see them.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    /// Id.
    pub id: String,
    /// Role.
    pub role: String,
    /// For patients and proxies: whose record.
    pub patient_id: Option<String>,
    /// Team memberships.
    pub teams: Vec<String>,
    /// Disabled (cannot sign in).
    pub disabled: bool,
}
