//! Ingest: from an MQTT PUBLISH to validated [`wardwatch_core::Reading`]s and
//! quarantine records, with acknowledgement only after commit.
//!
//! # Layout
//! - [`session`]: owns the MQTT connection (persistent session, QoS 1, manual
//!   acks, reconnect with backoff); one task polls, one task acknowledges.
//! - [`ack`]: the pure ack tracker (arrival order, connection epochs).
//! - [`identity`]: a message's idempotency key and the receipt times
//!   relative-time packs were first resolved against.
//! - [`topic`]: which device and which format a topic names.
//! - [`decode`]: size limit, format dispatch and validation into readings and rejections.
//! - [`item`]: one resolved record (or its refusal), what the formats
//!   hand to validation.
//! - [`senml`]: RFC 8428 SenML pack resolution.
//! - [`fhir`]: FHIR R4 vital-signs Observation and Bundle decoding.
//!
//! Decoding and validation are pure functions of (payload, clock reading,
//! policy); only [`session`] does I/O.

pub mod ack;
pub mod decode;
pub mod fhir;
pub mod identity;
pub mod item;
pub mod rate;
pub mod senml;
pub mod session;
pub mod tls;
pub mod topic;
