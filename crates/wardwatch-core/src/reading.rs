//! A validated reading in canonical units, and the identifiers it carries.

use std::fmt;

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::vital::Vital;

/// Why a string is not a valid identifier.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    /// Empty identifiers name nothing.
    #[error("{kind} id is empty")]
    Empty {
        /// `device` or `patient`.
        kind: &'static str,
    },
    /// Identifiers end up in MQTT topics, SQL rows and URLs; keep them short.
    #[error("{kind} id is longer than {max} characters")]
    TooLong {
        /// `device` or `patient`.
        kind: &'static str,
        /// The limit.
        max: usize,
    },
    /// Only `A-Z a-z 0-9 . _ : -` so an id is safe in a topic level and a path.
    #[error("{kind} id {id:?} has a character outside A-Z a-z 0-9 . _ : -")]
    BadChar {
        /// `device` or `patient`.
        kind: &'static str,
        /// The offending id (truncated).
        id: String,
    },
}

const MAX_ID_LEN: usize = 128;

fn check_id(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            max: MAX_ID_LEN,
        });
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(IdError::BadChar {
            kind,
            id: s.chars().take(MAX_ID_LEN).collect(),
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_id($kind, &s)?;
                Ok(Self(s))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// A device as the catalogue knows it; taken from the MQTT topic, never from the payload.
    DeviceId,
    "device"
);
id_type!(
    /// A patient on a virtual ward.
    PatientId,
    "patient"
);

/// Which wire format (or person) a reading came from; kept for diagnosis and audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadingSource {
    /// A SenML pack on `.../readings`.
    Senml,
    /// A FHIR Observation or Bundle on `.../observations`.
    Fhir,
    /// Typed in by staff through the API (a phone call, a visit).
    Manual,
}

impl ReadingSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Senml => "senml",
            Self::Fhir => "fhir",
            Self::Manual => "manual",
        }
    }
}

/// One measurement of one vital, validated and converted to the vital's canonical unit.
///
/// It carries the device, not the patient: attribution to a patient depends on
/// the device's assignment at `time`, which the store resolves inside the same
/// transaction that writes the row, so a reassignment can never race it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The device that measured it (from the topic).
    pub device_id: DeviceId,
    /// What was measured.
    pub vital: Vital,
    /// When it was measured (device time, resolved to absolute UTC).
    pub time: DateTime<Utc>,
    /// The value in the vital's canonical unit (see [`Vital::canonical_unit`]).
    pub value: f64,
    /// When wardwatch received the message that carried it.
    pub received_at: DateTime<Utc>,
    /// The wire format it arrived in.
    pub source: ReadingSource,
    /// How the device names itself (SenML `bn`+`n`, FHIR `device.display`); diagnosis only.
    pub source_name: Option<String>,
    /// The device's own expected update interval (SenML `ut`), seconds: it
    /// refines the silent-device cadence for this patient. Not stored.
    pub update_interval_secs: Option<u32>,
}

/// Identifies one MQTT delivery across the pipeline so it can be acknowledged
/// once everything it carried is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryTag {
    /// The connection the message arrived on; acks never cross connections.
    pub epoch: u64,
    /// Arrival order within the connection.
    pub seq: u64,
}

/// Identifies a message's content for idempotency: a prefix of
/// SHA-256(topic, 0x00, payload). Redeliveries have the same key; ingest
/// computes it, the store keys quarantine rows and time anchors on it.
pub type MessageKey = [u8; 16];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_safe_alphabet_and_refuse_topic_wildcards() {
        assert!(DeviceId::new("ox-0024be:ff.01_A").is_ok());
        assert_eq!(DeviceId::new(""), Err(IdError::Empty { kind: "device" }));
        assert!(matches!(DeviceId::new("a/b"), Err(IdError::BadChar { .. })));
        assert!(matches!(DeviceId::new("+"), Err(IdError::BadChar { .. })));
        assert!(matches!(DeviceId::new("#"), Err(IdError::BadChar { .. })));
        assert!(matches!(
            PatientId::new("x".repeat(129)),
            Err(IdError::TooLong { .. })
        ));
        assert!(PatientId::new("x".repeat(128)).is_ok());
    }
}
