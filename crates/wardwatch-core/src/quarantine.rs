//! Why an input was refused. Nothing is dropped silently: every refusal is a
//! [`Rejection`] that the store keeps and the metrics count by reason.

use std::fmt;

/// The reason an input (a whole payload or one record of it) was quarantined.
///
/// The string forms are stable: they are stored in `quarantine.reason` and used
/// as the `reason` label of `wardwatch_quarantined_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuarantineReason {
    /// Not JSON, not SenML, not a FHIR Observation/Bundle, or a record missing
    /// a field it needs.
    Malformed,
    /// The topic's device id is not in the device catalogue.
    UnknownDevice,
    /// The device is known but was not assigned to a patient at the reading's time.
    UnassignedDevice,
    /// The record names a vital (SenML `n` or LOINC code) wardwatch does not know.
    UnknownVital,
    /// The unit is missing, unknown, or not convertible to the vital's canonical unit.
    BadUnit,
    /// Non-finite, or outside the physiological range for the vital.
    Implausible,
    /// More than the allowed skew ahead of the receiving clock.
    FutureTime,
    /// Older than the retention window: it would be deleted as soon as stored.
    TooOld,
    /// The payload exceeds the configured size limit.
    Oversized,
    /// A retained message: the broker's stored copy of an old publish, sent
    /// again on every (re)subscription. Storing it would turn an old pack
    /// into a fresh reading (relative SenML times resolve to "now") and
    /// make a silent device look alive.
    Retained,
    /// More records in one payload than a device could mean to send: the
    /// records beyond the limit are not read (one row says how many).
    TooManyRecords,
    /// The device sent more messages than any device legitimately does
    /// (`ingest.device_rate_per_minute` beyond a burst): kept whole here,
    /// not decoded, so one device cannot hold everyone's pipeline.
    RateLimited,
}

impl QuarantineReason {
    /// Every reason, for pre-registering metrics so dashboards see zeros.
    pub const ALL: [QuarantineReason; 12] = [
        Self::Malformed,
        Self::UnknownDevice,
        Self::UnassignedDevice,
        Self::UnknownVital,
        Self::BadUnit,
        Self::Implausible,
        Self::FutureTime,
        Self::TooOld,
        Self::Oversized,
        Self::Retained,
        Self::TooManyRecords,
        Self::RateLimited,
    ];

    /// The stable snake_case name stored and exported.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownDevice => "unknown_device",
            Self::UnassignedDevice => "unassigned_device",
            Self::UnknownVital => "unknown_vital",
            Self::BadUnit => "bad_unit",
            Self::Implausible => "implausible",
            Self::FutureTime => "future_time",
            Self::TooOld => "too_old",
            Self::Oversized => "oversized",
            Self::Retained => "retained",
            Self::TooManyRecords => "too_many_records",
            Self::RateLimited => "rate_limited",
        }
    }

    /// Parses the stored name back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for QuarantineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One refused input, as operators will see it in the `quarantine` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Why it was refused.
    pub reason: QuarantineReason,
    /// A human sentence with the specifics ("unit 'degC' is not accepted for
    /// body_temperature; use Cel, degF or [degF]").
    pub detail: String,
    /// Which record of the payload (0-based); `None` when the whole payload was refused.
    pub record_index: Option<u32>,
    /// The offending record (or the payload, possibly truncated) as text.
    pub record: String,
}

impl Rejection {
    /// A rejection of one record of a payload.
    pub fn record(
        reason: QuarantineReason,
        detail: impl Into<String>,
        index: usize,
        record: impl Into<String>,
    ) -> Self {
        Self {
            reason,
            detail: detail.into(),
            record_index: Some(u32::try_from(index).unwrap_or(u32::MAX)),
            record: record.into(),
        }
    }

    /// A rejection of a whole payload.
    pub fn payload(
        reason: QuarantineReason,
        detail: impl Into<String>,
        payload: impl Into<String>,
    ) -> Self {
        Self {
            reason,
            detail: detail.into(),
            record_index: None,
            record: payload.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_its_stored_name() {
        for r in QuarantineReason::ALL {
            assert_eq!(QuarantineReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(QuarantineReason::parse("nope"), None);
    }
}
