//! Domain types shared by every wardwatch crate, and nothing else.
//!
//! # Layout
//! - [`vital`]: the vitals wardwatch understands, their LOINC codes, canonical
//!   units, accepted unit conversions and physiological plausibility ranges.
//! - [`reading`]: a validated [`Reading`] in canonical units, and the ids it carries.
//! - [`quarantine`]: why an input was rejected ([`QuarantineReason`]) and the
//!   record kept for operators ([`Rejection`]).
//! - [`nhs`]: the NHS number and its modulus-11 check digit.
//! - [`flag`]: a flag's [`Severity`] and [`FlagState`], an alert's
//!   [`AlertState`], and a rule key's family: the names rules, store,
//!   alerting and the API share.
//! - [`clock`]: the engine's clock, kept on the monotonic clock and anchored
//!   to a reference; decisions take `now` as an argument instead of reading it.
//!
//! This crate imports no other wardwatch crate and does no I/O.

pub mod clock;
pub mod flag;
pub mod nhs;
pub mod quarantine;
pub mod reading;
pub mod vital;

pub use flag::{AlertState, FlagState, Severity};
pub use nhs::{NhsNumber, NhsNumberError};
pub use quarantine::{QuarantineReason, Rejection};
pub use reading::{DeliveryTag, DeviceId, IdError, PatientId, Reading, ReadingSource};
pub use vital::{UnitError, Vital, VitalValue};
