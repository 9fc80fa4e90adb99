//! What the API and the ward board read: a patient's record view, pages
//! and buckets of readings, the team's patients.

use chrono::{DateTime, Utc};

/// A patient as the API shows them.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PatientView {
    /// Id.
    pub id: String,
    /// Responsible team.
    pub team_id: String,
    /// Pathway.
    pub pathway: String,
    /// SpO2 scale.
    pub spo2_scale: i16,
    /// Discharged.
    pub discharged: bool,
    /// NHS number (ten digits), when recorded.
    pub nhs_number: Option<String>,
    /// Date of birth, when recorded.
    pub date_of_birth: Option<chrono::NaiveDate>,
    /// Devices on loan to the patient now.
    #[sqlx(json)]
    pub devices: Vec<String>,
}

/// Where a page of readings ended: the last row's (time, vital, device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadingKey {
    /// Measurement time.
    pub time: DateTime<Utc>,
    /// Vital name.
    pub vital: String,
    /// Device.
    pub device_id: String,
}

/// A stored reading as the API returns it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReadingRow {
    /// Vital name.
    pub vital: String,
    /// Measurement time.
    pub time: DateTime<Utc>,
    /// Canonical value.
    pub value: f64,
    /// Device.
    pub device_id: String,
    /// `senml`, `fhir`.
    pub source: String,
}

/// Readings of one vital summarised over a time bucket.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BucketRow {
    /// Start of the bucket.
    pub start: DateTime<Utc>,
    /// Readings in it.
    pub count: i64,
    /// Lowest.
    pub min: f64,
    /// Highest.
    pub max: f64,
    /// Mean.
    pub avg: f64,
}

/// What the ward board shows for one patient.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TeamPatient {
    /// Patient.
    pub id: String,
    /// Pathway.
    pub pathway: String,
    /// SpO2 scale.
    pub spo2_scale: i16,
    /// On oxygen per the care plan.
    pub care_plan_oxygen: bool,
    /// The most urgent open alert's severity, if any.
    pub alert_severity: Option<String>,
    /// A `no_data` flag is open (silent device).
    pub silent: bool,
    /// The devices whose own `no_data` is open, by id.
    #[sqlx(json)]
    pub silent_devices: Vec<String>,
}

/// A patient's latest reading of one vital (within the last 7 days).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LatestReading {
    /// Whose.
    pub patient_id: String,
    /// Which vital (stored name).
    pub vital: String,
    /// Canonical value.
    pub value: f64,
    /// When it was measured.
    pub time: DateTime<Utc>,
}

/// One hour's mean of one vital for a patient (the board's trend lines).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HourlyMean {
    /// Whose.
    pub patient_id: String,
    /// Which vital (stored name).
    pub vital: String,
    /// The hour's start.
    pub hour: DateTime<Utc>,
    /// Mean of the hour's readings.
    pub mean: f64,
}
