//! A team's figures over a period, for the people who run a virtual ward:
//! how many patients were monitored, whether devices sent what their
//! pathway expects (adherence), how often each rule alerted per
//! patient-day, how fast alerts were acknowledged, and how many escalated.

/// One patient's device adherence over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct Adherence {
    /// Patient.
    pub patient_id: String,
    /// Pathway (sets the expected cadence).
    pub pathway: String,
    /// Hours monitored within the period (enrolment to discharge, clipped).
    pub monitored_hours: f64,
    /// Device measurement occasions received (distinct measurement times;
    /// a pack of six vitals taken together is one occasion).
    pub received: i64,
    /// Occasions the pathway expects over the monitored time, when it
    /// declares a cadence.
    pub expected: Option<i64>,
}

/// Alerts opened in the period, by kind, rule and severity.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AlertCount {
    /// `clinical`, `technical` or `delivery`.
    pub kind: String,
    /// Rule key (`news2`, `threshold:spo2:0`, `no_data`, ...).
    pub rule: String,
    /// Severity as it stands now (an alert only worsens while open).
    pub severity: String,
    /// How many.
    pub count: i64,
}

/// How fast alerts opened in the period were acknowledged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimeToAck {
    /// Acknowledged.
    pub acknowledged: i64,
    /// Never acknowledged (still open, or resolved without).
    pub unacknowledged: i64,
    /// Median, seconds.
    pub p50_secs: Option<f64>,
    /// 90th percentile, seconds.
    pub p90_secs: Option<f64>,
    /// Longest, seconds.
    pub max_secs: Option<f64>,
}

/// The report.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamReport {
    /// Patients monitored at any time in the period.
    pub adherence: Vec<Adherence>,
    /// Sum of monitored time, days.
    pub patient_days: f64,
    /// Alerts opened in the period.
    pub alerts: Vec<AlertCount>,
    /// Alerts opened in the period (an alert counts once however many rules it rests on).
    pub alerts_opened: i64,
    /// Time to acknowledge.
    pub time_to_ack: TimeToAck,
    /// Escalations to a higher tier in the period.
    pub escalations: i64,
    /// Distinct alerts that escalated at least once in the period.
    pub alerts_escalated: i64,
}
