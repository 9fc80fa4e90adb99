//! What a format module ([`crate::senml`], [`crate::fhir`]) hands to
//! validation ([`crate::decode`]): one [`Item`] per record, resolved to a
//! [`Candidate`] or refused with a [`Failure`]. Its own module so the
//! formats and validation depend on it and not on each other.

use chrono::{DateTime, Utc};
use wardwatch_core::{QuarantineReason, Vital, VitalValue};

/// A record resolved from the wire format, before unit conversion and time checks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    pub(crate) vital: Vital,
    pub(crate) value: VitalValue,
    pub(crate) unit: Option<String>,
    /// Absolute UTC time.
    pub(crate) time: DateTime<Utc>,
    pub(crate) source_name: Option<String>,
    /// SenML `ut`, validated, whole seconds.
    pub(crate) update_interval_secs: Option<u32>,
}

/// Why one record was refused by a format module.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) reason: QuarantineReason,
    pub(crate) detail: String,
}

impl Failure {
    pub(crate) fn new(reason: QuarantineReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> Self {
        Self::new(QuarantineReason::Malformed, detail)
    }
}

/// One record (or FHIR component) of a payload and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    /// 0-based index of the record in the payload (SenML record, FHIR observation or bundle entry).
    pub(crate) index: usize,
    /// The record's JSON text (unsanitised, untruncated).
    pub(crate) record: String,
    pub(crate) outcome: Result<Candidate, Failure>,
}
